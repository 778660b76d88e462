"""Bulk jobs (issue 19, third target): a ``--lines``-line OpenAI Batch API job, the server killed
with SIGKILL mid-way, restarted on the same data directory, the job resumed to completion; every
``custom_id`` must be answered exactly once across the output and error files.

Set-up: the loopback OpenAI fake (``peers/openai_fake.py``, in its own process) behind an
external-model chat endpoint ``bulk-fast`` (usage tracking on, so each request the runner sends
leaves a usage row: a kill may lose answers that were not yet synced, and those lines are sent
again); one ``modelport serve`` (system endpoints off). The fake is the fastest endpoint there
is: the job's own machinery (the runner, the data plane, the files) is what is measured. A
custom-model endpoint cannot be used here: bulk job lines go to ``/v1/chat/completions``,
``/v1/completions`` or ``/v1/embeddings``, which refuse custom models (they answer at
``/invocations`` only).

Steps, all through the official ``openai`` client (``base_url=<server>/serving-endpoints``, the
admin's token):

1. ``files.create`` of the input (``custom_id`` ``req-000000`` ...; a chat request each,
   ``max_tokens`` 8), then ``batches.create`` (``/v1/chat/completions``, ``24h``);
2. ``batches.retrieve`` polled every 0.1 s; once ``request_counts`` (completed + failed) pass
   ``--kill-at`` of the lines, the server's process tree is killed with SIGKILL (no shutdown code
   runs). The lines then durable in the job's output and error files (read from the data
   directory, a torn last line not counted) are the progress at the kill: it must be between 10%
   and 90%;
3. ``modelport serve`` started again on the same data directory; the job resumes on its own
   (its runner re-reads the files and sends only lines not answered);
4. polled to ``completed``; the output and error files downloaded with ``files.content``; each
   answer's text checked (the fake echoes the prompt);
5. the server stopped cleanly (its spool flushed), the usage table read: its rows with the job's
   ``usage_context.batch_id`` minus the lines = requests sent twice (answered before the kill but
   not yet synced to the output file when it came).

Reported: lines/s before the kill (lines durable at the kill / seconds from ``batches.create`` to
the kill) and after it (lines answered after the restart / seconds from the restart, launched
right after the kill, to ``completed``), the steady rates from the polls, the time to resume (the
restart to the first line appended to the job's files, watched in the data directory: the runner
resumes while the server is still starting), the restart's and the first start's time to
``/ready``, duplicates (must be 0), missing (must be 0) and wrong answers (must be 0). One run;
the load average with each phase.

Run: ``python bench/batch_resume.py [--quick] [--lines 100000] [--kill-at 0.4] [--out bench/RESULTS.md]``.
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import contextlib
import math
import os
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
from harness import (
    ADMIN_TOKEN,
    FAKE_OPENAI_KEY,
    HEADERS,
    UPSTREAM_MODEL,
    PeerFailed,
    Running,
    alive,
    chat_body,
    first_answer,
    header,
    load_average,
    machine,
    one_line,
    publish,
    serve_modelport,
    source,
    start_openai_fake,
    versions,
    wait_deployed,
)

ENDPOINT = "bulk-fast"
URL = "/v1/chat/completions"
PACKAGES = ("modelport", "openai", "httpx", "uvicorn")
LOW, HIGH = 0.10, 0.90  # progress at the kill must lie between these
ENDED = ("completed", "failed", "cancelled", "expired")


@dataclass
class Phase:
    lines: int = 0
    seconds: float = 0.0
    load: str = ""

    @property
    def rate(self) -> float:
        return self.lines / self.seconds if self.seconds else float("nan")


@dataclass
class Outcome:
    lines: int = 0
    upload_s: float = 0.0
    before: Phase = field(default_factory=Phase)
    after: Phase = field(default_factory=Phase)
    steady_before: float = float("nan")
    steady_after: float = float("nan")
    counted_at_kill: int = 0  # request_counts at the last poll before the kill
    durable_at_kill: int = 0  # lines in the output and error files after the kill
    first_ready_s: float = float("nan")  # the first start: launch to /ready
    restart_ready_s: float = float("nan")  # the restart (launched right after the kill) to /ready
    resume_s: float = float("nan")  # the restart to the first line appended to the job's files
    status: str = "?"
    request_counts: tuple[int, int, int] = (0, 0, 0)
    answered: int = 0  # lines in the output and error files
    duplicates: int = 0
    missing: int = 0
    unexpected: int = 0
    wrong: int = 0
    errors: int = 0  # lines in the error file
    sent_twice: int | None = None
    usage_note: str = ""
    failures: list[str] = field(default_factory=list)


def input_lines(n: int) -> bytes:
    lines = []
    for i in range(n):
        body = {"model": ENDPOINT, "messages": [{"role": "user", "content": f"line {i}"}], "max_tokens": 8}
        lines.append(orjson.dumps({"custom_id": f"req-{i:06d}", "method": "POST", "url": URL, "body": body}))
    return b"\n".join(lines) + b"\n"


def create_endpoint(server: Running, fake: Running) -> None:
    upstream = fake.url.removesuffix("/chat/completions")
    external = {
        "provider": "openai",
        "name": UPSTREAM_MODEL,
        "task": "llm/v1/chat",
        "openai_config": {"openai_api_key_plaintext": FAKE_OPENAI_KEY, "openai_api_base": upstream},
    }
    body = {
        "name": ENDPOINT,
        "config": {"served_entities": [{"name": "fake", "external_model": external}]},
        "ai_gateway": {"usage_tracking_config": {"enabled": True}},
    }
    answer = httpx.post(f"{server.url}/api/2.0/serving-endpoints", json=body, headers=HEADERS, timeout=60)
    if answer.status_code != 200:
        raise PeerFailed(f"creating {ENDPOINT}: {answer.status_code} {answer.text[:500]}")
    wait_deployed(server.url, ENDPOINT)
    url = f"{server.url}/serving-endpoints/{ENDPOINT}/invocations"
    first_answer(server.proc, url, chat_body(None), HEADERS, server.log, 60)


def client_of(server: Running) -> Any:
    import openai

    return openai.OpenAI(base_url=f"{server.url}/serving-endpoints", api_key=ADMIN_TOKEN, max_retries=3)


def kill_9(server: Running) -> None:
    """SIGKILL the server, its session and every process it started: no shutdown code runs."""
    tree = server.pids()
    with contextlib.suppress(ProcessLookupError):
        os.kill(server.proc.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.proc.pid, signal.SIGKILL)
    for pid in alive(tree):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    server.proc.wait(30)


def durable_lines(data: Path, batch_id: str) -> int:
    """Complete lines in the job's output and error files (what a resumed runner counts)."""
    job = orjson.loads((data / "batch" / "jobs" / batch_id / "job.json").read_bytes())
    total = 0
    for file_id in (job["output_id"], job["error_id"]):
        with contextlib.suppress(FileNotFoundError):
            content = (data / "batch" / "files" / f"{file_id}.jsonl").read_bytes()
            total += content[: content.rfind(b"\n") + 1].count(b"\n")
    return total


