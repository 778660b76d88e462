"""One refresh of a monitor: read the monitored table, compute its metrics, write the metrics tables.

The monitored table is read with DuckDB over its Delta files (as :mod:`modelport.tables.query`
does). An inference table is unpacked first (:mod:`modelport.monitoring.unpack`: live traffic
only unless the monitor's ``include_traffic`` says otherwise, one row per predicted record);
any other table is read as it is. The ``labels`` table, when the monitor names one, is LEFT
JOINed on its key columns (a key with several labels keeps one of them), so that the model
quality metrics appear once labels exist. The baseline table is read the same way (unpacked if
it is an inference table). Then :func:`modelport.monitoring.compute` computes the profile and
drift rows and :mod:`modelport.monitoring.output` writes them.

**Incremental refreshes.** A refresh after a successful one recomputes only the windows that
changed since: those holding rows of the table's data files added since the Delta version the
last refresh read (inference tables are append-only; a table whose files were rewritten or
removed, by OPTIMIZE or an overwrite, is refreshed in full), those holding rows whose labels
arrived since (when the labels are keyed by a column of the table itself, else in full), and
the window right after each (its consecutive drift compares with it). Only the rows of those
windows, and of the windows around them, are read and unpacked. A change of the monitor
(``monitor_version``) or of the baseline table, or a Snapshot monitor, refreshes in full.

Blocking (Delta, DuckDB, numpy): run it on a thread. ``cancelled()`` is asked between the
steps; a cancelled refresh writes nothing.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.fs as pafs
from deltalake import DeltaTable

from modelport.errors import Cancelled, InvalidParameterValue, ResourceDoesNotExist
from modelport.monitoring import CustomMetric, ProfileSpec, Window, compute, windows_touched
from modelport.monitoring.granularity import granularity
from modelport.monitoring.output import metrics_table_names, write_metrics
from modelport.monitoring.unpack import (
    BOOKKEEPING_COLUMNS,
    READ_COLUMNS,
    is_inference_table,
    payload_kind,
    traffic_predicate,
    unpack,
)
from modelport.spec.monitor import MonitorConfig
from modelport.tables.names import split_name, table_uri

__all__ = ["RefreshResult", "TableReader", "profiled_columns", "refresh_monitor"]

#: Rows of an inference table unpacked to learn its columns (a monitor's checks).
SAMPLE_ROWS = 500
_NEW = "new_rows"


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _ts_literal(moment: dt.datetime) -> str:
    return f"TIMESTAMPTZ '{moment.astimezone(dt.UTC).isoformat()}'"


def _between(moment_sql: str, start: dt.datetime, end: dt.datetime) -> str:
    return f"{moment_sql} >= {_ts_literal(start)} AND {moment_sql} < {_ts_literal(end)}"


def _ms(moment: dt.datetime) -> int:
    return int(moment.timestamp() * 1000)


class TableReader:
    """One table of the tables root, as a monitor reads it (see the module docstring)."""

    def __init__(self, root: str, name: str, include_traffic: Sequence[str] = ()) -> None:
        self.root = root
        self.name = ".".join(split_name(name))
        self.uri = table_uri(root, *split_name(name))
        self.include = tuple(include_traffic)
        if not DeltaTable.is_deltatable(self.uri):
            raise ResourceDoesNotExist(f"Table '{self.name}' has no rows yet (no Delta table at {self.uri}).")
        self.delta = DeltaTable(self.uri)
        self.version = int(self.delta.version())
        self.dataset = self.delta.to_pyarrow_dataset()
        self.inference = is_inference_table(self.dataset.schema.names)
        self._kind: str | None = None

    def register(self, con: duckdb.DuckDBPyConnection, view: str) -> None:
        con.register(view, self.dataset)

    def kind(self, con: duckdb.DuckDBPyConnection, view: str) -> str:
        """``custom``, ``llm`` (inference tables) or ``table``."""
        if self._kind is None:
            if not self.inference:
                self._kind = "table"
            else:
                answers = con.sql(
                    f"SELECT response FROM {_quote(view)} "
                    "WHERE status_code = 200 AND response IS NOT NULL LIMIT 20"
                ).fetchall()
                self._kind = payload_kind(r[0] for r in answers)
        return self._kind

    def rows(
        self,
        con: duckdb.DuckDBPyConnection,
        view: str,
        where: str = "TRUE",
        limit: int | None = None,
    ) -> pa.Table:
        """The monitor's rows of the table registered as ``view`` matching ``where`` (SQL over
        the table's own columns): unpacked for an inference table."""
        tail = f" LIMIT {limit}" if limit else ""
        if not self.inference:
            return con.sql(f"SELECT * FROM {_quote(view)} WHERE {where}{tail}").to_arrow_table()
        kind = self.kind(con, view)
        present = set(self.dataset.schema.names)
        columns = ", ".join(_quote(c) for c in READ_COLUMNS if c in present)
        traffic = traffic_predicate(self.include, kind)
        sql = f"SELECT {columns} FROM {_quote(view)} WHERE ({traffic}) AND ({where})"
        return unpack(con.sql(sql + tail).to_arrow_table(), kind)

    def schema(self) -> pa.Schema:
        """The monitor's columns (an inference table's from a sample of its rows)."""
        if not self.inference:
            return self.dataset.schema
        con = duckdb.connect(":memory:")
        try:
            self.register(con, "payload")
            return self.rows(con, "payload", limit=SAMPLE_ROWS).schema
        finally:
            con.close()

    def files(self, version: int | None = None) -> set[str]:
        table = self.delta if version is None else DeltaTable(self.uri, version=version)
        return set(table.file_uris())

    def files_dataset(self, files: Sequence[str]) -> pads.Dataset:
        """The rows of some of the table's data files (without the partition columns)."""
        fs, first = pafs.FileSystem.from_uri(files[0])
        paths = [first] + [pafs.FileSystem.from_uri(f)[1] for f in files[1:]]
        partitions = set(self.delta.metadata().partition_columns)
        schema = pa.schema([f for f in self.dataset.schema if f.name not in partitions])
        return pads.dataset(paths, schema=schema, format="parquet", filesystem=fs)


