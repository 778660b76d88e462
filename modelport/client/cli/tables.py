"""``modelport usage`` and ``modelport tables ...``: SQL over the tables, usage totals, and who
may read, change and grant each table (SELECT < MODIFY < MANAGE)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from modelport.client.cli.acl import PrincipalArg, echo_acl, level_argument
from modelport.client.cli.options import HostOption, OutputFormat, OutputOption, TokenOption, open_client
from modelport.client.cli.output import EMPTY, render_json, render_table
from modelport.client.cli.progress import ProgressLine

__all__ = ["app", "usage"]

app = typer.Typer(
    help="Query the inference, usage and audit tables (Delta, with DuckDB's SQL) and manage their grants.",
    no_args_is_help=True,
    rich_markup_mode=None,
)


def _cell(value: Any) -> str:
    return EMPTY if value is None else str(value)


@app.command("query")
def query(
    ctx: typer.Context,
    sql: Annotated[
        str,
        typer.Argument(
            metavar="SQL",
            help="The query; name tables catalog.schema.table, e.g. system.serving.endpoint_usage.",
            show_default=False,
        ),
    ],
    quiet: Annotated[
        bool,
        typer.Option(
            "--quiet",
            "-q",
            help="Show no progress line on stderr while a long query runs.",
            show_default=True,
        ),
    ] = False,
    host: HostOption = None,
    token: TokenOption = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Run a read-only SQL query over the tables you may read.

    Admins read every table; others the tables they hold SELECT (or more) on, and their own
    rows of system.serving.endpoint_usage. A table out of reach is refused with PERMISSION_DENIED.

    A query still running after a second shows its progress on stderr (percent done, time
    elapsed, ai_query requests answered): one line rewritten in place on a terminal, a line
    every 5 seconds otherwise.
    """
    with open_client(ctx, host, token) as client:
        if quiet:
            result = client.query_tables(sql)
        else:
            with ProgressLine() as line:
                result = client.query_tables(sql, on_progress=line.update)
    if output is OutputFormat.json:
        typer.echo(render_json(result))
        return
    typer.echo(
        render_table(
            [c.upper() for c in result["columns"]], [[_cell(v) for v in row] for row in result["rows"]]
        )
    )
    if result.get("truncated"):
        typer.echo(f"(first {len(result['rows'])} rows shown)")


TableArg = Annotated[
    str,
    typer.Argument(
        metavar="TABLE", help="The table's three-part name, catalog.schema.table.", show_default=False
    ),
]
PRIVILEGES = ("SELECT", "MODIFY", "MANAGE")


def _privilege(value: str) -> str:
    upper = value.upper()
    if upper not in PRIVILEGES:
        raise typer.BadParameter(f"{value!r} is not one of {', '.join(PRIVILEGES)}.")
    return upper


@app.command("permissions")
def permissions(
    ctx: typer.Context,
    table: TableArg,
    host: HostOption = None,
    token: TokenOption = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Show who may read (SELECT), change (MODIFY) or grant (MANAGE) a table (needs SELECT)."""
    with open_client(ctx, host, token) as client:
        acl = client.get_table_permissions(table)
    echo_acl(acl, output, "PRIVILEGE", sources=True)


def _change(
    ctx: typer.Context,
    host: str | None,
    token: str | None,
    output: OutputFormat,
    table: str,
    principal: str,
    privilege: str,
    *,
    add: bool,
) -> None:
    """Grant (``add``) or revoke ``privilege``; print the grants after it, or what was done."""
    level = _privilege(privilege)
    with open_client(ctx, host, token) as client:
        if add:
            assignments = client.update_table_grants(table, principal, add=[level])
            done = f"Granted {level} on table {table} to {principal}."
        else:
            assignments = client.update_table_grants(table, principal, remove=[level])
            done = f"Revoked {level} on table {table} from {principal}."
    typer.echo(render_json({"privilege_assignments": assignments}) if output is OutputFormat.json else done)


@app.command("grant")
def grant(
    ctx: typer.Context,
    table: TableArg,
    principal: PrincipalArg,
    privilege: Annotated[
        str,
        level_argument(
            "PRIVILEGE",
            "SELECT (read), MODIFY (also write) or MANAGE (also grant); each includes the ones before.",
        ),
    ],
    host: HostOption = None,
    token: TokenOption = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Grant a privilege on a table (needs MANAGE). A higher privilege already held is kept."""
    _change(ctx, host, token, output, table, principal, privilege, add=True)


@app.command("revoke")
def revoke(
    ctx: typer.Context,
    table: TableArg,
    principal: PrincipalArg,
    privilege: Annotated[
        str,
        level_argument(
            "PRIVILEGE", "The privilege to take away, and every higher one; SELECT (the default) takes all."
        ),
    ] = "SELECT",
    host: HostOption = None,
    token: TokenOption = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Revoke a principal's privilege on a table (needs MANAGE); what is below it is kept."""
    _change(ctx, host, token, output, table, principal, privilege, add=False)


def usage(
    ctx: typer.Context,
    by: Annotated[
        str, typer.Option("--by", help="Group the totals by user, endpoint or day.", show_default=True)
    ] = "user",
    since: Annotated[
        str | None, typer.Option("--since", help="Only requests from this date on (YYYY-MM-DD, UTC).")
    ] = None,
    host: HostOption = None,
    token: TokenOption = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Requests, tokens and errors from the usage table, totalled by user, endpoint or day.

    Yours only, unless you hold SELECT on system.serving.endpoint_usage (admins do).
    """
    with open_client(ctx, host, token) as client:
        rows = client.usage(by, since)
    if output is OutputFormat.json:
        typer.echo(render_json(rows))
        return
    keys = ["requests", "input_tokens", "output_tokens", "total_tokens", "errors", "estimated"]
    body = [[_cell(row.get(by))] + [_cell(row.get(k)) for k in keys] for row in rows]
    totals = [sum(int(row.get(k) or 0) for row in rows) for k in keys]
    if rows:
        body.append(["TOTAL", *[str(t) for t in totals]])
    typer.echo(render_table([by.upper(), *[k.upper() for k in keys]], body))
