"""Fallback between two external embeddings entities keeps the caller's ``encoding_format``.

The endpoint serves two OpenAI entities, each behind its own loopback fake, with all the
traffic on ``primary`` and ``ai_gateway.fallback_config`` on. ``primary`` answers 503 once, so
the query goes to ``backup``: the answer must be encoded as the caller asked, exactly as
when ``primary`` answers. (A failure after the request was read for the first entity used to
lose ``encoding_format`` for the second on the OpenAI route, whose request is parsed once.)
"""

from __future__ import annotations

import base64
import struct
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.fakes.openai_server import API_KEY, FakeOpenAI
from tests.support.endpoints import wait_settled

API = "/api/2.0/serving-endpoints"
TEXTS = ["hello there", "fall back"]


@pytest.fixture(scope="module")
def fakes() -> Iterator[tuple[FakeOpenAI, FakeOpenAI]]:
    primary, backup = FakeOpenAI().start(), FakeOpenAI().start()
    yield primary, backup
    primary.stop()
    backup.stop()


def _entity(name: str, fake: FakeOpenAI) -> dict[str, Any]:
    config = {"openai_api_key_plaintext": API_KEY, "openai_api_base": f"{fake.url}/v1"}
    return {
        "name": name,
        "external_model": {
            "provider": "openai",
            "name": "text-embedding-3-small",
            "task": "llm/v1/embeddings",
            "openai_config": config,
        },
    }


@pytest.fixture
def endpoint(http: httpx.Client, fakes: tuple[FakeOpenAI, FakeOpenAI]) -> str:
    primary, backup = fakes
    primary.reset()
    backup.reset()
    name = f"fallback-emb-{uuid.uuid4().hex[:8]}"
    traffic = {
        "routes": [
            {"served_entity_name": "primary", "traffic_percentage": 100},
            {"served_entity_name": "backup", "traffic_percentage": 0},
        ]
    }
    body = {
        "name": name,
        "config": {
            "served_entities": [_entity("primary", primary), _entity("backup", backup)],
            "traffic_config": traffic,
        },
        "ai_gateway": {"fallback_config": {"enabled": True}},
    }
    created = http.post(API, json=body)
    assert created.status_code == 200, created.text
    wait_settled(http, name, timeout=60)
    return name


def _post(http: httpx.Client, route: str, name: str, encoding: str) -> httpx.Response:
    body = {"input": TEXTS, "encoding_format": encoding}
    if route == "openai":
        return http.post("/serving-endpoints/embeddings", json={"model": name, **body})
    return http.post(f"/serving-endpoints/{name}/invocations", json=body)


def _floats(embedding: str) -> list[float]:
    raw = base64.b64decode(embedding)
    return list(struct.unpack(f"<{len(raw) // 4}f", raw))


@pytest.mark.parametrize("route", ["openai", "invocations"])
def test_the_fallback_entity_answers_in_the_encoding_asked_for(
    http: httpx.Client, fakes: tuple[FakeOpenAI, FakeOpenAI], endpoint: str, route: str
) -> None:
    primary, backup = fakes
    floats = _post(http, route, endpoint, "float")
    assert floats.status_code == 200, floats.text
    assert floats.headers["served-model-name"] == "primary"
    vectors = [item["embedding"] for item in floats.json()["data"]]
    assert all(isinstance(v, list) for v in vectors)

    primary.faults.fail(503, "overloaded")
    fell_back = _post(http, route, endpoint, "base64")
    assert fell_back.status_code == 200, fell_back.text
    assert fell_back.headers["served-model-name"] == "backup"
    encoded = [item["embedding"] for item in fell_back.json()["data"]]
    assert all(isinstance(e, str) for e in encoded), encoded
    assert [_floats(e) for e in encoded] == [pytest.approx(v, rel=1e-6) for v in vectors]
    # Upstream always sends floats: the gateway encodes, whichever entity answered.
    assert "encoding_format" not in backup.last("/embeddings").json()

    direct = _post(http, route, endpoint, "base64")
    assert direct.headers["served-model-name"] == "primary"
    assert direct.json()["data"] == fell_back.json()["data"]