def answer_bytes(data: Path, batch_id: str) -> int:
    """Bytes in the job's output and error files now."""
    job = orjson.loads((data / "batch" / "jobs" / batch_id / "job.json").read_bytes())
    total = 0
    for file_id in (job["output_id"], job["error_id"]):
        with contextlib.suppress(FileNotFoundError):
            total += (data / "batch" / "files" / f"{file_id}.jsonl").stat().st_size
    return total


def steady(polls: list[tuple[float, int]]) -> float:
    """Lines/s between the first poll that saw progress and the last poll."""
    moving = [(t, c) for t, c in polls if c > polls[0][1]]
    if len(moving) < 2 or moving[-1][0] == moving[0][0]:
        return float("nan")
    return (moving[-1][1] - moving[0][1]) / (moving[-1][0] - moving[0][0])


def counted(batch: Any) -> int:
    counts = batch.request_counts
    return 0 if counts is None else counts.completed + counts.failed


def check_answers(out: Outcome, client: Any, batch: Any, n: int) -> None:
    """Every custom_id once across the output and error files, each answer the fake's echo."""
    seen: collections.Counter[str] = collections.Counter()
    for file_id, is_error in ((batch.output_file_id, False), (batch.error_file_id, True)):
        if file_id is None:
            continue
        for raw in client.files.content(file_id).content.splitlines():
            if not raw.strip():
                continue
            line = orjson.loads(raw)
            cid = line["custom_id"]
            seen[cid] += 1
            if is_error:
                out.errors += 1
                continue
            content = line["response"]["body"]["choices"][0]["message"]["content"]
            if content != f"You said: line {int(cid[4:])}":
                out.wrong += 1
    expected = {f"req-{i:06d}" for i in range(n)}
    out.answered = sum(seen.values())
    out.duplicates = sum(c - 1 for c in seen.values() if c > 1)
    out.missing = len(expected - set(seen))
    out.unexpected = len(set(seen) - expected)


