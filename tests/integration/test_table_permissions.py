"""Table privileges on a real server, on SQLite and on PostgreSQL: SELECT < MODIFY < MANAGE on
inference and system tables for users, groups and service principals, the two grant routes
(Databricks' permissions API and Unity Catalog's grants API), the SQL route open to every user
over what they may read, and the row filter on the usage table.

One server per store for the whole module: the endpoints and principals are made once
(``world``); each test restores the grants it changed.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fakes.openai_server import API_KEY, FakeOpenAI
from tests.serverproc import ADMIN_TOKEN, ServerProcess
from tests.support.endpoints import wait_settled
from tests.support.principals import create_user, obo_token

SCIM = "/api/2.0/preview/scim/v2"
PERMS = "/api/2.0/permissions/tables"
GRANTS = "/api/2.1/unity-catalog/permissions/table"
USAGE = "system.serving.endpoint_usage"
CHAT = "main.tp.chat_payload"  # the admin's endpoint's inference table
BOBS = "main.tp.bob_payload"  # bob's endpoint's inference table
HELLO = {"messages": [{"role": "user", "content": "hi"}]}
PG_ADMIN_URL = os.environ.get("MODELPORT_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


@dataclass
class World:
    server: ServerProcess
    admin: httpx.Client
    users: dict[str, httpx.Client]  # alice, bob, carol (in group analysts), sp (service principal)
    sp_name: str
    bob_endpoint_id: str


def _pg_database() -> Iterator[str]:
    import psycopg

    try:
        admin = psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=3)
    except Exception as exc:  # no server here
        if os.environ.get("CI"):
            raise
        pytest.skip(f"PostgreSQL not reachable at {PG_ADMIN_URL}: {exc}")
    name = f"modelport_test_{uuid.uuid4().hex[:12]}"
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest) -> Iterator[str | None]:
    if request.param == "sqlite":
        yield None
    else:
        yield from _pg_database()


def _endpoint(client: httpx.Client, fake: FakeOpenAI, name: str, prefix: str) -> str:
    config = {"custom_provider_url": f"{fake.url}/v1", "bearer_token_auth": {"token_plaintext": API_KEY}}
    body = {
        "name": name,
        "config": {
            "served_entities": [
                {
                    "name": "gpt",
                    "external_model": {
                        "provider": "custom",
                        "name": "llama-3",
                        "task": "llm/v1/chat",
                        "custom_provider_config": config,
                    },
                }
            ]
        },
        "ai_gateway": {
            "usage_tracking_config": {"enabled": True},
            "inference_table_config": {
                "catalog_name": "main",
                "schema_name": "tp",
                "table_name_prefix": prefix,
                "enabled": True,
            },
        },
    }
    r = client.post("/api/2.0/serving-endpoints", json=body)
    assert r.status_code == 200, r.text
    wait_settled(client, name, timeout=60)
    return str(r.json()["id"])


def _client(server: ServerProcess, token: str) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=60)


@pytest.fixture(scope="module")
def world(store: str | None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    fake = FakeOpenAI().start()
    # Nothing here needs the registry: the control plane being up (/health) is enough.
    server = ServerProcess(tmp_path_factory.mktemp("table-acl"), store=store).start_until("/health")
    clients: list[httpx.Client] = []
    try:
        admin = _client(server, ADMIN_TOKEN)
        clients.append(admin)
        users: dict[str, httpx.Client] = {}
        for name in ("alice", "bob", "carol"):
            create_user(admin, name)
            users[name] = _client(server, obo_token(admin, user_name=name)["token_value"])
        r = admin.post(f"{SCIM}/ServicePrincipals", json={"displayName": "tp-robot"})
        assert r.status_code == 201, r.text
        sp_name = str(r.json()["applicationId"])
        users["sp"] = _client(server, obo_token(admin, application_id=sp_name)["token_value"])
        carol_id = next(
            u["id"] for u in admin.get(f"{SCIM}/Users").json()["Resources"] if u["userName"] == "carol"
        )
        r = admin.post(f"{SCIM}/Groups", json={"displayName": "analysts", "members": [{"value": carol_id}]})
        assert r.status_code == 201, r.text
        clients += users.values()
        chat_id = _endpoint(admin, fake, "tp-chat", "chat")
        bob_id = _endpoint(users["bob"], fake, "tp-bob", "bob")
        # alice, bob and the service principal may query the admin's endpoint.
        grants = [{"user_name": n, "permission_level": "CAN_QUERY"} for n in ("alice", "bob")]
        grants.append({"service_principal_name": sp_name, "permission_level": "CAN_QUERY"})
        r = admin.patch(
            f"/api/2.0/permissions/serving-endpoints/{chat_id}", json={"access_control_list": grants}
        )
        assert r.status_code == 200, r.text
        for who, times in (("alice", 2), ("bob", 3), ("sp", 1)):
            for _ in range(times):
                r = users[who].post("/serving-endpoints/tp-chat/invocations", json=HELLO)
                assert r.status_code == 200, r.text
        r = users["bob"].post("/serving-endpoints/tp-bob/invocations", json=HELLO)
        assert r.status_code == 200, r.text
        yield World(server, admin, users, sp_name, bob_id)
    finally:
        for c in clients:
            c.close()
        # A server stopped while it still loads the registry may take more than stop()'s 30 s.
        server.wait_ready("/ready", timeout=180)
        server.stop()
        fake.stop()


def sql(client: httpx.Client, text: str) -> httpx.Response:
    return client.post("/api/2.0/modelport/tables/query", json={"sql": text})


def rows(client: httpx.Client, text: str) -> list[list[Any]]:
    r = sql(client, text)
    assert r.status_code == 200, r.text
    return list(r.json()["rows"])


def error(r: httpx.Response, status: int, code: str, *fragments: str) -> str:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["error_code"] == code, body
    for fragment in fragments:
        assert fragment in body["message"], body
    return str(body["message"])


def change(client: httpx.Client, table: str, principal: str, **what: list[str]) -> httpx.Response:
    return client.patch(f"{GRANTS}/{table}", json={"changes": [{"principal": principal, **what}]})


@pytest.fixture
def clean(world: World) -> Iterator[World]:
    """Every direct grant a test made on the module's tables is taken back afterwards."""
    yield world
    for table in (CHAT, BOBS, USAGE, "system.access.audit"):
        r = world.admin.put(f"{PERMS}/{table}", json={"access_control_list": []})
        assert r.status_code == 200, r.text


