"""ReplicaSet.predict and open_stream: answers as bytes, error frames raised as our errors.

The set's replicas are fakes that answer with scripted frames, so no process or socket is
involved; streams use the real ``ReplicaStream`` fed by the fake.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from modelport import errors
from modelport.runtime import protocol
from modelport.runtime.autoscaler import Band
from modelport.runtime.replica import ReplicaDied, ReplicaSpec, ReplicaStream
from modelport.runtime.replica_set import ReplicaSet, SetClosed

Frame = tuple[int, bytes]


def error_frame(error: errors.ModelportError) -> Frame:
    frame = protocol.error_frame(0, error)
    _, _, kind = protocol.HEADER.unpack(frame[: protocol.HEADER.size])
    return kind, frame[protocol.HEADER.size :]


class FakeReplica:
    """A ready replica: ``answer`` gives the frame for each PREDICT; streams get the frames
    pushed into ``queues`` by the test. Records CANCELs."""

    def __init__(self, answer: Callable[[bytes], Awaitable[Frame]] | None = None) -> None:
        self.ready = self.alive = True
        self.closing = False
        self.in_flight = 0
        self.answer = answer
        self.queues: dict[int, asyncio.Queue[Frame | BaseException]] = {}
        self.cancelled: list[int] = []
        self.ended: list[int] = []
        self._ids = itertools.count(1)
        self.protocol = protocol.VERSION
        self.kinds: list[int] = []

    async def call(self, kind: int, payload: bytes, timeout: float | None) -> Frame:
        assert kind in (protocol.PREDICT, protocol.PREDICT_RECORDED) and self.answer is not None
        self.kinds.append(kind)
        self.in_flight += 1
        try:
            return await asyncio.wait_for(self.answer(payload), timeout)
        finally:
            self.in_flight -= 1

    def open_stream(self, payload: bytes) -> ReplicaStream:
        request_id = next(self._ids)
        self.queues[request_id] = asyncio.Queue()
        self.in_flight += 1
        return ReplicaStream(self, request_id, self.queues[request_id])  # type: ignore[arg-type]

    def _end_stream(self, request_id: int, *, cancel: bool) -> None:
        self.in_flight -= 1
        self.ended.append(request_id)
        if cancel:
            self.cancelled.append(request_id)


def replica_set(replica: FakeReplica) -> ReplicaSet:
    nowhere = Path("/nonexistent")
    spec = ReplicaSpec(nowhere / "model", nowhere / "run", "t", nowhere / "log", {})
    band = Band(min_replicas=1, max_replicas=1, per_replica=4, scale_to_zero=False, idle_seconds=60)
    rs = ReplicaSet("m", spec, band, per_replica_in_flight=4, queue_limit=4)
    rs.replicas.append(replica)  # type: ignore[arg-type]
    return rs


def answering(*frames: Frame) -> Callable[[bytes], Awaitable[Frame]]:
    it = iter(frames)

    async def answer(_: bytes) -> Frame:
        return next(it)

    return answer


def run(coro: Awaitable[Any]) -> Any:
    async def main() -> Any:
        return await coro

    return asyncio.run(main())


# ---- predict ----------------------------------------------------------------------------


def test_predict_answers_the_ok_payload_and_releases_its_slot() -> None:
    rs = replica_set(FakeReplica(answering((protocol.OK, b'{"predictions": [1]}'))))
    assert run(rs.predict(b"{}", 5)) == b'{"predictions": [1]}'
    assert rs.in_flight == 0


def test_a_recorded_predict_gets_the_trailer_and_an_older_replica_a_plain_predict() -> None:
    trailer = protocol.Trailer({"main.s.users": 1}, b'{"dataframe_records":[{"f":1.5}]}')
    frame = protocol.ok_frame(0, b'{"predictions": [1]}', trailer)
    _, _, kind = protocol.HEADER.unpack(frame[: protocol.HEADER.size])
    replica = FakeReplica(answering((kind, frame[protocol.HEADER.size :]), (protocol.OK, b"{}")))
    rs = replica_set(replica)
    assert run(rs.predict_with_trailer(b"{}", 5, recorded=True)) == (b'{"predictions": [1]}', trailer)
    replica.protocol = 1  # its PONG had no "protocol": a replica of an older modelport
    assert run(rs.predict_with_trailer(b"{}", 5, recorded=True)) == (b"{}", None)
    assert replica.kinds == [protocol.PREDICT_RECORDED, protocol.PREDICT]


def test_a_pong_says_the_protocol_version_an_older_one_none() -> None:
    assert protocol.version_of(b'{"pid": 1, "protocol": 2}') == 2
    assert protocol.version_of(b'{"pid": 1}') == 1
    assert protocol.version_of(b"not json") == 1


def test_a_replicas_503_is_raised_with_its_retry_after() -> None:
    stopping = errors.TemporarilyUnavailable("The replica is stopping; retry the request.", retry_after=1)
    rs = replica_set(FakeReplica(answering(error_frame(stopping))))
    with pytest.raises(errors.TemporarilyUnavailable) as caught:
        run(rs.predict(b"{}", 5))
    assert (caught.value.status, caught.value.retry_after) == (503, 1)
    assert caught.value.message == "The replica is stopping; retry the request."
    assert rs.in_flight == 0


def test_a_client_error_is_raised_as_its_own_class() -> None:
    rs = replica_set(FakeReplica(answering(error_frame(errors.InvalidParameterValue("missing f2")))))
    with pytest.raises(errors.InvalidParameterValue) as caught:
        run(rs.predict(b"{}", 5))
    assert (caught.value.message, caught.value.retry_after) == ("missing f2", None)


def test_a_replica_gone_mid_request_is_a_503_to_retry() -> None:
    async def dies(_: bytes) -> Frame:
        raise ReplicaDied("gone")

    with pytest.raises(errors.TemporarilyUnavailable) as caught:
        run(replica_set(FakeReplica(dies)).predict(b"{}", 5))
    assert caught.value.retry_after == 1


def test_no_answer_within_the_timeout_is_deadline_exceeded() -> None:
    async def never(_: bytes) -> Frame:
        await asyncio.Event().wait()
        raise AssertionError

    rs = replica_set(FakeReplica(never))
    with pytest.raises(errors.DeadlineExceeded):
        run(rs.predict(b"{}", 0.01))
    assert rs.in_flight == 0


def test_a_closed_set_raises_set_closed() -> None:
    rs = replica_set(FakeReplica(answering()))
    rs.closed = True
    with pytest.raises(SetClosed):
        run(rs.predict(b"{}", 5))


# ---- open_stream ----------------------------------------------------------------------------


async def stream_with(
    replica: FakeReplica, frames: list[Frame | BaseException], consume: Callable[[Any], Awaitable[Any]]
) -> Any:
    """Open a stream on a set of ``replica`` whose replica sends ``frames``; ``consume`` it."""
    rs = replica_set(replica)

    async def feed() -> None:
        while not replica.queues:
            await asyncio.sleep(0)
        for frame in frames:
            replica.queues[1].put_nowait(frame)

    feeding = asyncio.get_running_loop().create_task(feed())
    try:
        return rs, await consume(rs)
    finally:
        await feeding


async def read_all(rs: ReplicaSet) -> list[bytes]:
    """Open a stream, read every chunk, close it (as a caller must)."""
    chunks = await rs.open_stream(b"{}", 5)
    try:
        return [chunk async for chunk in chunks]
    finally:
        await chunks.aclose()


def test_a_stream_yields_each_chunk_until_end_then_releases_without_cancel() -> None:
    replica = FakeReplica()
    frames: list[Frame | BaseException] = [(protocol.CHUNK, b'{"a":1}'), (protocol.CHUNK, b'{"b":2}')]
    rs, got = run(stream_with(replica, [*frames, (protocol.END, b"")], read_all))
    assert got == [b'{"a":1}', b'{"b":2}']
    assert (replica.ended, replica.cancelled, rs.in_flight) == ([1], [], 0)


def test_an_error_before_any_chunk_is_raised_by_open_stream_and_releases() -> None:
    replica = FakeReplica()
    limited = errors.RequestLimitExceeded("too many", retry_after=3)

    async def consume(rs: ReplicaSet) -> Any:
        return await rs.open_stream(b"{}", 5)

    with pytest.raises(errors.RequestLimitExceeded) as caught:
        run(stream_with(replica, [error_frame(limited)], consume))
    assert caught.value.retry_after == 3
    assert (replica.ended, replica.cancelled, replica.in_flight) == ([1], [], 0)


def test_an_error_mid_stream_is_raised_after_the_chunks_before_it() -> None:
    replica = FakeReplica()
    seen: list[bytes] = []

    async def consume(rs: ReplicaSet) -> None:
        chunks = await rs.open_stream(b"{}", 5)
        try:
            async for chunk in chunks:
                seen.append(chunk)
        finally:
            await chunks.aclose()

    failed = errors.ModelportError("The engine failed: RuntimeError: boom")
    with pytest.raises(errors.ModelportError) as caught:
        run(stream_with(replica, [(protocol.CHUNK, b"1"), error_frame(failed)], consume))
    assert (type(caught.value), caught.value.message) == (errors.ModelportError, failed.message)
    assert seen == [b"1"]
    assert replica.cancelled == []


def test_closing_a_stream_before_its_end_cancels_it_on_the_replica() -> None:
    replica = FakeReplica()

    async def consume(rs: ReplicaSet) -> bytes:
        chunks = await rs.open_stream(b"{}", 5)
        first = await chunks.__anext__()
        await chunks.aclose()
        await chunks.aclose()  # closing twice releases once
        return first

    rs, first = run(stream_with(replica, [(protocol.CHUNK, b"1"), (protocol.CHUNK, b"2")], consume))
    assert first == b"1"
    assert (replica.cancelled, rs.in_flight) == ([1], 0)


def test_a_stream_that_ends_at_once_is_empty() -> None:
    replica = FakeReplica()
    _, got = run(stream_with(replica, [(protocol.END, b"")], read_all))
    assert got == []


def test_no_first_chunk_within_the_timeout_is_deadline_exceeded_and_cancels() -> None:
    replica = FakeReplica()

    async def consume(rs: ReplicaSet) -> Any:
        return await rs.open_stream(b"{}", 0.01)

    with pytest.raises(errors.DeadlineExceeded):
        run(stream_with(replica, [], consume))
    assert replica.cancelled == [1]


def test_a_replica_gone_mid_stream_is_a_503_to_retry() -> None:
    replica = FakeReplica()

    async def consume(rs: ReplicaSet) -> None:
        chunks = await rs.open_stream(b"{}", 5)
        try:
            async for _ in chunks:
                pass
        finally:
            await chunks.aclose()

    with pytest.raises(errors.TemporarilyUnavailable) as caught:
        run(stream_with(replica, [(protocol.CHUNK, b"1"), ReplicaDied("gone")], consume))
    assert caught.value.retry_after == 1


# ---- cold start ------------------------------------------------------------------------------


class StartedReplica(FakeReplica):
    """What ``ReplicaSet.scale_to`` makes in place of a ``ReplicaHandle``: ready once
    ``start()`` has taken a little while, as a process would."""

    started = 0

    def __init__(self, spec: ReplicaSpec, index: int) -> None:
        super().__init__(answering(*[(protocol.OK, b'{"predictions": [1]}')] * 100))
        self.ready = False
        self.pid, self.started_at = index, 0.0

    async def start(self) -> None:
        type(self).started += 1
        await asyncio.sleep(0.05)
        self.ready = True

    async def stop(self) -> None:
        self.alive = False


def test_a_burst_at_zero_replicas_shares_one_cold_start(monkeypatch: pytest.MonkeyPatch) -> None:
    from modelport.runtime import replica_set as module

    monkeypatch.setattr(module, "ReplicaHandle", StartedReplica)
    StartedReplica.started = 0
    nowhere = Path("/nonexistent")
    spec = ReplicaSpec(nowhere / "model", nowhere / "run", "t", nowhere / "log", {})
    band = Band(min_replicas=0, max_replicas=2, per_replica=4, scale_to_zero=True, idle_seconds=60)
    rs = ReplicaSet("m", spec, band, per_replica_in_flight=64, queue_limit=64)

    async def burst() -> list[bytes]:
        return await asyncio.gather(*(rs.predict(b"{}", 5) for _ in range(32)))

    async def twice() -> None:
        assert await burst() == [b'{"predictions": [1]}'] * 32
        assert (rs.cold_starts, StartedReplica.started) == (1, 1)
        await rs.scale_to(0)  # idle: back to zero, and the next burst starts it again
        assert await burst() == [b'{"predictions": [1]}'] * 32
        assert (rs.cold_starts, StartedReplica.started) == (2, 2)

    run(twice())
