"""``modelport status``: the server processes that share the store, which one leads (the
reconciler's lease: its epoch and the time left) and where the replicas run."""

from __future__ import annotations

from typing import Any

import typer

from modelport.client.cli.options import HostOption, OutputFormat, OutputOption, TokenOption, open_client
from modelport.client.cli.output import EMPTY, format_ms, render_json, render_table

__all__ = ["status", "status_text"]


def status_text(info: dict[str, Any]) -> str:
    """The human-readable report: the leader line, the processes table, the replicas table."""
    leader = info.get("leader")
    if not leader:
        head = "Leader: none (no server has taken the reconciler's lease yet)"
    elif leader.get("expired"):
        head = f"Leader: none (the lease of {leader['holder']} expired; epoch {leader['epoch']})"
    else:
        seconds = int(leader.get("expires_in_ms") or 0) / 1000
        head = f"Leader: {leader['holder']} (epoch {leader['epoch']}, lease {seconds:.1f}s left)"
    processes = [
        [
            str(p["id"]),
            str(p["role"]) + (f" {p['worker']}" if p.get("worker") else ""),
            str(p["pid"]),
            "yes" if p.get("leader") else EMPTY,
            format_ms(p.get("started_ms")),
            f"{int(p.get('seen_ms_ago') or 0) / 1000:.1f}s ago" + ("" if p.get("live") else " (gone)"),
        ]
        for p in info.get("processes", [])
    ]
    replicas = [
        [
            str(r["endpoint_id"]),
            str(r["config_version"]),
            str(r["served_entity"]),
            str(r["pid"]),
            str(r["state"]),
            str(r["address"]),
        ]
        for r in info.get("replicas", [])
    ]
    parts = [
        head,
        "",
        render_table(["PROCESS", "ROLE", "PID", "LEADER", "STARTED", "SEEN"], processes),
        "",
        render_table(["ENDPOINT_ID", "VERSION", "SERVED_ENTITY", "PID", "STATE", "ADDRESS"], replicas)
        if replicas
        else "No replicas running.",
    ]
    return "\n".join(parts)


def status(
    ctx: typer.Context,
    host: HostOption = None,
    token: TokenOption = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """The server processes sharing the store, the leader (epoch, lease) and the replicas (admins)."""
    with open_client(ctx, host, token) as client:
        info = client.status()
    typer.echo(render_json(info) if output is OutputFormat.json else status_text(info))
