"""The response cache (``ai_gateway.response_cache``) on a real server.

Most endpoints serve the loopback OpenAI fake through the ``custom`` provider: the fake records
every request it gets, so a hit shows as a request the provider never saw, and its answers carry
a random ``id``, so a hit shows as the very answer of the miss it repeats. One endpoint serves
the iris model on a replica (a custom model), and one test runs a server of two processes
(``--workers 2``) whose cache lives in Redis. The foundation endpoint and semantic matches need
the system models: ``tests/foundation/test_response_cache_llm.py``.

Each test prints the hits and lookups the endpoint's metrics counted (``-s`` shows them).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.fakes.openai_server import FakeOpenAI
from tests.serverproc import ServerProcess
from tests.support.endpoints import wait_settled
from tests.support.names import unique
from tests.support.principals import create_user, obo_token
from tests.support.processes import admin_client, live_processes, pinned
from tests.support.providers import custom_chat_entity

API = "/api/2.0/serving-endpoints"
CACHE = {"enabled": True}
HEADER = "x-modelport-cache"
REDIS = os.environ.get("MODELPORT_TEST_REDIS", "redis://127.0.0.1:6379/0")
ROW = {"dataframe_records": [{"f0": 0.9, "f1": 0.1, "f2": 0.2, "f3": 0.3}]}


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAI]:
    started = FakeOpenAI().start()
    yield started
    started.stop()


@pytest.fixture
def provider(fake: FakeOpenAI) -> FakeOpenAI:
    """The module's OpenAI fake, with no request recorded and no fault queued."""
    fake.reset()
    return fake


def create(http: httpx.Client, name: str, entities: list[dict[str, Any]], **gateway: Any) -> dict[str, Any]:
    """Create endpoint ``name`` with ``ai_gateway`` ``gateway`` and wait until it serves."""
    body = {"name": name, "config": {"served_entities": entities}, "ai_gateway": gateway}
    created = http.post(API, json=body)
    assert created.status_code == 200, created.text
    settled = wait_settled(http, name)
    assert settled["state"]["ready"] == "READY", settled
    return settled


def cached_chat(
    http: httpx.Client, fake: FakeOpenAI, cache: dict[str, Any] | None = None, **gateway: Any
) -> str:
    """A new chat endpoint in front of ``fake`` with the response cache on."""
    name = unique("cache")
    create(http, name, [custom_chat_entity(fake.url)], response_cache=cache or CACHE, **gateway)
    return name


def chat(text: str = "hello there", **extra: Any) -> dict[str, Any]:
    """A chat request; ``temperature`` 0 (cacheable) unless ``extra`` says otherwise."""
    return {"messages": [{"role": "user", "content": text}], "temperature": 0, **extra}


def ask(client: httpx.Client, name: str, body: dict[str, Any]) -> httpx.Response:
    return client.post(f"/serving-endpoints/{name}/invocations", json=body)


def calls(fake: FakeOpenAI) -> int:
    """Chat requests the provider received since the test began."""
    return sum(1 for r in fake.requests if r.path.endswith("/chat/completions"))


def lookups(http: httpx.Client, name: str) -> dict[str, float]:
    """The endpoint's ``modelport_response_cache_lookups_total`` by result, from its metrics route."""
    text = http.get(f"{API}/{name}/metrics", headers={"Accept": "text/plain"}).text
    return _lookups(text, name)


def _lookups(text: str, name: str) -> dict[str, float]:
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "modelport_response_cache_lookups_total" and sample.labels["endpoint"] == name:
                found[sample.labels["result"]] = sample.value
    return found


def report(test: str, counts: dict[str, float]) -> None:
    hits = counts.get("hit", 0.0)
    looked = hits + counts.get("miss", 0.0)
    rate = f"{hits / looked:.0%}" if looked else "-"
    bypass = counts.get("bypass", 0.0)
    print(f"\n[hit rate] {test}: {hits:.0f} hits / {looked:.0f} lookups = {rate} (bypass {bypass:.0f})")


