"""The wire protocol between the server and a replica process, over a unix socket.

One connection per replica, kept open, multiplexed: every frame carries a request id, so
many requests are in flight at once and answers may come back in any order. Only
``runtime/`` reads frames: the server side turns them into bytes or raised errors
(``ReplicaSet.predict``, ``ReplicaSet.open_stream``), the replica side is
``runtime/replica_server.py``.

Frame: a 13-byte header ``!IQB`` (payload length, request id, kind) then the payload.

Server → replica:
    PREDICT  payload = the client's request body, untouched (JSON bytes)
    PREDICT_RECORDED  a PREDICT whose endpoint records its queries (an inference table): a
             model that completes its input (a feature-aware model) also sends back what its
             raw model received (the trailer's ``request``)
    PING     payload = b"" (health check)
    STREAM   payload = a request body whose answer is streamed (foundation models)
    AGENT_PREDICT  a PREDICT to an agent replica (``runtime/agent_handler.py``): payload =
             ``!I`` (the context's length), the :class:`AgentContext` as JSON (length 0: none,
             the agent's tools then cannot call endpoints), then the client's body; answered
             OK_TRAILER with the request's trace (or an error)
    AGENT_STREAM   a STREAM to an agent replica, payload as AGENT_PREDICT's; its END carries
             the trailer (below)
    CANCEL   payload = b""; the request id is that of a STREAM or PREDICT to abandon
             (the client went away); it gets no answer of its own
    ADOPT    payload = the new owner's pid (ASCII digits): a new leader took this replica
             over after its server was gone (``runtime/stopping.py``); answered with PONG
    RELEASE  payload = the releasing owner's pid: that owner stopped leading and leaves the
             replica to the next leader (it stops unless adopted); ignored from a process
             that does not own it; no answer
Replica → server:
    OK            payload = the response body to send the client (JSON bytes)
    OK_TRAILER    an OK with a :class:`Trailer` for the gateway (below); only a model that
                  looks its features up sends it, and only when it has something to say
    CLIENT_ERROR  payload = an error (below) whose status is 4xx
    SERVER_ERROR  payload = an error whose status is 5xx (the model raised, the replica
                  is stopping, ...)
    PONG          payload = JSON stats {"pid", "requests", "in_flight", "protocol", ...}: the
                  replica server's counters and its handler's (batches, engine counters);
                  ``protocol`` is :data:`VERSION` (absent from an older replica's: 1)
    CHUNK         payload = one chunk of a STREAM's answer (JSON bytes); any number of them
    END           payload = b""; the STREAM's answer is complete. After an AGENT_STREAM the
                  payload may instead be a trailer: an OK_TRAILER payload with an empty body
                  (:func:`end_frame`, :func:`end_trailer`)

An error payload is ``ModelportError.to_body()`` plus the error's HTTP ``status`` and, when
it has one, ``retry_after``: ``{"error_code", "message", "status", "retry_after"}``.
:func:`error_frame` writes it and :func:`error_of` rebuilds the same class with the same
``retry_after`` (so a replica's 503 reaches the client with its ``Retry-After``).

A STREAM ends with END, CLIENT_ERROR or SERVER_ERROR (an error after chunks were sent
ends the stream with that error).

An OK_TRAILER payload is ``!II`` (the body's length, the notes' length), the body, the notes
(a JSON object: ``missing_rows`` {table: keys of this request that found no row},
``request_truncated``), then the rest: the request as the raw model received it
(``{"dataframe_records": [...]}``, at most ``tables.records.MAX_BODY_BYTES``, cut at a
character as the inference table cuts its bodies), empty when not asked for, followed by the
request's MLflow trace (``Trace.to_json()``, an agent's) when the notes hold ``trace_length``:
the trace is the rest's last ``trace_length`` bytes. Each request of a batch gets its own
trailer. :func:`ok_frame` writes it, :func:`answer_of` reads it.

An agent's request carries its :class:`AgentContext` (where its tools reach this server, with
which token); the token is never logged (not in the dataclass's ``repr``), never stored. The
agent handler sets it in :data:`current_agent_context` while the agent runs
(``modelport.client.agent_tools`` reads it there).

The server sends PREDICT_RECORDED only to a replica whose PONG says ``protocol`` 2 or more (3:
AGENT_PREDICT, AGENT_STREAM, traces in trailers) (a
replica of an older modelport, adopted across an upgrade, gets PREDICT: its model's lookups
then go unreported, its answers unchanged).
"""

