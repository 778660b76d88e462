"""The AI gateway governs agent endpoints as any other (``tests/agents/world.py``): guardrails read
a Responses agent's input items and output items and a ChatAgent's messages, and rate limits
count agent queries. Each test sets the agent endpoint's AI gateway and puts the world's back."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.agents.world import CHAT, RESPONSES, World

API = "/api/2.0/serving-endpoints"


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": [{"type": "input_text", "text": text}]}]


def gateway_of(world: World, name: str) -> dict[str, Any]:
    got = world.admin.get(f"{API}/{name}")
    assert got.status_code == 200, got.text
    return dict(got.json()["ai_gateway"])


@pytest.fixture
def governed(world: World) -> Iterator[dict[str, dict[str, Any]]]:
    """The agents' AI gateways as the world set them, put back after the test."""
    saved = {name: gateway_of(world, name) for name in (RESPONSES, CHAT)}
    try:
        yield saved
    finally:
        for name, gateway in saved.items():
            r = world.admin.put(f"{API}/{name}/ai-gateway", json=gateway)
            assert r.status_code == 200, r.text


def test_guardrails_read_agent_inputs_and_outputs(world: World, governed: dict[str, dict[str, Any]]) -> None:
    guardrails = {"input": {"invalid_keywords": ["payroll"]}, "output": {"invalid_keywords": ["forbidden"]}}
    for name in (RESPONSES, CHAT):
        r = world.admin.put(f"{API}/{name}/ai-gateway", json={**governed[name], "guardrails": guardrails})
        assert r.status_code == 200, r.text

    refused = world.invoke(RESPONSES, {"input": user("show me the payroll")})
    assert refused.status_code == 400 and "invalid_keywords" in refused.json()["message"], refused.text
    blocked = world.invoke(RESPONSES, {"input": user("say forbidden")})  # the echo carries the word
    assert blocked.status_code == 400 and "invalid_keywords" in blocked.json()["message"], blocked.text
    fine = world.invoke(RESPONSES, {"input": user("say hello")})
    assert fine.status_code == 200, fine.text
    assert fine.json()["output"][0]["content"][0]["text"] == "echo: say hello"

    chat = world.invoke(CHAT, {"messages": [{"role": "user", "content": "payroll please"}]})
    assert chat.status_code == 400 and "invalid_keywords" in chat.json()["message"], chat.text
    chat = world.invoke(CHAT, {"messages": [{"role": "user", "content": "forbidden"}]})
    assert chat.status_code == 400 and "invalid_keywords" in chat.json()["message"], chat.text


def test_rate_limits_count_agent_queries(world: World, governed: dict[str, dict[str, Any]]) -> None:
    limits = [{"calls": 2, "key": "endpoint", "renewal_period": "minute"}]
    r = world.admin.put(f"{API}/{RESPONSES}/ai-gateway", json={**governed[RESPONSES], "rate_limits": limits})
    assert r.status_code == 200, r.text
    statuses = [world.invoke(RESPONSES, {"input": user(f"call {i}")}).status_code for i in range(3)]
    assert statuses == [200, 200, 429]
