"""Tokens, principals, endpoint permissions and the unauthenticated system routes."""

from __future__ import annotations

import hashlib
import re
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.serverproc import ServerProcess
from tests.support.endpoints import wait_settled
from tests.support.names import unique
from tests.support.principals import create_user, obo_token
from tests.support.stores import STORES, server_on_each_store, stored_bytes

API = "/api/2.0/serving-endpoints"
SCIM = "/api/2.0/preview/scim/v2"
IRIS_V1 = {"entity_name": "iris", "entity_version": "1"}


@pytest.fixture(scope="module", params=STORES)
def server(request: pytest.FixtureRequest) -> ServerProcess:
    """The tests here run on the SQLite and on the PostgreSQL session server, except those
    marked ``sqlite_only`` (they never touch the store)."""
    return server_on_each_store(request)


sqlite_only = pytest.mark.parametrize("server", ["sqlite"], indirect=True)


def client_for(server: ServerProcess, token: str | None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=server.url, headers=headers, timeout=30)


def create_endpoint(client: httpx.Client, name: str, served: dict[str, Any] = IRIS_V1) -> dict[str, Any]:
    resp = client.post(API, json={"name": name, "config": {"served_entities": [served]}})
    assert resp.status_code == 200, resp.text
    return wait_settled(client, name)


def grant(http: httpx.Client, endpoint_id: str, level: str, **who: str) -> dict[str, Any]:
    resp = http.patch(
        f"/api/2.0/permissions/serving-endpoints/{endpoint_id}",
        json={"access_control_list": [{**who, "permission_level": level}]},
    )
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


def assert_error(resp: httpx.Response, status: int, code: str) -> str:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert body["error_code"] == code
    assert body["message"]
    return str(body["message"])


def may_read(http: httpx.Client, model: str, **who: str) -> None:
    """Grant CAN_READ on registered model ``model``: serving it from an endpoint needs it."""
    resp = http.patch(
        f"/api/2.0/permissions/registered-models/{model}",
        json={"access_control_list": [{**who, "permission_level": "CAN_READ"}]},
    )
    assert resp.status_code == 200, resp.text


@pytest.fixture
def alice(server: ServerProcess, http: httpx.Client, iris_model: str) -> Iterator[tuple[str, httpx.Client]]:
    """A fresh non-admin user who may read (and so serve) ``iris``, with an on-behalf-of
    token, and an httpx client using it."""
    name = f"{unique('alice')}@example.com"
    create_user(http, name)
    may_read(http, iris_model, user_name=name)
    token = obo_token(http, user_name=name)["token_value"]
    with client_for(server, token) as client:
        yield name, client


# ---- tokens -----------------------------------------------------------------------------
def test_token_create_list_delete_round_trip(server: ServerProcess, http: httpx.Client) -> None:
    created = http.post("/api/2.0/token/create", json={"comment": "round trip", "lifetime_seconds": 3600})
    assert created.status_code == 200, created.text
    body = created.json()
    value, info = body["token_value"], body["token_info"]
    assert re.fullmatch(r"dapi[0-9a-f]{32}", value)
    assert info["comment"] == "round trip"
    assert info["expiry_time"] - info["creation_time"] == 3600 * 1000
    assert abs(info["creation_time"] - time.time() * 1000) < 60_000

    with client_for(server, value) as client:
        me = client.get(f"{SCIM}/Me")
        assert me.status_code == 200, me.text
        assert me.json()["userName"] == "admin"

        listed = http.get("/api/2.0/token/list").json()["token_infos"]
        assert [t for t in listed if t["token_id"] == info["token_id"]] == [info]
        assert all("token_value" not in t for t in listed)
        managed = http.get("/api/2.0/token-management/tokens").json()["token_infos"]
        [mine] = [t for t in managed if t["token_id"] == info["token_id"]]
        assert mine["owner_name"] == "admin" and mine["created_by_username"] == "admin"

        deleted = http.post("/api/2.0/token/delete", json={"token_id": info["token_id"]})
        assert deleted.status_code == 200 and deleted.json() == {}

        assert info["token_id"] not in [
            t["token_id"] for t in http.get("/api/2.0/token/list").json()["token_infos"]
        ]
        assert_error(client.get(f"{SCIM}/Me"), 401, "UNAUTHENTICATED")
        assert_error(client.get(API), 401, "UNAUTHENTICATED")
    again = http.post("/api/2.0/token/delete", json={"token_id": info["token_id"]})
    assert_error(again, 404, "RESOURCE_DOES_NOT_EXIST")


