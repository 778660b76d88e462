"""The system endpoints through the official clients: openai, mlflow.deployments, plain HTTP.

SmolLM2-135M on llama.cpp and all-MiniLM-L6-v2 on onnxruntime, served by a real server
with real replica processes. Answers of a 135M model are not checked for wisdom, only for
what the API promises: shapes, usage counts, finish reasons, stops, JSON that parses.
"""

from __future__ import annotations

import json
import math
import time
from typing import Any

import httpx
import pytest
from openai import OpenAI

from tests.foundation.conftest import CHAT_ENDPOINT, EMBED_ENDPOINT, IDLE_SECONDS
from tests.serverproc import ADMIN_TOKEN, ServerProcess
from tests.support.endpoints import wait_settled

API = "/api/2.0/serving-endpoints"
QUESTION = [{"role": "user", "content": "Name three colours."}]


@pytest.fixture
def client(llm_server: ServerProcess) -> OpenAI:
    return OpenAI(base_url=f"{llm_server.url}/serving-endpoints", api_key=ADMIN_TOKEN, max_retries=0)


def _metric(http: httpx.Client, endpoint: str, name: str) -> float:
    text = http.get(f"{API}/{endpoint}/metrics", headers={"Accept": "text/plain"}).text
    values = [
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(f"modelport_endpoint_{name}{{") or line.startswith(f"modelport_endpoint_{name} ")
    ]
    assert values, f"no metric {name} in:\n{text}"
    return sum(values)


def test_system_endpoints_are_listed_with_their_foundation_model(llm_http: httpx.Client) -> None:
    listing = {e["name"]: e for e in llm_http.get(API).json()["endpoints"]}
    chat = listing[CHAT_ENDPOINT]
    assert chat["creator"] == "modelport-system"
    entity = chat["config"]["served_entities"][0]
    assert entity["entity_name"] == "system.ai.smollm2-135m-instruct"
    assert entity["foundation_model"]["display_name"] == "SmolLM2 135M Instruct"
    assert listing[EMBED_ENDPOINT]["config"]["served_entities"][0]["foundation_model"]["name"] == (
        "system.ai.all-minilm-l6-v2"
    )


def test_chat_answers_with_usage(client: OpenAI) -> None:
    answer = client.chat.completions.create(
        model=CHAT_ENDPOINT, messages=QUESTION, max_tokens=40, temperature=0
    )
    choice = answer.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content
    assert choice.finish_reason in ("stop", "length")
    assert answer.usage is not None
    assert answer.usage.prompt_tokens > 5
    assert 0 < answer.usage.completion_tokens <= 40
    assert answer.usage.total_tokens == answer.usage.prompt_tokens + answer.usage.completion_tokens
    again = client.chat.completions.create(
        model=CHAT_ENDPOINT, messages=QUESTION, max_tokens=40, temperature=0
    )
    assert again.choices[0].message.content == choice.message.content  # greedy: the same answer


def test_max_tokens_ends_with_length(client: OpenAI) -> None:
    answer = client.chat.completions.create(
        model=CHAT_ENDPOINT,
        messages=[{"role": "user", "content": "Write a long story about a dragon and a knight."}],
        max_tokens=7,
        temperature=0,
    )
    assert answer.choices[0].finish_reason == "length"
    assert answer.usage is not None and answer.usage.completion_tokens == 7


def test_streamed_chat(client: OpenAI) -> None:
    stream = client.chat.completions.create(
        model=CHAT_ENDPOINT, messages=QUESTION, max_tokens=24, temperature=0, stream=True
    )
    chunks = list(stream)
    assert len(chunks) >= 3
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")
    assert all(c.choices[0].finish_reason is None for c in chunks[:-1])
    usage = chunks[-1].usage
    assert usage is not None and 0 < usage.completion_tokens <= 24
    whole = client.chat.completions.create(
        model=CHAT_ENDPOINT, messages=QUESTION, max_tokens=24, temperature=0
    )
    assert text == whole.choices[0].message.content  # streamed and whole answers agree


