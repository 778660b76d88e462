"""Custom-model serving benchmark: modelport against its peers, on one machine, as ratios.

The same small scikit-learn model (LogisticRegression on 5 features, saved with MLflow and a
signature) is served by modelport (adaptive batching on and off; replicas local, or on a
Ray cluster with ``--backend ray``), ``mlflow models serve`` and Ray Serve (plain and
``@serve.batch``), next to two references: a bare ASGI app that calls the model in-process
and a bare uvicorn + orjson echo (the HTTP ceiling). One load generator (``loadgen.py``)
drives every peer on 127.0.0.1 with 1-row and 100-row ``dataframe_split`` bodies at
concurrency 1, 8 and 64.

Both Ray families run on a Ray head this script starts the same way for each
(:func:`start_ray_head`: ``ray start --head --block``, a child process in a session of its
own, stopped with the peer; never ``ray stop``, which ends every Ray process of the
machine). For ``modelport-ray`` the replica start on that running cluster is measured too:
a config update to READY, and the build log's "replica(s) ready in" line.

Rounds are interleaved: in every round each peer is started, measured on every cell and
stopped again, in an order that rotates from round to round, so drift on the machine is
spread over all peers; the table shows the median over rounds. Only one peer runs at a time
because on 2 cores an idle Ray cluster next to the peer being measured would tax it.

Run: ``python bench/custom_model.py [--quick] [--peers modelport,mlflow,ray,bare,echo]
[--rounds 3] [--out bench/RESULTS.md]``; the families are :data:`FAMILIES`.
"""

from __future__ import annotations

import argparse
import importlib
import itertools
import os
import re
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
    alive,
    first_answer,
    free_port,
    header,
    install_wrk,
    launch,
    log_tail,
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
    wait_idle,
)
from loadgen import CellResult, Load, driver_name, run_cell

FAMILIES = ("modelport", "modelport-workers", "modelport-ray", "mlflow", "ray", "bare", "echo")
#: Redis for ``--workers`` (modelport needs it with more than one worker, for rate limits).
REDIS = os.environ.get("MODELPORT_BENCH_REDIS", "redis://127.0.0.1:6379/0")
CPUS = len(os.sched_getaffinity(0))
#: The environment of the benchmark's Ray heads (so of every worker and actor in them) and of
#: the drivers that join them. Ray Serve's high-throughput mode, as its docs advise (Ray >=
#: 2.55: HAProxy ingress and the direct data plane): its controller, proxy and replicas are
#: the cluster's workers and read these at import. Token authentication off, explicitly:
#: ``ray start --head`` turns it on when a token file exists (any local ``ray.init`` writes
#: one), and a driver joining an explicit address then fails without the token.
RAY_ENV = {
    "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
    "RAY_SERVE_ENABLE_HA_PROXY": "1",
    "RAY_AUTH_MODE": "disabled",
    "RAY_USAGE_STATS_ENABLED": "0",
}
#: The object store of a benchmark Ray head: what ``peers/ray_app.py`` gives the cluster it
#: starts itself (Ray's default is 30% of the memory).
RAY_OBJECT_STORE_BYTES = 256 * 1024 * 1024


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


@dataclass
class Started(Running):
    """A started peer, with what this script adds to :class:`harness.Running`: the Ray head it
    runs on (stopped after it), and its replica's start as the build log reports it."""

    head: Running | None = None
    replica_start_s: float | None = None

    def stop(self) -> None:
        try:
            super().stop()
        finally:
            if self.head is not None:
                self.head.stop()