def profiled_columns(config: MonitorConfig, columns: Sequence[str], inference: bool, kind: str) -> list[str]:
    """The columns a monitor profiles: every column but the timestamp, the model id, the label
    keys and (inference tables) the query's bookkeeping, latency kept (and status for LLMs)."""
    skip = {config.timestamp_col}
    if config.inference_log is not None:
        skip.add(config.inference_log.model_id_col)
    if config.labels is not None:
        skip.update(config.labels.key_cols)
    if inference:
        skip.update(c for c in BOOKKEEPING_COLUMNS if c not in ("execution_time_ms", "status_code"))
        if kind != "llm":
            skip.add("status_code")
    return [c for c in columns if c not in skip]


@dataclass
class RefreshResult:
    """What a refresh did: its message, the state the next refresh starts from, and the profile
    and drift rows it computed (None when it computed none), which the alerts are evaluated on."""

    message: str
    state: dict[str, Any]
    profile: pa.Table | None = None
    drift: pa.Table | None = None


def _spec(config: MonitorConfig, columns: Sequence[str], inference: bool, kind: str) -> ProfileSpec:
    log = config.inference_log
    label = log.label_col if log is not None and log.label_col in columns else None
    return ProfileSpec(
        profile_type=config.profile_type,
        timestamp_col=config.timestamp_col,
        granularities=config.granularities,
        columns=tuple(profiled_columns(config, columns, inference, kind)),
        problem_type=log.problem_type if log is not None else None,
        prediction_col=log.prediction_col if log is not None else None,
        label_col=label,
        model_id_col=log.model_id_col if log is not None else None,
        prediction_proba_col=log.prediction_proba_col if log is not None else None,
        slicing_exprs=config.slicing_exprs,
        custom_metrics=tuple(
            CustomMetric(m.name, m.definition, m.input_columns, m.output_data_type, m.type)
            for m in config.custom_metrics
        ),
    )


