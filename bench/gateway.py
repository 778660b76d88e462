"""What the AI-gateway features cost: req/s and latency of one endpoint with each of them on and off.

Two kinds of endpoint are measured, each on the same ``modelport serve``:

- ``external``: an ``openai`` external-model endpoint in front of the loopback OpenAI fake
  (``peers/openai_fake.py``), queried through ``/serving-endpoints/{name}/invocations`` with
  the chat body of ``external_proxy.py``;
- ``custom``: the LogisticRegression of ``custom_model.py`` logged into the embedded registry,
  queried with a 1-row ``dataframe_records`` body.

Configurations (``PUT /api/2.0/serving-endpoints/{name}/ai-gateway`` between cells; changes
apply at once, so one server serves them all):

- ``off``: no ai_gateway (``{}``);
- ``tables``: usage tracking and an inference table on: two records appended to the durable
  spool (one ``os.write`` each) before every answer, flushed to Delta by a background thread;
- ``tables+limits``: plus a calls limit keyed by user, too high to be reached, counted in-process;

and on a second server started with ``--redis redis://127.0.0.1:6379/0``:

- ``off (redis server)``: the same ``off``, as that server's own baseline;
- ``limits-redis``: the calls limit alone, counted in Redis (a Lua script per query). The
  endpoints there have names unique to the run, so its Redis keys collide with nobody's.

Rounds are interleaved as in ``custom_model.py``: every round starts both servers (fresh data
directories) and one fake, then measures every (endpoint, concurrency) with every configuration
back to back, in orders that rotate from round to round, then stops both servers. The tables
show the median over rounds; the req/s ratio to ``off`` is the median of the per-round ratios
(each pair measured seconds apart, so drift on a shared machine cancels out).

After each round the stopped servers' tables (stopping flushes the spool) are counted with
``modelport.tables.query.query`` in a separate ``python -c``, and compared with the answers
wrk counted in the configurations that record (warm-up included). wrk does not count the
requests still in flight when a run ends, which the server answers and records all the same,
so rows may exceed answers by up to the concurrency of each wrk run.

Run: ``python bench/gateway.py [--quick] [--rounds 3] [--concurrency 1,32,64]
[--endpoints external,custom] [--no-redis] [--out bench/RESULTS.md]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
from harness import (
    CHAT,
    FAKE_OPENAI_KEY,
    FEATURES,
    HEADERS,
    MODEL_NAME,
    PY,
    ROOT,
    UPSTREAM_MODEL,
    PeerFailed,
    Running,
    chat_body,
    first_answer,
    header,
    install_wrk,
    load_average,
    log_tail,
    machine,
    median_of,
    publish,
    register_model,
    rotated,
    serve_modelport,
    source,
    start_openai_fake,
    train_model,
    versions,
    wait_deployed,
    wait_idle,
)
from loadgen import CellResult, Load, driver_name, run_cell

REDIS_URL = "redis://127.0.0.1:6379/0"
ENDPOINT_KINDS = ("external", "custom")
TABLE_PREFIX = {"external": "bench_chat", "custom": "bench_custom"}
LIMIT = {"calls": 100_000_000, "renewal_period": "minute", "key": "user"}


def _tables(kind: str) -> dict[str, Any]:
    return {
        "usage_tracking_config": {"enabled": True},
        "inference_table_config": {
            "catalog_name": "main",
            "schema_name": "default",
            "table_name_prefix": TABLE_PREFIX[kind],
            "enabled": True,
        },
    }


@dataclass(frozen=True)
class Config:
    """One AI-gateway configuration: its name, the server it runs on, its body, and whether it records."""

    name: str
    server: str  # "local" (in-process counters) or "redis"
    records: bool
    limits: bool

    def gateway(self, kind: str) -> dict[str, Any]:
        body: dict[str, Any] = _tables(kind) if self.records else {}
        if self.limits:
            body["rate_limits"] = [LIMIT]
        return body

    @property
    def baseline(self) -> str:
        return "off" if self.server == "local" else "off (redis server)"


CONFIGS = (
    Config("off", "local", records=False, limits=False),
    Config("tables", "local", records=True, limits=False),
    Config("tables+limits", "local", records=True, limits=True),
    Config("off (redis server)", "redis", records=False, limits=False),
    Config("limits-redis", "redis", records=False, limits=True),
)


def custom_body() -> bytes:
    rng = np.random.default_rng(1)
    row = dict(zip(FEATURES, np.round(rng.normal(size=5), 4).tolist(), strict=True))
    return orjson.dumps({"dataframe_records": [row]})


BODIES = {"external": chat_body(None), "custom": custom_body()}


# -- servers -----------------------------------------------------------------------------------


@dataclass
class Server:
    """One ``modelport serve`` with an endpoint of each kind."""

    role: str  # "local" or "redis"
    running: Running
    base: str
    data: Path
    endpoints: dict[str, str]  # kind -> endpoint name
    current: dict[str, str] = field(default_factory=dict)  # kind -> configuration set now

    def url(self, kind: str) -> str:
        return f"{self.base}/serving-endpoints/{self.endpoints[kind]}/invocations"

    def set_gateway(self, kind: str, config: Config) -> None:
        if self.current.get(kind) == config.name:
            return
        name = self.endpoints[kind]
        answer = httpx.put(
            f"{self.base}/api/2.0/serving-endpoints/{name}/ai-gateway",
            json=config.gateway(kind),
            headers=HEADERS,
            timeout=30,
        )
        if answer.status_code != 200:
            raise PeerFailed(f"PUT ai-gateway of {name}: {answer.status_code} {answer.text[:500]}")
        self.current[kind] = config.name


@dataclass(frozen=True)
class Model:
    """The LogisticRegression of ``custom_model.py``, trained once for the whole run."""

    model: object
    signature: object


def start_server(
    role: str, workdir: Path, kinds: Sequence[str], model: Model, upstream: str, tag: str
) -> Server:
    """``modelport serve`` (system endpoints off, as the tests run it), with the endpoints of
    ``kinds`` created and answering, idle."""
    data = Path(tempfile.mkdtemp(prefix=f"mp-{role}-", dir=workdir))
    extra = ["--redis", REDIS_URL] if role == "redis" else []
    started = time.monotonic()
    running = serve_modelport(data, extra=extra, system_endpoints=False)
    base = running.url
    endpoints = {kind: f"gw-{kind}-{tag}-{role}" for kind in kinds}
    try:
        with httpx.Client(base_url=base, headers=HEADERS, timeout=30) as client:
            if "custom" in kinds:
                try:
                    register_model(base, model.model, model.signature)
                except Exception as exc:
                    raise PeerFailed(f"registering the model through MLflow failed: {exc!r}") from exc
            for kind, name in endpoints.items():
                if kind == "external":
                    external = {
                        "provider": "openai",
                        "name": UPSTREAM_MODEL,
                        "task": "llm/v1/chat",
                        "openai_config": {
                            "openai_api_key_plaintext": FAKE_OPENAI_KEY,
                            "openai_api_base": upstream,
                        },
                    }
                    entity: dict[str, Any] = {"name": "gpt", "external_model": external}
                else:
                    entity = {"entity_name": MODEL_NAME, "entity_version": "1", "workload_size": "Small"}
                body = {"name": name, "config": {"served_entities": [entity]}}
                answer = client.post("/api/2.0/serving-endpoints", json=body)
                if answer.status_code != 200:
                    raise PeerFailed(f"creating {name}: {answer.status_code} {answer.text[:500]}")
        for kind, name in endpoints.items():
            wait_deployed(base, name)
            url = f"{base}/serving-endpoints/{name}/invocations"
            first_answer(running.proc, url, BODIES[kind], HEADERS, running.log, 60)
        running.startup_s = time.monotonic() - started
        wait_idle(running)
    except BaseException:
        running.stop()
        raise
    return Server(role, running, base, data, endpoints)


def count_rows(server: Server) -> dict[str, dict[str, int]]:
    """Rows per endpoint in ``system.serving.endpoint_usage`` and in each endpoint's inference
    table, read with ``modelport.tables.query.query`` in a fresh interpreter (after the stop)."""
    root = str(server.data / "tables")
    spec = {
        kind: {"endpoint": name, "payload": f"main.default.{TABLE_PREFIX[kind]}_payload"}
        for kind, name in server.endpoints.items()
    }
    code = (
        "import json, sys\n"
        "from modelport.tables.query import discover_tables, query\n"
        "root, spec = sys.argv[1], json.loads(sys.argv[2])\n"
        "known = discover_tables(root)\n"
        "out = {}\n"
        "for kind, s in spec.items():\n"
        "    usage = payload = 0\n"
        "    if 'system.serving.endpoint_usage' in known:\n"
        "        sql = \"SELECT count(*) FROM system.serving.endpoint_usage WHERE endpoint_name = '%s'\"\n"
        "        usage = query(sql % s['endpoint'], root)[1][0][0]\n"
        "    if s['payload'] in known:\n"
        "        payload = query('SELECT count(*) FROM ' + s['payload'], root)[1][0][0]\n"
        "    out[kind] = {'usage': int(usage), 'payload': int(payload)}\n"
        "print(json.dumps(out))\n"
    )
    done = subprocess.run(
        [PY, "-c", code, root, json.dumps(spec)], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    if done.returncode != 0:
        raise PeerFailed(f"counting the rows failed: {done.stderr.strip()[-1500:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


# -- rounds ------------------------------------------------------------------------------------


@dataclass
class Ledger:
    """Answers wrk counted (warm-up included) while an endpoint recorded, and the wrk runs' slack."""

    answered: int = 0
    in_flight: int = 0  # the sum of the concurrency of every wrk run: at most this many uncounted
    errors: int = 0
    usage_rows: int = 0
    payload_rows: int = 0


