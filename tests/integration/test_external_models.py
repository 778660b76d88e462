"""External models end to end: a real ``modelport serve`` in front of the loopback OpenAI fake,
queried through ``/invocations`` (httpx), the official ``openai`` client and
``mlflow.deployments`` ("databricks" target), for each OpenAI-family provider.

The session's ``provider_server`` (``tests/integration/conftest.py``: ``MODELPORT_OPENAI_BASE_URL``
and ``MODELPORT_ENTRA_BASE_URL`` point at the fake, and its ``--external-timeout`` is short),
with one endpoint per provider and task made here; ``databricks-model-serving`` endpoints
query the ``openai-*`` endpoints of the same server. No replica processes are involved.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import orjson
import pytest
from mlflow.deployments import BaseDeploymentClient

from tests.fakes.openai_server import API_KEY, AZURE_KEY, ENTRA, FakeOpenAI
from tests.serverproc import ADMIN_TOKEN, ServerProcess
from tests.support.endpoints import wait_settled
from tests.support.providers import EXTERNAL_TIMEOUT_S, ProviderFakes, create_external

API = "/api/2.0/serving-endpoints"
PROVIDER_KEYS = ("openai", "azure", "entra", "custom", "databricks")
TASKS = {"chat": "llm/v1/chat", "completions": "llm/v1/completions", "embeddings": "llm/v1/embeddings"}
HELLO = [{"role": "user", "content": "hello there"}]
TIMEOUT_S = EXTERNAL_TIMEOUT_S


def external_model(key: str, kind: str, fake: FakeOpenAI, server_url: str) -> dict[str, Any]:
    task = TASKS[kind]
    azure = {
        "openai_api_base": fake.url,
        "openai_deployment_name": f"dep-{kind}",
        "openai_api_version": "2024-06-01",
    }
    if key == "openai":  # the base URL comes from MODELPORT_OPENAI_BASE_URL
        return {
            "provider": "openai",
            "name": "gpt-4o-mini",
            "task": task,
            "openai_config": {"openai_api_key_plaintext": API_KEY},
        }
    if key == "azure":
        config = {"openai_api_type": "azure", "openai_api_key_plaintext": AZURE_KEY, **azure}
        return {"provider": "openai", "name": "gpt-4o", "task": task, "openai_config": config}
    if key == "entra":
        tenant, client_id, secret = ENTRA
        config = {
            "openai_api_type": "azuread",
            "microsoft_entra_tenant_id": tenant,
            "microsoft_entra_client_id": client_id,
            "microsoft_entra_client_secret_plaintext": secret,
            **azure,
        }
        return {"provider": "openai", "name": "gpt-4o", "task": task, "openai_config": config}
    if key == "custom":
        config = {"custom_provider_url": f"{fake.url}/v1", "bearer_token_auth": {"token_plaintext": API_KEY}}
        return {"provider": "custom", "name": "llama-3", "task": task, "custom_provider_config": config}
    assert key == "databricks"
    config = {"databricks_workspace_url": server_url, "databricks_api_token_plaintext": ADMIN_TOKEN}
    return {
        "provider": "databricks-model-serving",
        "name": f"openai-{kind}",
        "task": task,
        "databricks_model_serving_config": config,
    }


@pytest.fixture(scope="module")
def fake(fakes: ProviderFakes) -> FakeOpenAI:
    return fakes.openai


@pytest.fixture(scope="module", autouse=True)
def ext_server(fake: FakeOpenAI, provider_server: ServerProcess) -> ServerProcess:
    """The provider server with this module's endpoints."""
    with httpx.Client(
        base_url=provider_server.url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=30
    ) as http:
        for key in PROVIDER_KEYS:  # databricks last: it queries the openai-* endpoints
            for kind in TASKS:
                create_external(http, f"{key}-{kind}", external_model(key, kind, fake, provider_server.url))
    return provider_server


@pytest.fixture
def http(ext_server: ServerProcess, fake: FakeOpenAI) -> Iterator[httpx.Client]:
    fake.reset()
    with httpx.Client(
        base_url=ext_server.url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=30
    ) as client:
        yield client


