"""The endpoint lifecycle through the official databricks-sdk against a real ``modelport serve``.

Covers compat-api.md §A.1 #1-#14 and #17-#20 as the SDK calls them, the update state
machine (success, failure on a model without pyfunc, the 409 on a concurrent update) and
cancel-update when nothing runs.
"""

from __future__ import annotations

import json
import re
import time
from datetime import timedelta
from typing import Any

import httpx
import pytest
from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import NotFound, OperationFailed
from databricks.sdk.service.serving import (
    AiGatewayConfig,
    AiGatewayGuardrailParameters,
    AiGatewayGuardrailPiiBehavior,
    AiGatewayGuardrailPiiBehaviorBehavior,
    AiGatewayGuardrails,
    AiGatewayInferenceTableConfig,
    AiGatewayRateLimit,
    AiGatewayRateLimitKey,
    AiGatewayRateLimitRenewalPeriod,
    AiGatewayUsageTrackingConfig,
    EndpointCoreConfigInput,
    EndpointStateConfigUpdate,
    EndpointStateReady,
    EndpointTag,
    FallbackConfig,
    RateLimit,
    RateLimitKey,
    RateLimitRenewalPeriod,
    Route,
    ServedEntityInput,
    ServingEndpointAccessControlRequest,
    ServingEndpointDetailed,
    ServingEndpointDetailedPermissionLevel,
    ServingEndpointPermissionLevel,
    ServingModelWorkloadType,
    TrafficConfig,
)

from tests.serverproc import ADMIN_TOKEN, ServerProcess
from tests.support.endpoints import wait_settled
from tests.support.stores import STORES, server_on_each_store

WAIT = timedelta(seconds=60)
ADMIN = "admin"


@pytest.fixture(scope="module", params=STORES)
def server(request: pytest.FixtureRequest) -> ServerProcess:
    """Every test here runs on the SQLite and on the PostgreSQL session server."""
    return server_on_each_store(request)


@pytest.fixture(scope="module")
def w(server: ServerProcess) -> WorkspaceClient:
    return WorkspaceClient(host=server.url, token=ADMIN_TOKEN)


def entity(version: str = "1", entity_name: str = "iris", name: str | None = None) -> ServedEntityInput:
    return ServedEntityInput(
        name=name,
        entity_name=entity_name,
        entity_version=version,
        workload_size="Small",
        scale_to_zero_enabled=True,
    )


def create(
    w: WorkspaceClient,
    name: str,
    *entities: ServedEntityInput,
    traffic: TrafficConfig | None = None,
    **kwargs: Any,
) -> ServingEndpointDetailed:
    config = EndpointCoreConfigInput(name=name, served_entities=list(entities), traffic_config=traffic)
    return w.serving_endpoints.create_and_wait(name=name, config=config, timeout=WAIT, **kwargs)


def routes_of(ep: ServingEndpointDetailed) -> list[tuple[str | None, int]]:
    assert ep.config is not None and ep.config.traffic_config is not None
    return [(r.served_entity_name, r.traffic_percentage) for r in ep.config.traffic_config.routes or []]


# ---- create / get / list ------------------------------------------------------------------
@pytest.mark.parametrize("entity_name", ["iris", "models:/iris", "main.default.iris"])
def test_create_and_wait_serves_registered_version(
    w: WorkspaceClient, iris_model: str, entity_name: str
) -> None:
    ep = create(w, "life-create", entity("1", entity_name))

    assert ep.name == "life-create"
    assert ep.state is not None
    assert ep.state.config_update == EndpointStateConfigUpdate.NOT_UPDATING
    assert ep.state.ready == EndpointStateReady.READY
    assert ep.pending_config is None
    assert ep.config is not None
    assert ep.config.config_version == 1
    [served] = ep.config.served_entities or []
    assert served.name == "iris-1"
    assert served.entity_name == entity_name
    assert served.entity_version == "1"
    assert served.workload_size == "Small"
    assert served.workload_type == ServingModelWorkloadType.CPU
    assert served.scale_to_zero_enabled is True
    assert served.creator == ADMIN
    assert served.state is not None and served.state.deployment is not None
    assert served.state.deployment.value == "DEPLOYMENT_READY"
    assert routes_of(ep) == [("iris-1", 100)]


def test_alias_resolves_to_its_version_once_deployed(w: WorkspaceClient, iris_model: str) -> None:
    ep = create(w, "life-alias", entity("@champion"))

    assert ep.config is not None and ep.config.config_version == 1
    [served] = ep.config.served_entities or []
    assert served.name == "iris-champion"
    assert served.entity_name == "iris"
    assert served.entity_version == "2"
    assert routes_of(ep) == [("iris-champion", 100)]


