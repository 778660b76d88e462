"""A replica's streamed answer, as the server reads it, holding an admission slot until closed.

:class:`ReplicaChunks` is what ``ReplicaSet.open_stream`` returns: the payloads of the
replica's CHUNK frames (JSON bytes, sent to the client as they are) until END, with error
frames raised as the errors they describe. :class:`AdmittedFrames` is the layer below it:
the raw ``(kind, payload)`` frames (what ``ReplicaSet.stream`` returns until the gateway
reads chunks only).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from modelport.errors import DeadlineExceeded, TemporarilyUnavailable
from modelport.runtime import protocol
from modelport.runtime.replica import ReplicaDied, ReplicaStream

__all__ = ["AdmittedFrames", "ReplicaChunks"]


class AdmittedFrames:
    """A replica's STREAM frames holding an admission slot of the set until closed.
    Iterating yields ``(kind, payload)`` frames; the first is read by :meth:`first`. A
    replica gone before the end raises ``TemporarilyUnavailable``."""

    def __init__(self, frames: ReplicaStream, name: str, release: Callable[[], None]) -> None:
        self._frames = frames
        self._name = name
        self._release = release
        self._first: tuple[int, bytes] | None = None
        self._open = True

    async def first(self, wait: float, timeout: float) -> None:
        try:
            self._first = await asyncio.wait_for(self._frames.__anext__(), wait)
        except TimeoutError:
            raise DeadlineExceeded(
                f"The model did not start answering within {timeout:g} seconds (request timeout)."
            ) from None
        except ReplicaDied:
            raise TemporarilyUnavailable(
                f"The replica of '{self._name}' serving this request stopped; retry the request.",
                retry_after=1,
            ) from None

    def __aiter__(self) -> AdmittedFrames:
        return self

    async def __anext__(self) -> tuple[int, bytes]:
        if self._first is not None:
            frame, self._first = self._first, None
            return frame
        try:
            return await self._frames.__anext__()
        except ReplicaDied:
            raise TemporarilyUnavailable(
                f"The replica of '{self._name}' serving this request stopped mid-answer.", retry_after=1
            ) from None

    async def aclose(self) -> None:
        """Release the slot; tell the replica to stop (CANCEL) if the answer has not ended."""
        if self._open:
            self._open = False
            await self._frames.aclose()
            self._release()


class ReplicaChunks:
    """The chunks of one streamed answer, as bytes, until the replica's END.

    Made by :meth:`open`, which reads the first chunk at once: an error before any chunk
    is raised from there, as an answer of its own. Iterating raises the ``ModelportError``
    of an error frame (its class, status and ``retry_after``) where it arrives. The owner
    calls :meth:`aclose` in every case, also after the end: it releases the admission slot
    and, when the answer has not ended, tells the replica to stop generating.
    """

    def __init__(self, frames: AdmittedFrames) -> None:
        self._frames = frames
        self._first: bytes | None = None
        self._done = False
        #: What the replica's END carried (an agent's trace), once the answer has ended.
        self.trailer: protocol.Trailer | None = None

    @classmethod
    async def open(cls, frames: AdmittedFrames) -> ReplicaChunks:
        """The chunks of ``frames``, the first one read (closed again if that raises)."""
        chunks = cls(frames)
        try:
            chunks._first = await chunks._next()
        except StopAsyncIteration:
            pass  # an empty answer: END came first
        except BaseException:
            await chunks.aclose()
            raise
        return chunks

    async def _next(self) -> bytes:
        if self._done:
            raise StopAsyncIteration
        kind, payload = await self._frames.__anext__()
        if kind == protocol.CHUNK:
            return payload
        self._done = True
        if kind == protocol.END:
            self.trailer = protocol.end_trailer(payload)
            raise StopAsyncIteration
        raise protocol.error_of(kind, payload)

    def __aiter__(self) -> ReplicaChunks:
        return self

    async def __anext__(self) -> bytes:
        if self._first is not None:
            chunk, self._first = self._first, None
            return chunk
        return await self._next()

    async def aclose(self) -> None:
        await self._frames.aclose()