def sse_events(response: httpx.Response) -> list[Any]:
    """The data of each event, asserting the exact framing mlflow needs (compat-api.md §B.5)."""
    assert response.headers["content-type"].startswith("text/event-stream")
    text = response.text
    assert text.endswith("data: [DONE]\n\n"), text[-200:]
    blocks = text.split("\n\n")[:-1]
    assert all(b.startswith("data: ") and "\n" not in b for b in blocks), blocks
    return [orjson.loads(b[6:]) for b in blocks[:-1]]


def error_of(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error_code"] == code, body
    return str(body["message"])


# ---- every provider, every task, three clients ---------------------------------------------------
@pytest.mark.parametrize("key", PROVIDER_KEYS)
def test_invocations_with_httpx(key: str, http: httpx.Client) -> None:
    chat = http.post(f"/serving-endpoints/{key}-chat/invocations", json={"messages": HELLO, "max_tokens": 50})
    assert chat.status_code == 200, chat.text
    assert chat.headers["served-model-name"] == f"{key}-chat-e"
    body = chat.json()
    assert (body["object"], body["model"]) == ("chat.completion", f"{key}-chat")
    assert body["choices"][0]["message"] == {
        **body["choices"][0]["message"],
        "content": "You said: hello there",
    }
    assert body["choices"][0]["finishReason"] == "stop"
    assert body["usage"]["total_tokens"] == 6

    completion = http.post(
        f"/serving-endpoints/{key}-completions/invocations", json={"prompt": "a b", "max_tokens": 2}
    )
    assert completion.status_code == 200, completion.text
    assert completion.json()["choices"][0]["text"] == "Completed: a"

    embeddings = http.post(f"/serving-endpoints/{key}-embeddings/invocations", json={"input": ["x", "y"]})
    assert embeddings.status_code == 200, embeddings.text
    data = embeddings.json()["data"]
    assert [d["index"] for d in data] == [0, 1] and all(len(d["embedding"]) == 8 for d in data)

    stream = http.post(f"/serving-endpoints/{key}-chat/invocations", json={"messages": HELLO, "stream": True})
    assert stream.status_code == 200 and stream.headers["served-model-name"] == f"{key}-chat-e"
    chunks = sse_events(stream)
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks) == "You said: hello there"
    assert {c["model"] for c in chunks} == {f"{key}-chat"}
    assert all(c["choices"] for c in chunks)  # no usage-only chunk unless asked for


@pytest.mark.parametrize("key", PROVIDER_KEYS)
def test_the_openai_client(key: str, client: openai.OpenAI, http: httpx.Client) -> None:
    chat = client.chat.completions.create(model=f"{key}-chat", messages=HELLO)  # type: ignore[arg-type]
    assert (chat.model, chat.choices[0].message.content) == (f"{key}-chat", "You said: hello there")

    stream = client.chat.completions.create(
        model=f"{key}-chat",
        messages=HELLO,
        stream=True,
        stream_options={"include_usage": True},  # type: ignore[arg-type]
    )
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "You said: hello there"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 6

    completion = client.completions.create(model=f"{key}-completions", prompt="x y")
    assert completion.choices[0].text == "Completed: x y"
    streamed = list(client.completions.create(model=f"{key}-completions", prompt="x y", stream=True))
    assert "".join(c.choices[0].text for c in streamed if c.choices) == "Completed: x y"

    # The client asks for base64 and decodes it: the same vector /invocations gives as floats.
    embedded = client.embeddings.create(model=f"{key}-embeddings", input="same")
    floats = http.post(f"/serving-endpoints/{key}-embeddings/invocations", json={"input": "same"}).json()
    assert embedded.data[0].embedding == floats["data"][0]["embedding"]
    as_floats = client.embeddings.create(model=f"{key}-embeddings", input="same", encoding_format="float")
    assert as_floats.data[0].embedding == floats["data"][0]["embedding"]


@pytest.mark.parametrize("key", PROVIDER_KEYS)
def test_mlflow_deployments(key: str, databricks: BaseDeploymentClient) -> None:
    chat = databricks.predict(endpoint=f"{key}-chat", inputs={"messages": HELLO, "temperature": 0.1})
    assert chat["choices"][0]["message"]["content"] == "You said: hello there"
    chunks = list(databricks.predict_stream(endpoint=f"{key}-chat", inputs={"messages": HELLO}))
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks) == "You said: hello there"
    completion = databricks.predict(endpoint=f"{key}-completions", inputs={"prompt": "p"})
    assert completion["choices"][0]["text"] == "Completed: p"
    embeddings = databricks.predict(endpoint=f"{key}-embeddings", inputs={"input": ["a", "b"]})
    assert len(embeddings["data"]) == 2