def test_get_reports_creator_id_timestamps_permission_tags_and_state(
    w: WorkspaceClient, iris_model: str
) -> None:
    before = int(time.time() * 1000)
    create(
        w,
        "life-get",
        entity("1"),
        tags=[EndpointTag(key="team", value="ml"), EndpointTag(key="solo")],
        description="the iris classifier",
    )
    after = int(time.time() * 1000)

    ep = w.serving_endpoints.get("life-get")

    assert ep.name == "life-get"
    assert ep.creator == ADMIN
    assert ep.id is not None and re.fullmatch(r"[0-9a-f]{32}", ep.id)
    assert ep.creation_timestamp is not None and ep.last_updated_timestamp is not None
    assert before - 1000 <= ep.creation_timestamp <= after  # milliseconds, not seconds
    assert ep.creation_timestamp <= ep.last_updated_timestamp <= after
    assert ep.permission_level == ServingEndpointDetailedPermissionLevel.CAN_MANAGE
    assert [t.as_dict() for t in ep.tags or []] == [{"key": "team", "value": "ml"}, {"key": "solo"}]
    assert ep.description == "the iris classifier"
    assert ep.state is not None
    assert ep.state.ready == EndpointStateReady.READY
    assert ep.state.config_update == EndpointStateConfigUpdate.NOT_UPDATING
    assert ep.route_optimized is False
    assert ep.task is None
    assert ep.config is not None and ep.config.config_version == 1
    [served] = ep.config.served_entities or []
    assert served.creation_timestamp is not None
    assert before - 1000 <= served.creation_timestamp <= after


def test_list_returns_summaries_of_all_endpoints(w: WorkspaceClient, iris_model: str) -> None:
    create(w, "life-list-a", entity("1"), tags=[EndpointTag(key="k", value="v")])
    create(w, "life-list-b", entity("@champion"))

    listed = {ep.name: ep for ep in w.serving_endpoints.list()}

    assert set(listed) == {"life-list-a", "life-list-b"}
    a, b = listed["life-list-a"], listed["life-list-b"]
    assert a.creator == ADMIN
    assert a.id == w.serving_endpoints.get("life-list-a").id
    assert a.state is not None and a.state.config_update == EndpointStateConfigUpdate.NOT_UPDATING
    assert a.state.ready == EndpointStateReady.READY
    assert [t.as_dict() for t in a.tags or []] == [{"key": "k", "value": "v"}]
    assert a.config is not None
    assert [(e.name, e.entity_name, e.entity_version) for e in a.config.served_entities or []] == [
        ("iris-1", "iris", "1")
    ]
    assert b.config is not None
    assert [(e.name, e.entity_name, e.entity_version) for e in b.config.served_entities or []] == [
        ("iris-champion", "iris", "2")
    ]


# ---- updates --------------------------------------------------------------------------------
def test_update_config_and_wait_records_traffic_split(w: WorkspaceClient, iris_model: str) -> None:
    create(w, "life-update", entity("1"))

    ep = w.serving_endpoints.update_config_and_wait(
        "life-update",
        served_entities=[entity("1", name="current"), entity("2", name="challenger")],
        traffic_config=TrafficConfig(
            routes=[
                Route(served_entity_name="current", traffic_percentage=80),
                Route(served_entity_name="challenger", traffic_percentage=20),
            ]
        ),
        timeout=WAIT,
    )

    assert ep.state is not None
    assert ep.state.config_update == EndpointStateConfigUpdate.NOT_UPDATING
    assert ep.state.ready == EndpointStateReady.READY
    assert ep.pending_config is None
    assert ep.config is not None and ep.config.config_version == 2
    assert [(e.name, e.entity_name, e.entity_version) for e in ep.config.served_entities or []] == [
        ("current", "iris", "1"),
        ("challenger", "iris", "2"),
    ]
    assert routes_of(ep) == [("current", 80), ("challenger", 20)]
    again = w.serving_endpoints.get("life-update")
    assert again.config is not None and again.config.config_version == 2
    assert routes_of(again) == [("current", 80), ("challenger", 20)]


