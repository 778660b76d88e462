"""A monitor's metrics tables: ``{output_schema}.{table}_profile_metrics`` and
``{output_schema}.{table}_drift_metrics``, Delta tables under the tables root (Databricks' names).

A refresh writes each table in one commit: the rows of the windows it recomputed replace those
windows' rows (a window is its ``window.start``, ``window.end`` and ``granularity``; a drift row
belongs to its ``window``, not its ``window_cmp``), the others stay; rows without a window
(the baseline's profile, ``log_type`` BASELINE) are replaced by every refresh. A full refresh replaces
the whole table (and its schema: a custom metric added or removed by an update adds or drops
its column). The tables are small (a row per window, slice, model and column), so the rows
kept are read and written again rather than deleted in place: readers see the old table or the
new one, never a half-written refresh.

Blocking (Delta I/O): call it from a thread.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from deltalake import DeltaTable, write_deltalake

from modelport.errors import InvalidParameterValue
from modelport.tables.names import MAX_NAME_LENGTH, split_name, table_uri, validate_part

__all__ = ["metrics_table_names", "write_metrics"]

PROFILE_SUFFIX, DRIFT_SUFFIX = "_profile_metrics", "_drift_metrics"


def metrics_table_names(output_schema: str, table_name: str) -> tuple[str, str]:
    """``({schema}.{table}_profile_metrics, {schema}.{table}_drift_metrics)`` for a monitor of
    ``table_name`` writing to ``output_schema`` (``catalog.schema``; 400 when malformed)."""
    parts = output_schema.split(".") if isinstance(output_schema, str) else []
    if len(parts) != 2:
        raise InvalidParameterValue(
            f"Invalid value for 'output_schema_name': {output_schema!r} must be catalog.schema."
        )
    catalog = validate_part(parts[0], "output_schema_name's catalog")
    schema = validate_part(parts[1], "output_schema_name's schema")
    table = split_name(table_name)[2]
    if len(table) + len(PROFILE_SUFFIX) > MAX_NAME_LENGTH:
        raise InvalidParameterValue(f"Table name '{table}' is too long for its metrics tables' names.")
    return (
        f"{catalog}.{schema}.{table}{PROFILE_SUFFIX}",
        f"{catalog}.{schema}.{table}{DRIFT_SUFFIX}",
    )


def _window_keys(table: pa.Table) -> pa.ChunkedArray:
    """``"<granularity>|<start µs>|<end µs>"`` of each row."""
    window = table.column("window")
    parts = []
    for name in ("start", "end"):
        moment = pc.struct_field(window, name)
        micros = pc.cast(pc.cast(moment, pa.timestamp("us", tz="UTC")), pa.int64())
        parts.append(pc.cast(micros, pa.string()))
    granularity = pc.cast(table.column("granularity"), pa.string())
    return pc.binary_join_element_wise(granularity, parts[0], parts[1], "|")


def _key_of(window: Any) -> str:
    start = int(window.start.timestamp() * 1_000_000)
    end = int(window.end.timestamp() * 1_000_000)
    return f"{window.granularity}|{start}|{end}"


def write_metrics(root: str, name: str, rows: pa.Table, windows: Sequence[Any] | None) -> int:
    """Write ``rows`` to metrics table ``name`` under ``root``: replacing the rows of
    ``windows`` (engine :class:`~modelport.monitoring.engine.Window` values), or the whole
    table when ``windows`` is None. Returns the table's new Delta version."""
    uri = table_uri(root, *split_name(name))
    if windows is None or not DeltaTable.is_deltatable(uri):
        write_deltalake(uri, rows, mode="overwrite", schema_mode="overwrite")
        return int(DeltaTable(uri).version())
    current = DeltaTable(uri)
    old = current.to_pyarrow_table()
    if old.num_rows:
        replaced = pa.array(sorted({_key_of(w) for w in windows}), pa.string())
        kept = pc.invert(pc.is_in(_window_keys(old), value_set=replaced))
        # Rows without a window (the baseline's profile) are computed again by every refresh.
        old = old.filter(pc.and_kleene(kept, pc.is_valid(old.column("window"))))
    if old.num_rows and old.schema.names == rows.schema.names:
        with contextlib.suppress(pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
            rows = rows.cast(old.schema)
    merged = pa.concat_tables([old, rows], promote_options="permissive") if old.num_rows else rows
    write_deltalake(current, merged, mode="overwrite", schema_mode="overwrite")
    return int(DeltaTable(uri).version())
