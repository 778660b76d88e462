"""``modelport users|groups|service-principals ...`` against the scripted fake server."""

from __future__ import annotations

import json
from typing import Any

import pytest
from typer.testing import CliRunner

from modelport.client.cli.main import app

runner = CliRunner()
SCIM = "/api/2.0/preview/scim/v2"

ALICE = {
    "id": "7",
    "userName": "alice@example.com",
    "displayName": "alice@example.com",
    "groups": [{"display": "users", "value": "2"}, {"display": "data-scientists", "value": "9"}],
}
BOB = {"id": "8", "userName": "bob", "displayName": "bob", "groups": []}
SCIENTISTS = {
    "id": "9",
    "displayName": "data-scientists",
    "members": [{"display": "alice@example.com", "value": "7"}, {"display": "ci-bot", "value": "11"}],
}


def invoke(server: Any, *args: str) -> Any:
    return runner.invoke(app, list(args), obj=server.factory())


def listing(*resources: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    return 200, {"totalResults": len(resources), "Resources": list(resources)}


def test_users_list_prints_names_ids_and_groups(server: Any) -> None:
    server.on("GET", f"{SCIM}/Users", listing(ALICE, BOB))

    result = invoke(server, "users", "list")

    assert result.exit_code == 0, result.output
    assert result.stdout == (
        "NAME               ID  GROUPS\n"
        "alice@example.com  7   users, data-scientists\n"
        "bob                8   -\n"
    )


def test_groups_list_json_prints_the_server_resources(server: Any) -> None:
    server.on("GET", f"{SCIM}/Groups", listing(SCIENTISTS))

    result = invoke(server, "groups", "list", "-o", "json")

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == [SCIENTISTS]


def test_the_root_output_option_reaches_the_principal_commands(server: Any) -> None:
    server.on("GET", f"{SCIM}/Groups", listing(SCIENTISTS))

    result = invoke(server, "-o", "json", "groups", "list")

    assert json.loads(result.stdout) == [SCIENTISTS]


def test_users_create_sends_the_admin_flag_and_prints_the_new_row(server: Any) -> None:
    created = {**BOB, "groups": [{"display": "admins", "value": "1"}, {"display": "users", "value": "2"}]}
    server.on("POST", f"{SCIM}/Users", (201, created))

    result = invoke(server, "users", "create", "bob", "--admin")

    assert result.exit_code == 0, result.output
    assert server.body() == {"userName": "bob", "modelport_admin": True}
    assert result.stdout == "NAME  ID  GROUPS\nbob   8   admins, users\n"


def test_service_principals_create_takes_the_application_id_and_a_display_name(server: Any) -> None:
    created = {"id": "11", "applicationId": "ci-bot", "displayName": "CI bot", "groups": []}
    server.on("POST", f"{SCIM}/ServicePrincipals", (201, created))

    result = invoke(server, "service-principals", "create", "ci-bot", "--display-name", "CI bot")

    assert result.exit_code == 0, result.output
    assert server.body() == {"applicationId": "ci-bot", "displayName": "CI bot"}
    assert result.stdout == "NAME    ID  GROUPS\nci-bot  11  -\n"


def test_groups_create_sends_every_member(server: Any) -> None:
    server.on("POST", f"{SCIM}/Groups", (201, SCIENTISTS))

    result = invoke(
        server, "groups", "create", "data-scientists", "--member", "alice@example.com", "--member", "ci-bot"
    )

    assert result.exit_code == 0, result.output
    assert server.body() == {
        "displayName": "data-scientists",
        "members": [{"value": "alice@example.com"}, {"value": "ci-bot"}],
    }
    assert result.stdout == "NAME             ID  MEMBERS\ndata-scientists  9   alice@example.com, ci-bot\n"


@pytest.mark.parametrize(
    ("group", "resource", "body", "noun"),
    [
        ("users", "Users", {"id": "7", "userName": "alice"}, "user"),
        (
            "service-principals",
            "ServicePrincipals",
            {"id": "7", "applicationId": "alice"},
            "service principal",
        ),
        ("groups", "Groups", {"id": "7", "displayName": "alice"}, "group"),
    ],
)
def test_delete_looks_the_id_up_by_name(
    server: Any, group: str, resource: str, body: dict[str, Any], noun: str
) -> None:
    other = {"id": "3", "userName": "x", "applicationId": "x", "displayName": "x"}
    server.on("GET", f"{SCIM}/{resource}", listing(other, body))
    server.on("DELETE", f"{SCIM}/{resource}/7", (204, ""))

    result = invoke(server, group, "delete", "alice")

    assert (result.exit_code, result.stdout) == (0, f"Deleted {noun} alice.\n")
    assert server.calls() == [("GET", f"{SCIM}/{resource}"), ("DELETE", f"{SCIM}/{resource}/7")]


def test_delete_of_an_unknown_name_is_an_error_and_deletes_nothing(server: Any) -> None:
    server.on("GET", f"{SCIM}/Users", listing(ALICE))

    result = invoke(server, "users", "delete", "carol")

    assert result.exit_code == 1
    assert result.stderr == "Error: RESOURCE_DOES_NOT_EXIST: No user named 'carol' exists.\n"
    assert server.calls() == [("GET", f"{SCIM}/Users")]


def test_delete_json_prints_the_empty_answer(server: Any) -> None:
    server.on("GET", f"{SCIM}/Users", listing(BOB))
    server.on("DELETE", f"{SCIM}/Users/8", (204, ""))

    result = invoke(server, "users", "delete", "bob", "-o", "json")

    assert (result.exit_code, result.stdout) == (0, "{}\n")


def test_add_member_patches_the_group_found_by_name(server: Any) -> None:
    changed = {**SCIENTISTS, "members": [*SCIENTISTS["members"], {"display": "bob", "value": "8"}]}
    server.on("GET", f"{SCIM}/Groups", listing({"id": "1", "displayName": "admins"}, SCIENTISTS))
    server.on("PATCH", f"{SCIM}/Groups/9", (200, changed))

    result = invoke(server, "groups", "add-member", "data-scientists", "bob")

    assert result.exit_code == 0, result.output
    assert server.body()["Operations"] == [{"op": "add", "path": "members", "value": [{"value": "bob"}]}]
    assert result.stdout == (
        "NAME             ID  MEMBERS\ndata-scientists  9   alice@example.com, ci-bot, bob\n"
    )


def test_remove_member_sends_the_member_id(server: Any) -> None:
    changed = {**SCIENTISTS, "members": [{"display": "alice@example.com", "value": "7"}]}
    server.on("GET", f"{SCIM}/Groups", listing(SCIENTISTS))
    server.on("PATCH", f"{SCIM}/Groups/9", (200, changed))

    result = invoke(server, "groups", "remove-member", "data-scientists", "ci-bot", "-o", "json")

    assert result.exit_code == 0, result.output
    assert server.body()["Operations"] == [{"op": "remove", "path": 'members[value eq "11"]'}]
    assert json.loads(result.stdout) == changed


def test_remove_member_that_is_not_a_member_changes_nothing(server: Any) -> None:
    server.on("GET", f"{SCIM}/Groups", listing(SCIENTISTS))

    result = invoke(server, "groups", "remove-member", "data-scientists", "bob")

    assert result.exit_code == 1
    assert result.stderr == (
        "Error: RESOURCE_DOES_NOT_EXIST: 'bob' is not a member of group 'data-scientists'.\n"
    )
    assert [method for method, _ in server.calls()] == ["GET"]


def test_changing_an_unknown_group_is_an_error(server: Any) -> None:
    server.on("GET", f"{SCIM}/Groups", listing(SCIENTISTS))

    result = invoke(server, "groups", "add-member", "nope", "bob")

    assert result.exit_code == 1
    assert result.stderr == "Error: RESOURCE_DOES_NOT_EXIST: No group named 'nope' exists.\n"


def test_a_refusal_for_non_admins_is_reported_with_its_code(server: Any) -> None:
    body = {
        "error_code": "PERMISSION_DENIED",
        "message": "Only members of the 'admins' group may create a user; 'bob' is not one.",
    }
    server.on("POST", f"{SCIM}/Users", (403, body))

    result = invoke(server, "users", "create", "carol")

    assert result.exit_code == 1
    assert result.stderr == f"Error: PERMISSION_DENIED: {body['message']}\n"
