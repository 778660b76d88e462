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
import contextlib
import datetime as dt
import itertools
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import orjson
from loadgen import CellResult, Load, driver_name, run_cell

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
PY = sys.executable
FEATURES = [f"f{i}" for i in range(5)]
FAMILIES = ("modelport", "mlflow", "ray", "bare", "echo")
ADMIN_TOKEN = "bench-admin-token"  # a throwaway server on 127.0.0.1
MODEL_NAME = "bench-logreg"


# -- model and bodies --------------------------------------------------------------------------


def train_model(workdir: Path) -> tuple[object, object, Path]:
    """Train the LogisticRegression and save it as an MLflow model; return (model, signature, dir)."""
    import mlflow.sklearn
    from mlflow.models import infer_signature
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, 5))
    y = (x @ np.array([1.0, -2.0, 0.5, 0.0, 1.5]) + rng.normal(scale=0.5, size=2000) > 0).astype(int)
    import pandas as pd

    frame = pd.DataFrame(x, columns=FEATURES)
    model = LogisticRegression().fit(frame, y)
    signature = infer_signature(frame, model.predict(frame))
    path = workdir / "model"
    mlflow.sklearn.save_model(model, str(path), signature=signature, pip_requirements=requirements())
    return model, signature, path


def requirements() -> list[str]:
    """Pinned explicitly: MLflow's inference of them loads the model in a subprocess (slow)."""
    import sklearn

    return [f"scikit-learn=={sklearn.__version__}"]


def body(rows: int) -> bytes:
    rng = np.random.default_rng(rows)
    data = np.round(rng.normal(size=(rows, 5)), 4).tolist()
    return orjson.dumps({"dataframe_split": {"columns": FEATURES, "data": data}})


# -- processes ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pids_matching(*texts: str) -> list[int]:
    """Pids whose command line contains every one of ``texts`` (say, a path unique to a
    process we started)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if all(text in cmdline for text in texts):
                found.append(int(entry.name))
    return found


def descendants(root: int) -> set[int]:
    """``root``'s child processes, their children, and so on."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry.name))
    found: set[int] = set()
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def alive(pids: set[int]) -> set[int]:
    """Those of ``pids`` that still run (zombies waiting to be reaped count as gone)."""
    running = set()
    for pid in pids:
        with contextlib.suppress(OSError, IndexError):
            if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                running.add(pid)
    return running


class PeerFailed(Exception):
    pass


@dataclass
class Running:
    """A started peer: where to send queries, and how to stop everything it started."""

    url: str
    headers: dict[str, str]
    startup_s: float
    proc: subprocess.Popen[bytes]
    log: Path
    marker: str  # a path in the command line of every process the peer starts
    phases: dict[str, float] = field(default_factory=dict)  # parts of startup_s, by name
    scratch: list[Path] = field(default_factory=list)  # removed once stopped

    def stop(self) -> None:
        """SIGTERM the peer, then SIGKILL whatever it started that outlives a grace period.

        Ray and modelport start processes in sessions of their own (and Ray renames them),
        so the process group is not enough: the process tree is noted before stopping,
        and processes with ``marker`` in their command line are found again afterwards.
        """
        tree = descendants(self.proc.pid)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        deadline = time.monotonic() + 15
        while (left := alive(tree) | set(pids_matching(self.marker))) and time.monotonic() < deadline:
            time.sleep(0.2)
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for path in self.scratch:
            shutil.rmtree(path, ignore_errors=True)


