"""The shadow and rollout blocks of a config: their stored form and every refusal naming its field."""

from __future__ import annotations

from typing import Any

import pytest

from modelport.errors import InvalidParameterValue
from modelport.spec.extensions import SHADOW_ENTITY_KEY, normalize_rollout, normalize_shadow, runtime_entities

NAMES = ["v2", "v3"]
TRAFFIC = {
    "routes": [
        {"served_entity_name": "v2", "traffic_percentage": 100},
        {"served_entity_name": "v3", "traffic_percentage": 0},
    ]
}


def test_a_shadow_is_stored_with_its_entity_and_percentage() -> None:
    assert normalize_shadow({"served_entity_name": "v3", "percentage": 25}, NAMES, TRAFFIC) == {
        "served_entity_name": "v3",
        "percentage": 25.0,
    }


@pytest.mark.parametrize("block", [None, {}, {"enabled": False, "served_entity_name": "nope"}])
def test_an_absent_or_disabled_block_asks_for_nothing(block: Any) -> None:
    assert normalize_shadow(block, NAMES, TRAFFIC) is None
    assert normalize_rollout(block, NAMES, TRAFFIC) is None


@pytest.mark.parametrize(
    ("block", "message"),
    [
        ({"percentage": 5}, "Missing required field 'config.shadow.served_entity_name'."),
        (
            {"served_entity_name": "v9", "percentage": 5},
            "Invalid value for 'config.shadow.served_entity_name': 'v9' is not a served entity of this "
            "config (served entities: v2, v3).",
        ),
        (
            {"served_entity_name": "v2", "percentage": 5},
            "Invalid value for 'config.shadow.served_entity_name': 'v2' takes 100% of the live traffic; "
            "a shadow takes none: set its traffic_percentage to 0.",
        ),
        ({"served_entity_name": "v3"}, "Missing required field 'config.shadow.percentage'."),
        (
            {"served_entity_name": "v3", "percentage": 0},
            "Invalid value for 'config.shadow.percentage': 0.0 is not above 0 and at most 100.",
        ),
        (
            {"served_entity_name": "v3", "percentage": 5, "pct": 1},
            "Invalid value for 'config.shadow.pct': unknown field (fields: served_entity_name, "
            "percentage, enabled).",
        ),
        ("v3", "Invalid value for 'config.shadow': must be an object."),
    ],
)
def test_a_bad_shadow_is_refused_naming_its_field(block: Any, message: str) -> None:
    with pytest.raises(InvalidParameterValue) as refused:
        normalize_shadow(block, NAMES, TRAFFIC)
    assert refused.value.message == message


def test_a_rollout_is_stored_whole_with_defaults_and_a_last_step_of_100() -> None:
    stored = normalize_rollout({"steps": [5, 25], "max_error_rate": 0.01}, NAMES, TRAFFIC)
    assert stored == {
        "candidate": None,
        "steps": [5.0, 25.0, 100.0],
        "step_seconds": 300,
        "evaluation_seconds": 10,
        "max_error_rate": 0.01,
        "max_p99_ms": None,
        "min_agreement": None,
        "min_requests_per_step": 0,
        "webhook_url": None,
    }
    short = normalize_rollout({"steps": [50, 100], "step_seconds": 4, "candidate": "v3"}, NAMES, TRAFFIC)
    assert short is not None
    assert (short["candidate"], short["steps"], short["evaluation_seconds"]) == ("v3", [50.0, 100.0], 4)


@pytest.mark.parametrize(
    ("block", "message"),
    [
        ({}, None),
        ({"step_seconds": 5}, "Missing required field 'config.rollout.steps'"),
        ({"steps": [0, 100]}, "Invalid value for 'config.rollout.steps[0]': 0.0 is not above 0"),
        ({"steps": [50, 25, 100]}, "Invalid value for 'config.rollout.steps': percentages must rise"),
        ({"steps": [5], "candidate": "v9"}, "Invalid value for 'config.rollout.candidate': 'v9' is not"),
        ({"steps": [5], "step_seconds": 0}, "Invalid value for 'config.rollout.step_seconds': 0 is below 1."),
        (
            {"steps": [5], "step_seconds": 5, "evaluation_seconds": 6},
            "Invalid value for 'config.rollout.evaluation_seconds': 6 is not between 1 and step_seconds (5).",
        ),
        ({"steps": [5], "max_error_rate": 2}, "Invalid value for 'config.rollout.max_error_rate': 2"),
        ({"steps": [5], "min_agreement": -0.1}, "Invalid value for 'config.rollout.min_agreement': -0.1"),
        ({"steps": [5], "max_p99_ms": 0}, "Invalid value for 'config.rollout.max_p99_ms': 0"),
        (
            {"steps": [5], "min_requests_per_step": -1},
            "Invalid value for 'config.rollout.min_requests_per_step'",
        ),
        ({"steps": "5"}, "Invalid value for 'config.rollout.steps'"),
        ({"steps": [5], "webhook_url": "ftp://x"}, "Invalid value for 'config.rollout.webhook_url'"),
    ],
)
def test_a_bad_rollout_is_refused_naming_its_field(block: dict[str, Any], message: str | None) -> None:
    if message is None:  # an empty block asks for nothing
        assert normalize_rollout(block, NAMES, TRAFFIC) is None
        return
    with pytest.raises(InvalidParameterValue) as refused:
        normalize_rollout(block, NAMES, TRAFFIC)
    assert refused.value.message.startswith(message)


def test_the_runtime_gets_the_shadow_entity_marked_and_the_stored_body_is_left_alone() -> None:
    body = {
        "served_entities": [{"name": "v2"}, {"name": "v3"}],
        "shadow": {"served_entity_name": "v3", "percentage": 10.0},
    }
    assert runtime_entities(body) == [{"name": "v2"}, {"name": "v3", SHADOW_ENTITY_KEY: True}]
    assert body["served_entities"] == [{"name": "v2"}, {"name": "v3"}]
    assert runtime_entities({"served_entities": [{"name": "v2"}]}) == [{"name": "v2"}]