def start_ray_head(ctx: Context) -> Running:
    """A one-node Ray cluster on 127.0.0.1, all of its CPUs, in a short temp dir of its own.

    ``ray start --head --block`` is a child of this process in a session of its own, so
    :meth:`Running.stop` ends exactly this cluster (its process tree, and processes with the
    temp dir in their command line); ``ray stop`` would end every Ray cluster of the machine.
    Every port it opens is free or picked by the kernel (others may run Ray here too). The
    :class:`Running`'s ``url`` is the GCS address, ``HOST:PORT``.
    """
    port, client_port = free_port(), free_port()
    temp_dir = tempfile.mkdtemp(prefix="rh-", dir="/tmp")  # short: Ray keeps unix sockets there
    log = ctx.workdir / f"ray-head-{port}.log"
    cmd = [str(Path(PY).parent / "ray"), "start", "--head", "--block", "--node-ip-address", "127.0.0.1"]
    cmd += ["--port", str(port), "--num-cpus", str(CPUS), "--temp-dir", temp_dir]
    cmd += ["--object-store-memory", str(RAY_OBJECT_STORE_BYTES), "--include-dashboard", "false"]
    cmd += ["--disable-usage-stats", "--ray-client-server-port", str(client_port)]
    cmd += ["--dashboard-agent-listen-port", "0", "--min-worker-port", "0", "--max-worker-port", "0"]
    started = time.monotonic()
    proc = launch(cmd, log, RAY_ENV)
    head = Running(f"127.0.0.1:{port}", {}, 0.0, proc, log, temp_dir, scratch=[Path(temp_dir)])
    try:
        while b"Ray runtime started" not in log.read_bytes():
            if proc.poll() is not None:
                raise PeerFailed(f"ray start exited with status {proc.returncode}: {log_tail(log)}")
            if time.monotonic() - started > 120:
                raise PeerFailed(
                    f"ray start did not report the runtime started within 120 s: {log_tail(log)}"
                )
            time.sleep(0.05)
    except BaseException:
        head.stop()
        raise
    head.startup_s = time.monotonic() - started
    return head


def on_ray_head(ctx: Context, start: Callable[[Running], Running]) -> Started:
    """Start a Ray head, then the peer ``start(head)`` on it; the peer's start-up counts the
    head's, and stopping the peer stops the head after it."""
    head = start_ray_head(ctx)
    try:
        running = start(head)
    except BaseException:
        head.stop()
        raise
    started = running if isinstance(running, Started) else Started(**vars(running))
    started.head = head
    started.phases = {"ray head": head.startup_s, **(running.phases or {"serve app": running.startup_s})}
    started.startup_s = head.startup_s + running.startup_s
    return started


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


def ray_peer(batched: bool, replicas: int, own_cluster: bool = False) -> Callable[[Context], Running]:
    """Ray Serve (``peers/ray_app.py``) on a Ray head of :func:`start_ray_head`, the cluster
    ``modelport-ray`` runs on too; the head carries Serve's high-throughput mode (:data:`RAY_ENV`).

    ``own_cluster``: the app's ``ray.init`` starts the cluster instead, as this peer always did
    before. Kept as a control, so that Serve's best configuration is taken over both ways of
    starting its cluster (their environments match; on a shared 2-core machine a few A/B pairs
    could not tell them apart)."""

    def on(ctx: Context, head: Running | None) -> Running:
        port = free_port()
        cmd = [PY, str(BENCH / "peers" / "ray_app.py"), "--model-path", str(ctx.model_path)]
        cmd += ["--port", str(port), "--replicas", str(replicas)]
        cmd += ["--batched"] if batched else []
        tag = f"ray-{'batch' if batched else 'plain'}-{port}"
        if head is not None:
            return _process_peer(
                ctx, tag, [*cmd, "--address", head.url], f"http://127.0.0.1:{port}/", RAY_ENV
            )
        temp_dir = tempfile.mkdtemp(prefix="rb-", dir="/tmp")  # short: Ray keeps unix sockets there
        try:
            running = _process_peer(
                ctx,
                tag,
                [*cmd, "--temp-dir", temp_dir],
                f"http://127.0.0.1:{port}/",
                RAY_ENV,
                marker=temp_dir,
            )
        except BaseException:
            shutil.rmtree(temp_dir, ignore_errors=True)
            raise
        running.scratch.append(Path(temp_dir))
        return running

    if own_cluster:
        return lambda ctx: on(ctx, None)
    return lambda ctx: on_ray_head(ctx, lambda head: on(ctx, head))


