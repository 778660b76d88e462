"""``modelport users|groups|service-principals ...``: principals, over the SCIM API.

The three command groups share ``list`` and ``delete``, built from one :class:`Kind` each;
``create`` differs (users may be made admins, service principals get a display name, groups
their members) and groups also have ``add-member`` and ``remove-member``. Principals are
named on the command line by name (user name, application id, group name); the commands
look the SCIM id up in the list, as the Databricks API wants ids. Creating, deleting and
changing members are for admins; any user may list.
"""

# No ``from __future__ import annotations`` here: the shared commands are closures whose
# parameter annotations name a local (the NAME argument, with the kind's noun in its help),
# and typer can only resolve annotations that are objects, not strings.

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

import typer

from modelport.client.cli.options import HostOption, OutputFormat, OutputOption, TokenOption, open_client
from modelport.client.cli.output import EMPTY, render_json, render_table
from modelport.client.sdk import ModelportClient
from modelport.errors import ResourceDoesNotExist

__all__ = ["Kind", "groups", "principals_table", "service_principals", "users"]


def _names(entries: Any) -> str:
    return ", ".join(str(e.get("display") or e.get("value")) for e in entries or []) or EMPTY


@dataclass(frozen=True)
class Kind:
    """One kind of principal: its words, the SCIM field that names it and its SDK calls."""

    noun: str  #: "user", "group", "service principal"
    name_field: str  #: the SCIM attribute holding the name the CLI takes
    list_all: Callable[[ModelportClient], list[dict[str, Any]]]
    delete_by_id: Callable[[ModelportClient, str], dict[str, Any]]
    #: The third column: a user's or service principal's groups, a group's members.
    related: str = "groups"

    def name_of(self, resource: dict[str, Any]) -> str:
        return str(resource.get(self.name_field) or EMPTY)

    def find(self, client: ModelportClient, name: str) -> dict[str, Any]:
        """The resource named ``name``; :class:`ResourceDoesNotExist` when there is none."""
        for resource in self.list_all(client):
            if resource.get(self.name_field) == name:
                return resource
        raise ResourceDoesNotExist(f"No {self.noun} named '{name}' exists.")


USER = Kind("user", "userName", ModelportClient.list_users, ModelportClient.delete_user)
SERVICE_PRINCIPAL = Kind(
    "service principal",
    "applicationId",
    ModelportClient.list_service_principals,
    ModelportClient.delete_service_principal,
)
GROUP = Kind("group", "displayName", ModelportClient.list_groups, ModelportClient.delete_group, "members")


def principals_table(kind: Kind, resources: list[dict[str, Any]]) -> str:
    """NAME, ID and GROUPS (for a group: MEMBERS), one line per principal."""
    rows = [[kind.name_of(r), str(r.get("id", EMPTY)), _names(r.get(kind.related))] for r in resources]
    return render_table(["NAME", "ID", kind.related.upper()], rows)


def _print(kind: Kind, output: OutputFormat, result: Any, resources: list[dict[str, Any]]) -> None:
    typer.echo(render_json(result) if output is OutputFormat.json else principals_table(kind, resources))


def _group(help_text: str) -> typer.Typer:
    return typer.Typer(help=help_text, no_args_is_help=True, rich_markup_mode=None)


def _add_list_and_delete(app: typer.Typer, kind: Kind) -> None:
    """Add the ``list`` and ``delete`` commands every kind has to its command group."""
    name_argument = Annotated[
        str, typer.Argument(metavar="NAME", help=f"Name of the {kind.noun}.", show_default=False)
    ]

    def list_command(
        ctx: typer.Context,
        host: HostOption = None,
        token: TokenOption = None,
        output: OutputOption = OutputFormat.table,
    ) -> None:
        with open_client(ctx, host, token) as client:
            resources = kind.list_all(client)
        _print(kind, output, resources, resources)

    def delete_command(
        ctx: typer.Context,
        name: name_argument,
        host: HostOption = None,
        token: TokenOption = None,
        output: OutputOption = OutputFormat.table,
    ) -> None:
        with open_client(ctx, host, token) as client:
            result = kind.delete_by_id(client, str(kind.find(client, name)["id"]))
        typer.echo(render_json(result) if output is OutputFormat.json else f"Deleted {kind.noun} {name}.")

    app.command("list", help=f"List the {kind.noun}s with their ids and {kind.related}.")(list_command)
    app.command("delete", help=f"Delete a {kind.noun} (admins only).")(delete_command)


