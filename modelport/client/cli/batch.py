"""``modelport batch ...``: bulk jobs on tables. ``run`` scores a Parquet, CSV or JSON-lines
file, or a Delta table, with a serving endpoint into a Delta table, on the server, and follows
the job with a progress line; ``list``, ``get`` and ``cancel`` manage jobs.

A file is uploaded first (``purpose="user_data"``); the server reads it. Running the same
command again (same endpoint, input, columns and output) resumes a cancelled or failed job from
the rows its output holds, follows one that runs, or reports one that is complete.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from modelport.client.cli.options import (
    ROOT_OUTPUT,
    HostOption,
    OutputFormat,
    OutputOption,
    TokenOption,
    open_client,
)
from modelport.client.cli.output import EMPTY, format_ms, render_fields, render_json, render_table
from modelport.client.sdk import ModelportClient
from modelport.errors import InvalidParameterValue

__all__ = ["Progress", "app", "summary"]

#: The largest file the server takes (``batch/files.py``: ``MAX_FILE_BYTES``).
MAX_UPLOAD_BYTES = 200 * 1024 * 1024
ENDED = ("completed", "failed", "cancelled")
#: Seconds between polls of the job, and between plain progress lines (stderr not a terminal).
POLL_SECONDS = 0.5
PLAIN_EVERY_SECONDS = 5.0
_BAR = 24

app = typer.Typer(
    help="Bulk jobs on tables: score a file or a Delta table with an endpoint into a Delta table.",
    no_args_is_help=True,
    rich_markup_mode=None,
)


def _clock(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class Progress:
    """The progress line on stderr: rows done of all, rows/s since following began, ETA. On a
    terminal one line redrawn at each poll; elsewhere a plain line every few seconds."""

    def __init__(
        self,
        write: Callable[[str], None],
        *,
        tty: bool,
        clock: Callable[[], float] = time.monotonic,
        every: float = PLAIN_EVERY_SECONDS,
    ) -> None:
        self._write = write
        self._tty = tty
        self._clock = clock
        self._every = every
        self._start: tuple[float, int] | None = None
        self._last_plain = -1e9
        self._drawn = False

    def line(self, job: dict[str, Any]) -> str:
        rows = job.get("rows") or {}
        done, total, failed = int(rows.get("done", 0)), int(rows.get("total", 0)), int(rows.get("failed", 0))
        now = self._clock()
        if self._start is None:
            self._start = (now, done)
        elapsed = now - self._start[0]
        rate = (done - self._start[1]) / elapsed if elapsed > 0 else 0.0
        eta = _clock((total - done) / rate) if rate > 0 else "?"
        share = done / total if total else 0.0
        bar = "#" * int(share * _BAR)
        text = f"{done:,}/{total:,} rows {share:6.1%}  {rate:,.0f} rows/s  ETA {eta}"
        if failed:
            text += f"  {failed:,} failed"
        status = job.get("status", "")
        if status not in ("running", "completed"):
            text += f"  [{status}]"
        return f"[{bar.ljust(_BAR, '.')}] {text}" if self._tty else text

    def show(self, job: dict[str, Any], *, last: bool = False) -> None:
        text = self.line(job)
        if self._tty:
            self._write("\r" + text + ("\n" if last else ""))
            self._drawn = not last
        elif last or self._clock() - self._last_plain >= self._every:
            self._last_plain = self._clock()
            self._write(text + "\n")

    def end_line(self) -> None:
        """End a redrawn line before printing anything else."""
        if self._drawn:
            self._write("\n")
            self._drawn = False


def summary(job: dict[str, Any]) -> str:
    """What a job came to: rows answered and failed, the most common errors, where they are."""
    rows = job.get("rows") or {}
    done, total, failed = int(rows.get("done", 0)), int(rows.get("total", 0)), int(rows.get("failed", 0))
    fields = [
        ("Batch job", f"{job['id']} {job.get('status', '')}"),
        ("Output table", str(job.get("output_table"))),
        ("Rows", f"{done:,} of {total:,} ({done - failed:,} answered, {failed:,} failed)"),
    ]
    if job.get("error"):
        fields.append(("Error", str(job["error"])))
    for i, item in enumerate(job.get("top_errors") or []):
        fields.append(("Errors" if i == 0 else "", f"{item['count']:>6,}  {item['message']}"))
    return render_fields(fields)


def _input(client: ModelportClient, value: str) -> dict[str, Any]:
    """A local file (uploaded now) or a table's three-part name."""
    path = Path(value)
    if path.is_file():
        size = path.stat().st_size
        if size > MAX_UPLOAD_BYTES:
            raise InvalidParameterValue(
                f"{value} is {size:,} bytes; files up to {MAX_UPLOAD_BYTES:,} bytes are uploaded: "
                "write it to a Delta table and name the table instead."
            )
        uploaded = client.upload_file(path.name, path.read_bytes())
        return {"file_id": uploaded["id"]}
    if "/" in value or value.count(".") != 2:
        raise InvalidParameterValue(f"{value} is neither a file nor a table name (catalog.schema.table).")
    return {"table": value}


def _follow(client: ModelportClient, job: dict[str, Any], progress: Progress) -> dict[str, Any]:
    """Poll the job until it ends, drawing progress; Ctrl-C cancels it (rows written stay)."""
    try:
        while job["status"] not in ENDED:
            progress.show(job)
            time.sleep(POLL_SECONDS)
            job = client.get_batch_job(job["id"])
    except KeyboardInterrupt:
        progress.end_line()
        typer.echo(f"Cancelling batch job {job['id']} (rows written are kept)...", err=True)
        job = client.cancel_batch_job(job["id"])
        deadline = time.monotonic() + 30
        while job["status"] not in ENDED and time.monotonic() < deadline:
            time.sleep(POLL_SECONDS)
            job = client.get_batch_job(job["id"])
    progress.show(job, last=True)
    return job


