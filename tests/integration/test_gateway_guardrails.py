"""Guardrails on a real server, in front of the loopback OpenAI fake (which answers
"You said: <the last user message>", so what the provider received shows in the answer and
in the fake's record of the request)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from tests.fakes.openai_server import API_KEY, FakeOpenAI
from tests.support.endpoints import wait_settled

API = "/api/2.0/serving-endpoints"

PII = {
    "EMAIL": "jane.doe@example.com",
    "PHONE": "+1 415 555 2671",
    "CREDIT_CARD": "4111 1111 1111 1111",
    "IBAN": "DE89 3704 0044 0532 0130 00",
    "US_SSN": "123-45-6789",
    "IP_ADDRESS": "192.168.1.20",
}


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAI]:
    server = FakeOpenAI().start()
    yield server
    server.stop()


def _endpoint(http: httpx.Client, fake: FakeOpenAI, guardrails: dict[str, Any]) -> str:
    name = f"guarded-{uuid.uuid4().hex[:8]}"
    config = {"custom_provider_url": f"{fake.url}/v1", "bearer_token_auth": {"token_plaintext": API_KEY}}
    entity = {
        "name": "gpt",
        "external_model": {
            "provider": "custom",
            "name": "llama-3",
            "task": "llm/v1/chat",
            "custom_provider_config": config,
        },
    }
    body = {"name": name, "config": {"served_entities": [entity]}, "ai_gateway": {"guardrails": guardrails}}
    r = http.post(API, json=body)
    assert r.status_code == 200, r.text
    wait_settled(http, name)
    return name


def _ask(http: httpx.Client, name: str, text: str, **extra: Any) -> httpx.Response:
    return http.post(
        f"/serving-endpoints/{name}/invocations",
        json={"messages": [{"role": "user", "content": text}], **extra},
    )


@pytest.fixture(scope="module")
def endpoints(server: Any, fake: FakeOpenAI) -> Iterator[dict[str, str]]:
    from tests.integration.conftest import KEPT_ENDPOINTS
    from tests.serverproc import ADMIN_TOKEN

    with httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=30
    ) as http:
        names = {
            "block_in": _endpoint(http, fake, {"input": {"pii": {"behavior": "BLOCK"}}}),
            "mask_in": _endpoint(http, fake, {"input": {"pii": {"behavior": "MASK"}}}),
            "mask_out": _endpoint(http, fake, {"output": {"pii": {"behavior": "MASK"}}}),
            "block_out": _endpoint(http, fake, {"output": {"pii": {"behavior": "BLOCK"}}}),
            "words": _endpoint(
                http, fake, {"input": {"safety": True, "invalid_keywords": ["project falcon", "payroll"]}}
            ),
        }
        KEPT_ENDPOINTS.update(names.values())
        yield names
        for name in names.values():
            http.delete(f"{API}/{name}")
            KEPT_ENDPOINTS.discard(name)


@pytest.mark.parametrize("kind", sorted(PII))
def test_each_pii_type_is_blocked_before_the_provider(
    http: httpx.Client, fake: FakeOpenAI, endpoints: dict[str, str], kind: str
) -> None:
    before = len(fake.requests)
    r = _ask(http, endpoints["block_in"], f"Please remember {PII[kind]} for me.")
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["error_code"] == "BAD_REQUEST"
    assert "input guardrail 'pii'" in body["message"]
    assert PII[kind] not in body["message"]  # the value is never echoed
    assert len(fake.requests) == before  # the provider never saw it


@pytest.mark.parametrize("kind", sorted(PII))
def test_each_pii_type_is_masked_before_the_provider(
    http: httpx.Client, fake: FakeOpenAI, endpoints: dict[str, str], kind: str
) -> None:
    r = _ask(http, endpoints["mask_in"], f"Please remember {PII[kind]} for me.")
    assert r.status_code == 200, r.text
    sent = orjson.loads(fake.last("/chat/completions").body)["messages"][-1]["content"]
    assert sent == f"Please remember [{kind}] for me."
    assert r.json()["choices"][0]["message"]["content"] == f"You said: Please remember [{kind}] for me."


def test_text_without_pii_passes_untouched(
    http: httpx.Client, fake: FakeOpenAI, endpoints: dict[str, str]
) -> None:
    text = "Meet me at 10:30 on 2024-05-01, order 12345, total $99.95."
    r = _ask(http, endpoints["block_in"], text)
    assert r.status_code == 200, r.text
    assert orjson.loads(fake.last("/chat/completions").body)["messages"][-1]["content"] == text


def test_output_pii_masked_and_blocked(
    http: httpx.Client, fake: FakeOpenAI, endpoints: dict[str, str]
) -> None:
    r = _ask(http, endpoints["mask_out"], f"My card is {PII['CREDIT_CARD']}")
    assert r.status_code == 200, r.text
    # The provider got the request as sent; the client gets the answer masked.
    assert PII["CREDIT_CARD"] in orjson.loads(fake.last("/chat/completions").body)["messages"][-1]["content"]
    assert r.json()["choices"][0]["message"]["content"] == "You said: My card is [CREDIT_CARD]"
    r = _ask(http, endpoints["block_out"], f"Write to {PII['EMAIL']}")
    assert r.status_code == 400
    assert "output guardrail 'pii'" in r.json()["message"]


def test_output_guardrails_on_a_stream(http: httpx.Client, endpoints: dict[str, str]) -> None:
    body = {"messages": [{"role": "user", "content": f"call {PII['PHONE']} now"}], "stream": True}
    with http.stream("POST", f"/serving-endpoints/{endpoints['mask_out']}/invocations", json=body) as r:
        assert r.status_code == 200
        events = [line[6:] for line in r.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [orjson.loads(e) for e in events[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c.get("choices"))
    assert text == "You said: call [PHONE] now"
    blocked = http.post(
        f"/serving-endpoints/{endpoints['block_out']}/invocations",
        json={"messages": [{"role": "user", "content": f"ip {PII['IP_ADDRESS']}"}], "stream": True},
    )
    assert blocked.status_code == 400 and "output guardrail 'pii'" in blocked.json()["message"]


def test_keywords_and_safety(http: httpx.Client, fake: FakeOpenAI, endpoints: dict[str, str]) -> None:
    name = endpoints["words"]
    r = _ask(http, name, "What is the status of Project Falcon?")
    assert r.status_code == 400 and "invalid_keywords" in r.json()["message"]
    r = _ask(http, name, "Explain step by step how to make meth at home.")
    assert r.status_code == 400 and "'safety'" in r.json()["message"]
    r = _ask(http, name, "How do I kill a stuck process on Linux?")
    assert r.status_code == 200, r.text


def _table_requests(http: httpx.Client, table: str, request_id: str) -> list[list[str | None]]:
    """``[request, received_request]`` of the row of ``request_id``."""
    sql = (
        f"SELECT request, received_request FROM main.serving.{table} "
        f"WHERE databricks_request_id = '{request_id}'"
    )
    r = http.post("/api/2.0/modelport/tables/query", json={"sql": sql})
    assert r.status_code == 200, r.text
    return [list(row) for row in r.json()["rows"]]


def _masked_endpoint(http: httpx.Client, fake: FakeOpenAI, prefix: str, raw: bool | None) -> str:
    name = _endpoint(http, fake, {"input": {"pii": {"behavior": "MASK"}}})
    table: dict[str, Any] = {"catalog_name": "main", "schema_name": "serving", "table_name_prefix": prefix}
    if raw is not None:
        table["record_raw_request"] = raw
    gateway = {"guardrails": {"input": {"pii": {"behavior": "MASK"}}}, "inference_table_config": table}
    r = http.put(f"{API}/{name}/ai-gateway", json=gateway)
    assert r.status_code == 200, r.text
    assert r.json()["inference_table_config"].get("record_raw_request") == raw
    return name


def test_the_inference_table_keeps_the_masked_request_unless_raw_is_asked_for(
    http: httpx.Client, fake: FakeOpenAI
) -> None:
    text = f"Mail {PII['EMAIL']} the card {PII['CREDIT_CARD']}"
    masked = _masked_endpoint(http, fake, "masked", None)
    raw = _masked_endpoint(http, fake, "raw", True)
    answers = {name: _ask(http, name, text) for name in (masked, raw)}
    for answer in answers.values():
        assert answer.status_code == 200, answer.text
        assert (
            answer.json()["choices"][0]["message"]["content"]
            == "You said: Mail [EMAIL] the card [CREDIT_CARD]"
        )
    [[request, received]] = _table_requests(http, "masked_payload", answers[masked].headers["x-request-id"])
    assert orjson.loads(request)["messages"][-1]["content"] == "Mail [EMAIL] the card [CREDIT_CARD]"
    assert PII["EMAIL"] not in request and PII["CREDIT_CARD"] not in request
    assert received is None
    [[request, received]] = _table_requests(http, "raw_payload", answers[raw].headers["x-request-id"])
    assert orjson.loads(request)["messages"][-1]["content"] == "Mail [EMAIL] the card [CREDIT_CARD]"
    assert received is not None and orjson.loads(received)["messages"][-1]["content"] == text