users = _group("Create, list and delete users.")
service_principals = _group("Create, list and delete service principals (for programs).")
groups = _group("Create, list and delete groups; change their members.")


@users.command("create")
def create_user(
    ctx: typer.Context,
    name: Annotated[
        str, typer.Argument(metavar="NAME", help="User name, usually an e-mail address.", show_default=False)
    ],
    admin: Annotated[bool, typer.Option("--admin", help="Make the user a member of 'admins'.")] = False,
    host: HostOption = None,
    token: TokenOption = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Create a user (admins only).

    Give them a token with 'modelport tokens create --for-user NAME'.
    """
    with open_client(ctx, host, token) as client:
        created = client.create_user(name, admin=admin)
    _print(USER, output, created, [created])


_add_list_and_delete(users, USER)


@service_principals.command("create")
def create_service_principal(
    ctx: typer.Context,
    name: Annotated[
        str,
        typer.Argument(
            metavar="NAME",
            help="Application id: the name tokens and grants use (e.g. ci-bot).",
            show_default=False,
        ),
    ],
    display_name: Annotated[
        str | None,
        typer.Option("--display-name", help="Name shown to people; defaults to NAME.", show_default=False),
    ] = None,
    host: HostOption = None,
    token: TokenOption = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Create a service principal (admins only).

    Give it a token with 'modelport tokens create --for-service-principal NAME'.
    """
    with open_client(ctx, host, token) as client:
        created = client.create_service_principal(name, display_name)
    _print(SERVICE_PRINCIPAL, output, created, [created])


_add_list_and_delete(service_principals, SERVICE_PRINCIPAL)


PrincipalArgument = Annotated[
    str,
    typer.Argument(
        metavar="PRINCIPAL",
        help="User name, service principal application id or group name.",
        show_default=False,
    ),
]
GroupArgument = Annotated[str, typer.Argument(metavar="GROUP", help="Group name.", show_default=False)]


@groups.command("create")
def create_group(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="NAME", help="Group name.", show_default=False)],
    members: Annotated[
        list[str] | None,
        typer.Option(
            "--member",
            metavar="PRINCIPAL",
            help="A first member (user name, application id or group name); repeat for more.",
            show_default=False,
        ),
    ] = None,
    host: HostOption = None,
    token: TokenOption = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Create a group, optionally with members (admins only)."""
    with open_client(ctx, host, token) as client:
        created = client.create_group(name, members or [])
    _print(GROUP, output, created, [created])


_add_list_and_delete(groups, GROUP)


@groups.command("add-member")
def add_member(
    ctx: typer.Context,
    group: GroupArgument,
    principal: PrincipalArgument,
    host: HostOption = None,
    token: TokenOption = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Add a member to a group (admins only).

    The member is a user, a service principal or another group.
    """
    with open_client(ctx, host, token) as client:
        changed = client.add_group_member(str(GROUP.find(client, group)["id"]), principal)
    _print(GROUP, output, changed, [changed])


@groups.command("remove-member")
def remove_member(
    ctx: typer.Context,
    group: GroupArgument,
    principal: PrincipalArgument,
    host: HostOption = None,
    token: TokenOption = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Remove a member from a group (admins only)."""
    with open_client(ctx, host, token) as client:
        found = GROUP.find(client, group)
        member = next((m for m in found.get("members") or [] if m.get("display") == principal), None)
        if member is None:
            raise ResourceDoesNotExist(f"'{principal}' is not a member of group '{group}'.")
        changed = client.remove_group_member(str(found["id"]), str(member["value"]))
    _print(GROUP, output, changed, [changed])