def test_failed_update_keeps_old_config_serving(
    w: WorkspaceClient, iris_model: str, no_pyfunc_model: str
) -> None:
    create(w, "life-fail", entity("1"))

    with pytest.raises(OperationFailed, match="UPDATE_FAILED"):
        w.serving_endpoints.update_config_and_wait(
            "life-fail", served_entities=[entity("1", entity_name=no_pyfunc_model)], timeout=WAIT
        )

    ep = w.serving_endpoints.get("life-fail")
    assert ep.state is not None
    assert ep.state.config_update == EndpointStateConfigUpdate.UPDATE_FAILED
    assert ep.state.ready == EndpointStateReady.READY
    assert ep.config is not None and ep.config.config_version == 1
    assert [(e.entity_name, e.entity_version) for e in ep.config.served_entities or []] == [("iris", "1")]
    assert ep.pending_config is not None
    [failed] = ep.pending_config.served_entities or []
    assert failed.name == "onnx-only-1"
    assert failed.state is not None and failed.state.deployment is not None
    assert failed.state.deployment.value == "DEPLOYMENT_FAILED"
    failure_message = failed.state.deployment_state_message or ""
    build = w.serving_endpoints.build_logs("life-fail", "onnx-only-1").logs

    ok = w.serving_endpoints.update_config_and_wait("life-fail", served_entities=[entity("2")], timeout=WAIT)

    assert ok.state is not None
    assert ok.state.config_update == EndpointStateConfigUpdate.NOT_UPDATING
    assert ok.state.ready == EndpointStateReady.READY
    assert ok.pending_config is None
    assert ok.config is not None and ok.config.config_version == 3
    assert [(e.name, e.entity_version) for e in ok.config.served_entities or []] == [("iris-2", "2")]
    # The failure names the problem: the model has no python_function flavor.
    assert "Model 'onnx-only' version 1 has no python_function flavor" in failure_message
    assert "Flavors: onnx" in build
    assert "FAILED: Model 'onnx-only' version 1 has no python_function flavor" in build


def test_second_config_update_while_in_progress_is_409(
    w: WorkspaceClient, http: httpx.Client, iris_model: str
) -> None:
    """PUT, then PUT again at once: the second must be refused while the first runs.

    The preflight deploy takes tens of milliseconds, so the first update may already have
    finished when the second PUT arrives; that outcome is accepted only when the second
    response shows the first update promoted. At least one 409 must be seen in 20 tries.
    """
    create(w, "life-conflict", entity("1"))
    config = {
        "served_entities": [
            {"name": "a", "entity_name": "iris", "entity_version": "1", "workload_size": "Small"},
            {"name": "b", "entity_name": "iris", "entity_version": "@champion", "workload_size": "Small"},
        ],
        "traffic_config": {
            "routes": [
                {"served_entity_name": "a", "traffic_percentage": 50},
                {"served_entity_name": "b", "traffic_percentage": 50},
            ]
        },
    }
    url = "/api/2.0/serving-endpoints/life-conflict/config"
    conflicts = 0
    for _ in range(20):
        first = http.put(url, json=config)
        second = http.put(url, json=config)
        assert first.status_code == 200, first.text
        started = first.json()["pending_config"]["config_version"]
        if second.status_code == 409:
            conflicts += 1
            body = second.json()
            assert body["error_code"] == "RESOURCE_CONFLICT"
            assert "in progress" in body["message"]
        else:
            assert second.status_code == 200, second.text
            # Only acceptable when the first update had already been promoted.
            assert second.json()["config"]["config_version"] == started
        settled = wait_settled(http, "life-conflict")
        assert settled["state"]["config_update"] == "NOT_UPDATING"
        if conflicts >= 3:
            break
    assert conflicts >= 1, "no concurrent update was refused in 20 attempts"


def test_cancel_update_without_update_in_progress_is_409(
    w: WorkspaceClient, http: httpx.Client, iris_model: str
) -> None:
    create(w, "life-cancel", entity("1"))

    resp = http.post("/api/2.0/serving-endpoints/life-cancel/cancel-update")

    assert resp.status_code == 409
    body = resp.json()
    assert body["error_code"] == "RESOURCE_CONFLICT"
    assert "no config update in progress" in body["message"]
    assert "NOT_UPDATING" in body["message"]
    ep = w.serving_endpoints.get("life-cancel")
    assert ep.state is not None and ep.state.config_update == EndpointStateConfigUpdate.NOT_UPDATING
    assert ep.config is not None and ep.config.config_version == 1


