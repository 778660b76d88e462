"""The MLflow deployments plugin, loaded through MLflow's own plugin manager.

The plugin builds a ModelportClient per call from MODELPORT_HOST/MODELPORT_TOKEN; the
tests swap the module's ModelportClient for one bound to the fake server's transport.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import pytest
from mlflow.deployments import PredictionsResponse, get_deploy_client
from mlflow.deployments.interface import _target_help
from mlflow.exceptions import MlflowException

from modelport.client import mlflow_plugin
from modelport.client.sdk import ModelportClient

MakeEndpoint = Callable[..., dict[str, Any]]


@pytest.fixture
def client(server: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("MODELPORT_HOST", "http://modelport.test")
    monkeypatch.setenv("MODELPORT_TOKEN", "dapi-plugin")
    monkeypatch.setattr(
        mlflow_plugin, "ModelportClient", functools.partial(ModelportClient, transport=server.transport)
    )
    return get_deploy_client("modelport")


def test_mlflow_finds_the_plugin_by_its_entry_point() -> None:
    assert type(get_deploy_client("modelport")) is mlflow_plugin.ModelportDeploymentClient
    assert "models:/<registered model>/<version>" in _target_help("modelport")


def test_list_endpoints_returns_attribute_dicts(client: Any, server: Any) -> None:
    server.on(
        "GET",
        "/api/2.0/serving-endpoints",
        (200, {"endpoints": [{"name": "chat", "state": {"ready": "READY"}}]}),
    )

    endpoints = client.list_endpoints()

    assert endpoints == [{"name": "chat", "state": {"ready": "READY"}}]
    assert endpoints[0].name == "chat"
    assert endpoints[0].state.ready == "READY"
    assert server.requests[0].headers["authorization"] == "Bearer dapi-plugin"


def test_create_endpoint_sends_a_full_payload_unchanged(
    client: Any, server: Any, make_endpoint: MakeEndpoint
) -> None:
    payload = {
        "name": "my-endpoint",
        "config": {"served_entities": [{"entity_name": "m", "entity_version": "1"}]},
    }
    server.on("POST", "/api/2.0/serving-endpoints", (200, make_endpoint(update="IN_PROGRESS")))

    endpoint = client.create_endpoint(config=payload)

    assert server.body() == payload
    assert endpoint.state.config_update == "IN_PROGRESS"


def test_create_endpoint_wraps_the_legacy_name_and_config_form(
    client: Any, server: Any, make_endpoint: MakeEndpoint
) -> None:
    server.on("POST", "/api/2.0/serving-endpoints", (200, make_endpoint()))

    client.create_endpoint("e", {"served_entities": [], "tags": [{"key": "a", "value": "b"}]})

    assert server.body() == {
        "name": "e",
        "config": {"served_entities": []},
        "route_optimized": False,
        "tags": [{"key": "a", "value": "b"}],
    }


def test_update_endpoint_with_only_rate_limits_goes_to_rate_limits(client: Any, server: Any) -> None:
    limits = {"rate_limits": [{"calls": 10, "renewal_period": "minute", "key": "user"}]}
    server.on("PUT", "/api/2.0/serving-endpoints/e/rate-limits", (200, limits))

    assert client.update_endpoint("e", limits) == limits
    assert server.calls() == [("PUT", "/api/2.0/serving-endpoints/e/rate-limits")]


def test_update_endpoint_tags_patches_add_and_delete(client: Any, server: Any) -> None:
    server.on("PATCH", "/api/2.0/serving-endpoints/e/tags", (200, {"tags": [{"key": "k", "value": "v"}]}))

    client.update_endpoint_tags("e", {"add_tags": [{"key": "k", "value": "v"}], "delete_tags": ["x"]})

    assert server.body() == {"add_tags": [{"key": "k", "value": "v"}], "delete_tags": ["x"]}


def test_server_errors_become_mlflow_exceptions_with_the_same_code(client: Any, server: Any) -> None:
    body = {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "Endpoint with name 'x' does not exist."}
    server.on("GET", "/api/2.0/serving-endpoints/x", (404, body))

    with pytest.raises(MlflowException) as caught:
        client.get_endpoint("x")

    assert caught.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    assert caught.value.message == "Endpoint with name 'x' does not exist."


def test_missing_token_is_an_unauthenticated_mlflow_exception(
    client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MODELPORT_TOKEN")

    with pytest.raises(MlflowException) as caught:
        client.list_endpoints()

    assert caught.value.error_code == "UNAUTHENTICATED"


def test_predict_posts_inputs_to_invocations(client: Any, server: Any) -> None:
    server.on("POST", "/serving-endpoints/fraud/invocations", (200, {"predictions": [0.1, 0.9]}))

    response = client.predict(endpoint="fraud", inputs={"dataframe_records": [{"a": 1}, {"a": 2}]})

    assert isinstance(response, PredictionsResponse)
    assert response == {"predictions": [0.1, 0.9]}
    assert server.body() == {"dataframe_records": [{"a": 1}, {"a": 2}]}


def test_create_deployment_creates_one_endpoint_and_waits(
    client: Any, server: Any, make_endpoint: MakeEndpoint
) -> None:
    server.on("POST", "/api/2.0/serving-endpoints", (200, make_endpoint(name="fraud", update="IN_PROGRESS")))
    server.on(
        "GET",
        "/api/2.0/serving-endpoints/fraud",
        (200, make_endpoint(name="fraud", update="IN_PROGRESS")),
        (200, make_endpoint(name="fraud")),
    )

    deployment = client.create_deployment(
        "fraud", "models:/main.ml.fraud/3", config={"workload_size": "Medium"}
    )

    assert server.body(0) == {
        "name": "fraud",
        "config": {
            "served_entities": [
                {
                    "entity_name": "main.ml.fraud",
                    "entity_version": "3",
                    "workload_size": "Medium",
                    "scale_to_zero_enabled": False,
                }
            ]
        },
    }
    assert deployment.state.config_update == "NOT_UPDATING"
    assert server.calls()[1:] == [("GET", "/api/2.0/serving-endpoints/fraud")] * 2


@pytest.mark.parametrize(
    ("model_uri", "flavor", "config", "expected"),
    [
        ("runs:/abc/model", None, None, "model_uri must be models:/<registered model>/<version>"),
        ("models:/fraud@champion", None, None, "model_uri must be models:/<registered model>/<version>"),
        ("models:/fraud/3", "sklearn", None, "modelport serves the python_function flavor, not 'sklearn'"),
        ("models:/fraud/3", None, {"replicas": 2}, "unknown deployment config keys ['replicas']"),
    ],
)
def test_create_deployment_rejects_what_it_cannot_serve(
    client: Any, server: Any, model_uri: str, flavor: str | None, config: Any, expected: str
) -> None:
    with pytest.raises(MlflowException) as caught:
        client.create_deployment("fraud", model_uri, flavor, config)

    assert caught.value.error_code == "INVALID_PARAMETER_VALUE"
    assert expected in caught.value.message
    assert server.requests == []


def test_update_deployment_without_model_keeps_entities_and_applies_config(
    client: Any, server: Any, make_endpoint: MakeEndpoint
) -> None:
    current = make_endpoint(
        name="fraud",
        config={
            "config_version": 1,
            "served_entities": [
                {
                    "name": "fraud-3",
                    "entity_name": "fraud",
                    "entity_version": "3",
                    "workload_size": "Small",
                    "creator": "admin",
                    "state": {"deployment": "DEPLOYMENT_READY"},
                },
            ],
            "traffic_config": {"routes": [{"served_entity_name": "fraud-3", "traffic_percentage": 100}]},
        },
    )
    server.on("GET", "/api/2.0/serving-endpoints/fraud", (200, current))
    server.on("PUT", "/api/2.0/serving-endpoints/fraud/config", (200, make_endpoint(name="fraud")))

    client.update_deployment("fraud", config={"workload_size": "Large"})

    assert server.body(1) == {
        "served_entities": [
            {"name": "fraud-3", "entity_name": "fraud", "entity_version": "3", "workload_size": "Large"}
        ],
        "traffic_config": {"routes": [{"served_entity_name": "fraud-3", "traffic_percentage": 100}]},
    }


def test_deployment_and_endpoint_names_must_agree(client: Any) -> None:
    with pytest.raises(MlflowException, match="deployment 'a' and endpoint 'b'"):
        client.get_deployment("a", endpoint="b")


def test_delete_deployment_deletes_the_endpoint(client: Any, server: Any) -> None:
    server.on("DELETE", "/api/2.0/serving-endpoints/fraud", (200, {}))

    assert client.delete_deployment("fraud") is None
    assert server.calls() == [("DELETE", "/api/2.0/serving-endpoints/fraud")]