def test_token_with_one_second_lifetime_expires(server: ServerProcess, http: httpx.Client) -> None:
    body = http.post("/api/2.0/token/create", json={"lifetime_seconds": 1, "comment": "short"}).json()
    info = body["token_info"]
    assert info["expiry_time"] - info["creation_time"] == 1000

    with client_for(server, body["token_value"]) as client:
        deadline = time.monotonic() + 15
        while True:
            resp = client.get(API)
            if resp.status_code == 401:
                break
            assert resp.status_code == 200, resp.text
            assert time.monotonic() < deadline, "the 1 s token still works after 15 s"
            time.sleep(0.2)
        assert "expired" in assert_error(resp, 401, "UNAUTHENTICATED")
        assert time.time() * 1000 >= info["expiry_time"]


def test_tokens_are_stored_hashed(server: ServerProcess, http: httpx.Client) -> None:
    value = http.post("/api/2.0/token/create", json={"comment": "hash check"}).json()["token_value"]
    stored = stored_bytes(server)

    assert value.encode() not in stored
    assert hashlib.sha256(value.encode()).hexdigest().encode() in stored


# ---- principals --------------------------------------------------------------------------
def test_admin_creates_user_and_obo_token(server: ServerProcess, http: httpx.Client) -> None:
    name = f"{unique('carol')}@example.com"
    user = create_user(http, name)
    assert user["userName"] == name
    assert {g["display"] for g in user["groups"]} == {"users"}

    new = obo_token(http, user_name=name)
    assert new["token_info"]["owner_name"] == name
    assert new["token_info"]["created_by_username"] == "admin"
    with client_for(server, new["token_value"]) as client:
        me = client.get(f"{SCIM}/Me").json()
        assert me["userName"] == name
        assert me["id"] == user["id"]
        assert (
            client.get("/api/2.0/token/list").json()["token_infos"][0]["token_id"]
            == (new["token_info"]["token_id"])
        )
    fetched = http.get(f"{SCIM}/Users/{user['id']}").json()
    assert fetched["userName"] == name
    assert name in [u["userName"] for u in http.get(f"{SCIM}/Users").json()["Resources"]]


def test_admin_creates_service_principal_and_token(
    server: ServerProcess, http: httpx.Client, iris_model: str
) -> None:
    app_id = str(uuid.uuid4())
    resp = http.post(f"{SCIM}/ServicePrincipals", json={"applicationId": app_id, "displayName": "ci bot"})
    assert resp.status_code == 201, resp.text
    sp = resp.json()
    assert sp["applicationId"] == app_id
    assert sp["displayName"] == "ci bot"

    new = obo_token(http, application_id=app_id)
    assert new["token_info"]["owner_name"] == app_id
    may_read(http, iris_model, service_principal_name=app_id)
    with client_for(server, new["token_value"]) as client:
        me = client.get(f"{SCIM}/Me").json()
        assert me["applicationId"] == app_id
        created = create_endpoint(client, unique("sp-ep"))
        assert created["creator"] == app_id
        assert created["permission_level"] == "CAN_MANAGE"


def test_user_created_in_admins_group_is_an_admin(server: ServerProcess, http: httpx.Client) -> None:
    name = f"{unique('root')}@example.com"
    resp = http.post(f"{SCIM}/Users", json={"userName": name, "groups": [{"value": "admins"}]})
    assert resp.status_code == 201, resp.text
    assert {g["display"] for g in resp.json()["groups"]} == {"admins", "users"}
    with client_for(server, obo_token(http, user_name=name)["token_value"]) as client:
        assert client.get(f"{SCIM}/Users").status_code == 200
        other = client.post(f"{SCIM}/Users", json={"userName": f"{unique('dave')}@example.com"})
        assert other.status_code == 201, other.text


def test_non_admin_cannot_create_users_or_obo_tokens(alice: tuple[str, httpx.Client]) -> None:
    _, client = alice
    msg = assert_error(
        client.post(f"{SCIM}/Users", json={"userName": f"{unique('eve')}@example.com"}),
        403,
        "PERMISSION_DENIED",
    )
    assert "admins" in msg
    assert_error(client.post(f"{SCIM}/Groups", json={"displayName": unique("grp")}), 403, "PERMISSION_DENIED")
    assert_error(
        client.post("/api/2.0/token-management/on-behalf-of/tokens", json={"user_name": "admin"}),
        403,
        "PERMISSION_DENIED",
    )
    assert_error(client.get("/api/2.0/token-management/tokens"), 403, "PERMISSION_DENIED")


# ---- endpoint permissions -------------------------------------------------------------------
def test_user_creates_own_endpoint_and_manages_it(alice: tuple[str, httpx.Client], iris_model: str) -> None:
    name, client = alice
    ep = create_endpoint(client, "alice-own")
    assert ep["creator"] == name
    assert ep["permission_level"] == "CAN_MANAGE"
    assert ep["state"] == {"ready": "READY", "config_update": "NOT_UPDATING", "suspend": "NOT_SUSPENDED"}
    resp = client.put(
        f"{API}/alice-own/config", json={"served_entities": [{**IRIS_V1, "entity_version": "2"}]}
    )
    assert resp.status_code == 200, resp.text
    assert wait_settled(client, "alice-own")["config"]["config_version"] == 2
    acl = client.get(f"/api/2.0/permissions/serving-endpoints/{ep['id']}").json()["access_control_list"]
    assert {
        "user_name": name,
        "display_name": "Alice Test",
        "all_permissions": [{"permission_level": "CAN_MANAGE", "inherited": False}],
    } in acl


