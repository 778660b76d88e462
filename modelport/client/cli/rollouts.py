"""``modelport rollouts``: an endpoint's canary rollout, read and steered by hand.

    modelport rollouts status NAME     the current rollout: state, step, candidate, last evaluation
    modelport rollouts pause NAME      keep the traffic at the step, stop evaluating
    modelport rollouts resume NAME     go on with the step
    modelport rollouts cancel NAME     roll back (traffic to the incumbents, previous config restored)
    modelport rollouts watch NAME      print the rollout each time it changes, until it is over

A rollout is started by a config update with a ``rollout`` block (``modelport endpoints
update-config``); ``docs/rollouts.md`` has the flow.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Annotated, Any

import typer

from modelport.client.cli.options import HostOption, OutputFormat, OutputOption, TokenOption, open_client
from modelport.client.cli.output import EMPTY, format_ms, render_fields, render_json
from modelport.client.sdk import ModelportClient

__all__ = ["FINISHED", "app", "describe", "watch_rollout"]

app = typer.Typer(
    help="Canary rollouts: status, pause, resume, cancel, watch.", no_args_is_help=True, rich_markup_mode=None
)

NameArgument = Annotated[str, typer.Argument(metavar="NAME", help="Endpoint name.", show_default=False)]
#: States a rollout ends in (``watch`` stops there).
FINISHED = frozenset({"SUCCEEDED", "ROLLED_BACK", "CANCELED", "FAILED"})
#: How often ``watch`` polls.
POLL_SECONDS = 1.0


def _side(measured: dict[str, Any] | None) -> str:
    if not measured:
        return EMPTY
    rate = measured.get("error_rate")
    parts = [
        f"{measured.get('requests', 0)} requests",
        f"{measured.get('errors', 0)} errors" + (f" ({rate:.2%})" if isinstance(rate, int | float) else ""),
    ]
    if measured.get("p50_ms") is not None:
        parts.append(f"p50 {measured['p50_ms']:g} ms")
    if measured.get("p99_ms") is not None:
        parts.append(f"p99 {measured['p99_ms']:g} ms")
    if measured.get("agreement") is not None:
        parts.append(f"agreement {measured['agreement']:.2%} of {measured.get('compared', 0)}")
    return ", ".join(parts)


def describe(rollout: dict[str, Any]) -> str:
    """A rollout as ``rollouts status`` prints it."""
    steps = " → ".join(f"{s:g}%" for s in rollout.get("steps") or [])
    policy = rollout.get("policy") or {}
    limits = ", ".join(
        f"{key} {policy[key]:g}"
        for key in ("max_error_rate", "max_p99_ms", "min_agreement")
        if isinstance(policy.get(key), int | float)
    )
    evaluation = rollout.get("last_evaluation") or {}
    fields = [
        ("Rollout", str(rollout.get("id"))),
        ("State", str(rollout.get("state"))),
        ("Config version", f"{rollout.get('config_version')} (from {rollout.get('from_version') or EMPTY})"),
        ("Candidate", str(rollout.get("candidate"))),
        ("Incumbents", ", ".join(rollout.get("incumbents") or []) or EMPTY),
        (
            "Step",
            f"{int(rollout.get('step', 0)) + 1} of {len(rollout.get('steps') or [])}: "
            f"{rollout.get('percentage', 0):g}% ({steps})",
        ),
        ("Step started", format_ms(rollout.get("step_started_timestamp"))),
        ("Step seconds", str(policy.get("step_seconds", EMPTY))),
        ("Limits", limits or EMPTY),
        ("Min requests", str(policy.get("min_requests_per_step", EMPTY))),
        ("Created", f"{format_ms(rollout.get('created_timestamp'))} by {rollout.get('creator')}"),
        ("Finished", format_ms(rollout.get("finished_timestamp"))),
        ("Message", str(rollout.get("message") or EMPTY)),
        ("Evaluated", format_ms(evaluation.get("timestamp"))),
        ("Verdict", f"{evaluation.get('verdict', EMPTY)}: {evaluation.get('reason', '')}".rstrip(": ")),
        ("Candidate", _side(evaluation.get("candidate"))),
        ("Incumbents", _side(evaluation.get("incumbent"))),
    ]
    return render_fields(fields)


def _show(rollout: dict[str, Any], json_out: bool) -> None:
    typer.echo(render_json(rollout) if json_out else describe(rollout))


def watch_rollout(
    client: ModelportClient,
    name: str,
    emit: Callable[[dict[str, Any]], None],
    *,
    sleep: Callable[[float], None] = time.sleep,
    poll_seconds: float = POLL_SECONDS,
) -> dict[str, Any]:
    """Hand ``emit`` the current rollout, then again each time its state, step or evaluation
    changes, until it is over (or Ctrl-C); the last one seen."""
    last: dict[str, Any] = {}
    seen: tuple[Any, ...] | None = None
    try:
        while True:
            last = client.current_rollout(name)
            evaluation = last.get("last_evaluation") or {}
            mark = (last.get("id"), last.get("state"), last.get("step"), evaluation.get("timestamp"))
            if mark != seen:
                seen = mark
                emit(last)
            if last.get("state") in FINISHED:
                return last
            sleep(poll_seconds)
    except KeyboardInterrupt:
        return last


JsonFlag = Annotated[bool, typer.Option("--json", help="Print the server's JSON (same as -o json).")]


@app.command("status")
def status(
    ctx: typer.Context,
    name: NameArgument,
    as_json: JsonFlag = False,
    host: HostOption = None,
    token: TokenOption = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Print the endpoint's current rollout: state, step, limits and the last evaluation."""
    with open_client(ctx, host, token) as client:
        _show(client.current_rollout(name), as_json or output is OutputFormat.json)


