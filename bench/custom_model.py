"""Custom-model serving benchmark: modelport against its peers, on one machine, as ratios.

The same small scikit-learn model (LogisticRegression on 5 features, saved with MLflow and a
signature) is served by modelport (adaptive batching on and off), ``mlflow models serve``
and Ray Serve (plain and ``@serve.batch``), next to two references: a bare ASGI app that
calls the model in-process and a bare uvicorn + orjson echo (the HTTP ceiling). One load
generator (``loadgen.py``) drives every peer on 127.0.0.1 with 1-row and 100-row
``dataframe_split`` bodies at concurrency 1, 8 and 64.

Rounds are interleaved: in every round each peer is started, measured on every cell and
stopped again, in an order that rotates from round to round, so drift on the machine is
spread over all peers; the table shows the median over rounds. Only one peer runs at a time
because on 2 cores an idle Ray cluster next to the peer being measured would tax it.

Run: ``python bench/custom_model.py [--quick] [--peers modelport,mlflow,ray,bare,echo]
[--rounds 3] [--out bench/RESULTS.md]``.
"""

from __future__ import annotations

import argparse
import itertools
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import orjson
from harness import (
    BENCH,
    FEATURES,
    MODEL_NAME,
    PY,
    Median,
    PeerFailed,
    Running,
    first_answer,
    free_port,
    header,
    install_wrk,
    launch,
    machine,
    median_of,
    one_line,
    pids_matching,
    publish,
    register_model,
    rotated,
    serve_modelport,
    train_model,
    versions,
    wait_deployed,
)
from loadgen import CellResult, Load, driver_name, run_cell

FAMILIES = ("modelport", "modelport-workers", "mlflow", "ray", "bare", "echo")
#: Redis for ``--workers`` (modelport needs it with more than one worker, for rate limits).
REDIS = os.environ.get("MODELPORT_BENCH_REDIS", "redis://127.0.0.1:6379/0")


# -- bodies ------------------------------------------------------------------------------------


def body(rows: int) -> bytes:
    rng = np.random.default_rng(rows)
    data = np.round(rng.normal(size=(rows, 5)), 4).tolist()
    return orjson.dumps({"dataframe_split": {"columns": FEATURES, "data": data}})


# -- peers -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Context:
    workdir: Path
    model_path: Path
    model: object
    signature: object
    probe: bytes  # the 1-row body, used to wait for a first answer


@dataclass(frozen=True)
class Peer:
    """One server configuration. ``group`` is what ``--peers`` selects; ratios are taken
    against the best configuration of each ``ref`` group (best of 1 and 2 workers, etc.)."""

    name: str
    group: str
    ref: str
    start: Callable[[Context], Running]


def _process_peer(
    ctx: Context, tag: str, cmd: list[str], url: str, env: dict[str, str] | None = None, marker: str = ""
) -> Running:
    log = ctx.workdir / f"{tag}.log"
    started = time.monotonic()
    proc = launch(cmd, log, env)
    running = Running(url, {}, 0.0, proc, log, marker or f"\0never\0{tag}")
    try:
        first_answer(proc, url, ctx.probe, {}, log, limit=180)
    except BaseException:
        running.stop()
        raise
    running.startup_s = time.monotonic() - started
    return running


