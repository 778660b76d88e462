"""``modelport monitors ...``: quality monitors on tables (Databricks' ``quality_monitors``):
profiles, drift and model quality of a table, an endpoint's inference table first of all,
written to ``<output schema>.<table>_profile_metrics`` and ``_drift_metrics`` at each refresh.

``create`` and ``update`` build the monitor from flags, over a ``--file`` holding a
``MonitorInfo`` body when one is given (``update`` starts from the monitor as it is, so a flag
changes only what it names)."""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer

from modelport.client.cli.options import (
    HostOption,
    OutputFormat,
    OutputOption,
    TokenOption,
    open_client,
    read_document,
)
from modelport.client.cli.output import EMPTY, format_ms, render_fields, render_json, render_table
from modelport.errors import InvalidParameterValue

__all__ = ["app"]

app = typer.Typer(
    help="Create, show, change, delete and refresh quality monitors on tables (profiles, drift, "
    "model quality).",
    no_args_is_help=True,
    rich_markup_mode=None,
)

TableArg = Annotated[
    str,
    typer.Argument(
        metavar="TABLE",
        help="The monitored table's three-part name, catalog.schema.table.",
        show_default=False,
    ),
]
FileOption = Annotated[
    str | None,
    typer.Option(
        "--file",
        "-f",
        help="A MonitorInfo body (JSON or YAML; - for stdin) the other flags change.",
        show_default=False,
    ),
]
OutputSchemaOption = Annotated[
    str | None,
    typer.Option(
        "--output-schema",
        help="catalog.schema of the metrics tables (create: required unless --file gives it).",
        show_default=False,
    ),
]
ProblemOption = Annotated[
    str | None,
    typer.Option(
        "--problem-type",
        help="classification or regression: an InferenceLog monitor (model quality from predictions "
        "and labels).",
        show_default=False,
    ),
]
TimeSeriesOption = Annotated[
    bool, typer.Option("--time-series", help="A TimeSeries monitor (profiles and drift per window).")
]
SnapshotOption = Annotated[bool, typer.Option("--snapshot", help="A Snapshot monitor (the whole table).")]
TimestampOption = Annotated[
    str | None,
    typer.Option(
        "--timestamp-col",
        help="The time column (an inference table's unpacked rows: timestamp).  [default: timestamp]",
        show_default=False,
    ),
]
GranularityOption = Annotated[
    list[str] | None,
    typer.Option(
        "--granularity",
        help='A window size ("5 minutes" ... "1 year"); repeat for several.  [default: 1 day]',
        show_default=False,
    ),
]
PredictionOption = Annotated[
    str | None,
    typer.Option("--prediction-col", help="[default: prediction]", show_default=False),
]
ModelIdOption = Annotated[
    str | None,
    typer.Option("--model-id-col", help="[default: served_entity_name]", show_default=False),
]
LabelOption = Annotated[
    str | None, typer.Option("--label-col", help="The column of true labels.", show_default=False)
]
LabelsTableOption = Annotated[
    str | None,
    typer.Option(
        "--labels-table",
        help="A table of labels LEFT JOINed at each refresh (it holds --label-col and the keys).",
        show_default=False,
    ),
]
LabelsKeyOption = Annotated[
    list[str] | None,
    typer.Option(
        "--labels-key",
        help="A key column the labels are joined on; repeat for several.  [default: client_request_id]",
        show_default=False,
    ),
]
BaselineOption = Annotated[
    str | None,
    typer.Option("--baseline-table", help="A table to compute BASELINE drift against.", show_default=False),
]
SliceOption = Annotated[
    list[str] | None,
    typer.Option("--slice", help="A slicing expression (SQL); repeat for several.", show_default=False),
]
ScheduleOption = Annotated[
    str | None,
    typer.Option(
        "--schedule",
        help="A Quartz cron expression (6 or 7 fields, e.g. '0 0 * * * ?' hourly) for scheduled refreshes.",
        show_default=False,
    ),
]
TimezoneOption = Annotated[
    str | None,
    typer.Option("--timezone", help="The schedule's time zone.  [default: UTC]", show_default=False),
]
TrafficOption = Annotated[
    list[str] | None,
    typer.Option(
        "--include-traffic",
        help="Also read these inference-table rows: shadow, replay, batch, cache; repeat for several.",
        show_default=False,
    ),
]
WaitOption = Annotated[
    bool, typer.Option("--wait", help="Wait for the refresh to end and print how it ended.")
]


def _problem(text: str) -> str:
    name = text.strip().upper().removeprefix("PROBLEM_TYPE_")
    if name not in ("CLASSIFICATION", "REGRESSION"):
        raise InvalidParameterValue(f"--problem-type must be classification or regression, not {text!r}.")
    return f"PROBLEM_TYPE_{name}"


