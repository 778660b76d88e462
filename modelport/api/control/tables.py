"""modelport's own routes over the inference, usage and audit tables.

- ``GET /api/2.0/modelport/usage?by=user|endpoint|day[&since=YYYY-MM-DD]``: totals of
  ``system.serving.endpoint_usage`` (requests, input/output/total tokens, errors, estimated);
  the caller's own requests unless they hold SELECT on the table (admins hold it).

  The usage dashboard's form (``tables/usage_report.py``): ``group_by=`` one or more of
  endpoint, user, group, principal_type, served_entity, day, hour (comma-separated; ``by=`` is
  one key); filters ``endpoint``, ``user``, ``served_entity``, ``group``, ``since`` (inclusive)
  and ``until`` (exclusive; a bare date counts that whole day), ISO dates or date-times in UTC;
  ``series=day|hour`` adds the same rows totalled by day or hour (a chart). Answers
  ``{"group_by", "columns", "rows", "totals", "truncated", "scope"[, "series_by", "series"]}``
  (``scope``: ``all``, or ``own`` when only the caller's requests are counted), or with
  ``format=csv`` the rows as ``text/csv`` (a header line; an attachment). Any other parameter,
  key or a date that does not parse is 400 ``INVALID_PARAMETER_VALUE``. Only ``by`` and
  ``since`` given: the original answer ``{"by", "rows"}``.
- ``POST /api/2.0/modelport/tables/query`` ``{"sql": "..."}``: a read-only SQL query over the
  Delta tables with DuckDB, tables named ``catalog.schema.table``; answers
  ``{"columns": [...], "rows": [[...], ...]}``. Every user may query the tables they hold
  SELECT (or more) on and their own rows of the usage table; only those are registered in
  the query's DuckDB connection (``control/table_acl.py``), and a table out of reach is 403.
  Statements calling ``ai_query`` are Databricks SQL (``batch/sql_rewrite.py``); its requests
  are the caller's queries of the endpoints (``batch/served.py``).

  With ``Accept: application/x-ndjson`` the same query answers as JSON lines: a statement still
  running after half a second sends ``{"progress": {"percent", "elapsed_s"[, "ai_query_requests"]}}``
  every half second (``percent``: DuckDB's ``query_progress()``, null while unknown;
  ``ai_query_requests``: requests of its ``ai_query`` functions answered so far), then one last
  line, the answer above or ``{"error_code", "message"}``. An error once the lines have begun
  cannot change the status (200); before, it is the ordinary error answer, and a statement that
  ends within the half second answers its one line at once. A client that leaves interrupts it.

Both first write what this server has recorded to Delta (up to a few seconds), so an answer
given before the query is in its result; other servers' rows arrive within their
``--tables-flush-seconds``.

Not part of the Databricks API (which reads these tables through SQL warehouses).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator
from typing import Any

import duckdb
import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from modelport.api.body import json_object
from modelport.api.errors import error_event_body
from modelport.api.responses import json_response
from modelport.api.services import caller_of, services_of
from modelport.batch.ai_query import Endpoints, prepare
from modelport.batch.served import served_endpoints
from modelport.control.table_acl import TableAccess
from modelport.errors import InvalidParameterValue
from modelport.tables.query import json_cell, query, usage_summary
from modelport.tables.usage_report import Principals, UsageQuery, parse_keys, parse_time, to_csv, usage_report

__all__ = ["routes"]

BASE = "/api/2.0/modelport"
MAX_ROWS = 10_000
FLUSH_SECONDS = 10.0
NDJSON = "application/x-ndjson"
#: How often a streamed query sends a progress line (and how long it may take to answer at once).
PROGRESS_SECONDS = 0.5


async def _flushed(request: Request) -> None:
    """Write this server's recorded rows to Delta before reading the tables (read your writes)."""
    tables = services_of(request).tables
    await run_in_threadpool(tables.flush_now, time.monotonic() + FLUSH_SECONDS)


#: The parameters of the original usage totals (``by``, ``since``): its answer is kept for them.
_LEGACY_PARAMS = frozenset({"by", "since"})
#: Every parameter of the usage route.
_USAGE_PARAMS = frozenset(
    {"by", "group_by", "since", "until", "endpoint", "user", "served_entity", "group", "series", "format"}
)
#: Keys and filters that need the store's principals (groups and principal types).
_NEEDS_PRINCIPALS = frozenset({"group", "principal_type"})