def usage_rows(data: Path, batch_id: str) -> int:
    """Rows of the usage table that name the job (read from the Delta table after the stop)."""
    from modelport.tables.query import query

    _, rows = query(
        f"SELECT count(*) FROM system.serving.endpoint_usage WHERE usage_context['batch_id'] = '{batch_id}'",
        str(data / "tables"),
    )
    return int(rows[0][0])


def measure(args: argparse.Namespace, workdir: Path) -> Outcome:
    out = Outcome(lines=args.lines)
    data = workdir / "data"
    path = workdir / "input.jsonl"
    path.write_bytes(input_lines(args.lines))
    print(f"{args.lines:,} lines, {path.stat().st_size / 1e6:.1f} MB; starting the fake", flush=True)
    fake = start_openai_fake(workdir)
    server: Running | None = None
    try:
        server = serve_modelport(data, system_endpoints=False)
        out.first_ready_s = server.startup_s
        create_endpoint(server, fake)
        client = client_of(server)
        started = time.perf_counter()
        with open(path, "rb") as f:
            uploaded = client.files.create(file=f, purpose="batch")
        out.upload_s = time.perf_counter() - started
        print(f"uploaded {uploaded.id} in {out.upload_s:.2f} s (load average {load_average()})", flush=True)
        out.before.load = load_average()
        created = time.perf_counter()
        batch = client.batches.create(input_file_id=uploaded.id, endpoint=URL, completion_window="24h")
        polls: list[tuple[float, int]] = []
        while True:
            got = client.batches.retrieve(batch.id)
            polls.append((time.perf_counter(), counted(got)))
            if got.status in ENDED:
                raise PeerFailed(f"the job ended ({got.status}) before the kill: lower --kill-at")
            if polls[-1][1] >= args.kill_at * args.lines:
                break
            time.sleep(0.1)
        out.counted_at_kill = polls[-1][1]
        kill_9(server)
        killed = time.perf_counter()
        server = None
        out.durable_at_kill = durable_lines(data, batch.id)
        out.before = Phase(out.durable_at_kill, killed - created, out.before.load)
        out.steady_before = steady(polls)
        share = out.durable_at_kill / args.lines
        print(
            f"killed with SIGKILL {killed - created:.2f} s after batches.create: "
            f"{out.durable_at_kill:,} lines "
            f"durable ({share:.0%}; the last poll counted {out.counted_at_kill:,}); load {load_average()}",
            flush=True,
        )
        if not LOW <= share <= HIGH:
            out.failures.append(f"progress at the kill {share:.1%}, not between {LOW:.0%} and {HIGH:.0%}")
        load_after = load_average()
        size_at_kill = answer_bytes(data, batch.id)
        restarted = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            starting = pool.submit(serve_modelport, data, system_endpoints=False)
            # The files say when the resumed runner answers its first line, /ready or not.
            while not starting.done():
                if math.isnan(out.resume_s) and answer_bytes(data, batch.id) > size_at_kill:
                    out.resume_s = time.perf_counter() - restarted
                time.sleep(0.05)
            server = starting.result()
        out.restart_ready_s = time.perf_counter() - restarted
        client = client_of(server)
        polls = []
        deadline = restarted + args.timeout
        while True:
            got = client.batches.retrieve(batch.id)
            polls.append((time.perf_counter(), counted(got)))
            if math.isnan(out.resume_s) and answer_bytes(data, batch.id) > size_at_kill:
                out.resume_s = polls[-1][0] - restarted
            if got.status in ENDED:
                break
            if time.perf_counter() > deadline:
                raise PeerFailed(f"the job still {got.status} {args.timeout:.0f} s after the restart")
            time.sleep(0.1)
        done = polls[-1][0]
        out.status = got.status
        counts = got.request_counts
        out.request_counts = (counts.total, counts.completed, counts.failed) if counts else (0, 0, 0)
        out.after = Phase(args.lines - out.durable_at_kill, done - restarted, load_after)
        out.steady_after = steady(polls)
        print(
            f"restarted: /ready {out.restart_ready_s:.2f} s after the restart (the first start: "
            f"{out.first_ready_s:.2f} s), first new line {out.resume_s:.2f} s after it; {got.status} "
            f"{done - restarted:.2f} s after it (load {load_average()})",
            flush=True,
        )
        check_answers(out, client, got, args.lines)
        server.stop()  # a clean stop flushes the spool into the usage table
        server = None
        try:
            out.sent_twice = usage_rows(data, batch.id) - args.lines
        except Exception as exc:  # reported, not fatal: the usage table is a side check
            out.usage_note = f"usage table not read: {one_line(repr(exc), 300)}"
    finally:
        if server is not None:
            server.stop()
        fake.stop()
    if out.status != "completed":
        out.failures.append(f"the job ended {out.status}")
    if out.duplicates or out.missing or out.unexpected or out.wrong:
        out.failures.append(
            f"{out.duplicates} duplicates, {out.missing} missing, {out.unexpected} unexpected, "
            f"{out.wrong} wrong answers"
        )
    return out