def _modelport_endpoint(scale_to_zero: bool) -> dict[str, object]:
    entity: dict[str, object] = {"entity_name": MODEL_NAME, "entity_version": "1", "workload_size": "Small"}
    if scale_to_zero:
        entity["scale_to_zero_enabled"] = True
    return {"name": "bench", "config": {"served_entities": [entity]}}


def start_modelport(
    ctx: Context, extra: list[str], scale_to_zero: bool = False, env: dict[str, str] | None = None
) -> Started:
    """Start ``modelport serve``, register the model, create the endpoint, wait for an answer.

    ``startup_s`` counts server start to /ready plus endpoint creation to first answer; the
    model upload in between is registry work, not serving, and is left out. ``replica_start_s``
    is the build log's figure for the replica the endpoint started (placed, loaded, pinged).
    """
    data = Path(tempfile.mkdtemp(prefix="mp-", dir=ctx.workdir))
    running = Started(**vars(serve_modelport(data, extra=extra, env=env)))
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
        running.replica_start_s = replica_line(base, running.headers).seconds
    except BaseException:
        running.stop()
        raise
    running.startup_s = ready_s + deploy_s
    running.phases = {"server ready": ready_s, "endpoint created to first answer": deploy_s}
    return running


def modelport_peer(extra: list[str]) -> Callable[[Context], Running]:
    return lambda ctx: start_modelport(ctx, extra)


def start_modelport_ray(ctx: Context) -> Started:
    """``modelport serve --backend ray`` on a Ray head of :func:`start_ray_head`: the replica
    is a detached actor of that cluster, which the server reaches over TCP."""
    extra = ["--backend", "ray", "--ray-address"]
    return on_ray_head(ctx, lambda head: start_modelport(ctx, [*extra, head.url], env=RAY_ENV))


@dataclass(frozen=True)
class ReplicaLine:
    """The build log's "N replica(s) ready in X.XXs (pids ...; <start mode>)." line."""

    seconds: float
    pids: str
    mode: str


_READY_LINE = re.compile(r"(\d+) replica\(s\) ready in ([0-9.]+)s \(pids ([^;]*); ([^)]*)\)")


def replica_line(base: str, headers: dict[str, str], endpoint: str = "bench") -> ReplicaLine:
    """The last replica-ready line of the build log of ``endpoint``'s (first) served entity."""
    with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
        answer = client.get(f"/api/2.0/serving-endpoints/{endpoint}")
        answer.raise_for_status()
        entity = answer.json()["config"]["served_entities"][0]["name"]
        answer = client.get(f"/api/2.0/serving-endpoints/{endpoint}/served-models/{entity}/build-logs")
        answer.raise_for_status()
    found = _READY_LINE.findall(answer.json().get("logs", ""))
    if not found:
        raise PeerFailed(f"no 'replica(s) ready' line in the build log of {entity}: {answer.text[-800:]}")
    _, seconds, pids, mode = found[-1]
    return ReplicaLine(float(seconds), pids, mode)


@dataclass(frozen=True)
class ReplicaStart:
    """One replica start on a running Ray cluster: config update to READY, and the build log."""

    update_s: float
    line: ReplicaLine


def _wait_gone(pids: set[int], limit: float) -> None:
    deadline = time.monotonic() + limit
    while left := alive(pids):
        if time.monotonic() > deadline:
            raise PeerFailed(f"the replaced replica (pids {sorted(left)}) still runs after {limit:.0f} s")
        time.sleep(0.1)


