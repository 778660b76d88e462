"""The replica server's connection loop with a fake handler: frames in, frames out.

A ``StreamReader`` fed by the test stands for the socket, a writer that keeps what it is
given for the other end; no socket is opened.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any

import orjson
import pytest

from modelport import errors
from modelport.runtime import protocol
from modelport.runtime.replica_server import Handler, ReplicaServer

Frame = tuple[int, int, bytes]  # request id, kind, payload
UNAVAILABLE = "TEMPORARILY_UNAVAILABLE"


class Writer:
    def __init__(self) -> None:
        self.data = b""
        self.closed = False

    def write(self, data: bytes) -> None:
        self.data += data

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    async def wait_closed(self) -> None:
        pass

    def frames(self) -> list[Frame]:
        out, data = [], self.data
        while data:
            length, request_id, kind = protocol.HEADER.unpack(data[: protocol.HEADER.size])
            end = protocol.HEADER.size + length
            out.append((request_id, kind, data[protocol.HEADER.size : end]))
            data = data[end:]
        return out


class FakeHandler(Handler):
    """Answers PREDICT by the body: b"ok" → b"done", b"wait" → after ``release`` is set,
    b"busy" → 503 with retry_after, anything else → a bug. STREAM: three chunks, or
    b"hold" → one chunk and then waits."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.closed_streams = 0

    async def predict(self, payload: bytes) -> bytes:
        if payload == b"ok":
            return b"done"
        if payload == b"wait":
            await self.release.wait()
            return b"waited"
        if payload == b"busy":
            raise errors.TemporarilyUnavailable("The model is busy.", retry_after=2)
        raise ValueError("no such body")

    async def stream(self, payload: bytes) -> AsyncGenerator[bytes, None]:
        try:
            yield b"c1"
            if payload == b"hold":
                await asyncio.Event().wait()
            yield b"c2"
            yield b"c3"
        finally:
            self.closed_streams += 1

    def stats(self) -> dict[str, Any]:
        return {"batches": 5}


async def talk(
    server: ReplicaServer, sends: list[tuple[int, int, bytes]], until: Callable[[Writer], bool]
) -> Writer:
    """Send ``sends`` on one connection, wait until ``until(writer)``, then close it."""
    reader, writer = asyncio.StreamReader(), Writer()
    for request_id, kind, payload in sends:
        reader.feed_data(protocol.encode(request_id, kind, payload))
    connection = asyncio.get_running_loop().create_task(server.connection(reader, writer))  # type: ignore[arg-type]
    async with asyncio.timeout(5):
        while not until(writer):
            await asyncio.sleep(0)
    reader.feed_eof()
    await connection
    return writer


def answered(n: int) -> Callable[[Writer], bool]:
    return lambda writer: len(writer.frames()) >= n


