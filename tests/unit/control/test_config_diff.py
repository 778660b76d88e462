"""The changes between two config bodies (``control/config_history.diff``), the paging of config
versions and the body a rollback records."""

from __future__ import annotations

from typing import Any

import pytest

from modelport.control.config_history import (
    diff,
    diff_ai_gateway,
    page_of,
    parse_max_results,
    restored_body,
    version_summary,
)
from modelport.errors import InvalidParameterValue
from modelport.spec.secrets import MASK
from modelport.store.records import ConfigRecord


def entity(name: str, version: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "entity_name": "m", "entity_version": version, "workload_size": "Small", **extra}


def body(entities: list[dict[str, Any]], traffic: dict[str, float], **extra: Any) -> dict[str, Any]:
    routes = [
        {"served_entity_name": k, "served_model_name": k, "traffic_percentage": v} for k, v in traffic.items()
    ]
    return {"served_entities": entities, "traffic_config": {"routes": routes}, **extra}


def paths(changes: list[dict[str, Any]]) -> dict[str, tuple[str, Any, Any]]:
    return {c["path"]: (c["change"], c["before"], c["after"]) for c in changes}


def test_the_same_config_has_no_changes() -> None:
    one = body([entity("a", "1")], {"a": 100})
    assert diff(one, body([entity("a", "1")], {"a": 100})) == []


def test_an_added_entity_is_one_entry_and_its_traffic_another() -> None:
    before = body([entity("a", "1")], {"a": 100})
    after = body([entity("a", "1"), entity("b", "2")], {"a": 80, "b": 20})

    got = paths(diff(before, after))

    assert got == {
        "served_entities.b": ("added", None, entity("b", "2")),
        "traffic_config.a": ("changed", 100, 80),
        "traffic_config.b": ("added", None, 20),
    }


def test_a_removed_entity_and_its_route() -> None:
    before = body([entity("a", "1"), entity("b", "2")], {"a": 50, "b": 50})
    after = body([entity("b", "2")], {"b": 100})

    got = paths(diff(before, after))

    assert got["served_entities.a"] == ("removed", entity("a", "1"), None)
    assert got["traffic_config.a"] == ("removed", 50, None)
    assert got["traffic_config.b"] == ("changed", 50, 100)


def test_a_changed_entity_gives_one_entry_per_changed_field() -> None:
    before = body([entity("a", "1", environment_vars={"X": "1"})], {"a": 100})
    after = body(
        [entity("a", "3", environment_vars={"X": "2", "Y": "y"}, scale_to_zero_enabled=True)], {"a": 100}
    )

    got = paths(diff(before, after))

    assert got == {
        "served_entities.a.entity_version": ("changed", "1", "3"),
        "served_entities.a.environment_vars.X": ("changed", "1", "2"),
        "served_entities.a.environment_vars.Y": ("added", None, "y"),
        "served_entities.a.scale_to_zero_enabled": ("added", None, True),
    }


def test_what_a_deployment_wrote_is_not_a_change() -> None:
    before = body(
        [entity("a", "1", state={"deployment": "DEPLOYMENT_READY"}, foundation_model={"name": "x"})],
        {"a": 100},
    )
    assert diff(before, body([entity("a", "1")], {"a": 100})) == []


def test_extension_blocks_field_by_field() -> None:
    shadow = {"served_entity_name": "b", "percentage": 25.0}
    rollout = {"candidate": "b", "steps": [5.0, 100.0]}
    before = body([entity("a", "1"), entity("b", "2")], {"a": 100, "b": 0}, shadow=shadow)
    after = body(
        [entity("a", "1"), entity("b", "2")],
        {"a": 100, "b": 0},
        shadow={**shadow, "percentage": 50.0},
        rollout=rollout,
        auto_capture_config={"enabled": True, "catalog_name": "c"},
    )

    got = paths(diff(before, after))

    assert got == {
        "shadow.percentage": ("changed", 25.0, 50.0),
        "rollout": ("added", None, rollout),
        "auto_capture_config": ("added", None, {"enabled": True, "catalog_name": "c"}),
    }


def test_a_rollback_marker_is_not_a_change() -> None:
    one = body([entity("a", "1")], {"a": 100})
    assert diff(one, {**one, "rolled_back_from": 1}) == []


