"""The AI gateway's usage dashboard: ``system.serving.endpoint_usage`` totalled by any of several
keys at once, filtered, with latency percentiles, as rows or as CSV.

:func:`usage_report` answers what ``GET /api/2.0/modelport/usage?group_by=...`` and the console's
``#/usage`` page show::

    report = usage_report(root, UsageQuery(group_by=("endpoint", "day"), since=...), principals)
    report.rows    # [{"endpoint": "chat", "day": date(...), "requests": 12, ...}, ...]
    report.totals  # the same metrics over every matching request
    to_csv(report) # header line, then one line a row

Keys (:data:`KEYS`): ``endpoint``, ``user`` (the requester), ``group`` (a request counts once in
each group its requester is a direct member of; a requester in no group counts under ``null``),
``principal_type`` (``user``, ``service_principal``, or ``unknown`` for a requester the store no
longer knows), ``served_entity``, ``day`` (the ``date`` partition, UTC) and ``hour`` (UTC).
Filters: ``endpoint``, ``user``, ``served_entity``, ``group`` (requesters in that group),
``since`` (inclusive) and ``until`` (exclusive; a bare date means through the end of that day).
Metrics (:data:`METRICS`): requests, input/output/total tokens, errors (status 400 and up),
estimated (requests whose token counts modelport counted), latency p50 / avg / max in ms.

Who is in which group and which requesters are service principals come from the caller as plain
data (:class:`Principals`; the route reads the store): they are registered as two small Arrow
tables on the DuckDB connection beside the usage table. Every value from the request is a bound
parameter; the SQL text is built only from this module's own fragments (keys and metrics are
looked up in fixed tables). The ``date`` partition is filtered whenever a time bound is given,
so a time range reads only its days' files.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import duckdb
import pyarrow as pa
from deltalake import DeltaTable

from modelport.errors import InvalidParameterValue
from modelport.tables.names import USAGE_TABLE_NAME, is_uri
from modelport.tables.query import RowFilter, connect, discover_tables, json_cell

__all__ = [
    "FILTERS",
    "KEYS",
    "MAX_ROWS",
    "METRICS",
    "Principals",
    "UsageQuery",
    "UsageReport",
    "build_sql",
    "parse_keys",
    "parse_time",
    "to_csv",
    "usage_report",
]

#: Group-by keys: name -> SQL expression over the usage rows ``u``, the principals ``p`` and the
#: memberships ``m`` (joined only when the key or filter needs them).
KEYS: dict[str, str] = {
    "endpoint": "u.endpoint_name",
    "user": "coalesce(u.requester, '')",
    "group": "m.group_name",
    "principal_type": "coalesce(p.principal_type, 'unknown')",
    "served_entity": "coalesce(u.served_entity_name, '')",
    "day": "u.date",
    "hour": "date_trunc('hour', u.request_time)",
}

#: Metrics, in answer order: name -> SQL aggregate.
METRICS: dict[str, str] = {
    "requests": "count(*)",
    "input_tokens": "coalesce(sum(u.input_token_count), 0)::BIGINT",
    "output_tokens": "coalesce(sum(u.output_token_count), 0)::BIGINT",
    "total_tokens": "(coalesce(sum(u.input_token_count), 0)"
    " + coalesce(sum(u.output_token_count), 0))::BIGINT",
    "errors": "count(*) FILTER (WHERE u.status_code >= 400)",
    "estimated": "count(*) FILTER (WHERE u.tokens_estimated)",
    "latency_p50_ms": "round(quantile_cont(u.latency_ms, 0.5), 1)",
    "latency_avg_ms": "round(avg(u.latency_ms), 1)",
    "latency_max_ms": "max(u.latency_ms)",
}

#: Filters on a column's value: name -> SQL expression compared with ``= ?``.
FILTERS: dict[str, str] = {
    "endpoint": "u.endpoint_name",
    "user": "u.requester",
    "served_entity": "u.served_entity_name",
}

#: Most rows one report answers (``truncated`` says when more matched).
MAX_ROWS = 10_000
#: The column telling the totals row from the others in a statement built ``with_totals``.
TOTAL_FLAG = "__totals"

_PRINCIPALS_VIEW = "usage_report_principals"
_MEMBERS_VIEW = "usage_report_members"


@dataclass(frozen=True)
class Principals:
    """What the store knows of the requesters: ``kinds`` name -> ``user`` | ``service_principal``;
    ``groups`` name -> the groups it is a direct member of."""

    kinds: Mapping[str, str] = field(default_factory=dict)
    groups: Mapping[str, Sequence[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class UsageQuery:
    """One report's keys, filters and time range (``since`` inclusive, ``until`` exclusive, UTC)."""

    group_by: tuple[str, ...] = ()
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    endpoint: str | None = None
    user: str | None = None
    served_entity: str | None = None
    group: str | None = None

    def __post_init__(self) -> None:
        if self.group_by:
            parse_keys(",".join(self.group_by))
        if self.since and self.until and self.until <= self.since:
            raise InvalidParameterValue(
                f"'until' ({self.until.isoformat()}) must be after 'since' ({self.since.isoformat()})."
            )