from __future__ import annotations

import asyncio
import contextvars
import struct
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson

from modelport.errors import ModelportError, error_from_body

__all__ = [
    "ADOPT",
    "AGENT_PREDICT",
    "AGENT_STREAM",
    "CANCEL",
    "CHUNK",
    "CLIENT_ERROR",
    "END",
    "FINAL",
    "HEADER",
    "MAX_PAYLOAD",
    "OK",
    "OK_TRAILER",
    "PING",
    "PONG",
    "PREDICT",
    "PREDICT_RECORDED",
    "RELEASE",
    "SERVER_ERROR",
    "STREAM",
    "VERSION",
    "AgentContext",
    "Trailer",
    "agent_payload",
    "answer_of",
    "current_agent_context",
    "encode",
    "end_frame",
    "end_trailer",
    "error_frame",
    "error_of",
    "ok_frame",
    "read_frame",
    "unwrap_agent",
    "version_of",
]

HEADER = struct.Struct("!IQB")
#: The protocol a replica speaks, in its PONG: 2 added PREDICT_RECORDED and OK_TRAILER, 3
#: AGENT_PREDICT, AGENT_STREAM and the trailer's trace.
VERSION = 3
MAX_PAYLOAD = 256 * 1024 * 1024

PREDICT = 1
PING = 2
STREAM = 3
CANCEL = 4
ADOPT = 5
RELEASE = 6
PREDICT_RECORDED = 7
AGENT_PREDICT = 8
AGENT_STREAM = 9
OK = 10
CLIENT_ERROR = 11
SERVER_ERROR = 12
PONG = 13
CHUNK = 14
END = 15
OK_TRAILER = 16

#: Answers that end a request (a STREAM's CHUNKs do not).
FINAL = frozenset({OK, OK_TRAILER, CLIENT_ERROR, SERVER_ERROR, PONG, END})

_LENGTHS = struct.Struct("!II")
_CONTEXT_LENGTH = struct.Struct("!I")


@dataclass(frozen=True, slots=True)
class Trailer:
    """What a model that looks its features up tells the gateway beside one request's answer:
    the keys that found no row per table (for the metric), and the request as its raw model
    received it (for the inference table; ``None`` unless the request was PREDICT_RECORDED)."""

    missing_rows: dict[str, int] = field(default_factory=dict)
    request: bytes | None = None
    #: ``request`` was cut to the inference table's limit.
    request_truncated: bool = False
    #: An agent's answer: the MLflow trace of the request (``mlflow.entities.Trace.to_json()``).
    trace: bytes | None = None


@dataclass(frozen=True, slots=True)
class AgentContext:
    """What an agent's tools need to call other endpoints of this server for one request:
    ``host`` (the URL the replica reaches the server at), ``token`` (a short-lived agent
    token, ``gateway/agent_tokens.py``: never logged, never stored), the call ``depth`` of
    this request, its ``parent_request_id`` and the agent ``endpoint`` answering it."""

    host: str
    token: str = field(repr=False)
    depth: int
    parent_request_id: str
    endpoint: str

    def to_json(self) -> bytes:
        return orjson.dumps(asdict(self))

    @classmethod
    def from_json(cls, data: bytes) -> AgentContext:
        """The context :meth:`to_json` wrote; ``ValueError`` when it is not one."""
        try:
            fields = orjson.loads(data)
            context = cls(
                str(fields["host"]),
                str(fields["token"]),
                int(fields["depth"]),
                str(fields["parent_request_id"]),
                str(fields["endpoint"]),
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"unreadable agent context: {type(exc).__name__}") from None
        return context


#: The agent context of the request an agent replica is answering (set by
#: ``runtime/agent_handler.py`` around the agent's predict or stream, in its thread).
current_agent_context: contextvars.ContextVar[AgentContext | None] = contextvars.ContextVar(
    "modelport_agent_context", default=None
)


