"""Monitoring (issue 20): a monitor's refresh over a million inference rows, its drift statistics
against scipy, its drift verdicts against Evidently's defaults, and its speed against Evidently.

1. **Refresh.** ``--rows`` predicted records of a 10-feature classifier (``f0``..``f9`` float64, an
   int64 ``prediction``, two served entities ``model-a``/``model-b`` at 80/20) spread uniformly
   over one week, written straight into a Delta table with the inference-table schema
   (``modelport.tables.records.INFERENCE_SCHEMA``, partitioned by ``date`` as the gateway's
   writer does, in one commit): each row one request as a client sends it to a custom model
   (``{"dataframe_split": {"columns": [...], "data": [[...]]}}``, ``--records-per-request``
   records each) and the answer ``{"predictions": [...]}``, status 200. The labels are a Delta
   table keyed by ``client_request_id`` (and ``request_row`` when requests hold several records).
   The monitor is an ``inference_log`` (classification, ``timestamp``, granularity ``1 hour``,
   ``prediction``, ``served_entity_name``, ``label`` from the labels table) parsed by
   ``modelport.spec.monitor.parse_config`` as the create route does. Timed: the service's
   ``modelport.control.monitor_refresh.refresh_monitor`` called in-process (read the Delta
   table, keep live traffic, unpack the JSON, join the labels, ``modelport.monitoring.compute``,
   write ``_profile_metrics`` and ``_drift_metrics``). Then ``--new-rows`` rows are appended
   (one commit to each table; timestamps over the week's last hour and the hour after it) and an
   incremental refresh (the first refresh's state) is timed; both refreshes' metrics tables are
   checked (168 hourly windows, then 169). A breakdown of the full refresh (read + unpack +
   labels join, ``compute``, writing the metrics tables: the refresh's own steps) is timed
   separately afterwards.
2. **scipy.** Two windows of ``--window-rows`` rows each (the 10 features, ``prediction`` and a
   5-valued string ``segment``), the second shifted in 3 columns (``f0`` mean +0.3, ``f1`` scale
   x1.5, ``f2`` mean +0.1), go through ``compute``; its CONSECUTIVE drift row of each column is
   compared with scipy on the same raw values, computed here independently: ``ks_2samp``
   (statistic; p-value with the method the engine documents for the sample sizes, and,
   reported apart, scipy's default ``method="auto"``), ``wasserstein_distance``,
   ``chi2_contingency`` (categorical columns), ``jensenshannon(base=2)`` and PSI over the engine's
   documented bins (numeric: the reference's deciles, duplicates dropped, a value on an edge in
   the bin above; categorical: the categories; an empty bin's share 1e-4), TV and L-infinity.
   The same on a pair of 500-row windows and on windows of unequal sizes (``--window-rows`` and
   two thirds of it, where the engine's KS p-value is asymptotic while scipy's default is exact).
3. **Evidently's verdicts.** ``--pairs`` pairs of ``--window-rows``-row windows and
   ``--small-pairs`` pairs of 500-row windows, each with random shifts (mean and scale) in random
   numeric columns and sometimes a reweighted ``segment``, go through Evidently's
   ``DataDriftPreset`` (its own venv, telemetry off; ``bench/peers/evidently_drift.py``) and
   through ``compute``; modelport's verdict applies Evidently's default rules to the engine's
   statistics (:func:`evidently_verdict`). Reported: the share of (pair, column) verdicts that
   agree, and each disagreement.
4. **Speed.** The scipy pair's two windows: ``compute`` (register the Arrow rows on a new DuckDB
   connection, profile both windows, drift) against Evidently's report (``Report.run``, with
   ``Dataset.from_pandas``), interleaved over ``--rounds`` rounds (order rotating); medians.

``--duration``, ``--warmup`` and ``--driver`` (shared options) are not used.

Run: ``python bench/monitoring.py [--quick] [--rows 1000000] [--parts refresh,drift]
[--out bench/RESULTS.md]``. Evidently's venv (``bench/.venvs/evidently``) is built on first use.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from harness import (
    BENCH,
    header,
    load_average,
    machine,
    one_line,
    peer_venv,
    publish,
    rotated,
    run_arguments,
    source,
    versions,
)

FEATURES = [f"f{i}" for i in range(10)]
MODELS = ("model-a", "model-b")
SEGMENTS = ("north", "south", "east", "west", "online")
CATALOG, SCHEMA = "main", "bench_monitoring"
PAYLOAD, LABELS = f"{CATALOG}.{SCHEMA}.payload", f"{CATALOG}.{SCHEMA}.labels"
WEEK_START = dt.datetime(2026, 11, 23, tzinfo=dt.UTC)
HOUR_MS = 3_600_000
WEEK_MS = 7 * 24 * HOUR_MS
WEIGHTS = np.array([1.0, -2.0, 0.5, 0.0, 1.5, -0.7, 0.3, 0.0, 1.1, -0.4])
EVIDENTLY_SPEC = ("evidently==0.7.23", "pandas<3", "pyarrow")  # pandas 3 breaks evidently 0.7.23's import
EVIDENTLY_VENV = BENCH / ".venvs" / "evidently"
EVIDENTLY_WORKER = BENCH / "peers" / "evidently_drift.py"
PACKAGES = ("modelport", "duckdb", "deltalake", "pyarrow", "numpy", "scipy")
TARGET_FULL_S = 60.0
TARGET_INCREMENTAL_S = 5.0
TARGET_DIFF = 1e-6
SMALL_ROWS = 500  # Evidently's small-reference rules apply at <= 1000 reference rows


# -- data ------------------------------------------------------------------------------------------


def features(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.normal(size=(n, len(FEATURES)))


def predict(rng: np.random.Generator, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(prediction, label): the label is the truth, the prediction a noisier view of it."""
    score = x @ WEIGHTS
    label = (score + rng.normal(scale=0.5, size=len(x)) > 0).astype(np.int64)
    prediction = (score + rng.normal(scale=1.0, size=len(x)) > 0).astype(np.int64)
    return prediction, label


