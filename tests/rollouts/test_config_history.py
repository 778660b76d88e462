"""Config history, dry runs and rollback on the shared server (``GET .../config-versions``,
``?dry_run=true``, ``POST .../config-versions/{N}/rollback`` and their CLI commands).

One endpoint (``hi-main``) is created with version 1 of ``ro-model``, dry-run updates are checked
to change nothing, then three real updates (versions 2-4, the AI-gateway settings changed while
version 4 serves) are rolled back to version 1 (version 5) through the API, and to version 4
(version 6) through ``modelport endpoints rollback``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.rollouts.world import MODEL, World, entity
from tests.serverproc import ADMIN_TOKEN
from tests.support.endpoints import wait_settled

NAME = "hi-main"
SE = "/api/2.0/serving-endpoints"
BASE = f"{SE}/{NAME}"
VERSIONS, CONFIG, GATEWAY = f"{BASE}/config-versions", f"{BASE}/config", f"{BASE}/ai-gateway"
ALIAS = "hi-champion"
ML = "/api/2.0/mlflow"
LIMITS = [{"calls": 1000, "renewal_period": "minute", "key": "user"}]


def two_way(first: int, second: int, *, alias: str | None = None) -> dict[str, Any]:
    """A config serving ``v<first>`` and ``v<second>`` half and half."""
    b = entity(second, entity_version=alias) if alias else entity(second)
    return {
        "served_entities": [entity(first), b],
        "traffic_config": {
            "routes": [
                {"served_entity_name": f"v{first}", "traffic_percentage": 50},
                {"served_entity_name": f"v{second}", "traffic_percentage": 50},
            ]
        },
    }


def versions(client: httpx.Client, **params: Any) -> dict[str, Any]:
    r = client.get(VERSIONS, params=params)
    assert r.status_code == 200, r.text
    return dict(r.json())


def update(world: World, config: dict[str, Any]) -> dict[str, Any]:
    r = world.admin.put(CONFIG, json=config)
    assert r.status_code == 200, r.text
    got = wait_settled(world.admin, NAME, poll=0.1)
    assert got["state"]["config_update"] == "NOT_UPDATING", got
    return got


def error(r: httpx.Response, status: int, code: str) -> str:
    assert r.status_code == status, r.text
    assert r.json()["error_code"] == code, r.text
    return str(r.json()["message"])


@pytest.fixture(scope="module")
def main(world: World) -> Iterator[World]:
    """``hi-main`` serving ``v1`` (version 1), and the alias ``@hi-champion`` on version 2."""
    r = world.admin.post(
        f"{ML}/registered-models/alias", json={"name": MODEL, "alias": ALIAS, "version": "2"}
    )
    assert r.status_code == 200, r.text
    try:
        world.endpoint(NAME, [entity(1)])
        yield world
    finally:
        world.admin.delete(BASE)
        world.admin.request("DELETE", f"{ML}/registered-models/alias", params={"name": MODEL, "alias": ALIAS})


@pytest.fixture(scope="module")
def updated(main: World) -> World:
    """Three updates after version 1: v1+v2 (2), v3 (3), v4 (4); then a rate limit while 4 serves."""
    update(main, two_way(1, 2))
    update(main, {"served_entities": [entity(3)]})
    update(main, {"served_entities": [entity(4)]})
    gateway = dict(main.admin.get(BASE).json()["ai_gateway"])
    r = main.admin.put(GATEWAY, json={**gateway, "rate_limits": LIMITS})
    assert r.status_code == 200, r.text
    return main


def test_a_dry_run_update_returns_the_diff_and_changes_nothing(main: World) -> None:
    before = main.admin.get(BASE).json()

    r = main.admin.put(CONFIG, params={"dry_run": "true"}, json=two_way(1, 2, alias=f"@{ALIAS}"))

    assert r.status_code == 200, r.text
    report = r.json()
    assert report["dry_run"] is True and report["valid"] is True
    assert (report["config_version"], report["next_config_version"]) == (1, 2)
    changes = {c["path"]: c for c in report["diff"]}
    assert set(changes) == {"served_entities.v2", "traffic_config.v1", "traffic_config.v2"}
    assert changes["served_entities.v2"]["change"] == "added"
    assert changes["served_entities.v2"]["after"]["entity_version"] == f"@{ALIAS}"
    assert (changes["traffic_config.v1"]["before"], changes["traffic_config.v1"]["after"]) == (100, 50)
    assert report["resolved"] == {
        "v1": {"entity_name": MODEL, "entity_version": "1"},
        "v2": {"entity_name": MODEL, "entity_version": "2", "alias": f"@{ALIAS}"},
    }
    assert report["rollout"] is None
    after = main.admin.get(BASE).json()
    assert after["config"]["config_version"] == 1 and "pending_config" not in after
    assert after["state"]["config_update"] == "NOT_UPDATING"
    assert after["last_updated_timestamp"] == before["last_updated_timestamp"]
    assert [v["config_version"] for v in versions(main.admin)["config_versions"]] == [1]
    # "1" is true too; the same body through the real call would have made version 2
    again = main.admin.put(CONFIG, params={"dry_run": "1"}, json={"served_entities": [entity(3)]})
    assert again.status_code == 200 and again.json()["next_config_version"] == 2


def test_a_dry_run_create_stores_no_secret_and_makes_no_endpoint(main: World) -> None:
    scopes = main.admin.get("/api/2.0/secrets/scopes/list").json().get("scopes", [])
    body = {
        "name": "hi-ext",
        "config": {
            "served_entities": [
                {
                    "name": "chat",
                    "external_model": {
                        "provider": "openai",
                        "name": "gpt-4o-mini",
                        "task": "llm/v1/chat",
                        "openai_config": {
                            "openai_api_key_plaintext": "sk-hi-dry-run-secret",
                            "openai_api_base": "http://127.0.0.1:9/v1",
                        },
                    },
                }
            ]
        },
    }

    r = main.admin.post(SE, params={"dry_run": "true"}, json=body)

    assert r.status_code == 200, r.text
    assert "sk-hi-dry-run-secret" not in r.text
    assert (r.json()["config_version"], r.json()["next_config_version"]) == (None, 1)
    assert [c["path"] for c in r.json()["diff"]] == ["served_entities.chat", "traffic_config.chat"]
    error(main.admin.get(f"{SE}/hi-ext"), 404, "RESOURCE_DOES_NOT_EXIST")
    assert main.admin.get("/api/2.0/secrets/scopes/list").json().get("scopes", []) == scopes


def test_a_dry_run_is_refused_as_the_real_call_is(main: World) -> None:
    missing = {"served_entities": [entity(99)]}
    dry = main.admin.put(CONFIG, params={"dry_run": "true"}, json=missing)
    real = main.admin.put(CONFIG, json=missing)
    assert error(dry, 404, "RESOURCE_DOES_NOT_EXIST") == error(real, 404, "RESOURCE_DOES_NOT_EXIST")
    assert "99" in dry.json()["message"]

    endpoint_id = main.admin.get(BASE).json()["id"]
    grant = {"access_control_list": [{"user_name": "alice", "permission_level": "CAN_QUERY"}]}
    assert (
        main.admin.patch(f"/api/2.0/permissions/serving-endpoints/{endpoint_id}", json=grant).status_code
        == 200
    )
    denied = main.alice.put(CONFIG, params={"dry_run": "true"}, json={"served_entities": [entity(2)]})
    assert "CAN_MANAGE" in error(denied, 403, "PERMISSION_DENIED")
    assert main.alice.get(VERSIONS).status_code == 200  # CAN_QUERY includes CAN_VIEW
    error(main.alice.post(f"{VERSIONS}/1/rollback", json={}), 403, "PERMISSION_DENIED")

    odd = main.admin.put(CONFIG, params={"dry_run": "maybe"}, json={"served_entities": [entity(2)]})
    assert "dry_run" in error(odd, 400, "INVALID_PARAMETER_VALUE")
    assert [v["config_version"] for v in versions(main.admin)["config_versions"]] == [1]


def test_history_lists_versions_newest_first_with_their_creator(updated: World) -> None:
    listed = versions(updated.admin)["config_versions"]

    assert [v["config_version"] for v in listed] == [4, 3, 2, 1]
    assert [v["status"] for v in listed] == ["ACTIVE", "SUPERSEDED", "SUPERSEDED", "SUPERSEDED"]
    assert {v["creator"] for v in listed} == {"admin"}
    assert all(v["creation_timestamp"] <= v["finished_timestamp"] for v in listed)
    assert [e["name"] for e in listed[2]["served_entities"]] == ["v1", "v2"]
    assert listed[2]["served_entities"][1] == {"name": "v2", "entity_name": MODEL, "entity_version": "2"}
    assert listed[0]["rolled_back_from"] is None
    page = versions(updated.admin, max_results=3)
    assert [v["config_version"] for v in page["config_versions"]] == [4, 3, 2]
    rest = versions(updated.admin, max_results=3, page_token=page["next_page_token"])
    assert [v["config_version"] for v in rest["config_versions"]] == [1] and rest["next_page_token"] is None
    one = updated.admin.get(f"{VERSIONS}/4").json()
    assert one["config"]["served_entities"][0]["entity_version"] == "4"
    assert one["ai_gateway"]["rate_limits"] == LIMITS
    error(updated.admin.get(f"{VERSIONS}/9"), 404, "RESOURCE_DOES_NOT_EXIST")
    error(updated.admin.get(VERSIONS, params={"max_results": 0}), 400, "INVALID_PARAMETER_VALUE")


def test_rollback_to_version_1_after_three_updates(updated: World) -> None:
    v1 = updated.admin.get(f"{VERSIONS}/1").json()

    r = updated.admin.post(f"{VERSIONS}/1/rollback", json={"reason": "v4 answers badly"})
    busy = updated.admin.post(f"{VERSIONS}/2/rollback", json={})  # while version 5 deploys

    assert r.status_code == 200, r.text
    done = r.json()["rollback"]
    assert (done["to_version"], done["new_version"]) == (1, 5)
    assert {"served_entities", "traffic_config", "ai_gateway"} <= set(done["restored"])
    changed = {c["path"] for c in done["diff"]}
    assert {"served_entities.v1", "served_entities.v4", "ai_gateway.rate_limits"} <= changed
    assert "in progress" in error(busy, 409, "RESOURCE_CONFLICT")
    error(updated.admin.post(f"{VERSIONS}/99/rollback", json={}), 404, "RESOURCE_DOES_NOT_EXIST")
    error(updated.admin.post(f"{VERSIONS}/x/rollback", json={}), 400, "INVALID_PARAMETER_VALUE")
    got = wait_settled(updated.admin, NAME, poll=0.1)
    assert got["state"]["config_update"] == "NOT_UPDATING", got
    assert got["config"]["config_version"] == 5
    assert [(e["name"], e["entity_version"]) for e in got["config"]["served_entities"]] == [("v1", "1")]
    assert got["config"]["traffic_config"] == v1["config"]["traffic_config"]
    assert got["ai_gateway"] == v1["ai_gateway"] and not got["ai_gateway"].get("rate_limits")
    listed = versions(updated.admin)["config_versions"]
    assert [(v["config_version"], v["rolled_back_from"]) for v in listed[:2]] == [(5, 1), (4, None)]
    assert updated.admin.get(f"{VERSIONS}/4").json()["ai_gateway"]["rate_limits"] == LIMITS  # history kept

    for x in (0.2, 0.4, 0.9):
        answer = updated.query(NAME, x)
        assert answer.status_code == 200, answer.text
    rows = updated.wait_rows(NAME, 3)
    assert {row["served_entity_name"] for row in rows} == {"v1"}
    events = updated.admin.get(f"{BASE}/events", params={"kind": "CONFIG_ROLLBACK"}).json()["events"]
    assert [(e["actor"], e["config_version"], e["details"]) for e in events] == [
        ("admin", 5, {"to_version": 1, "new_version": 5, "reason": "v4 answers badly"})
    ]


@pytest.fixture
def cli(updated: World, tmp_path: Path) -> Any:
    """``python -m modelport ARGS`` against the shared server, as admin."""
    env = {**os.environ, "MODELPORT_HOST": updated.server.url, "MODELPORT_TOKEN": ADMIN_TOKEN}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "modelport", *args],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )

    return run


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    assert "Traceback" not in result.stderr
    return result.stdout


def test_cli_history_dry_run_and_rollback(updated: World, cli: Any, tmp_path: Path) -> None:
    lines = ok(cli("endpoints", "history", NAME)).splitlines()
    assert lines[0].split()[:4] == ["VERSION", "STATUS", "CREATOR", "CREATED"]
    newest = lines[1].split()
    assert newest[:3] == ["5", "ACTIVE", "admin"] and f"v1={MODEL}/1" in newest
    assert lines[1].endswith("serving, rollback to 1")
    assert [line.split()[0] for line in lines[1:]] == ["5", "4", "3", "2", "1"]
    assert '"rate_limits"' in ok(cli("endpoints", "history", NAME, "--version", "4", "--json"))

    (tmp_path / "v3.json").write_text(json.dumps({"served_entities": [entity(3)]}))
    dry = ok(cli("endpoints", "update-config", NAME, "-f", "v3.json", "--dry-run"))
    assert dry.startswith(f"Dry run: nothing was changed. Endpoint {NAME}: config version 5 serves")
    assert "added    served_entities.v3" in dry and "removed  served_entities.v1" in dry
    assert f"{MODEL} version 3" in dry
    assert updated.admin.get(BASE).json()["config"]["config_version"] == 5

    out = ok(cli("endpoints", "rollback", NAME, "--to", "4", "--reason", "from the CLI", "--wait"))
    assert f"Rolling back {NAME} to config version 4 as version 6" in out
    assert "CONFIG (version 6)" in out
    got = updated.admin.get(BASE).json()
    assert [e["name"] for e in got["config"]["served_entities"]] == ["v4"]
    assert got["ai_gateway"]["rate_limits"] == LIMITS
