"""AI gateway on a real server: rate limits by every key, token limits, fallbacks, and exact
counters across two server processes sharing Redis.

Endpoints serve the loopback OpenAI fake through the ``custom`` provider (no replicas), so
every query is cheap and the counts are the gateway's alone.
"""

from __future__ import annotations

import concurrent.futures
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fakes.openai_server import API_KEY, FakeOpenAI
from tests.serverproc import ADMIN_TOKEN, ServerProcess
from tests.support.endpoints import wait_settled
from tests.support.names import unique

API = "/api/2.0/serving-endpoints"
SCIM = "/api/2.0/preview/scim/v2"
HELLO = {"messages": [{"role": "user", "content": "hello there"}]}


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAI]:
    server = FakeOpenAI().start()
    yield server
    server.stop()


def external(fake: FakeOpenAI, name: str = "gpt") -> dict[str, Any]:
    config = {"custom_provider_url": f"{fake.url}/v1", "bearer_token_auth": {"token_plaintext": API_KEY}}
    return {
        "name": name,
        "external_model": {
            "provider": "custom",
            "name": "llama-3",
            "task": "llm/v1/chat",
            "custom_provider_config": config,
        },
    }


def create(http: httpx.Client, name: str, entities: list[dict[str, Any]], **extra: Any) -> None:
    r = http.post(
        API, json={"name": name, "config": {"served_entities": entities, **extra.pop("config", {})}, **extra}
    )
    assert r.status_code == 200, r.text
    wait_settled(http, name, timeout=60)


def in_one_window(seconds: float = 15.0) -> None:
    """Wait for the next rate-limit window when fewer than ``seconds`` are left in this one.

    Windows are fixed minutes aligned to the epoch (``gateway/ratelimit.py``): every counter
    starts again at :00, so a burst that crosses it would see its counts reset halfway.
    """
    left = 60 - time.time() % 60
    if left < seconds:
        time.sleep(left + 0.1)


def query(client: httpx.Client, name: str) -> httpx.Response:
    return client.post(f"/serving-endpoints/{name}/invocations", json=HELLO)


def user_client(server: ServerProcess, http: httpx.Client, user: str, endpoint: str) -> httpx.Client:
    created = http.post(f"{SCIM}/Users", json={"userName": user})
    assert created.status_code in (201, 409), created.text
    token = http.post("/api/2.0/token-management/on-behalf-of/tokens", json={"user_name": user}).json()
    endpoint_id = http.get(f"{API}/{endpoint}").json()["id"]
    r = http.patch(
        f"/api/2.0/permissions/serving-endpoints/{endpoint_id}",
        json={"access_control_list": [{"user_name": user, "permission_level": "CAN_QUERY"}]},
    )
    assert r.status_code == 200, r.text
    return httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {token['token_value']}"}, timeout=30
    )


def test_endpoint_calls_limit(http: httpx.Client, fake: FakeOpenAI) -> None:
    name = unique("rl-endpoint")
    limits = {"rate_limits": [{"calls": 3, "renewal_period": "minute"}]}
    create(http, name, [external(fake)], ai_gateway=limits)
    in_one_window()
    statuses = [query(http, name).status_code for _ in range(5)]
    assert statuses == [200, 200, 200, 429, 429]
    refused = query(http, name)
    assert refused.status_code == 429
    body = refused.json()
    assert body["error_code"] == "REQUEST_LIMIT_EXCEEDED"
    assert f"endpoint '{name}'" in body["message"] and "3 calls per minute" in body["message"]
    assert 1 <= int(refused.headers["retry-after"]) <= 60


def test_user_limits_with_an_override(server: ServerProcess, http: httpx.Client, fake: FakeOpenAI) -> None:
    name = unique("rl-user")
    limits = [
        {"calls": 2, "renewal_period": "minute", "key": "user"},
        {"calls": 4, "renewal_period": "minute", "key": "user", "principal": "vip@example.com"},
    ]
    create(http, name, [external(fake)], ai_gateway={"rate_limits": limits})
    with (
        user_client(server, http, "plain@example.com", name) as plain,
        user_client(server, http, "vip@example.com", name) as vip,
    ):
        in_one_window()
        assert [query(plain, name).status_code for _ in range(3)] == [200, 200, 429]
        assert "for user 'plain@example.com'" in query(plain, name).json()["message"]
        assert [query(vip, name).status_code for _ in range(5)] == [200, 200, 200, 200, 429]
    # Each user has a counter of their own: the admin is still at zero.
    assert query(http, name).status_code == 200