def payload_rows(
    rng: np.random.Generator, records: int, per_request: int, first_id: int, lo_ms: int, hi_ms: int
) -> tuple[pa.Table, pa.Table]:
    """(inference-table rows, labels rows): ``records`` records in requests of ``per_request``,
    timestamps uniform in ``[lo_ms, hi_ms)``; request ids from ``first_id``."""
    from modelport.tables.records import INFERENCE_SCHEMA

    requests = -(-records // per_request)
    x = features(rng, requests * per_request)
    prediction, label = predict(rng, x)
    ts = np.sort(rng.integers(lo_ms, hi_ms, size=requests))
    models = np.where(rng.random(requests) < 0.8, MODELS[0], MODELS[1])
    ids = [f"req-{first_id + i:09d}" for i in range(requests)]
    rows = x.reshape(requests, per_request, len(FEATURES)).tolist()
    preds = prediction.reshape(requests, per_request).tolist()
    request_text = [
        orjson.dumps({"dataframe_split": {"columns": FEATURES, "data": block}}).decode() for block in rows
    ]
    response_text = [orjson.dumps({"predictions": p}).decode() for p in preds]
    n = requests
    null_str = pa.nulls(n, pa.string())
    columns: dict[str, pa.Array] = {
        "client_request_id": pa.array(ids, pa.string()),
        "databricks_request_id": pa.array([f"{first_id + i:032x}" for i in range(n)], pa.string()),
        "date": pc.cast(pc.cast(pa.array(ts, pa.int64()), pa.timestamp("ms", tz="UTC")), pa.date32()),
        "timestamp_ms": pa.array(ts, pa.int64()),
        "status_code": pa.array(np.full(n, 200, dtype=np.int32)),
        "execution_time_ms": pa.array(rng.integers(2, 40, size=n), pa.int64()),
        "request": pa.array(request_text, pa.string()),
        "response": pa.array(response_text, pa.string()),
        "sampling_fraction": pa.array(np.ones(n)),
        "served_entity_id": pa.array(models, pa.string()),
        "served_entity_name": pa.array(models, pa.string()),
        "requester": pa.array(["bench"] * n, pa.string()),
        "request_truncated": pa.array(np.zeros(n, dtype=bool)),
        "response_truncated": pa.array(np.zeros(n, dtype=bool)),
        "cache_hit": pa.array(np.zeros(n, dtype=bool)),
    }
    table = pa.table(
        {
            f.name: columns.get(f.name, null_str if f.type == pa.string() else pa.nulls(n, f.type))
            for f in INFERENCE_SCHEMA
        },
        schema=INFERENCE_SCHEMA,
    )
    labels = pa.table(
        {
            "client_request_id": pa.array(np.repeat(np.array(ids, dtype=object), per_request), pa.string()),
            "request_row": pa.array(np.tile(np.arange(per_request, dtype=np.int64), n)),
            "label": pa.array(label),
        }
    )
    return table, labels


def write(root: str, name: str, table: pa.Table, mode: str, partition: bool) -> None:
    from deltalake import write_deltalake

    from modelport.tables.names import split_name, table_uri

    uri = table_uri(root, *split_name(name))
    Path(uri).parent.mkdir(parents=True, exist_ok=True)
    write_deltalake(uri, table, mode=mode, partition_by=["date"] if partition else None)


# -- 1. the refresh ------------------------------------------------------------------------------------


@dataclass
class RefreshOutcome:
    table_rows: int = 0
    records: int = 0
    write_s: float = 0.0
    full_s: float = float("nan")
    full_message: str = ""
    incremental_s: float = float("nan")
    incremental_message: str = ""
    read_unpack_s: float = float("nan")
    compute_s: float = float("nan")
    write_metrics_s: float = float("nan")
    profile_rows: int = 0
    drift_rows: int = 0
    windows: int = 0
    windows_after: int = 0
    problems: list[str] = field(default_factory=list)


def monitor_config(per_request: int) -> Any:
    from modelport.spec.monitor import parse_config

    keys = ["client_request_id"] if per_request == 1 else ["client_request_id", "request_row"]
    body = {
        "output_schema_name": f"{CATALOG}.{SCHEMA}",
        "assets_dir": "/Workspace/bench/monitoring",
        "inference_log": {
            "problem_type": "PROBLEM_TYPE_CLASSIFICATION",
            "timestamp_col": "timestamp",
            "granularities": ["1 hour"],
            "prediction_col": "prediction",
            "model_id_col": "served_entity_name",
            "label_col": "label",
        },
        "labels": {"table_name": LABELS, "key_cols": keys},
    }
    return parse_config(body, creating=True)


def metrics_windows(root: str) -> tuple[int, int, int]:
    """(profile rows, drift rows, distinct INPUT windows) of the metrics tables now."""
    from deltalake import DeltaTable

    from modelport.tables.names import split_name, table_uri

    profile = DeltaTable(table_uri(root, *split_name(f"{CATALOG}.{SCHEMA}.payload_profile_metrics")))
    drift = DeltaTable(table_uri(root, *split_name(f"{CATALOG}.{SCHEMA}.payload_drift_metrics")))
    p = profile.to_pyarrow_table(columns=["window", "log_type"])
    d = drift.to_pyarrow_table(columns=["window"])
    inputs = p.filter(pc.equal(p.column("log_type"), "INPUT"))
    starts = pc.struct_field(inputs.column("window"), "start")
    return p.num_rows, d.num_rows, len(pc.unique(starts))


def measure_refresh(args: argparse.Namespace, workdir: Path) -> RefreshOutcome:
    from modelport.control.monitor_refresh import refresh_monitor

    out = RefreshOutcome()
    root = str(workdir / "tables")
    rng = np.random.default_rng(20)
    per = args.records_per_request
    start_ms = int(WEEK_START.timestamp() * 1000)
    print(f"writing {args.rows:,} records ({per} a request) into {PAYLOAD}", flush=True)
    started = time.perf_counter()
    table, labels = payload_rows(rng, args.rows, per, 0, start_ms, start_ms + WEEK_MS)
    write(root, PAYLOAD, table, "overwrite", partition=True)
    write(root, LABELS, labels, "overwrite", partition=False)
    out.table_rows, out.records = table.num_rows, labels.num_rows
    out.write_s = time.perf_counter() - started
    del table, labels
    print(f"  written in {out.write_s:.1f} s", flush=True)
    config = monitor_config(per)

    started = time.perf_counter()
    result = refresh_monitor(root, PAYLOAD, config, 1, {})
    out.full_s = time.perf_counter() - started
    out.full_message = result.message
    print(f"  full refresh {out.full_s:.2f} s: {result.message}", flush=True)
    out.profile_rows, out.drift_rows, out.windows = metrics_windows(root)
    expected = math.ceil(WEEK_MS / HOUR_MS)
    if out.windows != expected:
        out.problems.append(
            f"full refresh: {out.windows} hourly windows in the profile table, expected {expected}"
        )

    new, new_labels = payload_rows(
        rng, args.new_rows, per, out.table_rows, start_ms + WEEK_MS - HOUR_MS, start_ms + WEEK_MS + HOUR_MS
    )
    write(root, PAYLOAD, new, "append", partition=True)
    write(root, LABELS, new_labels, "append", partition=False)
    started = time.perf_counter()
    second = refresh_monitor(root, PAYLOAD, config, 1, result.state)
    out.incremental_s = time.perf_counter() - started
    out.incremental_message = second.message
    print(f"  incremental refresh {out.incremental_s:.2f} s: {second.message}", flush=True)
    _, _, out.windows_after = metrics_windows(root)
    if out.windows_after != expected + 1:
        out.problems.append(
            f"incremental refresh: {out.windows_after} hourly windows after it, expected {expected + 1}"
        )
    if "window" not in second.message or "every window" in second.message:
        out.problems.append(f"incremental refresh did not run incrementally: {second.message}")
    breakdown(root, config, out)
    return out


def breakdown(root: str, config: Any, out: RefreshOutcome) -> None:
    """The full refresh's two big steps, timed apart (same code as the refresh, not timed there)."""
    import duckdb

    from modelport.control.monitor_refresh import TableReader, _Refresh, _spec
    from modelport.monitoring import compute
    from modelport.monitoring.output import write_metrics

    refresh = _Refresh(root, PAYLOAD, config, 1, {}, lambda: False)
    try:
        started = time.perf_counter()
        reader = TableReader(root, PAYLOAD, config.include_traffic)
        reader.register(refresh.con, "payload")
        labels = TableReader(root, LABELS)
        kind = reader.kind(refresh.con, "payload")
        rows = refresh._labelled(reader.rows(refresh.con, "payload"), labels)
        out.read_unpack_s = time.perf_counter() - started
        con = duckdb.connect(":memory:")
        con.register("monitored_rows", rows)
        spec = _spec(config, rows.column_names, reader.inference, kind)
        started = time.perf_counter()
        profile, drift = compute(con, "monitored_rows", spec, table_version=reader.version)
        out.compute_s = time.perf_counter() - started
        con.close()
        started = time.perf_counter()
        for suffix, rows_out in (("profile", profile), ("drift", drift)):
            write_metrics(root, f"{CATALOG}.{SCHEMA}.breakdown_{suffix}_metrics", rows_out, None)
        out.write_metrics_s = time.perf_counter() - started
    finally:
        refresh.close()
    print(
        f"  breakdown: read+unpack+labels {out.read_unpack_s:.2f} s, compute {out.compute_s:.2f} s,"
        f" write {out.write_metrics_s:.2f} s",
        flush=True,
    )


# -- 2. two windows, the engine and scipy ---------------------------------------------------------------

NUMERIC = FEATURES
CATEGORICAL = ["segment", "prediction"]


def window_frame(
    rng: np.random.Generator,
    n: int,
    shifts: dict[str, tuple[float, float]] | None = None,
    segment_weights: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """One window's raw values: ``shifts`` maps a feature to (added mean, scale)."""
    x = features(rng, n)
    for name, (add, scale) in (shifts or {}).items():
        i = FEATURES.index(name)
        x[:, i] = x[:, i] * scale + add
    prediction, _ = predict(rng, x)
    weights = np.full(len(SEGMENTS), 1 / len(SEGMENTS)) if segment_weights is None else segment_weights
    segment = np.array(SEGMENTS, dtype=object)[rng.choice(len(SEGMENTS), size=n, p=weights)]
    return {**{f: x[:, i] for i, f in enumerate(FEATURES)}, "segment": segment, "prediction": prediction}


def pair_table(reference: dict[str, np.ndarray], current: dict[str, np.ndarray]) -> pa.Table:
    """Both windows as one table: the reference in the first hour, the current one in the next."""
    n, m = len(reference["f0"]), len(current["f0"])
    start_us = int(WEEK_START.timestamp() * 1_000_000)
    hour_us = HOUR_MS * 1000
    ts = np.concatenate(
        (
            start_us + np.linspace(0, hour_us - 1, n).astype(np.int64),
            start_us + hour_us + np.linspace(0, hour_us - 1, m).astype(np.int64),
        )
    )
    columns: dict[str, pa.Array] = {"timestamp": pa.array(ts, pa.timestamp("us", tz="UTC"))}
    for name in [*NUMERIC, *CATEGORICAL]:
        values = np.concatenate((reference[name], current[name]))
        columns[name] = pa.array(values.tolist() if values.dtype == object else values)
    return pa.table(columns)


def pair_spec() -> Any:
    from modelport.monitoring import ProfileSpec

    return ProfileSpec(
        profile_type="InferenceLog",
        timestamp_col="timestamp",
        granularities=("1 hour",),
        columns=(*NUMERIC, *CATEGORICAL),
        problem_type="PROBLEM_TYPE_CLASSIFICATION",
        prediction_col="prediction",
    )


@dataclass
class EngineRun:
    seconds: float
    drift: dict[str, dict[str, Any]]  # column -> the CONSECUTIVE drift row (whole table, all models)
    reference: dict[str, dict[str, Any]]  # column -> the reference window's profile row


def engine_pair(table: pa.Table) -> EngineRun:
    """``compute`` over the two windows of ``table`` (timed: a new connection, register, compute)."""
    import duckdb

    from modelport.monitoring import compute

    started = time.perf_counter()
    con = duckdb.connect(":memory:")
    con.register("pair_rows", table)
    profile, drift = compute(con, "pair_rows", pair_spec())
    seconds = time.perf_counter() - started
    con.close()
    whole = lambda row: row["slice_key"] is None and row["model_id"] is None  # noqa: E731
    drift_rows = {
        r["column_name"]: r for r in drift.to_pylist() if whole(r) and r["drift_type"] == "CONSECUTIVE"
    }
    first = WEEK_START
    ref_rows = {
        r["column_name"]: r
        for r in profile.to_pylist()
        if whole(r) and r["log_type"] == "INPUT" and r["window"] and r["window"]["start"] == first
    }
    return EngineRun(seconds, drift_rows, ref_rows)


def decile_counts(values: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Counts of ``values`` and ``reference`` in the engine's documented PSI/JS bins."""
    edges = np.unique(np.quantile(reference, np.linspace(0, 1, 11)[1:-1]))
    k = edges.size + 1
    cur = np.bincount(np.searchsorted(edges, values, side="right"), minlength=k).astype(float)
    ref = np.bincount(np.searchsorted(edges, reference, side="right"), minlength=k).astype(float)
    return cur, ref


def psi_oracle(cur: np.ndarray, ref: np.ndarray) -> float:
    p, q = cur / cur.sum(), ref / ref.sum()
    p, q = np.where(p == 0, 1e-4, p), np.where(q == 0, 1e-4, q)
    return float(np.sum((p - q) * np.log(p / q)))


def scipy_oracle(
    reference: dict[str, np.ndarray], current: dict[str, np.ndarray]
) -> dict[str, dict[str, float]]:
    """The statistics the engine reports, computed from the raw values with scipy."""
    from scipy import stats
    from scipy.spatial import distance

    from modelport.monitoring.drift import ks_exact

    out: dict[str, dict[str, float]] = {}
    for name in NUMERIC:
        cur, ref = current[name], reference[name]
        method = "exact" if ks_exact(cur.size, ref.size) else "asymp"  # the engine's documented rule
        ks = stats.ks_2samp(cur, ref, method=method)
        cur_bins, ref_bins = decile_counts(cur, ref)
        out[name] = {
            "ks_statistic": float(ks.statistic),
            "ks_pvalue": float(ks.pvalue),
            "ks_pvalue_auto": float(stats.ks_2samp(cur, ref).pvalue),
            "wasserstein_distance": float(stats.wasserstein_distance(cur, ref)),
            "population_stability_index": psi_oracle(cur_bins, ref_bins),
            "js_distance": float(
                distance.jensenshannon(cur_bins / cur_bins.sum(), ref_bins / ref_bins.sum(), base=2)
            ),
        }
    for name in CATEGORICAL:
        cur, ref = current[name].astype(str), reference[name].astype(str)
        vocab = np.union1d(np.unique(cur), np.unique(ref))
        cur_n = np.array([(cur == v).sum() for v in vocab], dtype=float)
        ref_n = np.array([(ref == v).sum() for v in vocab], dtype=float)
        chi2 = stats.chi2_contingency(np.vstack((cur_n, ref_n)))
        p, q = cur_n / cur_n.sum(), ref_n / ref_n.sum()
        out[name] = {
            "chi2_statistic": float(chi2.statistic),
            "chi2_pvalue": float(chi2.pvalue),
            "js_distance": float(distance.jensenshannon(p, q, base=2)),
            "population_stability_index": psi_oracle(cur_n, ref_n),
            "tv_distance": float(0.5 * np.abs(p - q).sum()),
            "l_infinity_distance": float(np.abs(p - q).max()),
        }
    return out


def engine_values(row: dict[str, Any]) -> dict[str, float]:
    def get(value: Any) -> float:
        return float("nan") if value is None else float(value)

    ks, chi2 = row.get("ks_test") or {}, row.get("chi_squared_test") or {}
    return {
        "ks_statistic": get(ks.get("statistic")),
        "ks_pvalue": get(ks.get("pvalue")),
        "ks_pvalue_auto": get(ks.get("pvalue")),
        "wasserstein_distance": get(row.get("wasserstein_distance")),
        "population_stability_index": get(row.get("population_stability_index")),
        "js_distance": get(row.get("js_distance")),
        "chi2_statistic": get(chi2.get("statistic")),
        "chi2_pvalue": get(chi2.get("pvalue")),
        "tv_distance": get(row.get("tv_distance")),
        "l_infinity_distance": get(row.get("l_infinity_distance")),
    }


@dataclass
class Agreement:
    label: str
    rows: int
    diffs: dict[str, float] = field(default_factory=dict)  # statistic -> max |engine - scipy|
    worst: dict[str, str] = field(default_factory=dict)  # statistic -> the column where it is
    compared: int = 0
    missing: list[str] = field(default_factory=list)


def compare_with_scipy(
    label: str, reference: dict[str, np.ndarray], current: dict[str, np.ndarray]
) -> Agreement:
    run = engine_pair(pair_table(reference, current))
    oracle = scipy_oracle(reference, current)
    agreement = Agreement(label, len(reference["f0"]))
    for column, want in oracle.items():
        row = run.drift.get(column)
        if row is None:
            agreement.missing.append(f"{column}: no CONSECUTIVE drift row")
            continue
        got = engine_values(row)
        for stat, value in want.items():
            diff = abs(got[stat] - value)
            if math.isnan(diff):
                agreement.missing.append(f"{column}.{stat}: engine {got[stat]}, scipy {value}")
                continue
            if stat != "ks_pvalue_auto":
                agreement.compared += 1
            if diff >= agreement.diffs.get(stat, -1.0):
                agreement.diffs[stat] = diff
                agreement.worst[stat] = column
    return agreement


# -- 3. Evidently's verdicts ----------------------------------------------------------------------------

JS_NATS = math.sqrt(math.log(2))  # scipy's jensenshannon in base e = base-2 distance x sqrt(ln 2)


def evidently_verdict(
    kind: str, drift: dict[str, Any], reference: dict[str, Any], current_distinct: int
) -> tuple[str, float, bool]:
    """(method, value, drift) from the engine's statistics with Evidently's default rules (0.7's
    ``_get_default_stattest``): reference > 1000 rows: numeric with > 5 distinct values ->
    Wasserstein / max(population std of the reference, 0.001) >= 0.1; categorical -> Jensen-Shannon
    (natural log) >= 0.1. Reference <= 1000 rows: numeric -> KS p < 0.05; categorical -> chi-squared
    p < 0.05 (Evidently's chi-squared is a goodness-of-fit test against the reference's shares, and
    its Z-test for two categories; modelport's is the 2 x k contingency test, Yates-corrected for two).

    The reference's population std is its sample ``stddev`` x sqrt((n-1)/n); distinct values over
    both windows are bounded below by the larger window's ``distinct_count``.
    """
    n = int(reference["count"]) - int(reference["num_nulls"] or 0) - int(reference.get("num_nan") or 0)
    if kind == "numeric":
        distinct = max(int(reference["distinct_count"] or 0), current_distinct)
        if n > 1000:
            if distinct <= 5:
                return "n/a (JS over Evidently's bins)", float("nan"), False
            std = float(reference["stddev"]) * math.sqrt((n - 1) / n)
            value = float(drift["wasserstein_distance"]) / max(std, 0.001)
            return "normed Wasserstein", value, value >= 0.1
        value = float(drift["ks_test"]["pvalue"])
        return "KS p-value", value, value < 0.05
    if n > 1000:
        value = float(drift["js_distance"]) * JS_NATS
        return "Jensen-Shannon", value, value >= 0.1
    value = float(drift["chi_squared_test"]["pvalue"])
    return "chi-squared p-value", value, value < 0.05


class Evidently:
    """The worker process (``peers/evidently_drift.py``) in Evidently's own venv."""

    def __init__(self, python: Path, workdir: Path) -> None:
        self.workdir = workdir
        self.log = (workdir / "evidently.log").open("wb")
        env = {"DO_NOT_TRACK": "1", "EVIDENTLY_DISABLE_TELEMETRY": "1", "PATH": "/usr/bin:/bin"}
        self.proc = subprocess.Popen(
            [str(python), str(EVIDENTLY_WORKER)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            env=env,
            text=True,
        )
        self.files = 0

    def frames(self, reference: dict[str, np.ndarray], current: dict[str, np.ndarray]) -> tuple[Path, Path]:
        paths = []
        for frame in (reference, current):
            self.files += 1
            path = self.workdir / f"window-{self.files}.parquet"
            pq.write_table(
                pa.table({k: pa.array(v.tolist() if v.dtype == object else v) for k, v in frame.items()}),
                path,
            )
            paths.append(path)
        return paths[0], paths[1]

    def report(self, reference_path: Path, current_path: Path) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        request = {
            "reference": str(reference_path),
            "current": str(current_path),
            "numerical": NUMERIC,
            "categorical": CATEGORICAL,
        }
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(
                f"Evidently's worker exited: {(self.workdir / 'evidently.log').read_text()[-1500:]}"
            )
        answer = json.loads(line)
        if "error" in answer:
            raise RuntimeError(f"Evidently: {answer['error']}")
        return answer

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


@dataclass
class VerdictOutcome:
    pairs: int = 0
    columns: int = 0
    agree: int = 0
    drifted_evidently: int = 0
    drifted_modelport: int = 0
    by_rule: dict[str, list[int]] = field(default_factory=dict)  # rule -> [agree, total]
    disagreements: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def random_pair(
    rng: np.random.Generator, rows: int, max_shift: float
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], str]:
    shifted = rng.choice(FEATURES, size=int(rng.integers(0, 5)), replace=False)
    shifts = {}
    for name in shifted:
        if rng.random() < 0.7:
            shifts[str(name)] = (float(rng.uniform(-max_shift, max_shift)), 1.0)
        else:
            shifts[str(name)] = (0.0, float(1 + rng.uniform(-max_shift, max_shift) * 2))
    weights = None
    if rng.random() < 0.4:
        raw = np.full(len(SEGMENTS), 1.0) + rng.uniform(0, max_shift * 4, size=len(SEGMENTS))
        weights = raw / raw.sum()
    what = ", ".join(f"{k} +{a:.2f} x{s:.2f}" for k, (a, s) in shifts.items()) + (
        " segment reweighted" if weights is not None else ""
    )
    return window_frame(rng, rows), window_frame(rng, rows, shifts, weights), what or "no shift"


def measure_verdicts(args: argparse.Namespace, evidently: Evidently) -> VerdictOutcome:
    out = VerdictOutcome()
    rng = np.random.default_rng(2020)
    plans = [(args.window_rows, 0.3)] * args.pairs + [(SMALL_ROWS, 0.4)] * args.small_pairs
    for index, (rows, max_shift) in enumerate(plans):
        reference, current, what = random_pair(rng, rows, max_shift)
        run = engine_pair(pair_table(reference, current))
        theirs = evidently.report(*evidently.frames(reference, current))
        drifted = sum(1 for c in theirs["columns"].values() if c["drift"])
        if theirs["count"] is not None and theirs["count"] != drifted:
            out.problems.append(
                f"pair {index}: Evidently's DriftedColumnsCount {theirs['count']} != {drifted} verdicts"
            )
        out.pairs += 1
        cur_profile = engine_pair_current_distinct(current)
        for column in [*NUMERIC, *CATEGORICAL]:
            kind = "numeric" if column in NUMERIC else "categorical"
            if column not in run.drift or column not in run.reference or column not in theirs["columns"]:
                out.problems.append(f"pair {index} {column}: missing in the engine's or Evidently's output")
                continue
            rule, value, ours = evidently_verdict(
                kind, run.drift[column], run.reference[column], cur_profile[column]
            )
            their = theirs["columns"][column]
            out.columns += 1
            tally = out.by_rule.setdefault(f"{rule} / {their['method']}", [0, 0])
            tally[1] += 1
            out.drifted_evidently += their["drift"]
            out.drifted_modelport += ours
            if ours == their["drift"]:
                out.agree += 1
                tally[0] += 1
            else:
                out.disagreements.append(
                    f"pair {index} ({rows} rows; {what}) {column}: Evidently {their['method']} ="
                    f" {their['value']:.4g} -> {verdict(their['drift'])}; modelport {rule} = {value:.4g} ->"
                    f" {verdict(ours)}"
                )
    return out


def verdict(drift: bool) -> str:
    return "drift" if drift else "no drift"


def engine_pair_current_distinct(current: dict[str, np.ndarray]) -> dict[str, int]:
    return {
        name: len(np.unique(values.astype(str) if values.dtype == object else values))
        for name, values in current.items()
    }


# -- 4. speed -------------------------------------------------------------------------------------------


@dataclass
class SpeedOutcome:
    rows: int = 0
    engine: list[float] = field(default_factory=list)
    evidently: list[float] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        return statistics.median(self.evidently) / statistics.median(self.engine)


def measure_speed(
    args: argparse.Namespace,
    evidently: Evidently,
    reference: dict[str, np.ndarray],
    current: dict[str, np.ndarray],
) -> SpeedOutcome:
    out = SpeedOutcome(rows=len(reference["f0"]))
    table = pair_table(reference, current)
    paths = evidently.frames(reference, current)
    engine_pair(table)  # warm-up of both, not counted
    evidently.report(*paths)
    for round_ in range(args.rounds):
        for who in rotated(["engine", "evidently"], round_):
            if who == "engine":
                out.engine.append(engine_pair(table).seconds)
            else:
                out.evidently.append(float(evidently.report(*paths)["seconds"]))
        print(
            f"  round {round_ + 1}: engine {out.engine[-1]:.3f} s, Evidently {out.evidently[-1]:.3f} s",
            flush=True,
        )
    return out


# -- the run --------------------------------------------------------------------------------------------


def scipy_pairs(
    args: argparse.Namespace,
) -> tuple[tuple[dict[str, np.ndarray], dict[str, np.ndarray]], list[Agreement]]:
    """The scipy comparisons: equal windows of ``--window-rows`` and of 500 rows, and unequal ones
    (``--window-rows`` and two thirds of it: the engine's KS p-value is then asymptotic)."""
    rng = np.random.default_rng(33)
    shifts = {"f0": (0.3, 1.0), "f1": (0.0, 1.5), "f2": (0.1, 1.0)}
    big = (window_frame(rng, args.window_rows), window_frame(rng, args.window_rows, shifts))
    other = args.window_rows * 2 // 3
    cases = [
        (f"{args.window_rows:,} + {args.window_rows:,} rows", big),
        (
            f"{SMALL_ROWS} + {SMALL_ROWS} rows",
            (window_frame(rng, SMALL_ROWS), window_frame(rng, SMALL_ROWS, shifts)),
        ),
        (
            f"{args.window_rows:,} + {other:,} rows",
            (window_frame(rng, args.window_rows), window_frame(rng, other, shifts)),
        ),
    ]
    results = []
    for label, (reference, current) in cases:
        agreement = compare_with_scipy(label, reference, current)
        worst = max(agreement.diffs.items(), key=lambda kv: kv[1] if kv[0] != "ks_pvalue_auto" else -1)
        print(
            f"  scipy, {label}: {agreement.compared} values, max |diff| {worst[1]:.3g} ({worst[0]})",
            flush=True,
        )
        results.append(agreement)
    return big, results


def render(
    args: argparse.Namespace,
    refresh: RefreshOutcome | None,
    agreements: list[Agreement],
    verdicts: VerdictOutcome | None,
    speed: SpeedOutcome | None,
    notes: list[str],
) -> str:
    lines = ["| Measure | Value | Target | Met |", "|---|---:|---:|:---:|"]
    yes = lambda ok: "yes" if ok else "**no**"  # noqa: E731
    if refresh is not None:
        lines.append(
            f"| full refresh, {refresh.records:,} records in {refresh.table_rows:,} inference rows, 1-hour"
            " windows over a week (`refresh_monitor`: read, unpack, labels join, compute, write) |"
            f" {refresh.full_s:.2f} s |"
            f" ≤ {TARGET_FULL_S:.0f} s | {yes(refresh.full_s <= TARGET_FULL_S)} |"
        )
        lines.append(
            f"| incremental refresh after {args.new_rows:,} new rows | {refresh.incremental_s:.2f} s |"
            f" ≤ {TARGET_INCREMENTAL_S:.0f} s | {yes(refresh.incremental_s <= TARGET_INCREMENTAL_S)} |"
        )
    for a in agreements:
        worst = max((v for k, v in a.diffs.items() if k != "ks_pvalue_auto"), default=float("nan"))
        ok = worst <= TARGET_DIFF and not a.missing
        lines.append(
            f"| max abs(engine - scipy), {a.compared} statistics, windows of {a.label} | {worst:.2e} |"
            f" ≤ 1e-06 | {yes(ok)} |"
        )
    if verdicts is not None and verdicts.columns:
        rate = verdicts.agree / verdicts.columns
        lines.append(
            f"| drift verdicts agreeing with Evidently's `DataDriftPreset`, {verdicts.pairs} window pairs x"
            f" {len(NUMERIC) + len(CATEGORICAL)} columns | {rate:.1%} ({verdicts.agree}/{verdicts.columns}) |"
            " report | — |"
        )
    if speed is not None and speed.engine:
        lines.append(
            f"| two windows of {speed.rows:,} rows: engine `compute` {statistics.median(speed.engine):.3f} s,"
            f" Evidently's report {statistics.median(speed.evidently):.3f} s (median of {len(speed.engine)})"
            " |"
            f" {speed.ratio:.1f}x faster | faster | {yes(speed.ratio > 1)} |"
        )
    text = "\n".join(lines) + "\n"
    if refresh is not None:
        text += (
            f"\nRefresh detail: data written in {refresh.write_s:.1f} s (not timed); full refresh:"
            f" {refresh.full_message} Breakdown, the same steps timed apart afterwards (on this shared"
            f" machine a step's time varies up to 2x between runs): read + unpack + labels join"
            f" {refresh.read_unpack_s:.2f} s, `compute` {refresh.compute_s:.2f} s, writing the two metrics"
            f" tables {refresh.write_metrics_s:.2f} s. Metrics tables after the full refresh:"
            f" {refresh.profile_rows:,} profile and {refresh.drift_rows:,} drift rows,"
            f" {refresh.windows} hourly windows ({refresh.windows_after} after the incremental one)."
            f" Incremental: {refresh.incremental_message}\n"
        )
    if agreements:
        text += "\nscipy agreement, max abs difference per statistic (column where it is largest):\n\n"
        stats_names = sorted({k for a in agreements for k in a.diffs})
        text += "| Statistic | " + " | ".join(a.label for a in agreements) + " |\n"
        text += "|---|" + "---:|" * len(agreements) + "\n"
        for name in stats_names:
            cells = [f"{a.diffs[name]:.2e} ({a.worst[name]})" if name in a.diffs else "—" for a in agreements]
            shown = (
                "ks_pvalue vs scipy's default `method='auto'` (not a target)"
                if name == "ks_pvalue_auto"
                else name
            )
            text += f"| {shown} | " + " | ".join(cells) + " |\n"
        for a in agreements:
            for m in a.missing:
                text += f"\n- missing ({a.label}): {m}"
    if verdicts is not None and verdicts.columns:
        text += (
            f"\nVerdicts: Evidently flagged {verdicts.drifted_evidently} and modelport"
            f" {verdicts.drifted_modelport} of {verdicts.columns} (pair, column) cases.\n\n"
            "| modelport rule / Evidently method | Agree |\n|---|---:|\n"
        )
        for rule, (agree, total) in sorted(verdicts.by_rule.items()):
            text += f"| {rule} | {agree}/{total} |\n"
        for d in verdicts.disagreements:
            text += f"\n- disagreement: {d}"
        for p in verdicts.problems:
            text += f"\n- problem: {p}"
        text += "\n"
    if refresh is not None:
        for p in refresh.problems:
            text += f"\n- problem: {p}"
    for note in notes:
        text += f"\n- note: {note}"
    return text + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    run_arguments(parser, "100,000 rows, 4+2 window pairs, 2 rounds")
    parser.set_defaults(rounds=5)
    parser.add_argument(
        "--rows", type=int, default=1_000_000, help="predicted records in the inference table"
    )
    parser.add_argument("--records-per-request", type=int, default=1, help="records in each logged request")
    parser.add_argument(
        "--new-rows", type=int, default=10_000, help="records appended before the incremental refresh"
    )
    parser.add_argument(
        "--window-rows", type=int, default=6_000, help="rows in each window of the drift pairs"
    )
    parser.add_argument(
        "--pairs", type=int, default=20, help="window pairs of --window-rows rows for the verdicts"
    )
    parser.add_argument(
        "--small-pairs", type=int, default=10, help="window pairs of 500 rows for the verdicts"
    )
    parser.add_argument(
        "--parts", default="refresh,drift", help="refresh and/or drift (scipy, Evidently): default both"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.rows, args.pairs, args.small_pairs, args.rounds = 100_000, 4, 2, 2
    about = machine()
    began = time.monotonic()
    notes: list[str] = []
    refresh: RefreshOutcome | None = None
    verdicts: VerdictOutcome | None = None
    speed: SpeedOutcome | None = None
    with tempfile.TemporaryDirectory(prefix="bench-monitoring-") as tmp:
        workdir = Path(tmp)
        parts = set(args.parts.split(","))
        if "refresh" in parts:
            refresh = measure_refresh(args, workdir)
        agreements: list[Agreement] = []
        python = None
        if "drift" in parts:
            print("drift statistics against scipy", flush=True)
            pair, agreements = scipy_pairs(args)
            python = peer_venv(EVIDENTLY_VENV, EVIDENTLY_SPEC, "Evidently")
            if python is None:
                notes.append("Evidently could not be installed: parts 3 and 4 skipped")
        if python is not None:
            evidently = Evidently(python, workdir)
            try:
                print("verdicts against Evidently's DataDriftPreset", flush=True)
                verdicts = measure_verdicts(args, evidently)
                print(f"  {verdicts.agree}/{verdicts.columns} agree", flush=True)
                print("speed against Evidently", flush=True)
                speed = measure_speed(args, evidently, *pair)
            except RuntimeError as exc:
                notes.append(one_line(str(exc), 800))
            finally:
                evidently.close()
    items = [
        f"Machine: {about}; load average at the end {load_average()};"
        f" whole run {time.monotonic() - began:.0f} s",
        f"Versions: {versions(*PACKAGES)}; Evidently ({' '.join(EVIDENTLY_SPEC)}) in its own venv, telemetry"
        f" off; modelport from {source()}",
        f"{args.records_per_request} record(s) a request; labels in a Delta table joined on the request id;"
        f" windows of the drift pairs: {args.window_rows:,} rows (and {SMALL_ROWS}); speed: {args.rounds}"
        " interleaved rounds, order rotating",
    ]
    publish(
        header("monitoring (issue 20)", items, "monitoring.py", argv),
        render(args, refresh, agreements, verdicts, speed, notes),
        args.out,
    )


if __name__ == "__main__":
    main()
