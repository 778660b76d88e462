"""``modelport endpoints ...``: manage and query serving endpoints through the SDK."""

from __future__ import annotations

import json
import time
from typing import Annotated, Any

import typer

from modelport.client.cli.acl import echo_acl
from modelport.client.cli.options import (
    HostOption,
    OutputFormat,
    OutputOption,
    TokenOption,
    open_client,
    parse_document,
    read_document,
)
from modelport.client.cli.output import EMPTY, format_ms, render_fields, render_json, render_table
from modelport.client.sdk import ModelportClient
from modelport.errors import DeadlineExceeded, InvalidParameterValue

__all__ = ["app", "dry_run_text", "endpoint_detail", "endpoints_table", "history_table"]

app = typer.Typer(
    help="Create, update, inspect and query serving endpoints.",
    no_args_is_help=True,
    rich_markup_mode=None,
)

NameArgument = Annotated[str, typer.Argument(metavar="NAME", help="Endpoint name.", show_default=False)]
ServedArgument = Annotated[
    str, typer.Argument(metavar="SERVED", help="Served entity (or served model) name.")
]
FileOption = Annotated[
    str,
    typer.Option(
        "--file",
        "-f",
        help="JSON or YAML file with the request body; '-' reads standard input.",
        show_default=False,
    ),
]
WaitOption = Annotated[
    bool,
    typer.Option("--wait/--no-wait", help="Wait until the config update has finished, showing progress."),
]
TimeoutOption = Annotated[
    float, typer.Option("--timeout", help="Seconds --wait waits before giving up.", min=0)
]
DryRunOption = Annotated[
    bool,
    typer.Option(
        "--dry-run",
        help="Check everything (models, secrets, permissions) and print what would change; change nothing.",
    ),
]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print the server's JSON (same as -o json).")]
#: Widest value a dry-run or rollback diff prints in a table cell.
_CELL = 60


# ---- rendering ---------------------------------------------------------------------------
def _state(endpoint: dict[str, Any]) -> str:
    state = endpoint.get("state") or {}
    return f"{state.get('ready', EMPTY)}/{state.get('config_update', EMPTY)}"


def _entity_source(entity: dict[str, Any]) -> str:
    external = entity.get("external_model")
    if external:
        return f"{external.get('provider', '?')}:{external.get('name', '?')}"
    if entity.get("entity_name"):
        return str(entity["entity_name"])
    if entity.get("model_name"):
        return str(entity["model_name"])
    return str((entity.get("foundation_model") or {}).get("name", EMPTY))


def _entities(config: dict[str, Any] | None) -> list[dict[str, Any]]:
    config = config or {}
    return list(config.get("served_entities") or config.get("served_models") or [])


def endpoints_table(endpoints: list[dict[str, Any]]) -> str:
    """The ``endpoints list`` table: one line per endpoint."""
    rows = [
        [
            str(ep.get("name", EMPTY)),
            _state(ep),
            ",".join(str(e.get("name", "?")) for e in _entities(ep.get("config"))) or EMPTY,
            str(ep.get("creator") or EMPTY),
            format_ms(ep.get("last_updated_timestamp")),
        ]
        for ep in endpoints
    ]
    return render_table(["NAME", "STATE", "ENTITIES", "CREATOR", "UPDATED"], rows)


def _config_block(title: str, config: dict[str, Any]) -> str:
    traffic = {
        route.get("served_entity_name") or route.get("served_model_name"): route.get("traffic_percentage")
        for route in (config.get("traffic_config") or {}).get("routes") or []
    }
    rows = []
    for entity in _entities(config):
        state = entity.get("state") or {}
        share = traffic.get(entity.get("name"))
        rows.append(
            [
                str(entity.get("name", EMPTY)),
                _entity_source(entity),
                str(entity.get("entity_version") or entity.get("model_version") or EMPTY),
                f"{share}%" if share is not None else EMPTY,
                str(state.get("deployment", EMPTY)),
                str(state.get("deployment_state_message") or ""),
            ]
        )
    headers = ["SERVED ENTITY", "SOURCE", "VERSION", "TRAFFIC", "DEPLOYMENT", "MESSAGE"]
    heading = f"{title} (version {config.get('config_version', EMPTY)})"
    return f"{heading}\n{render_table(headers, rows)}"