class _Refresh:
    def __init__(
        self,
        root: str,
        table_name: str,
        config: MonitorConfig,
        monitor_version: int,
        state: dict[str, Any],
        cancelled: Callable[[], bool],
    ) -> None:
        self.root = root
        self.table_name = table_name
        self.config = config
        self.monitor_version = monitor_version
        self.state = state
        self.cancelled = cancelled
        self.con = duckdb.connect(":memory:")
        self.con.execute("SET TimeZone = 'UTC'")
        self.con.execute("SET enable_progress_bar_print = false")  # nothing on the server's stderr

    def check(self) -> None:
        if self.cancelled():
            raise Cancelled("The refresh was canceled.")

    # ---- reading -------------------------------------------------------------------------------
    def _labelled(self, rows: pa.Table, labels: TableReader | None, *, baseline: bool = False) -> pa.Table:
        """``rows`` with the labels table's label column LEFT JOINed on its keys (a baseline
        without the key columns is left as it is: it may hold labels of its own)."""
        log = self.config.inference_log
        if labels is None or log is None or log.label_col is None or self.config.labels is None:
            return rows
        keys, label = self.config.labels.key_cols, log.label_col
        missing = [c for c in (*keys, label) if c not in labels.dataset.schema.names]
        if missing:
            raise InvalidParameterValue(
                f"Labels table '{labels.name}' has no column(s) {', '.join(missing)}."
            )
        absent = [k for k in keys if k not in rows.column_names]
        if absent and baseline:
            return rows
        if absent:
            raise InvalidParameterValue(
                f"The monitored rows have no column(s) {', '.join(absent)} to join the labels on."
            )
        self.con.register("_rows", rows)
        labels.register(self.con, "_labels")
        key_list = ", ".join(_quote(k) for k in keys)
        kept = "* EXCLUDE (" + _quote(label) + ")" if label in rows.column_names else "*"
        sql = (
            f"SELECT r.{kept}, l.{_quote(label)} FROM _rows r LEFT JOIN "
            f"(SELECT {key_list}, any_value({_quote(label)}) AS {_quote(label)} FROM _labels "
            f"GROUP BY {key_list}) l USING ({key_list})"
        )
        out = self.con.sql(sql).to_arrow_table()
        self.con.unregister("_rows")
        return out

    def _range_where(self, reader: TableReader, start: dt.datetime, end: dt.datetime) -> str:
        """SQL over the table's own columns keeping rows in ``[start, end)``."""
        if reader.inference:
            return (
                f"timestamp_ms >= {_ms(start)} AND timestamp_ms < {_ms(end)} "
                f"AND date >= DATE '{start.date().isoformat()}' AND date <= DATE '{end.date().isoformat()}'"
            )
        ts = _quote(str(self.config.timestamp_col))
        field = reader.dataset.schema.field(str(self.config.timestamp_col))
        if pa.types.is_integer(field.type):
            return f"{ts} >= {_ms(start)} AND {ts} < {_ms(end)}"
        return _between(f"CAST({ts} AS TIMESTAMPTZ)", start, end)

    def _changed_rows(self, reader: TableReader, labels: TableReader | None) -> pa.Table | None:
        """The timestamps of the rows that changed since the last refresh, as a one-column
        table named like the timestamp column; None when the table must be refreshed in full."""
        last = self.state.get("table_version")
        if last is None or last > reader.version:
            return None
        try:
            added = reader.files() - reader.files(int(last))
            if reader.files(int(last)) - reader.files():
                return None  # files rewritten or removed: refresh in full
        except Exception:
            return None  # the version is gone (vacuumed log): refresh in full
        ts_col = str(self.config.timestamp_col)
        parts: list[pa.Table] = []
        if added:
            self.con.register("_added", reader.files_dataset(sorted(added)))
            if reader.inference:
                kind = reader.kind(self.con, "payload")
                sql = (
                    f"SELECT to_timestamp(timestamp_ms / 1000.0) AS {_quote(ts_col)} FROM _added "
                    f"WHERE {traffic_predicate(reader.include, kind)}"
                )
            else:
                sql = f"SELECT {_quote(ts_col)} FROM _added"
            parts.append(self.con.sql(sql).to_arrow_table())
        if labels is not None and self.config.labels is not None:
            last_labels = self.state.get("labels_version")
            if last_labels is None or last_labels > labels.version:
                return None
            try:
                new_labels = labels.files() - labels.files(int(last_labels))
            except Exception:
                return None
            if new_labels:
                keys = [k for k in self.config.labels.key_cols if k in reader.dataset.schema.names]
                if not keys:
                    return None  # keyed on unpacked columns only: refresh in full
                self.con.register("_new_labels", labels.files_dataset(sorted(new_labels)))
                on = " AND ".join(f"p.{_quote(k)} = l.{_quote(k)}" for k in keys)
                moment = (
                    "to_timestamp(p.timestamp_ms / 1000.0)" if reader.inference else f"p.{_quote(ts_col)}"
                )
                sql = (
                    f"SELECT DISTINCT {moment} AS {_quote(ts_col)} FROM payload p "
                    f"SEMI JOIN _new_labels l ON {on}"
                )
                parts.append(self.con.sql(sql).to_arrow_table())
        if not parts:
            return pa.table({ts_col: pa.array([], pa.timestamp("us", tz="UTC"))})
        return pa.concat_tables(parts, promote_options="permissive")

    # ---- the refresh ---------------------------------------------------------------------------
    def run(self) -> RefreshResult:
        began = time.monotonic()
        config = self.config
        reader = TableReader(self.root, self.table_name, config.include_traffic)
        reader.register(self.con, "payload")
        kind = reader.kind(self.con, "payload")
        labels = TableReader(self.root, config.labels.table_name) if config.labels is not None else None
        baseline = (
            TableReader(self.root, config.baseline_table_name, config.include_traffic)
            if config.baseline_table_name
            else None
        )
        full = (
            self.state.get("monitor_version") != self.monitor_version
            or config.profile_type == "Snapshot"
            or (baseline.version if baseline else None) != self.state.get("baseline_version")
            or self.state.get("kind") != kind
        )
        changed = None if full else self._changed_rows(reader, labels)
        self.check()
        windows: list[Window] | None = None
        where = "TRUE"
        if changed is not None:
            if changed.num_rows == 0:
                return RefreshResult(
                    "No new rows or labels since the last refresh.",
                    self._state(reader, labels, baseline, kind),
                )
            self.con.register(_NEW, changed)
            probe = ProfileSpec("TimeSeries", config.timestamp_col, config.granularities, ())
            first = list(windows_touched(self.con, _NEW, probe, "TRUE"))
            if not first:
                return RefreshResult(
                    "No new rows or labels since the last refresh.",
                    self._state(reader, labels, baseline, kind),
                )
            # Read the windows around the changed ones too: a window's consecutive drift
            # compares it with the one before, and the one after compares with it.
            span = max(granularity(w.granularity).end_of(w.start) - w.start for w in first)
            start = min(w.start for w in first) - span
            end = max(w.end for w in first) + span
            where = self._range_where(reader, start, end)
            windows = first
        rows = self._labelled(reader.rows(self.con, "payload", where), labels)
        self.check()
        self.con.register("monitored_rows", rows)
        spec = _spec(config, rows.column_names, reader.inference, kind)
        if windows is not None:
            windows = self._touched(spec, windows)
        baseline_view = None
        if baseline is not None:
            baseline.register(self.con, "baseline_payload")
            base_rows = self._labelled(baseline.rows(self.con, "baseline_payload"), labels, baseline=True)
            self.con.register("baseline_rows", base_rows)
            baseline_view = "baseline_rows"
        self.check()
        profile, drift = compute(
            self.con,
            "monitored_rows",
            spec,
            baseline=baseline_view,
            windows=windows,
            monitor_version=self.monitor_version,
            table_version=reader.version,
        )
        self.check()
        profile_name, drift_name = metrics_table_names(config.output_schema_name, self.table_name)
        write_metrics(self.root, profile_name, profile, windows)
        write_metrics(self.root, drift_name, drift, windows)
        counted = "every window" if windows is None else f"{len(windows)} window(s)"
        message = (
            f"Refreshed {counted} over {rows.num_rows} row(s) of version {reader.version} in "
            f"{time.monotonic() - began:.1f} s: {profile.num_rows} profile and {drift.num_rows} drift row(s)."
        )
        return RefreshResult(message, self._state(reader, labels, baseline, kind), profile, drift)

    def _touched(self, spec: ProfileSpec, first: list[Window]) -> list[Window]:
        """The windows to recompute: those holding changed rows, and the window after each."""
        finest = min(first, key=lambda w: w.end - w.start)
        ranges = [w for w in first if w.granularity == finest.granularity]
        ts = _quote(str(spec.timestamp_col))
        predicate = " OR ".join(f"({_between(f'CAST({ts} AS TIMESTAMPTZ)', w.start, w.end)})" for w in ranges)
        return list(windows_touched(self.con, "monitored_rows", spec, predicate or "FALSE"))

    def _state(
        self, reader: TableReader, labels: TableReader | None, baseline: TableReader | None, kind: str
    ) -> dict[str, Any]:
        return {
            "monitor_version": self.monitor_version,
            "table_version": reader.version,
            "labels_version": labels.version if labels is not None else None,
            "baseline_version": baseline.version if baseline is not None else None,
            "kind": kind,
        }

    def close(self) -> None:
        self.con.close()


def refresh_monitor(
    root: str,
    table_name: str,
    config: MonitorConfig,
    monitor_version: int,
    state: dict[str, Any],
    cancelled: Callable[[], bool] = lambda: False,
) -> RefreshResult:
    """Refresh the monitor of ``table_name`` (see the module docstring); ``state`` is what the
    last successful refresh returned (``{}`` for none). Raises :class:`Cancelled` when
    ``cancelled()`` turned true, a :class:`~modelport.errors.ModelportError` saying why it failed."""
    refresh = _Refresh(root, table_name, config, monitor_version, state, cancelled)
    try:
        return refresh.run()
    finally:
        refresh.close()
