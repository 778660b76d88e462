"""``modelport usage`` and ``modelport tables query``: the usage and inference tables (admins)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from modelport.client.cli.options import HostOption, OutputFormat, OutputOption, TokenOption, open_client
from modelport.client.cli.output import EMPTY, render_json, render_table

__all__ = ["app", "usage"]

app = typer.Typer(
    help="Query the inference and usage tables (Delta, with DuckDB's SQL).",
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
    host: HostOption = None,
    token: TokenOption = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Run a read-only SQL query over the tables of the server (admins only)."""
    with open_client(ctx, host, token) as client:
        result = client.query_tables(sql)
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
    """Requests, tokens and errors from the usage table, totalled by user, endpoint or day (admins)."""
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