def test_group_and_endpoint_limits_strictest_wins(
    server: ServerProcess, http: httpx.Client, fake: FakeOpenAI
) -> None:
    name = unique("rl-group")
    group = unique("analysts")
    member = f"{unique('member')}@example.com"
    created = http.post(f"{SCIM}/Groups", json={"displayName": group})
    assert created.status_code == 201, created.text
    assert http.post(f"{SCIM}/Users", json={"userName": member}).status_code == 201
    added = http.patch(
        f"{SCIM}/Groups/{created.json()['id']}",
        json={"Operations": [{"op": "add", "path": "members", "value": [{"value": member}]}]},
    )
    assert added.status_code == 200, added.text
    limits = [
        {"calls": 10, "renewal_period": "minute", "key": "endpoint"},
        {"calls": 3, "renewal_period": "minute", "key": "user_group", "principal": group},
    ]
    create(http, name, [external(fake)], ai_gateway={"rate_limits": limits})
    with user_client(server, http, member, name) as client:
        in_one_window()
        assert [query(client, name).status_code for _ in range(4)] == [200, 200, 200, 429]
        assert f"group '{group}'" in query(client, name).json()["message"]
    # Others are held by the endpoint's limit only: 10 - 3 calls left.
    assert [query(http, name).status_code for _ in range(8)] == [200] * 7 + [429]


def test_service_principal_limit(server: ServerProcess, http: httpx.Client, fake: FakeOpenAI) -> None:
    name = unique("rl-sp")
    app_id = str(uuid.uuid4())
    assert http.post(f"{SCIM}/ServicePrincipals", json={"applicationId": app_id}).status_code == 201
    token = http.post("/api/2.0/token-management/on-behalf-of/tokens", json={"application_id": app_id}).json()
    create(
        http,
        name,
        [external(fake)],
        ai_gateway={"rate_limits": [{"calls": 1, "renewal_period": "minute", "key": "service_principal"}]},
    )
    endpoint_id = http.get(f"{API}/{name}").json()["id"]
    http.patch(
        f"/api/2.0/permissions/serving-endpoints/{endpoint_id}",
        json={"access_control_list": [{"service_principal_name": app_id, "permission_level": "CAN_QUERY"}]},
    )
    with httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {token['token_value']}"}, timeout=30
    ) as sp:
        in_one_window()
        assert [query(sp, name).status_code for _ in range(2)] == [200, 429]
    assert query(http, name).status_code == 200  # users are not service principals


def test_tokens_limit(http: httpx.Client, fake: FakeOpenAI) -> None:
    name = unique("rl-tokens")
    create(
        http, name, [external(fake)], ai_gateway={"rate_limits": [{"tokens": 5, "renewal_period": "minute"}]}
    )
    in_one_window(25.0)  # both endpoints' token counts, and up to 5 s for the streamed one
    first = query(http, name)
    assert first.status_code == 200
    assert first.json()["usage"]["total_tokens"] > 5  # one answer may overshoot; the next is refused
    refused = query(http, name)
    assert refused.status_code == 429 and "5 tokens per minute" in refused.json()["message"]
    # Streamed answers count too (their usage arrives in the last chunk).
    other = unique("rl-tokens-stream")
    create(
        http, other, [external(fake)], ai_gateway={"rate_limits": [{"tokens": 5, "renewal_period": "minute"}]}
    )
    with http.stream("POST", f"/serving-endpoints/{other}/invocations", json={**HELLO, "stream": True}) as r:
        assert r.status_code == 200
        assert [line for line in r.iter_lines() if line][-1] == "data: [DONE]"
    deadline = time.monotonic() + 5
    while query(http, other).status_code != 429:
        assert time.monotonic() < deadline, "the streamed answer's tokens were not counted"
        time.sleep(0.1)


def test_legacy_rate_limits_apply(http: httpx.Client, fake: FakeOpenAI) -> None:
    name = unique("rl-legacy")
    create(http, name, [external(fake)])
    r = http.put(
        f"{API}/{name}/rate-limits", json={"rate_limits": [{"calls": 1, "renewal_period": "minute"}]}
    )
    assert r.status_code == 200, r.text
    time.sleep(0.1)
    in_one_window()
    assert [query(http, name).status_code for _ in range(2)] == [200, 429]


