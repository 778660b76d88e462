"""Arrow schemas of the two output tables, with Databricks' column names.

``PROFILE_SCHEMA`` is ``{table}_profile_metrics`` and ``DRIFT_SCHEMA`` is ``{table}_drift_metrics``.
Custom metrics are appended at the end of each (nullable), in the order they were defined.
"""

from __future__ import annotations

import pyarrow as pa

__all__ = [
    "CONFUSION_MATRIX_TYPE",
    "DRIFT_SCHEMA",
    "FREQUENT_ITEMS_TYPE",
    "PROFILE_SCHEMA",
    "SCORE_STRUCT_TYPE",
    "TEST_TYPE",
    "WINDOW_TYPE",
]

_TS = pa.timestamp("us", tz="UTC")
WINDOW_TYPE = pa.struct([("start", _TS), ("end", _TS)])
FREQUENT_ITEMS_TYPE = pa.list_(pa.struct([("item", pa.string()), ("count", pa.int64())]))
#: precision / recall / f1_score: per-label one-vs-all scores, their mean, their support-weighted mean.
SCORE_STRUCT_TYPE = pa.struct(
    [
        ("one_vs_all", pa.map_(pa.string(), pa.float64())),
        ("macro", pa.float64()),
        ("weighted", pa.float64()),
    ]
)
#: One entry per (true label, predicted label) pair among the labels seen in the window.
CONFUSION_MATRIX_TYPE = pa.list_(
    pa.struct([("label", pa.string()), ("prediction", pa.string()), ("count", pa.int64())])
)
TEST_TYPE = pa.struct([("statistic", pa.float64()), ("pvalue", pa.float64())])

PROFILE_SCHEMA = pa.schema(
    [
        ("window", WINDOW_TYPE),
        ("log_type", pa.string()),
        ("logging_table_commit_version", pa.int64()),
        ("monitor_version", pa.int64()),
        ("granularity", pa.string()),
        ("slice_key", pa.string()),
        ("slice_value", pa.string()),
        ("column_name", pa.string()),
        ("data_type", pa.string()),
        ("count", pa.int64()),
        ("num_nulls", pa.int64()),
        ("avg", pa.float64()),
        ("quantiles", pa.list_(pa.float64())),
        ("min", pa.float64()),
        ("max", pa.float64()),
        ("stddev", pa.float64()),
        ("num_zeros", pa.int64()),
        ("num_nan", pa.int64()),
        ("min_length", pa.int64()),
        ("max_length", pa.int64()),
        ("avg_length", pa.float64()),
        ("non_null_columns", pa.list_(pa.string())),
        ("frequent_items", FREQUENT_ITEMS_TYPE),
        ("median", pa.float64()),
        ("distinct_count", pa.int64()),
        ("percent_nan", pa.float64()),
        ("percent_null", pa.float64()),
        ("percent_zeros", pa.float64()),
        ("percent_distinct", pa.float64()),
        ("model_id", pa.string()),
        # Model quality (InferenceLog with labels), on ":table" rows only.
        ("accuracy_score", pa.float64()),
        ("precision", SCORE_STRUCT_TYPE),
        ("recall", SCORE_STRUCT_TYPE),
        ("f1_score", SCORE_STRUCT_TYPE),
        ("log_loss", pa.float64()),
        ("roc_auc_score", pa.float64()),
        ("confusion_matrix", CONFUSION_MATRIX_TYPE),
        ("mean_squared_error", pa.float64()),
        ("root_mean_squared_error", pa.float64()),
        ("mean_absolute_error", pa.float64()),
        ("mean_absolute_percentage_error", pa.float64()),
        ("r2_score", pa.float64()),
    ]
)

DRIFT_SCHEMA = pa.schema(
    [
        ("window", WINDOW_TYPE),
        ("window_cmp", WINDOW_TYPE),
        ("drift_type", pa.string()),
        ("granularity", pa.string()),
        ("monitor_version", pa.int64()),
        ("slice_key", pa.string()),
        ("slice_value", pa.string()),
        ("column_name", pa.string()),
        ("data_type", pa.string()),
        ("model_id", pa.string()),
        ("count_delta", pa.int64()),
        ("avg_delta", pa.float64()),
        ("percent_null_delta", pa.float64()),
        ("percent_zeros_delta", pa.float64()),
        ("percent_distinct_delta", pa.float64()),
        ("non_null_columns_delta", pa.struct([("added", pa.int32()), ("missing", pa.int32())])),
        ("js_distance", pa.float64()),
        ("ks_test", TEST_TYPE),
        ("wasserstein_distance", pa.float64()),
        ("population_stability_index", pa.float64()),
        ("chi_squared_test", TEST_TYPE),
        ("tv_distance", pa.float64()),
        ("l_infinity_distance", pa.float64()),
    ]
)
