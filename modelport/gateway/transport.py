"""A lean HTTP/1.1 transport under the providers' ``httpx.AsyncClient``.

httpx's default transport (httpcore on anyio, h11 in pure Python) costs about 0.6 ms of
CPU per request, more than everything else modelport does for an external-model query.
:class:`PooledTransport` keeps httpx's API (providers use ``httpx.AsyncClient`` as
``base.py`` promises) and replaces only the wire: keep-alive connections from
``asyncio`` (uvloop in the server), responses parsed by ``httptools`` (C, already a
dependency of uvicorn). Proxies from the environment still go through httpx's own proxy
transports, which the client mounts beside this one.

Guarantees:

- one request at a time per connection; a connection goes back to the pool only after its
  response was read to the end and the server allowed keep-alive; idle connections are
  dropped after ``keepalive_expiry`` seconds or as soon as the server closes them;
- a request sent on a reused connection that the server closed before answering a single
  byte is sent once more on a new connection (the keep-alive race);
- timeouts come from the request (``connect`` and ``read``, as httpx passes them) and raise
  httpx's exceptions, as do refused connections and malformed answers, so callers need to
  know only httpx's exception tree.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import deque
from collections.abc import AsyncIterator
from typing import Any, cast

import httptools
import httpx

__all__ = ["PooledTransport"]

_DEFAULT_PORTS = {"http": 80, "https": 443}
#: Stop reading from the socket while this much response body waits for the reader.
_HIGH_WATER = 1 << 20


class _Connection(asyncio.Protocol):
    """One keep-alive connection; :class:`PooledTransport` drives it one request at a time."""

    def __init__(self, key: tuple[str, str, int]) -> None:
        self.key = key
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self._waiter: asyncio.Future[None] | None = None
        self._reset()

    def _reset(self) -> None:
        self._parser = httptools.HttpResponseParser(self)
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.head_done = False
        self.complete = False
        self.keep_alive = False
        self.received = False
        self.error: Exception | None = None
        self.body: deque[bytes] = deque()
        self._buffered = 0
        self._paused = False

    # ---- asyncio.Protocol -----------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not asyncio.Transport subclasses

    def data_received(self, data: bytes) -> None:
        self.received = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self.error = httpx.RemoteProtocolError(f"Malformed HTTP answer: {exc}")
            self.close()
        self._wake()

    def eof_received(self) -> bool:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.complete and self.error is None:
            if self.received:
                self.error = httpx.RemoteProtocolError(
                    "The server closed the connection in the middle of its answer."
                )
            else:
                self.error = httpx.RemoteProtocolError("The server closed the connection without answering.")
        self._wake()

    # ---- httptools callbacks ------------------------------------------------------------------
    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.status = self._parser.get_status_code()
        self.keep_alive = self._parser.should_keep_alive()
        self.head_done = True

    def on_body(self, body: bytes) -> None:
        self.body.append(body)
        self._buffered += len(body)
        if self._buffered > _HIGH_WATER and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()

    def on_message_complete(self) -> None:
        self.complete = True

    # ---- driving ----------------------------------------------------------------------------------
    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _wait(self, timeout: float | None) -> None:
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            async with asyncio.timeout(timeout):
                await self._waiter
        finally:
            self._waiter = None

    def send(self, head: bytes, body: bytes) -> None:
        self._reset()
        assert self.transport is not None
        self.transport.write(head + body if len(body) < 65536 else head)
        if len(body) >= 65536:
            self.transport.write(body)

    async def read_head(self, timeout: float | None) -> None:
        while not self.head_done:
            if self.error is not None:
                raise self.error
            await self._wait(timeout)

    async def read_body(self, timeout: float | None) -> bytes | None:
        """The next piece of the body, or None at its end."""
        while True:
            if self.body:
                data = b"".join(self.body)
                self.body.clear()
                self._buffered = 0
                if self._paused and self.transport is not None and not self.closed:
                    self._paused = False
                    self.transport.resume_reading()
                return data
            if self.complete:
                return None
            if self.error is not None:
                raise self.error
            await self._wait(timeout)

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class _Body(httpx.AsyncByteStream):
    def __init__(
        self, pool: PooledTransport, conn: _Connection, request: httpx.Request, timeout: float | None
    ) -> None:
        self._pool = pool
        self._conn = conn
        self._request = request
        self._timeout = timeout
        self._done = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        conn = self._conn
        while not self._done:
            try:
                data = await conn.read_body(self._timeout)
            except TimeoutError:
                raise httpx.ReadTimeout("Timed out reading the answer.", request=self._request) from None
            except httpx.TransportError as exc:
                exc.request = self._request
                raise
            if data is None:
                break
            yield data

    async def aclose(self) -> None:
        if self._done:
            return
        self._done = True
        self._pool._release(self._conn)


class PooledTransport(httpx.AsyncBaseTransport):
    """Keep-alive HTTP/1.1 connections per (scheme, host, port); see the module docstring."""

    def __init__(
        self,
        *,
        ssl_context: ssl.SSLContext | None = None,
        max_idle_per_origin: int = 256,
        keepalive_expiry: float = 30.0,
    ) -> None:
        self._ssl = ssl_context
        self._max_idle = max_idle_per_origin
        self._expiry = keepalive_expiry
        self._idle: dict[tuple[str, str, int], list[_Connection]] = {}
        self._closed = False

    def _ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = httpx.create_ssl_context()
        return self._ssl

    # ---- the pool -------------------------------------------------------------------------------
    def _take(self, key: tuple[str, str, int]) -> _Connection | None:
        idle = self._idle.get(key)
        now = time.monotonic()
        while idle:
            conn = idle.pop()
            if not conn.closed and now - conn.idle_since < self._expiry:
                return conn
            conn.close()
        return None

    def _release(self, conn: _Connection) -> None:
        if conn.closed or not conn.complete or not conn.keep_alive or self._closed:
            conn.close()
            return
        idle = self._idle.setdefault(conn.key, [])
        if len(idle) >= self._max_idle:
            conn.close()
            return
        conn.idle_since = time.monotonic()
        idle.append(conn)

    async def _connect(
        self, key: tuple[str, str, int], request: httpx.Request, timeout: float | None
    ) -> _Connection:
        scheme, host, port = key
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                _, conn = await loop.create_connection(
                    lambda: _Connection(key),
                    host,
                    port,
                    ssl=self._ssl_context() if scheme == "https" else None,
                    server_hostname=host if scheme == "https" else None,
                )
        except TimeoutError:
            raise httpx.ConnectTimeout(f"Timed out connecting to {host}:{port}.", request=request) from None
        except OSError as exc:
            raise httpx.ConnectError(f"Could not connect to {host}:{port}: {exc}", request=request) from None
        return conn

    # ---- httpx.AsyncBaseTransport -------------------------------------------------------------------------
    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        scheme = url.scheme
        if scheme not in _DEFAULT_PORTS:
            raise httpx.UnsupportedProtocol(f"Unsupported URL scheme '{scheme}'.", request=request)
        key = (scheme, url.host, url.port or _DEFAULT_PORTS[scheme])
        timeouts: dict[str, Any] = request.extensions.get("timeout", {})
        body = await _read_request_body(request)
        head = _request_head(request, body)
        read_timeout = timeouts.get("read")
        for attempt in range(2):
            conn = self._take(key) if attempt == 0 else None
            reused = conn is not None
            if conn is None:
                conn = await self._connect(key, request, timeouts.get("connect"))
            conn.send(head, body)
            try:
                await conn.read_head(read_timeout)
            except TimeoutError:
                conn.close()
                raise httpx.ReadTimeout("Timed out waiting for the answer.", request=request) from None
            except httpx.TransportError as exc:
                conn.close()
                if reused and not conn.received:
                    continue  # the server closed this idle connection as we sent: once more, anew
                exc.request = request
                raise
            break
        if request.method == "HEAD":
            conn.complete = True
        return httpx.Response(
            conn.status,
            headers=conn.headers,
            stream=_Body(self, conn, request, read_timeout),
            extensions={"http_version": b"HTTP/1.1"},
        )

    async def aclose(self) -> None:
        self._closed = True
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
        self._idle.clear()


async def _read_request_body(request: httpx.Request) -> bytes:
    stream = request.stream
    assert isinstance(stream, httpx.AsyncByteStream)
    return b"".join([chunk async for chunk in stream])


def _request_head(request: httpx.Request, body: bytes) -> bytes:
    lines = [request.method.encode("ascii"), b" ", request.url.raw_path, b" HTTP/1.1\r\n"]
    has_length = False
    for name, value in request.headers.raw:
        lowered = name.lower()
        if lowered == b"transfer-encoding":
            continue  # the body was read whole: it goes with a content-length
        if lowered == b"content-length":
            has_length = True
            value = str(len(body)).encode()
        lines += [name, b": ", value, b"\r\n"]
    if not has_length and (body or request.method in ("POST", "PUT", "PATCH")):
        lines += [b"content-length: ", str(len(body)).encode(), b"\r\n"]
    lines.append(b"\r\n")
    return b"".join(lines)