def test_credentials_are_masked_and_a_changed_one_still_shows() -> None:
    def ext(key: str) -> dict[str, Any]:
        return {
            "name": "chat",
            "external_model": {
                "provider": "openai",
                "name": "gpt",
                "task": "llm/v1/chat",
                "openai_config": {"openai_api_key_plaintext": key},
            },
        }

    before = body([ext("{{secrets/modelport-endpoint-x/k1}}")], {"chat": 100})
    after = body([ext("sk-new-secret")], {"chat": 100})

    changes = diff(before, after)

    assert paths(changes) == {
        "served_entities.chat.external_model.openai_config.openai_api_key_plaintext": ("changed", MASK, MASK)
    }
    assert "sk-new-secret" not in repr(changes)
    added = diff(None, after)
    assert "sk-new-secret" not in repr(added)
    assert added[0]["after"]["external_model"]["openai_config"] == {"openai_api_key_plaintext": MASK}


def test_a_new_endpoint_adds_everything() -> None:
    got = paths(diff(None, body([entity("a", "1")], {"a": 100})))
    assert got == {
        "served_entities.a": ("added", None, entity("a", "1")),
        "traffic_config.a": ("added", None, 100),
    }


def test_ai_gateway_changes() -> None:
    before = {"usage_tracking_config": {"enabled": True}, "guardrails": None}
    after = {"usage_tracking_config": {"enabled": False}, "rate_limits": [{"calls": 5}]}

    got = paths(diff_ai_gateway(before, after))

    assert got == {
        "ai_gateway.usage_tracking_config.enabled": ("changed", True, False),
        "ai_gateway.rate_limits": ("added", None, [{"calls": 5}]),
    }
    assert diff_ai_gateway(None, {"guardrails": None}) == []
    assert paths(diff_ai_gateway(before, None)) == {
        "ai_gateway": ("removed", {"usage_tracking_config": {"enabled": True}}, None)
    }


def record(version: int, cfg_body: dict[str, Any] | None = None) -> ConfigRecord:
    return ConfigRecord(
        "e",
        version,
        cfg_body or body([entity("a", str(version))], {"a": 100}),
        "SUPERSEDED",
        "admin",
        version,
    )


def test_pages_go_newest_first_and_end_without_a_token() -> None:
    configs = [record(v) for v in range(1, 6)]

    first, token = page_of(configs, 2, None)
    second, token2 = page_of(configs, 2, token)
    third, token3 = page_of(configs, 2, token2)

    assert [c.version for c in first + second + third] == [5, 4, 3, 2, 1]
    assert token and token2 and token3 is None
    assert page_of(configs, 5, None)[1] is None


@pytest.mark.parametrize("token", ["nonsense", "e30", "eyJiZWZvcmUiOiAieCJ9"])  # {} and {"before": "x"}
def test_a_token_not_made_here_is_refused(token: str) -> None:
    with pytest.raises(InvalidParameterValue, match="page_token"):
        page_of([record(1)], 2, token)


@pytest.mark.parametrize("raw", ["0", "501", "x", -1])
def test_max_results_is_checked(raw: Any) -> None:
    with pytest.raises(InvalidParameterValue, match="max_results"):
        parse_max_results(raw)


def test_max_results_defaults_to_50() -> None:
    assert parse_max_results(None) == 50
    assert parse_max_results("500") == 500


def test_a_restored_body_drops_the_rollout_and_deployment_states() -> None:
    stored = body(
        [entity("a", "1", state={"deployment": "DEPLOYMENT_READY"}), entity("b", "2")],
        {"a": 90, "b": 10},
        rollout={"candidate": "b", "steps": [10.0, 100.0]},
        shadow=None,
        rolled_back_from=7,
    )

    restored = restored_body(record(3, stored))

    assert "rollout" not in restored
    assert restored["served_entities"] == [entity("a", "1"), entity("b", "2")]
    assert restored["traffic_config"] == stored["traffic_config"]
    assert restored["rolled_back_from"] == 3
    assert "state" in stored["served_entities"][0], "the stored body is not changed"


def test_a_summary_names_entities_traffic_and_the_restored_version() -> None:
    summary = version_summary(record(4, {**body([entity("a", "1")], {"a": 100}), "rolled_back_from": 1}))

    assert summary["served_entities"] == [{"name": "a", "entity_name": "m", "entity_version": "1"}]
    assert summary["rolled_back_from"] == 1
    assert summary["traffic_config"]["routes"][0]["traffic_percentage"] == 100
    assert summary["shadow"] is None and summary["rollout"] is None
