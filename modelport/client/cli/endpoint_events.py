"""``modelport endpoints events NAME``: an endpoint's event log (config updates, rollout
decisions, replicas started, stopped, crashed and scaled, cold starts).

The table lists the newest ``--limit`` events oldest first, as a log reads; ``--follow`` then
polls every two seconds and prints each new event as it comes, until Ctrl-C. ``--json`` prints
the server's answer (newest first); with ``--follow``, one JSON object per event and line.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Annotated, Any

import typer

from modelport.client.cli.options import HostOption, OutputFormat, OutputOption, TokenOption, open_client
from modelport.client.cli.output import EMPTY, format_ms, render_json, render_table
from modelport.client.sdk import ModelportClient

__all__ = ["POLL_SECONDS", "events", "events_table", "follow", "newest"]

#: How often ``--follow`` asks for new events.
POLL_SECONDS = 2.0
_PAGE = 1000  # the most the route answers at once

HEADERS = ("TIME", "KIND", "ENTITY", "VERSION", "MESSAGE")


def _row(event: dict[str, Any]) -> list[str]:
    version = event.get("config_version")
    return [
        format_ms(event.get("timestamp")),
        str(event.get("kind") or EMPTY),
        str(event.get("served_entity") or EMPTY),
        EMPTY if version is None else str(version),
        str(event.get("message") or ""),
    ]


def events_table(events: list[dict[str, Any]], *, header: bool = True) -> str:
    """The events (in the order given) as the table ``endpoints events`` prints."""
    table = render_table(HEADERS, [_row(e) for e in events])
    return table if header else table.split("\n", 1)[-1]


def newest(
    client: ModelportClient, name: str, limit: int, kinds: list[str] | None, after_id: int = 0
) -> list[dict[str, Any]]:
    """Up to ``limit`` of the endpoint's newest events (with an id above ``after_id``), newest first."""
    out: list[dict[str, Any]] = []
    token: str | None = None
    while len(out) < limit:
        page = client.events(name, kinds=kinds, max_results=min(_PAGE, limit - len(out)), page_token=token)
        fresh = [e for e in page.get("events") or [] if int(e["id"]) > after_id]
        out.extend(fresh)
        token = page.get("next_page_token")
        if not token or len(fresh) < len(page.get("events") or []):
            break
    return out[:limit]


def follow(
    client: ModelportClient,
    name: str,
    kinds: list[str] | None,
    last_id: int,
    emit: Callable[[list[dict[str, Any]]], None],
    *,
    sleep: Callable[[float], None] = time.sleep,
    poll_seconds: float = POLL_SECONDS,
) -> None:
    """Every ``poll_seconds``, hand ``emit`` the events newer than ``last_id`` (oldest first),
    until interrupted (Ctrl-C: ``KeyboardInterrupt``, which ends the loop quietly)."""
    try:
        while True:
            sleep(poll_seconds)
            fresh = newest(client, name, 100_000, kinds, after_id=last_id)
            if fresh:
                last_id = int(fresh[0]["id"])
                emit(list(reversed(fresh)))
    except KeyboardInterrupt:
        return


def events(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="NAME", help="Endpoint name.", show_default=False)],
    kind: Annotated[
        list[str] | None,
        typer.Option(
            "--kind",
            "-k",
            metavar="KIND",
            help="Only events of this kind (repeatable, or a comma list), e.g. REPLICA_CRASHED.",
            show_default=False,
        ),
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", "-n", metavar="N", help="Show the newest N events.", min=1)
    ] = 50,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the server's JSON (same as -o json).")
    ] = False,
    follow_: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new events (polls every 2 s) until Ctrl-C.")
    ] = False,
    host: HostOption = None,
    token: TokenOption = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Print the endpoint's event log: config updates (who, which version), rollout decisions,
    replicas started, stopped, crashed and scaled, cold starts."""
    kinds = [k.strip().upper() for value in kind or [] for k in value.split(",") if k.strip()] or None
    json_out = as_json or output is OutputFormat.json
    with open_client(ctx, host, token) as client:
        got = newest(client, name, limit, kinds)
        if json_out and not follow_:
            typer.echo(render_json({"events": got}))
            return
        shown = list(reversed(got))
        if json_out:
            for e in shown:
                typer.echo(json.dumps(e, ensure_ascii=False))
        elif shown or not follow_:
            typer.echo(events_table(shown) if shown else "No events.")
        if not follow_:
            return
        printed_header = bool(shown)

        def emit(batch: list[dict[str, Any]]) -> None:
            nonlocal printed_header
            if json_out:
                for e in batch:
                    typer.echo(json.dumps(e, ensure_ascii=False))
            else:
                typer.echo(events_table(batch, header=not printed_header))
                printed_header = True

        follow(client, name, kinds, int(got[0]["id"]) if got else 0, emit)
