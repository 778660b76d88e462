"""Errors as the official databricks-sdk sees them, and the raw error bodies behind them.

Every refusal must reach the SDK as the class of compat-api.md §D.2 (chosen by
``error_code``, then by status) with a message that says what is wrong.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import (
    DatabricksError,
    InvalidParameterValue,
    PermissionDenied,
    ResourceAlreadyExists,
    ResourceConflict,
    ResourceDoesNotExist,
    Unauthenticated,
)
from databricks.sdk.service.serving import (
    AiGatewayRateLimit,
    AiGatewayRateLimitKey,
    AiGatewayRateLimitRenewalPeriod,
    EndpointCoreConfigInput,
    ExternalModel,
    ExternalModelProvider,
    OpenAiConfig,
    Route,
    ServedEntityInput,
    TrafficConfig,
)

from tests.serverproc import ADMIN_TOKEN, ServerProcess
from tests.support.endpoints import wait_settled

API = "/api/2.0/serving-endpoints"
OPENAI = {
    "provider": "openai",
    "name": "gpt-4o-mini",
    "task": "llm/v1/chat",
    "openai_config": {"openai_api_key": "{{secrets/llm/openai}}"},
}


@pytest.fixture(scope="module")
def w(server: ServerProcess) -> WorkspaceClient:
    return WorkspaceClient(host=server.url, token=ADMIN_TOKEN)


@pytest.fixture(scope="module")
def outsider(server: ServerProcess) -> str:
    """A token of a plain (non-admin) user who has been granted nothing."""
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    user = f"outsider-{uuid.uuid4().hex[:8]}@example.com"
    resp = httpx.post(
        f"{server.url}/api/2.0/preview/scim/v2/Users", headers=headers, json={"userName": user}, timeout=30
    )
    assert resp.status_code == 201, resp.text
    resp = httpx.post(
        f"{server.url}/api/2.0/token-management/on-behalf-of/tokens",
        headers=headers,
        json={"user_name": user, "comment": "errors test"},
        timeout=30,
    )
    assert resp.status_code == 200, resp.text
    return str(resp.json()["token_value"])


def entity(version: str = "1", name: str | None = None, **kwargs: Any) -> ServedEntityInput:
    return ServedEntityInput(name=name, entity_name="iris", entity_version=version, **kwargs)


def config(
    name: str, *entities: ServedEntityInput, routes: list[Route] | None = None
) -> EndpointCoreConfigInput:
    traffic = TrafficConfig(routes=routes) if routes is not None else None
    return EndpointCoreConfigInput(name=name, served_entities=list(entities), traffic_config=traffic)


def create_raw(http: httpx.Client, name: str, served: dict[str, Any]) -> None:
    """Create an endpoint with raw HTTP and wait (polling fast) until its update settles."""
    resp = http.post(API, json={"name": name, "config": {"served_entities": [served]}})
    assert resp.status_code == 200, resp.text
    wait_settled(http, name)


def assert_error(resp: httpx.Response, status: int, code: str, *fragments: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    assert "Traceback" not in resp.text
    body = resp.json()
    assert isinstance(body, dict)
    assert body["error_code"] == code
    assert isinstance(body["message"], str) and body["message"]
    for fragment in fragments:
        assert fragment in body["message"]
    return body


@contextmanager
def raises(cls: type[DatabricksError], code: str, *fragments: str) -> Iterator[Any]:
    """pytest.raises for exactly ``cls``, then ``error_code`` and message fragments checked."""
    with pytest.raises(cls) as info:
        yield info
    err = info.value
    assert type(err) is cls, f"{type(err).__name__} is not {cls.__name__}: {err}"
    assert err.error_code == code, str(err)
    for fragment in fragments:
        assert fragment in str(err)
    assert "Traceback" not in str(err)


# ---- not found --------------------------------------------------------------------------
def test_get_unknown_endpoint_is_resource_does_not_exist(w: WorkspaceClient) -> None:
    with raises(ResourceDoesNotExist, "RESOURCE_DOES_NOT_EXIST", "'no-such-endpoint'", "does not exist"):
        w.serving_endpoints.get("no-such-endpoint")


def test_create_with_unknown_registered_model_names_it(w: WorkspaceClient, iris_model: str) -> None:
    cfg = EndpointCoreConfigInput(
        name="err-model", served_entities=[ServedEntityInput(entity_name="no-such-model", entity_version="1")]
    )
    with raises(ResourceDoesNotExist, "RESOURCE_DOES_NOT_EXIST", "'no-such-model'", "does not exist"):
        w.serving_endpoints.create(name="err-model", config=cfg)
    with raises(ResourceDoesNotExist, "RESOURCE_DOES_NOT_EXIST"):
        w.serving_endpoints.get("err-model")  # nothing was created


def test_create_with_unknown_version_lists_existing_ones(w: WorkspaceClient, iris_model: str) -> None:
    with raises(ResourceDoesNotExist, "RESOURCE_DOES_NOT_EXIST", "Version 7", "'iris'", "versions: 1, 2"):
        w.serving_endpoints.create(name="err-version", config=config("err-version", entity("7")))


def test_create_with_unknown_alias_names_it(w: WorkspaceClient, iris_model: str) -> None:
    with raises(ResourceDoesNotExist, "RESOURCE_DOES_NOT_EXIST", "'@nope'", "@champion"):
        w.serving_endpoints.create(name="err-alias", config=config("err-alias", entity("@nope")))


def test_served_model_logs_of_unknown_entity(w: WorkspaceClient, http: httpx.Client, iris_model: str) -> None:
    create_raw(http, "err-logs", {"entity_name": "iris", "entity_version": "1"})
    with raises(ResourceDoesNotExist, "RESOURCE_DOES_NOT_EXIST", "'ghost'", "iris-1"):
        w.serving_endpoints.build_logs("err-logs", "ghost")


# ---- already exists, conflict ---------------------------------------------------------------
def test_duplicate_create_is_resource_already_exists(
    w: WorkspaceClient, http: httpx.Client, iris_model: str
) -> None:
    create_raw(http, "err-dupe", {"entity_name": "iris", "entity_version": "1"})
    with raises(ResourceAlreadyExists, "RESOURCE_ALREADY_EXISTS", "'err-dupe'", "already exists"):
        w.serving_endpoints.create(name="err-dupe", config=config("err-dupe", entity("2")))
    assert_error(
        http.post(
            API,
            json={
                "name": "err-dupe",
                "config": {"served_entities": [{"entity_name": "iris", "entity_version": "2"}]},
            },
        ),
        409,
        "RESOURCE_ALREADY_EXISTS",
    )
    # The original endpoint is untouched.
    ep = w.serving_endpoints.get("err-dupe")
    assert ep.config is not None
    assert [e.entity_version for e in ep.config.served_entities or []] == ["1"]


def test_cancel_update_with_nothing_running_is_resource_conflict(
    w: WorkspaceClient, http: httpx.Client, iris_model: str
) -> None:
    create_raw(http, "err-cancel", {"entity_name": "iris", "entity_version": "1"})
    with raises(ResourceConflict, "RESOURCE_CONFLICT", "no config update in progress"):
        w.api_client.do("POST", f"{API}/err-cancel/cancel-update", body={})


def test_config_update_while_in_progress_is_resource_conflict(
    w: WorkspaceClient, http: httpx.Client, iris_model: str
) -> None:
    """Two SDK update_config calls back to back; see test_sdk_lifecycle for the raw variant.

    The first update may finish before the second arrives; then the second must succeed
    on top of the promoted first one. At least one ResourceConflict must be seen in 20 tries.
    """
    create_raw(http, "err-conflict", {"entity_name": "iris", "entity_version": "1"})
    entities = [entity("1", name="a"), entity("@champion", name="b")]
    routes = [
        Route(served_entity_name="a", traffic_percentage=50),
        Route(served_entity_name="b", traffic_percentage=50),
    ]
    conflicts = 0
    for _ in range(20):
        first = w.serving_endpoints.update_config(
            "err-conflict", served_entities=entities, traffic_config=TrafficConfig(routes=routes)
        )
        assert first.response.pending_config is not None
        started = first.response.pending_config.config_version
        try:
            second = w.serving_endpoints.update_config(
                "err-conflict", served_entities=entities, traffic_config=TrafficConfig(routes=routes)
            )
        except ResourceConflict as err:
            assert type(err) is ResourceConflict
            assert err.error_code == "RESOURCE_CONFLICT"
            assert "already has a config update in progress" in str(err)
            conflicts += 1
        else:
            assert second.response.config is not None
            assert second.response.config.config_version == started
        wait_settled(http, "err-conflict")
        if conflicts >= 2:
            break
    assert conflicts >= 1, "no concurrent update was refused in 20 attempts"


# ---- invalid parameters (typed SDK calls) ---------------------------------------------------
def _invalid(*fragments: str) -> Any:
    return raises(InvalidParameterValue, "INVALID_PARAMETER_VALUE", *fragments)


def test_bad_endpoint_name_characters(w: WorkspaceClient, iris_model: str) -> None:
    with _invalid("'bad name!'", "letters, digits"):
        w.serving_endpoints.create(name="bad name!", config=config("bad name!", entity("1")))


def test_endpoint_name_too_long(w: WorkspaceClient, iris_model: str) -> None:
    name = "n" * 64
    with _invalid("64 characters", "63"):
        w.serving_endpoints.create(name=name, config=config(name, entity("1")))


def test_duplicate_served_entity_names(w: WorkspaceClient, iris_model: str) -> None:
    cfg = config(
        "err-x",
        entity("1", name="same"),
        entity("2", name="same"),
        routes=[Route(served_entity_name="same", traffic_percentage=100)],
    )
    with _invalid("'same'", "unique"):
        w.serving_endpoints.create(name="err-x", config=cfg)


def test_traffic_not_summing_to_100(w: WorkspaceClient, iris_model: str) -> None:
    cfg = config(
        "err-x",
        entity("1", name="a"),
        entity("2", name="b"),
        routes=[
            Route(served_entity_name="a", traffic_percentage=60),
            Route(served_entity_name="b", traffic_percentage=30),
        ],
    )
    with _invalid("add up to 90", "100"):
        w.serving_endpoints.create(name="err-x", config=cfg)


def test_route_naming_missing_entity(w: WorkspaceClient, iris_model: str) -> None:
    cfg = config(
        "err-x", entity("1", name="a"), routes=[Route(served_entity_name="ghost", traffic_percentage=100)]
    )
    with _invalid("'ghost'", "not a served entity"):
        w.serving_endpoints.create(name="err-x", config=cfg)


def test_custom_model_and_external_model_in_one_endpoint(w: WorkspaceClient, iris_model: str) -> None:
    external = ServedEntityInput(
        name="chat",
        external_model=ExternalModel(
            provider=ExternalModelProvider.OPENAI,
            name="gpt-4o-mini",
            task="llm/v1/chat",
            openai_config=OpenAiConfig(openai_api_key="{{secrets/llm/openai}}"),
        ),
    )
    cfg = config(
        "err-x",
        entity("1", name="a"),
        external,
        routes=[
            Route(served_entity_name="a", traffic_percentage=50),
            Route(served_entity_name="chat", traffic_percentage=50),
        ],
    )
    with _invalid("external models (chat) cannot share an endpoint with registered models"):
        w.serving_endpoints.create(name="err-x", config=cfg)


def test_external_model_without_provider_config_block(w: WorkspaceClient) -> None:
    external = ServedEntityInput(
        external_model=ExternalModel(
            provider=ExternalModelProvider.ANTHROPIC, name="claude", task="llm/v1/chat"
        )
    )
    with _invalid("anthropic_config", "'anthropic'"):
        w.serving_endpoints.create(name="err-x", config=config("err-x", external))


def test_update_config_cannot_add_external_model_to_custom_endpoint(
    w: WorkspaceClient, http: httpx.Client, iris_model: str
) -> None:
    create_raw(http, "err-custom", {"entity_name": "iris", "entity_version": "1"})
    external = ServedEntityInput(
        external_model=ExternalModel(
            provider=ExternalModelProvider.OPENAI,
            name="gpt-4o-mini",
            task="llm/v1/chat",
            openai_config=OpenAiConfig(openai_api_key_plaintext="sk-test"),
        )
    )
    with _invalid("add an external model", "'err-custom'", "create a new endpoint"):
        w.serving_endpoints.update_config("err-custom", served_entities=[external])
    ep = w.serving_endpoints.get("err-custom")
    assert ep.state is not None and ep.state.config_update is not None
    assert ep.state.config_update.value == "NOT_UPDATING"
    assert ep.config is not None and ep.config.config_version == 1
    assert ep.pending_config is None


def test_workload_size_garbage(w: WorkspaceClient, iris_model: str) -> None:
    with _invalid("workload_size", "'Huge'"):
        w.serving_endpoints.create(name="err-x", config=config("err-x", entity("1", workload_size="Huge")))


def test_workload_size_with_provisioned_concurrency(w: WorkspaceClient, iris_model: str) -> None:
    served = entity("1", workload_size="Small", min_provisioned_concurrency=0, max_provisioned_concurrency=4)
    with _invalid("workload_size", "min/max_provisioned_concurrency"):
        w.serving_endpoints.create(name="err-x", config=config("err-x", served))


def test_more_than_20_ai_gateway_rate_limits(w: WorkspaceClient, http: httpx.Client, iris_model: str) -> None:
    create_raw(http, "err-gw", {"entity_name": "iris", "entity_version": "1"})
    limits = [
        AiGatewayRateLimit(
            renewal_period=AiGatewayRateLimitRenewalPeriod.MINUTE,
            calls=10,
            key=AiGatewayRateLimitKey.USER,
            principal=f"user{i}@example.com",
        )
        for i in range(21)
    ]
    with _invalid("21 rate limits", "at most 20"):
        w.serving_endpoints.put_ai_gateway("err-gw", rate_limits=limits)
    assert w.serving_endpoints.get("err-gw").ai_gateway is None


# ---- invalid parameters the SDK's enums cannot express (sent through its API client) ---------
def test_external_model_with_unknown_provider(w: WorkspaceClient) -> None:
    body = {
        "name": "err-x",
        "config": {"served_entities": [{"external_model": {**OPENAI, "provider": "skynet"}}]},
    }
    with _invalid("'skynet'", "not a supported provider"):
        w.api_client.do("POST", API, body=body)


def test_ai_gateway_renewal_period_hour(w: WorkspaceClient, http: httpx.Client, iris_model: str) -> None:
    create_raw(http, "err-hour", {"entity_name": "iris", "entity_version": "1"})
    body = {"rate_limits": [{"calls": 10, "renewal_period": "hour", "key": "endpoint"}]}
    with _invalid("renewal_period", "'hour'", "minute"):
        w.api_client.do("PUT", f"{API}/err-hour/ai-gateway", body=body)


def test_ai_gateway_bad_pii_behavior(w: WorkspaceClient, http: httpx.Client, iris_model: str) -> None:
    create_raw(http, "err-pii", {"entity_name": "iris", "entity_version": "1"})
    body = {"guardrails": {"input": {"pii": {"behavior": "SHRED"}}}}
    with _invalid("guardrails.input.pii.behavior", "'SHRED'", "BLOCK"):
        w.api_client.do("PUT", f"{API}/err-pii/ai-gateway", body=body)


# ---- permission and authentication ------------------------------------------------------------
def test_user_without_grant_cannot_get_or_update(
    server: ServerProcess, outsider: str, http: httpx.Client, iris_model: str
) -> None:
    create_raw(http, "err-private", {"entity_name": "iris", "entity_version": "1"})
    user = WorkspaceClient(host=server.url, token=outsider)

    with raises(PermissionDenied, "PERMISSION_DENIED", "CAN_VIEW", "'err-private'"):
        user.serving_endpoints.get("err-private")
    with raises(PermissionDenied, "PERMISSION_DENIED", "CAN_MANAGE", "'err-private'"):
        user.serving_endpoints.update_config("err-private", served_entities=[entity("2")])
    with raises(PermissionDenied, "PERMISSION_DENIED", "CAN_MANAGE"):
        user.serving_endpoints.delete("err-private")
    assert [ep.name for ep in user.serving_endpoints.list()] == []
    after = http.get(f"{API}/err-private").json()
    assert after["config"]["config_version"] == 1
    assert after["state"]["config_update"] == "NOT_UPDATING"


def test_bad_token_is_unauthenticated(server: ServerProcess) -> None:
    intruder = WorkspaceClient(host=server.url, token="dapi-not-a-real-token")
    with raises(Unauthenticated, "UNAUTHENTICATED", "Invalid access token"):
        intruder.serving_endpoints.list()


def test_no_token_is_401(server: ServerProcess) -> None:
    resp = httpx.get(f"{server.url}{API}", timeout=30)
    assert_error(resp, 401, "UNAUTHENTICATED", "Authorization: Bearer")
    resp = httpx.get(f"{server.url}{API}", headers={"Authorization": "Basic YWRtaW46YWRtaW4="}, timeout=30)
    assert_error(resp, 401, "UNAUTHENTICATED", "Bearer")


# ---- raw HTTP: malformed bodies, routes, methods ------------------------------------------------
def test_malformed_json_is_400(http: httpx.Client) -> None:
    resp = http.post(API, content=b'{"name": "x", ', headers={"Content-Type": "application/json"})
    assert_error(resp, 400, "MALFORMED_REQUEST", "not valid JSON")


def test_json_array_body_is_400(http: httpx.Client) -> None:
    resp = http.post(API, json=[{"name": "x"}])
    assert_error(resp, 400, "MALFORMED_REQUEST", "JSON object")


def test_unknown_route_is_404_endpoint_not_found(http: httpx.Client) -> None:
    resp = http.get("/api/2.0/no-such-api/anything")
    assert_error(resp, 404, "ENDPOINT_NOT_FOUND", "/api/2.0/no-such-api/anything")


def test_wrong_method_is_405(http: httpx.Client) -> None:
    resp = http.patch(API, json={})
    assert_error(resp, 405, "METHOD_NOT_ALLOWED", "PATCH")
    resp = http.post(f"{API}/some-endpoint/metrics")
    assert_error(resp, 405, "METHOD_NOT_ALLOWED", "POST")


_BAD_REQUESTS: list[tuple[str, str, str, Any]] = [
    ("create-bad-name", "POST", API, {"name": "bad name!"}),
    ("create-long-name", "POST", API, {"name": "n" * 64}),
    (
        "create-no-name",
        "POST",
        API,
        {"config": {"served_entities": [{"entity_name": "iris", "entity_version": "1"}]}},
    ),
    ("create-name-not-string", "POST", API, {"name": ["x"]}),
    ("create-entities-not-list", "POST", API, {"name": "err-y", "config": {"served_entities": "iris"}}),
    (
        "create-traffic-percent-string",
        "POST",
        API,
        {
            "name": "err-y",
            "config": {
                "served_entities": [{"name": "a", "entity_name": "iris", "entity_version": "1"}],
                "traffic_config": {"routes": [{"served_entity_name": "a", "traffic_percentage": "all"}]},
            },
        },
    ),
    (
        "create-negative-traffic",
        "POST",
        API,
        {
            "name": "err-y",
            "config": {
                "served_entities": [{"name": "a", "entity_name": "iris", "entity_version": "1"}],
                "traffic_config": {"routes": [{"served_entity_name": "a", "traffic_percentage": -5}]},
            },
        },
    ),
    (
        "create-version-garbage",
        "POST",
        API,
        {
            "name": "err-y",
            "config": {"served_entities": [{"entity_name": "iris", "entity_version": "latest!"}]},
        },
    ),
    (
        "create-workload-type",
        "POST",
        API,
        {
            "name": "err-y",
            "config": {
                "served_entities": [{"entity_name": "iris", "entity_version": "1", "workload_type": "TPU"}]
            },
        },
    ),
    (
        "create-unknown-provider",
        "POST",
        API,
        {
            "name": "err-y",
            "config": {"served_entities": [{"external_model": {**OPENAI, "provider": "skynet"}}]},
        },
    ),
    (
        "create-missing-block",
        "POST",
        API,
        {
            "name": "err-y",
            "config": {
                "served_entities": [
                    {"external_model": {k: v for k, v in OPENAI.items() if k != "openai_config"}}
                ]
            },
        },
    ),
    (
        "create-bad-secret-ref",
        "POST",
        API,
        {
            "name": "err-y",
            "config": {
                "served_entities": [
                    {"external_model": {**OPENAI, "openai_config": {"openai_api_key": "sk-live"}}}
                ]
            },
        },
    ),
    ("create-tags-not-list", "POST", API, {"name": "err-y", "tags": {"a": "b"}}),
    (
        "create-gateway-hour",
        "POST",
        API,
        {"name": "err-y", "ai_gateway": {"rate_limits": [{"calls": 1, "renewal_period": "hour"}]}},
    ),
    ("create-empty-body", "POST", API, None),
    ("token-lifetime-garbage", "POST", "/api/2.0/token/create", {"lifetime_seconds": "soon"}),
    ("obo-without-principal", "POST", "/api/2.0/token-management/on-behalf-of/tokens", {}),
    ("permissions-unknown-id", "GET", "/api/2.0/permissions/serving-endpoints/0000", None),
]


@pytest.mark.parametrize(
    ("method", "path", "body"), [c[1:] for c in _BAD_REQUESTS], ids=[c[0] for c in _BAD_REQUESTS]
)
def test_bad_requests_get_a_4xx_error_body(
    http: httpx.Client, iris_model: str, method: str, path: str, body: Any
) -> None:
    resp = http.request(method, path, json=body) if body is not None else http.request(method, path)

    assert 400 <= resp.status_code < 500, resp.text
    assert "Traceback" not in resp.text
    data = resp.json()
    assert set(data) >= {"error_code", "message"}
    assert data["error_code"] in {
        "INVALID_PARAMETER_VALUE",
        "MALFORMED_REQUEST",
        "RESOURCE_DOES_NOT_EXIST",
    }
    assert data["message"]
    expected_status = 404 if data["error_code"] == "RESOURCE_DOES_NOT_EXIST" else 400
    assert resp.status_code == expected_status
    assert http.get(f"{API}/err-y").status_code == 404  # nothing was created
