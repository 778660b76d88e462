"""Streamed answers as server-sent events.

Exactly what mlflow's strict parser accepts: each chunk is one ``data: <json>`` line and a
blank line, the last event is ``data: [DONE]``; no comments, no ``event:`` or ``id:``
lines. An error before the first chunk never gets here (the data plane raises it, and it
becomes an ordinary error response); an error after the stream began is sent as one
``data: {"error": {"error_code", "message"}}`` event before ``[DONE]`` (the openai client
raises it as ``APIError``). When the client goes away the stream is closed at once, which
releases the provider's connection.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.types import Receive, Send

from modelport.api.errors import error_event_body
from modelport.gateway.exchange import Answer, Chunks

__all__ = ["Pump", "send_events"]

DONE = b"data: [DONE]\n\n"


def _event(data: Any) -> bytes:
    """One event; ``bytes`` are a chunk already encoded as JSON (by a replica)."""
    return b"data: " + (data if isinstance(data, bytes) else orjson.dumps(data)) + b"\n\n"


async def _pump(send: Send, chunks: Chunks) -> None:
    try:
        async for chunk in chunks:
            await send({"type": "http.response.body", "body": _event(chunk), "more_body": True})
    except Exception as exc:
        await send({"type": "http.response.body", "body": _event(error_event_body(exc)), "more_body": True})
    await send({"type": "http.response.body", "body": DONE, "more_body": False})


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


#: Sends a stream's events and ends the response body (:func:`_pump`; the Responses route has its own).
Pump = Callable[[Send, Chunks], Awaitable[None]]


async def send_events(
    receive: Receive,
    send: Send,
    answer: Answer,
    headers: list[tuple[bytes, bytes]] | None = None,
    pump: Pump = _pump,
) -> None:
    """Send ``answer.stream`` as the response (with ``headers`` added) through ``pump``, and close
    it (always), at once when the client goes away."""
    chunks = answer.stream
    assert chunks is not None
    try:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"text/event-stream; charset=utf-8"),
                    (b"cache-control", b"no-cache"),
                    (b"x-accel-buffering", b"no"),
                    (b"served-model-name", answer.served.encode()),
                    *(headers or ()),
                ],
            }
        )
        pumping = asyncio.ensure_future(pump(send, chunks))
        watch = asyncio.ensure_future(_disconnected(receive))
        try:
            await asyncio.wait((pumping, watch), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (pumping, watch):
                if not task.done():
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
        if pumping.done() and not pumping.cancelled():
            pumping.result()  # a failure to send, if any
    finally:
        await chunks.aclose()
