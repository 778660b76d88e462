"""Monitor bodies (Databricks' MonitorInfo) checked for shape, and what an update keeps."""

from __future__ import annotations

from typing import Any

import pytest

from modelport.errors import InvalidParameterValue
from modelport.spec.monitor import parse_config

LOG = {
    "problem_type": "PROBLEM_TYPE_REGRESSION",
    "timestamp_col": "timestamp",
    "granularities": ["1 day"],
    "prediction_col": "prediction",
    "model_id_col": "served_entity_name",
}
BODY: dict[str, Any] = {"output_schema_name": "main.m", "assets_dir": "/x", "inference_log": LOG}


def test_a_create_body_round_trips_with_modelport_fields() -> None:
    body = {
        **BODY,
        "include_traffic": ["shadow", "cache", "shadow"],
        "labels": {"table_name": "main.s.labels"},
        "schedule": {"quartz_cron_expression": "0 0 * * * ?", "timezone_id": "UTC"},
    }
    config = parse_config(body, creating=True)
    assert config.profile_type == "InferenceLog"
    assert config.include_traffic == ("shadow", "cache")
    assert config.to_json()["labels"] == {"table_name": "main.s.labels", "key_cols": ["client_request_id"]}
    assert config.to_json()["schedule"]["pause_status"] == "UNPAUSED"
    assert parse_config(config.to_json(), creating=True) == config


def test_an_update_replaces_databricks_fields_and_keeps_modelports() -> None:
    current = parse_config(
        {
            **BODY,
            "slicing_exprs": ["a > 1"],
            "include_traffic": ["batch"],
            "labels": {"table_name": "main.s.l"},
        },
        creating=True,
    )
    updated = parse_config({"output_schema_name": "main.m"}, creating=False, current=current)
    assert updated.slicing_exprs == ()  # cleared, as Databricks' update does
    assert updated.inference_log == current.inference_log  # no profile type given: kept
    assert (updated.include_traffic, updated.labels, updated.assets_dir) == (("batch",), current.labels, "/x")


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"output_schema_name": None}, "Missing required field 'output_schema_name'"),
        ({"assets_dir": None}, "Missing required field 'assets_dir'"),
        ({"snapshot": {}}, "Exactly one of inference_log, time_series and snapshot"),
        ({"inference_log": {**LOG, "problem_type": "X"}}, "inference_log.problem_type"),
        ({"inference_log": {**LOG, "granularities": []}}, "inference_log.granularities"),
        ({"include_traffic": ["replays"]}, "include_traffic"),
        ({"custom_metrics": [{"name": "m"}]}, "custom_metrics[0].definition"),
        ({"schedule": {"quartz_cron_expression": "0 0 * * * ?"}}, "schedule.timezone_id"),
        ({"labels": {"key_cols": ["k"]}}, "labels.table_name"),
    ],
)
def test_bad_bodies_name_the_field(change: dict[str, Any], fragment: str) -> None:
    body = {**BODY, **change}
    body = {k: v for k, v in body.items() if v is not None}
    with pytest.raises(InvalidParameterValue) as caught:
        parse_config(body, creating=True)
    assert fragment in caught.value.message
