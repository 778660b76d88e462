"""The query fast lane's error answers (``api/data/invocations.py``), driven as plain ASGI."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from modelport.api.data.invocations import serve
from modelport.errors import NotImplementedByServer, TemporarilyUnavailable
from modelport.gateway.dataplane import Answer
from modelport.spec.identity import Caller

CALLER = Caller(id=1, name="admin", kind="user", groups=(), principal_ids=frozenset({1}))


class Auth:
    async def authenticate_async(self, authorization: str | None) -> Caller:
        return CALLER


def answer_to(error: Exception) -> tuple[int, dict[bytes, bytes]]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b'{"input": "x"}', "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def call(caller: Caller, body: bytes) -> Answer:
        raise error

    scope = {"type": "http", "path": "/serving-endpoints/e/invocations", "headers": []}
    services = SimpleNamespace(auth=Auth())
    asyncio.run(serve(services, scope, receive, send, call))  # type: ignore[arg-type]
    start = sent[0]
    return start["status"], dict(start["headers"])


def test_a_501_tells_the_openai_client_not_to_retry() -> None:
    status, headers = answer_to(NotImplementedByServer("Provider 'x' does not support embeddings"))
    assert (status, headers[b"x-should-retry"]) == (501, b"false")


def test_other_5xx_leave_retrying_to_the_client() -> None:
    status, headers = answer_to(TemporarilyUnavailable("busy", retry_after=3))
    assert status == 503 and b"x-should-retry" not in headers
    assert headers[b"retry-after"] == b"3"
