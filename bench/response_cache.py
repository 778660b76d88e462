"""The response cache (issue 17): what a hit gets through, what it adds to a query, what it costs a miss.

One ``modelport serve`` process (system endpoints off, as the tests run it) has an ``openai``
external-model endpoint in front of the loopback OpenAI fake (``peers/openai_fake.py``, the fake
of ``external_proxy.py``), queried through ``/serving-endpoints/{name}/invocations``. Its
``ai_gateway`` is switched between cells (``PUT .../ai-gateway``; changes apply at once):
``{}`` (cache off) or ``{"response_cache": {"enabled": true, "scope": "endpoint",
"ttl_seconds": 3600}}`` (cache on). The chat body has ``"temperature": 0``: a request that samples
is never looked up (``gateway/cache_keys.py``).

Configurations:

- ``echo``: the one-worker bare HTTP echo app of ``custom_model.py`` (``peers/echo_app.py``,
  uvicorn + uvloop + httptools, no access log), sent the same body as ``hits``: the HTTP ceiling
  of this machine and this client;
- ``direct``: the fake itself (its chat route, the same body plus ``model``);
- ``hits``: cache on, the same request every time (answered from the cache);
- ``misses``: cache on, every request distinct (a counter in the user's message), so every one
  is looked up, answered by the provider, and stored;
- ``cache off``: cache off, the same distinct requests as ``misses`` (the provider answers);
- ``cache off, same body``: cache off, the bytes of ``hits`` (c=1 only: the latency a hit is
  compared with);
- with ``--redis`` (on when Redis answers at 127.0.0.1:6379; ``--no-redis`` skips it), a second
  server started with ``--redis``, the cache in Redis: ``hits (redis)``, ``misses (redis)`` and
  its own ``cache off (redis server)``. Its endpoint is deleted at the end, which deletes its
  Redis keys.

Distinct requests need wrk (a Lua ``request`` hook with a counter and a token of the run, so no
two runs share a body); the same-body cells use ``loadgen.py`` (wrk as well). Before each cell
one request checks the ``x-modelport-cache`` header (``hit`` / ``miss`` / none), and
``modelport_response_cache_lookups`` on ``/metrics`` is read around the measured run: the share
of hits among its lookups is in the table.

Rounds are interleaved: the servers, the fake and the echo app start once; in every round every
(concurrency, configuration) cell is measured back to back, in an order that rotates from round
to round. The tables show the median over rounds; ratios are the median of per-round ratios
(each pair measured seconds apart, so a shared machine's drift mostly cancels out).

Run: ``python bench/response_cache.py [--quick] [--rounds 3] [--no-redis] [--out bench/RESULTS.md]``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from harness import (
    BENCH,
    CHAT,
    FAKE_OPENAI_KEY,
    HEADERS,
    PY,
    UPSTREAM_MODEL,
    PeerFailed,
    Running,
    cpu_seconds,
    first_answer,
    free_port,
    header,
    install_wrk,
    launch,
    load_average,
    machine,
    median_of,
    publish,
    rotated,
    run_arguments,
    serve_modelport,
    source,
    start_openai_fake,
    versions,
    wait_deployed,
    wait_idle,
)
from loadgen import CellResult, Load, run_cell

REDIS_URL = "redis://127.0.0.1:6379/0"
CACHE = {"enabled": True, "scope": "endpoint", "ttl_seconds": 3600}
REQUEST = {**CHAT, "temperature": 0}  # deterministic: cacheable
BODY = json.dumps(REQUEST).encode()
DIRECT_BODY = json.dumps({**REQUEST, "model": UPSTREAM_MODEL}).encode()
_COUNTER = "@@N@@"


# -- distinct requests through wrk ---------------------------------------------------------------

_WRK_DISTINCT = """\
local prefix = {prefix}
local suffix = {suffix}
local n = 0
wrk.method = "POST"
{headers}
request = function()
  n = n + 1
  return wrk.format(nil, nil, nil, prefix .. n .. suffix)
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH-RESULT {{\\"requests\\":%d,\\"duration_us\\":%d,\\"p50_us\\":%d,\\"p99_us\\":%d,"
    .. "\\"status\\":%d,\\"other\\":%d}}\\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.status, e.connect + e.read + e.write + e.timeout))
end
"""


def distinct_parts() -> tuple[str, str]:
    """The chat body split around a counter, with a token of its own: every run's requests are
    new to the cache (wrk runs one thread here, so its counter is unique within a run)."""
    content = f"{CHAT['messages'][0]['content']} ({uuid.uuid4().hex[:12]}-{_COUNTER})"
    text = json.dumps({**REQUEST, "messages": [{"role": "user", "content": content}]})
    prefix, suffix = text.split(_COUNTER)
    return prefix, suffix


def run_distinct(url: str, headers: dict[str, str], conc: int, seconds: float) -> CellResult:
    """One closed-loop wrk run (``-t1``, as ``loadgen.py``) whose every request body is new."""
    prefix, suffix = distinct_parts()
    lua_headers = "\n".join(
        f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}"
        for k, v in {"Content-Type": "application/json", **headers}.items()
    )
    script = _WRK_DISTINCT.format(prefix=json.dumps(prefix), suffix=json.dumps(suffix), headers=lua_headers)
    with tempfile.TemporaryDirectory(prefix="bench-wrk-") as tmp:
        path = Path(tmp, "distinct.lua")
        path.write_text(script)
        cmd = [
            "wrk",
            "-t1",
            f"-c{conc}",
            f"-d{max(1, round(seconds))}s",
            "--timeout=30s",
            "-s",
            str(path),
            url,
        ]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    for line in out.stdout.splitlines():
        if line.startswith("BENCH-RESULT "):
            data = json.loads(line.removeprefix("BENCH-RESULT "))
            return CellResult(
                requests=max(0, data["requests"] - data["status"]),
                seconds=data["duration_us"] / 1e6,
                p50_ms=data["p50_us"] / 1000,
                p99_ms=data["p99_us"] / 1000,
                errors=data["status"] + data["other"],
            )
    raise PeerFailed(f"wrk gave no result (exit {out.returncode}): {out.stderr.strip() or out.stdout[-500:]}")


# -- the peers -----------------------------------------------------------------------------------


@dataclass
class Server:
    """One ``modelport serve`` with one external endpoint in front of the fake."""

    role: str  # "local" (the cache in this process) or "redis"
    running: Running
    endpoint: str
    cache_on: bool = False

    @property
    def url(self) -> str:
        return f"{self.running.url}/serving-endpoints/{self.endpoint}/invocations"

    def set_cache(self, on: bool) -> None:
        if self.cache_on == on:
            return
        answer = httpx.put(
            f"{self.running.url}/api/2.0/serving-endpoints/{self.endpoint}/ai-gateway",
            json={"response_cache": CACHE} if on else {},
            headers=HEADERS,
            timeout=30,
        )
        if answer.status_code != 200:
            raise PeerFailed(f"PUT ai-gateway of {self.endpoint}: {answer.status_code} {answer.text[:500]}")
        self.cache_on = on

    def lookups(self) -> dict[str, float]:
        """``modelport_response_cache_lookups`` of the endpoint, by result."""
        text = httpx.get(f"{self.running.url}/metrics", headers=HEADERS, timeout=30).text
        found: dict[str, float] = {}
        pattern = re.compile(
            r"^modelport_response_cache_lookups(?:_total)?\{(?P<labels>[^}]*)\} (?P<value>\S+)$", re.M
        )
        for match in pattern.finditer(text):
            labels = dict(re.findall(r'(\w+)="([^"]*)"', match["labels"]))
            if labels.get("endpoint") == self.endpoint:
                found[labels.get("result", "")] = float(match["value"])
        return found


def start_server(role: str, workdir: Path, upstream: str, tag: str) -> Server:
    """``modelport serve`` (with ``--redis`` for the redis role), its endpoint answering, idle."""
    data = Path(tempfile.mkdtemp(prefix=f"mp-cache-{role}-", dir=workdir))
    extra = ["--redis", REDIS_URL] if role == "redis" else []
    running = serve_modelport(data, extra=extra, system_endpoints=False)
    name = f"cache-{tag}-{role}"
    external = {
        "provider": "openai",
        "name": UPSTREAM_MODEL,
        "task": "llm/v1/chat",
        "openai_config": {"openai_api_key_plaintext": FAKE_OPENAI_KEY, "openai_api_base": upstream},
    }
    body = {"name": name, "config": {"served_entities": [{"name": "gpt", "external_model": external}]}}
    try:
        answer = httpx.post(
            f"{running.url}/api/2.0/serving-endpoints", json=body, headers=HEADERS, timeout=30
        )
        if answer.status_code != 200:
            raise PeerFailed(f"creating {name}: {answer.status_code} {answer.text[:500]}")
        wait_deployed(running.url, name)
        server = Server(role, running, name)
        first_answer(running.proc, server.url, BODY, HEADERS, running.log, 60)
        wait_idle(running)
    except BaseException:
        running.stop()
        raise
    return server


def start_echo(workdir: Path) -> Running:
    """The echo app as ``custom_model.py`` runs it with one worker."""
    port = free_port()
    cmd = [PY, "-m", "uvicorn", "echo_app:app", "--app-dir", str(BENCH / "peers")]
    cmd += ["--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    cmd += ["--loop", "uvloop", "--http", "httptools", "--no-access-log", "--log-level", "warning"]
    log = workdir / "echo.log"
    url = f"http://127.0.0.1:{port}/invocations"
    proc = launch(cmd, log)
    running = Running(url, {}, 0.0, proc, log, f"\0never\0echo-{port}")
    try:
        first_answer(proc, url, BODY, {}, log, limit=60)
    except BaseException:
        running.stop()
        raise
    return running


def stop_all(servers: dict[str, Server], others: list[Running]) -> None:
    for server in servers.values():
        if server.role == "redis":  # deleting the endpoint deletes its keys in Redis
            httpx.delete(
                f"{server.running.url}/api/2.0/serving-endpoints/{server.endpoint}",
                headers=HEADERS,
                timeout=60,
            )
        server.running.stop()
    for running in others:
        running.stop()


# -- configurations ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    """One thing measured: a target, the cache setting there, same or distinct bodies, what
    ``x-modelport-cache`` must say."""

    key: str  # for --configs
    name: str
    target: str  # "echo", "direct", "local" or "redis"
    cache: bool = False
    distinct: bool = False
    expect: str | None = None  # the x-modelport-cache header a request gets (None: absent)


ECHO = Config("echo", "echo", "echo")
DIRECT = Config("direct", "direct (the fake)", "direct")
HITS = Config("hits", "hits", "local", cache=True, expect="hit")
MISSES = Config("misses", "misses", "local", cache=True, distinct=True, expect="miss")
OFF = Config("off", "cache off", "local", distinct=True)
OFF_SAME = Config("off-same", "cache off, same body", "local")
HITS_REDIS = Config("hits-redis", "hits (redis)", "redis", cache=True, expect="hit")
MISSES_REDIS = Config("misses-redis", "misses (redis)", "redis", cache=True, distinct=True, expect="miss")
OFF_REDIS = Config("off-redis", "cache off (redis server)", "redis", distinct=True)

#: What each concurrency measures: throughput at 64, latency at 1.
PLAN: dict[int, tuple[Config, ...]] = {
    64: (ECHO, HITS, MISSES, OFF, HITS_REDIS, MISSES_REDIS, OFF_REDIS),
    1: (DIRECT, ECHO, OFF_SAME, HITS, HITS_REDIS),
}


@dataclass
class Outcome:
    # (config, conc) -> {round: result}
    cells: dict[tuple[str, int], dict[int, CellResult]] = field(default_factory=dict)
    # (config, conc) -> hits and lookups the server counted during the measured runs
    lookups: dict[tuple[str, int], list[float]] = field(default_factory=dict)
    # (config, conc) -> {round: CPU microseconds of the answering server (its processes) per request}
    cpu_us: dict[tuple[str, int], dict[int, float]] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)


@dataclass
class Peers:
    echo: Running
    fake: Running
    servers: dict[str, Server]


def check_header(url: str, body: bytes, headers: dict[str, str], expect: str | None) -> None:
    """One request (two for a hit: the first may store it); the answer must be a 200 saying
    ``expect`` in ``x-modelport-cache``."""
    with httpx.Client(timeout=30, headers={"Content-Type": "application/json", **headers}) as client:
        for _ in range(2 if expect == "hit" else 1):
            answer = client.post(url, content=body)
        if answer.status_code != 200 or answer.headers.get("x-modelport-cache") != expect:
            raise PeerFailed(
                f"{url}: expected 200 with x-modelport-cache {expect}, got {answer.status_code} "
                f"{answer.headers.get('x-modelport-cache')}: {answer.text[:300]}"
            )


def measure(
    peers: Peers, config: Config, conc: int, args: argparse.Namespace, out: Outcome, round_no: int
) -> None:
    server = peers.servers.get(config.target)
    if config.target == "echo":
        url, headers, body, answering = peers.echo.url, {}, BODY, peers.echo
    elif config.target == "direct":
        url, headers, body, answering = peers.fake.url, dict(peers.fake.headers), DIRECT_BODY, peers.fake
    else:
        assert server is not None
        answering = server.running
        server.set_cache(config.cache)
        url, headers, body = server.url, HEADERS, BODY
        check = BODY
        if config.distinct:
            prefix, suffix = distinct_parts()
            check = f"{prefix}0{suffix}".encode()
        check_header(url, check, headers, config.expect)
    run: Callable[[float], CellResult]
    if config.distinct:

        def run(seconds: float) -> CellResult:
            return run_distinct(url, headers, conc, seconds)
    else:

        def run(seconds: float) -> CellResult:
            return run_cell(Load(url, body, headers, conc, duration=seconds, warmup=0), args.driver)

    if args.warmup > 0:
        run(args.warmup)
    before = server.lookups() if server is not None and config.cache else {}
    pids = answering.pids()
    cpu = cpu_seconds(pids)
    result = run(args.duration)
    cpu = cpu_seconds(pids) - cpu
    if result.requests:
        out.cpu_us.setdefault((config.name, conc), {})[round_no] = cpu / result.requests * 1e6
    if server is not None and config.cache:
        after = server.lookups()
        delta = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after}
        seen = out.lookups.setdefault((config.name, conc), [0.0, 0.0])
        seen[0] += delta.get("hit", 0.0)
        seen[1] += sum(delta.values())
    out.cells.setdefault((config.name, conc), {})[round_no] = result
    print(
        f"  c={conc:<3} {config.name:<26} {result.rps:>8,.0f} req/s  p50 {result.p50_ms:6.2f} ms  "
        f"p99 {result.p99_ms:7.2f} ms  errors {result.errors}",
        flush=True,
    )


def run_rounds(peers: Peers, plan: dict[int, tuple[Config, ...]], args: argparse.Namespace) -> Outcome:
    out = Outcome()
    concs = list(plan)
    for round_no in range(args.rounds):
        print(f"[round {round_no + 1}/{args.rounds}] load average {load_average()}", flush=True)
        for ci, conc in enumerate(rotated(concs, round_no)):
            for config in rotated(plan[conc], round_no + ci):
                try:
                    measure(peers, config, conc, args, out, round_no)
                except (PeerFailed, OSError, httpx.HTTPError, subprocess.SubprocessError) as exc:
                    why = " ".join(str(exc).split())[:1500]
                    out.failures.append(f"round {round_no + 1}, c={conc}, {config.name}: {why}")
                    print(f"  FAILED: {why}", flush=True)
    return out


# -- report --------------------------------------------------------------------------------------


Paired = tuple[float, list[float]]


def _median(values: list[float]) -> Paired | None:
    return (statistics.median(values), values) if values else None


def paired(out: Outcome, mine: str, base: str, conc: int) -> Paired | None:
    """The median over rounds of (``mine``'s req/s ÷ ``base``'s, same round), and each round's."""
    a, b = out.cells.get((mine, conc), {}), out.cells.get((base, conc), {})
    return _median([a[r].rps / b[r].rps for r in sorted(a) if r in b and b[r].rps])


def paired_cpu(out: Outcome, mine: str, base: str, conc: int) -> Paired | None:
    """The same for the server's CPU time per request."""
    a, b = out.cpu_us.get((mine, conc), {}), out.cpu_us.get((base, conc), {})
    return _median([a[r] / b[r] for r in sorted(a) if b.get(r)])


def paired_p50(out: Outcome, mine: str, base: str, conc: int, minus: str | None = None) -> Paired | None:
    """The median over rounds of (``mine``'s p50 - ``base``'s [+ ``minus``'s], same round), in ms."""
    a, b = out.cells.get((mine, conc), {}), out.cells.get((base, conc), {})
    c = out.cells.get((minus, conc), {}) if minus else {}
    return _median(
        [
            a[r].p50_ms - b[r].p50_ms + (c[r].p50_ms if minus else 0.0)
            for r in sorted(a)
            if r in b and (not minus or r in c)
        ]
    )


#: (label, mine, base): req/s ratios at c=64 (and the server's CPU per request).
RATIOS = (
    ("hits ÷ echo", HITS, ECHO),
    ("hits ÷ cache off", HITS, OFF),
    ("misses ÷ cache off", MISSES, OFF),
    ("hits (redis) ÷ echo", HITS_REDIS, ECHO),
    ("hits (redis) ÷ hits", HITS_REDIS, HITS),
    ("misses (redis) ÷ cache off (redis server)", MISSES_REDIS, OFF_REDIS),
)
#: (label, mine, base, minus): p50 differences at c=1, mine - base (+ minus).
LATENCIES = (
    ("hit - cache off, same body (the provider answering at once)", HITS, OFF_SAME, None),
    ("hit - (cache off, same body - direct): the server's overhead net of the fake", HITS, OFF_SAME, DIRECT),
    ("hit - echo (all the server does for a hit)", HITS, ECHO, None),
    ("cache off, same body - direct (the server's own overhead)", OFF_SAME, DIRECT, None),
    ("hit (redis) - cache off, same body", HITS_REDIS, OFF_SAME, None),
    ("hit (redis) - hit", HITS_REDIS, HITS, None),
)


def report(out: Outcome, plan: dict[int, tuple[Config, ...]], work: tuple[float, float]) -> str:
    lines = ["### Per configuration (median over rounds)", ""]
    lines += [
        "`CPU µs/req` = CPU time of the answering server's processes during the measured run over the "
        "requests wrk counted (the fake's own CPU is not in it); `hit share` = hits among the endpoint's "
        "cache lookups during the measured runs (`modelport_response_cache_lookups`, all rounds).",
        "",
        "| conc | configuration | req/s | p50 ms | p99 ms | errors | CPU µs/req | hit share |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for conc, configs in sorted(plan.items(), reverse=True):
        for config in configs:
            results = out.cells.get((config.name, conc))
            if not results:
                continue
            m = median_of(list(results.values()))
            cpu = out.cpu_us.get((config.name, conc))
            seen = out.lookups.get((config.name, conc))
            cells = [
                str(conc),
                config.name,
                f"{m.rps:,.0f}",
                f"{m.p50_ms:.2f}",
                f"{m.p99_ms:.2f}",
                str(m.errors),
            ]
            cells.append(f"{statistics.median(cpu.values()):.0f}" if cpu else "")
            cells.append(f"{seen[0] / seen[1]:.1%} of {seen[1]:,.0f}" if seen and seen[1] else "")
            lines.append(f"| {' | '.join(cells)} |")
    lines += ["", "### Ratios at c=64 (median of per-round ratios)", ""]
    lines += ["| measure | req/s | by round | server CPU per request | by round |", "|---|---:|---|---:|---|"]
    for label, mine, base in RATIOS:
        rps, cpu = paired(out, mine.name, base.name, 64), paired_cpu(out, mine.name, base.name, 64)
        if rps:
            by_round = ", ".join(f"{r:.3f}" for r in rps[1])
            cpu_cells = f"{cpu[0]:.3f} | {', '.join(f'{r:.3f}' for r in cpu[1])}" if cpu else " | "
            lines.append(f"| {label} | {rps[0]:.3f} | {by_round} | {cpu_cells} |")
    lines += ["", "### p50 differences at c=1 (median of per-round differences)", ""]
    lines += ["| measure | ms | by round |", "|---|---:|---|"]
    for label, mine, base, minus in LATENCIES:
        d = paired_p50(out, mine.name, base.name, 1, minus.name if minus else None)
        if d:
            lines.append(f"| {label} | {d[0]:+.3f} | {', '.join(f'{x:+.3f}' for x in d[1])} |")
    lines += ["", *targets(out)]
    base = out.cpu_us.get((OFF.name, 64))
    lines += [
        "",
        f"The cache's own work timed in-process (`cache_work`: keys, the LRU, the counter; CPU time): "
        f"{work[0]:.1f} µs a miss, {work[1]:.1f} µs a hit"
        + (
            f"; a miss's is {work[0] / statistics.median(base.values()):.1%} of the server's CPU per "
            f"`cache off` request at c=64 ({statistics.median(base.values()):.0f} µs)."
            if base
            else "."
        ),
    ]
    if out.failures:
        lines += ["", "### Failed", ""]
        lines += [f"- {why}" for why in out.failures]
    return "\n".join(lines) + "\n"


def targets(out: Outcome) -> list[str]:
    """Issue 17's targets; the added p50 is read two ways (see the notes under the table)."""
    rows = []
    if pr := paired(out, HITS.name, ECHO.name, 64):
        met = "yes" if pr[0] >= 0.2 else "NO"
        rows.append(f"| hits at c=64 ≥ 20% of the echo app's req/s | {pr[0]:.1%} | {met} |")
    if d := paired_p50(out, HITS.name, OFF_SAME.name, 1):
        met = "yes" if d[0] <= 0.3 else "NO"
        rows.append(
            f"| a hit's added p50 at c=1 ≤ 0.3 ms (a: over `cache off, same body`) | {d[0]:+.3f} ms | {met} |"
        )
    if d := paired_p50(out, HITS.name, OFF_SAME.name, 1, DIRECT.name):
        met = "yes" if d[0] <= 0.3 else "NO"
        rows.append(
            f"| a hit's added p50 at c=1 ≤ 0.3 ms (b: over `cache off, same body` - `direct`) "
            f"| {d[0]:+.3f} ms | {met} |"
        )
    if pr := paired(out, MISSES.name, OFF.name, 64):
        cost = 1 - pr[0]
        met = "yes" if cost <= 0.03 else "NO"
        rows.append(f"| the cache's cost on misses at c=64 ≤ 3% of req/s | {cost:+.1%} | {met} |")
    if cpu := paired_cpu(out, MISSES.name, OFF.name, 64):
        cost = cpu[0] - 1
        met = "yes" if cost <= 0.03 else "NO"
        rows.append(f"| the same, read as the server's CPU per request | {cost:+.1%} | {met} |")
    if not rows:
        return []
    notes = [
        "",
        "(a) compares a hit with the same request to the same endpoint with the cache off, answered by",
        "the loopback fake (which answers at once: `direct`'s p50); (b) takes the fake's direct p50",
        "off that path first, leaving the server's own overhead. A negative value: a hit is that much",
        "faster than the server's overhead alone.",
    ]
    return ["### Targets (issue 17)", "", "| target | measured | met |", "|---|---:|:---:|", *rows, *notes]


def cache_work(n: int = 20_000) -> tuple[float, float]:
    """CPU microseconds of the cache's own work in this process, for a miss (the checks, the keys,
    a lookup in the in-process LRU, the stored entry, the lookup counter) and for a hit (the same
    less the store): a reading of the cost that the machine's other load does not blur."""
    import asyncio

    import orjson

    from modelport.gateway.cache_keys import deterministic, keys_for
    from modelport.gateway.cache_store import Entry, LocalCache
    from modelport.metrics import Metrics

    answer = orjson.dumps(
        {
            "id": "chatcmpl-bench",
            "object": "chat.completion",
            "model": UPSTREAM_MODEL,
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": "Paris."}, "finish_reason": "stop"}
            ],
            "usage": {"prompt_tokens": 14, "completion_tokens": 2, "total_tokens": 16},
        }
    )
    prefix, suffix = distinct_parts()
    requests = [orjson.loads(f"{prefix}{i}{suffix}") for i in range(n)]
    counter = Metrics().response_cache

    async def run() -> tuple[float, float]:
        store = LocalCache(256 * 1024 * 1024)
        started = time.process_time()
        for data in requests:
            deterministic(data)
            keys = keys_for(data, "gpt", "", semantic=False)
            await store.get("group", keys.exact)
            counter.labels("bench", "miss").inc()
            await store.put("group", keys.exact, Entry("gpt", answer), 3600)
        miss = (time.process_time() - started) / n * 1e6
        started = time.process_time()
        for data in requests:
            deterministic(data)
            keys = keys_for(data, "gpt", "", semantic=False)
            await store.get("group", keys.exact)
            counter.labels("bench", "hit").inc()
        return miss, (time.process_time() - started) / n * 1e6

    return asyncio.run(run())


def uptime() -> str:
    done = subprocess.run(["uptime"], capture_output=True, text=True, check=False)
    return done.stdout.strip() or f"load average {load_average()}"


def redis_answers() -> bool:
    try:
        import redis

        return bool(redis.Redis.from_url(REDIS_URL, socket_timeout=2).ping())
    except Exception:
        return False


# -- main ----------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="What modelport's response cache gets through and costs.")
    run_arguments(parser, "1 round, 2 s cells", drivers=("auto", "wrk"))  # wrk is needed
    parser.add_argument("--no-redis", action="store_true", help="skip the server with its cache in Redis")
    parser.add_argument(
        "--configs",
        default=",".join(dict.fromkeys(c.key for cs in PLAN.values() for c in cs)),
        help="comma-separated subset of the configurations (default: all, %(default)s)",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.duration = 1, 2.0
    args.configs = {k.strip() for k in args.configs.split(",") if k.strip()}
    unknown = args.configs - {c.key for cs in PLAN.values() for c in cs}
    if unknown:
        parser.error(f"unknown configurations {sorted(unknown)}")
    return args


def select(args: argparse.Namespace) -> dict[int, tuple[Config, ...]]:
    """:data:`PLAN` less what ``--configs`` and ``--no-redis`` leave out."""
    plan = {}
    for conc, configs in PLAN.items():
        kept = [c for c in configs if c.key in args.configs and not (args.no_redis and c.target == "redis")]
        if kept:
            plan[conc] = tuple(kept)
    return plan


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    install_wrk()
    if not shutil.which("wrk"):
        print("wrk is needed for distinct requests (apt-get install wrk)", file=sys.stderr)
        return 2
    if not args.no_redis and not redis_answers():
        print(f"note: no Redis answers at {REDIS_URL}; skipping the Redis server", flush=True)
        args.no_redis = True
    plan = select(args)
    if not any(c.target == "redis" for cs in plan.values() for c in cs):
        args.no_redis = True
    host = machine()  # before the run: the load average is the machine's, not ours
    up_before = uptime()
    print(f"{up_before}; {sum(len(c) for c in plan.values())} cells x {args.rounds} rounds", flush=True)
    work = cache_work()
    print(f"the cache's own work in-process: {work[0]:.1f} µs a miss, {work[1]:.1f} µs a hit", flush=True)
    tag = uuid.uuid4().hex[:8]
    servers: dict[str, Server] = {}
    others: list[Running] = []
    with tempfile.TemporaryDirectory(prefix="bench-cache-") as tmp:
        workdir = Path(tmp)
        try:
            fake = start_openai_fake(workdir)
            others.append(fake)
            echo = start_echo(workdir)
            others.append(echo)
            upstream = fake.url.removesuffix("/chat/completions")
            for role in ["local"] + ([] if args.no_redis else ["redis"]):
                print(f"starting the {role} server", flush=True)
                servers[role] = start_server(role, workdir, upstream, tag)
            out = run_rounds(Peers(echo, fake, servers), plan, args)
        finally:
            stop_all(servers, others)
    up_after = uptime()
    items = [
        f"Machine: {host}",
        f"`uptime` before: {up_before}; after: {up_after}",
        f"Versions: {versions('modelport', 'uvicorn', 'httpx', 'redis')}; modelport from {source()}",
        f"Load generator: wrk -t1, closed loop, {args.warmup:g} s warm-up + {args.duration:g} s per cell, "
        f"{args.rounds} interleaved round(s); one server process (a second one with `--redis` for the redis "
        f"rows); an `openai` endpoint in front of the loopback OpenAI fake, body `{BODY.decode()}` "
        f"(distinct requests: a counter appended to the message); cache `{json.dumps(CACHE)}`",
    ]
    publish(
        header("response cache (issue 17)", items, "response_cache.py", argv),
        report(out, plan, work),
        args.out,
    )
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