# ---- the SQL route -------------------------------------------------------------------------------
def test_a_user_without_a_grant_is_refused_an_inference_table(clean: World) -> None:
    alice = clean.users["alice"]
    message = error(sql(alice, f"SELECT count(*) FROM {CHAT}"), 403, "PERMISSION_DENIED", "'alice'", CHAT)
    # A table that does not exist gets the same answer: nothing tells the two apart.
    missing = error(sql(alice, "SELECT * FROM main.tp.nothing_payload"), 403, "PERMISSION_DENIED")
    assert missing == message.replace(CHAT, "main.tp.nothing_payload")
    # Quoting the name differently reaches nothing either.
    error(sql(alice, 'SELECT * FROM "main"."tp"."chat_payload"'), 403, "PERMISSION_DENIED", CHAT)
    error(sql(alice, f'SELECT * FROM "{CHAT}"'), 403, "PERMISSION_DENIED", CHAT)


def test_a_user_reads_only_their_own_usage_rows(clean: World) -> None:
    alice, admin = clean.users["alice"], clean.admin
    assert rows(alice, f"SELECT requester, count(*) FROM {USAGE} GROUP BY 1") == [["alice", 2]]
    # However the SQL asks, the other rows are not there.
    assert rows(alice, f"SELECT count(*) FROM {USAGE} WHERE requester <> 'alice' OR true") == [[2]]
    everyone = rows(admin, f"SELECT requester, count(*) FROM {USAGE} GROUP BY 1 ORDER BY 1")
    assert everyone == sorted([["alice", 2], ["bob", 4], [clean.sp_name, 1]])
    # The service principal reads its own row, by its application id.
    assert rows(clean.users["sp"], f"SELECT requester FROM {USAGE}") == [[clean.sp_name]]
    # The usage totals route applies the same filter.
    r = alice.get("/api/2.0/modelport/usage", params={"by": "user"})
    assert r.status_code == 200, r.text
    assert [(row["user"], row["requests"]) for row in r.json()["rows"]] == [("alice", 2)]