def test_fallback_on_a_provider_503(http: httpx.Client, fake: FakeOpenAI) -> None:
    name = unique("fallback")
    routes = {
        "routes": [
            {"served_entity_name": "primary", "traffic_percentage": 100},
            {"served_entity_name": "backup", "traffic_percentage": 0},
        ]
    }
    create(
        http,
        name,
        [external(fake, "primary"), external(fake, "backup")],
        config={"traffic_config": routes},
        ai_gateway={"fallback_config": {"enabled": True}},
    )
    fake.faults.fail(503, "overloaded")
    r = query(http, name)
    assert r.status_code == 200, r.text
    assert r.headers["served-model-name"] == "backup"
    r = query(http, name)
    assert r.headers["served-model-name"] == "primary"
    # Without fallbacks the 503 reaches the client.
    put = http.put(f"{API}/{name}/ai-gateway", json={"fallback_config": {"enabled": False}})
    assert put.status_code == 200, put.text
    assert put.json()["fallback_config"] == {"enabled": False}
    time.sleep(0.1)
    fake.faults.fail(503, "overloaded")
    r = query(http, name)
    assert r.status_code == 503
    # A 400 is the caller's mistake: no fallback either.
    put = http.put(f"{API}/{name}/ai-gateway", json={"fallback_config": {"enabled": True}})
    assert put.status_code == 200, put.text
    assert put.json()["fallback_config"] == {"enabled": True}
    time.sleep(0.1)
    fake.faults.fail(400, "bad request")
    assert query(http, name).status_code == 400


RAISING_MODEL = """
import mlflow


class Raising(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        raise RuntimeError("this model always fails")


mlflow.models.set_model(Raising())
"""


def test_fallback_when_a_custom_model_raises(
    server: ServerProcess, http: httpx.Client, iris_model: str, tmp_path: Path
) -> None:
    import mlflow

    code = tmp_path / "raising_model.py"
    code.write_text(RAISING_MODEL)
    mlflow.set_tracking_uri(server.url)
    with mlflow.start_run():
        mlflow.pyfunc.log_model(name="model", python_model=str(code), registered_model_name="raising")
    name = unique("fallback-custom")
    entities = [
        {"name": "broken", "entity_name": "raising", "entity_version": "1", "workload_size": "Small"},
        {"name": "iris", "entity_name": iris_model, "entity_version": "1", "workload_size": "Small"},
    ]
    routes = {
        "routes": [
            {"served_entity_name": "broken", "traffic_percentage": 100},
            {"served_entity_name": "iris", "traffic_percentage": 0},
        ]
    }
    create(
        http,
        name,
        entities,
        config={"traffic_config": routes},
        ai_gateway={"fallback_config": {"enabled": True}},
    )
    body = {"dataframe_records": [{"f0": 0.9, "f1": 0.1, "f2": 0.1, "f3": 0.1}]}
    r = http.post(f"/serving-endpoints/{name}/invocations", json=body)
    assert r.status_code == 200, r.text
    assert r.headers["served-model-name"] == "iris"
    assert r.json()["predictions"] == [1]
    direct = http.post(f"/serving-endpoints/{name}/served-models/broken/invocations", json=body)
    assert direct.status_code == 500 and "this model always fails" in direct.json()["message"]


def test_limits_are_exact_across_two_servers_sharing_redis(
    tmp_path_factory: pytest.TempPathFactory, fake: FakeOpenAI, pg_url: str
) -> None:
    """Two server processes on one PostgreSQL store and one Redis: 30 calls per minute in
    total, however the 80 queries are spread over them."""
    try:
        import redis

        redis.Redis(host="127.0.0.1", port=6379, socket_timeout=1).ping()
    except Exception as exc:
        pytest.skip(f"Redis is not reachable at 127.0.0.1:6379: {exc}")
    from cryptography.fernet import Fernet

    args = ["--redis", "redis://127.0.0.1:6379/0"]
    env = {"MODELPORT_SECRETS_KEY": Fernet.generate_key().decode()}  # one store, one key
    one = ServerProcess(tmp_path_factory.mktemp("redis-a"), store=pg_url, extra_args=args, env=env).start()
    try:
        two = ServerProcess(
            tmp_path_factory.mktemp("redis-b"), store=pg_url, extra_args=args, env=env
        ).start()
    except BaseException:
        one.stop()
        raise
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    try:
        name = unique("rl-shared")
        with httpx.Client(base_url=one.url, headers=headers, timeout=30) as http:
            create(
                http,
                name,
                [external(fake)],
                ai_gateway={"rate_limits": [{"calls": 30, "renewal_period": "minute"}]},
            )
        clients = [httpx.Client(base_url=s.url, headers=headers, timeout=30) for s in (one, two)]
        # The second server learns of the endpoint within its 2 s refresh.
        deadline = time.monotonic() + 10
        while clients[1].get(f"{API}/{name}").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        time.sleep(2.5)
        in_one_window()  # the burst stays in one window

        def hit(i: int) -> int:
            return query(clients[i % 2], name).status_code

        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            statuses = list(pool.map(hit, range(80)))
        for c in clients:
            c.close()
        assert statuses.count(200) == 30, statuses
        assert statuses.count(429) == 50
    finally:
        one.stop()
        two.stop()