def endpoint_detail(endpoint: dict[str, Any]) -> str:
    """A described endpoint: its fields, then the active and the pending config."""
    tags = ", ".join(f"{t.get('key')}={t.get('value', '')}" for t in endpoint.get("tags") or [])
    fields = [
        ("NAME", str(endpoint.get("name", EMPTY))),
        ("ID", str(endpoint.get("id", EMPTY))),
        ("STATE", _state(endpoint)),
        ("TASK", str(endpoint.get("task") or EMPTY)),
        ("CREATOR", str(endpoint.get("creator") or EMPTY)),
        ("CREATED", format_ms(endpoint.get("creation_timestamp"))),
        ("UPDATED", format_ms(endpoint.get("last_updated_timestamp"))),
        ("TAGS", tags or EMPTY),
    ]
    blocks = [render_fields(fields)]
    if endpoint.get("config"):
        blocks.append(_config_block("CONFIG", endpoint["config"]))
    if endpoint.get("pending_config"):
        blocks.append(_config_block("PENDING CONFIG", endpoint["pending_config"]))
    return "\n\n".join(blocks)


def _compact(value: Any) -> str:
    if value is None:
        return EMPTY
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return text if len(text) <= _CELL else text[: _CELL - 3] + "..."


def diff_table(changes: list[dict[str, Any]]) -> str:
    """Config changes (a dry run's or a rollback's ``diff``) one per line."""
    if not changes:
        return "No changes."
    rows = [
        [
            str(c.get("change", EMPTY)),
            str(c.get("path", EMPTY)),
            _compact(c.get("before")),
            _compact(c.get("after")),
        ]
        for c in changes
    ]
    return render_table(["CHANGE", "PATH", "BEFORE", "AFTER"], rows)


def dry_run_text(report: dict[str, Any], name: str) -> str:
    """A dry-run report: what would change, what the entities resolve to, and the rollout plan."""
    current = report.get("config_version")
    target = report.get("next_config_version")
    serving = f"config version {current} serves" if current else "no config serves yet"
    lines = [
        f"Dry run: nothing was changed. Endpoint {name}: {serving}; this would be config version {target}."
    ]
    blocks = ["\n".join(lines), diff_table(list(report.get("diff") or []))]
    resolved = report.get("resolved") or {}
    if resolved:
        rows = [[entity, _resolved(what)] for entity, what in resolved.items()]
        blocks.append(render_table(["SERVED ENTITY", "RESOLVES TO"], rows))
    plan = report.get("rollout")
    if plan:
        steps = " -> ".join(f"{float(p):g}%" for p in plan.get("steps") or [])
        first = ", ".join(
            f"{r.get('served_entity_name')} {float(r.get('traffic_percentage', 0)):g}%"
            for r in plan.get("first_traffic") or []
        )
        blocks.append(f"ROLLOUT  candidate {plan.get('candidate')}: {steps} (first step: {first})")
    return "\n\n".join(blocks)


def _resolved(what: dict[str, Any]) -> str:
    external = what.get("external_model")
    if external:
        return f"{external.get('provider')}:{external.get('name')}"
    if what.get("feature_spec"):
        return f"feature spec {what['feature_spec']}"
    text = f"{what.get('entity_name')} version {what.get('entity_version')}"
    return text + (f" ({what['alias']})" if what.get("alias") else "")


def _entity_label(entity: dict[str, Any]) -> str:
    external = entity.get("external_model")
    if external:
        return f"{entity.get('name')}={external.get('provider')}:{external.get('name')}"
    version = entity.get("entity_version")
    return f"{entity.get('name')}={entity.get('entity_name')}" + (f"/{version}" if version else "")


