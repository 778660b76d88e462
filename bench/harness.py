"""What the benchmark scripts share: processes and how to stop them, ``modelport serve``, the
loopback OpenAI fake, the scikit-learn model, rounds, medians and the RESULTS.md section.

- Processes: :func:`launch` starts one in a session of its own; :class:`Running` stops it and
  everything it started (its process tree, and processes with its marker in their command
  line); :func:`first_answer`, :func:`wait_get` and :func:`wait_idle` wait for it.
- :func:`serve_modelport`: ``modelport serve`` started by ``tests/serverproc.py``'s
  ``ServerProcess`` (the launcher the integration tests use: free port, ``/ready`` polled
  with a deadline, failing at once if the process exits), with the benchmarks' settings:
  ``--log-level warning``, a session of its own, a throwaway admin token.
  :func:`wait_deployed` waits for an endpoint through the SDK's ``wait_for_update``.
- :func:`start_openai_fake`: the loopback OpenAI fake (``peers/openai_fake.py``) in its own
  process, and :data:`CHAT`, the chat request the external-model benchmarks send it.
- The LogisticRegression of ``custom_model.py`` and ``gateway.py``: :func:`train_model`,
  :func:`register_model`.
- Rounds and reports: :func:`rotated`, :class:`Median`, :func:`median_of`, :func:`one_line`,
  and for the header of a RESULTS.md section :func:`machine`, :func:`versions`,
  :func:`source`, :func:`load_average`; :func:`publish` prints a section and appends it.

This module (with ``peers/openai_fake.py``, which serves the fake) is the only bench code that
imports from ``tests/``: ``ServerProcess`` and the fake's API key. It does not import
``modelport`` when imported: ``foundation.py`` first puts a snapshot of ``modelport/`` on the
import path.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import numpy as np
from loadgen import CellResult

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
PY = sys.executable
if str(ROOT) not in sys.path:
    # The repository root, for tests.serverproc and tests.fakes; appended, so that a snapshot
    # of modelport/ on PYTHONPATH (foundation.py) still comes first.
    sys.path.append(str(ROOT))

from tests.fakes.openai_server import API_KEY as FAKE_OPENAI_KEY  # noqa: E402
from tests.serverproc import ServerProcess, free_port  # noqa: E402

__all__ = [
    "ADMIN_TOKEN",
    "BENCH",
    "CHAT",
    "FAKE_OPENAI_KEY",
    "FEATURES",
    "HEADERS",
    "MODEL_NAME",
    "PY",
    "ROOT",
    "UPSTREAM_MODEL",
    "Median",
    "PeerFailed",
    "Running",
    "alive",
    "chat_body",
    "cpu_seconds",
    "descendants",
    "first_answer",
    "free_port",
    "header",
    "install_wrk",
    "launch",
    "load_average",
    "log_tail",
    "machine",
    "median_of",
    "one_line",
    "peer_venv",
    "pids_matching",
    "publish",
    "register_model",
    "rotated",
    "serve_modelport",
    "source",
    "start_openai_fake",
    "train_model",
    "versions",
    "wait_deployed",
    "wait_get",
    "wait_idle",
]

T = TypeVar("T")

ADMIN_TOKEN = "bench-admin-token"  # throwaway servers on 127.0.0.1
HEADERS = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


# -- processes ---------------------------------------------------------------------------------


class PeerFailed(Exception):
    """A server did not start, answer or stop as it should: reported in the table, not fatal."""


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


def cpu_seconds(pids: Iterable[int]) -> float:
    """CPU time (user + system) used so far by ``pids``; processes that ended count 0."""
    ticks = 0
    for pid in pids:
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


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

    def pids(self) -> set[int]:
        """The peer's process and every process it started that is still its descendant."""
        return {self.proc.pid} | descendants(self.proc.pid)

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
    """Start ``cmd`` from the repository root in a session of its own, its output to ``log``."""
    out = log.open("ab")
    try:
        return subprocess.Popen(
            cmd,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **_venv_path(), **(env or {})},
            start_new_session=True,
        )
    finally:
        out.close()


def _venv_path() -> dict[str, str]:
    """The venv's bin first on PATH: `mlflow models serve` starts `uvicorn` from PATH."""
    return {"PATH": f"{Path(PY).parent}:{os.environ.get('PATH', '')}"}


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


def wait_get(proc: subprocess.Popen[bytes], url: str, log: Path, limit: float) -> None:
    """Poll ``url`` until it answers 200; raise if the process exits first."""
    deadline = time.monotonic() + limit
    with httpx.Client(timeout=5) as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise PeerFailed(f"exited with status {proc.returncode}: {log_tail(log)}")
            try:
                if client.get(url).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
    raise PeerFailed(f"{url} did not answer 200 within {limit:.0f} s: {log_tail(log)}")