def user_client(server: ServerProcess, http: httpx.Client, endpoints: list[str]) -> httpx.Client:
    """A new user's client, with CAN_QUERY on ``endpoints``."""
    user = f"{unique('cache-user')}@example.com"
    create_user(http, user)
    token = obo_token(http, user_name=user)["token_value"]
    for name in endpoints:
        endpoint_id = http.get(f"{API}/{name}").json()["id"]
        granted = http.patch(
            f"/api/2.0/permissions/serving-endpoints/{endpoint_id}",
            json={"access_control_list": [{"user_name": user, "permission_level": "CAN_QUERY"}]},
        )
        assert granted.status_code == 200, granted.text
    return httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=30)


def in_one_window(seconds: float = 10.0) -> None:
    """Wait for the next rate-limit window (fixed minutes) when fewer than ``seconds`` are left."""
    left = 60 - time.time() % 60
    if left < seconds:
        time.sleep(left + 0.1)


def sse(response: httpx.Response) -> list[str]:
    assert response.headers["content-type"].startswith("text/event-stream")
    return [line for line in response.iter_lines() if line]


def stream(client: httpx.Client, name: str, body: dict[str, Any]) -> tuple[str | None, list[str]]:
    """The cache header and the event lines of a streamed query."""
    with client.stream("POST", f"/serving-endpoints/{name}/invocations", json={**body, "stream": True}) as r:
        assert r.status_code == 200, r.read()
        return r.headers.get(HEADER), sse(r)


# ---- exact matches -----------------------------------------------------------------------------
def test_an_external_endpoint_answers_a_repeated_query_without_the_provider(
    http: httpx.Client, provider: FakeOpenAI
) -> None:
    name = cached_chat(http, provider)
    assert http.get(f"{API}/{name}").json()["ai_gateway"]["response_cache"] == {
        "enabled": True,
        "ttl_seconds": 300,
        "scope": "user",
        "max_entry_bytes": 1048576,
        "cache_non_deterministic": False,
    }
    first = ask(http, name, chat())
    assert first.status_code == 200, first.text
    assert first.headers[HEADER] == "miss"
    again = ask(http, name, chat())
    assert again.headers[HEADER] == "hit"
    assert again.json() == first.json()  # the same answer, random id and all
    assert again.headers["served-model-name"] == first.headers["served-model-name"] == "gpt"
    # Key order and the fields that never reach the model make no new entry.
    reordered = {"client_request_id": "c-1", "temperature": 0, "messages": chat()["messages"]}
    assert ask(http, name, reordered).headers[HEADER] == "hit"
    assert calls(provider) == 1
    # Another text or another parameter is another entry.
    other = ask(http, name, chat("something else"))
    assert other.headers[HEADER] == "miss"
    assert other.json()["choices"][0]["message"]["content"] == "You said: something else"
    assert ask(http, name, chat(max_tokens=2)).headers[HEADER] == "miss"
    assert calls(provider) == 3
    # Sampling without a seed, or several answers, is never cached: each reaches the provider.
    for body in (chat(temperature=0.7), chat(temperature=0.7), {"messages": chat()["messages"]}, chat(n=2)):
        r = ask(http, name, body)
        assert r.status_code == 200, r.text
        assert r.headers[HEADER] == "bypass"
    assert calls(provider) == 7
    # A seed makes a sampled answer repeatable: cached.
    assert [ask(http, name, chat(temperature=0.7, seed=7)).headers[HEADER] for _ in range(2)] == [
        "miss",
        "hit",
    ]
    # The OpenAI-compatible route (its body names the endpoint in ``model``) is cached too.
    body = {**chat(), "model": name}
    openai_route = [http.post("/serving-endpoints/chat/completions", json=body) for _ in range(2)]
    assert [r.headers[HEADER] for r in openai_route] == ["miss", "hit"]
    assert openai_route[1].json() == openai_route[0].json()
    assert calls(provider) == 9
    counts = lookups(http, name)
    assert counts == {"hit": 4.0, "miss": 5.0, "bypass": 4.0}
    server_wide = _lookups(http.get("/metrics").text, name)
    assert server_wide == counts
    report("external endpoint", counts)


