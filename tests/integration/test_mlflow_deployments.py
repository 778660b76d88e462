"""MLflow deployment clients against a real server: MLflow's own "databricks" target and our
"modelport" plugin (compat-api.md §E.2)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import requests
from mlflow.deployments import BaseDeploymentClient, get_deploy_client
from mlflow.exceptions import MlflowException

from tests.serverproc import ADMIN_TOKEN, ServerProcess
from tests.support.endpoints import wait_settled

API = "/api/2.0/serving-endpoints"


def served(version: str = "1") -> dict[str, Any]:
    return {
        "entity_name": "iris",
        "entity_version": version,
        "workload_size": "Small",
        "scale_to_zero_enabled": True,
    }


@pytest.fixture
def databricks(server: ServerProcess, monkeypatch: pytest.MonkeyPatch) -> BaseDeploymentClient:
    monkeypatch.setenv("DATABRICKS_HOST", server.url)
    monkeypatch.setenv("DATABRICKS_TOKEN", ADMIN_TOKEN)
    return get_deploy_client("databricks")


@pytest.fixture
def modelport(server: ServerProcess, monkeypatch: pytest.MonkeyPatch) -> BaseDeploymentClient:
    monkeypatch.setenv("MODELPORT_HOST", server.url)
    monkeypatch.setenv("MODELPORT_TOKEN", ADMIN_TOKEN)
    return get_deploy_client("modelport")


# ---- MLflow's "databricks" target ------------------------------------------------------------
def test_databricks_target_endpoint_lifecycle(
    databricks: BaseDeploymentClient, http: httpx.Client, iris_model: str
) -> None:
    created = databricks.create_endpoint(
        config={
            "name": "mlf-life",
            "config": {"served_entities": [served("1")]},
            "tags": [{"key": "owner", "value": "mlflow"}],
            "route_optimized": False,
        }
    )
    assert created["name"] == "mlf-life"
    assert created["creator"] == "admin"
    assert created["state"]["config_update"] in ("IN_PROGRESS", "NOT_UPDATING")
    assert created["tags"] == [{"key": "owner", "value": "mlflow"}]

    wait_settled(http, "mlf-life")
    settled = databricks.get_endpoint("mlf-life")
    assert settled["state"] == {"ready": "READY", "config_update": "NOT_UPDATING", "suspend": "NOT_SUSPENDED"}
    assert settled["config"]["config_version"] == 1
    assert settled["config"]["served_entities"][0]["name"] == "iris-1"
    assert settled["permission_level"] == "CAN_MANAGE"

    listed = databricks.list_endpoints()  # GET /api/2.0/serving-endpoints/ (trailing slash)
    assert [ep["name"] for ep in listed] == ["mlf-life"]
    assert listed[0]["config"]["served_entities"] == [
        {"name": "iris-1", "entity_name": "iris", "entity_version": "1"}
    ]

    updated = databricks.update_endpoint_config(
        "mlf-life",
        {
            "served_entities": [{**served("1"), "name": "old"}, {**served("2"), "name": "new"}],
            "traffic_config": {
                "routes": [
                    {"served_entity_name": "old", "traffic_percentage": 90},
                    {"served_entity_name": "new", "traffic_percentage": 10},
                ]
            },
        },
    )
    assert updated["name"] == "mlf-life"
    assert updated["pending_config"]["config_version"] == 2
    wait_settled(http, "mlf-life")
    after = databricks.get_endpoint("mlf-life")
    assert after["config"]["config_version"] == 2
    assert [
        (r["served_entity_name"], r["traffic_percentage"])
        for r in after["config"]["traffic_config"]["routes"]
    ] == [
        ("old", 90),
        ("new", 10),
    ]

    limits = databricks.update_endpoint_rate_limits(
        "mlf-life", {"rate_limits": [{"calls": 5, "renewal_period": "minute", "key": "user"}]}
    )
    assert limits == {"rate_limits": [{"calls": 5, "renewal_period": "minute", "key": "user"}]}

    gateway = {
        "usage_tracking_config": {"enabled": True},
        "rate_limits": [{"calls": 30, "renewal_period": "minute", "key": "endpoint"}],
        "guardrails": {"input": {"safety": True, "pii": {"behavior": "BLOCK"}}},
        "fallback_config": {"enabled": False},
    }
    assert dict(databricks.update_endpoint_ai_gateway("mlf-life", gateway)) == gateway
    assert databricks.get_endpoint("mlf-life")["ai_gateway"] == gateway

    tags = databricks.update_endpoint_tags(
        "mlf-life", {"add_tags": [{"key": "stage", "value": "prod"}], "delete_tags": ["owner"]}
    )
    assert tags == {"tags": [{"key": "stage", "value": "prod"}]}
    assert databricks.get_endpoint("mlf-life")["tags"] == [{"key": "stage", "value": "prod"}]

    assert databricks.delete_endpoint("mlf-life") == {}  # DELETE with a JSON body
    assert http.get(f"{API}/mlf-life").status_code == 404
    assert databricks.list_endpoints() == []


def test_databricks_target_errors_are_http_errors_with_the_message(
    databricks: BaseDeploymentClient, iris_model: str
) -> None:
    with pytest.raises(requests.exceptions.HTTPError) as missing:
        databricks.get_endpoint("mlf-missing")
    assert missing.value.response.status_code == 404
    assert "Endpoint with name 'mlf-missing' does not exist." in str(missing.value)
    assert "RESOURCE_DOES_NOT_EXIST" in str(missing.value)

    databricks.create_endpoint(config={"name": "mlf-dupe", "config": {"served_entities": [served("1")]}})
    with pytest.raises(requests.exceptions.HTTPError) as dupe:
        databricks.create_endpoint(config={"name": "mlf-dupe", "config": {"served_entities": [served("2")]}})
    assert dupe.value.response.status_code == 400  # mlflow maps RESOURCE_ALREADY_EXISTS to 400 (§D.3)
    assert "Endpoint with name 'mlf-dupe' already exists." in str(dupe.value)

    with pytest.raises(requests.exceptions.HTTPError) as invalid:
        databricks.create_endpoint(config={"name": "mlf bad", "config": {"served_entities": [served("1")]}})
    assert invalid.value.response.status_code == 400
    assert "'mlf bad'" in str(invalid.value)
    assert "INVALID_PARAMETER_VALUE" in str(invalid.value)

    with pytest.raises(requests.exceptions.HTTPError) as version:
        databricks.create_endpoint(
            config={"name": "mlf-version", "config": {"served_entities": [served("99")]}}
        )
    assert version.value.response.status_code == 404
    assert "Version 99 of registered model 'iris' does not exist (versions: 1, 2)" in str(version.value)


def test_databricks_target_conflict_is_409(
    databricks: BaseDeploymentClient, http: httpx.Client, iris_model: str
) -> None:
    """mlflow maps RESOURCE_CONFLICT to 409: refuse a second update while one is running."""
    databricks.create_endpoint(config={"name": "mlf-conflict", "config": {"served_entities": [served("1")]}})
    wait_settled(http, "mlf-conflict")
    config = {
        "served_entities": [{**served("1"), "name": "a"}, {**served("@champion"), "name": "b"}],
        "traffic_config": {
            "routes": [
                {"served_entity_name": "a", "traffic_percentage": 50},
                {"served_entity_name": "b", "traffic_percentage": 50},
            ]
        },
    }
    conflicts = 0
    for _ in range(20):
        first = databricks.update_endpoint_config("mlf-conflict", config)
        started = first["pending_config"]["config_version"]
        try:
            second = databricks.update_endpoint_config("mlf-conflict", config)
        except requests.exceptions.HTTPError as err:
            assert err.response.status_code == 409
            assert "already has a config update in progress" in str(err)
            conflicts += 1
            break
        else:
            assert second["config"]["config_version"] == started
        wait_settled(http, "mlf-conflict")
    assert conflicts == 1, "no concurrent update was refused in 20 attempts"


# ---- the "modelport" plugin -------------------------------------------------------------------
def test_modelport_plugin_create_get_list_delete(
    modelport: BaseDeploymentClient, http: httpx.Client, iris_model: str
) -> None:
    created = modelport.create_endpoint(
        config={
            "name": "mp-plugin",
            "config": {"served_entities": [served("@champion")]},
            "tags": [{"key": "k"}],
        }
    )
    assert created["name"] == "mp-plugin"
    assert created["state"]["config_update"] in ("IN_PROGRESS", "NOT_UPDATING")
    assert created.name == "mp-plugin"  # an attribute-dict, as the databricks target returns

    wait_settled(http, "mp-plugin")
    settled = modelport.get_endpoint("mp-plugin")
    assert settled["state"]["ready"] == "READY"
    assert settled["config"]["served_entities"][0]["entity_version"] == "2"
    assert settled["tags"] == [{"key": "k"}]

    assert [ep["name"] for ep in modelport.list_endpoints()] == ["mp-plugin"]
    assert modelport.delete_endpoint("mp-plugin") == {}
    assert http.get(f"{API}/mp-plugin").status_code == 404
    assert modelport.list_endpoints() == []


def test_modelport_plugin_deployment_waits_until_served(
    modelport: BaseDeploymentClient, iris_model: str
) -> None:
    deployed = modelport.create_deployment("mp-deploy", "models:/iris/1")
    assert deployed["state"]["config_update"] == "NOT_UPDATING"
    assert deployed["config"]["served_entities"][0]["entity_version"] == "1"

    updated = modelport.update_deployment("mp-deploy", "models:/iris/2")
    assert updated["state"]["config_update"] == "NOT_UPDATING"
    assert updated["config"]["config_version"] == 2
    assert updated["config"]["served_entities"][0]["entity_version"] == "2"
    assert [d["name"] for d in modelport.list_deployments()] == ["mp-deploy"]
    modelport.delete_deployment("mp-deploy")
    assert modelport.list_endpoints() == []


def test_modelport_plugin_errors_are_mlflow_exceptions(
    modelport: BaseDeploymentClient, iris_model: str
) -> None:
    with pytest.raises(MlflowException) as missing:
        modelport.get_endpoint("mp-missing")
    assert missing.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    assert "Endpoint with name 'mp-missing' does not exist." in missing.value.message

    with pytest.raises(MlflowException) as model:
        modelport.create_endpoint(
            config={
                "name": "mp-x",
                "config": {"served_entities": [{"entity_name": "nope", "entity_version": "1"}]},
            }
        )
    assert model.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    assert "'nope'" in model.value.message
