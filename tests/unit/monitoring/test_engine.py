"""compute(): profile rows against numpy, drift rows against scipy on the same windows' raw values,
model quality against scikit-learn, slices, custom metrics, incremental refreshes."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pytest
from scipy import stats
from scipy.spatial.distance import jensenshannon

from modelport.errors import InvalidParameterValue
from modelport.monitoring import (
    DRIFT_SCHEMA,
    PROFILE_SCHEMA,
    CustomMetric,
    ProfileSpec,
    Window,
    compute,
    windows_touched,
)
from modelport.monitoring.drift import ks_exact
from modelport.monitoring.profile import QUANTILES
from tests.unit.monitoring.conftest import CUSTOM, DAY0, Log, classification_spec, day
from tests.unit.monitoring.test_drift_stats import psi_oracle

TOL = 1e-6
Row = dict[str, Any]


@pytest.fixture(scope="module")
def full(con: duckdb.DuckDBPyConnection) -> tuple[pa.Table, pa.Table]:
    spec = classification_spec(slicing_exprs=("cat", "x > 0"), custom_metrics=CUSTOM)
    return compute(con, "logs", spec, baseline="training", monitor_version=3, table_version=12)


_ROWS: dict[int, tuple[pa.Table, list[Row]]] = {}


def _pylist(table: pa.Table) -> list[Row]:
    if id(table) not in _ROWS or _ROWS[id(table)][0] is not table:
        _ROWS[id(table)] = (table, table.to_pylist())
    return _ROWS[id(table)][1]


def select(table: pa.Table, *, start: datetime | None = None, **where: Any) -> list[Row]:
    where = {"slice_key": None, "model_id": None, **where}
    out = []
    for row in _pylist(table):
        if start is not None and (row["window"] is None or row["window"]["start"] != start):
            continue
        if all(row[k] == v for k, v in where.items()):
            out.append(row)
    return out


def one(table: pa.Table, **where: Any) -> Row:
    found = select(table, **where)
    assert len(found) == 1, (where, len(found))
    return found[0]


def test_outputs_have_the_databricks_columns_then_the_custom_metrics(full: tuple[pa.Table, pa.Table]) -> None:
    profile, drift = full
    assert profile.schema.names == [*PROFILE_SCHEMA.names, "sum_sq", "rms", "hit_rate"]
    assert drift.schema.names == [*DRIFT_SCHEMA.names, "rms_ratio"]
    assert set(profile.column("log_type").to_pylist()) == {"INPUT", "BASELINE"}
    assert set(profile.column("monitor_version").to_pylist()) == {3}
    assert set(profile.column("logging_table_commit_version").to_pylist()) == {12}
    baseline_rows = select(profile, log_type="BASELINE")
    assert {r["window"] for r in baseline_rows} == {None} and {r["granularity"] for r in baseline_rows} == {
        None
    }


def test_profile_metrics_match_numpy(full: tuple[pa.Table, pa.Table], log: Log) -> None:
    profile, _ = full
    for i in range(4):
        start, end = day(i)
        rows = log.in_window(start, end)
        count = int(rows.sum())
        table = one(profile, start=start, column_name=":table")
        assert table["count"] == count and table["granularity"] == "1 day"
        assert table["window"]["end"] == end
        assert table["non_null_columns"] == ["x", "y", "n", "cat", "pred", "label"]

        x = one(profile, start=start, column_name="x")
        values = log.values("x", rows)
        finite = values[~np.isnan(values)]
        assert x["data_type"] == "double" and x["count"] == count
        assert x["num_nulls"] == int((rows & log.nulls["x"]).sum())
        assert x["num_nan"] == int(np.isnan(values).sum())
        assert x["avg"] == pytest.approx(finite.mean(), abs=TOL)
        assert x["stddev"] == pytest.approx(finite.std(ddof=1), abs=TOL)
        assert (x["min"], x["max"]) == (finite.min(), finite.max())
        assert x["median"] == pytest.approx(np.median(finite), abs=TOL)
        assert x["quantiles"] == pytest.approx(list(np.quantile(finite, QUANTILES)), abs=TOL)
        assert x["distinct_count"] == np.unique(finite).size
        assert x["percent_null"] == pytest.approx(100 * x["num_nulls"] / count)
        assert x["percent_nan"] == pytest.approx(100 * x["num_nan"] / count)
        assert x["frequent_items"] is None and x["min_length"] is None

        n = one(profile, start=start, column_name="n")
        ints = log.values("n", rows)
        assert n["data_type"] == "bigint"
        assert n["num_zeros"] == int((ints == 0).sum())
        assert n["percent_zeros"] == pytest.approx(100 * n["num_zeros"] / count)
        assert n["avg"] == pytest.approx(ints.mean(), abs=TOL)
        assert n["distinct_count"] == 4
        assert n["percent_distinct"] == pytest.approx(400 / count)

        cat = one(profile, start=start, column_name="cat")
        words = log.values("cat", rows)
        items, counts = np.unique(words.astype(str), return_counts=True)
        expected = sorted(zip(items.tolist(), counts.tolist(), strict=True), key=lambda ic: (-ic[1], ic[0]))
        assert cat["data_type"] == "string"
        assert [(f["item"], f["count"]) for f in cat["frequent_items"]] == expected
        lengths = np.array([len(w) for w in words])
        assert (cat["min_length"], cat["max_length"]) == (lengths.min(), lengths.max())
        assert cat["avg_length"] == pytest.approx(lengths.mean())
        assert cat["avg"] is None and cat["quantiles"] is None

        label = one(profile, start=start, column_name="label")  # categorical for a classifier
        assert label["num_nulls"] == int((rows & log.nulls["label"]).sum())
        assert sorted(f["item"] for f in label["frequent_items"]) == ["0", "1"]


def test_classification_quality_matches_sklearn(full: tuple[pa.Table, pa.Table], log: Log) -> None:
    skm = pytest.importorskip("sklearn.metrics")
    profile, _ = full
    cols = log.columns
    for i in range(4):
        start, end = day(i)
        for model in (None, "champion", "challenger"):
            rows = log.in_window(start, end) & ~log.nulls["label"]
            if model is not None:
                rows &= cols["model"] == model
            y, pred, proba = cols["label"][rows], cols["pred"][rows], cols["proba"][rows]
            got = one(profile, start=start, column_name=":table", model_id=model)
            assert got["accuracy_score"] == pytest.approx(skm.accuracy_score(y, pred), abs=TOL)
            for name, fn in (
                ("precision", skm.precision_score),
                ("recall", skm.recall_score),
                ("f1_score", skm.f1_score),
            ):
                per_label = fn(y, pred, average=None, labels=[0, 1], zero_division=0)
                assert dict(got[name]["one_vs_all"]) == pytest.approx({"0": per_label[0], "1": per_label[1]})
                assert got[name]["macro"] == pytest.approx(
                    fn(y, pred, average="macro", zero_division=0), abs=TOL
                )
                assert got[name]["weighted"] == pytest.approx(
                    fn(y, pred, average="weighted", zero_division=0), abs=TOL
                )
            assert got["log_loss"] == pytest.approx(skm.log_loss(y, proba, labels=[0, 1]), abs=TOL)
            assert got["roc_auc_score"] == pytest.approx(skm.roc_auc_score(y, proba), abs=TOL)
            matrix = skm.confusion_matrix(y, pred, labels=[0, 1])
            assert [(c["label"], c["prediction"], c["count"]) for c in got["confusion_matrix"]] == [
                (str(a), str(b), int(matrix[a, b])) for a in (0, 1) for b in (0, 1)
            ]
            assert got["mean_squared_error"] is None


def test_multiclass_quality_with_probability_lists_matches_sklearn() -> None:
    skm = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(5)
    rows = 600
    y = rng.integers(0, 3, rows)
    logits = rng.normal(size=(rows, 3)) + 1.5 * np.eye(3)[y]
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    pred = proba.argmax(axis=1)
    con = duckdb.connect()
    ts = np.datetime64("2026-05-01T00:00:00") + rng.integers(0, 3600, rows).astype("timedelta64[s]")
    con.register(
        "t",
        pa.table({"ts": ts, "y": y, "pred": pred, "proba": pa.array(proba.tolist(), pa.list_(pa.float64()))}),
    )
    spec = classification_spec(
        columns=("pred",),
        label_col="y",
        prediction_proba_col="proba",
        model_id_col=None,
        granularities=("1 hour",),
    )
    profile, _ = compute(con, "t", spec)
    got = one(profile, column_name=":table")
    assert got["accuracy_score"] == pytest.approx(skm.accuracy_score(y, pred), abs=TOL)
    assert got["f1_score"]["macro"] == pytest.approx(skm.f1_score(y, pred, average="macro"), abs=TOL)
    assert got["precision"]["weighted"] == pytest.approx(
        skm.precision_score(y, pred, average="weighted"), abs=TOL
    )
    assert got["log_loss"] == pytest.approx(skm.log_loss(y, proba), abs=TOL)
    assert got["roc_auc_score"] == pytest.approx(skm.roc_auc_score(y, proba, multi_class="ovr"), abs=TOL)


def test_regression_quality_matches_sklearn(con: duckdb.DuckDBPyConnection, log: Log) -> None:
    skm = pytest.importorskip("sklearn.metrics")
    con.execute(
        "CREATE OR REPLACE VIEW reg AS SELECT ts, model, y AS target, y + proba - 0.5 AS estimate FROM logs"
    )
    spec = ProfileSpec(
        "InferenceLog",
        "ts",
        ("1 day",),
        ("target", "estimate"),
        problem_type="PROBLEM_TYPE_REGRESSION",
        prediction_col="estimate",
        label_col="target",
        model_id_col="model",
    )
    profile, _ = compute(con, "reg", spec)
    for model in (None, "challenger"):
        rows = log.in_window(*day(1)) & (True if model is None else log.columns["model"] == model)
        y = log.columns["y"][rows]
        pred = y + log.columns["proba"][rows] - 0.5
        got = one(profile, start=day(1)[0], column_name=":table", model_id=model)
        assert got["mean_squared_error"] == pytest.approx(skm.mean_squared_error(y, pred), abs=TOL)
        assert got["root_mean_squared_error"] == pytest.approx(
            math.sqrt(skm.mean_squared_error(y, pred)), abs=TOL
        )
        assert got["mean_absolute_error"] == pytest.approx(skm.mean_absolute_error(y, pred), abs=TOL)
        assert got["mean_absolute_percentage_error"] == pytest.approx(
            skm.mean_absolute_percentage_error(y, pred), abs=TOL
        )
        assert got["r2_score"] == pytest.approx(skm.r2_score(y, pred), abs=TOL)
        assert got["accuracy_score"] is None


def _numeric_oracle(current: np.ndarray, base: np.ndarray) -> dict[str, float]:
    current, base = current[~np.isnan(current)], base[~np.isnan(base)]
    method = "exact" if ks_exact(current.size, base.size) else "asymp"
    ks = stats.ks_2samp(current, base, method=method)
    psi, js = psi_oracle(current, base)
    return {
        "ks": ks.statistic,
        "p": ks.pvalue,
        "wasserstein": stats.wasserstein_distance(current, base),
        "psi": psi,
        "js": js,
    }


@pytest.mark.parametrize("column", ["x", "y", "n"])
def test_numeric_drift_rows_match_scipy_on_the_windows_values(
    full: tuple[pa.Table, pa.Table], log: Log, training: Log, column: str
) -> None:
    profile, drift = full
    everything = np.ones(training.ts.size, dtype=bool)
    for i in range(1, 4):
        current = log.values(column, log.in_window(*day(i))).astype(np.float64)
        for drift_type, base in (
            ("CONSECUTIVE", log.values(column, log.in_window(*day(i - 1))).astype(np.float64)),
            ("BASELINE", training.values(column, everything).astype(np.float64)),
        ):
            got = one(drift, start=day(i)[0], column_name=column, drift_type=drift_type)
            want = _numeric_oracle(current, base)
            assert got["ks_test"]["statistic"] == pytest.approx(want["ks"], abs=TOL)
            assert got["ks_test"]["pvalue"] == pytest.approx(want["p"], abs=TOL)
            assert got["wasserstein_distance"] == pytest.approx(want["wasserstein"], abs=TOL)
            assert got["population_stability_index"] == pytest.approx(want["psi"], abs=TOL)
            assert got["js_distance"] == pytest.approx(want["js"], abs=TOL)
            assert got["chi_squared_test"] is None and got["tv_distance"] is None
            cur_row = one(profile, start=day(i)[0], column_name=column)
            if drift_type == "CONSECUTIVE":
                assert got["window_cmp"]["start"] == day(i - 1)[0]
                cmp_row = one(profile, start=day(i - 1)[0], column_name=column)
            else:
                assert got["window_cmp"] is None
                cmp_row = one(profile, column_name=column, log_type="BASELINE")
            assert got["count_delta"] == cur_row["count"] - cmp_row["count"]
            assert got["avg_delta"] == pytest.approx(cur_row["avg"] - cmp_row["avg"], abs=TOL)
            assert got["percent_null_delta"] == pytest.approx(
                cur_row["percent_null"] - cmp_row["percent_null"]
            )


def test_categorical_drift_rows_match_scipy_on_the_windows_values(
    full: tuple[pa.Table, pa.Table], log: Log, training: Log
) -> None:
    _, drift = full
    base_all = training.values("cat", np.ones(training.ts.size, dtype=bool)).astype(str)
    for i in range(1, 4):
        current = log.values("cat", log.in_window(*day(i))).astype(str)
        for drift_type, base in (
            ("CONSECUTIVE", log.values("cat", log.in_window(*day(i - 1))).astype(str)),
            ("BASELINE", base_all),
        ):
            got = one(drift, start=day(i)[0], column_name="cat", drift_type=drift_type)
            vocab = np.union1d(current, base)
            cur = np.array([(current == v).sum() for v in vocab], dtype=float)
            ref = np.array([(base == v).sum() for v in vocab], dtype=float)
            chi2 = stats.chi2_contingency(np.vstack((cur, ref)))
            p, q = cur / cur.sum(), ref / ref.sum()
            assert got["chi_squared_test"]["statistic"] == pytest.approx(chi2.statistic, abs=TOL)
            assert got["chi_squared_test"]["pvalue"] == pytest.approx(chi2.pvalue, abs=TOL)
            assert got["js_distance"] == pytest.approx(jensenshannon(p, q, base=2), abs=TOL)
            assert got["tv_distance"] == pytest.approx(0.5 * np.abs(p - q).sum(), abs=TOL)
            assert got["l_infinity_distance"] == pytest.approx(np.abs(p - q).max(), abs=TOL)
            assert got["ks_test"] is None and got["wasserstein_distance"] is None


def test_the_injected_shift_is_flagged_in_its_column_only(full: tuple[pa.Table, pa.Table]) -> None:
    _, drift = full
    last = day(3)[0]
    shifted = one(drift, start=last, column_name="y", drift_type="CONSECUTIVE")
    assert shifted["js_distance"] > 0.1 and shifted["ks_test"]["pvalue"] < 0.05
    assert shifted["avg_delta"] == pytest.approx(3.0, abs=0.5)
    for column in ("x", "n"):
        steady = one(drift, start=last, column_name=column, drift_type="CONSECUTIVE")
        assert steady["js_distance"] < 0.1 and steady["ks_test"]["pvalue"] > 0.05, column
    steady_cat = one(drift, start=last, column_name="cat", drift_type="CONSECUTIVE")
    assert steady_cat["js_distance"] < 0.1 and steady_cat["chi_squared_test"]["pvalue"] > 0.05
    before = one(drift, start=day(2)[0], column_name="y", drift_type="CONSECUTIVE")
    assert before["js_distance"] < 0.1 and before["ks_test"]["pvalue"] > 0.05


def test_table_rows_carry_count_and_non_null_columns_deltas(
    full: tuple[pa.Table, pa.Table], log: Log
) -> None:
    _, drift = full
    row = one(drift, start=day(1)[0], column_name=":table", drift_type="CONSECUTIVE")
    assert row["count_delta"] == int(log.in_window(*day(1)).sum() - log.in_window(*day(0)).sum())
    assert row["non_null_columns_delta"] == {"added": 0, "missing": 0}
    assert not select(drift, start=day(0)[0], drift_type="CONSECUTIVE")  # no previous window


def test_slices_are_per_expression_with_predicates_as_true_and_false(
    full: tuple[pa.Table, pa.Table], log: Log
) -> None:
    profile, drift = full
    start = day(2)[0]
    rows = log.in_window(*day(2))
    by_colour = select(profile, start=start, column_name=":table", slice_key="cat")
    assert {r["slice_value"]: r["count"] for r in by_colour} == {
        c: int((rows & (log.columns["cat"] == c)).sum()) for c in ("red", "green", "blue")
    }
    x = log.columns["x"]
    positive = (x > 0) | np.isnan(x)  # NaN sorts above every number in Spark and DuckDB
    valid = rows & ~log.nulls["x"]
    by_sign = select(profile, start=start, column_name=":table", slice_key="x > 0")
    assert {r["slice_value"]: r["count"] for r in by_sign} == {
        "true": int((valid & positive).sum()),
        "false": int((valid & ~positive).sum()),
    }
    red_champion = one(
        profile, start=start, column_name="y", slice_key="cat", slice_value="red", model_id="champion"
    )
    values = log.values("y", rows & (log.columns["cat"] == "red") & (log.columns["model"] == "champion"))
    assert red_champion["avg"] == pytest.approx(values.mean(), abs=TOL)
    assert one(
        drift, start=start, column_name="y", slice_key="x > 0", slice_value="true", drift_type="BASELINE"
    )


def test_a_column_slice_keeps_its_100_most_frequent_values() -> None:
    con = duckdb.connect()
    codes = np.repeat(np.arange(150), np.arange(150) // 10 + 1)
    ts = np.full(codes.size, np.datetime64("2026-05-01T10:00:00"))
    con.register("t", pa.table({"ts": ts, "code": codes, "v": np.ones(codes.size)}))
    spec = ProfileSpec("TimeSeries", "ts", ("1 day",), ("v",), slicing_exprs=("code",))
    profile, _ = compute(con, "t", spec)
    kept = {r["slice_value"] for r in select(profile, column_name=":table", slice_key="code")}
    assert len(kept) == 100 and "149" in kept and "0" not in kept


def test_custom_aggregate_derived_and_drift_metrics(full: tuple[pa.Table, pa.Table], log: Log) -> None:
    profile, drift = full
    for i in range(4):
        start = day(i)[0]
        rows = log.in_window(*day(i))
        y = one(profile, start=start, column_name="y")
        assert y["sum_sq"] == pytest.approx(float((log.values("y", rows) ** 2).sum()))
        assert y["rms"] == pytest.approx(math.sqrt(y["sum_sq"] / (y["count"] - y["num_nulls"])))
        n = one(profile, start=start, column_name="n")
        assert n["sum_sq"] == pytest.approx(float((log.values("n", rows).astype(float) ** 2).sum()))
        assert one(profile, start=start, column_name="x")["sum_sq"] is None
        table = one(profile, start=start, column_name=":table")
        labelled = rows & ~log.nulls["label"]
        hits = (log.columns["pred"] == log.columns["label"]) & labelled
        assert table["hit_rate"] == pytest.approx(hits[rows].mean())
    y_drift = one(drift, start=day(3)[0], column_name="y", drift_type="CONSECUTIVE")
    ratio = (
        one(profile, start=day(3)[0], column_name="y")["rms"]
        / one(profile, start=day(2)[0], column_name="y")["rms"]
    )
    assert y_drift["rms_ratio"] == pytest.approx(ratio)
    assert one(drift, start=day(3)[0], column_name="n", drift_type="CONSECUTIVE")["rms_ratio"] is None


def _rounded(rows: list[Row]) -> list[str]:
    def norm(value: Any) -> Any:
        if isinstance(value, float):
            return None if math.isnan(value) else round(value, 9)
        if isinstance(value, dict):
            return {k: norm(v) for k, v in value.items()}
        if isinstance(value, list):
            return [norm(v) for v in value]
        return value

    return sorted(repr(norm(r)) for r in rows)


def test_an_incremental_window_equals_the_same_window_of_a_full_compute(
    con: duckdb.DuckDBPyConnection, full: tuple[pa.Table, pa.Table]
) -> None:
    spec = classification_spec(slicing_exprs=("cat", "x > 0"), custom_metrics=CUSTOM)
    start, end = day(2)
    profile, drift = compute(
        con,
        "logs",
        spec,
        baseline="training",
        windows=[Window(start, end, "1 day")],
        monitor_version=3,
        table_version=12,
    )
    full_profile, full_drift = full
    windows = {r["window"]["start"] for r in profile.to_pylist() if r["window"] is not None}
    assert windows == {start}
    inputs = [
        r for r in full_profile.to_pylist() if r["window"] is not None and r["window"]["start"] == start
    ]
    assert _rounded([r for r in profile.to_pylist() if r["log_type"] == "INPUT"]) == _rounded(inputs)
    assert _rounded([r for r in profile.to_pylist() if r["log_type"] == "BASELINE"]) == _rounded(
        [r for r in full_profile.to_pylist() if r["log_type"] == "BASELINE"]
    )
    assert _rounded(drift.to_pylist()) == _rounded(
        [r for r in full_drift.to_pylist() if r["window"]["start"] == start]
    )
    assert {r["drift_type"] for r in drift.to_pylist()} == {"CONSECUTIVE", "BASELINE"}


def test_windows_touched_adds_the_following_window(con: duckdb.DuckDBPyConnection) -> None:
    spec = classification_spec(granularities=("1 day", "AGGREGATION_GRANULARITY_1_MONTH"))
    touched = windows_touched(con, "logs", spec, "ts < TIMESTAMP '2026-01-30 06:00:00'")
    assert touched == [
        Window(*day(0), "1 day"),
        Window(*day(1), "1 day"),  # its CONSECUTIVE drift compares with day 0
        Window(datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 2, 1, tzinfo=UTC), "1 month"),
        Window(datetime(2026, 2, 1, tzinfo=UTC), datetime(2026, 3, 1, tzinfo=UTC), "1 month"),
    ]
    assert windows_touched(con, "logs", spec, "false") == []


def test_month_windows_split_at_the_calendar_month(con: duckdb.DuckDBPyConnection, log: Log) -> None:
    profile, drift = compute(con, "logs", classification_spec(granularities=("1 month",), columns=("y",)))
    feb = datetime(2026, 2, 1, tzinfo=UTC)
    january = one(profile, start=datetime(2026, 1, 1, tzinfo=UTC), column_name=":table")
    assert january["count"] == int(log.in_window(DAY0, feb).sum())
    assert january["window"]["end"] == feb
    assert one(drift, start=feb, column_name="y", drift_type="CONSECUTIVE")["window_cmp"]["end"] == feb


def test_one_model_id_gets_the_same_rows_as_all_models() -> None:
    rng = np.random.default_rng(2)
    ts = np.datetime64("2026-05-01T00:00:00") + rng.integers(0, 2 * 3600, 400).astype("timedelta64[s]")
    con = duckdb.connect()
    con.register("t", pa.table({"ts": ts, "v": rng.normal(size=400), "m": ["solo"] * 400}))
    spec = ProfileSpec("TimeSeries", "ts", ("1 hour",), ("v",), model_id_col="m")
    profile, drift = compute(con, "t", spec)
    for table in (profile, drift):
        everyone = [{**r, "model_id": "solo"} for r in table.to_pylist() if r["model_id"] is None]
        assert everyone and _rounded(everyone) == _rounded(
            [r for r in table.to_pylist() if r["model_id"] == "solo"]
        )


def test_epoch_milliseconds_and_tz_aware_timestamps_give_the_same_windows(log: Log) -> None:
    con = duckdb.connect()
    con.register("logs", log.table())
    con.execute("CREATE VIEW ms AS SELECT * REPLACE (epoch_ms(ts) AS ts) FROM logs")
    con.execute("CREATE VIEW tz AS SELECT * REPLACE (timezone('UTC', ts) AS ts) FROM logs")
    spec = ProfileSpec("TimeSeries", "ts", ("1 day",), ("y",))
    counts = []
    for view in ("logs", "ms", "tz"):
        profile, _ = compute(con, view, spec)
        counts.append({r["window"]["start"]: r["count"] for r in select(profile, column_name=":table")})
    assert counts[0] == counts[1] == counts[2] and len(counts[0]) == 4


def test_a_snapshot_has_one_window_and_baseline_drift_only(con: duckdb.DuckDBPyConnection) -> None:
    at = datetime(2026, 6, 1, 12, tzinfo=UTC)
    spec = ProfileSpec("Snapshot", None, (), ("y", "cat"))
    profile, drift = compute(con, "logs", spec, baseline="training", snapshot_time=at)
    table = one(profile, column_name=":table", log_type="INPUT")
    assert table["window"] == {"start": at, "end": at} and table["granularity"] is None
    assert table["count"] == 2400
    assert {r["drift_type"] for r in drift.to_pylist()} == {"BASELINE"}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"columns": ("x", "missing")}, "'missing' is not a column"),
        ({"granularities": ("1 fortnight",)}, "Unsupported granularity"),
        ({"problem_type": "PROBLEM_TYPE_RANKING"}, "problem_type"),
        ({"slicing_exprs": ("no_such_column > 1",)}, "Slicing expression"),
        (
            {"custom_metrics": (CustomMetric("bad", "avg(nope)", (":table",), "double", "AGGREGATE"),)},
            "Custom metric 'bad'",
        ),
        (
            {"custom_metrics": (CustomMetric("count", "count(*)", (":table",), "double", "AGGREGATE"),)},
            "built-in metric",
        ),
    ],
)
def test_a_spec_that_does_not_fit_the_table_is_refused(
    con: duckdb.DuckDBPyConnection, changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidParameterValue, match=message):
        compute(con, "logs", classification_spec(**changes))