def wait_idle(running: Running, limit: float = 60.0, window: float = 1.0, busy: float = 0.1) -> float:
    """Wait until ``running`` and its children use less than ``busy`` of a CPU over ``window``
    seconds (at most ``limit`` seconds); return how long that took.

    A server may go on working after its first answer: modelport can still be loading its
    model registry in the background, and only then freezes its start-up objects out of
    the garbage collector's way (until then a full collection takes 100-250 ms). Measuring
    during that time would charge start-up work to the first cells; every configuration
    gets the same wait.
    """
    started = time.monotonic()
    while time.monotonic() - started < limit:
        tree = running.pids()
        before = cpu_seconds(tree)
        time.sleep(window)
        if (cpu_seconds(tree) - before) / window < busy:
            break
    return time.monotonic() - started


# -- modelport ---------------------------------------------------------------------------------


def serve_modelport(
    data: Path,
    *,
    extra: Sequence[str] = (),
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    system_endpoints: bool = True,
    limit: float = 120.0,
) -> Running:
    """``modelport serve`` on a free port of 127.0.0.1 with its data in ``data``, up to ``/ready``.

    Started by ``ServerProcess`` in a session of its own, with ``--log-level warning`` and
    ``extra`` flags; ``system_endpoints`` as shipped (on) unless told. The :class:`Running`
    has the server's base URL, the admin headers, ``startup_s`` = start to ``/ready``, and
    ``data`` as its marker (a replica's socket path holds it). ``cwd``: the server's working
    folder (``python -m`` imports ``modelport`` from there first).
    """
    server = ServerProcess(
        data,
        extra_args=["--log-level", "warning", *extra],
        env={
            **_venv_path(),
            "MODELPORT_ADMIN_TOKEN": ADMIN_TOKEN,
            "MODELPORT_SYSTEM_ENDPOINTS": "true" if system_endpoints else "false",
            **(env or {}),
        },
        cwd=cwd,
        new_session=True,
    )
    try:
        server.start(timeout=limit)
    except RuntimeError as exc:  # exited, or /ready did not answer in time
        if server.proc is not None:
            Running(server.url, HEADERS, 0.0, server.proc, server.log_path, str(data)).stop()
        raise PeerFailed(f"modelport: {exc}") from None
    assert server.proc is not None and server.ready_seconds is not None
    return Running(server.url, dict(HEADERS), server.ready_seconds, server.proc, server.log_path, str(data))


def wait_deployed(base: str, name: str, limit: float = 300.0) -> dict[str, Any]:
    """Wait until endpoint ``name``'s config update has settled and it is READY; return it."""
    from modelport.client.sdk import ModelportClient
    from modelport.errors import ModelportError

    with ModelportClient(base, ADMIN_TOKEN, timeout=30) as client:
        try:
            endpoint = client.wait_for_update(name, timeout=limit, poll=0.05)
        except (ModelportError, TimeoutError) as exc:
            raise PeerFailed(f"endpoint {name}: {exc}") from None
    if endpoint.get("state", {}).get("ready") != "READY":
        raise PeerFailed(f"endpoint {name} not READY: {json.dumps(endpoint)[:800]}")
    return endpoint


# -- the loopback OpenAI fake ------------------------------------------------------------------

CHAT = {"messages": [{"role": "user", "content": "What is the capital of France?"}], "max_tokens": 32}
UPSTREAM_MODEL = "gpt-4o-mini"  # what the fake is asked for


def chat_body(model: str | None) -> bytes:
    """:data:`CHAT`, with ``model`` when given (the OpenAI routes name the endpoint there)."""
    return json.dumps({**CHAT, "model": model} if model else CHAT).encode()


def start_openai_fake(workdir: Path) -> Running:
    """The OpenAI fake in its own process, answering; ``url`` is its chat completions route."""
    port = free_port()
    log = workdir / f"fake-{port}.log"
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    headers = {"Authorization": f"Bearer {FAKE_OPENAI_KEY}"}
    started = time.monotonic()
    proc = launch([PY, "-m", "bench.peers.openai_fake", "--port", str(port)], log)
    running = Running(url, headers, 0.0, proc, log, f"\0never\0fake-{port}")
    try:
        first_answer(proc, url, chat_body(UPSTREAM_MODEL), headers, log, limit=60)
    except BaseException:
        running.stop()
        raise
    running.startup_s = time.monotonic() - started
    return running


# -- the scikit-learn model --------------------------------------------------------------------

FEATURES = [f"f{i}" for i in range(5)]
MODEL_NAME = "bench-logreg"


def train_model(workdir: Path) -> tuple[object, object, Path]:
    """Train the LogisticRegression on 5 features and save it as an MLflow model with a
    signature; return (model, signature, its folder)."""
    import mlflow.sklearn
    import pandas as pd
    from mlflow.models import infer_signature
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, 5))
    y = (x @ np.array([1.0, -2.0, 0.5, 0.0, 1.5]) + rng.normal(scale=0.5, size=2000) > 0).astype(int)
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


def register_model(base: str, model: object, signature: object) -> None:
    """Log ``model`` as a new version of :data:`MODEL_NAME` into the registry of the modelport
    at ``base``, through the MLflow client."""
    import mlflow
    import mlflow.sklearn

    os.environ["MLFLOW_TRACKING_TOKEN"] = ADMIN_TOKEN
    mlflow.set_tracking_uri(base)
    with mlflow.start_run():
        mlflow.sklearn.log_model(
            model,
            name="model",
            signature=signature,
            registered_model_name=MODEL_NAME,
            pip_requirements=requirements(),
        )


