"""The wire protocol between the server and a replica process, over a unix socket.

One connection per replica, kept open, multiplexed: every frame carries a request id, so
many requests are in flight at once and answers may come back in any order.

Frame: a 13-byte header ``!IQB`` (payload length, request id, kind) then the payload.

Server → replica:
    PREDICT  payload = the client's request body, untouched (JSON bytes)
    PING     payload = b"" (health check)
    STREAM   payload = a request body whose answer is streamed (foundation models)
    CANCEL   payload = b""; the request id is that of a STREAM or PREDICT to abandon
             (the client went away); it gets no answer of its own
Replica → server:
    OK            payload = the response body to send the client (JSON bytes)
    CLIENT_ERROR  payload = {"error_code", "message"} (bad input: HTTP 400)
    SERVER_ERROR  payload = {"error_code", "message"} (the model raised: HTTP 500)
    PONG          payload = JSON stats {"pid", "in_flight", "batches", "batched_rows", ...}
    CHUNK         payload = one chunk of a STREAM's answer (JSON bytes); any number of them
    END           payload = b""; the STREAM's answer is complete

A STREAM ends with END, CLIENT_ERROR or SERVER_ERROR (an error after chunks were sent
ends the stream with that error).
"""

from __future__ import annotations

import asyncio
import struct

__all__ = [
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
    "SERVER_ERROR",
    "STREAM",
    "encode",
    "read_frame",
]

HEADER = struct.Struct("!IQB")
MAX_PAYLOAD = 256 * 1024 * 1024

PREDICT = 1
PING = 2
STREAM = 3
CANCEL = 4
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