# ---- gateway, rate limits, tags ---------------------------------------------------------------
def test_put_ai_gateway_round_trips_the_whole_config(w: WorkspaceClient, iris_model: str) -> None:
    create(w, "life-gateway", entity("1"))
    gateway = AiGatewayConfig(
        usage_tracking_config=AiGatewayUsageTrackingConfig(enabled=True),
        inference_table_config=AiGatewayInferenceTableConfig(
            catalog_name="main", schema_name="serving", table_name_prefix="iris_gw", enabled=True
        ),
        rate_limits=[
            AiGatewayRateLimit(
                renewal_period=AiGatewayRateLimitRenewalPeriod.MINUTE,
                calls=100,
                key=AiGatewayRateLimitKey.ENDPOINT,
            ),
            AiGatewayRateLimit(
                renewal_period=AiGatewayRateLimitRenewalPeriod.MINUTE,
                calls=10,
                tokens=5000,
                key=AiGatewayRateLimitKey.USER,
                principal="alice@example.com",
            ),
            AiGatewayRateLimit(
                renewal_period=AiGatewayRateLimitRenewalPeriod.MINUTE,
                tokens=20000,
                key=AiGatewayRateLimitKey.USER_GROUP,
                principal="users",
            ),
            AiGatewayRateLimit(
                renewal_period=AiGatewayRateLimitRenewalPeriod.MINUTE,
                calls=50,
                key=AiGatewayRateLimitKey.SERVICE_PRINCIPAL,
                principal="6f1c0d5e-ci-bot",
            ),
        ],
        guardrails=AiGatewayGuardrails(
            input=AiGatewayGuardrailParameters(
                safety=True,
                pii=AiGatewayGuardrailPiiBehavior(behavior=AiGatewayGuardrailPiiBehaviorBehavior.BLOCK),
                invalid_keywords=["password", "ssn"],
                valid_topics=["flowers", "botany"],
            ),
            output=AiGatewayGuardrailParameters(
                safety=False,
                pii=AiGatewayGuardrailPiiBehavior(behavior=AiGatewayGuardrailPiiBehaviorBehavior.MASK),
            ),
        ),
        fallback_config=FallbackConfig(enabled=True),
    )
    expected = gateway.as_dict()

    resp = w.serving_endpoints.put_ai_gateway(
        "life-gateway",
        usage_tracking_config=gateway.usage_tracking_config,
        inference_table_config=gateway.inference_table_config,
        rate_limits=gateway.rate_limits,
        guardrails=gateway.guardrails,
        fallback_config=gateway.fallback_config,
    )

    assert resp.as_dict() == expected
    stored = w.serving_endpoints.get("life-gateway").ai_gateway
    assert stored is not None and stored.as_dict() == expected
    [listed] = [ep for ep in w.serving_endpoints.list() if ep.name == "life-gateway"]
    assert listed.ai_gateway is not None and listed.ai_gateway.as_dict() == expected


def test_legacy_put_rate_limits(w: WorkspaceClient, http: httpx.Client, iris_model: str) -> None:
    create(w, "life-limits", entity("1"))
    limits = [
        RateLimit(calls=10, renewal_period=RateLimitRenewalPeriod.MINUTE, key=RateLimitKey.USER),
        RateLimit(calls=100, renewal_period=RateLimitRenewalPeriod.MINUTE, key=RateLimitKey.ENDPOINT),
    ]

    resp = w.serving_endpoints.put("life-limits", rate_limits=limits)

    expected = [
        {"calls": 10, "renewal_period": "minute", "key": "user"},
        {"calls": 100, "renewal_period": "minute", "key": "endpoint"},
    ]
    assert [r.as_dict() for r in resp.rate_limits or []] == expected
    assert http.get("/api/2.0/serving-endpoints/life-limits").json()["rate_limits"] == expected


def test_patch_tags_adds_replaces_and_deletes(w: WorkspaceClient, iris_model: str) -> None:
    create(
        w, "life-tags", entity("1"), tags=[EndpointTag(key="a", value="1"), EndpointTag(key="b", value="2")]
    )

    resp = w.serving_endpoints.patch(
        "life-tags",
        add_tags=[EndpointTag(key="c", value="3"), EndpointTag(key="a", value="9")],
        delete_tags=["b"],
    )

    expected = [{"key": "a", "value": "9"}, {"key": "c", "value": "3"}]
    assert [t.as_dict() for t in resp.tags or []] == expected
    assert [t.as_dict() for t in w.serving_endpoints.get("life-tags").tags or []] == expected

    again = w.serving_endpoints.patch("life-tags", delete_tags=["a", "c"])
    assert again.tags in (None, [])
    assert w.serving_endpoints.get("life-tags").tags in (None, [])