def agent_payload(context: AgentContext | None, body: bytes) -> bytes:
    """The payload of an AGENT_PREDICT or AGENT_STREAM: the context (if any), then ``body``."""
    encoded = context.to_json() if context is not None else b""
    return _CONTEXT_LENGTH.pack(len(encoded)) + encoded + body


def unwrap_agent(payload: bytes) -> tuple[AgentContext | None, bytes]:
    """The context and the body of an AGENT_PREDICT or AGENT_STREAM payload (``ValueError``
    when it cannot be read)."""
    if len(payload) < _CONTEXT_LENGTH.size:
        raise ValueError("agent payload shorter than its header")
    (length,) = _CONTEXT_LENGTH.unpack_from(payload)
    start = _CONTEXT_LENGTH.size
    if start + length > len(payload):
        raise ValueError("agent context longer than the payload")
    context = AgentContext.from_json(payload[start : start + length]) if length else None
    return context, payload[start + length :]


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


def ok_frame(request_id: int, body: bytes, trailer: Trailer | None = None) -> bytes:
    """The frame answering request ``request_id`` with ``body``: OK, or OK_TRAILER with ``trailer``."""
    if trailer is None:
        return encode(request_id, OK, body)
    return encode(request_id, OK_TRAILER, _trailer_payload(body, trailer))


def end_frame(request_id: int, trailer: Trailer | None = None) -> bytes:
    """The END of a stream; after an AGENT_STREAM it may carry ``trailer``."""
    return encode(request_id, END, b"" if trailer is None else _trailer_payload(b"", trailer))


def end_trailer(payload: bytes) -> Trailer | None:
    """The trailer an END payload carries (``None`` for an empty one); a 500 when unreadable."""
    return _read_trailer(payload)[1] if payload else None


def _trailer_payload(body: bytes, trailer: Trailer) -> bytes:
    notes: dict[str, Any] = {"missing_rows": trailer.missing_rows}
    if trailer.request_truncated:
        notes["request_truncated"] = True
    trace = trailer.trace or b""
    if trace:
        notes["trace_length"] = len(trace)
    encoded = orjson.dumps(notes)
    request = trailer.request or b""
    return _LENGTHS.pack(len(body), len(encoded)) + body + encoded + request + trace


def answer_of(kind: int, payload: bytes) -> tuple[bytes, Trailer | None]:
    """The body of an OK or OK_TRAILER answer, and its trailer (``None`` for OK); raises the
    error any other answer stands for (:func:`error_of`), or a 500 for a trailer that cannot
    be read."""
    if kind == OK:
        return payload, None
    if kind != OK_TRAILER:
        raise error_of(kind, payload)
    return _read_trailer(payload)


def _read_trailer(payload: bytes) -> tuple[bytes, Trailer]:
    try:
        body_length, notes_length = _LENGTHS.unpack_from(payload)
        start = _LENGTHS.size + body_length
        if start + notes_length > len(payload):
            raise ValueError("lengths beyond the payload")
        notes = orjson.loads(payload[start : start + notes_length])
        missing = notes["missing_rows"]
        if not isinstance(missing, dict) or not all(
            isinstance(t, str) and type(n) is int for t, n in missing.items()
        ):
            raise ValueError("missing_rows is not a map of counts")
        trace_length = notes.get("trace_length", 0)
        rest = len(payload) - start - notes_length
        if type(trace_length) is not int or not 0 <= trace_length <= rest:
            raise ValueError("trace_length beyond the payload")
    except (struct.error, ValueError, KeyError, TypeError) as exc:
        raise ModelportError(f"The replica answered with an unreadable trailer: {exc}") from None
    tail = payload[start + notes_length :]
    request, trace = tail[: len(tail) - trace_length], tail[len(tail) - trace_length :]
    return payload[_LENGTHS.size : start], Trailer(
        missing, request or None, notes.get("request_truncated") is True, trace or None
    )


def version_of(pong: bytes) -> int:
    """The protocol version a PONG payload says the replica speaks (1 when it says none)."""
    try:
        version = orjson.loads(pong).get("protocol", 1)
    except (orjson.JSONDecodeError, AttributeError):
        return 1
    return version if type(version) is int else 1


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