def test_raw_stream_is_what_mlflow_reads(llm_http: httpx.Client) -> None:
    body = {"messages": QUESTION, "max_tokens": 5, "stream": True}
    with llm_http.stream("POST", f"/serving-endpoints/{CHAT_ENDPOINT}/invocations", json=body) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in resp.iter_lines() if line]
    assert all(line.startswith("data: ") for line in lines)
    assert lines[-1] == "data: [DONE]"
    last = json.loads(lines[-2][6:])
    assert last["usage"]["completion_tokens"] == 5 and last["choices"][0]["finish_reason"] == "length"


def test_mlflow_deployments_predict_stream(
    llm_server: ServerProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow.deployments import get_deploy_client

    monkeypatch.setenv("DATABRICKS_HOST", llm_server.url)
    monkeypatch.setenv("DATABRICKS_TOKEN", ADMIN_TOKEN)
    deploy = get_deploy_client("databricks")
    chunks = list(
        deploy.predict_stream(
            endpoint=CHAT_ENDPOINT, inputs={"messages": QUESTION, "max_tokens": 12, "temperature": 0}
        )
    )
    assert chunks and chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length")
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert text
    whole = deploy.predict(
        endpoint=CHAT_ENDPOINT, inputs={"messages": QUESTION, "max_tokens": 12, "temperature": 0}
    )
    assert whole["choices"][0]["message"]["content"] == text


def test_completions(client: OpenAI) -> None:
    answer = client.completions.create(
        model=CHAT_ENDPOINT, prompt="The capital of France is", max_tokens=8, temperature=0
    )
    assert answer.choices[0].text
    assert answer.choices[0].finish_reason in ("stop", "length")
    assert answer.usage is not None and answer.usage.completion_tokens <= 8
    two = client.completions.create(
        model=CHAT_ENDPOINT, prompt=["One, two,", "Monday, Tuesday,"], max_tokens=4, temperature=0
    )
    assert [c.index for c in two.choices] == [0, 1]
    assert two.usage is not None and two.usage.completion_tokens <= 8


def test_stop_sequence_cuts_the_answer(client: OpenAI) -> None:
    messages = [{"role": "user", "content": "Count from 1 to 20, separated by commas."}]
    full = client.chat.completions.create(
        model=CHAT_ENDPOINT, messages=messages, max_tokens=60, temperature=0
    )
    text = full.choices[0].message.content or ""
    # A stop string from the middle of the greedy answer.
    words = [w for w in text.split() if len(w) >= 2]
    assert len(words) >= 3, text
    stop = words[len(words) // 2]
    cut = client.chat.completions.create(
        model=CHAT_ENDPOINT, messages=messages, max_tokens=60, temperature=0, stop=[stop]
    )
    assert cut.choices[0].finish_reason == "stop"
    got = cut.choices[0].message.content or ""
    assert stop not in got
    assert text.startswith(got)
    assert len(got) < len(text)


def test_json_schema_answer_parses(client: OpenAI) -> None:
    schema = {
        "type": "object",
        # Bounded, so that the answer ends well before max_tokens (a cut answer is
        # finish_reason "length" and incomplete JSON, as with OpenAI).
        "properties": {"city": {"type": "string", "maxLength": 30}, "population": {"type": "integer"}},
        "required": ["city", "population"],
    }
    for temperature in (0.0, 1.0):
        answer = client.chat.completions.create(
            model=CHAT_ENDPOINT,
            messages=[{"role": "user", "content": "Give a city and its population as JSON."}],
            max_tokens=200,
            temperature=temperature,
            response_format={"type": "json_schema", "json_schema": {"name": "city", "schema": schema}},
        )
        assert answer.choices[0].finish_reason == "stop"
        data = json.loads(answer.choices[0].message.content or "")
        assert isinstance(data["city"], str) and isinstance(data["population"], int)


def _cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def test_embeddings(client: OpenAI) -> None:
    texts = ["A man is eating food.", "A man is eating a piece of bread.", "The girl is carrying a baby."]
    answer = client.embeddings.create(model=EMBED_ENDPOINT, input=texts)  # openai sends base64
    vectors = [d.embedding for d in answer.data]
    assert [len(v) for v in vectors] == [384, 384, 384]
    assert _cosine(vectors[0], vectors[1]) > _cosine(vectors[0], vectors[2]) + 0.2
    assert answer.usage.prompt_tokens > 10
    floats = client.embeddings.create(model=EMBED_ENDPOINT, input=texts[0], encoding_format="float")
    assert _cosine(floats.data[0].embedding, vectors[0]) > 0.99999


def test_wrong_route_and_bad_fields_are_400(llm_http: httpx.Client) -> None:
    r = llm_http.post("/serving-endpoints/embeddings", json={"model": CHAT_ENDPOINT, "input": "x"})
    assert r.status_code == 400 and "/serving-endpoints/chat/completions" in r.json()["message"]
    r = llm_http.post(
        f"/serving-endpoints/{CHAT_ENDPOINT}/invocations", json={"messages": QUESTION, "temperature": 3}
    )
    assert r.status_code == 400
    assert r.json() == {
        "error_code": "INVALID_PARAMETER_VALUE",
        "message": "'temperature' must be between 0 and 2; got 3.",
    }
    r = llm_http.post(f"/serving-endpoints/{EMBED_ENDPOINT}/invocations", json={"messages": QUESTION})
    assert r.status_code == 400 and "embedding model" in r.json()["message"]


def test_client_disconnect_mid_stream_frees_the_replica(llm_http: httpx.Client) -> None:
    """Four streams that would run for minutes, abandoned after two chunks each: the replica
    stops generating for them, so the next request is answered at once."""
    long = {
        "messages": [{"role": "user", "content": "Tell me everything about the history of Rome."}],
        "max_tokens": 3000,
        "temperature": 1.0,
        "stream": True,
    }
    for _ in range(4):
        with llm_http.stream("POST", f"/serving-endpoints/{CHAT_ENDPOINT}/invocations", json=long) as resp:
            assert resp.status_code == 200
            lines = resp.iter_lines()
            got = [next(lines) for _ in range(3)]  # two chunks (and the blank line between)
            assert got[0].startswith("data: ")
    deadline = time.monotonic() + 10
    while _metric(llm_http, CHAT_ENDPOINT, "in_flight") > 0:
        assert time.monotonic() < deadline, "abandoned streams still counted in flight"
        time.sleep(0.1)
    started = time.monotonic()
    r = llm_http.post(
        f"/serving-endpoints/{CHAT_ENDPOINT}/invocations", json={"messages": QUESTION, "max_tokens": 4}
    )
    assert r.status_code == 200, r.text
    # Unfreed, the four sequences above would hold every slot for 3,000 tokens each (minutes).
    assert time.monotonic() - started < 15


def test_system_endpoints_cannot_be_changed(llm_http: httpx.Client) -> None:
    r = llm_http.delete(f"{API}/{CHAT_ENDPOINT}")
    assert r.status_code == 403 and "system endpoint" in r.json()["message"]
    r = llm_http.put(
        f"{API}/{CHAT_ENDPOINT}/config",
        json={"served_entities": [{"entity_name": "system.ai.smollm2-135m-instruct", "entity_version": "1"}]},
    )
    assert r.status_code == 403 and r.json()["error_code"] == "PERMISSION_DENIED"
    endpoint_id = llm_http.get(f"{API}/{CHAT_ENDPOINT}").json()["id"]
    r = llm_http.put(
        f"/api/2.0/permissions/serving-endpoints/{endpoint_id}", json={"access_control_list": []}
    )
    assert r.status_code == 403
    assert llm_http.get(f"{API}/{CHAT_ENDPOINT}").json()["state"]["ready"] == "READY"


def test_any_user_with_a_token_may_query(llm_server: ServerProcess, llm_http: httpx.Client) -> None:
    created = llm_http.post("/api/2.0/preview/scim/v2/Users", json={"userName": "reader@example.com"})
    assert created.status_code == 201, created.text
    token = llm_http.post(
        "/api/2.0/token-management/on-behalf-of/tokens", json={"user_name": "reader@example.com"}
    ).json()["token_value"]
    user = OpenAI(base_url=f"{llm_server.url}/serving-endpoints", api_key=token, max_retries=0)
    answer = user.embeddings.create(model=EMBED_ENDPOINT, input="hello", encoding_format="float")
    assert len(answer.data[0].embedding) == 384
    r = httpx.delete(f"{llm_server.url}{API}/{EMBED_ENDPOINT}", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 403


def test_scale_to_zero_and_cold_start(llm_http: httpx.Client) -> None:
    r = llm_http.post(f"/serving-endpoints/{EMBED_ENDPOINT}/invocations", json={"input": ["warm"]})
    assert r.status_code == 200
    assert _metric(llm_http, EMBED_ENDPOINT, "replicas") == 1
    deadline = time.monotonic() + IDLE_SECONDS + 20
    while _metric(llm_http, EMBED_ENDPOINT, "replicas") > 0:
        assert time.monotonic() < deadline, "the idle system endpoint kept its replica"
        time.sleep(0.5)
    cold_before = _metric(llm_http, EMBED_ENDPOINT, "cold_starts")
    started = time.monotonic()
    r = llm_http.post(f"/serving-endpoints/{EMBED_ENDPOINT}/invocations", json={"input": ["cold"]})
    cold_seconds = time.monotonic() - started
    assert r.status_code == 200, r.text
    assert len(r.json()["data"][0]["embedding"]) == 384
    assert _metric(llm_http, EMBED_ENDPOINT, "cold_starts") == cold_before + 1
    print(f"cold start of {EMBED_ENDPOINT}: {cold_seconds:.2f}s")


def _wait_ready(http: httpx.Client, name: str, timeout: float = 120) -> dict[str, Any]:
    return wait_settled(http, name, timeout=timeout)


def test_provisioned_throughput_endpoint(llm_http: httpx.Client) -> None:
    body = {
        "name": "pt-smollm2",
        "config": {
            "served_entities": [
                {
                    "entity_name": "system.ai.smollm2-135m-instruct",
                    "entity_version": "1",
                    "provisioned_model_units": 1,
                }
            ]
        },
    }
    r = llm_http.post(f"{API}/pt", json=body)
    assert r.status_code == 200, r.text
    try:
        got = _wait_ready(llm_http, "pt-smollm2")
        assert got["state"]["ready"] == "READY", got
        entity = got["config"]["served_entities"][0]
        assert entity["provisioned_model_units"] == 1
        build = llm_http.get(f"{API}/pt-smollm2/served-models/{entity['name']}/build-logs").json()["logs"]
        assert "tokens/s" in build and "1-1 replica(s)" in build, build
        r = llm_http.post(
            "/serving-endpoints/chat/completions",
            json={"model": "pt-smollm2", "messages": QUESTION, "max_tokens": 3},
        )
        assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] <= 3
        bad = llm_http.put(
            f"{API}/pt/pt-smollm2/config",
            json={"config": {"served_entities": [{"entity_name": "system.ai.smollm2-135m-instruct"}]}},
        )
        assert bad.status_code == 400 and "provisioned_model_units" in bad.json()["message"]
        r = llm_http.put(
            f"{API}/pt/pt-smollm2/config",
            json={
                "config": {
                    "served_entities": [
                        {
                            "entity_name": "system.ai.smollm2-135m-instruct",
                            "provisioned_model_units": 2,
                        }
                    ]
                }
            },
        )
        assert r.status_code == 200, r.text
        got = _wait_ready(llm_http, "pt-smollm2")
        assert got["config"]["served_entities"][0]["provisioned_model_units"] == 2
        assert _metric(llm_http, "pt-smollm2", "replicas") == 2
    finally:
        llm_http.delete(f"{API}/pt-smollm2")