@dataclass
class UsageReport:
    group_by: tuple[str, ...]
    rows: list[dict[str, Any]]
    totals: dict[str, Any]
    truncated: bool = False
    #: With ``series=`` (``day`` or ``hour``): the same filters totalled by that key alone (a chart).
    series_by: str | None = None
    series: list[dict[str, Any]] = field(default_factory=list)

    @property
    def columns(self) -> list[str]:
        return [*self.group_by, *METRICS]

    def answer(self) -> dict[str, Any]:
        """The route's JSON answer (dates and times as ISO 8601)."""
        out: dict[str, Any] = {
            "group_by": list(self.group_by),
            "columns": self.columns,
            "rows": json_cell(self.rows),
            "totals": json_cell(self.totals),
            "truncated": self.truncated,
        }
        if self.series_by is not None:
            out["series_by"] = self.series_by
            out["series"] = json_cell(self.series)
        return out


def parse_keys(text: str) -> tuple[str, ...]:
    """``"endpoint,day"`` -> ``("endpoint", "day")``; 400 on an unknown, empty or repeated key."""
    keys = tuple(k.strip() for k in text.split(","))
    for key in keys:
        if key not in KEYS:
            raise InvalidParameterValue(
                f"Unknown group_by key {key!r}: use one or more of {', '.join(KEYS)}, separated by commas."
            )
    if len(set(keys)) != len(keys):
        raise InvalidParameterValue(f"group_by repeats a key: {text!r}.")
    return keys


def parse_time(name: str, text: str | None, *, end: bool = False) -> dt.datetime | None:
    """An ISO date or date-time as a UTC ``datetime`` (naive means UTC). A bare date is its
    midnight, or with ``end`` the next midnight (so ``until=2026-01-31`` counts that whole day)."""
    if text is None or text == "":
        return None
    try:
        if len(text) == 10:
            day = dt.date.fromisoformat(text)
            start = dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)
            return start + dt.timedelta(days=1) if end else start
        value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidParameterValue(
            f"'{name}' must be an ISO 8601 date (YYYY-MM-DD) or date-time; got {text!r}."
        ) from None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def _row_conditions(q: UsageQuery, row_filter: RowFilter | None = None) -> tuple[list[str], list[Any]]:
    """The time range, the column filters and ``row_filter`` as SQL conditions on ``u``, with
    their parameters (the ``date`` partition first, so that a time range prunes files)."""
    where: list[str] = []
    params: list[Any] = []
    if q.since is not None:
        where += ["u.date >= ?", "u.request_time >= ?"]
        params += [q.since.astimezone(dt.UTC).date(), q.since]
    if q.until is not None:
        # Exclusive at the instant; the partition holding the instant itself may still match.
        last = q.until.astimezone(dt.UTC) - dt.timedelta(microseconds=1)
        where += ["u.date <= ?", "u.request_time < ?"]
        params += [last.date(), q.until]
    for name, column in FILTERS.items():
        value = getattr(q, name)
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    if row_filter is not None:
        column, value = row_filter
        if column not in _ROW_FILTER_COLUMNS:
            raise ValueError(f"no row filter on column {column!r}")
        where.append(f"u.{column} = ?")
        params.append(value)
    return where, params