def measure_replica_starts(ctx: Context, samples: int) -> list[ReplicaStart]:
    """Replica starts of ``modelport-ray`` on a cluster that already runs: ``samples`` config
    updates (a new ``environment_vars`` value each, so a new replica set), each timed from the
    PUT to the endpoint settled READY, with the build log's figure for the new replica (actor
    placed, model loaded, first ping answered). Before each update the replica the last one
    replaced must be gone (so that no start waits for one of Ray's CPUs) and the head and the
    server idle."""
    running = start_modelport_ray(ctx)
    assert running.head is not None
    base = running.url.split("/serving-endpoints/")[0]
    entity = _modelport_endpoint(False)["config"]["served_entities"][0]  # type: ignore[index]
    starts: list[ReplicaStart] = []
    try:
        previous = replica_line(base, running.headers)
        replaced: ReplicaLine | None = None
        with httpx.Client(base_url=base, headers=running.headers, timeout=60) as client:
            for i in range(samples):
                if replaced is not None:  # the replica the last update replaced (on this machine)
                    _wait_gone({int(pid) for pid in replaced.pids.split(", ") if pid.isdigit()}, limit=60)
                wait_idle(running.head, limit=15)
                wait_idle(running, limit=15)
                config = {"served_entities": [{**entity, "environment_vars": {"BENCH_START": str(i)}}]}
                started = time.perf_counter()
                answer = client.put("/api/2.0/serving-endpoints/bench/config", json=config)
                if answer.status_code != 200:
                    raise PeerFailed(f"updating the endpoint: {answer.status_code} {answer.text[:500]}")
                wait_deployed(base, "bench")
                update_s = time.perf_counter() - started
                line = replica_line(base, running.headers)
                if line.pids == previous.pids:
                    raise PeerFailed(f"the build log names no new replica after update {i + 1}: {line}")
                replaced, previous = previous, line
                starts.append(ReplicaStart(update_s, line))
                print(
                    f"  update to READY {update_s:.2f} s; build log: replica ready in {line.seconds:.2f} s "
                    f"(pid {line.pids}; {line.mode})",
                    flush=True,
                )
    finally:
        running.stop()
    return starts


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
        Peer("modelport --backend ray", "modelport-ray", "modelport-ray", start_modelport_ray),
        Peer("mlflow models serve (1 worker)", "mlflow", "mlflow", mlflow_peer(1)),
        Peer("mlflow models serve (2 workers)", "mlflow", "mlflow", mlflow_peer(2)),
        Peer("ray serve", "ray", "ray", ray_peer(False, ray_replicas)),
        Peer("ray serve @serve.batch", "ray", "ray", ray_peer(True, ray_replicas)),
        Peer(
            "ray serve @serve.batch (own ray.init cluster)",
            "ray",
            "ray",
            ray_peer(True, ray_replicas, own_cluster=True),
        ),
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
    replica_starts: dict[str, list[float]] = field(default_factory=dict)  # build log, at creation
    ray_starts: list[ReplicaStart] = field(default_factory=list)  # modelport-ray, on updates
    ray_start_error: str = ""


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
            if isinstance(running, Started) and running.replica_start_s is not None:
                out.replica_starts.setdefault(peer.name, []).append(running.replica_start_s)
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
    if "modelport-ray" in args.peers:
        print("replica start on a running Ray cluster (modelport-ray, config updates)", flush=True)
        try:
            out.ray_starts = measure_replica_starts(ctx, samples=max(3, args.rounds))
        except (PeerFailed, OSError, httpx.HTTPError) as exc:
            out.ray_start_error = str(exc).strip()
            print(f"  FAILED: {out.ray_start_error[:2000]}", flush=True)
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
        r
        for r in ("modelport-workers", "modelport-ray", "mlflow", "ray", "bare", "echo")
        if any(p.ref == r for p in peers)
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
            if peer.name in out.replica_starts:
                notes += (
                    f"; replica start (build log) {statistics.median(out.replica_starts[peer.name]):.2f} s"
                )
            lines.append(f"| {peer.name} | {secs:.2f} | {notes} |")
    if out.cold_starts:
        cold = statistics.median(out.cold_starts)
        lines.append(
            f"| modelport scale-from-zero (query to answer) | {cold:.2f} | {len(out.cold_starts)} samples |"
        )
    if out.ray_starts:
        lines += ["", "### modelport-ray: replica start on a running Ray cluster (config update)", ""]
        lines += ["| sample | update to READY s | replica ready (build log) s | pid; placement |"]
        lines += ["|---:|---:|---:|---|"]
        for i, start in enumerate(out.ray_starts, 1):
            where = f"{start.line.pids}; {start.line.mode}"
            lines.append(f"| {i} | {start.update_s:.2f} | {start.line.seconds:.2f} | {where} |")
        update = statistics.median(s.update_s for s in out.ray_starts)
        built = statistics.median(s.line.seconds for s in out.ray_starts)
        lines.append(f"| median | {update:.2f} | {built:.2f} | |")
    lines += ["", *targets(out, peers, cells), *ray_targets(out, peers, cells)]
    if out.failures or out.cold_error or out.ray_start_error:
        lines += ["", "### Failed", ""]
        for name, why in out.failures.items():
            lines.append(f"- **{name}**: {one_line(why)}")
        if out.cold_error:
            lines.append(f"- **modelport scale-from-zero**: {one_line(out.cold_error)}")
        if out.ray_start_error:
            lines.append(f"- **modelport-ray replica start**: {one_line(out.ray_start_error)}")
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
        ("ray", 10.0, "≥ 10x Ray Serve (best configuration)"),
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