def _body(base: dict[str, Any], table: str, flags: dict[str, Any]) -> dict[str, Any]:
    """``base`` (a monitor or a file's body) with the flags given applied."""
    body = {k: v for k, v in base.items() if v is not None}
    if flags["output_schema"]:
        body["output_schema_name"] = flags["output_schema"]
    body.setdefault("assets_dir", f"/modelport/monitors/{table}")
    kinds = [k for k in ("problem_type", "time_series", "snapshot") if flags[k]]
    if len(kinds) > 1:
        raise InvalidParameterValue("Give one of --problem-type, --time-series and --snapshot.")
    current = body.get("inference_log") or body.get("time_series") or {}
    timestamp = flags["timestamp_col"] or current.get("timestamp_col") or "timestamp"
    granularities = flags["granularity"] or current.get("granularities") or ["1 day"]
    if flags["problem_type"] or (not kinds and "inference_log" in body):
        log = dict(body.get("inference_log") or {})
        if flags["problem_type"]:
            log["problem_type"] = _problem(flags["problem_type"])
        log.update(timestamp_col=timestamp, granularities=granularities)
        log["prediction_col"] = flags["prediction_col"] or log.get("prediction_col") or "prediction"
        log["model_id_col"] = flags["model_id_col"] or log.get("model_id_col") or "served_entity_name"
        if flags["label_col"]:
            log["label_col"] = flags["label_col"]
        body["inference_log"] = log
        body.pop("time_series", None)
        body.pop("snapshot", None)
    elif flags["time_series"] or (not kinds and "time_series" in body):
        body["time_series"] = {"timestamp_col": timestamp, "granularities": granularities}
        body.pop("inference_log", None)
        body.pop("snapshot", None)
    elif flags["snapshot"]:
        body["snapshot"] = {}
        body.pop("inference_log", None)
        body.pop("time_series", None)
    if flags["labels_table"] or flags["labels_key"]:
        labels = dict(body.get("labels") or {})
        if flags["labels_table"]:
            labels["table_name"] = flags["labels_table"]
        if flags["labels_key"]:
            labels["key_cols"] = flags["labels_key"]
        body["labels"] = labels
    if flags["baseline_table"]:
        body["baseline_table_name"] = flags["baseline_table"]
    if flags["slice"]:
        body["slicing_exprs"] = flags["slice"]
    if flags["schedule"] or flags["timezone"]:
        schedule = dict(body.get("schedule") or {})
        if flags["schedule"]:
            schedule["quartz_cron_expression"] = flags["schedule"]
        schedule["timezone_id"] = flags["timezone"] or schedule.get("timezone_id") or "UTC"
        body["schedule"] = schedule
    if flags["include_traffic"]:
        body["include_traffic"] = flags["include_traffic"]
    for key in ("table_name", "status", "profile_metrics_table_name", "drift_metrics_table_name"):
        body.pop(key, None)
    return body


def _show(info: dict[str, Any]) -> str:
    log = info.get("inference_log") or {}
    kind = "InferenceLog" if log else "TimeSeries" if info.get("time_series") else "Snapshot"
    source = log or info.get("time_series") or {}
    schedule = info.get("schedule") or {}
    labels = info.get("labels") or {}
    fields = [
        ("Table", str(info.get("table_name"))),
        ("Status", str(info.get("status"))),
        ("Profile", kind + (f" ({log.get('problem_type')})" if log else "")),
        ("Granularities", ", ".join(source.get("granularities") or []) or EMPTY),
        ("Profile metrics", str(info.get("profile_metrics_table_name"))),
        ("Drift metrics", str(info.get("drift_metrics_table_name"))),
        ("Baseline", info.get("baseline_table_name") or EMPTY),
        ("Labels", labels.get("table_name") or EMPTY),
        ("Slices", "; ".join(info.get("slicing_exprs") or []) or EMPTY),
        (
            "Schedule",
            f"{schedule['quartz_cron_expression']} ({schedule.get('timezone_id')})" if schedule else EMPTY,
        ),
        ("Version", str(info.get("monitor_version"))),
    ]
    if info.get("latest_monitor_failure_msg"):
        fields.append(("Last failure", str(info["latest_monitor_failure_msg"])))
    return render_fields(fields)


def _refresh_line(refresh: dict[str, Any]) -> list[str]:
    return [
        str(refresh.get("refresh_id")),
        str(refresh.get("state")),
        str(refresh.get("trigger") or EMPTY),
        format_ms(refresh.get("start_time_ms")),
        format_ms(refresh.get("end_time_ms")),
        str(refresh.get("message") or EMPTY),
    ]


_REFRESH_HEADERS = ["ID", "STATE", "TRIGGER", "STARTED", "ENDED", "MESSAGE"]


