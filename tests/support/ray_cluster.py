"""A local multi-node Ray cluster for tests: ``ray start --block`` processes that are children of
this process, so that :meth:`RayCluster.stop` ends exactly this cluster and never another one
on the machine (``ray stop`` kills every Ray process it finds).

Start it from a thread inside a network namespace (tests/support/netns.py): Ray's nodes then
listen there, and a driver's probe of a public address (Ray looks for the machine's IP by
"connecting" to 8.8.8.8:53) finds no route instead of leaving the machine.

Token authentication, as Ray 2.60 behaves (seen here): with ``RAY_AUTH_MODE`` unset,
``ray start --head`` turns it on when a token exists (``RAY_AUTH_TOKEN``, ``RAY_AUTH_TOKEN_PATH``
or ``~/.ray/auth_token``, which any ``ray.init()`` that starts a local cluster writes) and runs
without it, with a warning, when none does; a driver given an explicit address turns it on only
when told (``RAY_AUTH_MODE=token``), and one without the right token is refused (``ray.init()``
retries for about 20 s, then raises ConnectionError). So the mode is never left to the state of
the machine: the cluster runs with ``RAY_AUTH_MODE=token`` and a token of its own (or with
``RAY_AUTH_MODE=disabled`` when asked), and :meth:`RayCluster.env` hands a driver the same.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.serverproc import free_port

__all__ = ["COUNT_NODES_SCRIPT", "RayCluster", "RayNode"]

#: The longest temp dir a node may have: Ray puts its Unix sockets at
#: ``<temp dir>/session_<date>_<time>_<usec>_<pid>/sockets/plasma_store``, and a socket path
#: holds at most 107 characters.
TEMP_DIR_MAX = 40
#: Bytes of object store per node (``--object-store-memory``): Ray's default is 30% of memory.
OBJECT_STORE_BYTES = 80_000_000
_READY_LINE = b"Ray runtime started"

#: ``python -c COUNT_NODES_SCRIPT ADDRESS WANT SECONDS``: waits until the GCS at ``ADDRESS`` counts
#: at least ``WANT`` nodes alive or ``SECONDS`` pass, and prints the count. It reads the GCS as
#: ray.cluster_utils.Cluster does, without connecting a driver (no job, no worker): about 1.5 s,
#: most of it importing ray. With a wrong token it fails at once (``InvalidAuthToken``), where a
#: driver's ``ray.init()`` retries for about 20 s.
COUNT_NODES_SCRIPT = """
import json, sys, time
from ray._private.state import GlobalState
from ray._raylet import GcsClientOptions

address, want, deadline = sys.argv[1], int(sys.argv[2]), time.monotonic() + float(sys.argv[3])
state = GlobalState()
state._initialize_global_state(
    GcsClientOptions.create(address, None, allow_cluster_id_nil=True, fetch_cluster_id_if_nil=False)
)
while True:
    alive = [node for node in state.node_table() if node["Alive"]]
    if len(alive) >= want or time.monotonic() > deadline:
        break
    time.sleep(0.1)