def test_a_custom_model_endpoint_answers_a_repeated_query_from_the_cache(
    http: httpx.Client, iris_model: str
) -> None:
    name = unique("cache-iris")
    entity = {"name": "iris", "entity_name": iris_model, "entity_version": "1", "workload_size": "Small"}
    create(http, name, [entity], response_cache={"enabled": True, "scope": "endpoint"})

    def requests_counted() -> float:
        text = http.get(f"{API}/{name}/metrics", headers={"Accept": "text/plain"}).text
        return sum(
            s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
            if s.name == "modelport_endpoint_requests_total" and s.labels.get("served_entity") == "iris"
        )

    first = ask(http, name, ROW)
    assert first.status_code == 200, first.text
    assert first.headers[HEADER] == "miss" and first.json()["predictions"] == [1]
    hits = [ask(http, name, ROW) for _ in range(3)]
    assert [r.headers[HEADER] for r in hits] == ["hit"] * 3
    assert all(r.json() == first.json() for r in hits)
    assert all(r.headers["served-model-name"] == "iris" for r in hits)
    other = {"dataframe_records": [{"f0": 0.1, "f1": 0.1, "f2": 0.1, "f3": 0.1}]}
    assert ask(http, name, other).headers[HEADER] == "miss"
    split = {"dataframe_split": {"columns": ["f0", "f1", "f2", "f3"], "data": [[0.9, 0.1, 0.2, 0.3]]}}
    assert ask(http, name, split).headers[HEADER] == "miss"  # another request format: another entry
    # Hits are queries the endpoint answered: in its request count, as served by "iris".
    assert requests_counted() == 6
    counts = lookups(http, name)
    assert counts == {"hit": 3.0, "miss": 3.0}
    report("custom model (iris)", counts)


def test_scope_user_keeps_answers_per_caller_and_scope_endpoint_shares_them(
    server: ServerProcess, http: httpx.Client, provider: FakeOpenAI
) -> None:
    per_user = cached_chat(http, provider)
    shared = cached_chat(http, provider, {"enabled": True, "scope": "endpoint"})
    with user_client(server, http, [per_user, shared]) as other:
        assert ask(http, per_user, chat()).headers[HEADER] == "miss"
        assert ask(other, per_user, chat()).headers[HEADER] == "miss"  # not the admin's answer
        assert ask(other, per_user, chat()).headers[HEADER] == "hit"  # its own
        assert ask(http, per_user, chat()).headers[HEADER] == "hit"
        assert calls(provider) == 2
        mine = ask(http, shared, chat())
        assert mine.headers[HEADER] == "miss"
        theirs = ask(other, shared, chat())
        assert theirs.headers[HEADER] == "hit" and theirs.json() == mine.json()
        assert calls(provider) == 3
    # A cached answer is still no answer for a caller without CAN_QUERY, or without a token.
    with user_client(server, http, []) as stranger:
        refused = ask(stranger, shared, chat())
        assert refused.status_code == 403, refused.text
        assert HEADER not in refused.headers
    assert httpx.post(f"{server.url}/serving-endpoints/{shared}/invocations", json=chat()).status_code == 401
    counts = lookups(http, per_user)
    assert counts == {"hit": 2.0, "miss": 2.0}
    report("scope user", counts)
    report("scope endpoint", lookups(http, shared))


def test_entries_expire_after_their_ttl(http: httpx.Client, provider: FakeOpenAI) -> None:
    name = cached_chat(http, provider, {"enabled": True, "ttl_seconds": 2})
    assert ask(http, name, chat()).headers[HEADER] == "miss"
    stored = time.monotonic()  # the entry was stored before the answer was sent
    assert ask(http, name, chat()).headers[HEADER] == "hit"
    time.sleep(max(0.0, stored + 2.05 - time.monotonic()))
    assert [ask(http, name, chat()).headers[HEADER] for _ in range(2)] == ["miss", "hit"]
    assert calls(provider) == 2
    report("ttl 2 s", lookups(http, name))