def test_select_on_the_usage_table_reads_every_row(clean: World) -> None:
    alice = clean.users["alice"]
    assert change(clean.admin, USAGE, "alice", add=["SELECT"]).status_code == 200
    assert rows(alice, f"SELECT count(DISTINCT requester) FROM {USAGE}") == [[3]]
    r = alice.get("/api/2.0/modelport/usage", params={"by": "user"})
    assert len(r.json()["rows"]) == 3
    assert change(clean.admin, USAGE, "alice", remove=["SELECT"]).status_code == 200
    assert rows(alice, f"SELECT count(DISTINCT requester) FROM {USAGE}") == [[1]]


def test_a_select_grant_lets_a_user_read_and_revoking_it_stops_that(clean: World) -> None:
    alice = clean.users["alice"]
    r = change(clean.admin, CHAT, "alice", add=["SELECT"])
    assert r.json() == {"privilege_assignments": [{"principal": "alice", "privileges": ["SELECT"]}]}
    assert rows(alice, f"SELECT requester, count(*) FROM {CHAT} GROUP BY 1 ORDER BY 1") == sorted(
        [["alice", 2], ["bob", 3], [clean.sp_name, 1]]
    )
    # Other tables stay out of reach, in the same query too.
    error(sql(alice, f"SELECT * FROM {CHAT} JOIN {BOBS} USING (date)"), 403, "PERMISSION_DENIED", BOBS)
    assert change(clean.admin, CHAT, "alice", remove=["SELECT"]).status_code == 200
    error(sql(alice, f"SELECT count(*) FROM {CHAT}"), 403, "PERMISSION_DENIED", CHAT)


def test_admins_read_every_table(clean: World) -> None:
    got = rows(clean.admin, f"SELECT (SELECT count(*) FROM {CHAT}), (SELECT count(*) FROM {BOBS})")
    assert got == [[6, 1]]
    # An unknown table is DuckDB's own 400 for an admin (nothing to hide).
    error(sql(clean.admin, "SELECT * FROM main.tp.nothing_payload"), 400, "INVALID_PARAMETER_VALUE")


# ---- privileges and who may grant ------------------------------------------------------------------
def test_endpoint_managers_manage_their_inference_table(clean: World) -> None:
    bob, alice = clean.users["bob"], clean.users["alice"]
    assert rows(bob, f"SELECT requester FROM {BOBS}") == [["bob"]]
    error(sql(bob, f"SELECT * FROM {CHAT}"), 403, "PERMISSION_DENIED", CHAT)  # bob only queries tp-chat
    acl = bob.get(f"{PERMS}/{BOBS}").json()
    assert acl["object_id"] == f"/tables/{BOBS}" and acl["object_type"] == "table"
    entries = {
        e.get("user_name") or e.get("group_name"): e["all_permissions"] for e in acl["access_control_list"]
    }
    assert entries["bob"] == [
        {
            "permission_level": "MANAGE",
            "inherited": True,
            "inherited_from_object": [f"/serving-endpoints/{clean.bob_endpoint_id}"],
        }
    ]
    assert entries["admins"][0]["inherited_from_object"] == ["/tables/"]
    # bob grants alice SELECT on his table.
    r = bob.patch(
        f"{PERMS}/{BOBS}",
        json={"access_control_list": [{"user_name": "alice", "permission_level": "SELECT"}]},
    )
    assert r.status_code == 200, r.text
    assert rows(alice, f"SELECT count(*) FROM {BOBS}") == [[1]]
    # bob cannot grant on the admin's table.
    error(change(bob, CHAT, "bob", add=["SELECT"]), 403, "PERMISSION_DENIED", "MANAGE", CHAT)


