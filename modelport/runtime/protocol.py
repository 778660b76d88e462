"""The wire protocol between the server and a replica process, over a unix socket.

One connection per replica, kept open, multiplexed: every frame carries a request id, so
many requests are in flight at once and answers may come back in any order. Only
``runtime/`` reads frames: the server side turns them into bytes or raised errors
(``ReplicaSet.predict``, ``ReplicaSet.open_stream``), the replica side is
``runtime/replica_server.py``.

Frame: a 13-byte header ``!IQB`` (payload length, request id, kind) then the payload.

Server → replica:
    PREDICT  payload = the client's request body, untouched (JSON bytes)
    PING     payload = b"" (health check)
    STREAM   payload = a request body whose answer is streamed (foundation models)
    CANCEL   payload = b""; the request id is that of a STREAM or PREDICT to abandon
             (the client went away); it gets no answer of its own
    ADOPT    payload = the new owner's pid (ASCII digits): a new leader took this replica
             over after its server was gone (``runtime/stopping.py``); answered with PONG
    RELEASE  payload = the releasing owner's pid: that owner stopped leading and leaves the
             replica to the next leader (it stops unless adopted); ignored from a process
             that does not own it; no answer
Replica → server:
    OK            payload = the response body to send the client (JSON bytes)
    CLIENT_ERROR  payload = an error (below) whose status is 4xx
    SERVER_ERROR  payload = an error whose status is 5xx (the model raised, the replica
                  is stopping, ...)
    PONG          payload = JSON stats {"pid", "requests", "in_flight", ...}: the replica
                  server's counters and its handler's (batches, engine counters)
    CHUNK         payload = one chunk of a STREAM's answer (JSON bytes); any number of them
    END           payload = b""; the STREAM's answer is complete

An error payload is ``ModelportError.to_body()`` plus the error's HTTP ``status`` and, when
it has one, ``retry_after``: ``{"error_code", "message", "status", "retry_after"}``.
:func:`error_frame` writes it and :func:`error_of` rebuilds the same class with the same
``retry_after`` (so a replica's 503 reaches the client with its ``Retry-After``).

A STREAM ends with END, CLIENT_ERROR or SERVER_ERROR (an error after chunks were sent
ends the stream with that error).
"""

from __future__ import annotations

import asyncio
import struct
from typing import Any

import orjson

from modelport.errors import ModelportError, error_from_body

__all__ = [
    "ADOPT",
    "CANCEL",
    "CHUNK",
    "CLIENT_ERROR",
    "END",
    "FINAL",
    "HEADER",
    "MAX_PAYLOAD",
    "OK",
    "PING",
    "PONG",
    "PREDICT",
    "RELEASE",
    "SERVER_ERROR",
    "STREAM",
    "encode",
    "error_frame",
    "error_of",
    "read_frame",
]

HEADER = struct.Struct("!IQB")
MAX_PAYLOAD = 256 * 1024 * 1024

PREDICT = 1
PING = 2
STREAM = 3
CANCEL = 4
ADOPT = 5
RELEASE = 6
OK = 10
CLIENT_ERROR = 11
SERVER_ERROR = 12
PONG = 13
CHUNK = 14
END = 15

#: Answers that end a request (a STREAM's CHUNKs do not).
FINAL = frozenset({OK, CLIENT_ERROR, SERVER_ERROR, PONG, END})


def encode(request_id: int, kind: int, payload: bytes = b"") -> bytes:
    return HEADER.pack(len(payload), request_id, kind) + payload


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, int, bytes]:
    """Read one frame; raises ``asyncio.IncompleteReadError`` when the peer closed."""
    header = await reader.readexactly(HEADER.size)
    length, request_id, kind = HEADER.unpack(header)
    if length > MAX_PAYLOAD:
        raise ValueError(f"frame of {length} bytes exceeds the {MAX_PAYLOAD}-byte limit")
    payload = await reader.readexactly(length) if length else b""
    return request_id, kind, payload


def error_frame(request_id: int, error: ModelportError) -> bytes:
    """The frame that answers request ``request_id`` with ``error``."""
    body: dict[str, Any] = {**error.to_body(), "status": error.status}
    if error.retry_after is not None:
        body["retry_after"] = error.retry_after
    kind = CLIENT_ERROR if error.status < 500 else SERVER_ERROR
    return encode(request_id, kind, orjson.dumps(body))


def error_of(kind: int, payload: bytes) -> ModelportError:
    """The error an answer frame stands for: the class of its ``error_code`` (by ``status``
    when the code is unknown), its message and ``retry_after``. A frame that is not an
    error, or one that cannot be read, is a 500 that says so."""
    if kind not in (CLIENT_ERROR, SERVER_ERROR):
        return ModelportError(f"The replica answered with an unexpected frame (kind {kind}).")
    try:
        body = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return ModelportError(f"The replica answered with an unreadable error: {payload[:200]!r}")
    status = body.get("status") if isinstance(body, dict) else None
    if not isinstance(status, int) or isinstance(status, bool):
        status = 400 if kind == CLIENT_ERROR else 500
    return error_from_body(status, body)