def _usage_query(params: Any) -> tuple[UsageQuery, str | None, str]:
    """The dashboard's query from the request's parameters: (query, series, format)."""
    unknown = sorted(set(params) - _USAGE_PARAMS)
    if unknown:
        raise InvalidParameterValue(
            f"Unknown parameter {unknown[0]!r} for the usage report: use {', '.join(sorted(_USAGE_PARAMS))}."
        )
    for name in params:
        if len(params.getlist(name)) > 1:
            raise InvalidParameterValue(f"Parameter {name!r} is given more than once.")
    if "by" in params and "group_by" in params:
        raise InvalidParameterValue("Give 'group_by' or 'by', not both.")
    keys_text = params.get("group_by", params.get("by", ""))
    keys = parse_keys(keys_text) if keys_text else ()
    fmt = params.get("format", "json")
    if fmt not in ("json", "csv"):
        raise InvalidParameterValue(f"'format' must be json or csv; got {fmt!r}.")

    def value(name: str) -> str | None:
        return params.get(name) or None

    q = UsageQuery(
        group_by=keys,
        since=parse_time("since", value("since")),
        until=parse_time("until", value("until"), end=True),
        endpoint=value("endpoint"),
        user=value("user"),
        served_entity=value("served_entity"),
        group=value("group"),
    )
    return q, value("series"), fmt


def _principals(services: Any) -> Principals:
    records = services.db.principals.list()
    return Principals(
        kinds={r.name: r.kind for r in records if r.kind != "group"},
        groups={r.name: tuple(r.groups) for r in records if r.groups},
    )


async def usage(request: Request) -> Response:
    caller = caller_of(request)
    services = services_of(request)
    root = services.settings.tables_location
    params = request.query_params
    if not set(params) <= _LEGACY_PARAMS or params.get("by", "user") not in ("user", "endpoint", "day"):
        return await _usage_report(request)
    by = params.get("by", "user")  # any other key: the report above (an unknown one is 400 there)
    since = params.get("since") or None
    await _flushed(request)

    def work() -> list[dict[str, Any]]:
        row_filter = TableAccess(services.db, root).usage_filter(caller)
        return usage_summary(root, by, since, row_filter=row_filter)  # type: ignore[arg-type]

    rows = await run_in_threadpool(work)
    return json_response({"by": by, "rows": json_cell(rows)})


async def _usage_report(request: Request) -> Response:
    caller = caller_of(request)
    services = services_of(request)
    root = services.settings.tables_location
    q, series, fmt = _usage_query(request.query_params)
    await _flushed(request)

    def work() -> tuple[dict[str, Any], str | None, bool]:
        row_filter = TableAccess(services.db, root).usage_filter(caller)
        needs = _NEEDS_PRINCIPALS & {*q.group_by, *(["group"] if q.group else [])}
        principals = _principals(services) if needs else None
        report = usage_report(root, q, principals, row_filter=row_filter, series=series)
        text = to_csv(report) if fmt == "csv" else None
        return report.answer(), text, row_filter is None

    answer, text, everyone = await run_in_threadpool(work)
    if text is not None:
        name = "usage-" + ("-".join(q.group_by) or "totals") + ".csv"
        return Response(
            text,
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )
    answer["scope"] = "all" if everyone else "own"
    return json_response(answer)


class _Statement:
    """One SQL statement of the route, run in a worker thread, and how far it has got.

    :meth:`progress` and :meth:`interrupt` are called from the event loop while the statement
    runs in its thread: DuckDB's ``query_progress()`` reads the counters the executing thread
    updates and ``interrupt()`` only flags the query, neither waits for the running query; on a
    connection already closed (the statement has just ended) they do nothing.
    """

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.answered = 0  # ai_query requests answered so far
        self._con: duckdb.DuckDBPyConnection | None = None

    def running_on(self, con: duckdb.DuckDBPyConnection) -> None:
        self._con = con

    def progress(self) -> dict[str, Any]:
        percent: float | None = None
        if self._con is not None:
            try:
                done = self._con.query_progress()
            except duckdb.Error:  # closed: the statement has just ended
                done = -1.0
            percent = round(done, 1) if done >= 0 else None
        line: dict[str, Any] = {"percent": percent, "elapsed_s": round(time.monotonic() - self.started, 1)}
        if self.answered:
            line["ai_query_requests"] = self.answered
        return line

    def interrupt(self) -> None:
        """Stop the statement (its worker then fails with DuckDB's interrupt error)."""
        if self._con is not None:
            with contextlib.suppress(duckdb.Error):
                self._con.interrupt()


