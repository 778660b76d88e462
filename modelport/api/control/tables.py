"""modelport's own routes over the inference, usage and audit tables.

- ``GET /api/2.0/modelport/usage?by=user|endpoint|day[&since=YYYY-MM-DD]``: totals of
  ``system.serving.endpoint_usage`` (requests, input/output/total tokens, errors, estimated);
  the caller's own requests unless they hold SELECT on the table (admins hold it).
- ``POST /api/2.0/modelport/tables/query`` ``{"sql": "..."}``: a read-only SQL query over the
  Delta tables with DuckDB, tables named ``catalog.schema.table``; answers
  ``{"columns": [...], "rows": [[...], ...]}``. Every user may query the tables they hold
  SELECT (or more) on and their own rows of the usage table; only those are registered in
  the query's DuckDB connection (``control/table_acl.py``), and a table out of reach is 403.
  Statements calling ``ai_query`` are Databricks SQL (``batch/sql_rewrite.py``); its requests
  are the caller's queries of the endpoints (``batch/served.py``).

Both first write what this server has recorded to Delta (up to a few seconds), so an answer
given before the query is in its result; other servers' rows arrive within their
``--tables-flush-seconds``.

Not part of the Databricks API (which reads these tables through SQL warehouses).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from modelport.api.body import json_object
from modelport.api.responses import json_response
from modelport.api.services import caller_of, services_of
from modelport.batch.ai_query import prepare
from modelport.batch.served import served_endpoints
from modelport.control.table_acl import TableAccess
from modelport.errors import InvalidParameterValue
from modelport.tables.query import json_cell, query, usage_summary

__all__ = ["routes"]

BASE = "/api/2.0/modelport"
MAX_ROWS = 10_000
FLUSH_SECONDS = 10.0


async def _flushed(request: Request) -> None:
    """Write this server's recorded rows to Delta before reading the tables (read your writes)."""
    tables = services_of(request).tables
    await run_in_threadpool(tables.flush_now, time.monotonic() + FLUSH_SECONDS)


async def usage(request: Request) -> Response:
    caller = caller_of(request)
    services = services_of(request)
    root = services.settings.tables_location
    by = request.query_params.get("by", "user")
    if by not in ("user", "endpoint", "day"):
        raise InvalidParameterValue(f"'by' must be user, endpoint or day; got {by!r}.")
    since = request.query_params.get("since") or None
    await _flushed(request)

    def work() -> list[dict[str, Any]]:
        row_filter = TableAccess(services.db, root).usage_filter(caller)
        return usage_summary(root, by, since, row_filter=row_filter)  # type: ignore[arg-type]

    rows = await run_in_threadpool(work)
    return json_response({"by": by, "rows": json_cell(rows)})


async def query_tables(request: Request) -> Response:
    caller = caller_of(request)
    body = await json_object(request)
    sql = body.get("sql")
    if not isinstance(sql, str) or not sql.strip():
        raise InvalidParameterValue("Missing required field 'sql': the query to run.")
    services = services_of(request)
    root = services.settings.tables_location
    await _flushed(request)
    endpoints = served_endpoints(
        services.dataplane, services.endpoints, services.registry, caller, asyncio.get_running_loop()
    )

    def ai_functions(con: Any, text: str) -> Any:
        settings = services.settings
        rewritten, statement = prepare(
            con, text, endpoints, settings.ai_functions_endpoint, settings.ai_similarity_endpoint
        )
        return rewritten, lambda: statement.failure

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
    return json_response(
        {"columns": list(columns), "rows": json_cell(list(rows[:MAX_ROWS])), "truncated": truncated}
    )


routes = [
    Route(f"{BASE}/usage", usage, methods=["GET"]),
    Route(f"{BASE}/tables/query", query_tables, methods=["POST"]),
]
