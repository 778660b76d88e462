"""``modelport monitors``: the bodies its flags build and what it prints, against a MockTransport."""

from __future__ import annotations

import json
from typing import Any

import httpx
from typer.testing import CliRunner

from modelport.client.cli.main import app
from modelport.client.sdk import ModelportClient

runner = CliRunner()
TABLE = "main.s.chat_payload"
PATH = f"/api/2.1/unity-catalog/tables/{TABLE}/monitor"


class FakeServer:
    """Records each request; answers a monitor echoing the last body written."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, Any]] = []
        self.monitor: dict[str, Any] = {
            "table_name": TABLE,
            "status": "MONITOR_STATUS_ACTIVE",
            "output_schema_name": "main.m",
            "assets_dir": "/a",
            "slicing_exprs": ["x > 1"],
            "inference_log": {
                "problem_type": "PROBLEM_TYPE_REGRESSION",
                "timestamp_col": "ts",
                "granularities": ["1 hour"],
                "prediction_col": "p",
                "model_id_col": "m",
            },
            "monitor_version": 1,
        }
        self.refresh_states = ["PENDING", "RUNNING", "SUCCESS"]

    def handle(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else None
        self.requests.append((request.method, request.url.path, body))
        if request.url.path == PATH and request.method in ("POST", "PUT"):
            self.monitor = {
                **body,
                "table_name": TABLE,
                "status": "MONITOR_STATUS_ACTIVE",
                "monitor_version": 2,
            }
            return httpx.Response(200, json=self.monitor)
        if request.url.path == PATH:
            return httpx.Response(200, json=self.monitor)
        if request.url.path.startswith(f"{PATH}/refreshes"):
            state = self.refresh_states.pop(0)
            return httpx.Response(
                200,
                json={
                    "refresh_id": 3,
                    "state": state,
                    "start_time_ms": 1,
                    "trigger": "MANUAL",
                    "message": "m",
                },
            )
        return httpx.Response(404, json={"error_code": "NOT_FOUND", "message": "no"})

    def factory(self) -> Any:
        client = ModelportClient("http://modelport.test", "t", transport=httpx.MockTransport(self.handle))
        return lambda host, token: client


def test_create_builds_an_inference_log_monitor_from_flags() -> None:
    server = FakeServer()
    args = ["monitors", "create", TABLE, "--output-schema", "main.m", "--problem-type", "classification"]
    args += ["--granularity", "1 hour", "--granularity", "1 day", "--labels-table", "main.s.labels"]
    args += ["--label-col", "y", "--schedule", "0 0 * * * ?", "--include-traffic", "shadow"]
    result = runner.invoke(app, args, obj=server.factory())

    assert result.exit_code == 0, result.output
    method, path, body = server.requests[0]
    assert (method, path) == ("POST", PATH)
    assert body == {
        "output_schema_name": "main.m",
        "assets_dir": f"/modelport/monitors/{TABLE}",
        "inference_log": {
            "problem_type": "PROBLEM_TYPE_CLASSIFICATION",
            "timestamp_col": "timestamp",
            "granularities": ["1 hour", "1 day"],
            "prediction_col": "prediction",
            "model_id_col": "served_entity_name",
            "label_col": "y",
        },
        "labels": {"table_name": "main.s.labels"},
        "schedule": {"quartz_cron_expression": "0 0 * * * ?", "timezone_id": "UTC"},
        "include_traffic": ["shadow"],
    }
    assert "Profile          InferenceLog (PROBLEM_TYPE_CLASSIFICATION)" in result.output


def test_create_without_a_profile_type_is_refused_before_any_request() -> None:
    server = FakeServer()
    result = runner.invoke(
        app, ["monitors", "create", TABLE, "--output-schema", "main.m"], obj=server.factory()
    )

    assert result.exit_code == 1
    assert "--problem-type, --time-series or --snapshot" in result.stderr
    assert server.requests == []


def test_update_changes_only_the_flags_given() -> None:
    server = FakeServer()
    result = runner.invoke(app, ["monitors", "update", TABLE, "--granularity", "1 day"], obj=server.factory())

    assert result.exit_code == 0, result.output
    method, path, body = server.requests[-1]
    assert (method, path) == ("PUT", PATH)
    assert body["inference_log"]["granularities"] == ["1 day"]
    assert body["inference_log"]["timestamp_col"] == "ts"  # kept
    assert body["slicing_exprs"] == ["x > 1"]  # kept
    assert "table_name" not in body and "status" not in body


def test_refresh_wait_polls_until_the_refresh_ends() -> None:
    server = FakeServer()
    result = runner.invoke(app, ["monitors", "refresh", TABLE, "--wait", "-o", "json"], obj=server.factory())

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["state"] == "SUCCESS"
    assert [m for m, _, _ in server.requests] == ["POST", "GET", "GET"]
