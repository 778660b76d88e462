"""Delta tables read back, and the recorder process of the table tests (``tests/tables``)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
from deltalake import DeltaTable

__all__ = ["id_counts", "read_table", "recorder", "wait_rows"]

REPO = Path(__file__).resolve().parents[2]


def read_table(uri: str) -> pa.Table:
    """The whole Delta table at ``uri`` as Arrow (empty when there is none)."""
    if not DeltaTable.is_deltatable(uri):
        return pa.table({})
    return DeltaTable(uri).to_pyarrow_table()


def id_counts(uri: str, column: str) -> Counter[str]:
    """How many times each id occurs in ``column`` of the table at ``uri``."""
    table = read_table(uri)
    if table.num_columns == 0:
        return Counter()
    return Counter(table[column].to_pylist())


def wait_rows(path: Path, count: int, timeout: float = 30.0, **where: Any) -> list[dict[str, Any]]:
    """The rows of the Delta table at ``path`` once at least ``count`` match ``where`` (column ==
    value), polled until ``timeout`` seconds (an AssertionError then)."""
    deadline = time.monotonic() + timeout
    rows: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        if (path / "_delta_log").exists():
            rows = [
                r for r in read_table(str(path)).to_pylist() if all(r.get(k) == v for k, v in where.items())
            ]
            if len(rows) >= count:
                return rows
        time.sleep(0.3)
    raise AssertionError(f"{len(rows)} rows of {path.name} match {where} after {timeout} s, not {count}")


def recorder(root: str, spool: str, *args: str) -> subprocess.Popen[str]:
    """Start ``tests/tables/recorder.py`` (see there) with pipes for its output."""
    return subprocess.Popen(
        [sys.executable, "-m", "tests.tables.recorder", root, spool, *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