def test_modify_reads_but_does_not_grant_and_manage_grants(clean: World) -> None:
    alice, carol = clean.users["alice"], clean.users["carol"]
    assert change(clean.admin, CHAT, "alice", add=["MODIFY"]).json()["privilege_assignments"] == [
        {"principal": "alice", "privileges": ["SELECT", "MODIFY"]}
    ]
    assert rows(alice, f"SELECT count(*) FROM {CHAT}") == [[6]]
    assert alice.get(f"{PERMS}/{CHAT}").status_code == 200  # SELECT may see the grants
    error(change(alice, CHAT, "carol", add=["SELECT"]), 403, "PERMISSION_DENIED", "holds MODIFY")
    error(alice.put(f"{PERMS}/{CHAT}", json={"access_control_list": []}), 403, "PERMISSION_DENIED")
    # MANAGE: alice may grant now, and take privileges away.
    assert change(clean.admin, CHAT, "alice", add=["MANAGE"]).status_code == 200
    assert change(alice, CHAT, "carol", add=["SELECT"]).status_code == 200
    assert rows(carol, f"SELECT count(*) FROM {CHAT}") == [[6]]
    # Removing MODIFY from MANAGE leaves SELECT (ordered: what is below stays).
    r = change(alice, CHAT, "alice", remove=["MODIFY"])
    assert {a["principal"]: a["privileges"] for a in r.json()["privilege_assignments"]} == {
        "alice": ["SELECT"],
        "carol": ["SELECT"],
    }
    error(change(alice, CHAT, "carol", remove=["SELECT"]), 403, "PERMISSION_DENIED")


def test_groups_and_service_principals_get_grants(clean: World) -> None:
    carol, sp = clean.users["carol"], clean.users["sp"]
    error(sql(carol, f"SELECT count(*) FROM {CHAT}"), 403, "PERMISSION_DENIED")
    r = clean.admin.patch(
        f"{PERMS}/{CHAT}",
        json={
            "access_control_list": [
                {"group_name": "analysts", "permission_level": "SELECT"},
                {"service_principal_name": clean.sp_name, "permission_level": "SELECT"},
            ]
        },
    )
    assert r.status_code == 200, r.text
    listed = {
        e.get("group_name") or e.get("service_principal_name"): e["all_permissions"]
        for e in r.json()["access_control_list"]
    }
    assert listed["analysts"] == [{"permission_level": "SELECT", "inherited": False}]
    assert listed[clean.sp_name] == [{"permission_level": "SELECT", "inherited": False}]
    assert rows(carol, f"SELECT count(*) FROM {CHAT}") == [[6]]
    assert rows(sp, f"SELECT count(*) FROM {CHAT}") == [[6]]
    # The "users" group reaches everyone.
    assert change(clean.admin, BOBS, "users", add=["SELECT"]).status_code == 200
    assert rows(clean.users["alice"], f"SELECT count(*) FROM {BOBS}") == [[1]]


def test_system_tables_are_admin_only_unless_granted(clean: World) -> None:
    alice = clean.users["alice"]
    for table in (USAGE, "system.access.audit"):
        assert clean.admin.get(f"{PERMS}/{table}").status_code == 200
        error(alice.get(f"{PERMS}/{table}"), 403, "PERMISSION_DENIED", table)
        error(alice.get(f"{GRANTS}/{table}"), 403, "PERMISSION_DENIED", table)
    assert change(clean.admin, USAGE, "alice", add=["SELECT"]).status_code == 200
    assert alice.get(f"{PERMS}/{USAGE}").status_code == 200


# ---- the two grant shapes ------------------------------------------------------------------------
def test_the_unity_catalog_shape(clean: World) -> None:
    admin = clean.admin
    assert admin.get(f"{GRANTS}/{CHAT}").json() == {"privilege_assignments": []}
    r = admin.patch(
        f"/api/2.1/unity-catalog/permissions/TABLE/{CHAT.upper()}",
        json={
            "changes": [
                {"principal": "alice", "add": ["SELECT", "MODIFY"]},
                {"principal": "analysts", "add": ["ALL_PRIVILEGES"]},
            ]
        },
    )
    assert r.status_code == 200, r.text
    assert r.json()["privilege_assignments"] == [
        {"principal": "alice", "privileges": ["SELECT", "MODIFY"]},
        {"principal": "analysts", "privileges": ["SELECT", "MODIFY", "MANAGE"]},
    ]
    one = admin.get(f"{GRANTS}/{CHAT}", params={"principal": "alice"}).json()
    assert one == {"privilege_assignments": [{"principal": "alice", "privileges": ["SELECT", "MODIFY"]}]}
    r = admin.patch(
        f"{GRANTS}/{CHAT}",
        json={
            "changes": [{"principal": "analysts", "remove": ["SELECT"]}],
            "omit_permissions_in_response": True,
        },
    )
    assert r.status_code == 200 and r.json() == {}
    # The permissions shape shows the same grants, and PUT replaces them all.
    acl = admin.get(f"{PERMS}/{CHAT}").json()["access_control_list"]
    # alice's grant; the admin user created tp-chat, so manages its table; the admins group.
    assert [e.get("user_name") or e.get("group_name") for e in acl] == ["alice", "admin", "admins"]
    assert acl[1]["all_permissions"][0]["inherited_from_object"][0].startswith("/serving-endpoints/")
    r = admin.put(
        f"{PERMS}/{CHAT}", json={"access_control_list": [{"user_name": "bob", "permission_level": "SELECT"}]}
    )
    assert r.status_code == 200, r.text
    assert admin.get(f"{GRANTS}/{CHAT}").json() == {
        "privilege_assignments": [{"principal": "bob", "privileges": ["SELECT"]}]
    }
    levels = admin.get(f"{PERMS}/{CHAT}/permissionLevels").json()["permission_levels"]
    assert [lvl["permission_level"] for lvl in levels] == ["MANAGE", "MODIFY", "SELECT"]