def build_sql(
    q: UsageQuery,
    keys: Sequence[str] | None = None,
    *,
    source: str = f'"{USAGE_TABLE_NAME}"',
    source_params: Sequence[Any] = (),
    row_filter: RowFilter | None = None,
    with_totals: bool = False,
) -> tuple[str, list[Any]]:
    """The statement totalling the usage rows for ``q`` grouped by ``keys`` (default ``q.group_by``;
    ``()`` gives one row of totals), and its bound parameters in order.

    ``source``: the relation read (the usage table's view, or a ``read_parquet`` of its files
    taking ``source_params``); ``row_filter``: keep only the rows whose column has that value.
    ``with_totals`` (keys without ``group``, which counts a request more than once): the totals
    too, in the same pass, as the first row, its :data:`TOTAL_FLAG` column not 0.
    """
    keys = q.group_by if keys is None else tuple(keys)
    if with_totals and (not keys or "group" in keys):
        raise ValueError("with_totals needs keys, and not 'group'")
    where, params = _row_conditions(q, row_filter)
    params = [*source_params, *params]
    joins: list[str] = []
    if "principal_type" in keys:
        joins.append(f"LEFT JOIN {_PRINCIPALS_VIEW} p ON p.name = u.requester")
    if "group" in keys:
        kind = "JOIN" if q.group is not None else "LEFT JOIN"
        joins.append(f"{kind} {_MEMBERS_VIEW} m ON m.name = u.requester")
        if q.group is not None:
            where.append("m.group_name = ?")
            params.append(q.group)
    elif q.group is not None:
        where.append(f"u.requester IN (SELECT name FROM {_MEMBERS_VIEW} WHERE group_name = ?)")
        params.append(q.group)
    selected = [f'{KEYS[k]} AS "{k}"' for k in keys]
    selected += [f'{sql} AS "{name}"' for name, sql in METRICS.items()]
    if with_totals:
        selected.append(f'grouping({", ".join(KEYS[k] for k in keys)}) AS "{TOTAL_FLAG}"')
    text = f"SELECT {', '.join(selected)}\nFROM {source} u"
    if joins:
        text += "\n" + "\n".join(joins)
    if where:
        text += "\nWHERE " + " AND ".join(where)
    if keys:
        positions = ", ".join(str(i + 1) for i in range(len(keys)))
        group = f"GROUPING SETS (({positions}), ())" if with_totals else positions
        first = f'"{TOTAL_FLAG}" DESC, ' if with_totals else ""
        text += (
            f"\nGROUP BY {group}\nORDER BY {first}{positions} NULLS LAST\nLIMIT {MAX_ROWS + 1 + with_totals}"
        )
    return text, params


# ---- reading the table ----------------------------------------------------------------------------

#: The usage table's Delta logs, by path, kept between reports (brought up to date each time).
_LOGS: dict[str, DeltaTable] = {}
_LOGS_LOCK = threading.Lock()