def run(make: Callable[[], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        return await make()

    return asyncio.run(main())


def error_body(frame: Frame) -> dict[str, Any]:
    return dict(orjson.loads(frame[2]))


def test_predict_is_answered_ok_and_ping_with_both_counters() -> None:
    def go() -> Awaitable[Writer]:
        server = ReplicaServer(FakeHandler(), parent_pid=1)
        return talk(server, [(1, protocol.PREDICT, b"ok")], answered(1))

    assert run(go).frames() == [(1, protocol.OK, b"done")]

    async def ping() -> tuple[Writer, int]:
        server = ReplicaServer(FakeHandler(), parent_pid=1)
        writer = await talk(server, [(1, protocol.PREDICT, b"ok"), (2, protocol.PING, b"")], answered(2))
        return writer, server.in_flight

    writer, in_flight = run(ping)
    [pong] = [f for f in writer.frames() if f[1] == protocol.PONG]
    assert set(orjson.loads(pong[2])) == {"pid", "requests", "in_flight", "protocol", "batches"}
    assert orjson.loads(pong[2])["protocol"] == protocol.VERSION
    assert orjson.loads(pong[2])["requests"] == 1
    assert in_flight == 0


class LookingUpHandler(FakeHandler):
    """Like a feature-aware model's handler: a trailer with its missing keys, and the rows its
    raw model received when the request came as PREDICT_RECORDED."""

    async def predict_with_trailer(
        self, payload: bytes, recorded: bool
    ) -> tuple[bytes, protocol.Trailer | None]:
        rows = b'{"dataframe_records":[{"f":1}]}' if recorded else None
        return await self.predict(payload), protocol.Trailer({"t": 1}, rows)


def test_a_recorded_predict_is_answered_with_the_handlers_trailer_and_a_plain_handler_ok() -> None:
    sends = [(1, protocol.PREDICT_RECORDED, b"ok"), (2, protocol.PREDICT, b"ok")]
    writer = run(lambda: talk(ReplicaServer(LookingUpHandler(), 1), sends, answered(2)))
    answers = {request_id: protocol.answer_of(kind, payload) for request_id, kind, payload in writer.frames()}
    assert answers == {
        1: (b"done", protocol.Trailer({"t": 1}, b'{"dataframe_records":[{"f":1}]}')),
        2: (b"done", protocol.Trailer({"t": 1}, None)),
    }
    plain = run(
        lambda: talk(ReplicaServer(FakeHandler(), 1), [(1, protocol.PREDICT_RECORDED, b"ok")], answered(1))
    )
    assert plain.frames() == [(1, protocol.OK, b"done")]


def test_a_modelport_error_is_answered_with_its_status_and_retry_after() -> None:
    writer = run(lambda: talk(ReplicaServer(FakeHandler(), 1), [(3, protocol.PREDICT, b"busy")], answered(1)))
    [frame] = writer.frames()
    assert frame[:2] == (3, protocol.SERVER_ERROR)
    assert error_body(frame) == {
        "error_code": "TEMPORARILY_UNAVAILABLE",
        "message": "The model is busy.",
        "status": 503,
        "retry_after": 2,
    }


def test_a_bug_in_the_handler_is_a_500_naming_it(capsys: pytest.CaptureFixture[str]) -> None:
    writer = run(lambda: talk(ReplicaServer(FakeHandler(), 1), [(1, protocol.PREDICT, b"?")], answered(1)))
    [frame] = writer.frames()
    assert frame[1] == protocol.SERVER_ERROR
    assert error_body(frame)["message"] == "ValueError: no such body"
    assert "Traceback" in capsys.readouterr().err


def test_a_stream_sends_each_chunk_then_end() -> None:
    writer = run(lambda: talk(ReplicaServer(FakeHandler(), 1), [(4, protocol.STREAM, b"")], answered(4)))
    assert writer.frames() == [
        (4, protocol.CHUNK, b"c1"),
        (4, protocol.CHUNK, b"c2"),
        (4, protocol.CHUNK, b"c3"),
        (4, protocol.END, b""),
    ]


def test_a_handler_that_does_not_stream_answers_a_client_error() -> None:
    class PredictOnly(Handler):
        async def predict(self, payload: bytes) -> bytes:
            return payload

    writer = run(lambda: talk(ReplicaServer(PredictOnly(), 1), [(1, protocol.STREAM, b"")], answered(1)))
    [frame] = writer.frames()
    assert frame[1] == protocol.CLIENT_ERROR
    assert error_body(frame)["error_code"] == "BAD_REQUEST"


def test_cancel_stops_a_stream_without_an_answer_and_closes_it() -> None:
    handler = FakeHandler()

    async def go() -> Writer:
        server = ReplicaServer(handler, 1)
        reader, writer = asyncio.StreamReader(), Writer()
        reader.feed_data(protocol.encode(5, protocol.STREAM, b"hold"))
        connection = asyncio.get_running_loop().create_task(server.connection(reader, writer))  # type: ignore[arg-type]
        while not writer.frames():
            await asyncio.sleep(0)
        reader.feed_data(protocol.encode(5, protocol.CANCEL))
        while server.in_flight:
            await asyncio.sleep(0)
        reader.feed_data(protocol.encode(6, protocol.PREDICT, b"ok"))
        while len(writer.frames()) < 2:
            await asyncio.sleep(0)
        reader.feed_eof()
        await connection
        return writer

    assert run(go).frames() == [(5, protocol.CHUNK, b"c1"), (6, protocol.OK, b"done")]
    assert handler.closed_streams == 1


def test_a_stopping_replica_answers_new_requests_503_retry_after_1() -> None:
    async def go() -> Writer:
        server = ReplicaServer(FakeHandler(), 1)
        server.stopping = True
        return await talk(server, [(1, protocol.PREDICT, b"ok"), (2, protocol.STREAM, b"")], answered(2))

    frames = run(go).frames()
    assert [f[:2] for f in frames] == [(1, protocol.SERVER_ERROR), (2, protocol.SERVER_ERROR)]
    for frame in frames:
        body = error_body(frame)
        assert (body["error_code"], body["status"], body["retry_after"]) == (UNAVAILABLE, 503, 1)


def test_an_unknown_frame_kind_is_a_client_error() -> None:
    writer = run(lambda: talk(ReplicaServer(FakeHandler(), 1), [(9, 99, b"")], answered(1)))
    [frame] = writer.frames()
    assert frame[:2] == (9, protocol.CLIENT_ERROR)
    assert error_body(frame)["message"] == "Unknown frame kind 99."


def test_requests_of_a_closed_connection_are_cancelled() -> None:
    handler = FakeHandler()

    async def go() -> Writer:
        server = ReplicaServer(handler, 1)
        reader, writer = asyncio.StreamReader(), Writer()
        reader.feed_data(protocol.encode(1, protocol.PREDICT, b"wait"))
        reader.feed_eof()
        await server.connection(reader, writer)  # type: ignore[arg-type]
        async with asyncio.timeout(5):
            while server.in_flight:
                await asyncio.sleep(0)
        handler.release.set()
        await asyncio.sleep(0)
        return writer

    writer = run(go)
    assert (writer.closed, writer.frames()) == (True, [])


async def stop_with(server: ReplicaServer, body: bytes, release: asyncio.Event | None) -> tuple[bool, Writer]:
    """Run ``server`` with one request ``body`` in flight, stop it (as SIGTERM does), set
    ``release`` during the drain; the outcome of run() and what was answered."""
    reader, writer = asyncio.StreamReader(), Writer()
    listening = [True]
    running = asyncio.get_running_loop().create_task(server.run(lambda: listening.clear()))
    reader.feed_data(protocol.encode(1, protocol.PREDICT, body))
    connection = asyncio.get_running_loop().create_task(server.connection(reader, writer))  # type: ignore[arg-type]
    while not server.in_flight:
        await asyncio.sleep(0)
    server.stop()
    reader.feed_data(protocol.encode(2, protocol.PREDICT, b"ok"))  # arrives while draining
    while len(writer.frames()) < 1:
        await asyncio.sleep(0)
    if release is not None:
        release.set()
    drained = await running
    assert not listening
    reader.feed_eof()
    await connection
    return drained, writer


def test_stopping_drains_the_request_in_flight_and_refuses_new_ones() -> None:
    handler = FakeHandler()
    server = ReplicaServer(handler, 1, drain_seconds=5)
    drained, writer = run(lambda: stop_with(server, b"wait", handler.release))
    frames = writer.frames()
    assert drained
    assert frames[0][:2] == (2, protocol.SERVER_ERROR)
    assert error_body(frames[0])["retry_after"] == 1
    assert frames[1] == (1, protocol.OK, b"waited")
    assert writer.closed


def test_a_request_left_after_the_drain_is_answered_503() -> None:
    server = ReplicaServer(FakeHandler(), 1, drain_seconds=0.01)
    drained, writer = run(lambda: stop_with(server, b"wait", None))
    assert not drained
    assert [f[:2] for f in writer.frames()] == [(2, protocol.SERVER_ERROR), (1, protocol.SERVER_ERROR)]
    body = error_body(writer.frames()[1])
    assert (body["error_code"], body["retry_after"]) == (UNAVAILABLE, 1)
