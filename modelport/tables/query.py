"""SQL over the inference and usage tables, with DuckDB, by their three-part names.

:func:`query` finds every Delta table under a root (a folder ``<root>/<catalog>/<schema>/<table>``
holding ``_delta_log``) and runs the SQL against them::

    columns, rows = query("SELECT requester, count(*) FROM system.serving.endpoint_usage GROUP BY 1", root)
    query("SELECT request, response FROM main.default.chat_payload WHERE status_code >= 500", root)

DuckDB reserves the catalog names ``system`` and ``main``, so the tables cannot be attached as real
catalogs. Instead each table is registered as a view named by its whole three-part name
(``"system.serving.endpoint_usage"``) and every unquoted or quoted ``catalog.schema.table`` reference to
a known table in the SQL (outside string literals and comments) is rewritten to that view's name. Names
are matched case-insensitively; ``a.b.c`` that names no table found is left alone.

The connection is in-memory, in UTC, with file-system access switched off once the tables are
registered (the SQL can read the tables and nothing else). Which tables are registered is the
caller's choice (``tables=``): a table left out cannot be read, whatever the SQL says. A
*row filter* (``row_filters={name: (column, value)}``) registers only the rows whose column
equals the value (a filtered Arrow dataset: DuckDB never sees the other rows). When DuckDB
cannot resolve a table, ``missing`` is called with the three-part names the SQL uses that are
not registered (DuckDB's own parser finds them), so that the caller can say why.

``prepare`` (optional) rewrites the statement first and may register functions on the
connection (``ai_query``: ``batch/ai_query.py``, injected by the caller: this module knows
nothing of the data plane); it returns the SQL and a callable giving the error that failed the
query inside those functions, raised as itself instead of DuckDB's wrapped text.

Results come back through Arrow: timestamps as timezone-aware ``datetime`` (UTC), dates as
``date``, maps as ``dict``.

:func:`usage_summary` totals ``system.serving.endpoint_usage`` by user, endpoint or day (what
``modelport usage`` prints).
"""

from __future__ import annotations

import datetime as dt
import decimal
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
from deltalake import DeltaTable

from modelport.errors import InvalidParameterValue
from modelport.tables.names import USAGE_TABLE_NAME, is_uri

__all__ = [
    "Prepare",
    "RowFilter",
    "connect",
    "discover_tables",
    "json_cell",
    "query",
    "referenced_names",
    "rewrite_table_names",
    "unresolved_tables",
    "usage_summary",
]


def json_cell(value: Any) -> Any:
    """A table cell (or a row, or rows) as JSON carries it: times and dates as ISO 8601, decimals
    as floats, bytes as UTF-8 text; lists and maps cell by cell."""
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, list | tuple):
        return [json_cell(v) for v in value]
    if isinstance(value, dict):
        return {str(k): json_cell(v) for k, v in value.items()}
    return value


#: ``(column, value)``: keep only the rows whose ``column`` equals ``value``.
RowFilter = tuple[str, str]
#: ``(connection, sql) -> (sql, failure)``: see the module docstring.
Prepare = Callable[[duckdb.DuckDBPyConnection, str], tuple[str, Callable[[], Exception | None]]]

_NAME_PART = re.compile(r"^[a-z0-9_]+\Z")
_IDENT = r'(?:[A-Za-z_][A-Za-z0-9_$]*|"(?:[^"]|"")+")'
_TOKEN = re.compile(
    rf"""
      (?P<string>'(?:[^']|'')*'?)
    | (?P<comment>--[^\n]*|/\*.*?(?:\*/|\Z))
    | (?P<name>{_IDENT}\.{_IDENT}\.{_IDENT})
    | (?P<ident>{_IDENT})
    | (?P<other>.)
    """,
    re.S | re.X,
)


def discover_tables(root: str) -> dict[str, str]:
    """Three-part name -> URI of each Delta table at ``<root>/<catalog>/<schema>/<table>``.

    ``root`` is a local folder or a URI that pyarrow's file systems read (``s3://``, ``gs://``...,
    with credentials from the environment). A missing root has no tables. Folders whose names are not
    valid name parts are ignored.
    """
    if is_uri(root):
        fs, base = pafs.FileSystem.from_uri(root)
        prefix = root.split("://", 1)[0] + "://"
    else:
        fs, base, prefix = pafs.LocalFileSystem(), str(Path(root).expanduser().resolve()), ""
    base = base.rstrip("/")
    found: dict[str, str] = {}

    def dirs(path: str) -> list[str]:
        try:
            infos = fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
        except (FileNotFoundError, NotADirectoryError):
            return []
        return sorted(i.base_name for i in infos if i.type == pafs.FileType.Directory)

    for catalog in dirs(base):
        for schema in dirs(f"{base}/{catalog}"):
            for table in dirs(f"{base}/{catalog}/{schema}"):
                parts = (catalog, schema, table)
                if not all(_NAME_PART.match(p) for p in parts):
                    continue
                path = f"{base}/{catalog}/{schema}/{table}"
                if fs.get_file_info(f"{path}/_delta_log").type == pafs.FileType.Directory:
                    found[".".join(parts)] = prefix + path
    return found


