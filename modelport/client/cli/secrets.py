"""``modelport secrets ...``: scopes, secrets and scope ACLs (the Databricks CLI's names)."""

from __future__ import annotations

import base64
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from modelport.client.cli.acl import PrincipalArg, level_argument
from modelport.client.cli.options import HostOption, OutputFormat, OutputOption, TokenOption, open_client
from modelport.client.cli.output import EMPTY, format_ms, render_json, render_table
from modelport.errors import InvalidParameterValue

__all__ = ["app"]

app = typer.Typer(
    help="Manage secret scopes, the secrets in them and who may use them.",
    no_args_is_help=True,
    rich_markup_mode=None,
)

ScopeArg = Annotated[
    str, typer.Argument(metavar="SCOPE", help="Name of the secret scope.", show_default=False)
]
KeyArg = Annotated[str, typer.Argument(metavar="KEY", help="Name of the secret.", show_default=False)]


def _done(output: OutputFormat, message: str) -> None:
    typer.echo(render_json({}) if output is OutputFormat.json else message)


@app.command("create-scope")
def create_scope(
    ctx: typer.Context,
    scope: ScopeArg,
    initial_manage_principal: Annotated[
        str | None,
        typer.Option(
            "--initial-manage-principal",
            help="'users' to let every user manage the scope; by default only you (and admins) can.",
        ),
    ] = None,
    host: HostOption = None,
    token: TokenOption = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Create a secret scope; you get MANAGE on it."""
    with open_client(ctx, host, token) as client:
        client.create_secret_scope(scope, initial_manage_principal)
    _done(output, f"Created secret scope {scope}.")


@app.command("delete-scope")
def delete_scope(
    ctx: typer.Context,
    scope: ScopeArg,
    host: HostOption = None,
    token: TokenOption = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Delete a scope and its secrets (needs MANAGE)."""
    with open_client(ctx, host, token) as client:
        client.delete_secret_scope(scope)
    _done(output, f"Deleted secret scope {scope}.")


@app.command("list-scopes")
def list_scopes(
    ctx: typer.Context,
    host: HostOption = None,
    token: TokenOption = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """List the secret scopes."""
    with open_client(ctx, host, token) as client:
        scopes = client.list_secret_scopes()
    if output is OutputFormat.json:
        typer.echo(render_json(scopes))
        return
    rows = [[str(s.get("name", EMPTY)), str(s.get("backend_type", EMPTY))] for s in scopes]
    typer.echo(render_table(["SCOPE", "BACKEND"], rows))


def _value(string_value: str | None, value_file: Path | None) -> str | bytes:
    if string_value is not None and value_file is not None:
        raise InvalidParameterValue("give at most one of --string-value and --value-file")
    if string_value is not None:
        return string_value
    if value_file is not None:
        try:
            return value_file.read_bytes()
        except OSError as exc:
            raise InvalidParameterValue(f"cannot read {value_file}: {exc.strerror or exc}") from exc
    if sys.stdin.isatty():
        prompted: str = typer.prompt("Secret value", hide_input=True)
        return prompted
    return sys.stdin.buffer.read()


@app.command("put-secret")
def put_secret(
    ctx: typer.Context,
    scope: ScopeArg,
    key: KeyArg,
    string_value: Annotated[
        str | None,
        typer.Option("--string-value", help="The value as text (visible in process listings; prefer stdin)."),
    ] = None,
    value_file: Annotated[
        Path | None,
        typer.Option("--value-file", help="Read the value, as bytes, from this file.", dir_okay=False),
    ] = None,
    host: HostOption = None,
    token: TokenOption = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Create or overwrite a secret (needs WRITE).

    Without --string-value or --value-file the value is read from standard input, byte for
    byte (use printf, not echo, to leave out a trailing newline), or asked for without echo
    when standard input is a terminal.
    """
    value = _value(string_value, value_file)
    with open_client(ctx, host, token) as client:
        client.put_secret(scope, key, value)
    _done(output, f"Stored secret {key} in scope {scope}.")


@app.command("delete-secret")
def delete_secret(
    ctx: typer.Context,
    scope: ScopeArg,
    key: KeyArg,
    host: HostOption = None,
    token: TokenOption = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Delete a secret (needs WRITE)."""
    with open_client(ctx, host, token) as client:
        client.delete_secret(scope, key)
    _done(output, f"Deleted secret {key} from scope {scope}.")


@app.command("list-secrets")
def list_secrets(
    ctx: typer.Context,
    scope: ScopeArg,
    host: HostOption = None,
    token: TokenOption = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """List a scope's keys, never values (needs READ)."""
    with open_client(ctx, host, token) as client:
        found = client.list_secrets(scope)
    if output is OutputFormat.json:
        typer.echo(render_json(found))
        return
    rows = [[str(s.get("key", EMPTY)), format_ms(s.get("last_updated_timestamp"))] for s in found]
    typer.echo(render_table(["KEY", "LAST_UPDATED"], rows))


@app.command("get-secret")
def get_secret(
    ctx: typer.Context,
    scope: ScopeArg,
    key: KeyArg,
    raw: Annotated[
        bool,
        typer.Option("--raw", help="Print the value's bytes exactly, without the trailing newline."),
    ] = False,
    host: HostOption = None,
    token: TokenOption = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Print a secret's value (needs READ).

    The value is followed by a newline, so that it reads well in a terminal; with --raw its
    bytes are written exactly as stored (for binary values, or `> file`). With -o json the
    value is printed base64-encoded, as the API sends it.
    """
    with open_client(ctx, host, token) as client:
        value = client.get_secret(scope, key)
    if output is OutputFormat.json:
        typer.echo(render_json({"key": key, "value": base64.b64encode(value).decode("ascii")}))
        return
    sys.stdout.buffer.write(value if raw else value + b"\n")
    sys.stdout.buffer.flush()


def _acl_rows(items: list[dict[str, Any]]) -> str:
    rows = [[str(i.get("principal", EMPTY)), str(i.get("permission", EMPTY))] for i in items]
    return render_table(["PRINCIPAL", "PERMISSION"], rows)


@app.command("put-acl")
def put_acl(
    ctx: typer.Context,
    scope: ScopeArg,
    principal: PrincipalArg,
    permission: Annotated[
        str,
        level_argument(
            "PERMISSION", "READ (read and list), WRITE (also put and delete) or MANAGE (also grant)."
        ),
    ],
    host: HostOption = None,
    token: TokenOption = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Grant READ, WRITE or MANAGE on a scope (needs MANAGE).

    The grant replaces what the principal had on the scope.
    """
    with open_client(ctx, host, token) as client:
        client.put_secret_acl(scope, principal, permission.upper())
    _done(output, f"Granted {permission.upper()} on scope {scope} to {principal}.")


@app.command("delete-acl")
def delete_acl(
    ctx: typer.Context,
    scope: ScopeArg,
    principal: PrincipalArg,
    host: HostOption = None,
    token: TokenOption = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Remove a principal's grant on a scope (needs MANAGE)."""
    with open_client(ctx, host, token) as client:
        client.delete_secret_acl(scope, principal)
    _done(output, f"Removed the grant of {principal} on scope {scope}.")


@app.command("list-acls")
def list_acls(
    ctx: typer.Context,
    scope: ScopeArg,
    host: HostOption = None,
    token: TokenOption = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """List who may read, write or manage a scope (needs MANAGE)."""
    with open_client(ctx, host, token) as client:
        items = client.list_secret_acls(scope)
    typer.echo(render_json(items) if output is OutputFormat.json else _acl_rows(items))


@app.command("get-acl")
def get_acl(
    ctx: typer.Context,
    scope: ScopeArg,
    principal: PrincipalArg,
    host: HostOption = None,
    token: TokenOption = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Show one principal's grant on a scope (needs MANAGE)."""
    with open_client(ctx, host, token) as client:
        item = client.get_secret_acl(scope, principal)
    typer.echo(render_json(item) if output is OutputFormat.json else _acl_rows([item]))


@app.command("rotate-key")
def rotate_key(
    ctx: typer.Context,
    host: HostOption = None,
    token: TokenOption = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Rewrite every secret with the server's new secrets key (admins only).

    Rotating the key: start every server with MODELPORT_SECRETS_KEY=NEW,OLD, run this once,
    then start the servers with NEW alone.
    """
    with open_client(ctx, host, token) as client:
        result = client.rotate_secrets_key()
    if output is OutputFormat.json:
        typer.echo(render_json(result))
    else:
        typer.echo(
            f"Rewrote {result.get('rewritten', 0)} secrets with the first secrets key; the servers may "
            "now start with that key alone."
        )
