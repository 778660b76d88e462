"""``modelport features ...``: feature tables (Delta tables with keys), their rows, and their
copies in the online store; ``modelport features functions ...`` (feature functions) is
:mod:`modelport.client.cli.feature_functions`. Tables are made and written with the Python client
(``modelport.features.FeatureEngineeringClient``)."""

from __future__ import annotations

import json
from typing import Annotated, Any

import pyarrow as pa
import typer

from modelport.client.cli import feature_functions
from modelport.client.cli.options import HostOption, OutputFormat, OutputOption, TokenOption, open_client
from modelport.client.cli.output import EMPTY, format_ms, render_fields, render_json, render_table

__all__ = ["app", "parse_key"]

app = typer.Typer(
    help="List, read, publish and drop feature tables, and look rows up in the online store.",
    no_args_is_help=True,
    rich_markup_mode=None,
)

NameArg = Annotated[
    str,
    typer.Argument(
        metavar="TABLE", help="The feature table's three-part name, catalog.schema.table.", show_default=False
    ),
]
MODES = ("snapshot", "triggered", "continuous")

app.add_typer(feature_functions.app, name="functions")


def _cell(value: Any) -> str:
    if value is None:
        return EMPTY
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) or EMPTY
    return str(value)


def _online(state: dict[str, Any] | None) -> str:
    """``continuous @ v3`` or ``-``."""
    if not state:
        return EMPTY
    return f"{state.get('mode')} @ v{state.get('published_version')}"


def parse_key(text: str) -> tuple[str, Any]:
    """``column=value``: the value as JSON when it reads as JSON (``7``, ``1.5``, ``"007"``), else
    as the string given."""
    column, sep, raw = text.partition("=")
    if not sep or not column:
        raise typer.BadParameter(f"{text!r} is not COLUMN=VALUE.")
    try:
        value = json.loads(raw)
    except ValueError:
        value = raw
    if isinstance(value, list | dict):
        value = raw
    return column, value