@app.command("run")
def run(
    ctx: typer.Context,
    endpoint: Annotated[
        str, typer.Option("--endpoint", help="The serving endpoint to query.", show_default=False)
    ],
    input_: Annotated[
        str,
        typer.Option(
            "--input",
            help="A .parquet, .csv, .jsonl or .json file (uploaded) or a Delta table catalog.schema.table.",
            show_default=False,
        ),
    ],
    output_table: Annotated[
        str,
        typer.Option(
            "--output",
            "--output-table",
            help="The Delta table of the answers, catalog.schema.table: row_id, the input's columns, "
            "result and errorMessage. (Print JSON with 'modelport -o json batch run ...'.)",
            show_default=False,
        ),
    ],
    column: Annotated[
        list[str] | None,
        typer.Option(
            "--column",
            help="A column sent to the endpoint (repeat for several). [default: every column; "
            "a chat, completions or embeddings endpoint takes exactly one]",
            show_default=False,
        ),
    ] = None,
    chunk_rows: Annotated[
        int | None,
        typer.Option(
            "--chunk-rows",
            help="Rows per checkpoint (one Delta commit each). [default: 10000 for custom models, "
            "4096 for embeddings, 512 for chat and completions]",
            show_default=False,
        ),
    ] = None,
    detach: Annotated[
        bool, typer.Option("--detach", help="Print the job's id and return; the job runs on the server.")
    ] = False,
    host: HostOption = None,
    token: TokenOption = None,
) -> None:
    """Score a file or a Delta table with an endpoint into a Delta table, on the server.

    The job runs on the server as you (CAN_QUERY on the endpoint, SELECT on an input table),
    survives a server restart and writes its answers in chunks, one Delta commit each. Ctrl-C
    cancels it, keeping what was written; the same command again resumes it without sending an
    answered row again.
    """
    root: OutputFormat | None = ctx.find_root().params.get(ROOT_OUTPUT)
    output = OutputFormat(root) if root is not None else OutputFormat.table
    with open_client(ctx, host, token) as client:
        body: dict[str, Any] = {
            "endpoint": endpoint,
            "input": _input(client, input_),
            "output_table": output_table,
        }
        if column:
            body["columns"] = list(column)
        if chunk_rows is not None:
            body["chunk_rows"] = chunk_rows
        job = client.create_batch_job(body)
        action = job.pop("action", "created")
        rows = job.get("rows") or {}
        said = {
            "created": f"Started batch job {job['id']}",
            "resumed": f"Resuming batch job {job['id']} ({rows.get('done', 0):,} rows answered before)",
            "attached": f"Following batch job {job['id']}, already running",
            "done": f"Batch job {job['id']} already scored this input",
        }[action]
        typer.echo(f"{said}: {rows.get('total', 0):,} rows into {job['output_table']}.", err=True)
        if detach:
            typer.echo(render_json(job) if output is OutputFormat.json else job["id"])
            return
        progress = Progress(lambda s: (sys.stderr.write(s), sys.stderr.flush()), tty=sys.stderr.isatty())
        job = _follow(client, job, progress)
    typer.echo(render_json(job) if output is OutputFormat.json else summary(job))
    if job["status"] == "cancelled":
        typer.echo("Cancelled. Run the same command again to resume.", err=True)
        raise typer.Exit(code=130)
    if job["status"] != "completed":
        raise typer.Exit(code=1)


JobArg = Annotated[str, typer.Argument(metavar="JOB_ID", help="The job's id (bjob-...).", show_default=False)]


@app.command("list")
def list_jobs(
    ctx: typer.Context,
    host: HostOption = None,
    token: TokenOption = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """The table jobs you may see (yours; admins: all), newest first."""
    with open_client(ctx, host, token) as client:
        jobs = client.list_batch_jobs()
    if output is OutputFormat.json:
        typer.echo(render_json(jobs))
        return
    headers = ["ID", "STATUS", "OWNER", "ENDPOINT", "INPUT", "OUTPUT TABLE", "ROWS", "FAILED", "CREATED"]
    table = [
        [
            j["id"],
            j["status"],
            j["owner"],
            j["endpoint"],
            j["input"]["name"],
            j["output_table"],
            f"{j['rows']['done']}/{j['rows']['total']}",
            str(j["rows"]["failed"]),
            format_ms(j.get("created_at")),
        ]
        for j in jobs
    ]
    typer.echo(render_table(headers, table) if table else "No batch jobs.")


@app.command("get")
def get(
    ctx: typer.Context,
    job_id: JobArg,
    host: HostOption = None,
    token: TokenOption = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """A table job: its state, counts, the most common errors and its output table."""
    with open_client(ctx, host, token) as client:
        job = client.get_batch_job(job_id)
    if output is OutputFormat.json:
        typer.echo(render_json(job))
        return
    typer.echo(summary(job))
    typer.echo(
        render_fields(
            [
                ("Owner", job["owner"]),
                ("Endpoint", job["endpoint"]),
                ("Input", f"{job['input']['name']} ({job['input']['fingerprint']})"),
                ("Created", format_ms(job.get("created_at"))),
                ("Ended", format_ms(job.get("ended_at")) if job.get("ended_at") else EMPTY),
            ]
        )
    )


@app.command("cancel")
def cancel(
    ctx: typer.Context,
    job_id: JobArg,
    host: HostOption = None,
    token: TokenOption = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Cancel a table job; the rows written stay, and `batch run` with the same arguments resumes it."""
    with open_client(ctx, host, token) as client:
        job = client.cancel_batch_job(job_id)
    typer.echo(render_json(job) if output is OutputFormat.json else f"Cancelling batch job {job_id}.")
