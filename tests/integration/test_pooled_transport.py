"""PooledTransport (the providers' HTTP/1.1 wire) against raw loopback servers that misbehave
on purpose: keep-alive reuse, idle connections the server closed, chunked and gzip bodies,
timeouts, answers cut short, bodies larger than the read buffer, streams left half-read."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import Awaitable, Callable

import httpx
import pytest

from modelport.gateway.transport import PooledTransport
from tests.serverproc import free_port

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """(head, body) of one request, or (b"", b"") when the client closed."""
    head = await reader.readuntil(b"\r\n\r\n") if not reader.at_eof() else b""
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return head, await reader.readexactly(length) if length else b""


def answer(body: bytes, *extra: bytes, status: bytes = b"200 OK") -> bytes:
    head = [b"HTTP/1.1 " + status, b"content-length: " + str(len(body)).encode(), *extra]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


def run(handler: Handler, test: Callable[[httpx.AsyncClient, str, list[int]], Awaitable[None]]) -> None:
    """Serve ``handler`` on a free port and run ``test(client, url, connections)``, where
    ``connections`` counts the TCP connections the server accepted."""

    async def main() -> None:
        connections: list[int] = []

        async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            connections.append(1)
            try:
                await handler(reader, writer)
            except (asyncio.IncompleteReadError, ConnectionError):
                pass
            finally:
                writer.close()

        server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        client = httpx.AsyncClient(transport=PooledTransport(), timeout=2.0)
        try:
            await test(client, f"http://127.0.0.1:{port}", connections)
        finally:
            await client.aclose()
            server.close()

    asyncio.run(main())


async def echo_forever(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while True:
        head, body = await read_request(reader)
        if not head:
            return
        writer.write(answer(head.split(b" ")[1] + b"|" + body, b"content-type: text/plain"))
        await writer.drain()


def test_connections_are_kept_alive_and_reused() -> None:
    async def test(client: httpx.AsyncClient, url: str, connections: list[int]) -> None:
        for i in range(5):
            response = await client.post(f"{url}/p?q={i}", content=b"x" * i)
            assert response.text == f"/p?q={i}|" + "x" * i
        assert len(connections) == 1

    run(echo_forever, test)


def test_an_idle_connection_the_server_closed_is_replaced() -> None:
    async def close_after_one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(answer(b"once"))  # keep-alive promised, then the server hangs up
        await writer.drain()

    async def test(client: httpx.AsyncClient, url: str, connections: list[int]) -> None:
        assert (await client.get(url)).text == "once"
        assert (await client.get(url)).text == "once"
        assert len(connections) == 2

    run(close_after_one, test)


def test_a_connection_closed_as_the_request_goes_out_is_retried_once() -> None:
    async def ignore_second(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(answer(b"first"))
        await writer.drain()
        await read_request(reader)  # then closes without answering the second request

    async def test(client: httpx.AsyncClient, url: str, connections: list[int]) -> None:
        assert (await client.get(url)).text == "first"
        assert (await client.get(url)).text == "first"  # answered on a new connection
        assert len(connections) == 2

    run(ignore_second, test)


def test_chunked_and_gzip_bodies_are_decoded() -> None:
    async def chunked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            head, _ = await read_request(reader)
            if not head:
                return
            data = gzip.compress(b"hello " * 1000)
            writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-encoding: gzip\r\n\r\n")
            for i in range(0, len(data), 100):
                piece = data[i : i + 100]
                writer.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                await writer.drain()
            writer.write(b"0\r\n\r\n")
            await writer.drain()

    async def test(client: httpx.AsyncClient, url: str, connections: list[int]) -> None:
        for _ in range(2):
            assert (await client.get(url)).text == "hello " * 1000
        assert len(connections) == 1

    run(chunked, test)


def test_a_large_body_streams_through_with_backpressure() -> None:
    big = bytes(range(256)) * (5 * 4096)  # 5 MiB, more than the 1 MiB read buffer

    async def large(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(answer(big))
        await writer.drain()
        await read_request(reader)

    async def test(client: httpx.AsyncClient, url: str, connections: list[int]) -> None:
        async with client.stream("GET", url) as response:
            got = bytearray()
            async for piece in response.aiter_raw():
                got += piece
                await asyncio.sleep(0)  # a slow reader
        assert bytes(got) == big

    run(large, test)


def test_timeouts_refusals_and_broken_answers_are_httpx_errors() -> None:
    async def misbehave(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head, _ = await read_request(reader)
        if b"/slow" in head:
            await asyncio.sleep(5)
        elif b"/cut" in head:
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial")
            await writer.drain()
        elif b"/garbage" in head:
            writer.write(b"NOT HTTP AT ALL\r\n\r\n")
            await writer.drain()

    async def test(client: httpx.AsyncClient, url: str, connections: list[int]) -> None:
        with pytest.raises(httpx.ReadTimeout):
            await client.get(f"{url}/slow", timeout=0.2)
        with pytest.raises(httpx.RemoteProtocolError, match="middle of its answer"):
            await client.get(f"{url}/cut")
        with pytest.raises(httpx.RemoteProtocolError, match="Malformed"):
            await client.get(f"{url}/garbage")
        with pytest.raises(httpx.ConnectError):
            await client.get(f"http://127.0.0.1:{free_port()}/")
        with pytest.raises(httpx.UnsupportedProtocol):
            await client.get("ftp://127.0.0.1/")

    run(misbehave, test)


def test_a_stream_left_half_read_does_not_go_back_to_the_pool() -> None:
    async def two_parts(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            head, _ = await read_request(reader)
            if not head:
                return
            if b"/long" in head:
                writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nfirst\r\n")
                await writer.drain()
                await asyncio.sleep(0.2)
                writer.write(b"6\r\nsecond\r\n0\r\n\r\n")
            else:
                writer.write(answer(b"short"))
            await writer.drain()

    async def test(client: httpx.AsyncClient, url: str, connections: list[int]) -> None:
        async with client.stream("GET", f"{url}/long") as response:
            async for piece in response.aiter_raw():
                assert piece == b"first"
                break
        assert (await client.get(f"{url}/short")).text == "short"
        assert len(connections) == 2

    run(two_parts, test)