def _counted(endpoints: Endpoints, statement: _Statement) -> Endpoints:
    """``endpoints`` counting in ``statement`` the requests answered."""
    call = endpoints.call

    async def counting(endpoint: str, body: bytes) -> bytes:
        answer = await call(endpoint, body)
        statement.answered += 1
        return answer

    return dataclasses.replace(endpoints, call=counting)


async def _run(request: Request, sql: str, statement: _Statement) -> dict[str, Any]:
    """The route's answer to ``sql``: ``{"columns", "rows", "truncated"}``."""
    caller = caller_of(request)
    services = services_of(request)
    root = services.settings.tables_location
    await _flushed(request)
    loop = asyncio.get_running_loop()
    endpoints = served_endpoints(services.dataplane, services.endpoints, services.registry, caller, loop)
    endpoints = _counted(endpoints, statement)

    def ai_functions(con: Any, text: str) -> Any:
        statement.running_on(con)
        settings = services.settings
        rewritten, ai = prepare(
            con, text, endpoints, settings.ai_functions_endpoint, settings.ai_similarity_endpoint
        )
        return rewritten, lambda: ai.failure

    def work() -> tuple[list[str], list[tuple[Any, ...]]]:
        scope = TableAccess(services.db, root).query_scope(caller)
        return query(
            sql,
            root,
            tables=scope.tables,
            row_filters=scope.row_filters,
            missing=scope.deny_missing(caller),
            prepare=ai_functions,
        )

    columns, rows = await run_in_threadpool(work)
    truncated = len(rows) > MAX_ROWS
    return {"columns": list(columns), "rows": json_cell(list(rows[:MAX_ROWS])), "truncated": truncated}


def _line(data: Any) -> bytes:
    return orjson.dumps(data) + b"\n"


async def _lines(running: asyncio.Future[dict[str, Any]], statement: _Statement) -> AsyncIterator[bytes]:
    """Progress lines every :data:`PROGRESS_SECONDS` until ``running`` ends, then its result or
    its error; when the client leaves first, the statement is interrupted."""
    try:
        while True:
            yield _line({"progress": statement.progress()})
            done, _ = await asyncio.wait((running,), timeout=PROGRESS_SECONDS)
            if done:
                break
        exc = running.exception()
        yield _line(running.result() if exc is None else error_event_body(exc)["error"])
    finally:
        if not running.done():
            statement.interrupt()


def _observed(running: asyncio.Future[Any]) -> None:
    """Take the outcome of a statement nobody may wait for any more (its client left), so that
    asyncio does not log its error as never retrieved."""
    if not running.cancelled():
        running.exception()


async def query_tables(request: Request) -> Response:
    body = await json_object(request)
    sql = body.get("sql")
    if not isinstance(sql, str) or not sql.strip():
        raise InvalidParameterValue("Missing required field 'sql': the query to run.")
    statement = _Statement()
    if NDJSON not in request.headers.get("accept", ""):
        return json_response(await _run(request, sql, statement))
    running = asyncio.ensure_future(_run(request, sql, statement))
    running.add_done_callback(_observed)
    try:
        done, _ = await asyncio.wait((running,), timeout=PROGRESS_SECONDS)
    except asyncio.CancelledError:  # the client left
        statement.interrupt()
        raise
    if done:  # a statement that ended at once answers as the JSON route does (errors with their status)
        return Response(_line(running.result()), media_type=NDJSON)
    return StreamingResponse(_lines(running, statement), media_type=NDJSON)


routes = [
    Route(f"{BASE}/usage", usage, methods=["GET"]),
    Route(f"{BASE}/tables/query", query_tables, methods=["POST"]),
]