def launch(cmd: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    out = log.open("ab")
    try:
        return subprocess.Popen(
            cmd,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            # The venv's bin first: `mlflow models serve` starts `uvicorn` from PATH.
            env={**os.environ, "PATH": f"{Path(PY).parent}:{os.environ.get('PATH', '')}", **(env or {})},
            start_new_session=True,
        )
    finally:
        out.close()


def log_tail(log: Path, chars: int = 1500) -> str:
    with contextlib.suppress(OSError):
        return log.read_text(errors="replace")[-chars:]
    return ""


def first_answer(
    proc: subprocess.Popen[bytes], url: str, payload: bytes, headers: dict[str, str], log: Path, limit: float
) -> None:
    """Poll ``url`` with ``payload`` until it answers 200; raise if the process exits first."""
    deadline = time.monotonic() + limit
    last = "no answer"
    with httpx.Client(timeout=10) as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise PeerFailed(f"exited with status {proc.returncode}: {log_tail(log)}")
            try:
                answer = client.post(
                    url, content=payload, headers={"Content-Type": "application/json", **headers}
                )
                if answer.status_code == 200:
                    return
                last = f"{answer.status_code} {answer.text[:300]}"
            except httpx.HTTPError as exc:
                last = repr(exc)
            time.sleep(0.05)
    raise PeerFailed(f"no 200 answer within {limit:.0f} s (last: {last}): {log_tail(log)}")


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


def register_model(ctx: Context, base: str) -> None:
    """Log the model into modelport's embedded registry through the MLflow client."""
    import mlflow
    import mlflow.sklearn

    os.environ["MLFLOW_TRACKING_TOKEN"] = ADMIN_TOKEN
    mlflow.set_tracking_uri(base)
    with mlflow.start_run():
        mlflow.sklearn.log_model(
            ctx.model,
            name="model",
            signature=ctx.signature,
            registered_model_name=MODEL_NAME,
            pip_requirements=requirements(),
        )


def start_modelport(ctx: Context, extra: list[str], scale_to_zero: bool = False) -> Running:
    """Start ``modelport serve``, register the model, create the endpoint, wait for an answer.

    ``startup_s`` counts server start to /ready plus endpoint creation to first answer; the
    model upload in between is registry work, not serving, and is left out.
    """
    data = Path(tempfile.mkdtemp(prefix="mp-", dir=ctx.workdir))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = ctx.workdir / f"{data.name}.log"
    cmd = [PY, "-m", "modelport", "serve", "--port", str(port), "--data-dir", str(data)]
    cmd += ["--log-level", "warning", *extra]
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    started = time.monotonic()
    proc = launch(cmd, log, {"MODELPORT_ADMIN_TOKEN": ADMIN_TOKEN})
    running = Running(f"{base}/serving-endpoints/bench/invocations", headers, 0.0, proc, log, str(data))
    try:
        with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
            while True:
                if proc.poll() is not None:
                    raise PeerFailed(f"modelport exited with status {proc.returncode}: {log_tail(log)}")
                with contextlib.suppress(httpx.HTTPError):
                    if client.get("/ready").status_code == 200:
                        break
                if time.monotonic() - started > 120:
                    raise PeerFailed(f"modelport not ready within 120 s: {log_tail(log)}")
                time.sleep(0.05)
            ready_s = time.monotonic() - started
            try:
                register_model(ctx, base)
            except Exception as exc:
                raise PeerFailed(f"registering the model through MLflow failed: {exc!r}") from exc
            deploy_started = time.monotonic()
            answer = client.post("/api/2.0/serving-endpoints", json=_modelport_endpoint(scale_to_zero))
            if answer.status_code != 200:
                raise PeerFailed(f"creating the endpoint: {answer.status_code} {answer.text[:500]}")
            state: dict[str, object] = {}
            while time.monotonic() - deploy_started < 300:
                state = client.get("/api/2.0/serving-endpoints/bench").json().get("state", {})
                if state.get("config_update") != "IN_PROGRESS":
                    break
                time.sleep(0.05)
            if state.get("ready") != "READY":
                detail = client.get("/api/2.0/serving-endpoints/bench").text[:800]
                raise PeerFailed(f"endpoint not READY (state {state}): {detail} {log_tail(log, 800)}")
        first_answer(proc, running.url, ctx.probe, headers, log, limit=60)
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


def rotated(items: list[Peer] | list[Cell], by: int) -> Iterator[Peer | Cell]:
    n = len(items)
    return (items[(i + by) % n] for i in range(n)) if n else iter(())


def run_rounds(ctx: Context, peers: list[Peer], cells: list[Cell], args: argparse.Namespace) -> Outcome:
    out = Outcome()
    bodies = {rows: body(rows) for rows in {c.rows for c in cells}}
    for round_no in range(args.rounds):
        for peer in rotated(peers, round_no):
            assert isinstance(peer, Peer)
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
                    assert isinstance(cell, Cell)
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


@dataclass(frozen=True)
class Median:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int


def median_of(results: list[CellResult]) -> Median:
    return Median(
        statistics.median(r.rps for r in results),
        statistics.median(r.p50_ms for r in results),
        statistics.median(r.p99_ms for r in results),
        sum(r.errors for r in results),
    )


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
    refs = [r for r in ("mlflow", "ray", "bare", "echo") if any(p.ref == r for p in peers)]
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
            lines.append(f"- **{name}**: {_one_line(why)}")
        if out.cold_error:
            lines.append(f"- **modelport scale-from-zero**: {_one_line(out.cold_error)}")
    return "\n".join(lines) + "\n"


def _one_line(text: str, limit: int = 600) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


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
    lines += [f"| {t} | {m} | {'yes' if ok else 'NO'} |" for t, m, ok in rows]
    return lines


def machine() -> str:
    model = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    cpus = len(os.sched_getaffinity(0))
    mem = ""
    with contextlib.suppress(OSError, ValueError, IndexError):
        kb = int(Path("/proc/meminfo").read_text().split("\n")[0].split()[1])
        mem = f", {kb / 1024 / 1024:.0f} GiB RAM"
    system = f"{platform.system()} {platform.release()}, Python {platform.python_version()}"
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"{cpus} CPUs (nproc), {model}{mem}, {system}; load average at start {load}"


def install_wrk() -> None:
    """Set-up step: install Debian's ``wrk`` when missing and we may (root with apt-get).

    Without it the pure-Python load generator runs instead, which costs the server more CPU.
    """
    if shutil.which("wrk") or os.geteuid() != 0 or not shutil.which("apt-get"):
        return
    print("installing wrk (apt-get install wrk) for the load generator", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    quiet = subprocess.DEVNULL
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        for cmd in (["apt-get", "install", "-y", "-qq", "wrk"], ["apt-get", "update", "-qq"]):
            subprocess.run(cmd, env=env, stdout=quiet, stderr=quiet, timeout=300, check=False)
            if shutil.which("wrk"):
                return
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "wrk"], env=env, stdout=quiet, stderr=quiet, timeout=300
        )
    if not shutil.which("wrk"):
        print("note: wrk could not be installed; using the Python load generator", flush=True)


def versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    found = []
    for pkg in ("modelport", "mlflow", "ray", "uvicorn", "scikit-learn"):
        with contextlib.suppress(PackageNotFoundError):
            found.append(f"{pkg} {version(pkg)}")
    return ", ".join(found)


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
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    header = (
        f"## {when}\n\n"
        f"- Machine: {host}\n"
        f"- Versions: {versions()}\n"
        f"- Load generator: {driver}, closed loop, {args.warmup:g} s warm-up + {args.duration:g} s per cell, "
        f"{args.rounds} interleaved round(s); LogisticRegression on 5 features, `dataframe_split` bodies\n"
        f"- Command: `python bench/custom_model.py {' '.join(sys.argv[1:] if argv is None else argv)}`\n"
    )
    print("\n" + header + "\n" + table)
    if args.out:
        with args.out.open("a") as fh:
            fh.write("\n" + header + "\n" + table)
        print(f"appended to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
