from __future__ import annotations

from typing import Any

import pytest

from modelport.errors import InvalidParameterValue
from modelport.spec.endpoint import AiGatewayConfig, EndpointCoreConfigInput, EndpointTag, RateLimit
from modelport.spec.validation import (
    normalize_ai_gateway,
    normalize_config,
    normalize_legacy_rate_limits,
    normalize_tags,
    validate_endpoint_name,
)


def config(**data: Any) -> EndpointCoreConfigInput:
    return EndpointCoreConfigInput.model_validate(data)


def entity(**over: Any) -> dict[str, Any]:
    return {"entity_name": "catalog.schema.model", "entity_version": "3", **over}


def openai(**over: Any) -> dict[str, Any]:
    ext = {
        "provider": "openai",
        "name": "gpt-4o",
        "task": "llm/v1/chat",
        "openai_config": {"openai_api_key": "{{secrets/s/k}}"},
    }
    ext.update(over)
    return {"external_model": ext}


def bad(cfg: EndpointCoreConfigInput) -> str:
    with pytest.raises(InvalidParameterValue) as info:
        normalize_config(cfg, "ep")
    return info.value.message


def test_single_entity_gets_default_name_defaults_and_full_traffic() -> None:
    out = normalize_config(config(served_entities=[entity()]), "ep")
    assert out["served_entities"] == [
        {
            "name": "model-3",
            "entity_name": "catalog.schema.model",
            "entity_version": "3",
            "workload_size": "Small",
            "workload_type": "CPU",
            "scale_to_zero_enabled": False,
        }
    ]
    assert out["traffic_config"] == {
        "routes": [
            {"served_entity_name": "model-3", "served_model_name": "model-3", "traffic_percentage": 100}
        ]
    }


def test_alias_version_and_models_uri_name() -> None:
    out = normalize_config(
        config(served_entities=[entity(entity_name="models:/fraud", entity_version="@champion")]), "ep"
    )
    assert out["served_entities"][0]["name"] == "fraud-champion"


def test_external_model_default_name_replaces_dots_and_colons() -> None:
    out = normalize_config(config(served_entities=[openai(name="claude-3.5:latest")]), "ep")
    assert out["served_entities"][0]["name"] == "claude-3-5-latest"


def test_external_models_serving_one_task_may_split_the_traffic() -> None:
    routes = [
        {"served_entity_name": "a", "traffic_percentage": 50},
        {"served_entity_name": "b", "traffic_percentage": 50},
    ]
    out = normalize_config(
        config(
            served_entities=[{"name": "a", **openai()}, {"name": "b", **openai(name="gpt-4o-mini")}],
            traffic_config={"routes": routes},
        ),
        "ep",
    )
    assert [(e["name"], e["external_model"]["name"]) for e in out["served_entities"]] == [
        ("a", "gpt-4o"),
        ("b", "gpt-4o-mini"),
    ]
    assert out["traffic_config"] == {
        "routes": [
            {"served_entity_name": "a", "served_model_name": "a", "traffic_percentage": 50},
            {"served_entity_name": "b", "served_model_name": "b", "traffic_percentage": 50},
        ]
    }


def test_legacy_served_models_are_normalised_and_flagged() -> None:
    out = normalize_config(
        config(served_models=[{"model_name": "m", "model_version": "1", "scale_to_zero_enabled": True}]), "ep"
    )
    assert out["legacy_served_models"] is True
    assert out["served_entities"][0]["entity_name"] == "m"


def test_case_insensitive_workload_size() -> None:
    out = normalize_config(config(served_entities=[entity(workload_size="medium")]), "ep")
    assert out["served_entities"][0]["workload_size"] == "Medium"