def test_grants_open_an_admin_endpoint_step_by_step(
    http: httpx.Client, alice: tuple[str, httpx.Client], iris_model: str
) -> None:
    name, client = alice
    ep = create_endpoint(http, "admin-owned")
    new_config = {"served_entities": [{**IRIS_V1, "entity_version": "2"}]}

    assert "CAN_VIEW" in assert_error(client.get(f"{API}/admin-owned"), 403, "PERMISSION_DENIED")
    assert_error(client.put(f"{API}/admin-owned/config", json=new_config), 403, "PERMISSION_DENIED")
    assert_error(client.get(f"/api/2.0/permissions/serving-endpoints/{ep['id']}"), 403, "PERMISSION_DENIED")

    grant(http, ep["id"], "CAN_VIEW", user_name=name)
    seen = client.get(f"{API}/admin-owned")
    assert seen.status_code == 200, seen.text
    assert seen.json()["permission_level"] == "CAN_VIEW"
    assert seen.json()["config"]["config_version"] == 1
    msg = assert_error(client.put(f"{API}/admin-owned/config", json=new_config), 403, "PERMISSION_DENIED")
    assert "CAN_MANAGE" in msg and "CAN_VIEW" in msg
    assert_error(client.delete(f"{API}/admin-owned"), 403, "PERMISSION_DENIED")

    grant(http, ep["id"], "CAN_MANAGE", user_name=name)
    assert client.get(f"{API}/admin-owned").json()["permission_level"] == "CAN_MANAGE"
    resp = client.put(f"{API}/admin-owned/config", json=new_config)
    assert resp.status_code == 200, resp.text
    settled = wait_settled(http, "admin-owned")
    assert settled["config"]["config_version"] == 2
    assert settled["config"]["served_entities"][0]["entity_version"] == "2"


def test_group_grant_gives_members_its_level(
    http: httpx.Client, alice: tuple[str, httpx.Client], iris_model: str
) -> None:
    name, client = alice
    group = unique("scorers")
    created = http.post(f"{SCIM}/Groups", json={"displayName": group})
    assert created.status_code == 201, created.text
    group_id = created.json()["id"]
    patched = http.patch(
        f"{SCIM}/Groups/{group_id}",
        json={"Operations": [{"op": "add", "path": "members", "value": [{"value": name}]}]},
    )
    assert patched.status_code == 200, patched.text
    assert [m["display"] for m in patched.json()["members"]] == [name]
    ep = create_endpoint(http, "group-granted")

    acl = grant(http, ep["id"], "CAN_QUERY", group_name=group)["access_control_list"]
    assert {
        "group_name": group,
        "display_name": group,
        "all_permissions": [{"permission_level": "CAN_QUERY", "inherited": False}],
    } in acl

    seen = client.get(f"{API}/group-granted")
    assert seen.status_code == 200, seen.text
    assert seen.json()["permission_level"] == "CAN_QUERY"
    assert {g["display"] for g in client.get(f"{SCIM}/Me").json()["groups"]} == {"users", group}

    removed = http.patch(
        f"{SCIM}/Groups/{group_id}",
        json={"Operations": [{"op": "remove", "path": f'members[value eq "{name}"]'}]},
    )
    assert removed.status_code == 200, removed.text
    assert removed.json()["members"] == []
    assert_error(client.get(f"{API}/group-granted"), 403, "PERMISSION_DENIED")


def test_list_shows_only_endpoints_the_user_can_view(
    http: httpx.Client, alice: tuple[str, httpx.Client], iris_model: str
) -> None:
    name, client = alice
    create_endpoint(client, "visible-own")
    shared = create_endpoint(http, "visible-shared")
    create_endpoint(http, "hidden-admin")
    grant(http, shared["id"], "CAN_VIEW", user_name=name)

    mine = sorted(ep["name"] for ep in client.get(API).json()["endpoints"])
    everything = sorted(ep["name"] for ep in http.get(API).json()["endpoints"])

    assert mine == ["visible-own", "visible-shared"]
    assert everything == ["hidden-admin", "visible-own", "visible-shared"]