# ---- logs, metrics, OpenAPI ---------------------------------------------------------------
def test_build_logs_describe_resolution_and_checks(w: WorkspaceClient, iris_model: str) -> None:
    create(w, "life-logs", entity("@champion"))

    build = w.serving_endpoints.build_logs("life-logs", "iris-champion").logs

    assert "Resolving iris version @champion in the model registry." in build
    assert "Alias @champion of 'iris' points at version 2." in build
    assert "Flavors: python_function, sklearn" in build
    assert "Checks passed." in build
    assert "Config version 1 is serving." in build
    runtime = w.serving_endpoints.logs("life-logs", "iris-champion").logs
    assert isinstance(runtime, str)


def test_export_metrics_is_prometheus_text(w: WorkspaceClient, iris_model: str) -> None:
    create(w, "life-metrics", entity("1"))

    resp = w.serving_endpoints.export_metrics("life-metrics")

    assert resp.contents is not None
    text = resp.contents.read().decode()
    assert "# TYPE modelport_endpoint_config_version gauge" in text
    assert 'modelport_endpoint_config_version{endpoint="life-metrics"} 1\n' in text
    assert 'modelport_endpoint_ready{endpoint="life-metrics"} 1\n' in text
    assert 'modelport_endpoint_update_in_progress{endpoint="life-metrics"} 0\n' in text


def test_get_open_api_returns_openapi_document(w: WorkspaceClient, iris_model: str) -> None:
    create(w, "life-openapi", entity("1"))

    resp = w.serving_endpoints.get_open_api("life-openapi")

    assert resp.contents is not None
    doc = json.loads(resp.contents.read())
    assert doc["openapi"].startswith("3.")
    assert doc["info"]["title"] == "life-openapi"
    assert "/serving-endpoints/life-openapi/invocations" in doc["paths"]
    assert "post" in doc["paths"]["/serving-endpoints/life-openapi/invocations"]
    assert "/serving-endpoints/life-openapi/served-models/iris-1/invocations" in doc["paths"]


# ---- permissions and delete ---------------------------------------------------------------
def _acl(perms: Any) -> dict[str, list[tuple[str, bool]]]:
    out = {}
    for entry in perms.access_control_list or []:
        who = entry.user_name or entry.group_name or entry.service_principal_name
        out[who] = [(p.permission_level.value, bool(p.inherited)) for p in entry.all_permissions or []]
    return out


def test_permissions_get_set_update_and_levels(w: WorkspaceClient, iris_model: str) -> None:
    ep = create(w, "life-perms", entity("1"))
    assert ep.id is not None

    perms = w.serving_endpoints.get_permissions(ep.id)
    assert perms.object_id == f"/serving-endpoints/{ep.id}"
    assert perms.object_type == "serving-endpoint"
    assert _acl(perms) == {ADMIN: [("CAN_MANAGE", False)], "admins": [("CAN_MANAGE", True)]}

    levels = w.serving_endpoints.get_permission_levels(ep.id).permission_levels or []
    assert [lv.permission_level.value for lv in levels if lv.permission_level] == [
        "CAN_MANAGE",
        "CAN_QUERY",
        "CAN_VIEW",
    ]
    assert all(lv.description for lv in levels)

    replaced = w.serving_endpoints.set_permissions(
        ep.id,
        access_control_list=[
            ServingEndpointAccessControlRequest(
                group_name="users", permission_level=ServingEndpointPermissionLevel.CAN_VIEW
            )
        ],
    )
    assert _acl(replaced) == {"users": [("CAN_VIEW", False)], "admins": [("CAN_MANAGE", True)]}

    merged = w.serving_endpoints.update_permissions(
        ep.id,
        access_control_list=[
            ServingEndpointAccessControlRequest(
                user_name=ADMIN, permission_level=ServingEndpointPermissionLevel.CAN_QUERY
            )
        ],
    )
    assert _acl(merged) == {
        ADMIN: [("CAN_QUERY", False)],
        "users": [("CAN_VIEW", False)],
        "admins": [("CAN_MANAGE", True)],
    }
    assert _acl(w.serving_endpoints.get_permissions(ep.id)) == _acl(merged)


def test_delete_removes_the_endpoint(w: WorkspaceClient, iris_model: str) -> None:
    create(w, "life-delete", entity("1"))

    w.serving_endpoints.delete("life-delete")

    with pytest.raises(NotFound):
        w.serving_endpoints.get("life-delete")
    assert "life-delete" not in [ep.name for ep in w.serving_endpoints.list()]
    # The name is free again.
    again = create(w, "life-delete", entity("2"))
    assert again.config is not None and again.config.config_version == 1