def uvicorn_peer(module: str, workers: int) -> Callable[[Context], Running]:
    def start(ctx: Context) -> Running:
        port = free_port()
        cmd = [PY, "-m", "uvicorn", f"{module}:app", "--app-dir", str(BENCH / "peers")]
        cmd += ["--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]
        cmd += ["--loop", "uvloop", "--http", "httptools", "--no-access-log", "--log-level", "warning"]
        env = {"BENCH_MODEL_PATH": str(ctx.model_path)}
        return _process_peer(ctx, f"{module}-w{workers}", cmd, f"http://127.0.0.1:{port}/invocations", env)

    return start


def mlflow_peer(workers: int) -> Callable[[Context], Running]:
    def start(ctx: Context) -> Running:
        port = free_port()
        cmd = [PY, "-m", "mlflow", "models", "serve", "-m", str(ctx.model_path), "--env-manager", "local"]
        cmd += ["--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]
        return _process_peer(ctx, f"mlflow-w{workers}", cmd, f"http://127.0.0.1:{port}/invocations")

    return start


def ray_peer(batched: bool, replicas: int) -> Callable[[Context], Running]:
    def start(ctx: Context) -> Running:
        port = free_port()
        temp_dir = tempfile.mkdtemp(prefix="rb-", dir="/tmp")  # short: Ray keeps unix sockets there
        cmd = [PY, str(BENCH / "peers" / "ray_app.py"), "--model-path", str(ctx.model_path)]
        cmd += ["--port", str(port), "--replicas", str(replicas), "--temp-dir", temp_dir]
        cmd += ["--batched"] if batched else []
        # Ray Serve's high-throughput mode (Ray >= 2.55): HAProxy ingress and the direct data plane.
        env = {
            "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
            "RAY_SERVE_ENABLE_HA_PROXY": "1",
            "RAY_USAGE_STATS_ENABLED": "0",
        }
        tag = f"ray-{'batch' if batched else 'plain'}"
        try:
            running = _process_peer(ctx, tag, cmd, f"http://127.0.0.1:{port}/", env, marker=temp_dir)
        except BaseException:
            shutil.rmtree(temp_dir, ignore_errors=True)
            raise
        running.scratch.append(Path(temp_dir))
        return running

    return start


def _modelport_endpoint(scale_to_zero: bool) -> dict[str, object]:
    entity: dict[str, object] = {"entity_name": MODEL_NAME, "entity_version": "1", "workload_size": "Small"}
    if scale_to_zero:
        entity["scale_to_zero_enabled"] = True
    return {"name": "bench", "config": {"served_entities": [entity]}}


def start_modelport(ctx: Context, extra: list[str], scale_to_zero: bool = False) -> Running:
    """Start ``modelport serve``, register the model, create the endpoint, wait for an answer.

    ``startup_s`` counts server start to /ready plus endpoint creation to first answer; the
    model upload in between is registry work, not serving, and is left out.
    """
    data = Path(tempfile.mkdtemp(prefix="mp-", dir=ctx.workdir))
    running = serve_modelport(data, extra=extra)
    base, ready_s = running.url, running.startup_s
    running.url = f"{base}/serving-endpoints/bench/invocations"
    try:
        try:
            register_model(base, ctx.model, ctx.signature)
        except Exception as exc:
            raise PeerFailed(f"registering the model through MLflow failed: {exc!r}") from exc
        deploy_started = time.monotonic()
        with httpx.Client(base_url=base, headers=running.headers, timeout=30) as client:
            answer = client.post("/api/2.0/serving-endpoints", json=_modelport_endpoint(scale_to_zero))
        if answer.status_code != 200:
            raise PeerFailed(f"creating the endpoint: {answer.status_code} {answer.text[:500]}")
        wait_deployed(base, "bench")
        first_answer(running.proc, running.url, ctx.probe, running.headers, running.log, limit=60)
        deploy_s = time.monotonic() - deploy_started
    except BaseException:
        running.stop()
        raise
    running.startup_s = ready_s + deploy_s
    running.phases = {"server ready": ready_s, "endpoint created to first answer": deploy_s}
    return running


def modelport_peer(extra: list[str]) -> Callable[[Context], Running]:
    return lambda ctx: start_modelport(ctx, extra)


def all_peers(ray_replicas: int) -> list[Peer]:
    peers = [
        Peer("modelport", "modelport", "modelport", modelport_peer([])),
        Peer("modelport (batching off)", "modelport", "modelport-off", modelport_peer(["--batching", "off"])),
        Peer(
            "modelport (2 workers)",
            "modelport-workers",
            "modelport-workers",
            modelport_peer(["--workers", "2", "--redis", REDIS]),
        ),
        Peer("mlflow models serve (1 worker)", "mlflow", "mlflow", mlflow_peer(1)),
        Peer("mlflow models serve (2 workers)", "mlflow", "mlflow", mlflow_peer(2)),
        Peer("ray serve", "ray", "ray", ray_peer(False, ray_replicas)),
        Peer("ray serve @serve.batch", "ray", "ray", ray_peer(True, ray_replicas)),
        Peer("bare in-process (1 worker)", "bare", "bare", uvicorn_peer("bare_app", 1)),
        Peer("bare in-process (2 workers)", "bare", "bare", uvicorn_peer("bare_app", 2)),
        Peer("echo (1 worker)", "echo", "echo", uvicorn_peer("echo_app", 1)),
        Peer("echo (2 workers)", "echo", "echo", uvicorn_peer("echo_app", 2)),
    ]
    return peers


def measure_cold_start(ctx: Context, samples: int, idle_s: int = 2) -> list[float]:
    """Seconds from query to answer with no replica running (scale-to-zero endpoint)."""
    running = start_modelport(ctx, ["--scale-to-zero-seconds", str(idle_s)], scale_to_zero=True)
    times = []
    try:
        with httpx.Client(timeout=120, headers=running.headers) as client:
            base = running.url.split("/serving-endpoints/")[0]
            endpoint_id = client.get(f"{base}/api/2.0/serving-endpoints/bench").json()["id"]
            # A replica is a `modelport.runtime.worker` process whose socket name holds the
            # endpoint id (random, so it names this server's endpoint and no other).
            worker = ("modelport.runtime.worker", endpoint_id)
            for _ in range(samples):
                deadline = time.monotonic() + idle_s + 60
                while pids_matching(*worker):
                    if time.monotonic() > deadline:
                        raise PeerFailed(f"the replica was not stopped within {idle_s + 60} s of idling")
                    time.sleep(0.1)
                started = time.perf_counter()
                answer = client.post(
                    running.url, content=ctx.probe, headers={"Content-Type": "application/json"}
                )
                elapsed = time.perf_counter() - started
                if answer.status_code != 200:
                    raise PeerFailed(f"cold query answered {answer.status_code}: {answer.text[:300]}")
                if not pids_matching(*worker):
                    # Then the wait above proved nothing: the worker's command line changed.
                    raise PeerFailed(f"no process matches {worker} after the query; cannot tell a cold start")
                times.append(elapsed)
                print(f"  cold start {elapsed:.2f} s", flush=True)
    finally:
        running.stop()
    return times


# -- rounds ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cell:
    rows: int
    concurrency: int

    def __str__(self) -> str:
        return f"{self.rows} row{'s' if self.rows > 1 else ''}, c={self.concurrency}"


@dataclass
class Outcome:
    cells: dict[tuple[str, Cell], list[CellResult]] = field(default_factory=dict)
    startups: dict[str, list[float]] = field(default_factory=dict)
    phases: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    cold_starts: list[float] = field(default_factory=list)
    cold_error: str = ""


def run_rounds(ctx: Context, peers: list[Peer], cells: list[Cell], args: argparse.Namespace) -> Outcome:
    out = Outcome()
    bodies = {rows: body(rows) for rows in {c.rows for c in cells}}
    for round_no in range(args.rounds):
        for peer in rotated(peers, round_no):
            if peer.name in out.failures:
                continue  # failed once: don't spend every round's start-up time on it again
            print(f"[round {round_no + 1}/{args.rounds}] {peer.name}: starting", flush=True)
            try:
                running = peer.start(ctx)
            except (PeerFailed, OSError, httpx.HTTPError) as exc:
                out.failures[peer.name] = str(exc).strip()
                print(f"  FAILED: {str(exc).strip()[:2000]}", flush=True)
                continue
            out.startups.setdefault(peer.name, []).append(running.startup_s)
            for phase, secs in running.phases.items():
                out.phases.setdefault(peer.name, {}).setdefault(phase, []).append(secs)
            print(f"  first answer after {running.startup_s:.2f} s", flush=True)
            try:
                for cell in rotated(cells, round_no):
                    load = Load(
                        running.url,
                        bodies[cell.rows],
                        running.headers,
                        cell.concurrency,
                        duration=args.duration,
                        warmup=args.warmup,
                    )
                    result = run_cell(load, args.driver)
                    out.cells.setdefault((peer.name, cell), []).append(result)
                    print(
                        f"  {cell!s:<16} {result.rps:>9,.0f} req/s  p50 {result.p50_ms:8.2f} ms  "
                        f"p99 {result.p99_ms:8.2f} ms  errors {result.errors}",
                        flush=True,
                    )
            except Exception as exc:  # a peer that breaks mid-round is reported, not fatal
                out.failures[peer.name] = f"failed while measuring: {exc!r}"
                print(f"  FAILED: {exc!r}", flush=True)
            finally:
                running.stop()
    if "modelport" in args.peers:
        print("scale-from-zero cold start (modelport, --scale-to-zero-seconds 2)", flush=True)
        try:
            out.cold_starts = measure_cold_start(ctx, samples=args.rounds)
        except (PeerFailed, OSError, httpx.HTTPError) as exc:
            out.cold_error = str(exc).strip()
            print(f"  FAILED: {out.cold_error[:2000]}", flush=True)
    return out


# -- report ------------------------------------------------------------------------------------


def best_of(out: Outcome, peers: list[Peer], ref: str, cell: Cell) -> tuple[str, Median] | None:
    found = [(p.name, median_of(out.cells[(p.name, cell)])) for p in peers if (p.name, cell) in out.cells]
    found = [(name, m) for name, m in found if next(p for p in peers if p.name == name).ref == ref]
    return max(found, key=lambda item: item[1].rps) if found else None


def _ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or b == 0 or a != a or b != b:
        return "n/a"
    return f"{a / b:.2f}x"


def report(out: Outcome, peers: list[Peer], cells: list[Cell]) -> str:
    lines = ["### Per configuration (median over rounds)", ""]
    lines += ["| body | conc | peer | req/s | p50 ms | p99 ms | errors | modelport ÷ peer |"]
    lines += ["|---|---:|---|---:|---:|---:|---:|---:|"]
    for cell in cells:
        mp = best_of(out, peers, "modelport", cell)
        for peer in peers:
            if (peer.name, cell) not in out.cells:
                continue
            m = median_of(out.cells[(peer.name, cell)])
            lines.append(
                f"| {cell.rows} | {cell.concurrency} | {peer.name} | {m.rps:,.0f} | {m.p50_ms:.2f} | "
                f"{m.p99_ms:.2f} | {m.errors} | {_ratio(mp[1].rps if mp else None, m.rps)} |"
            )
    refs = [
        r for r in ("modelport-workers", "mlflow", "ray", "bare", "echo") if any(p.ref == r for p in peers)
    ]
    lines += ["", "### modelport ÷ the best configuration of each peer (req/s)", ""]
    lines += ["| body | conc | modelport req/s | " + "".join(f"÷ {r} | " for r in refs) + "batching gain |"]
    lines += ["|---|---:|---:|" + "---:|" * len(refs) + "---:|"]
    for cell in cells:
        mp = best_of(out, peers, "modelport", cell)
        off = best_of(out, peers, "modelport-off", cell)
        row = [str(cell.rows), str(cell.concurrency), f"{mp[1].rps:,.0f}" if mp else "n/a"]
        for r in refs:
            other = best_of(out, peers, r, cell)
            row.append(_ratio(mp[1].rps if mp else None, other[1].rps if other else None))
        row.append(_ratio(mp[1].rps if mp else None, off[1].rps if off else None))
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", "### Start-up to first answer (median over rounds)", ""]
    lines += ["| peer | seconds | notes |", "|---|---:|---|"]
    for peer in peers:
        if peer.name in out.startups:
            secs = statistics.median(out.startups[peer.name])
            parts = out.phases.get(peer.name, {})
            notes = " + ".join(f"{name} {statistics.median(v):.2f} s" for name, v in parts.items())
            lines.append(f"| {peer.name} | {secs:.2f} | {notes} |")
    if out.cold_starts:
        cold = statistics.median(out.cold_starts)
        lines.append(
            f"| modelport scale-from-zero (query to answer) | {cold:.2f} | {len(out.cold_starts)} samples |"
        )
    lines += ["", *targets(out, peers, cells)]
    if out.failures or out.cold_error:
        lines += ["", "### Failed", ""]
        for name, why in out.failures.items():
            lines.append(f"- **{name}**: {one_line(why)}")
        if out.cold_error:
            lines.append(f"- **modelport scale-from-zero**: {one_line(out.cold_error)}")
    return "\n".join(lines) + "\n"


def targets(out: Outcome, peers: list[Peer], cells: list[Cell]) -> list[str]:
    """The issue's targets for modelport, checked on the 1-row cells."""
    one = [c for c in cells if c.rows == 1]

    def peak(ref: str) -> float | None:
        found = [b[1].rps for c in one if (b := best_of(out, peers, ref, c))]
        return max(found) if found else None

    def cell_of(ref: str, conc: int) -> Median | None:
        match = [c for c in one if c.concurrency == conc]
        best = best_of(out, peers, ref, match[0]) if match else None
        return best[1] if best else None

    rows: list[tuple[str, str, bool | None]] = []
    mp = peak("modelport")
    for ref, need, label in (
        ("mlflow", 10.0, "≥ 10x mlflow models serve"),
        ("ray", 10.0, "≥ 10x Ray Serve (best of plain and batched)"),
        ("bare", 0.7, "≥ 70% of the bare in-process app"),
    ):
        other = peak(ref)
        if mp is not None and other:
            rows.append((f"1-row peak req/s {label}", f"{mp / other:.2f}x", mp / other >= need))
    many = peak("modelport-workers")
    if mp and many:
        rows.append(
            ("--workers 2: 1-row peak req/s ≥ 1.2x one process", f"{many / mp:.2f}x", many / mp >= 1.2)
        )
        for ref, label in (("mlflow", "mlflow models serve"), ("ray", "Ray Serve")):
            other = peak(ref)
            if other:
                rows.append((f"--workers 2: 1-row peak req/s ÷ {label}", f"{many / other:.2f}x", None))
    mp1, bare1 = cell_of("modelport", 1), cell_of("bare", 1)
    if mp1 and bare1:
        overhead = mp1.p50_ms - bare1.p50_ms
        rows.append(("p50 overhead over bare ≤ 1 ms at c=1", f"{overhead:+.2f} ms", overhead <= 1.0))
    mp64, off64 = cell_of("modelport", 64), cell_of("modelport-off", 64)
    if mp64:
        rows.append(("p99 ≤ 10 ms at c=64", f"{mp64.p99_ms:.2f} ms", mp64.p99_ms <= 10.0))
    if mp64 and off64 and off64.rps:
        gain = mp64.rps / off64.rps
        rows.append(("batching at c=64: ≥ 5x unbatched req/s", f"{gain:.2f}x", gain >= 5.0))
        rows.append(
            (
                "batching at c=64: p99 within 2x of unbatched",
                f"{mp64.p99_ms:.2f} vs {off64.p99_ms:.2f} ms",
                mp64.p99_ms <= 2 * off64.p99_ms,
            )
        )
    if out.cold_starts:
        cold = statistics.median(out.cold_starts)
        rows.append(("scale-from-zero cold start ≤ 2 s", f"{cold:.2f} s", cold <= 2.0))
    if not rows:
        return []
    lines = ["### modelport's targets (1-row bodies; peak = best concurrency)", ""]
    lines += ["| target | measured | met |", "|---|---:|:---:|"]
    lines += [f"| {t} | {m} | {'-' if ok is None else 'yes' if ok else 'NO'} |" for t, m, ok in rows]
    return lines


# -- main --------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="modelport vs mlflow models serve, Ray Serve, a bare in-process app and an echo app."
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 1 round, 2 s cells, concurrency 1 and 64"
    )
    parser.add_argument("--peers", default=",".join(FAMILIES), help="comma-separated subset of %(default)s")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default %(default)s)")
    parser.add_argument(
        "--duration", type=float, default=5.0, help="measured seconds per cell (default %(default)s)"
    )
    parser.add_argument(
        "--warmup", type=float, default=1.0, help="warm-up seconds per cell (default %(default)s)"
    )
    parser.add_argument(
        "--concurrency", default="1,8,64", help="closed-loop connections (default %(default)s)"
    )
    parser.add_argument("--rows", default="1,100", help="rows per request body (default %(default)s)")
    parser.add_argument(
        "--ray-replicas",
        type=int,
        default=len(os.sched_getaffinity(0)),
        help="Ray Serve replicas, one per CPU (default %(default)s)",
    )
    parser.add_argument("--driver", choices=["auto", "wrk", "python"], default="auto", help="load generator")
    parser.add_argument(
        "--out", type=Path, help="append a dated section with the tables to this markdown file"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.duration, args.concurrency = 1, 2.0, "1,64"
    args.peers = [p.strip() for p in args.peers.split(",") if p.strip()]
    unknown = set(args.peers) - set(FAMILIES)
    if unknown:
        parser.error(f"unknown peers {sorted(unknown)}; choose from {','.join(FAMILIES)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cells = [
        Cell(r, c)
        for r, c in itertools.product(
            (int(x) for x in args.rows.split(",")), [int(x) for x in args.concurrency.split(",")]
        )
    ]
    if "ray" in args.peers:
        try:
            import ray.serve  # noqa: F401
        except ImportError:
            print(
                "note: ray[serve] is not installed (pip install -e '.[bench]'); skipping Ray Serve",
                flush=True,
            )
            args.peers.remove("ray")
    peers = [p for p in all_peers(args.ray_replicas) if p.group in args.peers]
    if args.driver == "auto":
        install_wrk()
    driver = driver_name(args.driver)
    print(
        f"load generator: {driver}; {len(cells)} cells x {len(peers)} peers x {args.rounds} rounds",
        flush=True,
    )
    host = machine()  # before the run: the load average is the machine's, not ours
    with tempfile.TemporaryDirectory(prefix="bench-custom-") as tmp:
        workdir = Path(tmp)
        model, signature, model_path = train_model(workdir)
        ctx = Context(workdir, model_path, model, signature, body(1))
        out = run_rounds(ctx, peers, cells, args)
    table = report(out, peers, cells)
    items = [
        f"Machine: {host}",
        f"Versions: {versions('modelport', 'mlflow', 'ray', 'uvicorn', 'scikit-learn')}",
        f"Load generator: {driver}, closed loop, {args.warmup:g} s warm-up + {args.duration:g} s per cell, "
        f"{args.rounds} interleaved round(s); LogisticRegression on 5 features, `dataframe_split` bodies",
    ]
    publish(header("", items, "custom_model.py", argv), table, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
