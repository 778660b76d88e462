"""The ``modelport`` CLI as a real subprocess against a real server."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.serverproc import ADMIN_TOKEN, ServerProcess

API = "/api/2.0/serving-endpoints"


@pytest.fixture
def cli(server: ServerProcess, tmp_path: Path) -> Any:
    """Run ``python -m modelport ARGS`` with MODELPORT_HOST/MODELPORT_TOKEN pointing at the server."""
    env = {**os.environ, "MODELPORT_HOST": server.url, "MODELPORT_TOKEN": ADMIN_TOKEN}

    def run(*args: str, token: str | None = None) -> subprocess.CompletedProcess[str]:
        run_env = env if token is None else {**env, "MODELPORT_TOKEN": token}
        return subprocess.run(
            [sys.executable, "-m", "modelport", *args],
            env=run_env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )

    return run


def write(path: Path, data: dict[str, Any]) -> str:
    path.write_text(json.dumps(data))
    return str(path)


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, (
        f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    )
    assert "Traceback" not in result.stderr
    return result


def failed(result: subprocess.CompletedProcess[str], code: str, *fragments: str) -> str:
    assert result.returncode == 1, (
        f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    )
    assert "Traceback" not in result.stderr + result.stdout
    # Progress lines (--wait) may come first; the error is the last thing printed, once.
    starts = [m.start() for m in re.finditer(r"^Error: ", result.stderr, re.M)]
    assert len(starts) == 1, result.stderr
    error = result.stderr[starts[0] :]
    assert error.startswith(f"Error: {code}: "), result.stderr
    for fragment in fragments:
        assert fragment in error
    return error


def test_endpoint_commands_end_to_end(cli: Any, tmp_path: Path, http: httpx.Client, iris_model: str) -> None:
    create_file = write(
        tmp_path / "create.json",
        {
            "name": "cli-ep",
            "config": {
                "served_entities": [{"entity_name": "iris", "entity_version": "1", "workload_size": "Small"}]
            },
            "tags": [{"key": "team", "value": "cli"}],
        },
    )

    created = ok(cli("endpoints", "create", "-f", create_file, "--wait", "-o", "json"))
    body = json.loads(created.stdout)
    assert body["name"] == "cli-ep"
    assert body["state"]["config_update"] == "NOT_UPDATING"
    assert body["state"]["ready"] == "READY"
    assert body["config"]["config_version"] == 1
    assert "waiting for cli-ep" in created.stderr

    table = ok(cli("endpoints", "list")).stdout.splitlines()
    assert re.split(r"\s{2,}", table[0]) == ["NAME", "STATE", "ENTITIES", "CREATOR", "UPDATED"]
    [row] = table[1:]
    cells = re.split(r"\s{2,}", row)
    assert cells[:4] == ["cli-ep", "READY/NOT_UPDATING", "iris-1", "admin"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", cells[4])

    listed = json.loads(ok(cli("endpoints", "list", "--output", "json")).stdout)
    assert [ep["name"] for ep in listed] == ["cli-ep"]
    assert listed[0]["config"]["served_entities"] == [
        {"name": "iris-1", "entity_name": "iris", "entity_version": "1"}
    ]

    described = ok(cli("endpoints", "get", "cli-ep")).stdout
    assert re.search(r"^NAME\s+cli-ep$", described, re.M)
    assert re.search(r"^STATE\s+READY/NOT_UPDATING$", described, re.M)
    assert re.search(r"^TAGS\s+team=cli$", described, re.M)
    assert "CONFIG (version 1)" in described
    assert re.search(r"^iris-1\s+iris\s+1\s+100%\s+DEPLOYMENT_READY\s+Ready$", described, re.M)
    as_json = json.loads(ok(cli("endpoints", "get", "cli-ep", "-o", "json")).stdout)
    assert as_json == http.get(f"{API}/cli-ep").json()

    update_file = write(
        tmp_path / "update.json",
        {
            "served_entities": [
                {"name": "blue", "entity_name": "iris", "entity_version": "1"},
                {"name": "green", "entity_name": "iris", "entity_version": "@champion"},
            ],
            "traffic_config": {
                "routes": [
                    {"served_entity_name": "blue", "traffic_percentage": 75},
                    {"served_entity_name": "green", "traffic_percentage": 25},
                ]
            },
        },
    )
    updated = ok(cli("endpoints", "update-config", "cli-ep", "-f", update_file, "--wait"))
    assert "CONFIG (version 2)" in updated.stdout
    assert re.search(r"^blue\s+iris\s+1\s+75%\s+DEPLOYMENT_READY", updated.stdout, re.M)
    assert re.search(r"^green\s+iris\s+2\s+25%\s+DEPLOYMENT_READY", updated.stdout, re.M)
    assert "PENDING CONFIG" not in updated.stdout
    assert http.get(f"{API}/cli-ep").json()["config"]["config_version"] == 2

    failed(cli("endpoints", "cancel-update", "cli-ep"), "RESOURCE_CONFLICT", "no config update in progress")

    logs = ok(cli("endpoints", "build-logs", "cli-ep", "green")).stdout
    assert "Alias @champion of 'iris' points at version 2." in logs
    assert "Checks passed." in logs

    deleted = ok(cli("endpoints", "delete", "cli-ep"))
    assert deleted.stdout.strip() == "Deleted endpoint cli-ep."
    assert http.get(f"{API}/cli-ep").status_code == 404
    assert ok(cli("endpoints", "list", "-o", "json")).stdout.strip() == "[]"


def test_create_wait_reports_failed_update(cli: Any, tmp_path: Path, no_pyfunc_model: str) -> None:
    create_file = write(
        tmp_path / "bad.json",
        {
            "name": "cli-fail",
            "config": {"served_entities": [{"entity_name": no_pyfunc_model, "entity_version": "1"}]},
        },
    )
    line = failed(
        cli("endpoints", "create", "-f", create_file, "--wait"), "INVALID_STATE", "'cli-fail'", "failed"
    )
    assert "onnx-only-1" in line
    assert "python_function" in line


def test_token_commands(cli: Any, server: ServerProcess) -> None:
    created = json.loads(
        ok(
            cli("tokens", "create", "--comment", "cli token", "--lifetime-seconds", "600", "-o", "json")
        ).stdout
    )
    value, info = created["token_value"], created["token_info"]
    assert info["comment"] == "cli token"
    assert info["expiry_time"] - info["creation_time"] == 600_000

    table = ok(cli("tokens", "list")).stdout.splitlines()
    assert re.split(r"\s{2,}", table[0]) == ["TOKEN_ID", "COMMENT", "CREATED", "EXPIRES"]
    [row] = [ln for ln in table[1:] if ln.startswith(info["token_id"])]
    assert re.split(r"\s{2,}", row)[1] == "cli token"
    assert value not in "\n".join(table)
    listed = json.loads(ok(cli("tokens", "list", "-o", "json")).stdout)
    assert info["token_id"] in [t["token_id"] for t in listed]

    assert ok(cli("endpoints", "list", "-o", "json", token=value)).stdout.strip() == "[]"

    human = ok(cli("tokens", "create", "--comment", "shown once"))
    assert re.search(r"^TOKEN\s+dapi[0-9a-f]{32}$", human.stdout, re.M)
    assert "cannot be shown again" in human.stderr
    human_id = re.search(r"^TOKEN_ID\s+(\S+)$", human.stdout, re.M)
    assert human_id is not None

    deleted = ok(cli("tokens", "delete", info["token_id"]))
    assert deleted.stdout.strip() == f"Deleted token {info['token_id']}."
    ok(cli("tokens", "delete", human_id.group(1)))
    remaining = [t["token_id"] for t in json.loads(ok(cli("tokens", "list", "-o", "json")).stdout)]
    assert info["token_id"] not in remaining and human_id.group(1) not in remaining

    failed(cli("endpoints", "list", token=value), "UNAUTHENTICATED", "Invalid access token")


def test_errors_print_one_line_and_exit_1(cli: Any, tmp_path: Path, iris_model: str) -> None:
    failed(cli("endpoints", "get", "cli-missing"), "RESOURCE_DOES_NOT_EXIST", "'cli-missing'")

    bad_name = write(tmp_path / "bad-name.json", {"name": "no spaces please", "config": {}})
    failed(cli("endpoints", "create", "-f", bad_name), "INVALID_PARAMETER_VALUE", "'no spaces please'")

    (tmp_path / "broken.json").write_text('{"name": ')
    failed(
        cli("endpoints", "create", "-f", str(tmp_path / "broken.json")), "MALFORMED_REQUEST", "broken.json"
    )

    failed(
        cli("endpoints", "create", "-f", str(tmp_path / "absent.json")),
        "INVALID_PARAMETER_VALUE",
        "absent.json",
    )

    unauthenticated = cli("endpoints", "list", token="dapi-wrong")
    failed(unauthenticated, "UNAUTHENTICATED")
    assert unauthenticated.stdout == ""