@app.command("list")
def list_tables(
    ctx: typer.Context,
    host: HostOption = None,
    token: TokenOption = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """List the feature tables you may read: keys, version, freshness and online state."""
    with open_client(ctx, host, token) as client:
        tables = client.list_feature_tables()
    if output is OutputFormat.json:
        typer.echo(render_json({"tables": tables}))
        return
    rows = [
        [
            str(t.get("name")),
            _cell(t.get("primary_keys")),
            _cell(t.get("timestamp_keys")),
            _cell(t.get("version")),
            format_ms(t.get("updated_ms")),
            _online(t.get("online")),
        ]
        for t in tables
    ]
    typer.echo(render_table(["NAME", "PRIMARY KEYS", "TIMESTAMP KEY", "VERSION", "UPDATED", "ONLINE"], rows))


@app.command("get")
def get(
    ctx: typer.Context,
    name: NameArg,
    host: HostOption = None,
    token: TokenOption = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Show a feature table: keys, columns, version, freshness and online state (needs SELECT)."""
    with open_client(ctx, host, token) as client:
        info = client.get_feature_table(name)
    if output is OutputFormat.json:
        typer.echo(render_json(info))
        return
    online = info.get("online") or {}
    fields = [
        ("Name", str(info.get("name"))),
        ("Description", info.get("description") or EMPTY),
        ("Primary keys", _cell(info.get("primary_keys"))),
        ("Timestamp key", _cell(info.get("timestamp_keys"))),
        ("Version", _cell(info.get("version"))),
        ("Created", format_ms(info.get("created_ms"))),
        ("Updated", format_ms(info.get("updated_ms"))),
        ("Online", _online(online)),
    ]
    if online:
        fields += [
            ("Published", format_ms(online.get("published_ms"))),
            ("Online rows", _cell(online.get("rows"))),
        ]
    columns = [
        [str(c.get("name")), str(c.get("type")), "yes" if c.get("nullable") else "no"]
        for c in info.get("columns") or []
    ]
    typer.echo(render_fields(fields) + "\n\n" + render_table(["COLUMN", "TYPE", "NULLABLE"], columns))


@app.command("drop")
def drop(
    ctx: typer.Context,
    name: NameArg,
    host: HostOption = None,
    token: TokenOption = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Drop a feature table, its online copy and its grants (needs MANAGE)."""
    with open_client(ctx, host, token) as client:
        client.drop_feature_table(name)
    typer.echo(render_json({}) if output is OutputFormat.json else f"Dropped feature table {name}.")


@app.command("publish")
def publish(
    ctx: typer.Context,
    name: NameArg,
    mode: Annotated[
        str,
        typer.Option(
            "--mode",
            help="snapshot or triggered: copy the current version now; continuous: also follow every "
            "new version (publish again in another mode to stop).",
            show_default=True,
        ),
    ] = "snapshot",
    host: HostOption = None,
    token: TokenOption = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Publish a feature table to the online store, where models look features up (needs MANAGE)."""
    if mode not in MODES:
        raise typer.BadParameter(f"{mode!r} is not one of {', '.join(MODES)}.", param_hint="--mode")
    with open_client(ctx, host, token) as client:
        state = client.publish_feature_table(name, mode)
    if output is OutputFormat.json:
        typer.echo(render_json(state))
        return
    typer.echo(
        f"Published feature table {name} ({mode}): version {state.get('published_version')}, "
        f"{state.get('rows')} rows."
    )


@app.command("lookup")
def lookup(
    ctx: typer.Context,
    name: NameArg,
    key: Annotated[
        list[str],
        typer.Option(
            "--key",
            "-k",
            metavar="COLUMN=VALUE",
            help="COLUMN=VALUE of the row's primary key (one per key column; with a timestamp key, "
            "its value looks up the row as of then). Values are read as JSON when they can be: "
            "quote a string that looks like a number (id='\"007\"').",
            show_default=False,
        ),
    ],
    feature: Annotated[
        list[str] | None,
        typer.Option(
            "--feature", "-f", metavar="NAME", help="Only this feature (repeatable); default: every column."
        ),
    ] = None,
    host: HostOption = None,
    token: TokenOption = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Look one row up by its primary key in the online store (needs SELECT)."""
    row_key = dict(parse_key(k) for k in key)
    with open_client(ctx, host, token) as client:
        rows = client.lookup_features(name, [row_key], feature or None)
    row = rows[0] if rows else None
    if output is OutputFormat.json:
        typer.echo(render_json({"rows": rows}))
        return
    if row is None:
        typer.echo(f"No row of {name} has that key.")
        return
    typer.echo(render_table(["FEATURE", "VALUE"], [[str(k), _cell(v)] for k, v in row.items()]))


@app.command("read")
def read(
    ctx: typer.Context,
    name: NameArg,
    limit: Annotated[int, typer.Option("--limit", min=0, help="Rows to show.", show_default=True)] = 20,
    version: Annotated[
        int | None, typer.Option("--version", min=0, help="A Delta version (default: the latest).")
    ] = None,
    host: HostOption = None,
    token: TokenOption = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Show the first rows of a feature table (the offline Delta table; needs SELECT)."""
    with open_client(ctx, host, token) as client:
        payload = client.read_feature_table(name, version=version, limit=limit)
    with pa.ipc.open_stream(pa.py_buffer(payload)) as reader:
        table = reader.read_all()
    records = table.to_pylist()
    if output is OutputFormat.json:
        from modelport.tables.query import json_cell  # duckdb and deltalake: not at the CLI's start

        rows = [json_cell(r) for r in records]
        typer.echo(render_json({"columns": table.column_names, "rows": rows}))
        return
    typer.echo(
        render_table(
            [c.upper() for c in table.column_names],
            [[_cell(r[c]) for c in table.column_names] for r in records],
        )
    )