def _local_files(uri: str, q: UsageQuery) -> list[str] | None:
    """The Parquet files of the local Delta table at ``uri`` that may hold rows of ``q``'s time
    range (by their ``date`` partition and their ``request_time`` statistics); None where DuckDB
    cannot read the table's files itself (a remote table, or one with reader features such as
    deletion vectors): the caller then reads it through pyarrow."""
    if is_uri(uri):
        return None
    with _LOGS_LOCK:
        log = _LOGS.get(uri)
        try:
            if log is not None:
                log.update_incremental()
        except Exception:  # e.g. the table was made anew under the same path: read it again
            log = None
        if log is None:
            log = _LOGS[uri] = DeltaTable(uri)
        if log.protocol().min_reader_version > 1:
            return None
        actions = pa.table(log.get_add_actions(flatten=True))
    paths = actions.column("path").to_pylist()
    keep = [True] * len(paths)
    since = q.since.astimezone(dt.UTC) if q.since else None
    until = q.until.astimezone(dt.UTC) if q.until else None

    def column(name: str) -> list[Any]:
        return actions.column(name).to_pylist() if name in actions.column_names else [None] * len(paths)

    if since or until:
        last_day = (until - dt.timedelta(microseconds=1)).date() if until else None
        days, lows, highs = column("partition.date"), column("min.request_time"), column("max.request_time")
        for i in range(len(paths)):
            # Delta keeps timestamp statistics in milliseconds, cut down: a file's newest row may
            # be up to 1 ms after its "max".
            newest = highs[i] + dt.timedelta(milliseconds=1) if highs[i] else None
            if since and ((days[i] and days[i] < since.date()) or (newest and newest < since)):
                keep[i] = False
            if until and ((days[i] and last_day and days[i] > last_day) or (lows[i] and lows[i] >= until)):
                keep[i] = False
    base = Path(uri)
    out = []
    for path, kept in zip(paths, keep, strict=True):
        if kept:
            local = unquote(path[len("file://") :] if path.startswith("file://") else path)
            out.append(str(local if Path(local).is_absolute() else base / local))
    return out


_DATABASE: list[duckdb.DuckDBPyConnection] = []


def _database() -> duckdb.DuckDBPyConnection:
    """The in-memory DuckDB database the reports of local tables run in, one connection
    (``cursor()``) a report: starting a database costs more than many a report."""
    with _LOGS_LOCK:
        if not _DATABASE:
            _DATABASE.append(duckdb.connect(":memory:"))
        return _DATABASE[0]


#: Columns a row filter may name (``table_acl.usage_filter`` filters on the requester).
_ROW_FILTER_COLUMNS = frozenset({"requester"})
#: The columns a report reads.
_COLUMNS = (
    "requester, endpoint_name, served_entity_name, status_code, input_token_count, "
    "output_token_count, tokens_estimated, latency_ms, request_time"
)


def _parquet_source(files: list[str]) -> tuple[str, list[Any]]:
    """A relation over ``files`` (Parquet) with the report's columns and ``date``, and its
    parameters. Files in ``date=YYYY-MM-DD`` folders (as deltalake writes a partitioned table)
    take the date from the folder (cheaper than computing it a row at a time); others get it
    from ``request_time`` (the partition is the UTC date of the request)."""
    if not files:
        empty = (
            "NULL::VARCHAR AS requester, NULL::VARCHAR AS endpoint_name, "
            "NULL::VARCHAR AS served_entity_name, "
            "NULL::INTEGER AS status_code, NULL::BIGINT AS input_token_count, "
            "NULL::BIGINT AS output_token_count, NULL::BOOLEAN AS tokens_estimated, "
            "NULL::BIGINT AS latency_ms, NULL::TIMESTAMPTZ AS request_time, NULL::DATE AS date"
        )
        return f"(SELECT {empty} WHERE false)", []
    if all("/date=" in f for f in files):
        hive = "hive_partitioning = true, hive_types = {'date': DATE}"
        return f"(SELECT {_COLUMNS}, date FROM read_parquet(?, union_by_name = true, {hive}))", [files]
    read = "read_parquet(?, union_by_name = true, hive_partitioning = false)"
    return f"(SELECT {_COLUMNS}, CAST(request_time AS DATE) AS date FROM {read})", [files]


def _principal_tables(principals: Principals) -> tuple[pa.Table, pa.Table]:
    kinds = pa.table(
        {
            "name": pa.array(list(principals.kinds), pa.string()),
            "principal_type": pa.array(list(principals.kinds.values()), pa.string()),
        }
    )
    pairs = [(name, group) for name, groups in principals.groups.items() for group in groups]
    members = pa.table(
        {
            "name": pa.array([n for n, _ in pairs], pa.string()),
            "group_name": pa.array([g for _, g in pairs], pa.string()),
        }
    )
    return kinds, members