def test_the_databricks_sdk_grants_api(clean: World) -> None:
    from databricks.sdk import WorkspaceClient
    from databricks.sdk.errors import NotFound, PermissionDenied
    from databricks.sdk.service.catalog import PermissionsChange, Privilege

    w = WorkspaceClient(host=clean.server.url, token=ADMIN_TOKEN)
    change = PermissionsChange(principal="alice", add=[Privilege.MODIFY])
    updated = w.grants.update("TABLE", CHAT, changes=[change])
    assert [(a.principal, a.privileges) for a in updated.privilege_assignments or []] == [
        ("alice", [Privilege.SELECT, Privilege.MODIFY])
    ]
    got = w.grants.get("table", CHAT, principal="alice")
    assert [a.principal for a in got.privilege_assignments or []] == ["alice"]
    with pytest.raises(NotFound):
        w.grants.get("table", "main.tp.nothing_payload")
    carol = WorkspaceClient(host=clean.server.url, token=clean.users["carol"].headers["Authorization"][7:])
    with pytest.raises(PermissionDenied):
        carol.grants.update(
            "table", CHAT, changes=[PermissionsChange(principal="carol", add=[Privilege.SELECT])]
        )


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code", "fragment"),
    [
        ("GET", f"{PERMS}/main.tp", None, 400, "INVALID_PARAMETER_VALUE", "three parts"),
        ("GET", f"{PERMS}/main.tp.bad-name", None, 400, "INVALID_PARAMETER_VALUE", "table_name"),
        ("GET", f"{PERMS}/main.tp.nothing_payload", None, 404, "RESOURCE_DOES_NOT_EXIST", "nothing_payload"),
        ("GET", f"{GRANTS}/main.tp.nothing_payload", None, 404, "RESOURCE_DOES_NOT_EXIST", "nothing_payload"),
        (
            "GET",
            f"/api/2.1/unity-catalog/permissions/schema/{CHAT}",
            None,
            400,
            "INVALID_PARAMETER_VALUE",
            "schema",
        ),
        ("PATCH", f"{PERMS}/{CHAT}", {"access_control_list": {}}, 400, "INVALID_PARAMETER_VALUE", "list"),
        (
            "PATCH",
            f"{PERMS}/{CHAT}",
            {"access_control_list": ["x"]},
            400,
            "INVALID_PARAMETER_VALUE",
            "object",
        ),
        (
            "PATCH",
            f"{PERMS}/{CHAT}",
            {
                "access_control_list": [
                    {"user_name": "alice", "group_name": "users", "permission_level": "SELECT"}
                ]
            },
            400,
            "INVALID_PARAMETER_VALUE",
            "exactly one",
        ),
        (
            "PUT",
            f"{PERMS}/{CHAT}",
            {"access_control_list": [{"user_name": "alice", "permission_level": "CAN_QUERY"}]},
            400,
            "INVALID_PARAMETER_VALUE",
            "SELECT, MODIFY, MANAGE",
        ),
        (
            "PUT",
            f"{PERMS}/{CHAT}",
            {"access_control_list": [{"user_name": "alice"}]},
            400,
            "INVALID_PARAMETER_VALUE",
            "permission_level",
        ),
        (
            "PUT",
            f"{PERMS}/{CHAT}",
            {"access_control_list": [{"group_name": "alice", "permission_level": "SELECT"}]},
            400,
            "INVALID_PARAMETER_VALUE",
            "no group named 'alice'",
        ),
        ("PATCH", f"{GRANTS}/{CHAT}", {"changes": "alice"}, 400, "INVALID_PARAMETER_VALUE", "changes"),
        (
            "PATCH",
            f"{GRANTS}/{CHAT}",
            {"changes": [{"add": ["SELECT"]}]},
            400,
            "INVALID_PARAMETER_VALUE",
            "principal",
        ),
        (
            "PATCH",
            f"{GRANTS}/{CHAT}",
            {"changes": [{"principal": "nobody-here", "add": ["SELECT"]}]},
            400,
            "INVALID_PARAMETER_VALUE",
            "nobody-here",
        ),
        (
            "PATCH",
            f"{GRANTS}/{CHAT}",
            {"changes": [{"principal": "alice", "add": ["READ"]}]},
            400,
            "INVALID_PARAMETER_VALUE",
            "'READ' is not a table privilege",
        ),
        (
            "PATCH",
            f"{GRANTS}/{CHAT}",
            {"changes": [{"principal": "alice", "remove": "SELECT"}]},
            400,
            "INVALID_PARAMETER_VALUE",
            "remove",
        ),
        (
            "PATCH",
            f"{GRANTS}/{CHAT}",
            {"omit_permissions_in_response": "yes"},
            400,
            "INVALID_PARAMETER_VALUE",
            "omit_permissions_in_response",
        ),
    ],
)
def test_bad_inputs_are_400s_with_an_error_code(
    clean: World, method: str, path: str, body: Any, status: int, code: str, fragment: str
) -> None:
    r = clean.admin.request(method, path, json=body)
    error(r, status, code, fragment)
    assert clean.admin.get(f"{GRANTS}/{CHAT}").json() == {"privilege_assignments": []}


