"""modelport's own routes over the inference and usage tables (admins only).

- ``GET /api/2.0/modelport/usage?by=user|endpoint|day[&since=YYYY-MM-DD]``: totals of
  ``system.serving.endpoint_usage`` (requests, input/output/total tokens, errors, estimated).
- ``POST /api/2.0/modelport/tables/query`` ``{"sql": "..."}``: a read-only SQL query over the
  Delta tables with DuckDB, tables named ``catalog.schema.table``; answers
  ``{"columns": [...], "rows": [[...], ...]}``.

Both first write what this server has recorded to Delta (up to a few seconds), so an answer
given before the query is in its result; other servers' rows arrive within their
``--tables-flush-seconds``.

Not part of the Databricks API (which reads these tables through SQL warehouses).
"""

from __future__ import annotations

import datetime as dt
import decimal
import time
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from modelport.api.body import json_object
from modelport.api.responses import json_response
from modelport.api.services import caller_of, services_of
from modelport.control.identity import IdentityService
from modelport.errors import InvalidParameterValue
from modelport.tables.query import query, usage_summary

__all__ = ["routes"]

BASE = "/api/2.0/modelport"
MAX_ROWS = 10_000
FLUSH_SECONDS = 10.0


async def _flushed(request: Request) -> None:
    """Write this server's recorded rows to Delta before reading the tables (read your writes)."""
    tables = services_of(request).tables
    await run_in_threadpool(tables.flush_now, time.monotonic() + FLUSH_SECONDS)


def _plain(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


async def usage(request: Request) -> Response:
    caller = caller_of(request)
    IdentityService.require_admin(caller, "read the usage table")
    services = services_of(request)
    by = request.query_params.get("by", "user")
    if by not in ("user", "endpoint", "day"):
        raise InvalidParameterValue(f"'by' must be user, endpoint or day; got {by!r}.")
    since = request.query_params.get("since") or None
    await _flushed(request)
    rows = await run_in_threadpool(usage_summary, services.settings.tables_location, by, since)  # type: ignore[arg-type]
    return json_response({"by": by, "rows": _plain(rows)})


async def query_tables(request: Request) -> Response:
    caller = caller_of(request)
    IdentityService.require_admin(caller, "query the inference and usage tables")
    body = await json_object(request)
    sql = body.get("sql")
    if not isinstance(sql, str) or not sql.strip():
        raise InvalidParameterValue("Missing required field 'sql': the query to run.")
    await _flushed(request)
    columns, rows = await run_in_threadpool(query, sql, services_of(request).settings.tables_location)
    truncated = len(rows) > MAX_ROWS
    return json_response(
        {"columns": list(columns), "rows": _plain(list(rows[:MAX_ROWS])), "truncated": truncated}
    )


routes = [
    Route(f"{BASE}/usage", usage, methods=["GET"]),
    Route(f"{BASE}/tables/query", query_tables, methods=["POST"]),
]
