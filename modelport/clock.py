"""Wall-clock time in the units the Databricks API uses on the wire."""

from __future__ import annotations

import time


def now_ms() -> int:
    """Milliseconds since the epoch (UTC)."""
    return time.time_ns() // 1_000_000
