"""State survives restarts: a clean SIGTERM stop, and a kill -9 in the middle of a config update.

Each test runs its own ``modelport serve`` (not the shared one) on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.serverproc import ADMIN_TOKEN, ServerProcess
from tests.support.endpoints import wait_settled
from tests.support.models import log_sklearn_model

API = "/api/2.0/serving-endpoints"
SCIM = "/api/2.0/preview/scim/v2"


@pytest.fixture
def own_server(tmp_path: Path, store_url: str) -> Iterator[ServerProcess]:
    import mlflow

    previous_uri = mlflow.get_tracking_uri()
    proc = ServerProcess(tmp_path / "data", store=store_url)
    try:
        yield proc
    finally:
        proc.kill()
        mlflow.set_tracking_uri(previous_uri)


def start(proc: ServerProcess, label: str) -> None:
    proc.start()
    store = "postgresql" if (proc.store or "").startswith("postgresql") else "sqlite"
    print(f"\ncold start ({store}, {label}): ready after {proc.ready_seconds:.2f}s")


def client(proc: ServerProcess, token: str = ADMIN_TOKEN) -> httpx.Client:
    return httpx.Client(base_url=proc.url, headers={"Authorization": f"Bearer {token}"}, timeout=30)


def ok(resp: httpx.Response, status: int = 200) -> Any:
    assert resp.status_code == status, resp.text
    return resp.json()


def without_updated(endpoint: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in endpoint.items() if k != "last_updated_timestamp"}


def snapshot(admin: httpx.Client, bob: httpx.Client, names: list[str]) -> dict[str, Any]:
    endpoints = {name: ok(admin.get(f"{API}/{name}")) for name in names}
    return {
        "endpoints": {name: without_updated(ep) for name, ep in endpoints.items()},
        "list": sorted(ep["name"] for ep in ok(admin.get(API))["endpoints"]),
        "acl": {
            name: ok(admin.get(f"/api/2.0/permissions/serving-endpoints/{ep['id']}"))
            for name, ep in endpoints.items()
        },
        "tokens": ok(admin.get("/api/2.0/token-management/tokens"))["token_infos"],
        "users": sorted(u["userName"] for u in ok(admin.get(f"{SCIM}/Users"))["Resources"]),
        "bob_sees": sorted(ep["name"] for ep in ok(bob.get(API))["endpoints"]),
        "bob_level": ok(bob.get(f"{API}/rs-shared"))["permission_level"],
        "discovery": ok(admin.get("/.well-known/databricks-config"))["workspace_id"],
    }


@pytest.mark.slow
def test_state_survives_clean_stop_and_kill_during_update(own_server: ServerProcess) -> None:
    start(own_server, "first start")
    log_sklearn_model(own_server.url, ADMIN_TOKEN, "iris")
    bob_name = f"bob-{uuid.uuid4().hex[:6]}@example.com"

    with client(own_server) as admin:
        ok(admin.post(f"{SCIM}/Users", json={"userName": bob_name}), 201)
        bob_token = ok(
            admin.post("/api/2.0/token-management/on-behalf-of/tokens", json={"user_name": bob_name})
        )
        admin_token = ok(admin.post("/api/2.0/token/create", json={"comment": "survives restarts"}))
        served = {"entity_name": "iris", "entity_version": "1", "workload_size": "Small"}
        ok(
            admin.post(
                API,
                json={
                    "name": "rs-shared",
                    "config": {"served_entities": [served]},
                    "tags": [{"key": "team", "value": "ops"}],
                    "ai_gateway": {
                        "usage_tracking_config": {"enabled": True},
                        "rate_limits": [{"calls": 10, "renewal_period": "minute", "key": "user"}],
                    },
                },
            )
        )
        ok(admin.post(API, json={"name": "rs-private", "config": {"served_entities": [served]}}))
        wait_settled(admin, "rs-shared", timeout=60)
        wait_settled(admin, "rs-private", timeout=60)
        shared_id = ok(admin.get(f"{API}/rs-shared"))["id"]
        ok(
            admin.patch(
                f"/api/2.0/permissions/serving-endpoints/{shared_id}",
                json={"access_control_list": [{"user_name": bob_name, "permission_level": "CAN_QUERY"}]},
            )
        )
        with client(own_server, bob_token["token_value"]) as bob:
            before = snapshot(admin, bob, ["rs-shared", "rs-private"])
    assert before["bob_sees"] == ["rs-shared"]
    assert before["bob_level"] == "CAN_QUERY"
    assert before["endpoints"]["rs-shared"]["state"]["config_update"] == "NOT_UPDATING"

    # ---- clean stop and restart -----------------------------------------------------------------
    assert own_server.stop() == 0
    log = own_server.log_path.read_text(errors="replace")
    assert "Application shutdown complete." in log
    start(own_server, "restart after SIGTERM")

    with client(own_server) as admin, client(own_server, bob_token["token_value"]) as bob:
        after = snapshot(admin, bob, ["rs-shared", "rs-private"])
        assert after == before
        with client(own_server, admin_token["token_value"]) as again:
            assert ok(again.get(f"{SCIM}/Me"))["userName"] == "admin"

        # ---- kill -9 right after a config update was accepted -------------------------------------
        new_config = {
            "served_entities": [
                {
                    "name": "after-kill",
                    "entity_name": "iris",
                    "entity_version": "1",
                    "workload_size": "Medium",
                }
            ]
        }
        accepted = ok(admin.put(f"{API}/rs-shared/config", json=new_config))
        assert accepted["pending_config"]["config_version"] == 2
        # Two Medium replicas take seconds to start: the update is in progress at the kill.
        assert accepted["state"]["config_update"] == "IN_PROGRESS"
    logged_before_kill = own_server.log_path.stat().st_size
    own_server.kill()
    assert own_server.proc is not None and own_server.proc.returncode == -9
    start(own_server, "restart after kill -9")

    with client(own_server) as admin, client(own_server, bob_token["token_value"]) as bob:
        settled = wait_settled(admin, "rs-shared", timeout=60)
        assert settled["state"] == {
            "ready": "READY",
            "config_update": "NOT_UPDATING",
            "suspend": "NOT_SUSPENDED",
        }
        assert "pending_config" not in settled
        assert settled["config"]["config_version"] == 2
        [entity] = settled["config"]["served_entities"]
        assert (entity["name"], entity["workload_size"]) == ("after-kill", "Medium")
        assert entity["state"]["deployment"] == "DEPLOYMENT_READY"
        assert settled["tags"] == before["endpoints"]["rs-shared"]["tags"]
        assert settled["ai_gateway"] == before["endpoints"]["rs-shared"]["ai_gateway"]

        assert ok(bob.get(f"{API}/rs-shared"))["permission_level"] == "CAN_QUERY"
        assert sorted(ep["name"] for ep in ok(bob.get(API))["endpoints"]) == ["rs-shared"]
        assert bob.put(f"{API}/rs-shared/config", json=new_config).status_code == 403
        with client(own_server, admin_token["token_value"]) as again:
            assert ok(again.get(f"{SCIM}/Me"))["userName"] == "admin"
        assert without_updated(ok(admin.get(f"{API}/rs-private"))) == before["endpoints"]["rs-private"]
    with own_server.log_path.open("rb") as log_file:
        log_file.seek(logged_before_kill)
        assert b"resuming config update" in log_file.read(), "the restart did not resume the update"

    assert own_server.stop() == 0