# -- rounds and medians ------------------------------------------------------------------------


def rotated(items: Sequence[T], by: int) -> list[T]:
    """``items`` rotated left by ``by``: each round starts one further along."""
    n = len(items)
    return [items[(i + by) % n] for i in range(n)]


@dataclass(frozen=True)
class Median:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int


def median_of(results: list[CellResult]) -> Median:
    """The medians over rounds of one cell (errors: the sum)."""
    return Median(
        statistics.median(r.rps for r in results),
        statistics.median(r.p50_ms for r in results),
        statistics.median(r.p99_ms for r in results),
        sum(r.errors for r in results),
    )


def one_line(text: str, limit: int = 600) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


# -- the RESULTS.md section --------------------------------------------------------------------


def machine() -> str:
    """CPUs, CPU model, memory, OS and Python, and the load average now (call it first)."""
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
    return f"{cpus} CPUs (nproc), {model}{mem}, {system}; load average at start {load_average()}"


def load_average() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def versions(*packages: str) -> str:
    """``name version`` of each of ``packages`` that is installed, comma-separated."""
    from importlib.metadata import PackageNotFoundError, version

    found = []
    for pkg in packages:
        with contextlib.suppress(PackageNotFoundError):
            found.append(f"{pkg} {version(pkg)}")
    return ", ".join(found)


def source() -> str:
    """Which modelport is measured: the commit, and the files of ``modelport/`` that differ."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "modelport"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    paths = [line[3:] for line in dirty.splitlines() if line.strip()]  # "XY path"
    if not paths:
        return f"commit {head}"
    shown = ", ".join(f"`{p}`" for p in paths[:6]) + (f" and {len(paths) - 6} more" if len(paths) > 6 else "")
    return f"commit {head} plus uncommitted changes in {shown}"


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


def peer_venv(folder: Path, spec: Sequence[str], label: str, timeout: float = 1200) -> Path | None:
    """The Python of a peer's own virtual environment (``folder``, under ``bench/.venvs/``) with
    ``spec`` installed, built with uv (or venv + pip) when missing or built for another spec;
    None (and a note) when it cannot be installed."""
    python = folder / "bin" / "python"
    stamp = folder / "bench-spec.txt"
    text = " ".join(spec)
    if python.exists() and stamp.exists() and stamp.read_text() == text:
        return python
    print(f"building {label}'s environment in {folder} ({text})", flush=True)
    uv = Path(PY).parent / "uv"
    uv_cmd = str(uv) if uv.exists() else shutil.which("uv")
    if uv_cmd:
        steps = [
            [uv_cmd, "venv", "--clear", "-q", "--python", PY, str(folder)],
            [uv_cmd, "pip", "install", "-q", "--python", str(python), *spec],
        ]
    else:
        steps = [
            [PY, "-m", "venv", "--clear", str(folder)],
            [str(python), "-m", "pip", "install", "-q", *spec],
        ]
    for cmd in steps:
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
        except (OSError, subprocess.SubprocessError) as exc:
            print(f"note: {label} could not be installed ({exc!r}); skipping it", flush=True)
            return None
        if done.returncode != 0:
            why = " ".join((done.stderr or done.stdout).split())[-800:]
            print(f"note: {label} could not be installed ({why}); skipping it", flush=True)
            return None
    stamp.write_text(text)
    return python


def run_arguments(
    parser: argparse.ArgumentParser, quick: str, drivers: Sequence[str] = ("auto", "wrk", "python")
) -> None:
    """The options every benchmark takes: ``--quick`` (``quick`` says what it does), ``--rounds``,
    ``--duration``, ``--warmup``, ``--driver`` and ``--out``."""
    parser.add_argument("--quick", action="store_true", help=f"smoke run: {quick}")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default %(default)s)")
    parser.add_argument(
        "--duration", type=float, default=5.0, help="measured seconds per cell (default %(default)s)"
    )
    parser.add_argument(
        "--warmup", type=float, default=1.0, help="warm-up seconds per cell (default %(default)s)"
    )
    parser.add_argument("--driver", choices=list(drivers), default="auto", help="load generator")
    parser.add_argument(
        "--out", type=Path, help="append a dated section with the tables to this markdown file"
    )


def header(title: str, items: Sequence[str], script: str, argv: Sequence[str] | None) -> str:
    """A dated ``##`` heading (with ``title`` when given) and a bullet per item, the command
    line last (``python bench/<script> <argv>``)."""
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    args = " ".join(sys.argv[1:] if argv is None else argv)
    lines = [f"## {when}: {title}" if title else f"## {when}", ""]
    lines += [f"- {item}" for item in items]
    lines.append(f"- Command: `python bench/{script} {args}`")
    return "\n".join(lines) + "\n"


def publish(header_text: str, tables: str, out: Path | None) -> None:
    """Print the section; append it to ``out`` (RESULTS.md) when given."""
    section = "\n" + header_text + "\n" + tables
    print(section)
    if out:
        with out.open("a") as fh:
            fh.write(section)
        print(f"appended to {out}")