def _empty_totals() -> dict[str, Any]:
    return {name: (None if name.startswith("latency") else 0) for name in METRICS}


def usage_report(
    root: str,
    q: UsageQuery,
    principals: Principals | None = None,
    *,
    storage_options: Mapping[str, str] | None = None,
    row_filter: RowFilter | None = None,
    series: str | None = None,
) -> UsageReport:
    """The usage rows under ``root`` matching ``q``, grouped by ``q.group_by``, and their totals.

    ``row_filter`` (``table_acl.usage_filter``) keeps only one requester's rows: the others are
    never read. ``series`` (``day`` or ``hour``) adds the matching rows totalled by that key
    alone, read on the same connection. No usage table yet: no rows, zero totals.
    """
    if series is not None and series not in ("day", "hour"):
        raise InvalidParameterValue(f"'series' must be day or hour; got {series!r}.")
    tables = discover_tables(root)
    if USAGE_TABLE_NAME not in tables:
        return UsageReport(q.group_by, [], _empty_totals(), series_by=series)
    uri = tables[USAGE_TABLE_NAME]
    files = _local_files(uri, q)
    source, source_params = f'"{USAGE_TABLE_NAME}"', []
    if files is None:  # through pyarrow (remote tables): the row filter applies to the dataset
        filters = {USAGE_TABLE_NAME: row_filter} if row_filter is not None else None
        con, _ = connect(
            root, tables={USAGE_TABLE_NAME: uri}, storage_options=storage_options, row_filters=filters
        )
        row_filter = None
    else:  # DuckDB reads the Parquet files of the time range itself, in parallel
        con = _database().cursor()
        con.execute("SET TimeZone = 'UTC'")
        source, source_params = _parquet_source(files)
    try:
        kinds, members = _principal_tables(principals or Principals())
        con.register(_PRINCIPALS_VIEW, kinds)
        con.register(_MEMBERS_VIEW, members)

        def run(keys: Sequence[str], with_totals: bool = False) -> list[dict[str, Any]]:
            sql, params = build_sql(
                q,
                keys,
                source=source,
                source_params=source_params,
                row_filter=row_filter,
                with_totals=with_totals,
            )
            return con.sql(sql, params=params).to_arrow_table().to_pylist()

        def split(found: list[dict[str, Any]]) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
            """(the totals row, the other rows) of a statement run ``with_totals``."""
            flagged = [row.pop(TOTAL_FLAG) != 0 for row in found]
            totals = [row for row, flag in zip(found, flagged, strict=True) if flag]
            return (totals[0] if totals else None), [
                row for row, flag in zip(found, flagged, strict=True) if not flag
            ]

        # As few passes over the rows as may be: the totals come with the series (or the rows).
        series_rows: list[dict[str, Any]] = []
        total: dict[str, Any] | None = None
        if series is not None:
            total, series_rows = split(run((series,), with_totals=True))
        if q.group_by == (series,):
            rows = list(series_rows)
        elif total is None and q.group_by and "group" not in q.group_by:
            total, rows = split(run(q.group_by, with_totals=True))
        else:
            rows = run(q.group_by) if q.group_by else []
        if total is None:
            total = run(())[0]
        truncated = len(rows) > MAX_ROWS
        series_rows = series_rows[:MAX_ROWS]
    finally:
        con.close()
    return UsageReport(q.group_by, rows[:MAX_ROWS], total, truncated, series, series_rows)


def _csv_cell(value: Any) -> Any:
    """A cell as CSV text; text that a spreadsheet would take for a formula gets a leading ``'``."""
    value = json_cell(value)
    if value is None:
        return ""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def to_csv(report: UsageReport) -> str:
    """The report as CSV: a header line of the column names, then one line a row (RFC 4180)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(report.columns)
    for row in report.rows:
        writer.writerow([_csv_cell(row.get(c)) for c in report.columns])
    return out.getvalue()