def test_a_changed_guardrail_or_config_serves_no_old_answer(http: httpx.Client, provider: FakeOpenAI) -> None:
    name = cached_chat(http, provider)
    assert [ask(http, name, chat()).headers[HEADER] for _ in range(2)] == ["miss", "hit"]
    gateway = {"response_cache": CACHE, "guardrails": {"input": {"invalid_keywords": ["payroll"]}}}
    put = http.put(f"{API}/{name}/ai-gateway", json=gateway)
    assert put.status_code == 200, put.text
    assert put.json()["response_cache"]["scope"] == "user"
    assert [ask(http, name, chat()).headers[HEADER] for _ in range(2)] == ["miss", "hit"]
    assert calls(provider) == 2
    # A new serving config (another model behind the entity) is a new group too.
    entity = custom_chat_entity(provider.url)
    entity["external_model"]["name"] = "m2"
    updated = http.put(f"{API}/{name}/config", json={"served_entities": [entity]})
    assert updated.status_code == 200, updated.text
    assert wait_settled(http, name)["state"]["config_update"] == "NOT_UPDATING"
    fresh = ask(http, name, chat())
    assert fresh.headers[HEADER] == "miss"
    assert provider.last("/chat/completions").json()["model"] == "m2"
    assert ask(http, name, chat()).headers[HEADER] == "hit"
    assert calls(provider) == 3
    counts = lookups(http, name)
    assert counts == {"hit": 3.0, "miss": 3.0}
    report("config and guardrail changes", counts)


# ---- what is never stored ----------------------------------------------------------------------
def test_errors_guarded_answers_and_fallback_answers_are_not_stored(
    http: httpx.Client, provider: FakeOpenAI
) -> None:
    name = cached_chat(http, provider)
    for status, answered in ((500, 502), (400, 400)):
        provider.faults.fail(status, "fake failure")
        failed = ask(http, name, chat(f"fails with {status}"))
        assert failed.status_code == answered, failed.text
        retried = ask(http, name, chat(f"fails with {status}"))
        assert retried.status_code == 200 and retried.headers[HEADER] == "miss"  # the error was not kept
        assert ask(http, name, chat(f"fails with {status}")).headers[HEADER] == "hit"
    assert calls(provider) == 4
    report("errors", lookups(http, name))

    # An answer an output guardrail blocked or masked is never served again.
    email = "write to jane.doe@example.com"
    blocking = cached_chat(http, provider, guardrails={"output": {"pii": {"behavior": "BLOCK"}}})
    masking = cached_chat(http, provider, guardrails={"output": {"pii": {"behavior": "MASK"}}})
    before = calls(provider)
    for _ in range(2):
        blocked = ask(http, blocking, chat(email))
        assert blocked.status_code == 400 and "output guardrail 'pii'" in blocked.json()["message"]
    assert calls(provider) == before + 2
    masked = [ask(http, masking, chat(email)) for _ in range(2)]
    assert [r.headers[HEADER] for r in masked] == ["miss", "miss"]
    assert masked[1].json()["choices"][0]["message"]["content"] == "You said: write to [EMAIL]"
    assert masked[1].json()["id"] != masked[0].json()["id"]
    assert calls(provider) == before + 4
    # Their answers that pass the guardrail are cached as usual.
    assert [ask(http, masking, chat()).headers[HEADER] for _ in range(2)] == ["miss", "hit"]
    report("output guardrail MASK", lookups(http, masking))

    # An answer a fallback gave is not stored: the next query asks the primary again.
    fallback = unique("cache-fallback")
    routes = [
        {"served_entity_name": "primary", "traffic_percentage": 100},
        {"served_entity_name": "backup", "traffic_percentage": 0},
    ]
    body = {
        "name": fallback,
        "config": {
            "served_entities": [
                custom_chat_entity(provider.url, "primary"),
                custom_chat_entity(provider.url, "backup"),
            ],
            "traffic_config": {"routes": routes},
        },
        "ai_gateway": {"response_cache": CACHE, "fallback_config": {"enabled": True}},
    }
    assert http.post(API, json=body).status_code == 200
    wait_settled(http, fallback)
    provider.faults.fail(503, "overloaded")
    rescued = ask(http, fallback, chat())
    assert rescued.status_code == 200 and rescued.headers["served-model-name"] == "backup"
    assert rescued.headers[HEADER] == "miss"
    answers = [ask(http, fallback, chat()) for _ in range(2)]
    assert [(r.headers[HEADER], r.headers["served-model-name"]) for r in answers] == [
        ("miss", "primary"),
        ("hit", "primary"),
    ]
    report("fallback", lookups(http, fallback))