print(json.dumps(len(alive)))
"""


@dataclass
class RayNode:
    """One ``ray start --block`` process (the head or another node) and where it writes."""

    proc: subprocess.Popen[bytes]
    temp_dir: Path
    log_path: Path
    #: When ``ray start`` was run (``time.monotonic()``).
    started_at: float
    #: Seconds from ``ray start`` until the GCS counted the node alive.
    start_seconds: float | None = None
    resources: dict[str, float] = field(default_factory=dict)

    def log_tail(self, lines: int = 60) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


class RayCluster:
    """A head node and more nodes on this machine, all on 127.0.0.1, in folders under ``root``
    (``root/h``, ``root/n1``, ...: each node's ``--temp-dir``, so ``root`` must be short:
    at most 37 characters, e.g. ``tempfile.mkdtemp(prefix="mp-ray-")``).

    Every node is a ``ray start --block`` child of this process in a session of its own; Ray's
    workers are their descendants but put themselves in sessions of their own, so :meth:`stop`
    collects every descendant first, then ends them all. ``auth``: run with token
    authentication (a token made here) or with it disabled, explicitly either way.
    """

    def __init__(self, root: Path, *, auth: bool = True, node_env: dict[str, str] | None = None) -> None:
        """``node_env``: variables every node runs with (and so its workers and the runtime_env
        agent, e.g. ``PIP_NO_INDEX`` for a cluster with no package index)."""
        self.root = root
        self.node_env = dict(node_env or {})
        self.token: str | None = secrets.token_hex(32) if auth else None
        self.address: str | None = None
        self.nodes: list[RayNode] = []
        if len(str(root)) > TEMP_DIR_MAX - 3:
            raise ValueError(
                f"{root} is too long for Ray's Unix socket paths (at most {TEMP_DIR_MAX - 3} chars)"
            )

    def env(self) -> dict[str, str]:
        """The variables a driver process needs to join this cluster, on top of its own
        environment: ``RAY_ADDRESS``, ``RAY_AUTH_MODE`` and, with auth, ``RAY_AUTH_TOKEN``."""
        assert self.address is not None, "no head yet"
        env = {"RAY_ADDRESS": self.address, **self._auth_env()}
        return env

    def _auth_env(self) -> dict[str, str]:
        if self.token is None:
            return {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
        return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": self.token, "RAY_USAGE_STATS_ENABLED": "0"}

    def process_env(self) -> dict[str, str]:
        """This process's environment less any ``RAY_*`` variable, plus :meth:`env`: what a
        driver subprocess should run with (a ``RAY_ADDRESS`` of the developer's never leaks in)."""
        base = {key: value for key, value in os.environ.items() if not key.startswith("RAY_")}
        return {**base, **(self.env() if self.address else self._auth_env())}

    def start_head(
        self, num_cpus: int = 2, resources: dict[str, float] | None = None, timeout: float = 180
    ) -> str:
        """Start the head node on a free port of 127.0.0.1 and wait until the GCS counts it
        alive; the GCS address, ``127.0.0.1:PORT``."""
        assert not self.nodes, "the head is already started"
        port = free_port()
        node = self._start(
            "h",
            ["--head", "--port", str(port), "--include-dashboard", "false"],
            num_cpus,
            resources,
        )
        self.address = f"127.0.0.1:{port}"
        self._wait(node, 1, timeout)
        return self.address

    def add_node(
        self, num_cpus: int = 1, resources: dict[str, float] | None = None, timeout: float = 180
    ) -> RayNode:
        """Start one more node that joins the head, and wait until the GCS counts it alive."""
        assert self.address is not None, "start the head first"
        node = self._start(f"n{len(self.nodes)}", ["--address", self.address], num_cpus, resources)
        self._wait(node, len(self.nodes), timeout)
        return node

    def _start(
        self, name: str, args: list[str], num_cpus: int, resources: dict[str, float] | None
    ) -> RayNode:
        temp_dir = self.root / name
        temp_dir.mkdir(parents=True, exist_ok=True)
        argv = [
            _ray_command(),
            "start",
            *args,
            "--block",
            "--node-ip-address",
            "127.0.0.1",
            "--num-cpus",
            str(num_cpus),
            "--object-store-memory",
            str(OBJECT_STORE_BYTES),
            "--temp-dir",
            str(temp_dir),
            "--disable-usage-stats",
            # Workers, the node manager and the dashboard agent on ports the kernel picks: the
            # defaults (10002-19999, 52365) would collide between two nodes of one machine.
            *("--min-worker-port", "0", "--max-worker-port", "0", "--dashboard-agent-listen-port", "0"),
        ]
        if resources:
            argv += ["--resources", json.dumps(resources)]
        log_path = temp_dir / "ray-start.log"
        started = time.monotonic()
        with log_path.open("ab") as log:
            proc = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**self.process_env(), **self.node_env},
                start_new_session=True,
            )
        node = RayNode(proc, temp_dir, log_path, started, resources=dict(resources or {}))
        self.nodes.append(node)
        return node

    def _wait(self, node: RayNode, want: int, timeout: float) -> None:
        """Wait for ``node``'s ``ray start`` to report the runtime started, then for the GCS to
        count ``want`` nodes alive; on failure stop the cluster and raise with Ray's output."""
        deadline = node.started_at + timeout
        try:
            while _READY_LINE not in node.log_path.read_bytes():
                self._check_running(node)
                if time.monotonic() > deadline:
                    raise RuntimeError(f"ray start did not report the runtime started within {timeout} s")
                time.sleep(0.05)
            counted = self._count_nodes(want, max(deadline - time.monotonic(), 1.0), node)
            if counted < want:
                raise RuntimeError(f"the GCS counts {counted} nodes alive, not {want}, after {timeout} s")
        except RuntimeError as exc:
            details = self._describe(node)
            self.stop()
            raise RuntimeError(f"{exc}\n{details}") from None
        node.start_seconds = time.monotonic() - node.started_at

    def _check_running(self, node: RayNode) -> None:
        if node.proc.poll() is not None:
            raise RuntimeError(f"ray start exited with {node.proc.returncode}")

    def _describe(self, node: RayNode) -> str:
        parts = [f"--- {node.log_path}:\n{node.log_tail()}"]
        for err in sorted(node.temp_dir.glob("session_*/logs/*.err"))[:8]:
            text = err.read_text(errors="replace").strip()
            if text:
                parts.append(f"--- {err}:\n" + "\n".join(text.splitlines()[-15:]))
        return "\n".join(parts)

    def _count_nodes(self, want: int, timeout: float, node: RayNode | None = None) -> int:
        assert self.address is not None
        argv = [sys.executable, "-c", COUNT_NODES_SCRIPT, self.address, str(want), str(timeout)]
        poller = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            env=self.process_env(),
        )
        give_up = time.monotonic() + timeout + 30  # the script's own deadline, and its import
        try:
            while poller.poll() is None:
                if node is not None:
                    self._check_running(node)
                if time.monotonic() > give_up:
                    raise RuntimeError(f"counting the nodes did not finish within {timeout + 30:.0f} s")
                time.sleep(0.05)
        finally:
            if poller.poll() is None:
                poller.kill()
            out, err = poller.communicate()
        if poller.returncode != 0:
            raise RuntimeError(
                f"counting the nodes failed ({poller.returncode}):\n{err.decode(errors='replace')}"
            )
        return int(json.loads(out))

    def node_count(self) -> int:
        """How many nodes the GCS counts alive now."""
        return self._count_nodes(0, 0)

    def processes(self) -> list[int]:
        """The pids of every process of the cluster now: the ``ray start`` processes and all
        their descendants (GCS, raylets, agents, workers), whatever their session."""
        roots = {node.proc.pid for node in self.nodes if node.proc.poll() is None}
        return sorted(_descendants(roots) | roots)

    def memory_bytes(self) -> int:
        """The proportional set size (PSS) of the cluster's processes, summed: what they take
        from the machine, shared pages counted once."""
        return sum(_pss_bytes(pid) for pid in self.processes())

    def stop(self, timeout: float = 15) -> None:
        """End every process of the cluster: SIGTERM to each ``ray start`` (it drains its node,
        for up to 30 s in Ray 2.60, then stops the node's processes: about 2 s for an idle
        cluster), SIGKILL to whatever is left after ``timeout`` s, their process groups and
        every descendant found before; reap the children. Safe to call twice."""
        pids = set(self.processes())
        for node in self.nodes:
            if node.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    node.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
            for node in self.nodes:
                node.proc.poll()  # reap, so that its pid stops counting as alive
            time.sleep(0.1)
        for node in self.nodes:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(node.proc.pid, signal.SIGKILL)
        for pid in pids:
            if _alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        for node in self.nodes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                node.proc.wait(10)


def _ray_command() -> str:
    """The ``ray`` command beside this interpreter (the venv's), else the one on PATH."""
    beside = Path(sys.executable).parent / "ray"
    if beside.exists():
        return str(beside)
    found = shutil.which("ray")
    if found is None:
        raise RuntimeError(f"no `ray` command beside {sys.executable} or on PATH (the `ray` extra)")
    return found


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            stat = Path(f"/proc/{entry.name}/stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
    return children


def _descendants(roots: set[int]) -> set[int]:
    children = _children_map()
    found: set[int] = set()
    todo = list(roots)
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _pss_bytes(pid: int) -> int:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    return 0


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"
