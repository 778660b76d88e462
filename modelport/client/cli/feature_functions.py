"""``modelport features functions ...``: feature functions, the Python functions training sets and
served models compute features with. From Python, ``FeatureEngineeringClient.create_function``
registers a function object; here ``create`` registers a function of a file (the whole file is
the function's module: its imports and helpers come along)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from modelport.client.cli.options import HostOption, OutputFormat, OutputOption, TokenOption, open_client
from modelport.client.cli.output import EMPTY, format_ms, render_fields, render_json, render_table
from modelport.tables.feature_functions import FunctionDef

__all__ = ["app"]

app = typer.Typer(
    help="Register, show, list and delete feature functions.",
    no_args_is_help=True,
    rich_markup_mode=None,
)

NameArg = Annotated[
    str,
    typer.Argument(
        metavar="FUNCTION",
        help="The function's three-part name, catalog.schema.function.",
        show_default=False,
    ),
]


def _signature(function: dict[str, Any]) -> str:
    """``ratio(amount double, average double) -> double``."""
    parameters = ", ".join(f"{p.get('name')} {p.get('type')}" for p in function.get("parameters") or [])
    return f"{function.get('entry_point')}({parameters}) -> {function.get('return_type')}"


@app.command("list")
def list_functions(
    ctx: typer.Context,
    host: HostOption = None,
    token: TokenOption = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """List the registered feature functions and their signatures."""
    with open_client(ctx, host, token) as client:
        functions = client.list_feature_functions()
    if output is OutputFormat.json:
        typer.echo(render_json({"functions": functions}))
        return
    rows = [
        [str(f.get("name")), _signature(f), str(f.get("owner") or EMPTY), format_ms(f.get("created_ms"))]
        for f in functions
    ]
    typer.echo(render_table(["NAME", "SIGNATURE", "OWNER", "CREATED"], rows))


@app.command("get")
def get(
    ctx: typer.Context,
    name: NameArg,
    host: HostOption = None,
    token: TokenOption = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Show a feature function: its signature and source."""
    with open_client(ctx, host, token) as client:
        function = client.get_feature_function(name)
    if output is OutputFormat.json:
        typer.echo(render_json(function))
        return
    fields = [
        ("Name", str(function.get("name"))),
        ("Signature", _signature(function)),
        ("Description", function.get("description") or EMPTY),
        ("Owner", function.get("owner") or EMPTY),
        ("Created", format_ms(function.get("created_ms"))),
    ]
    typer.echo(render_fields(fields) + "\n\n" + str(function.get("source") or "").rstrip())


@app.command("create")
def create(
    ctx: typer.Context,
    name: NameArg,
    file: Annotated[
        Path,
        typer.Option(
            "--file",
            "-f",
            exists=True,
            dir_okay=False,
            readable=True,
            help="The Python file holding the function (the whole file becomes its module).",
            show_default=False,
        ),
    ],
    entry: Annotated[
        str,
        typer.Option(
            "--entry",
            "-e",
            help="The function of the file to call; its annotations (int, float, str, bool) give the "
            "parameter and result types.",
            show_default=False,
        ),
    ],
    description: Annotated[
        str | None,
        typer.Option("--description", help="What the function computes (default: its docstring)."),
    ] = None,
    host: HostOption = None,
    token: TokenOption = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Register a function of a Python file as a feature function (admins: its code runs in
    modelport's processes). The file is parsed here, not run."""
    definition = FunctionDef.from_source(name, file.read_text(encoding="utf-8"), entry, description or "")
    with open_client(ctx, host, token) as client:
        stored = client.create_feature_function(definition.to_dict())
    if output is OutputFormat.json:
        typer.echo(render_json(stored))
        return
    typer.echo(f"Created feature function {stored.get('name')}: {_signature(stored)}.")


@app.command("delete")
def delete(
    ctx: typer.Context,
    name: NameArg,
    host: HostOption = None,
    token: TokenOption = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Delete a feature function (admins); models and feature specs using it keep their copy."""
    with open_client(ctx, host, token) as client:
        client.delete_feature_function(name)
    typer.echo(render_json({}) if output is OutputFormat.json else f"Deleted feature function {name}.")
