"""The data-plane router (``api/data/router.py``), driven as plain ASGI: paths, methods and the
error answers it sends through the one renderer (``api/errors.py``)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import orjson

from modelport.api.data.router import Query, match, serve_query
from modelport.errors import NotImplementedByServer, TemporarilyUnavailable
from modelport.gateway.exchange import Exchange
from modelport.spec.identity import Caller

CALLER = Caller(id=1, name="admin", kind="user", groups=(), principal_ids=frozenset({1}))


class Auth:
    async def authenticate_async(self, authorization: str | None, *, agent: bool = False) -> Caller:
        assert agent  # the query routes accept agent tokens (gateway/agent_tokens.py)
        return CALLER


class Plane:
    def __init__(self, error: Exception) -> None:
        self.error = error
        self.seen: list[Exchange] = []

    async def query(self, exchange: Exchange) -> Any:
        self.seen.append(exchange)
        raise self.error


def answer_to(
    error: Exception, method: str = "POST", body: bytes = b'{"input": "x"}'
) -> tuple[int, dict[bytes, bytes], Any]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    path = "/serving-endpoints/e/invocations"
    scope = {"type": "http", "method": method, "path": path, "headers": []}
    services = SimpleNamespace(auth=Auth(), dataplane=Plane(error))
    query = match(path)
    assert query is not None
    asyncio.run(serve_query(services, query, scope, receive, send))  # type: ignore[arg-type]
    start = sent[0]
    return start["status"], dict(start["headers"]), orjson.loads(sent[1]["body"])


def test_paths_name_the_endpoint_the_entity_or_the_openai_task() -> None:
    assert match("/serving-endpoints/e/invocations") == Query("invocations", "e", None)
    assert match("/serving-endpoints/e/served-models/v2/invocations") == Query("invocations", "e", "v2")
    assert match("/serving-endpoints/chat/completions") == Query("chat_completions", task="llm/v1/chat")
    assert match("/serving-endpoints/embeddings") == Query("embeddings", task="llm/v1/embeddings")
    assert match("/serving-endpoints/e") is None
    assert match("/api/2.0/serving-endpoints/e/invocations") is None


def test_a_501_tells_the_openai_client_not_to_retry() -> None:
    status, headers, _ = answer_to(NotImplementedByServer("Provider 'x' does not support embeddings"))
    assert (status, headers[b"x-should-retry"]) == (501, b"false")


def test_other_5xx_leave_retrying_to_the_client() -> None:
    status, headers, body = answer_to(TemporarilyUnavailable("busy", retry_after=3))
    assert status == 503 and b"x-should-retry" not in headers
    assert headers[b"retry-after"] == b"3"
    assert body == {"error_code": "TEMPORARILY_UNAVAILABLE", "message": "busy"}


def test_a_wrong_method_is_405_before_authentication() -> None:
    status, headers, body = answer_to(AssertionError("never queried"), method="GET")
    assert (status, body["error_code"]) == (405, "METHOD_NOT_ALLOWED")
    assert headers[b"allow"] == b"POST"  # RFC 9110
    assert body["message"] == "Method GET is not allowed for '/serving-endpoints/e/invocations'."


def test_a_bug_is_a_500_with_the_request_id_and_no_trace() -> None:
    status, _, body = answer_to(KeyError("secret detail"))
    assert (status, body["error_code"]) == (500, "INTERNAL_ERROR")
    assert "secret detail" not in body["message"] and "request id" in body["message"]


def test_an_empty_body_is_a_400_naming_what_to_send() -> None:
    status, _, body = answer_to(AssertionError("never queried"), body=b"  ")
    assert (status, body["error_code"]) == (400, "MALFORMED_REQUEST")
    assert body["message"].startswith("Request body is empty")