def test_a_streamed_answer_is_replayed_as_a_stream(http: httpx.Client, provider: FakeOpenAI) -> None:
    name = cached_chat(http, provider)
    body = chat("tell me a story", stream_options={"include_usage": True})
    header, first = stream(http, name, body)
    assert header == "miss"
    assert first[-1] == "data: [DONE]" and len(first) > 4
    header, again = stream(http, name, body)
    assert header == "hit"
    assert again == first  # the same chunks, byte for byte, and [DONE]
    text = "".join(
        c["choices"][0]["delta"].get("content") or ""
        for c in (orjson.loads(line[6:]) for line in again[:-1])
        if c["choices"]
    )
    assert text == "You said: tell me a story"
    assert calls(provider) == 1
    # The whole answer of the same request is another entry.
    assert ask(http, name, body).headers[HEADER] == "miss"
    assert calls(provider) == 2
    # A stream that breaks off is not stored.
    provider.break_stream_after = 2
    with http.stream(
        "POST", f"/serving-endpoints/{name}/invocations", json={**chat("cut"), "stream": True}
    ) as r:
        broken = sse(r)
    assert '"error"' in broken[-2] and broken[-1] == "data: [DONE]"
    provider.break_stream_after = None
    header, whole = stream(http, name, chat("cut"))
    assert header == "miss" and "cut" in "".join(whole)
    assert calls(provider) == 4
    report("stream", lookups(http, name))


# ---- governed like any answer ------------------------------------------------------------------
def test_rate_limits_count_hits(http: httpx.Client, provider: FakeOpenAI) -> None:
    name = cached_chat(http, provider, rate_limits=[{"calls": 3, "renewal_period": "minute"}])
    in_one_window()
    answers = [ask(http, name, chat()) for _ in range(4)]
    assert [r.status_code for r in answers] == [200, 200, 200, 429]
    assert [r.headers.get(HEADER) for r in answers[:3]] == ["miss", "hit", "hit"]
    assert answers[3].json()["error_code"] == "REQUEST_LIMIT_EXCEEDED"
    assert calls(provider) == 1
    report("calls limit 3", lookups(http, name))
    # A streamed miss's tokens still count against a token limit (and a hit adds none).
    tokens = cached_chat(http, provider, rate_limits=[{"tokens": 5, "renewal_period": "minute"}])
    in_one_window(15.0)
    body = chat("count these many words please", stream_options={"include_usage": True})
    header, _ = stream(http, tokens, body)
    assert header == "miss"
    deadline = time.monotonic() + 5
    while True:  # the same query again: a hit, refused once the miss's tokens are credited
        again = http.post(f"/serving-endpoints/{tokens}/invocations", json={**body, "stream": True})
        if again.status_code == 429:
            break
        assert again.headers[HEADER] == "hit"
        assert time.monotonic() < deadline, "the streamed miss's tokens were not counted"
        time.sleep(0.1)
    assert calls(provider) == 2


def test_a_stream_under_output_guardrails_counts_its_tokens(http: httpx.Client, provider: FakeOpenAI) -> None:
    """Not the cache's own rule, found with it: a stream the output guardrails buffer still
    credits its tokens to a token limit (the next query is refused)."""
    guard = {"output": {"invalid_keywords": ["never-said-word"]}}
    name = cached_chat(
        http,
        provider,
        {"enabled": False},
        guardrails=guard,
        rate_limits=[{"tokens": 5, "renewal_period": "minute"}],
    )
    in_one_window(15.0)
    body = chat("count these many words please", stream_options={"include_usage": True})
    header, events = stream(http, name, body)
    assert header is None and events[-1] == "data: [DONE]"
    deadline = time.monotonic() + 5
    while True:
        again = http.post(f"/serving-endpoints/{name}/invocations", json={**body, "stream": True})
        if again.status_code == 429:
            break
        assert again.status_code == 200, again.text
        assert time.monotonic() < deadline, "the guarded stream's tokens were not counted"
        time.sleep(0.1)
    assert again.json()["error_code"] == "REQUEST_LIMIT_EXCEEDED"


