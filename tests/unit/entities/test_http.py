"""HTTP to providers and its failures (entities/providers/http.py): every httpx error becomes
ours, with the message that names the provider (no sockets: httpx's MockTransport raises)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
import pytest

from modelport.entities.providers.base import ProviderContext
from modelport.entities.providers.http import iter_sse, send, translate_transport_errors
from modelport.errors import BadGateway, DeadlineExceeded, ModelportError, RequestLimitExceeded
from modelport.spec.llm import CHAT

#: Every transport error httpx raises, and the error of ours it becomes.
TRANSPORT_ERRORS: list[tuple[type[httpx.HTTPError], type[ModelportError]]] = [
    (httpx.ConnectTimeout, DeadlineExceeded),
    (httpx.ReadTimeout, DeadlineExceeded),
    (httpx.WriteTimeout, DeadlineExceeded),
    (httpx.PoolTimeout, DeadlineExceeded),
    (httpx.ConnectError, BadGateway),
    (httpx.ReadError, BadGateway),
    (httpx.WriteError, BadGateway),
    (httpx.CloseError, BadGateway),
    (httpx.RemoteProtocolError, BadGateway),
    (httpx.LocalProtocolError, BadGateway),
    (httpx.ProxyError, BadGateway),
    (httpx.UnsupportedProtocol, BadGateway),
    (httpx.DecodingError, BadGateway),
    (httpx.TooManyRedirects, BadGateway),
]


@pytest.mark.parametrize(("raised", "ours"), TRANSPORT_ERRORS)
def test_every_httpx_error_becomes_ours(raised: type[httpx.HTTPError], ours: type[ModelportError]) -> None:
    with pytest.raises(ours) as caught, translate_transport_errors("slow", "broken"):
        raise raised("boom")
    assert caught.value.message == ("slow" if ours is DeadlineExceeded else "broken: boom")
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_without_messages_they_speak_of_a_stream_and_other_errors_pass() -> None:
    stopped = r"^The provider stopped sending its stream \(timeout\)\.$"
    with pytest.raises(DeadlineExceeded, match=stopped), translate_transport_errors():
        raise httpx.ReadTimeout("slow")
    with (
        pytest.raises(BadGateway, match=r"^The provider's stream broke off: reset$"),
        translate_transport_errors(),
    ):
        raise httpx.ReadError("reset")
    with pytest.raises(RequestLimitExceeded), translate_transport_errors():
        raise RequestLimitExceeded("ours go through")


def _context(handler: Callable[[httpx.Request], httpx.Response], timeout: float = 2.5) -> ProviderContext:
    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return ProviderContext("ep", "m", CHAT, {}, lambda scope, key: "", http, timeout)


def _fail(error: httpx.HTTPError) -> Callable[[httpx.Request], httpx.Response]:
    def handler(request: httpx.Request) -> httpx.Response:
        raise error

    return handler


def test_send_names_the_provider_and_the_host() -> None:
    timeout = _context(_fail(httpx.ReadTimeout("slow")))
    with pytest.raises(DeadlineExceeded) as caught:
        asyncio.run(send(timeout, "openai", "POST", "https://api.example.com/v1/x", json={}))
    assert caught.value.message == "Provider 'openai' did not answer within 2.5s (api.example.com)."
    refused = _context(_fail(httpx.ConnectError("connection refused")))
    with pytest.raises(BadGateway) as caught:
        asyncio.run(send(refused, "cohere", "POST", "https://api.example.com/v2/chat", json={}))
    assert caught.value.message == "Could not reach provider 'cohere' at api.example.com: connection refused"


def test_a_stream_that_breaks_off_is_a_bad_gateway_and_is_closed() -> None:
    class Broken(httpx.AsyncByteStream):
        closed = False

        async def __aiter__(self):  # type: ignore[no-untyped-def]
            yield b"data: one\n\n"
            raise httpx.RemoteProtocolError("peer closed connection")

        async def aclose(self) -> None:
            Broken.closed = True

    async def read() -> list[tuple[str, str]]:
        events: list[tuple[str, str]] = []
        response = httpx.Response(200, stream=Broken())
        with pytest.raises(BadGateway, match=r"^The provider's stream broke off: peer closed connection$"):
            async for event in iter_sse(response):
                events.append(event)
        return events

    assert asyncio.run(read()) == [("message", "one")]
    assert Broken.closed