@app.command("create")
def create(
    ctx: typer.Context,
    table: TableArg,
    output_schema: OutputSchemaOption = None,
    file: FileOption = None,
    problem_type: ProblemOption = None,
    time_series: TimeSeriesOption = False,
    snapshot: SnapshotOption = False,
    timestamp_col: TimestampOption = None,
    granularity: GranularityOption = None,
    prediction_col: PredictionOption = None,
    model_id_col: ModelIdOption = None,
    label_col: LabelOption = None,
    labels_table: LabelsTableOption = None,
    labels_key: LabelsKeyOption = None,
    baseline_table: BaselineOption = None,
    slice: SliceOption = None,
    schedule: ScheduleOption = None,
    timezone: TimezoneOption = None,
    include_traffic: TrafficOption = None,
    host: HostOption = None,
    token: TokenOption = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Create a table's monitor (needs MANAGE on the table); refresh it to compute its metrics."""
    flags = {
        k: v for k, v in locals().items() if k not in ("ctx", "table", "file", "host", "token", "output")
    }
    base = read_document(file) if file else {}
    if not (
        problem_type or time_series or snapshot or {"inference_log", "time_series", "snapshot"} & set(base)
    ):
        raise InvalidParameterValue(
            "Give --problem-type, --time-series or --snapshot (or a --file that does)."
        )
    with open_client(ctx, host, token) as client:
        info = client.create_monitor(table, _body(base, table, flags))
    typer.echo(render_json(info) if output is OutputFormat.json else _show(info))


@app.command("update")
def update(
    ctx: typer.Context,
    table: TableArg,
    file: FileOption = None,
    problem_type: ProblemOption = None,
    time_series: TimeSeriesOption = False,
    snapshot: SnapshotOption = False,
    timestamp_col: TimestampOption = None,
    granularity: GranularityOption = None,
    prediction_col: PredictionOption = None,
    model_id_col: ModelIdOption = None,
    label_col: LabelOption = None,
    labels_table: LabelsTableOption = None,
    labels_key: LabelsKeyOption = None,
    baseline_table: BaselineOption = None,
    slice: SliceOption = None,
    schedule: ScheduleOption = None,
    timezone: TimezoneOption = None,
    include_traffic: TrafficOption = None,
    host: HostOption = None,
    token: TokenOption = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Change a monitor: the flags given (over --file, over the monitor as it is); the next
    refresh recomputes every window."""
    flags = {
        k: v for k, v in locals().items() if k not in ("ctx", "table", "file", "host", "token", "output")
    }
    flags["output_schema"] = None
    with open_client(ctx, host, token) as client:
        base = read_document(file) if file else client.get_monitor(table)
        base.setdefault("output_schema_name", client.get_monitor(table)["output_schema_name"])
        info = client.update_monitor(table, _body(base, table, flags))
    typer.echo(render_json(info) if output is OutputFormat.json else _show(info))


@app.command("get")
def get(
    ctx: typer.Context,
    table: TableArg,
    host: HostOption = None,
    token: TokenOption = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Show a table's monitor: its profile, metrics tables, schedule and last failure (needs SELECT)."""
    with open_client(ctx, host, token) as client:
        info = client.get_monitor(table)
    typer.echo(render_json(info) if output is OutputFormat.json else _show(info))


@app.command("delete")
def delete(
    ctx: typer.Context,
    table: TableArg,
    host: HostOption = None,
    token: TokenOption = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Delete a table's monitor and its refreshes; the metrics tables stay (needs MANAGE)."""
    with open_client(ctx, host, token) as client:
        client.delete_monitor(table)
    typer.echo(render_json({}) if output is OutputFormat.json else f"Deleted the monitor of {table}.")


@app.command("refresh")
def refresh(
    ctx: typer.Context,
    table: TableArg,
    wait: WaitOption = False,
    host: HostOption = None,
    token: TokenOption = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Queue a refresh of a table's monitor (needs MANAGE); the server's leader runs it."""
    with open_client(ctx, host, token) as client:
        started = client.run_monitor_refresh(table)
        current = started
        while wait and current.get("state") in ("PENDING", "RUNNING"):
            time.sleep(0.5)
            current = client.get_monitor_refresh(table, int(started["refresh_id"]))
    if output is OutputFormat.json:
        typer.echo(render_json(current))
        return
    typer.echo(render_table(_REFRESH_HEADERS, [_refresh_line(current)]))
    if current.get("state") == "FAILED":
        raise typer.Exit(1)


@app.command("refreshes")
def refreshes(
    ctx: typer.Context,
    table: TableArg,
    host: HostOption = None,
    token: TokenOption = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """List the refreshes of a table's monitor, newest first (needs SELECT)."""
    with open_client(ctx, host, token) as client:
        listed = client.list_monitor_refreshes(table)
    if output is OutputFormat.json:
        typer.echo(render_json({"refreshes": listed}))
        return
    typer.echo(render_table(_REFRESH_HEADERS, [_refresh_line(r) for r in listed]))