def test_a_missing_table_and_an_unreadable_one_get_the_same_answer(clean: World) -> None:
    """A user without a grant is not told which tables exist: 403 for both (admins get the 404)."""
    carol = clean.users["carol"]
    for path in (PERMS, GRANTS):
        exists = carol.get(f"{path}/{CHAT}")
        missing = carol.get(f"{path}/main.tp.nothing_payload")
        error(exists, 403, "PERMISSION_DENIED", CHAT)
        error(missing, 403, "PERMISSION_DENIED", "main.tp.nothing_payload")
        assert missing.json()["message"] == exists.json()["message"].replace(CHAT, "main.tp.nothing_payload")


def test_bad_bodies_and_tokens(clean: World) -> None:
    r = clean.admin.patch(
        f"{GRANTS}/{CHAT}", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 400 and r.json()["error_code"], r.text
    r = httpx.get(f"{clean.server.url}{PERMS}/{CHAT}", timeout=30)
    error(r, 401, "UNAUTHENTICATED")
    error(sql(clean.users["alice"], ""), 400, "INVALID_PARAMETER_VALUE", "sql")


# ---- the CLI ------------------------------------------------------------------------------------
def test_cli_grants_revokes_and_shows(clean: World, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from modelport.client.cli.main import app

    runner = CliRunner()
    env = {"MODELPORT_HOST": clean.server.url, "MODELPORT_TOKEN": ADMIN_TOKEN}

    def run(*args: str) -> str:
        result = runner.invoke(app, list(args), env=env)
        assert result.exit_code == 0, result.output
        return result.output

    assert run("tables", "grant", CHAT, "alice", "modify") == f"Granted MODIFY on table {CHAT} to alice.\n"
    shown = run("tables", "permissions", CHAT)
    assert "alice user MODIFY" in " ".join(shown.split())
    assert "admins group MANAGE (from /tables/)" in " ".join(shown.split())
    assert run("tables", "revoke", CHAT, "alice", "MODIFY") == f"Revoked MODIFY on table {CHAT} from alice.\n"
    assert clean.admin.get(f"{GRANTS}/{CHAT}").json()["privilege_assignments"] == [
        {"principal": "alice", "privileges": ["SELECT"]}
    ]
    run("tables", "revoke", CHAT, "alice")
    assert clean.admin.get(f"{GRANTS}/{CHAT}").json()["privilege_assignments"] == []
    bad = runner.invoke(app, ["tables", "grant", CHAT, "alice", "READ"], env=env)
    assert bad.exit_code == 2 and "READ" in bad.output