def test_the_databricks_sdk(ext_server: ServerProcess) -> None:
    from databricks.sdk import WorkspaceClient
    from databricks.sdk.service.serving import ChatMessage, ChatMessageRole

    w = WorkspaceClient(host=ext_server.url, token=ADMIN_TOKEN)
    answer = w.serving_endpoints.query(
        "azure-chat", messages=[ChatMessage(role=ChatMessageRole.USER, content="hello there")], max_tokens=20
    )
    assert answer.served_model_name == "azure-chat-e"
    assert answer.choices is not None and answer.choices[0].message is not None
    assert answer.choices[0].message.content == "You said: hello there"
    assert answer.choices[0].finish_reason == "stop"  # read from finishReason
    assert answer.usage is not None and answer.usage.total_tokens == 6
    embedded = w.serving_endpoints.query("custom-embeddings", input=["a", "b"])
    assert embedded.data is not None and [d.index for d in embedded.data] == [0, 1]


# ---- what reaches the provider -------------------------------------------------------------------
def test_the_provider_gets_its_own_wire_format(http: httpx.Client, fake: FakeOpenAI) -> None:
    tool = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}
    body = {"messages": HELLO, "tools": [tool], "tool_choice": "auto", "client_request_id": "r-1"}
    answer = http.post("/serving-endpoints/openai-chat/invocations", json=body).json()
    assert answer["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == "lookup"
    sent = fake.last("/v1/chat/completions")
    assert sent.json() == {"messages": HELLO, "tools": [tool], "tool_choice": "auto", "model": "gpt-4o-mini"}
    assert sent.headers["authorization"] == f"Bearer {API_KEY}"

    http.post("/serving-endpoints/azure-chat/invocations", json={"messages": HELLO})
    sent = fake.last("/chat/completions")
    assert (sent.path, sent.query, sent.headers["api-key"]) == (
        "/openai/deployments/dep-chat/chat/completions",
        {"api-version": "2024-06-01"},
        AZURE_KEY,
    )
    tokens_before = fake.token_requests
    for _ in range(3):
        assert (
            http.post("/serving-endpoints/entra-chat/invocations", json={"messages": HELLO}).status_code
            == 200
        )
    assert fake.token_requests - tokens_before <= 1  # cached until it expires


def test_credentials_never_come_back(http: httpx.Client) -> None:
    for name in ("openai-chat", "entra-chat", "custom-chat", "databricks-chat"):
        shown = http.get(f"{API}/{name}").text
        for secret in (API_KEY, ENTRA[2], ADMIN_TOKEN):
            assert secret not in shown


# ---- several external models in one endpoint; configs written back ------------------------------
def create_config(http: httpx.Client, name: str, config: dict[str, Any]) -> dict[str, Any]:
    created = http.post(API, json={"name": name, "config": config})
    assert created.status_code == 200, created.text
    got = wait_settled(http, name)
    assert got["state"]["config_update"] == "NOT_UPDATING", got
    return got


def routes(*names: str) -> dict[str, Any]:
    shares = [100 // len(names) + (1 if i < 100 % len(names) else 0) for i in range(len(names))]
    return {
        "routes": [
            {"served_entity_name": n, "traffic_percentage": p} for n, p in zip(names, shares, strict=True)
        ]
    }


def test_two_external_models_split_the_traffic(http: httpx.Client, fake: FakeOpenAI) -> None:
    mini = external_model("openai", "chat", fake, "")
    big = {**mini, "name": "gpt-4o"}
    config = {
        "served_entities": [{"name": "mini", "external_model": mini}, {"name": "big", "external_model": big}],
        "traffic_config": routes("mini", "big"),
    }
    create_config(http, "split", config)
    try:
        served = {"mini": 0, "big": 0}
        for _ in range(200):
            answer = http.post("/serving-endpoints/split/invocations", json={"messages": HELLO})
            assert answer.status_code == 200, answer.text
            served[answer.headers["served-model-name"]] += 1
        assert 70 <= served["mini"] <= 130, served  # 50/50 over 200: 4 standard deviations
        upstream = [r.json()["model"] for r in fake.requests if r.path == "/v1/chat/completions"]
        assert (upstream.count("gpt-4o-mini"), upstream.count("gpt-4o")) == (served["mini"], served["big"])
        direct = http.post("/serving-endpoints/split/served-models/big/invocations", json={"messages": HELLO})
        assert direct.headers["served-model-name"] == "big"
    finally:
        http.delete(f"{API}/split")


def test_a_config_read_and_written_back_keeps_its_credentials(
    ext_server: ServerProcess, http: httpx.Client, fake: FakeOpenAI
) -> None:
    """GET shows every *_plaintext credential masked; PUT back unchanged, the stored ones stay."""
    from databricks.sdk import WorkspaceClient

    names = ("key", "bearer", "entra")
    entities = [
        {"name": n, "external_model": external_model(k, "chat", fake, "")}
        for n, k in zip(names, ("openai", "custom", "entra"), strict=True)
    ]
    create_config(http, "written-back", {"served_entities": entities, "traffic_config": routes(*names)})

    def all_authenticate() -> None:
        for name in names:
            path = f"/serving-endpoints/written-back/served-models/{name}/invocations"
            answer = http.post(path, json={"messages": HELLO})
            assert answer.status_code == 200, answer.text
            assert fake.last("/chat/completions").headers.get("authorization", "").startswith("Bearer ")

    try:
        got = http.get(f"{API}/written-back").json()["config"]
        assert "[REDACTED]" in orjson.dumps(got).decode() and API_KEY not in orjson.dumps(got).decode()
        put = http.put(
            f"{API}/written-back/config",
            json={"served_entities": got["served_entities"], "traffic_config": got["traffic_config"]},
        )
        assert put.status_code == 200, put.text
        assert wait_settled(http, "written-back")["config"]["config_version"] == 2
        all_authenticate()
        assert fake.last("/v1/chat/completions").headers["authorization"] == f"Bearer {API_KEY}"

        # The same with the SDK: its GET objects passed straight back to update_config.
        w = WorkspaceClient(host=ext_server.url, token=ADMIN_TOKEN)
        endpoint = w.serving_endpoints.get("written-back")
        assert endpoint.config is not None
        w.serving_endpoints.update_config(
            "written-back",
            served_entities=endpoint.config.served_entities,  # type: ignore[arg-type]
            traffic_config=endpoint.config.traffic_config,
        )
        assert wait_settled(http, "written-back")["config"]["config_version"] == 3
        all_authenticate()

        # A mask where nothing is stored is refused, and the serving config stays.
        renamed = [{**got["served_entities"][0], "name": "new-entity"}]
        refused = http.put(f"{API}/written-back/config", json={"served_entities": renamed})
        assert "served entity 'new-entity' has none there to keep" in error_of(
            refused, 400, "INVALID_PARAMETER_VALUE"
        )
        assert wait_settled(http, "written-back")["config"]["config_version"] == 3
    finally:
        http.delete(f"{API}/written-back")


def test_a_referenced_secret_is_read_per_query(http: httpx.Client) -> None:
    """The query path resolves references off the event loop: a value put through the secrets
    API is used by the next query, and a deleted one fails it with a message naming it."""
    assert http.post("/api/2.0/secrets/scopes/create", json={"scope": "rotating"}).status_code == 200

    def put(value: str) -> None:
        body = {"scope": "rotating", "key": "openai", "string_value": value}
        assert http.post("/api/2.0/secrets/put", json=body).status_code == 200

    put(API_KEY)
    config = {"openai_api_key": "{{secrets/rotating/openai}}"}
    ext = {"provider": "openai", "name": "gpt-4o-mini", "task": "llm/v1/chat", "openai_config": config}
    create_external(http, "rotating", ext)
    query = "/serving-endpoints/rotating/invocations"
    try:
        assert http.post(query, json={"messages": HELLO}).status_code == 200
        put("sk-revoked")
        assert "Incorrect API key provided" in error_of(
            http.post(query, json={"messages": HELLO}), 403, "PERMISSION_DENIED"
        )
        put(API_KEY)
        assert http.post(query, json={"messages": HELLO}).status_code == 200
        deleted = http.post("/api/2.0/secrets/delete", json={"scope": "rotating", "key": "openai"})
        assert deleted.status_code == 200
        message = error_of(http.post(query, json={"messages": HELLO}), 400, "INVALID_STATE")
        assert "{{secrets/rotating/openai}}" in message and "does not exist" in message
    finally:
        http.delete(f"{API}/rotating")
        http.post("/api/2.0/secrets/scopes/delete", json={"scope": "rotating"})


# ---- errors --------------------------------------------------------------------------------------
def test_provider_errors_map_to_the_documented_codes(http: httpx.Client, fake: FakeOpenAI) -> None:
    query = "/serving-endpoints/openai-chat/invocations"
    fake.faults.fail(401, "Incorrect API key provided")
    assert "Incorrect API key provided" in error_of(
        http.post(query, json={"messages": HELLO}), 403, "PERMISSION_DENIED"
    )
    fake.faults.fail(429, "Rate limit reached", headers={"retry-after": "7"})
    limited = http.post(query, json={"messages": HELLO})
    assert "Rate limit reached" in error_of(limited, 429, "REQUEST_LIMIT_EXCEEDED")
    assert limited.headers["retry-after"] == "7"
    fake.faults.fail(500, "The server had an error")
    error_of(http.post(query, json={"messages": HELLO}), 502, "BAD_GATEWAY")
    fake.faults.fail(503, "Overloaded", headers={"retry-after": "3"})
    busy = http.post(query, json={"messages": HELLO, "stream": True})  # before the first byte: a plain error
    assert error_of(busy, 503, "TEMPORARILY_UNAVAILABLE") and busy.headers["retry-after"] == "3"
    fake.faults.fail(400, "Invalid 'temperature'")
    assert "Invalid 'temperature'" in error_of(http.post(query, json={"messages": HELLO}), 400, "BAD_REQUEST")


def test_a_provider_slower_than_the_timeout_is_504(http: httpx.Client, fake: FakeOpenAI) -> None:
    fake.faults.slow(TIMEOUT_S + 1.5)
    message = error_of(
        http.post("/serving-endpoints/openai-chat/invocations", json={"messages": HELLO}),
        504,
        "DEADLINE_EXCEEDED",
    )
    assert f"within {TIMEOUT_S}s" in message


def test_an_error_after_the_stream_began_is_the_last_event(
    http: httpx.Client, fake: FakeOpenAI, client: openai.OpenAI
) -> None:
    fake.break_stream_after = 3
    stream = http.post("/serving-endpoints/openai-chat/invocations", json={"messages": HELLO, "stream": True})
    assert stream.status_code == 200
    events = sse_events(stream)
    assert [e["choices"][0]["delta"].get("content") for e in events[:-1]] == ["", "You", " said:"]
    assert events[-1]["error"]["error_code"] == "BAD_GATEWAY"
    with pytest.raises(openai.APIError, match="broke off"):
        list(client.chat.completions.create(model="openai-chat", messages=HELLO, stream=True))  # type: ignore[arg-type]


def test_bodies_that_do_not_fit_the_task_are_400(http: httpx.Client, client: openai.OpenAI) -> None:
    message = error_of(
        http.post("/serving-endpoints/openai-chat/invocations", json={"dataframe_records": [{"a": 1}]}),
        400,
        "INVALID_PARAMETER_VALUE",
    )
    assert "needs 'messages'" in message
    error_of(
        http.post("/serving-endpoints/openai-embeddings/invocations", json={"input": "x", "stream": True}),
        400,
        "INVALID_PARAMETER_VALUE",
    )
    error_of(
        http.post("/serving-endpoints/openai-chat/invocations", content=b"not json"), 400, "MALFORMED_REQUEST"
    )
    with pytest.raises(openai.BadRequestError, match="/serving-endpoints/chat/completions"):
        client.completions.create(model="openai-chat", prompt="x")
    with pytest.raises(openai.NotFoundError, match="no-such-endpoint"):
        client.chat.completions.create(model="no-such-endpoint", messages=HELLO)  # type: ignore[arg-type]


def test_a_task_the_provider_cannot_serve_is_refused_when_the_config_is_written(http: httpx.Client) -> None:
    ext = {
        "provider": "anthropic",
        "name": "claude-x",
        "task": "llm/v1/embeddings",
        "anthropic_config": {"anthropic_api_key_plaintext": "k"},
    }
    entities = [{"name": "e", "external_model": ext}]
    created = http.post(API, json={"name": "anthropic-embeddings", "config": {"served_entities": entities}})
    expected = (
        "Invalid value for 'config.served_entities[0].external_model.task': provider 'anthropic' does not "
        "offer llm/v1/embeddings; it offers llm/v1/chat, llm/v1/completions."
    )
    assert error_of(created, 400, "INVALID_PARAMETER_VALUE") == expected
    assert http.get(f"{API}/anthropic-embeddings").status_code == 404
    # An update is checked the same way, and the serving config stays.
    update = {"served_entities": [{**entities[0], "external_model": {**ext, "task": "llm/v1/embeddings"}}]}
    assert error_of(http.put(f"{API}/openai-embeddings/config", json=update), 400, "INVALID_PARAMETER_VALUE")
    assert http.get(f"{API}/openai-embeddings").json()["config"]["config_version"] == 1


def test_an_endpoint_that_points_at_itself_is_refused_after_a_few_hops(
    ext_server: ServerProcess, http: httpx.Client
) -> None:
    config = {"databricks_workspace_url": ext_server.url, "databricks_api_token_plaintext": ADMIN_TOKEN}
    ext = {
        "provider": "databricks-model-serving",
        "name": "loop",
        "task": "llm/v1/chat",
        "databricks_model_serving_config": config,
    }
    create_external(http, "loop", ext)
    try:
        response = http.post("/serving-endpoints/loop/invocations", json={"messages": HELLO})
        assert "points back at itself" in error_of(response, 400, "BAD_REQUEST")
    finally:
        http.delete(f"{API}/loop")


# ---- permissions ---------------------------------------------------------------------------------
def test_can_query_is_enforced_on_every_route(ext_server: ServerProcess, http: httpx.Client) -> None:
    user = f"bob-{uuid.uuid4().hex[:6]}@example.com"
    assert http.post("/api/2.0/preview/scim/v2/Users", json={"userName": user}).status_code == 201
    token = http.post("/api/2.0/token-management/on-behalf-of/tokens", json={"user_name": user}).json()[
        "token_value"
    ]
    bob = openai.OpenAI(base_url=f"{ext_server.url}/serving-endpoints", api_key=token, max_retries=0)
    with httpx.Client(
        base_url=ext_server.url, headers={"Authorization": f"Bearer {token}"}, timeout=30
    ) as as_bob:
        denied = as_bob.post("/serving-endpoints/openai-chat/invocations", json={"messages": HELLO})
        assert "CAN_QUERY" in error_of(denied, 403, "PERMISSION_DENIED")
        with pytest.raises(openai.PermissionDeniedError):
            bob.chat.completions.create(model="openai-chat", messages=HELLO)  # type: ignore[arg-type]
        endpoint_id = http.get(f"{API}/openai-chat").json()["id"]
        granted = http.patch(
            f"/api/2.0/permissions/serving-endpoints/{endpoint_id}",
            json={"access_control_list": [{"user_name": user, "permission_level": "CAN_QUERY"}]},
        )
        assert granted.status_code == 200, granted.text
        assert (
            as_bob.post("/serving-endpoints/openai-chat/invocations", json={"messages": HELLO}).status_code
            == 200
        )
        assert bob.chat.completions.create(model="openai-chat", messages=HELLO).choices  # type: ignore[arg-type]
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(
            base_url=f"{ext_server.url}/serving-endpoints", api_key="dapi-wrong", max_retries=0
        ).embeddings.create(model="openai-embeddings", input="x")


def test_queries_show_in_the_endpoint_metrics(http: httpx.Client) -> None:
    http.post("/serving-endpoints/custom-chat/invocations", json={"messages": HELLO})
    text = http.get(f"{API}/custom-chat/metrics").text
    assert (
        'modelport_endpoint_requests_total{endpoint="custom-chat",served_entity="custom-chat-e",status="200"}'
        in text
    )
