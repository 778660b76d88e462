"""A scripted fake modelport server behind ``httpx.MockTransport``: no sockets."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from modelport.client.sdk import ModelportClient

BASE_URL = "http://modelport.test"
TOKEN = "dapi-test-token"

Reply = tuple[int, Any] | tuple[int, Any, dict[str, str]]


class FakeServer:
    """Answers scripted replies per (method, path) and records every request.

    ``on`` queues replies for a route; the last one repeats. A route without a script
    answers 404 ENDPOINT_NOT_FOUND, as the real server does for an unknown path.
    """

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self._replies: dict[tuple[str, str], list[Reply]] = {}
        self.transport = httpx.MockTransport(self._handle)

    def on(self, method: str, path: str, *replies: Reply) -> None:
        self._replies[(method, path)] = list(replies)

    def _handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.raw_path.decode().split("?")[0]
        queue = self._replies.get((request.method, path))
        if not queue:
            body = {"error_code": "ENDPOINT_NOT_FOUND", "message": f"No API found for {path}"}
            return httpx.Response(404, json=body)
        reply = queue.pop(0) if len(queue) > 1 else queue[0]
        status, body, *rest = reply
        headers = rest[0] if rest else {}
        if isinstance(body, str):
            return httpx.Response(status, text=body, headers=headers)
        return httpx.Response(status, json=body, headers=headers)

    def client(self, host: str | None = BASE_URL, token: str | None = TOKEN) -> ModelportClient:
        return ModelportClient(host, token, transport=self.transport)

    def factory(self) -> Callable[[str | None, str | None], ModelportClient]:
        """A CLI client factory: the command's --host/--token, else the test defaults."""
        return lambda host, token: self.client(host or BASE_URL, token or TOKEN)

    def body(self, index: int = -1) -> Any:
        return json.loads(self.requests[index].content)

    def calls(self) -> list[tuple[str, str]]:
        return [(r.method, r.url.raw_path.decode()) for r in self.requests]


@pytest.fixture
def server() -> FakeServer:
    return FakeServer()


def _endpoint_body(
    name: str = "my-endpoint",
    update: str = "NOT_UPDATING",
    ready: str = "READY",
    **extra: Any,
) -> dict[str, Any]:
    """A ServingEndpointDetailed in the shape compat-api.md §A.5 records."""
    return {
        "name": name,
        "id": "e3c1a2b3",
        "creator": "admin",
        "creation_timestamp": 1795293205110,
        "last_updated_timestamp": 1795293265000,
        "state": {"ready": ready, "config_update": update},
        "tags": [{"key": "team", "value": "ml"}],
        **extra,
    }


@pytest.fixture
def make_endpoint() -> Callable[..., dict[str, Any]]:
    return _endpoint_body