# ---- system routes ------------------------------------------------------------------------
@sqlite_only
def test_discovery_needs_no_auth(server: ServerProcess) -> None:
    resp = httpx.get(f"{server.url}/.well-known/databricks-config", timeout=30)
    assert resp.status_code == 200
    body = resp.json()
    assert re.fullmatch(r"[0-9]+", body["workspace_id"])
    assert body["oidc_endpoint"] == f"{server.url}/oidc"
    assert body["cloud"] == "aws"
    again = httpx.get(f"{server.url}/.well-known/databricks-config/", timeout=30).json()
    assert again["workspace_id"] == body["workspace_id"]


def test_health_ready_and_metrics(server: ServerProcess, http: httpx.Client) -> None:
    health = httpx.get(f"{server.url}/health", timeout=30)
    assert health.status_code == 200 and health.json() == {"status": "ok"}
    ready = httpx.get(f"{server.url}/ready", timeout=30)
    assert ready.status_code == 200
    assert ready.json() == {
        "status": "ready",
        "checks": {"store": "ok", "registry": "ok", "reconciler": "ok"},
    }
    metrics = http.get("/metrics")  # needs a token unless --public-metrics
    assert metrics.status_code == 200
    assert metrics.headers["content-type"].startswith("text/plain")
    assert "# TYPE modelport_http_requests_total counter" in metrics.text
    assert 'modelport_http_requests_total{method="GET",route="health",status="200"}' in metrics.text
    assert "# TYPE modelport_http_request_duration_seconds histogram" in metrics.text


@sqlite_only
def test_request_id_is_echoed_or_generated(server: ServerProcess, http: httpx.Client) -> None:
    given = http.get(API, headers={"x-request-id": "trace-me-42"})
    assert given.headers["x-request-id"] == "trace-me-42"
    generated = http.get(API)
    assert re.fullmatch(r"[0-9a-f]{32}", generated.headers["x-request-id"])
    assert generated.headers["x-request-id"] != http.get(API).headers["x-request-id"]
    error = httpx.get(f"{server.url}{API}", headers={"x-request-id": "err-7"}, timeout=30)
    assert error.status_code == 401
    assert error.headers["x-request-id"] == "err-7"


def _set_active(client: httpx.Client, kind: str, pid: str, active: Any) -> httpx.Response:
    body = {"Operations": [{"op": "replace", "path": "active", "value": active}]}
    return client.patch(f"{SCIM}/{kind}/{pid}", json=body)


def test_a_deactivated_user_is_refused_until_reactivated(
    server: ServerProcess, http: httpx.Client, alice: tuple[str, httpx.Client]
) -> None:
    name, client = alice
    pid = http.get(f"{SCIM}/Users/{name}").json()["id"]
    assert client.get(f"{SCIM}/Me").status_code == 200
    # only admins may, and not on themselves
    assert_error(_set_active(client, "Users", pid, False), 403, "PERMISSION_DENIED")
    me = http.get(f"{SCIM}/Me").json()["id"]
    assert "yourself" in assert_error(_set_active(http, "Users", me, False), 400, "INVALID_PARAMETER_VALUE")
    # SCIM's other shape: a value object without a path
    off = http.patch(
        f"{SCIM}/Users/{pid}", json={"Operations": [{"op": "replace", "value": {"active": False}}]}
    )
    assert off.status_code == 200, off.text
    assert off.json()["active"] is False
    assert http.get(f"{SCIM}/Users/{pid}").json()["active"] is False
    deadline = time.monotonic() + 10  # the authenticator caches a token for a few seconds
    while (resp := client.get(f"{SCIM}/Me")).status_code == 200 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "deactivated" in assert_error(resp, 401, "UNAUTHENTICATED")
    on = _set_active(http, "Users", pid, True)
    assert on.status_code == 200 and on.json()["active"] is True
    deadline = time.monotonic() + 10
    while (resp := client.get(f"{SCIM}/Me")).status_code != 200 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert resp.status_code == 200 and resp.json()["userName"] == name


def test_patching_a_principal_takes_only_active(http: httpx.Client, alice: tuple[str, httpx.Client]) -> None:
    name, _ = alice
    pid = http.get(f"{SCIM}/Users/{name}").json()["id"]
    assert_error(_set_active(http, "Users", pid, "maybe"), 400, "INVALID_PARAMETER_VALUE")
    renamed = {"Operations": [{"op": "replace", "path": "displayName", "value": "Eve"}]}
    assert "active" in assert_error(
        http.patch(f"{SCIM}/Users/{pid}", json=renamed), 400, "INVALID_PARAMETER_VALUE"
    )
    assert_error(http.patch(f"{SCIM}/Users/{pid}", json={"Operations": []}), 400, "INVALID_PARAMETER_VALUE")
    assert_error(
        _set_active(http, "Users", "no-such-user@example.com", False), 404, "RESOURCE_DOES_NOT_EXIST"
    )
    assert http.get(f"{SCIM}/Users/{pid}").json()["active"] is True