def _unquote(part: str) -> str:
    if part.startswith('"'):
        return part[1:-1].replace('""', '"').lower()
    return part.lower()


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def rewrite_table_names(sql: str, names: Sequence[str] | set[str]) -> str:
    """``sql`` with each ``catalog.schema.table`` reference to one of ``names`` made a quoted view name.

    Literals, comments and names not in ``names`` are left as they are.
    """
    known = {n.lower() for n in names}
    out: list[str] = []
    for m in _TOKEN.finditer(sql):
        text = m.group(0)
        if m.lastgroup == "name":
            parts = re.findall(_IDENT, text)
            full = ".".join(_unquote(p) for p in parts)
            if len(parts) == 3 and full in known:
                text = _quote(full)
        out.append(text)
    return "".join(out)


def referenced_names(sql: str) -> set[str]:
    """The lower-case names a statement may read a table by: each ``catalog.schema.table``
    (quoted or not) and each quoted identifier, outside string literals and comments."""
    out: set[str] = set()
    for m in _TOKEN.finditer(sql):
        if m.lastgroup == "name":
            out.add(".".join(_unquote(p) for p in re.findall(_IDENT, m.group(0))))
        elif m.lastgroup == "ident" and m.group(0).startswith('"'):
            out.add(_unquote(m.group(0)))
    return out


def connect(
    root: str,
    *,
    tables: Mapping[str, str] | None = None,
    storage_options: Mapping[str, str] | None = None,
    row_filters: Mapping[str, RowFilter] | None = None,
) -> tuple[duckdb.DuckDBPyConnection, set[str]]:
    """An in-memory DuckDB connection with the tables under ``root`` registered; and their names.

    ``tables`` (three-part name -> URI) replaces discovery: only those are registered.
    ``row_filters`` registers only the matching rows of the tables it names.
    """
    found = dict(tables) if tables is not None else discover_tables(root)
    filters = {k.lower(): v for k, v in (row_filters or {}).items()}
    con = duckdb.connect(":memory:")
    con.execute("SET TimeZone = 'UTC'")
    # Keep count of progress for query_progress() (the SQL route's progress lines); print none.
    con.execute("SET enable_progress_bar = true")
    con.execute("SET enable_progress_bar_print = false")
    opts = dict(storage_options) if storage_options else None
    for name, uri in found.items():
        dataset = DeltaTable(uri, storage_options=opts).to_pyarrow_dataset()
        row_filter = filters.get(name.lower())
        if row_filter is not None:
            column, value = row_filter
            dataset = dataset.filter(pc.field(column) == value)
        con.register(name.lower(), dataset)
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")
    return con, {n.lower() for n in found}


def _rows(table: pa.Table) -> list[tuple[Any, ...]]:
    columns = [col.to_pylist(maps_as_pydicts="strict") for col in table.columns]
    return list(zip(*columns, strict=True)) if columns else []


def unresolved_tables(con: duckdb.DuckDBPyConnection, sql: str, registered: set[str]) -> set[str]:
    """The three-part names (lower-case) ``sql`` reads that are not in ``registered`` (the
    names registered on ``con``).

    DuckDB's parser lists the tables; a quoted name holding two dots counts as three parts.
    DuckDB binds the query to list them, so where binding fails for another reason (a column
    that is not there), every ``a.b.c`` outside literals and comments is taken instead. Call it
    on a connection with external access off (binding reaches table functions).
    """
    try:
        listed = list(con.get_table_names(sql, qualified=True))
    except duckdb.Error:
        listed = [m.group(0) for m in _TOKEN.finditer(sql) if m.lastgroup in ("name", "ident")]
    out: set[str] = set()
    for entry in listed:
        m = re.match(rf"\s*({_IDENT}(?:\.{_IDENT})*)", entry)
        if m is None:
            continue
        full = ".".join(_unquote(p) for p in re.findall(_IDENT, m.group(1)))
        if full.count(".") == 2 and full not in registered:
            out.add(full)
    return out