@app.command("pause")
def pause(
    ctx: typer.Context,
    name: NameArgument,
    as_json: JsonFlag = False,
    host: HostOption = None,
    token: TokenOption = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Pause the running rollout: its traffic stays at the step and it is not evaluated."""
    with open_client(ctx, host, token) as client:
        _show(client.pause_rollout(name), as_json or output is OutputFormat.json)


@app.command("resume")
def resume(
    ctx: typer.Context,
    name: NameArgument,
    as_json: JsonFlag = False,
    host: HostOption = None,
    token: TokenOption = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Resume a paused rollout: its step goes on for the time it had left."""
    with open_client(ctx, host, token) as client:
        _show(client.resume_rollout(name), as_json or output is OutputFormat.json)


@app.command("cancel")
def cancel(
    ctx: typer.Context,
    name: NameArgument,
    as_json: JsonFlag = False,
    host: HostOption = None,
    token: TokenOption = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Cancel the rollout: the traffic goes back to the incumbents at once and the previous config
    is restored as a new version (a rollout still deploying cancels the update)."""
    with open_client(ctx, host, token) as client:
        _show(client.cancel_rollout(name), as_json or output is OutputFormat.json)


@app.command("watch")
def watch(
    ctx: typer.Context,
    name: NameArgument,
    as_json: JsonFlag = False,
    host: HostOption = None,
    token: TokenOption = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Print the rollout each time it changes (step, state, evaluation) until it is over; exit
    status 1 when it ended other than SUCCEEDED."""
    json_out = as_json or output is OutputFormat.json

    def emit(rollout: dict[str, Any]) -> None:
        if json_out:
            typer.echo(render_json(rollout))
            return
        evaluation = rollout.get("last_evaluation") or {}
        verdict = evaluation.get("verdict")
        when = format_ms(evaluation.get("timestamp") or rollout.get("created_timestamp"))
        line = f"{when}  {rollout.get('state')}"
        line += f"  step {int(rollout.get('step', 0)) + 1}/{len(rollout.get('steps') or [])}"
        line += f" {rollout.get('percentage', 0):g}%"
        if verdict:
            line += f"  {verdict}: {evaluation.get('reason', '')}"
        typer.echo(line)

    with open_client(ctx, host, token) as client:
        last = watch_rollout(client, name, emit)
    if last.get("state") in FINISHED and last.get("state") != "SUCCEEDED":
        if not json_out:
            typer.echo(f"{last.get('state')}: {last.get('message') or ''}".rstrip(": "))
        raise typer.Exit(code=1)