def ray_targets(out: Outcome, peers: list[Peer], cells: list[Cell]) -> list[str]:
    """Issue 16's targets for ``modelport --backend ray``: at 1 row and concurrency 64, ≥ 85%
    of modelport with local replicas and ≥ 1.5x Ray Serve's best configuration; replica start
    on a running cluster ≤ 3 s (median of the build log's figure over the config updates)."""
    cell = next((c for c in cells if c.rows == 1 and c.concurrency == 64), None)
    found = {
        ref: best_of(out, peers, ref, cell) if cell else None for ref in ("modelport-ray", "modelport", "ray")
    }
    on_ray = found["modelport-ray"]
    rows: list[tuple[str, str, bool]] = []
    for ref, need, label in (
        ("modelport", 0.85, "≥ 85% of modelport (local replicas)"),
        ("ray", 1.5, "≥ 1.5x Ray Serve (best configuration)"),
    ):
        other = found[ref]
        if on_ray and other and other[1].rps:
            ratio = on_ray[1].rps / other[1].rps
            measured = f"{ratio:.2f}x ({on_ray[1].rps:,.0f} vs {other[1].rps:,.0f} req/s)"
            rows.append((f"1 row, c=64: req/s {label}", measured, ratio >= need))
    if out.ray_starts:
        built = statistics.median(s.line.seconds for s in out.ray_starts)
        update = statistics.median(s.update_s for s in out.ray_starts)
        measured = f"{built:.2f} s (update to READY {update:.2f} s)"
        rows.append(("replica start on a running cluster ≤ 3 s (build log, median)", measured, built <= 3.0))
    if not rows:
        return []
    lines = ["", "### modelport-ray's targets (issue 16)", ""]
    lines += ["| target | measured | met |", "|---|---:|:---:|"]
    lines += [f"| {t} | {m} | {'yes' if ok else 'NO'} |" for t, m, ok in rows]
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
            importlib.import_module("ray.serve")
        except ImportError:
            print(
                "note: ray[serve] is not installed (pip install -e '.[bench]'); skipping Ray Serve",
                flush=True,
            )
            args.peers.remove("ray")
    if "modelport-ray" in args.peers:
        try:
            importlib.import_module("ray")
        except ImportError:
            print("note: ray is not installed; skipping modelport --backend ray", flush=True)
            args.peers.remove("modelport-ray")
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