@pytest.mark.parametrize(
    ("cfg", "fragment"),
    [
        (config(), "config.served_entities"),
        (config(served_entities=[entity(), entity()]), "must be unique; 'model-3'"),
        (config(served_entities=[entity(name="a"), entity(name="b")]), "traffic_config"),
        (
            config(
                served_entities=[entity(name="a"), entity(name="b")],
                traffic_config={
                    "routes": [
                        {"served_entity_name": "a", "traffic_percentage": 50},
                        {"served_entity_name": "b", "traffic_percentage": 40},
                    ]
                },
            ),
            "add up to 90",
        ),
        (
            config(
                served_entities=[entity(name="a")],
                traffic_config={"routes": [{"served_entity_name": "zz", "traffic_percentage": 100}]},
            ),
            "'zz' is not a served entity",
        ),
        (
            config(
                served_entities=[entity(name="a")],
                traffic_config={"routes": [{"served_entity_name": "a", "traffic_percentage": 101}]},
            ),
            "101 is not between 0 and 100",
        ),
        # (A three-part name without a version may name a feature spec: the control plane decides.)
        (config(served_entities=[entity(entity_name="fraud", entity_version=None)]), "entity_version"),
        (config(served_entities=[entity(entity_version="v3")]), "neither a version number nor an alias"),
        (config(served_entities=[entity(entity_name=None)]), "entity_name"),
        (config(served_entities=[entity(workload_size="Huge")]), "'Huge' is not Small, Medium, Large"),
        (
            config(
                served_entities=[
                    entity(
                        workload_size="Small", min_provisioned_concurrency=0, max_provisioned_concurrency=4
                    )
                ]
            ),
            "not both",
        ),
        (
            config(served_entities=[entity(min_provisioned_concurrency=8, max_provisioned_concurrency=4)]),
            "min <= max",
        ),
        (config(served_entities=[entity(workload_type="TPU")]), "'TPU' is not one of CPU"),
        (config(served_entities=[entity(name="bad name!")]), "letters, digits"),
        (config(served_entities=[entity(environment_vars={"1BAD": "x"})]), "'1BAD' is not a valid"),
        (
            config(served_entities=[entity(environment_vars={"MODELPORT_ENV_MANAGER": "conda"})]),
            "environment_vars.MODELPORT_ENV_MANAGER': 'conda' is not one of local, uv",
        ),
        (
            config(served_entities=[{"name": "gpt", **openai()}, entity()]),
            "external models (gpt) cannot share an endpoint with registered models",
        ),
        (
            config(
                served_entities=[
                    {"name": "a", **openai()},
                    {"name": "b", **openai(task="llm/v1/embeddings")},
                ],
                traffic_config={
                    "routes": [
                        {"served_entity_name": "a", "traffic_percentage": 50},
                        {"served_entity_name": "b", "traffic_percentage": 50},
                    ]
                },
            ),
            "must all serve the same task ('a' llm/v1/chat, 'b' llm/v1/embeddings)",
        ),
        (config(served_entities=[openai(provider="acme")]), "'acme' is not a supported provider"),
        (config(served_entities=[openai(task="llm/v1/rerank")]), "'llm/v1/rerank' is not one of"),
        (config(served_entities=[openai(openai_config=None)]), "openai_config"),
        (config(served_entities=[openai(anthropic_config={})]), "remove anthropic_config"),
        (
            config(served_entities=[openai(openai_config={"openai_api_key": "sk-raw"})]),
            "must be a secret reference",
        ),
        (
            config(
                served_entities=[
                    openai(
                        openai_config={"openai_api_key": "{{secrets/a/b}}", "openai_api_key_plaintext": "sk"}
                    )
                ]
            ),
            "not both",
        ),
        (
            config(
                served_entities=[
                    {
                        "external_model": {
                            "provider": "amazon-bedrock",
                            "name": "m",
                            "task": "llm/v1/chat",
                            "amazon_bedrock_config": {"aws_region": "us-east-1"},
                        }
                    }
                ]
            ),
            "bedrock_provider",
        ),
        (
            config(
                served_entities=[
                    {
                        "external_model": {
                            "provider": "custom",
                            "name": "m",
                            "task": "llm/v1/chat",
                            "custom_provider_config": {"custom_provider_url": "ftp://x"},
                        }
                    }
                ]
            ),
            "must be an http",
        ),
        (
            config(served_entities=[{**openai(), "workload_size": "Small"}]),
            "cannot be combined with 'external_model'",
        ),
        (
            config(served_entities=[entity()], auto_capture_config={"enabled": True, "catalog_name": "c"}),
            "schema_name",
        ),
    ],
)
def test_bad_configs_are_refused_with_a_message_naming_the_problem(
    cfg: EndpointCoreConfigInput, fragment: str
) -> None:
    assert fragment in bad(cfg)


