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

from tests.serverproc import ADMIN_TOKEN, ServerProcess, free_port

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


def test_principal_commands_end_to_end(cli: Any) -> None:
    user, robot, group = "cli-int-alice@example.com", "cli-int-ci-bot", "cli-int-scientists"

    created = ok(cli("users", "create", user)).stdout.splitlines()
    assert re.split(r"\s{2,}", created[0]) == ["NAME", "ID", "GROUPS"]
    name, user_id, groups = re.split(r"\s{2,}", created[1])
    assert (name, groups) == (user, "users") and user_id.isdigit()
    robot_json = json.loads(ok(cli("service-principals", "create", robot, "-o", "json")).stdout)
    assert (robot_json["applicationId"], robot_json["displayName"]) == (robot, robot)

    made = ok(cli("groups", "create", group, "--member", user)).stdout.splitlines()
    assert re.split(r"\s{2,}", made[1])[::2] == [group, user]
    added = ok(cli("groups", "add-member", group, robot)).stdout.splitlines()
    assert re.split(r"\s{2,}", added[1])[2] == f"{user}, {robot}"

    [listed] = [u for u in json.loads(ok(cli("-o", "json", "users", "list")).stdout) if u["userName"] == user]
    assert listed["id"] == user_id
    assert sorted(g["display"] for g in listed["groups"]) == [group, "users"]
    table = ok(cli("service-principals", "list")).stdout
    assert re.search(rf"^{robot}\s+{robot_json['id']}\s+{group}, users$", table, re.M)

    removed = json.loads(ok(cli("groups", "remove-member", group, robot, "-o", "json")).stdout)
    assert [m["display"] for m in removed["members"]] == [user]
    failed(cli("groups", "remove-member", group, robot), "RESOURCE_DOES_NOT_EXIST", f"'{robot}'")

    # The user the CLI created can be given a token, and the token works (and is not an admin's).
    token = json.loads(ok(cli("tokens", "create", "--for-user", user, "-o", "json")).stdout)["token_value"]
    assert json.loads(ok(cli("-o", "json", "endpoints", "list", token=token)).stdout) == []
    failed(cli("users", "create", "cli-int-mallory", token=token), "PERMISSION_DENIED", f"'{user}'")

    assert ok(cli("groups", "delete", group)).stdout == f"Deleted group {group}.\n"
    assert ok(cli("users", "delete", user)).stdout == f"Deleted user {user}.\n"
    assert ok(cli("service-principals", "delete", robot, "-o", "json")).stdout == "{}\n"
    failed(cli("users", "delete", user), "RESOURCE_DOES_NOT_EXIST", f"No user named '{user}' exists.")
    failed(cli("endpoints", "list", token=token), "UNAUTHENTICATED")
    remaining = ok(cli("-o", "json", "groups", "list")).stdout
    assert group not in remaining and user not in remaining


def test_version_and_the_root_output_option(cli: Any) -> None:
    from importlib.metadata import version

    assert ok(cli("--version")).stdout == f"modelport {version('modelport')}\n"
    assert isinstance(json.loads(ok(cli("-o", "json", "tokens", "list")).stdout), list)
    table = ok(cli("-o", "json", "tokens", "list", "-o", "table")).stdout
    assert table.startswith("TOKEN_ID")


def test_query_sends_a_file_of_records(cli: Any, tmp_path: Path, iris_model: str) -> None:
    spec = {
        "name": "cli-records",
        "config": {"served_entities": [{"entity_name": "iris", "entity_version": "1"}]},
    }
    ok(cli("endpoints", "create", "-f", write(tmp_path / "ep.json", spec), "--wait"))
    records = [{"f0": 0.9, "f1": 0.1, "f2": 0.1, "f3": 0.1}, {"f0": 0.1, "f1": 0.9, "f2": 0.9, "f3": 0.9}]
    (tmp_path / "records.json").write_text(json.dumps(records))

    answer = json.loads(
        ok(cli("endpoints", "query", "cli-records", "-f", str(tmp_path / "records.json"))).stdout
    )
    inline = json.loads(ok(cli("endpoints", "query", "cli-records", "--json", json.dumps(records))).stdout)

    assert answer == inline == {"predictions": [1, 0]}


def test_get_secret_adds_a_newline_unless_raw(cli: Any) -> None:
    ok(cli("secrets", "create-scope", "cli-int-scope"))
    try:
        ok(cli("secrets", "put-secret", "cli-int-scope", "k", "--string-value", "s3cret"))
        assert ok(cli("secrets", "get-secret", "cli-int-scope", "k")).stdout == "s3cret\n"
        assert ok(cli("secrets", "get-secret", "cli-int-scope", "k", "--raw")).stdout == "s3cret"
    finally:
        ok(cli("secrets", "delete-scope", "cli-int-scope"))


def serve(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run ``modelport serve ARGS`` (expected to fail at once); a server that started is killed."""
    env = {**os.environ, "MODELPORT_ADMIN_TOKEN": ADMIN_TOKEN, "MODELPORT_SYSTEM_ENDPOINTS": "false"}
    return subprocess.run(
        [sys.executable, "-m", "modelport", "serve", "--log-format", "text", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_second_server_on_a_busy_data_dir_says_so_in_one_line(
    server: ServerProcess, tmp_path: Path
) -> None:
    assert server.proc is not None
    result = serve("--data-dir", str(server.data_dir), "--port", str(free_port()), cwd=tmp_path)

    assert result.returncode == 1, result.stderr
    assert result.stderr == (
        f"Error: RESOURCE_CONFLICT: the data directory {server.data_dir.resolve()} is in use by another "
        f"modelport server (pid {server.proc.pid}); stop it or use another --data-dir.\n"
    )
    assert result.stdout == ""
    assert httpx.get(f"{server.url}/ready", timeout=10).status_code == 200


def test_a_busy_port_is_reported_in_one_line_before_anything_starts(
    server: ServerProcess, tmp_path: Path
) -> None:
    data_dir = tmp_path / "unused"
    result = serve("--data-dir", str(data_dir), "--port", str(server.port), cwd=tmp_path)

    assert result.returncode == 1, result.stderr
    assert result.stderr == (
        f"Error: RESOURCE_CONFLICT: port {server.port} on 127.0.0.1 is already in use; "
        "stop what listens there or use another --port.\n"
    )
    assert result.stdout == ""
    assert not data_dir.exists()


def test_a_start_up_failure_ends_with_one_error_line_and_no_traceback(tmp_path: Path) -> None:
    result = serve(
        "--data-dir",
        str(tmp_path / "data"),
        "--port",
        str(free_port()),
        "--store",
        "postgresql://modelport@127.0.0.1:1/nowhere",
        cwd=tmp_path,
    )

    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    last = result.stderr.splitlines()[-1]
    assert last.startswith("Error: INTERNAL_ERROR: the server failed to start: OperationalError: "), last
    assert last.endswith("(--log-level debug logs the traceback)")
    assert [line for line in result.stderr.splitlines() if line.startswith("Error:")] == [last]