def _traffic_label(traffic: dict[str, Any] | None) -> str:
    routes = (traffic or {}).get("routes") or []
    return ", ".join(
        f"{r.get('served_entity_name')} {float(r.get('traffic_percentage', 0)):g}%" for r in routes
    )


def history_table(versions: list[dict[str, Any]]) -> str:
    """The ``endpoints history`` table: one line per config version, newest first; the version
    that serves is marked ``serving``, a rollback says which version it restored."""
    rows = []
    for v in versions:
        notes = ["serving"] if v.get("status") == "ACTIVE" else []
        if v.get("rolled_back_from") is not None:
            notes.append(f"rollback to {v['rolled_back_from']}")
        if v.get("rollout"):
            notes.append("rollout")
        if v.get("shadow"):
            shadow = v["shadow"]
            notes.append(f"shadow {shadow.get('served_entity_name')} {float(shadow.get('percentage', 0)):g}%")
        rows.append(
            [
                str(v.get("config_version", EMPTY)),
                str(v.get("status", EMPTY)),
                str(v.get("creator") or EMPTY),
                format_ms(v.get("creation_timestamp")),
                " ".join(_entity_label(e) for e in v.get("served_entities") or []) or EMPTY,
                _traffic_label(v.get("traffic_config")) or EMPTY,
                ", ".join(notes),
            ]
        )
    return render_table(["VERSION", "STATUS", "CREATOR", "CREATED", "ENTITIES", "TRAFFIC", "NOTE"], rows)


def version_text(version: dict[str, Any]) -> str:
    """One config version (``history NAME --version N``): its fields, config and AI gateway."""
    fields = [
        ("VERSION", str(version.get("config_version", EMPTY))),
        ("STATUS", str(version.get("status", EMPTY))),
        ("CREATOR", str(version.get("creator") or EMPTY)),
        ("CREATED", format_ms(version.get("creation_timestamp"))),
        ("FINISHED", format_ms(version.get("finished_timestamp"))),
        ("MESSAGE", str(version.get("message") or EMPTY)),
    ]
    if version.get("rolled_back_from") is not None:
        fields.append(("ROLLBACK TO", str(version["rolled_back_from"])))
    config = version.get("config") or {}
    for key in ("shadow", "rollout", "auto_capture_config"):
        if config.get(key):
            fields.append((key.upper(), _compact(config[key])))
    gateway = version.get("ai_gateway") or {}
    fields.append(("AI GATEWAY", ", ".join(k for k, v in gateway.items() if v) or EMPTY))
    return "\n\n".join([render_fields(fields), _config_block("CONFIG", config)])


def _print_endpoint(endpoint: dict[str, Any], output: OutputFormat) -> None:
    typer.echo(render_json(endpoint) if output is OutputFormat.json else endpoint_detail(endpoint))


class _Progress:
    """Reports a waited-on update to stderr when its state changes, and every 10 s otherwise."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._last = ""
        self._last_at = 0.0

    def __call__(self, endpoint: dict[str, Any], elapsed: float) -> None:
        update = (endpoint.get("state") or {}).get("config_update", "UNKNOWN")
        entities = [
            f"{e.get('name', '?')}: {(e.get('state') or {}).get('deployment', '?')}"
            for e in _entities(endpoint.get("pending_config"))
        ]
        status = ", ".join([str(update), *entities])
        now = time.monotonic()
        if status != self._last or now - self._last_at >= 10:
            typer.echo(f"waiting for {self.name}: {status} ({int(elapsed)}s)", err=True)
            self._last, self._last_at = status, now


def _wait(client: ModelportClient, name: str, timeout: float) -> dict[str, Any]:
    try:
        return client.wait_for_update(name, timeout=timeout, on_poll=_Progress(name))
    except TimeoutError as exc:
        raise DeadlineExceeded(str(exc)) from exc


# ---- commands ----------------------------------------------------------------------------
@app.command("list")
def list_endpoints(
    ctx: typer.Context,
    host: HostOption = None,
    token: TokenOption = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """List the endpoints you may view."""
    with open_client(ctx, host, token) as client:
        endpoints = client.list_endpoints()
    typer.echo(render_json(endpoints) if output is OutputFormat.json else endpoints_table(endpoints))


@app.command("get")
def get_endpoint(
    ctx: typer.Context,
    name: NameArgument,
    host: HostOption = None,
    token: TokenOption = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Show one endpoint with its active and pending config."""
    with open_client(ctx, host, token) as client:
        _print_endpoint(client.get_endpoint(name), output)


