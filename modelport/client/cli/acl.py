"""What the permission commands share (``endpoints permissions``, ``tables permissions|grant|
revoke``, ``secrets put-acl|delete-acl|list-acls|get-acl``): the PRINCIPAL argument, the level
argument's shape, and printing a Databricks ``access_control_list`` answer."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

import typer

from modelport.client.cli.options import OutputFormat
from modelport.client.cli.output import EMPTY, render_json, render_table

__all__ = ["PrincipalArg", "echo_acl", "level_argument", "render_acl"]

PrincipalArg = Annotated[
    str,
    typer.Argument(
        metavar="PRINCIPAL",
        help="User name, group name or service principal application id.",
        show_default=False,
    ),
]

_NAME_FIELDS = ("user_name", "group_name", "service_principal_name")


def level_argument(metavar: str, help: str) -> Any:
    """The positional argument naming a permission level or privilege, for ``Annotated``."""
    return typer.Argument(metavar=metavar, help=help, show_default=False)


def _level(permission: Mapping[str, Any], sources: bool) -> str:
    level = str(permission.get("permission_level"))
    if not permission.get("inherited"):
        return level
    if sources:
        return level + " (from " + ", ".join(permission.get("inherited_from_object") or []) + ")"
    return level + " (inherited)"


def render_acl(acl: Mapping[str, Any], level_header: str, *, sources: bool = False) -> str:
    """A table of PRINCIPAL, TYPE and ``level_header``: each principal's levels, inherited ones
    marked ``(inherited)``, or with ``sources`` ``(from <object>, ...)``."""
    rows = []
    for entry in acl.get("access_control_list") or []:
        kind, principal = next(((k, entry[k]) for k in _NAME_FIELDS if entry.get(k)), ("?", EMPTY))
        levels = [_level(p, sources) for p in entry.get("all_permissions") or []]
        rows.append([str(principal), kind.removesuffix("_name"), ", ".join(levels) or EMPTY])
    return render_table(["PRINCIPAL", "TYPE", level_header], rows)


def echo_acl(
    acl: Mapping[str, Any], output: OutputFormat, level_header: str, *, sources: bool = False
) -> None:
    """Print a permissions answer: the server's JSON, or :func:`render_acl`'s table."""
    typer.echo(
        render_json(acl) if output is OutputFormat.json else render_acl(acl, level_header, sources=sources)
    )
