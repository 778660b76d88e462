"""``modelport tokens ...``: create, list and revoke API tokens."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from modelport.client.cli.options import HostOption, OutputFormat, OutputOption, TokenOption, open_client
from modelport.client.cli.output import EMPTY, format_ms, render_fields, render_json, render_table
from modelport.errors import InvalidParameterValue

__all__ = ["app", "tokens_table"]

app = typer.Typer(help="Create, list and revoke API tokens.", no_args_is_help=True, rich_markup_mode=None)


def _expiry(info: dict[str, Any]) -> str:
    # Databricks reports a token without expiry as expiry_time -1.
    value = info.get("expiry_time")
    if value is None or (isinstance(value, int) and value <= 0):
        return "never"
    return format_ms(value)


def tokens_table(infos: list[dict[str, Any]]) -> str:
    """The ``tokens list`` table: one line per token (values are never listed)."""
    rows = [
        [
            str(info.get("token_id", EMPTY)),
            str(info.get("comment") or EMPTY),
            format_ms(info.get("creation_time")),
            _expiry(info),
        ]
        for info in infos
    ]
    return render_table(["TOKEN_ID", "COMMENT", "CREATED", "EXPIRES"], rows)


@app.command("create")
def create_token(
    ctx: typer.Context,
    lifetime_seconds: Annotated[
        int | None,
        typer.Option(
            "--lifetime-seconds", help="Token lifetime; omit for a token that does not expire.", min=1
        ),
    ] = None,
    comment: Annotated[str | None, typer.Option("--comment", help="What the token is for.")] = None,
    for_user: Annotated[
        str | None, typer.Option("--for-user", help="Create it on behalf of this user (admins only).")
    ] = None,
    for_service_principal: Annotated[
        str | None,
        typer.Option(
            "--for-service-principal",
            help="Create it on behalf of this service principal application id (admins only).",
        ),
    ] = None,
    host: HostOption = None,
    token: TokenOption = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Create an API token.

    Admins can create one on behalf of a user or a service principal. The token value is
    printed once and cannot be shown again.
    """
    if for_user is not None and for_service_principal is not None:
        raise InvalidParameterValue("give at most one of --for-user and --for-service-principal")
    with open_client(ctx, host, token) as client:
        if for_user is not None:
            created = client.create_token_for(for_user, "user", lifetime_seconds, comment)
        elif for_service_principal is not None:
            created = client.create_token_for(
                for_service_principal, "service_principal", lifetime_seconds, comment
            )
        else:
            created = client.create_token(lifetime_seconds, comment)
    if output is OutputFormat.json:
        typer.echo(render_json(created))
        return
    info = created.get("token_info") or {}
    fields = [
        ("TOKEN_ID", str(info.get("token_id", EMPTY))),
        ("TOKEN", str(created.get("token_value", EMPTY))),
        ("COMMENT", str(info.get("comment") or EMPTY)),
        ("EXPIRES", _expiry(info)),
    ]
    typer.echo(render_fields(fields))
    typer.echo("Store the token now: it cannot be shown again.", err=True)


@app.command("list")
def list_tokens(
    ctx: typer.Context,
    host: HostOption = None,
    token: TokenOption = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """List your tokens (ids and comments; values are never shown)."""
    with open_client(ctx, host, token) as client:
        infos = client.list_tokens()
    typer.echo(render_json(infos) if output is OutputFormat.json else tokens_table(infos))


@app.command("delete")
def delete_token(
    ctx: typer.Context,
    token_id: Annotated[
        str, typer.Argument(metavar="TOKEN_ID", help="Id of the token to revoke.", show_default=False)
    ],
    host: HostOption = None,
    token: TokenOption = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Revoke one of your tokens."""
    with open_client(ctx, host, token) as client:
        result = client.delete_token(token_id)
    typer.echo(render_json(result) if output is OutputFormat.json else f"Deleted token {token_id}.")
