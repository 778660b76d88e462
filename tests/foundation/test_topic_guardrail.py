"""The valid_topics guardrail, which embeds texts with the system embedding endpoint's model."""

from __future__ import annotations

import httpx

from tests.support.endpoints import wait_settled

API = "/api/2.0/serving-endpoints"


def test_valid_topics_with_the_system_embedding_model(llm_http: httpx.Client) -> None:
    entity = {
        "entity_name": "system.ai.smollm2-135m-instruct",
        "entity_version": "1",
        "workload_size": "Small",
        "scale_to_zero_enabled": True,
    }
    gateway = {"guardrails": {"input": {"valid_topics": ["cooking recipes", "baking bread"]}}}
    r = llm_http.post(
        API, json={"name": "cook-bot", "config": {"served_entities": [entity]}, "ai_gateway": gateway}
    )
    assert r.status_code == 200, r.text
    try:
        wait_settled(llm_http, "cook-bot", timeout=120)

        def ask(text: str) -> httpx.Response:
            return llm_http.post(
                "/serving-endpoints/cook-bot/invocations",
                json={"messages": [{"role": "user", "content": text}], "max_tokens": 4},
            )

        on_topic = ask("How long should I knead the dough for a sourdough loaf?")
        assert on_topic.status_code == 200, on_topic.text
        off_topic = ask("Which stocks should I buy for my retirement portfolio?")
        assert off_topic.status_code == 400, off_topic.text
        assert "input guardrail 'valid_topics'" in off_topic.json()["message"]
    finally:
        llm_http.delete(f"{API}/cook-bot")
