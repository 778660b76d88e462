"""Data profiling and drift of Delta tables, as Databricks Lakehouse Monitoring computes them.

The engine (:func:`compute`) turns a DuckDB relation into the rows of the ``_profile_metrics`` and
``_drift_metrics`` tables; the monitor service decides what to read, when, and where to write.
"""

from modelport.monitoring.engine import (
    DRIFT_SCHEMA,
    PROFILE_SCHEMA,
    CustomMetric,
    ProfileSpec,
    Window,
    canonical_granularity,
    compute,
    windows_touched,
)

__all__ = [
    "DRIFT_SCHEMA",
    "PROFILE_SCHEMA",
    "CustomMetric",
    "ProfileSpec",
    "Window",
    "canonical_granularity",
    "compute",
    "windows_touched",
]