# -- the report ------------------------------------------------------------------------------------


def report(out: Outcome) -> str:
    n = out.lines
    lines = [
        "| Phase | Lines | Seconds | Lines/s | Steady lines/s (polls) | Load average at its start |",
        "|---|---:|---:|---:|---:|---|",
        f"| before the kill: `batches.create` to SIGKILL | {out.before.lines:,} | {out.before.seconds:.1f} | "
        f"{out.before.rate:,.0f} | {out.steady_before:,.0f} | {out.before.load} |",
        f"| after the restart: restart to `completed` | {out.after.lines:,} | {out.after.seconds:.1f} | "
        f"{out.after.rate:,.0f} | {out.steady_after:,.0f} | {out.after.load} |",
        "",
        "| Check | Value |",
        "|---|---:|",
        f"| upload of the input (`files.create`, {n:,} lines) | {out.upload_s:.2f} s |",
        f"| progress at the kill (lines in the output + error files; must be 10-90%) | "
        f"{out.durable_at_kill:,} ({out.durable_at_kill / n:.0%}) |",
        f"| `request_counts` at the last poll before the kill | {out.counted_at_kill:,} |",
        f"| server start to `/ready`: first start / restart after the kill | {out.first_ready_s:.2f} s / "
        f"{out.restart_ready_s:.2f} s |",
        f"| time to resume: restart (launched right after the kill) to the first line appended | "
        f"{out.resume_s:.2f} s |",
        f"| final status, request_counts (total, completed, failed) | {out.status}, "
        f"{', '.join(f'{c:,}' for c in out.request_counts)} |",
        f"| lines in the output + error files | {out.answered:,} (error file: {out.errors:,}) |",
        f"| duplicates (a custom_id answered more than once; must be 0) | {out.duplicates} |",
        f"| missing (a custom_id never answered; must be 0) | {out.missing} |",
        f"| unexpected custom_id / wrong answer text (must be 0) | {out.unexpected} / {out.wrong} |",
        "| requests sent twice (usage rows of the job - lines: answered before the kill, not yet synced) | "
        + ("-" if out.sent_twice is None else f"{out.sent_twice:,}")
        + " |",
    ]
    ok = not out.failures
    lines += [
        "",
        "Target: every custom_id answered exactly once after a kill -9 and a resume: "
        + ("met" if ok else "MISSED"),
    ]
    if out.usage_note:
        lines.append(f"Note: {out.usage_note}")
    if out.failures:
        lines += ["", "Failures:", *(f"- {f}" for f in out.failures)]
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="A bulk job killed with -9 and resumed (issue 19).")
    parser.add_argument("--quick", action="store_true", help="smoke run: 10,000 lines")
    parser.add_argument("--lines", type=int, default=100_000, help="lines of the job (default %(default)s)")
    parser.add_argument(
        "--kill-at", type=float, default=0.4, help="kill once this share is counted (default %(default)s)"
    )
    parser.add_argument("--timeout", type=float, default=1800, help="seconds to wait for the resumed job")
    parser.add_argument("--out", type=Path, help="append a dated section with the tables to this file")
    args = parser.parse_args(argv)
    given = argv if argv is not None else sys.argv[1:]
    if args.quick and "--lines" not in given:
        args.lines = 10_000
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    host = machine()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-batch-resume-") as tmp:
        try:
            out = measure(args, Path(tmp))
        except (PeerFailed, OSError, httpx.HTTPError, RuntimeError) as exc:
            out = Outcome(lines=args.lines, failures=[one_line(str(exc) or repr(exc), 1500)])
            print(f"FAILED: {out.failures[0]}", flush=True)
    items = [
        f"Machine: {host}; load average at the end {load_average()}; "
        f"whole run {time.monotonic() - started:.0f} s",
        f"Versions: {versions(*PACKAGES)}; modelport from {source()}",
        f"OpenAI Batch API job of {args.lines:,} chat lines (official `openai` client) against `{ENDPOINT}`, "
        "an external-model endpoint on the loopback OpenAI fake (usage tracking on); one server, killed "
        f"with SIGKILL once `request_counts` passed {args.kill_at:.0%}, restarted on the same data directory",
    ]
    publish(
        header("bulk job killed with -9 and resumed (issue 19)", items, "batch_resume.py", argv),
        report(out),
        args.out,
    )
    return 0 if not out.failures else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
