"""The HTTP ceiling: a raw ASGI app that parses the JSON body with orjson and sends it back.

No framework and no model, so its req/s is what uvicorn (uvloop + httptools) and the load
generator manage on this machine; every other peer does this much work and more.
Run: ``uvicorn echo_app:app --app-dir bench/peers --loop uvloop --http httptools``.
"""

from __future__ import annotations

from typing import Any

import orjson

_HEADERS = [(b"content-type", b"application/json")]


async def _read_body(receive: Any) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    body = orjson.dumps(orjson.loads(await _read_body(receive) or b"{}"))
    await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
    await send({"type": "http.response.body", "body": body})
