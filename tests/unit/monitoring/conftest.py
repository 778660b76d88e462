"""A small inference log with NULLs, NaN, two models, late labels and a shift injected on its last day.

The log is kept both as numpy arrays (the tests' oracle input) and as an Arrow table registered in an
in-memory DuckDB (the engine's input); NULLs are explicit masks so that NaN stays NaN.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import duckdb
import numpy as np
import pyarrow as pa
import pytest
from numpy.typing import NDArray

from modelport.monitoring import CustomMetric, ProfileSpec

DAY0 = datetime(2026, 1, 30, tzinfo=UTC)  # four daily windows across the January/February boundary
ROWS = 2400


@dataclass
class Log:
    ts: NDArray[np.datetime64]
    columns: dict[str, NDArray]  # type: ignore[type-arg]
    nulls: dict[str, NDArray[np.bool_]]

    def table(self, with_ts: bool = True) -> pa.Table:
        data = {"ts": pa.array(self.ts, pa.timestamp("us"))} if with_ts else {}
        for name, values in self.columns.items():
            mask = self.nulls.get(name)
            data[name] = pa.array(values, mask=mask) if mask is not None else pa.array(values)
        return pa.table(data)

    def in_window(self, start: datetime, end: datetime) -> NDArray[np.bool_]:
        lo = np.datetime64(start.replace(tzinfo=None), "us")
        hi = np.datetime64(end.replace(tzinfo=None), "us")
        return (self.ts >= lo) & (self.ts < hi)

    def values(self, name: str, rows: NDArray[np.bool_]) -> NDArray:  # type: ignore[type-arg]
        """The non-NULL values of ``name`` in ``rows``."""
        keep = rows & ~self.nulls.get(name, np.zeros(rows.size, dtype=bool))
        return self.columns[name][keep]


def inference_log(seed: int = 7, rows: int = ROWS) -> Log:
    rng = np.random.default_rng(seed)
    seconds = np.sort(rng.integers(0, 4 * 86400, rows))
    ts = np.datetime64(DAY0.replace(tzinfo=None), "us") + seconds.astype("timedelta64[s]")
    x = rng.normal(0.0, 1.0, rows)
    x[rng.random(rows) < 0.03] = np.nan
    y = rng.normal(5.0, 2.0, rows)
    y[seconds >= 3 * 86400] += 3.0  # the injected shift, on the last day only
    label = rng.integers(0, 2, rows)
    proba = np.clip(0.35 * label + rng.random(rows) * 0.65, 0.0, 1.0)
    cat = rng.choice(["red", "green", "blue"], rows, p=[0.5, 0.3, 0.2]).astype(object)
    cat_null = rng.random(rows) < 0.05
    cat[cat_null] = None
    return Log(
        ts,
        {
            "x": x,
            "y": y,
            "n": rng.integers(0, 4, rows),
            "cat": cat,
            "label": label,
            "pred": (proba > 0.5).astype(np.int64),
            "proba": proba,
            "model": rng.choice(["champion", "challenger"], rows, p=[0.8, 0.2]).astype(object),
        },
        {
            "x": rng.random(rows) < 0.02,
            "n": rng.random(rows) < 0.04,
            "cat": cat_null,
            "label": rng.random(rows) < 0.1,  # labels not arrived yet
        },
    )


def classification_spec(**changes: object) -> ProfileSpec:
    fields: dict[str, object] = {
        "profile_type": "InferenceLog",
        "timestamp_col": "ts",
        "granularities": ("1 day",),
        "columns": ("x", "y", "n", "cat", "pred", "label"),
        "problem_type": "PROBLEM_TYPE_CLASSIFICATION",
        "prediction_col": "pred",
        "label_col": "label",
        "model_id_col": "model",
        "prediction_proba_col": "proba",
    }
    fields.update(changes)
    return ProfileSpec(**fields)  # type: ignore[arg-type]


CUSTOM = (
    CustomMetric(
        "sum_sq",
        "sum(`{{input_column}}` * `{{input_column}}`)",
        ("y", "n"),
        "double",
        "CUSTOM_METRIC_TYPE_AGGREGATE",
    ),
    CustomMetric(
        "rms", "sqrt(sum_sq / (count - num_nulls))", ("y", "n"), "double", "CUSTOM_METRIC_TYPE_DERIVED"
    ),
    CustomMetric(
        "hit_rate",
        "avg(CASE WHEN {{prediction_col}} = {{label_col}} THEN 1.0 ELSE 0.0 END)",
        (":table",),
        "double",
        "AGGREGATE",
    ),
    CustomMetric(
        "rms_ratio", "{{current_df}}.rms / {{base_df}}.rms", ("y",), "double", "CUSTOM_METRIC_TYPE_DRIFT"
    ),
)


def day(i: int) -> tuple[datetime, datetime]:
    return DAY0 + timedelta(days=i), DAY0 + timedelta(days=i + 1)


@pytest.fixture(scope="package")
def log() -> Log:
    return inference_log()


@pytest.fixture(scope="package")
def training() -> Log:
    return inference_log(seed=99, rows=800)


@pytest.fixture(scope="package")
def con(log: Log, training: Log) -> duckdb.DuckDBPyConnection:
    connection = duckdb.connect()
    connection.register("logs", log.table())
    connection.register("training", training.table(with_ts=False))
    return connection