def test_hits_are_recorded_with_zero_tokens_and_marked_in_the_inference_table(
    http: httpx.Client, provider: FakeOpenAI
) -> None:
    prefix = unique("cache_log").replace("-", "_")
    tables = {
        "usage_tracking_config": {"enabled": True},
        "inference_table_config": {
            "catalog_name": "main",
            "schema_name": "serving",
            "table_name_prefix": prefix,
            "enabled": True,
        },
    }
    name = cached_chat(http, provider, **tables)
    miss, hit = ask(http, name, chat()), ask(http, name, chat())
    assert (miss.headers[HEADER], hit.headers[HEADER]) == ("miss", "hit")
    ids = {miss.headers["x-request-id"]: "miss", hit.headers["x-request-id"]: "hit"}

    def rows(sql: str) -> list[dict[str, Any]]:
        deadline = time.monotonic() + 20
        while True:  # the tables are written every 2 s
            r = http.post("/api/2.0/modelport/tables/query", json={"sql": sql})
            if r.status_code == 200 and len(r.json()["rows"]) == 2:
                return [dict(zip(r.json()["columns"], row, strict=True)) for row in r.json()["rows"]]
            assert r.status_code in (200, 400), r.text
            assert time.monotonic() < deadline, r.text
            time.sleep(0.3)

    usage = rows(
        "SELECT request_id, input_token_count, output_token_count FROM system.serving.endpoint_usage "
        f"WHERE endpoint_name = '{name}'"
    )
    tokens = {ids[row["request_id"]]: (row["input_token_count"], row["output_token_count"]) for row in usage}
    used = miss.json()["usage"]
    assert tokens == {"miss": (used["prompt_tokens"], used["completion_tokens"]), "hit": (0, 0)}
    assert used["prompt_tokens"] > 0
    payload = rows(f"SELECT databricks_request_id, cache_hit, response FROM main.serving.{prefix}_payload")
    marked = {ids[row["databricks_request_id"]]: row["cache_hit"] for row in payload}
    assert marked == {"miss": False, "hit": True}
    assert all(orjson.loads(row["response"]) == miss.json() for row in payload)
    report("tables", lookups(http, name))


# ---- shared through Redis ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def two_processes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server of two HTTP processes on one port, its cache in Redis."""
    try:
        import redis

        redis.Redis.from_url(REDIS, socket_timeout=1).ping()
    except Exception as exc:
        pytest.skip(f"Redis is not reachable at {REDIS}: {exc}")
    # Up once both processes answer: the queries here need no model registry (``/ready``).
    started = ServerProcess(
        tmp_path_factory.mktemp("cache-workers"), extra_args=["--workers", "2", "--redis", REDIS]
    ).start_until("/health", timeout=180)
    try:
        deadline = time.monotonic() + 120
        while len(live_processes(started)) < 2:
            assert time.monotonic() < deadline, started.log_tail()
            time.sleep(0.3)
        yield started
    finally:
        started.stop()


def test_two_processes_share_the_cache_through_redis(two_processes: ServerProcess, fake: FakeOpenAI) -> None:
    fake.reset()
    name = unique("cache-redis")
    with admin_client(two_processes) as http:
        create(
            http, name, [custom_chat_entity(fake.url)], response_cache={"enabled": True, "ttl_seconds": 60}
        )
    with pinned(two_processes, "server") as first, pinned(two_processes, "worker") as second:
        miss = ask(second, name, chat())
        assert miss.status_code == 200, miss.text
        assert miss.headers[HEADER] == "miss"
        hit = ask(first, name, chat())
        assert hit.headers[HEADER] == "hit" and hit.json() == miss.json()
        assert ask(second, name, chat()).headers[HEADER] == "hit"
        assert calls(fake) == 1
        # The other process's answer to a new question is there at once as well.
        assert ask(first, name, chat("second question")).headers[HEADER] == "miss"
        assert ask(second, name, chat("second question")).headers[HEADER] == "hit"
        assert calls(fake) == 2
    # Either process's metrics merge both processes' counts (each publishes its own every second).
    with admin_client(two_processes) as http:
        deadline = time.monotonic() + 10
        while (total := lookups(http, name)) != {"hit": 3.0, "miss": 2.0}:
            assert time.monotonic() < deadline, total
            time.sleep(0.2)
    report("two processes, Redis", total)
