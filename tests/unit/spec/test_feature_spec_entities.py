"""Served entities that name feature specs: how a config says so, and what it may not hold."""

from __future__ import annotations

from typing import Any

import pytest

from modelport.errors import InvalidParameterValue
from modelport.spec.endpoint import CreateEndpoint, EndpointCoreConfigInput, runs_in_gateway
from modelport.spec.validation import normalize_config

SPEC = "Main.Shop.Customer_Spec"


def config(*entities: dict[str, Any], **more: Any) -> EndpointCoreConfigInput:
    return EndpointCoreConfigInput.model_validate({"served_entities": list(entities), **more})


def refused(cfg: EndpointCoreConfigInput, feature_serving: bool | None = None) -> str:
    with pytest.raises(InvalidParameterValue) as info:
        normalize_config(cfg, "ep", feature_serving=feature_serving)
    return info.value.message


def test_the_feature_serving_clients_body_gives_a_spec_entity_left_for_the_control_plane_to_fill() -> None:
    body = {
        "name": "fs",
        "config": {
            "served_entities": [
                {"name": "", "entity_name": SPEC, "workload_size": "Small", "scale_to_zero_enabled": True}
            ]
        },
        "is_feature_serving": True,
    }
    req = CreateEndpoint.model_validate(body)
    assert req.is_feature_serving is True
    assert req.config is not None
    out = normalize_config(req.config, "fs", feature_serving=req.is_feature_serving)
    assert out["served_entities"] == [
        {
            "name": "Customer_Spec",
            "entity_name": "main.shop.customer_spec",
            "workload_size": "Small",
            "scale_to_zero_enabled": True,
            "feature_spec": {},
        }
    ]
    assert out["traffic_config"]["routes"] == [
        {
            "served_entity_name": "Customer_Spec",
            "served_model_name": "Customer_Spec",
            "traffic_percentage": 100,
        }
    ]
    assert runs_in_gateway(out["served_entities"][0])


def test_without_the_flag_a_versionless_three_part_name_may_name_a_spec() -> None:
    out = normalize_config(config({"entity_name": SPEC}), "ep")
    assert out["served_entities"][0]["feature_spec"] == {}
    # A one-part name is a registered model missing its version, as before.
    assert "entity_version" in refused(config({"entity_name": "fraud"}))
    # With is_feature_serving: false, never a spec.
    assert "entity_version" in refused(config({"entity_name": SPEC}), feature_serving=False)


def test_a_versioned_model_or_an_external_model_is_never_a_spec() -> None:
    out = normalize_config(config({"entity_name": SPEC, "entity_version": "2"}), "ep")
    assert "feature_spec" not in out["served_entities"][0]
    assert not runs_in_gateway(out["served_entities"][0])
    assert runs_in_gateway({"name": "x", "external_model": {}})


def test_a_feature_serving_endpoint_refuses_a_model() -> None:
    message = refused(config({"entity_name": SPEC, "entity_version": "1"}), feature_serving=True)
    assert "is_feature_serving" in message and "feature specs" in message


def test_a_spec_name_must_have_three_parts() -> None:
    assert "catalog.schema.name" in refused(config({"entity_name": "shop.spec"}), feature_serving=True)
    assert "entity_name" in refused(config({"name": "x"}), feature_serving=True)


@pytest.mark.parametrize(
    "field",
    [
        {"workload_type": "GPU_SMALL"},
        {"provisioned_model_units": 1},
        {"min_provisioned_throughput": 0, "max_provisioned_throughput": 10},
        {"environment_vars": {"A": "b"}},
        {"burst_scaling_enabled": True},
    ],
)
def test_replica_settings_do_not_apply_to_a_spec(field: dict[str, Any]) -> None:
    message = refused(config({"entity_name": SPEC, **field}), feature_serving=True)
    assert f"'{next(iter(field))}' does not apply to a feature spec" in message


def test_a_spec_does_not_share_an_endpoint_with_models() -> None:
    message = refused(
        config(
            {"name": "spec", "entity_name": SPEC},
            {"name": "model", "entity_name": "main.shop.model", "entity_version": "1"},
            traffic_config={
                "routes": [
                    {"served_entity_name": "spec", "traffic_percentage": 50},
                    {"served_entity_name": "model", "traffic_percentage": 50},
                ]
            },
        )
    )
    assert "'spec' name feature specs" in message and "cannot share an endpoint with models" in message


def test_legacy_served_models_never_name_specs() -> None:
    cfg = EndpointCoreConfigInput.model_validate({"served_models": [{"model_name": SPEC}]})
    assert "entity_version" in refused(cfg)