@dataclass
class Outcome:
    # (kind, config, conc) -> one result per round
    cells: dict[tuple[str, str, int], list[CellResult]] = field(default_factory=dict)
    # (kind, config, conc) -> {round: result}, to pair a configuration with its off of the same round
    by_round: dict[tuple[str, str, int], dict[int, CellResult]] = field(default_factory=dict)
    ledgers: dict[tuple[str, str], Ledger] = field(default_factory=dict)  # (server role, kind)
    startups: dict[str, list[float]] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)


def measure(
    server: Server, kind: str, conc: int, args: argparse.Namespace, ledger: Ledger | None
) -> CellResult:
    """A warm-up run and a measured run of wrk; both are counted in ``ledger`` when it records."""
    load = Load(server.url(kind), BODIES[kind], HEADERS, conc, duration=args.duration, warmup=0)
    runs = []
    if args.warmup > 0:
        runs.append(run_cell(Load(load.url, load.body, load.headers, conc, args.warmup, 0), args.driver))
    result = run_cell(load, args.driver)
    runs.append(result)
    if ledger is not None:
        for run in runs:
            ledger.answered += run.requests
            ledger.errors += run.errors
            ledger.in_flight += conc
    return result


def run_round(
    round_no: int,
    workdir: Path,
    model: Model,
    configs: list[Config],
    kinds: list[str],
    concurrencies: list[int],
    args: argparse.Namespace,
    out: Outcome,
) -> None:
    tag = uuid.uuid4().hex[:8]
    roles = sorted({c.server for c in configs}, key=["local", "redis"].index)
    fake = start_openai_fake(workdir) if "external" in kinds else None
    servers: dict[str, Server] = {}
    try:
        upstream = fake.url.removesuffix("/chat/completions") if fake is not None else ""
        for role in rotated(roles, round_no):
            print(f"[round {round_no + 1}/{args.rounds}] starting the {role} server", flush=True)
            servers[role] = server = start_server(role, workdir, kinds, model, upstream, tag)
            out.startups.setdefault(role, []).append(server.running.startup_s)
            print(f"  ready with its endpoints after {server.running.startup_s:.1f} s", flush=True)
        for config in configs:
            for kind in kinds:
                if config.records:  # only servers that record are checked
                    out.ledgers.setdefault((config.server, kind), Ledger())
        for kind in rotated(kinds, round_no):
            for ci, conc in enumerate(rotated(concurrencies, round_no)):
                for config in rotated(configs, round_no + ci):
                    server = servers[config.server]
                    server.set_gateway(kind, config)
                    ledger = out.ledgers[(config.server, kind)] if config.records else None
                    result = measure(server, kind, conc, args, ledger)
                    key = (kind, config.name, conc)
                    out.cells.setdefault(key, []).append(result)
                    out.by_round.setdefault(key, {})[round_no] = result
                    print(
                        f"  {kind:<8} c={conc:<3} {config.name:<20} {result.rps:>8,.0f} req/s  "
                        f"p50 {result.p50_ms:7.2f} ms  p99 {result.p99_ms:7.2f} ms  errors {result.errors}",
                        flush=True,
                    )
    finally:
        for server in servers.values():
            server.running.stop()
        if fake is not None:
            fake.stop()
    for role, server in servers.items():
        if code := server.running.proc.returncode:
            print(f"  note: the {role} server exited with status {code}: {log_tail(server.running.log, 600)}")
        counts = count_rows(server)
        for kind, found in counts.items():
            if (role, kind) not in out.ledgers and not (found["usage"] or found["payload"]):
                continue  # a server that never recorded, and has no rows: nothing to compare
            ledger = out.ledgers.setdefault((role, kind), Ledger())
            ledger.usage_rows += found["usage"]
            ledger.payload_rows += found["payload"]
        print(f"  rows in the {role} server's tables: {counts}", flush=True)


