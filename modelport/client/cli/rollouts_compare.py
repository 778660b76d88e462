"""``modelport compare`` and ``modelport replay``: a candidate served entity side by side with
live traffic, from the endpoint's inference table (``control/comparisons.py``), and logged
requests sent again to it (``control/replays.py``).

    modelport compare NAME --candidate v4 [--since 1h] [--until ...] [--source shadow|replay] [--json]
    modelport replay NAME --candidate v4 [--limit 500] [--rate 50] [--since ...] [--until ...] [--wait]
"""

from __future__ import annotations

import sys
import time
from typing import Annotated, Any

import typer

from modelport.client.cli.options import HostOption, OutputFormat, OutputOption, TokenOption, open_client
from modelport.client.cli.output import EMPTY, format_ms, render_fields, render_json, render_table

__all__ = ["compare", "render_report", "replay"]

CandidateOption = Annotated[
    str, typer.Option("--candidate", "-c", help="The served entity to compare (a shadow, a replay's target).")
]
SinceOption = Annotated[
    str | None,
    typer.Option(
        "--since",
        help="Start of the window: ISO-8601, epoch ms, or a time ago (30m, 1h, 2d).",
        show_default=False,
    ),
]
UntilOption = Annotated[
    str | None, typer.Option("--until", help="End of the window (as --since).", show_default=False)
]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print the server's JSON (as -o json).")]
#: How often ``replay --wait`` polls.
POLL_SECONDS = 0.5


def _number(value: Any, digits: int = 3) -> str:
    if value is None:
        return EMPTY
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _percent(value: Any) -> str:
    return EMPTY if value is None else f"{100 * float(value):.1f}%"


def render_report(report: dict[str, Any]) -> str:
    """A comparison report as text: the measures, then live and candidate side by side."""
    incumbent = ", ".join(report.get("incumbent") or []) or EMPTY
    fields = [
        ("Endpoint", str(report.get("endpoint"))),
        ("Candidate", str(report.get("candidate"))),
        (
            "Source",
            str(report.get("source")) + (f" ({report['replay_id']})" if report.get("replay_id") else ""),
        ),
        ("Window", f"{format_ms(report.get('since'))} .. {format_ms(report.get('until'))}"),
        ("Kind", str(report.get("kind") or EMPTY)),
        ("Pairs", f"{report.get('pairs', 0)} ({report.get('compared', 0)} both answered)"),
        ("Agreement", _percent(report.get("agreement"))),
    ]
    if report.get("correlation") is not None or report.get("kind") == "numbers":
        fields.append(("Correlation", _number(report.get("correlation"))))
    if report.get("kind") == "text":
        fields.append(
            (
                "Similarity",
                f"{_number(report.get('similarity'))} ({report.get('similarity_method') or EMPTY})",
            )
        )
    live, cand = report.get("live") or {}, report.get("candidate_stats") or {}
    length = report.get("length") or {}
    rows = [
        ["requests", _number(live.get("requests")), _number(cand.get("requests"))],
        ["errors", _number(live.get("errors")), _number(cand.get("errors"))],
        ["error rate", _percent(live.get("error_rate")), _percent(cand.get("error_rate"))],
        ["p50 ms", _number(live.get("p50_ms"), 0), _number(cand.get("p50_ms"), 0)],
        ["p99 ms", _number(live.get("p99_ms"), 0), _number(cand.get("p99_ms"), 0)],
    ]
    if length:
        rows.append(["mean length", _number(length.get("live"), 1), _number(length.get("candidate"), 1)])
    table = render_table(["", f"live ({incumbent})", f"candidate ({report.get('candidate')})"], rows)
    return render_fields(fields) + "\n\n" + table


def compare(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="NAME", help="The serving endpoint.", show_default=False)],
    candidate: CandidateOption,
    since: SinceOption = None,
    until: UntilOption = None,
    source: Annotated[
        str, typer.Option("--source", help="shadow (copies of live queries) or replay (replayed rows).")
    ] = "shadow",
    replay_id: Annotated[
        str | None,
        typer.Option("--replay-id", help="With --source replay: one replay's rows.", show_default=False),
    ] = None,
    as_json: JsonFlag = False,
    output: OutputOption = OutputFormat.table,
    host: HostOption = None,
    token: TokenOption = None,
) -> None:
    """Compare a candidate with live traffic: agreement, correlation or similarity, errors and latency."""
    with open_client(ctx, host, token) as client:
        report = client.compare(name, candidate, source=source, since=since, until=until, replay_id=replay_id)
    typer.echo(render_json(report) if as_json or output == OutputFormat.json else render_report(report))


def _progress_line(replay: dict[str, Any]) -> str:
    progress = replay.get("progress") or {}
    total = progress.get("total")
    return (
        f"replay {replay.get('id')}: {replay.get('state')}, {progress.get('sent', 0)}"
        f"/{EMPTY if total is None else total} sent, {progress.get('errors', 0)} errors"
    )


def replay(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="NAME", help="The serving endpoint.", show_default=False)],
    candidate: CandidateOption,
    limit: Annotated[
        int, typer.Option("--limit", help="Logged requests to send, newest first (1-10,000).")
    ] = 500,
    rate: Annotated[float, typer.Option("--rate", help="Requests per second (0.1-1,000).")] = 50.0,
    since: SinceOption = None,
    until: UntilOption = None,
    served_entity: Annotated[
        str | None,
        typer.Option(
            "--served-entity", help="Only requests answered by this served entity.", show_default=False
        ),
    ] = None,
    status_code: Annotated[
        int | None,
        typer.Option("--status-code", help="Only requests answered with this status.", show_default=False),
    ] = None,
    wait: Annotated[
        bool, typer.Option("--wait", help="Show progress until it ends, then the report.")
    ] = False,
    as_json: JsonFlag = False,
    output: OutputOption = OutputFormat.table,
    host: HostOption = None,
    token: TokenOption = None,
) -> None:
    """Replay logged requests of the inference table against a candidate, then compare."""
    body: dict[str, Any] = {"candidate": candidate, "limit": limit, "rate_per_second": rate}
    if since is not None:
        body["since"] = since
    if until is not None:
        body["until"] = until
    flt = {
        k: v
        for k, v in (("served_entity_name", served_entity), ("status_code", status_code))
        if v is not None
    }
    if flt:
        body["filter"] = flt
    json_out = as_json or output == OutputFormat.json
    with open_client(ctx, host, token) as client:
        current = client.create_replay(name, body)
        tty = sys.stderr.isatty()
        last_plain = 0.0
        while wait and current.get("state") in ("QUEUED", "RUNNING"):
            time.sleep(POLL_SECONDS)
            current = client.get_replay(name, str(current["id"]))
            line = _progress_line(current)
            if tty:
                sys.stderr.write("\r\x1b[2K" + line)
                sys.stderr.flush()
            elif time.monotonic() - last_plain >= 5:
                sys.stderr.write(line + "\n")
                last_plain = time.monotonic()
        if wait and tty:
            sys.stderr.write("\r\x1b[2K")
    if json_out:
        typer.echo(render_json(current))
        return
    typer.echo(_progress_line(current) + (f" ({current['message']})" if current.get("message") else ""))
    if current.get("report"):
        typer.echo("\n" + render_report(current["report"]))
    if wait and current.get("state") != "SUCCEEDED":
        raise typer.Exit(code=1)