def test_auto_capture_defaults_prefix_to_endpoint_name() -> None:
    out = normalize_config(
        config(
            served_entities=[entity()], auto_capture_config={"catalog_name": "main", "schema_name": "logs"}
        ),
        "my_ep",
    )
    assert out["auto_capture_config"] == {
        "catalog_name": "main",
        "schema_name": "logs",
        "enabled": True,
        "table_name_prefix": "my_ep",
    }


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("a", True),
        ("my-endpoint_2", True),
        ("x" * 63, True),
        ("x" * 64, False),
        ("", False),
        ("has space", False),
        ("dot.s", False),
    ],
)
def test_endpoint_name_rules(name: str, ok: bool) -> None:
    if ok:
        assert validate_endpoint_name(name) == name
    else:
        with pytest.raises(InvalidParameterValue):
            validate_endpoint_name(name)


def gateway(**data: Any) -> dict[str, Any]:
    return normalize_ai_gateway(AiGatewayConfig.model_validate(data), "ep")


def test_gateway_round_trip_with_defaults() -> None:
    out = gateway(
        rate_limits=[
            {"calls": 10, "renewal_period": "minute"},
            {"tokens": 1000, "renewal_period": "minute", "key": "user", "principal": "a@x"},
        ],
        usage_tracking_config={"enabled": True},
        fallback_config={"enabled": True},
        guardrails={"input": {"pii": {"behavior": "MASK"}, "invalid_keywords": ["x"]}},
        inference_table_config={"catalog_name": "c", "schema_name": "s", "enabled": True},
    )
    assert out["rate_limits"][0] == {"calls": 10, "renewal_period": "minute", "key": "endpoint"}
    assert out["rate_limits"][1]["principal"] == "a@x"
    assert out["inference_table_config"]["table_name_prefix"] == "ep"
    assert out["guardrails"]["input"]["pii"] == {"behavior": "MASK"}


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({"rate_limits": [{"calls": 1, "renewal_period": "minute"}] * 21}, "at most 20"),
        ({"rate_limits": [{"calls": 1, "renewal_period": "hour"}]}, "'hour' is not supported"),
        ({"rate_limits": [{"renewal_period": "minute"}]}, "calls"),
        ({"rate_limits": [{"calls": -1, "renewal_period": "minute"}]}, "must not be negative"),
        ({"rate_limits": [{"calls": 1, "renewal_period": "minute", "key": "ip"}]}, "'ip' is not one of"),
        (
            {"rate_limits": [{"calls": 1, "renewal_period": "minute", "principal": "a"}]},
            "principal applies only",
        ),
        ({"guardrails": {"output": {"pii": {"behavior": "REDACT"}}}}, "'REDACT' is not one of"),
        ({"fallback_config": {}}, "fallback_config.enabled"),
    ],
)
def test_bad_gateway_configs(data: dict[str, Any], fragment: str) -> None:
    with pytest.raises(InvalidParameterValue) as info:
        gateway(**data)
    assert fragment in info.value.message


def test_legacy_rate_limits() -> None:
    assert normalize_legacy_rate_limits([RateLimit(calls=5, renewal_period="minute", key="user")]) == [
        {"calls": 5, "renewal_period": "minute", "key": "user"}
    ]
    with pytest.raises(InvalidParameterValue, match="'user_group' is not one of endpoint, user"):
        normalize_legacy_rate_limits([RateLimit(calls=5, renewal_period="minute", key="user_group")])


def test_tags_dedupe_by_key_and_require_key() -> None:
    assert normalize_tags([EndpointTag(key="a", value="1"), EndpointTag(key="a", value="2")]) == [
        {"key": "a", "value": "2"}
    ]
    with pytest.raises(InvalidParameterValue, match=r"tags\[0\]\.key"):
        normalize_tags([EndpointTag(value="x")])
