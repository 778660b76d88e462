"""Limits on a request's head (request line and headers), enforced in uvicorn's HTTP protocol.

uvicorn's httptools protocol has no such limit: httptools keeps a header's value in memory until
it ends, however long, and adds every header to the list. :func:`limited_protocol` returns its
subclass that answers 431 ``REQUEST_HEADERS_TOO_LARGE`` (JSON, ``Connection: close``) and closes
the connection when

- the request line and headers together pass ``max_bytes`` (counted as they are parsed, and
  counted in raw bytes while the head is still arriving, so an endless header value is cut off
  after about ``max_bytes``), or
- there are more than ``max_headers`` header fields.

The app never sees such a request. Other malformed requests keep uvicorn's 400.
"""

from __future__ import annotations

import logging
from typing import Any

import httptools
import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from modelport.errors import HeadersTooLarge

__all__ = ["limited_protocol"]

log = logging.getLogger("modelport.server")


class _HeadRefused(Exception):
    """Raised in a parser callback to stop parsing a head over the limits."""


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with head limits (set by :func:`limited_protocol`)."""

    max_bytes = 32 * 1024
    max_headers = 100

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = False
        self._head_bytes = 0  # parsed bytes of the current head
        self._raw_bytes = 0  # raw bytes received while the current head is incomplete

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._head_bytes = self._raw_bytes = 0

    def on_url(self, url: bytes) -> None:
        self._head_bytes += len(url)
        if self._head_bytes > self.max_bytes:
            raise _HeadRefused
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_bytes += len(name) + len(value) + 4  # ": " and CRLF
        if self._head_bytes > self.max_bytes or len(self.headers) >= self.max_headers:
            raise _HeadRefused
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        super().on_headers_complete()

    def data_received(self, data: bytes) -> None:
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            if isinstance(exc.__context__, _HeadRefused):
                self._send_431()
                return
            msg = "Invalid HTTP request received."
            self.logger.warning(msg)
            self.send_400_response(msg)
            return
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        if self._in_head:
            self._raw_bytes += len(data)
            if self._raw_bytes > self.max_bytes:
                self._send_431()

    def _send_431(self) -> None:
        exc = HeadersTooLarge(
            f"The request line and headers are larger than {self.max_bytes // 1024} KiB or have "
            f"more than {self.max_headers} fields."
        )
        body = orjson.dumps(exc.to_body())
        head = (
            f"HTTP/1.1 {exc.status} Request Header Fields Too Large\r\n"
            "content-type: application/json\r\n"
            f"content-length: {len(body)}\r\n"
            "connection: close\r\n\r\n"
        )
        log.info("request head refused", extra={"reason": exc.message})
        self.transport.write(head.encode("latin-1") + body)
        self.transport.close()


def limited_protocol(max_bytes: int, max_headers: int) -> type[HttpToolsProtocol]:
    """A protocol class for ``uvicorn.Config(http=...)`` with these limits."""
    return type(
        "LimitedHttpToolsProtocol",
        (LimitedHttpToolsProtocol,),
        {"max_bytes": max_bytes, "max_headers": max_headers},
    )
