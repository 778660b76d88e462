"""Evidently's data-drift report as a worker process for ``bench/monitoring.py``.

Runs in Evidently's own virtual environment (``bench/.venvs/evidently``, built by
``harness.peer_venv``), with telemetry off (``DO_NOT_TRACK``, which Evidently's telemetry reads,
and ``EVIDENTLY_DISABLE_TELEMETRY``). It imports nothing from modelport or the benchmarks.

Protocol: one JSON object a line on stdin, one answer a line on stdout.

- ``{"reference": path, "current": path, "numerical": [...], "categorical": [...]}``: the two
  Parquet files are read (not timed), then ``Report([DataDriftPreset()]).run(current, reference)``
  with a ``DataDefinition`` naming the column types is timed (``Dataset.from_pandas`` included).
  The answer: ``{"seconds": s, "count": n, "columns": {name: {"method", "threshold", "value",
  "drift"}}}``. ``drift`` is derived from the method as Evidently does: a p-value method
  (display name ending in ``p_value``) drifts when ``value < threshold``, a distance when
  ``value >= threshold``; ``count`` is the preset's own ``DriftedColumnsCount``, which the caller
  checks against the sum of the columns' verdicts.
- An empty line or end of input: exit.

Run: ``bench/.venvs/evidently/bin/python bench/peers/evidently_drift.py``.
"""

from __future__ import annotations

import json
import os
import sys
import time

os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("EVIDENTLY_DISABLE_TELEMETRY", "1")

import pandas as pd
from evidently import DataDefinition, Dataset, Report
from evidently.presets import DataDriftPreset


def drift_report(request: dict) -> dict:
    reference = pd.read_parquet(request["reference"])
    current = pd.read_parquet(request["current"])
    definition = DataDefinition(
        numerical_columns=list(request["numerical"]), categorical_columns=list(request["categorical"])
    )
    started = time.perf_counter()
    snapshot = Report([DataDriftPreset()]).run(
        Dataset.from_pandas(current, data_definition=definition),
        Dataset.from_pandas(reference, data_definition=definition),
    )
    seconds = time.perf_counter() - started
    columns: dict[str, dict] = {}
    count = None
    for metric in snapshot.dict()["metrics"]:
        config = metric["config"]
        kind = config.get("type", "")
        if kind.endswith(":ValueDrift"):
            method, threshold, value = config["method"], float(config["threshold"]), float(metric["value"])
            drift = value < threshold if method.endswith("p_value") else value >= threshold
            columns[config["column"]] = {
                "method": method,
                "threshold": threshold,
                "value": value,
                "drift": drift,
            }
        elif kind.endswith(":DriftedColumnsCount"):
            count = int(metric["value"]["count"])
    return {"seconds": seconds, "count": count, "columns": columns}


def main() -> None:
    for line in sys.stdin:
        if not line.strip():
            break
        try:
            answer = drift_report(json.loads(line))
        except Exception as exc:  # reported to the benchmark, which records it
            answer = {"error": f"{type(exc).__name__}: {exc}"}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