def run_rounds(
    model: Model,
    configs: list[Config],
    kinds: list[str],
    concurrencies: list[int],
    args: argparse.Namespace,
) -> Outcome:
    out = Outcome()
    with tempfile.TemporaryDirectory(prefix="bench-gateway-") as tmp:
        for round_no in range(args.rounds):
            try:
                run_round(round_no, Path(tmp), model, configs, kinds, concurrencies, args, out)
            except (PeerFailed, OSError, httpx.HTTPError, subprocess.SubprocessError) as exc:
                why = " ".join(str(exc).split())
                out.failures.append(f"round {round_no + 1}: {why[:1500]}")
                print(f"  FAILED: {why[:2000]}", flush=True)
    return out


# -- report ------------------------------------------------------------------------------------


def paired_ratio(out: Outcome, kind: str, config: Config, conc: int) -> tuple[float, list[float]] | None:
    """The median over rounds of (this configuration's req/s ÷ its baseline's, same round)."""
    mine = out.by_round.get((kind, config.name, conc), {})
    base = out.by_round.get((kind, config.baseline, conc), {})
    ratios = [mine[r].rps / base[r].rps for r in sorted(mine) if r in base and base[r].rps]
    return (statistics.median(ratios), ratios) if ratios else None


def report(out: Outcome, configs: list[Config], kinds: list[str], concurrencies: list[int]) -> str:
    lines = ["### Per configuration (median over rounds)", ""]
    lines += [
        "`÷ off` = the median over rounds of the configuration's req/s over `off`'s in the same round "
        "(for the Redis server, over that server's own `off`); `added` = its median p50 (p99) minus "
        "the baseline's.",
        "",
        "| endpoint | conc | configuration | req/s | p50 ms | p99 ms | errors | ÷ off "
        "| added p50 ms | added p99 ms |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for kind in kinds:
        for conc in concurrencies:
            for config in configs:
                results = out.cells.get((kind, config.name, conc))
                if not results:
                    continue
                m = median_of(results)
                base_results = out.cells.get((kind, config.baseline, conc))
                ratio, added50, added99 = "", "", ""
                if config.name != config.baseline and base_results:
                    b = median_of(base_results)
                    pr = paired_ratio(out, kind, config, conc)
                    ratio = f"{pr[0]:.3f}" if pr else "n/a"
                    added50, added99 = f"{m.p50_ms - b.p50_ms:+.2f}", f"{m.p99_ms - b.p99_ms:+.2f}"
                lines.append(
                    f"| {kind} | {conc} | {config.name} | {m.rps:,.0f} | {m.p50_ms:.2f} | {m.p99_ms:.2f} | "
                    f"{m.errors} | {ratio} | {added50} | {added99} |"
                )
    lines += ["", "### Per-round req/s ratios to `off` (same round, back to back)", ""]
    lines += ["| endpoint | conc | configuration | ratios by round |", "|---|---:|---|---|"]
    for kind in kinds:
        for conc in concurrencies:
            for config in configs:
                if config.name == config.baseline:
                    continue
                pr = paired_ratio(out, kind, config, conc)
                if pr:
                    lines.append(
                        f"| {kind} | {conc} | {config.name} | {', '.join(f'{r:.3f}' for r in pr[1])} |"
                    )
    lines += ["", "### Table rows written vs answers counted (all rounds)", ""]
    lines += [
        "Answers: wrk's 2xx count (warm-up runs included) while the endpoint recorded; wrk does not "
        "count the requests in flight when a run ends, at most the `slack` (the sum of each run's "
        "concurrency), which the server answers and records as well.",
        "",
        "| server | endpoint | answered | errors | usage rows | inference rows | rows - answered "
        "| slack | match |",
        "|---|---|---:|---:|---:|---:|---:|---:|:---:|",
    ]
    for (role, kind), ledger in out.ledgers.items():
        extra = ledger.usage_rows - ledger.answered
        ok = 0 <= extra <= ledger.in_flight + ledger.errors and ledger.usage_rows == ledger.payload_rows
        lines.append(
            f"| {role} | {kind} | {ledger.answered:,} | {ledger.errors} | {ledger.usage_rows:,} | "
            f"{ledger.payload_rows:,} | {extra:+,} | {ledger.in_flight:,} | {'yes' if ok else 'NO'} |"
        )
    if out.startups:
        lines += ["", "### Server start to every endpoint answering and idle (median over rounds)", ""]
        lines += ["| server | seconds |", "|---|---:|"]
        lines += [f"| {role} | {statistics.median(s):.1f} |" for role, s in out.startups.items()]
    lines += ["", *targets(out, configs, kinds, concurrencies)]
    if out.failures:
        lines += ["", "### Failed", ""]
        lines += [f"- {why}" for why in out.failures]
    return "\n".join(lines) + "\n"


def targets(out: Outcome, configs: list[Config], kinds: list[str], concurrencies: list[int]) -> list[str]:
    """The issue's target: usage tracking + inference tables cost ≤ 5% of req/s."""
    tables = next((c for c in configs if c.name == "tables"), None)
    if tables is None:
        return []
    rows = []
    for kind in kinds:
        for conc in concurrencies:
            pr = paired_ratio(out, kind, tables, conc)
            if pr:
                rows.append(
                    f"| {kind}, c={conc}: `tables` req/s ≥ 0.95 x `off` | {pr[0]:.3f} | "
                    f"{'yes' if pr[0] >= 0.95 else 'NO'} |"
                )
    if not rows:
        return []
    return ["### Target", "", "| target | measured | met |", "|---|---:|:---:|", *rows]


def all_versions() -> str:
    found = [v for v in [versions("modelport", "uvicorn", "deltalake", "redis", "scikit-learn")] if v]
    with_redis = subprocess.run(["redis-server", "--version"], capture_output=True, text=True, check=False)
    if with_redis.returncode == 0:
        found.append(with_redis.stdout.split()[2].replace("v=", "Redis server "))
    return ", ".join(found)


# -- main --------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="What modelport's AI-gateway features cost in req/s and latency."
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 1 round, 2 s cells, concurrency 1 and 32"
    )
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default %(default)s)")
    parser.add_argument(
        "--duration", type=float, default=5.0, help="measured seconds per cell (default %(default)s)"
    )
    parser.add_argument(
        "--warmup", type=float, default=1.0, help="warm-up seconds per cell (default %(default)s)"
    )
    parser.add_argument(
        "--concurrency", default="1,32,64", help="closed-loop connections (default %(default)s)"
    )
    parser.add_argument(
        "--endpoints", default=",".join(ENDPOINT_KINDS), help="comma-separated subset of %(default)s"
    )
    parser.add_argument("--no-redis", action="store_true", help="skip the server with Redis counters")
    parser.add_argument("--driver", choices=["auto", "wrk", "python"], default="auto", help="load generator")
    parser.add_argument(
        "--out", type=Path, help="append a dated section with the tables to this markdown file"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.duration, args.concurrency = 1, 2.0, "1,32"
    args.endpoints = [k.strip() for k in args.endpoints.split(",") if k.strip()]
    unknown = set(args.endpoints) - set(ENDPOINT_KINDS)
    if unknown:
        parser.error(f"unknown endpoints {sorted(unknown)}; choose from {','.join(ENDPOINT_KINDS)}")
    return args


def redis_answers() -> bool:
    try:
        import redis

        return bool(redis.Redis.from_url(REDIS_URL, socket_timeout=2).ping())
    except Exception:
        return False


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    concurrencies = [int(x) for x in args.concurrency.split(",")]
    configs = list(CONFIGS)
    if not args.no_redis and not redis_answers():
        print(f"note: no Redis answers at {REDIS_URL}; skipping the Redis server", flush=True)
        args.no_redis = True
    if args.no_redis:
        configs = [c for c in configs if c.server != "redis"]
    if args.driver == "auto":
        install_wrk()
    driver = driver_name(args.driver)
    print(
        f"load generator: {driver}; {len(args.endpoints)} endpoints x {len(concurrencies)} concurrencies "
        f"x {len(configs)} configurations x {args.rounds} rounds",
        flush=True,
    )
    host = machine()  # before the run: the load average is the machine's, not ours
    with tempfile.TemporaryDirectory(prefix="bench-gateway-model-") as tmp:
        model, signature, _ = train_model(Path(tmp))
        out = run_rounds(Model(model, signature), configs, args.endpoints, concurrencies, args)
    tables = report(out, configs, args.endpoints, concurrencies)
    items = [
        f"Machine: {host}; at the end {load_average()}",
        f"Versions: {all_versions()}; modelport from {source()}",
        f"Load generator: {driver}, closed loop, {args.warmup:g} s warm-up + {args.duration:g} s per cell, "
        f"{args.rounds} interleaved round(s); external: `openai` endpoint in front of the loopback OpenAI "
        f"fake, body `{json.dumps(CHAT)}`; custom: LogisticRegression on 5 features, "
        f"`{BODIES['custom'].decode()}`; limit `{json.dumps(LIMIT)}`",
    ]
    title = "AI-gateway features (usage and inference tables, rate limits)"
    publish(header(title, items, "gateway.py", argv), tables, args.out)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