@app.command("create")
def create_endpoint(
    ctx: typer.Context,
    file: FileOption,
    wait: WaitOption = False,
    timeout: TimeoutOption = 1200.0,
    dry_run: DryRunOption = False,
    host: HostOption = None,
    token: TokenOption = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Create an endpoint from a request file.

    The file holds a CreateEndpoint body: {"name": ..., "config": {"served_entities": [...]}}.
    """
    body = read_document(file)
    with open_client(ctx, host, token) as client:
        if dry_run:
            report = client.create_endpoint(body, dry_run=True)
            name = str(body.get("name") or EMPTY)
            typer.echo(render_json(report) if output is OutputFormat.json else dry_run_text(report, name))
            return
        endpoint = client.create_endpoint(body)
        if wait:
            endpoint = _wait(client, str(endpoint.get("name") or body.get("name")), timeout)
    _print_endpoint(endpoint, output)


@app.command("update-config")
def update_config(
    ctx: typer.Context,
    name: NameArgument,
    file: FileOption,
    wait: WaitOption = False,
    timeout: TimeoutOption = 1200.0,
    dry_run: DryRunOption = False,
    host: HostOption = None,
    token: TokenOption = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Start a config update of an endpoint.

    The file holds the new config: {"served_entities": [...], "traffic_config": {...}}.
    """
    config = read_document(file)
    with open_client(ctx, host, token) as client:
        if dry_run:
            report = client.update_config(name, config, dry_run=True)
            typer.echo(render_json(report) if output is OutputFormat.json else dry_run_text(report, name))
            return
        endpoint = client.update_config(name, config)
        if wait:
            endpoint = _wait(client, name, timeout)
    _print_endpoint(endpoint, output)


@app.command("history")
def history(
    ctx: typer.Context,
    name: NameArgument,
    version: Annotated[
        int | None,
        typer.Option("--version", help="Show this config version in full.", min=1, show_default=False),
    ] = None,
    as_json: JsonFlag = False,
    host: HostOption = None,
    token: TokenOption = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """List an endpoint's config versions, newest first.

    Each with its status, who made it and when, its served entities and traffic; the version
    that serves is marked "serving". --version N shows one version in full.
    """
    json_out = as_json or output is OutputFormat.json
    with open_client(ctx, host, token) as client:
        if version is not None:
            detail = client.get_config_version(name, version)
            typer.echo(render_json(detail) if json_out else version_text(detail))
            return
        versions = client.list_config_versions(name)
    typer.echo(render_json({"config_versions": versions}) if json_out else history_table(versions))


@app.command("rollback")
def rollback(
    ctx: typer.Context,
    name: NameArgument,
    to: Annotated[
        int, typer.Option("--to", help="The config version to serve again.", min=1, show_default=False)
    ],
    reason: Annotated[
        str | None,
        typer.Option("--reason", help="Why (kept in the endpoint's event log).", show_default=False),
    ] = None,
    wait: WaitOption = False,
    timeout: TimeoutOption = 1200.0,
    host: HostOption = None,
    token: TokenOption = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Serve an earlier config version again.

    The version's served entities, traffic and AI-gateway settings become a new config version,
    deployed as any update is (the current one serves until it is ready).
    """
    with open_client(ctx, host, token) as client:
        endpoint = client.rollback(name, to, reason)
        done = dict(endpoint.get("rollback") or {})
        if output is not OutputFormat.json:
            restored = ", ".join(done.get("restored") or [])
            typer.echo(
                f"Rolling back {name} to config version {done.get('to_version')} as version "
                f"{done.get('new_version')} (restores {restored}).\n"
            )
            typer.echo(diff_table(list(done.get("diff") or [])) + "\n")
        if wait:
            endpoint = {**_wait(client, name, timeout), "rollback": done}
    _print_endpoint(endpoint, output)


@app.command("delete")
def delete_endpoint(
    ctx: typer.Context,
    name: NameArgument,
    host: HostOption = None,
    token: TokenOption = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Delete an endpoint and stop its replicas."""
    with open_client(ctx, host, token) as client:
        result = client.delete_endpoint(name)
    typer.echo(render_json(result) if output is OutputFormat.json else f"Deleted endpoint {name}.")


@app.command("cancel-update")
def cancel_update(
    ctx: typer.Context,
    name: NameArgument,
    host: HostOption = None,
    token: TokenOption = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Cancel the config update in progress.

    The previous config keeps serving.
    """
    with open_client(ctx, host, token) as client:
        _print_endpoint(client.cancel_update(name), output)


@app.command("query")
def query(
    ctx: typer.Context,
    name: NameArgument,
    file: Annotated[
        str | None,
        typer.Option("--file", "-f", help="JSON or YAML file with the request; '-' reads stdin."),
    ] = None,
    json_body: Annotated[
        str | None, typer.Option("--json", help="The request as a JSON string.", show_default=False)
    ] = None,
    served: Annotated[
        str | None,
        typer.Option("--served", help="Query this served entity directly, bypassing the traffic split."),
    ] = None,
    host: HostOption = None,
    token: TokenOption = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Send one scoring request.

    The request is a JSON object, the body as the API takes it, or a list of records
    ([{"col": 1}, ...]), sent as {"dataframe_records": [...]}. The response is printed as
    JSON whatever --output says.
    """
    if (file is None) == (json_body is None):
        raise InvalidParameterValue("give the request with exactly one of -f FILE or --json TEXT")
    if file is not None:
        body = read_document(file, records=True)
    else:
        body = parse_document(str(json_body), "--json", records=True)
    with open_client(ctx, host, token) as client:
        typer.echo(render_json(client.query(name, body, served=served)))


@app.command("logs")
def logs(
    ctx: typer.Context,
    name: NameArgument,
    served: ServedArgument,
    host: HostOption = None,
    token: TokenOption = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Print the recent logs of one served entity's replicas."""
    with open_client(ctx, host, token) as client:
        text = client.logs(name, served)
    typer.echo(render_json({"logs": text}) if output is OutputFormat.json else text.rstrip("\n"))


@app.command("build-logs")
def build_logs(
    ctx: typer.Context,
    name: NameArgument,
    served: ServedArgument,
    host: HostOption = None,
    token: TokenOption = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Print the environment build log of one served entity."""
    with open_client(ctx, host, token) as client:
        text = client.build_logs(name, served)
    typer.echo(render_json({"logs": text}) if output is OutputFormat.json else text.rstrip("\n"))


@app.command("metrics")
def metrics(
    ctx: typer.Context,
    name: NameArgument,
    host: HostOption = None,
    token: TokenOption = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Print the endpoint's metrics in Prometheus text format."""
    with open_client(ctx, host, token) as client:
        text = client.metrics(name)
    typer.echo(render_json({"metrics": text}) if output is OutputFormat.json else text.rstrip("\n"))


@app.command("permissions")
def permissions(
    ctx: typer.Context,
    name: NameArgument,
    host: HostOption = None,
    token: TokenOption = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Show who may view, query or manage the endpoint."""
    with open_client(ctx, host, token) as client:
        endpoint_id = str(client.get_endpoint(name).get("id", name))
        acl = client.get_permissions(endpoint_id)
    echo_acl(acl, output, "PERMISSION")