def query(
    sql: str,
    root: str,
    params: Sequence[Any] | Mapping[str, Any] | None = None,
    *,
    tables: Mapping[str, str] | None = None,
    storage_options: Mapping[str, str] | None = None,
    row_filters: Mapping[str, RowFilter] | None = None,
    missing: Callable[[set[str]], None] | None = None,
    prepare: Prepare | None = None,
) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Run ``sql`` (DuckDB dialect) over the Delta tables under ``root``; return (columns, rows).

    Tables are named by their three-part names (``system.serving.endpoint_usage``,
    ``main.default.chat_payload``). ``params`` binds ``?``/``$name`` placeholders. ``tables``
    and ``row_filters``: see :func:`connect`; of those, only the tables the SQL names
    (:func:`referenced_names`) are registered. When DuckDB cannot resolve a table, ``missing``
    (if given) is called first with :func:`unresolved_tables` and may raise. Raises
    :class:`~modelport.errors.InvalidParameterValue` when DuckDB rejects the SQL (the message says why).
    ``prepare``: see the module docstring.
    """
    found = dict(tables) if tables is not None else discover_tables(root)
    # Only the tables the SQL names are opened: opening a large table's Delta log costs time
    # (the audit page's query need not pay for the usage table's million rows).
    named = referenced_names(sql)
    found = {name: uri for name, uri in found.items() if name.lower() in named}
    con, names = connect(root, tables=found, storage_options=storage_options, row_filters=row_filters)
    failure: Callable[[], Exception | None] = lambda: None  # noqa: E731
    try:
        if prepare is not None:
            sql, failure = prepare(con, sql)
        rewritten = rewrite_table_names(sql, names)
        try:
            rel = con.sql(rewritten, params=params)
        except duckdb.CatalogException as exc:
            if missing is not None:
                missing(unresolved_tables(con, rewritten, names))
            raise InvalidParameterValue(f"Query failed: {exc}") from exc
        except duckdb.Error as exc:
            raise (failure() or InvalidParameterValue(f"Query failed: {exc}")) from exc
        if rel is None:
            return [], []
        try:
            result = rel.to_arrow_table()
        except duckdb.Error as exc:
            raise (failure() or InvalidParameterValue(f"Query failed: {exc}")) from exc
        return list(result.column_names), _rows(result)
    finally:
        con.close()


_SUMMARY_KEYS = {
    "user": "coalesce(requester, '')",
    "endpoint": "endpoint_name",
    "day": "date",
}


def _since(since: dt.date | dt.datetime | str | None) -> dt.datetime | None:
    if since is None:
        return None
    if isinstance(since, str):
        try:
            since = dt.datetime.fromisoformat(since)
        except ValueError:
            raise InvalidParameterValue(f"since must be an ISO date or time; got {since!r}.") from None
    if isinstance(since, dt.datetime):
        return since if since.tzinfo else since.replace(tzinfo=dt.UTC)
    if isinstance(since, dt.date):
        return dt.datetime(since.year, since.month, since.day, tzinfo=dt.UTC)
    raise InvalidParameterValue(f"since must be a date or a datetime; got {type(since).__name__}.")


def usage_summary(
    root: str,
    by: Literal["user", "endpoint", "day"] = "user",
    since: dt.date | dt.datetime | str | None = None,
    *,
    storage_options: Mapping[str, str] | None = None,
    row_filter: RowFilter | None = None,
) -> list[dict[str, Any]]:
    """Totals of ``system.serving.endpoint_usage`` grouped ``by`` user, endpoint or day, from ``since``.

    Each row: ``{<by>: key, "requests", "input_tokens", "output_tokens", "total_tokens", "errors",
    "estimated"}`` (``errors``: status 400 and up; ``estimated``: requests whose token counts modelport
    estimated), ordered by key. ``since`` (a ``date``, a ``datetime``, naive meaning UTC, or ISO text)
    keeps requests at or after it. ``row_filter`` totals only the matching rows (one
    requester's). No usage table yet: no rows.
    """
    if by not in _SUMMARY_KEYS:
        raise InvalidParameterValue(f"by must be one of {', '.join(_SUMMARY_KEYS)}; got {by!r}.")
    start = _since(since)
    tables = discover_tables(root)
    if USAGE_TABLE_NAME not in tables:
        return []
    where = ""
    params: list[Any] = []
    if start is not None:
        where = "WHERE date >= ? AND request_time >= ?"
        params = [start.astimezone(dt.UTC).date(), start]
    sql = f"""
        SELECT {_SUMMARY_KEYS[by]} AS "{by}",
               count(*) AS requests,
               coalesce(sum(input_token_count), 0)::BIGINT AS input_tokens,
               coalesce(sum(output_token_count), 0)::BIGINT AS output_tokens,
               (coalesce(sum(input_token_count), 0) + coalesce(sum(output_token_count), 0))::BIGINT
                   AS total_tokens,
               count(*) FILTER (WHERE status_code >= 400) AS errors,
               count(*) FILTER (WHERE tokens_estimated) AS estimated
        FROM {USAGE_TABLE_NAME} {where}
        GROUP BY 1 ORDER BY 1
    """
    usage = {USAGE_TABLE_NAME: tables[USAGE_TABLE_NAME]}
    filters = {USAGE_TABLE_NAME: row_filter} if row_filter is not None else None
    columns, rows = query(
        sql, root, params, tables=usage, storage_options=storage_options, row_filters=filters
    )
    return [dict(zip(columns, row, strict=True)) for row in rows]
