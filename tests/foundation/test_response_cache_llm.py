"""The response cache where it needs the system models: a foundation-model endpoint (SmolLM2 on
llama.cpp) answering a repeated greedy query from the cache, and semantic matches, whose texts
the system embedding endpoint (all-MiniLM-L6-v2) embeds.

The semantic endpoint serves the loopback OpenAI fake (``custom`` provider), which answers
"You said: <the question>": a semantic hit shows as the answer to the question first asked, with
the provider never asked. Cosines of the questions below with "What is the capital of France?"
(all-MiniLM-L6-v2, as ``user: <text>``): "What's the capital of France?" 0.996, "Hi, what is the
capital of France?" 0.975, "what is the capital city of France" 0.908, "What is the capital of
Germany?" 0.676; the threshold is 0.95.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.fakes.openai_server import FakeOpenAI
from tests.support.endpoints import wait_settled
from tests.support.names import unique
from tests.support.providers import custom_chat_entity

API = "/api/2.0/serving-endpoints"
HEADER = "x-modelport-cache"
ASKED = "What is the capital of France?"


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    started = FakeOpenAI().start()
    yield started
    started.stop()


@pytest.fixture
def endpoints(llm_http: httpx.Client) -> Iterator[list[str]]:
    """Names of the endpoints a test creates, deleted after it."""
    made: list[str] = []
    yield made
    for name in made:
        llm_http.delete(f"{API}/{name}")


def create(http: httpx.Client, made: list[str], entity: dict[str, Any], cache: dict[str, Any]) -> str:
    name = unique("cache")
    body = {"name": name, "config": {"served_entities": [entity]}, "ai_gateway": {"response_cache": cache}}
    created = http.post(API, json=body)
    assert created.status_code == 200, created.text
    made.append(name)
    settled = wait_settled(http, name, timeout=120)
    assert settled["state"]["ready"] == "READY", settled
    return name


def ask(http: httpx.Client, name: str, text: str, **extra: Any) -> httpx.Response:
    body = {"messages": [{"role": "user", "content": text}], "temperature": 0, **extra}
    answer = http.post(f"/serving-endpoints/{name}/invocations", json=body)
    assert answer.status_code == 200, answer.text
    return answer


def metrics(http: httpx.Client, name: str) -> dict[tuple[str, str], float]:
    """The endpoint's samples: (name, result or served entity) -> value."""
    text = http.get(f"{API}/{name}/metrics", headers={"Accept": "text/plain"}).text
    return {
        (s.name, s.labels.get("result") or s.labels.get("served_entity") or ""): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name in ("modelport_response_cache_lookups_total", "modelport_endpoint_requests_total")
    }


def report(test: str, http: httpx.Client, name: str) -> None:
    found = metrics(http, name)
    hits = found.get(("modelport_response_cache_lookups_total", "hit"), 0.0)
    looked = hits + found.get(("modelport_response_cache_lookups_total", "miss"), 0.0)
    rate = f"{hits / looked:.0%}" if looked else "-"
    print(f"\n[hit rate] {test}: {hits:.0f} hits / {looked:.0f} lookups = {rate}")


def test_a_foundation_endpoint_answers_a_repeated_greedy_query_from_the_cache(
    llm_http: httpx.Client, endpoints: list[str]
) -> None:
    entity = {
        "name": "smol",
        "entity_name": "system.ai.smollm2-135m-instruct",
        "entity_version": "1",
        "workload_size": "Small",
        "scale_to_zero_enabled": True,
    }
    name = create(llm_http, endpoints, entity, {"enabled": True})
    first = ask(llm_http, name, "Name three colours.", max_tokens=8)
    assert first.headers[HEADER] == "miss"
    assert first.json()["choices"][0]["message"]["content"]
    again = [ask(llm_http, name, "Name three colours.", max_tokens=8) for _ in range(2)]
    assert [r.headers[HEADER] for r in again] == ["hit", "hit"]
    # The very answer of the miss: a new generation would have an id of its own.
    assert all(r.json() == first.json() for r in again)
    # Sampling (temperature above 0, no seed) goes to the model every time.
    sampled = ask(llm_http, name, "Name three colours.", max_tokens=8, temperature=0.8)
    assert sampled.headers[HEADER] == "bypass"
    assert sampled.json()["id"] != first.json()["id"]
    found = metrics(llm_http, name)
    assert found[("modelport_response_cache_lookups_total", "hit")] == 2
    assert found[("modelport_response_cache_lookups_total", "miss")] == 1
    assert found[("modelport_response_cache_lookups_total", "bypass")] == 1
    report("foundation endpoint (SmolLM2)", llm_http, name)


def test_semantic_hits_above_the_threshold_and_misses_below_it(
    llm_http: httpx.Client, fake: FakeOpenAI, endpoints: list[str]
) -> None:
    cache = {"enabled": True, "semantic_similarity": 0.95}
    name = create(llm_http, endpoints, custom_chat_entity(fake.url), cache)
    assert llm_http.get(f"{API}/{name}").json()["ai_gateway"]["response_cache"]["semantic_similarity"] == 0.95
    first = ask(llm_http, name, ASKED)
    assert first.headers[HEADER] == "miss"
    for text in ("What's the capital of France?", "Hi, what is the capital of France?"):
        near = ask(llm_http, name, text)
        assert near.headers[HEADER] == "hit", text
        assert near.json() == first.json()  # the answer to the question first asked
        assert near.json()["choices"][0]["message"]["content"] == f"You said: {ASKED}"
    assert len(fake.requests) == 1
    for text in ("What is the capital of Germany?", "what is the capital city of France"):
        far = ask(llm_http, name, text)
        assert far.headers[HEADER] == "miss", text
        assert far.json()["choices"][0]["message"]["content"] == f"You said: {text}"
    assert len(fake.requests) == 3
    # Only the wording may differ: another parameter is another bucket.
    other = ask(llm_http, name, "What's the capital of France?", max_tokens=3)
    assert other.headers[HEADER] == "miss"
    assert other.json()["choices"][0]["message"]["content"] == "You said: What's"
    assert len(fake.requests) == 4
    found = metrics(llm_http, name)
    assert found[("modelport_response_cache_lookups_total", "hit")] == 2
    assert found[("modelport_response_cache_lookups_total", "miss")] == 4
    report("semantic, threshold 0.95", llm_http, name)
