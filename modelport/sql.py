"""``ai_query`` on your own DuckDB connection, answered by a modelport server over HTTP.

::

    import duckdb, modelport.sql

    con = duckdb.connect()
    modelport.sql.register(con, host="http://127.0.0.1:8080", token="...")  # or MODELPORT_HOST/_TOKEN
    modelport.sql.query(con, "SELECT ai_query('my-model', named_struct('f0', x)) FROM t").fetchall()

DuckDB takes neither named arguments nor a per-call result type, so Databricks SQL goes through
:func:`query` (or ``con.sql(modelport.sql.rewrite(con, sql))``), which rewrites the ``ai_query``
calls and registers the functions they need on ``con``. Each request is an ordinary query of the
endpoint with the token's permissions and rate limits (``batch/ai_query.py`` says how rows are
batched and retried).
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Coroutine
from typing import Any
from urllib.parse import quote

import duckdb
import httpx
import orjson

from modelport.batch.ai_query import EndpointInfo, Endpoints, Statement, info_from_openapi, prepare
from modelport.config import env_value
from modelport.errors import TemporarilyUnavailable, Unauthenticated, error_from_body

__all__ = ["query", "register", "rewrite"]

DEFAULT_HOST = "http://127.0.0.1:8080"
#: The chat endpoint of the task functions by default (the server's default too).
FUNCTIONS_ENDPOINT = "modelport-smollm2-135m-instruct"
#: The embeddings endpoint of ``ai_similarity`` by default.
SIMILARITY_ENDPOINT = "modelport-all-minilm-l6-v2"
_REGISTERED: dict[int, tuple[Endpoints, str | None, str | None]] = {}
_CLIENT: contextvars.ContextVar[httpx.AsyncClient] = contextvars.ContextVar("modelport_sql_client")


class _Remote:
    """A modelport server's endpoints, on a private event loop in a daemon thread."""

    def __init__(self, host: str, token: str, timeout: float) -> None:
        self.base = host.rstrip("/")
        self.headers = {"Authorization": f"Bearer {token}"}
        self.timeout = timeout
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, name="modelport-sql", daemon=True).start()

    def _http(self) -> httpx.AsyncClient:
        return _CLIENT.get()

    async def call(self, endpoint: str, body: bytes) -> bytes:
        try:
            response = await self._http().post(
                f"/serving-endpoints/{quote(endpoint, safe='')}/invocations",
                content=body,
                headers={"Content-Type": "application/json"},
            )
        except httpx.TransportError as exc:  # no answer: tried again as a 503 is, then the query fails
            raise TemporarilyUnavailable(
                f"No answer from {self.base} for endpoint '{endpoint}': {type(exc).__name__}: {exc}"
            ) from None
        if response.status_code >= 400:
            raise _error(response)
        return response.content

    def describe(self, endpoint: str) -> EndpointInfo:
        try:
            response = httpx.get(
                f"{self.base}/api/2.0/serving-endpoints/{quote(endpoint, safe='')}/openapi",
                headers=self.headers,
                timeout=self.timeout,
            )
        except httpx.TransportError as exc:
            raise TemporarilyUnavailable(
                f"No answer from {self.base} about endpoint '{endpoint}': {type(exc).__name__}: {exc}"
            ) from None
        if response.status_code >= 400:
            raise _error(response)
        return info_from_openapi(response.json())

    def run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        """Run one vector's requests, on one HTTP client closed when they are done."""

        async def scoped() -> Any:
            limits = httpx.Limits(max_connections=64)
            async with httpx.AsyncClient(
                base_url=self.base, headers=self.headers, timeout=self.timeout, limits=limits
            ) as client:
                _CLIENT.set(client)
                return await coro

        return asyncio.run_coroutine_threadsafe(scoped(), self.loop).result()


def _error(response: httpx.Response) -> Exception:
    try:
        body: Any = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        body = response.text
    return error_from_body(response.status_code, body, response.headers.get("retry-after"))


def register(
    con: duckdb.DuckDBPyConnection,
    host: str | None = None,
    token: str | None = None,
    *,
    timeout: float = 120.0,
    functions_endpoint: str | None = FUNCTIONS_ENDPOINT,
    similarity_endpoint: str | None = SIMILARITY_ENDPOINT,
) -> None:
    """Make ``con`` answer ``ai_query`` through the server at ``host`` (``MODELPORT_HOST``, default
    http://127.0.0.1:8080) with ``token`` (``MODELPORT_TOKEN``); run SQL with :func:`query`.
    ``functions_endpoint``: the chat endpoint of the task functions (``ai_summarize``, ...);
    ``similarity_endpoint``: the embeddings endpoint of ``ai_similarity``."""
    token = token or env_value("MODELPORT_TOKEN")
    if not token:
        raise Unauthenticated("no API token given: set MODELPORT_TOKEN or pass token=")
    remote = _Remote(host or env_value("MODELPORT_HOST") or DEFAULT_HOST, token, timeout)
    endpoints = Endpoints(remote.call, remote.describe, remote.run)
    _REGISTERED[id(con)] = (endpoints, functions_endpoint, similarity_endpoint)


def _endpoints(con: duckdb.DuckDBPyConnection) -> tuple[Endpoints, str | None, str | None]:
    found = _REGISTERED.get(id(con))
    if found is None:
        raise Unauthenticated("call modelport.sql.register(con, ...) first")
    return found


def rewrite(con: duckdb.DuckDBPyConnection, sql: str) -> str:
    """``sql`` (Databricks SQL where it calls ``ai_query``) for DuckDB, with the functions it
    calls registered on ``con``."""
    text, _ = prepare(con, sql, *_endpoints(con))
    return text


def query(con: duckdb.DuckDBPyConnection, sql: str) -> duckdb.DuckDBPyRelation | None:
    """Run ``sql`` on ``con`` with ``ai_query``; an endpoint's error is raised as itself
    (:class:`~modelport.errors.ModelportError`), not as DuckDB's text. Results are read
    eagerly into an Arrow table (the requests are sent here)."""
    text, statement = prepare(con, sql, *_endpoints(con))
    return _run(con, text, statement)


def _run(con: duckdb.DuckDBPyConnection, text: str, statement: Statement) -> duckdb.DuckDBPyRelation | None:
    try:
        rel = con.sql(text)
        if rel is None:
            return None
        return con.from_arrow(rel.to_arrow_table())
    except duckdb.Error as exc:
        if statement.failure is not None:
            raise statement.failure from exc
        raise
