"""The Ray actor that holds one replica on a cluster node (``runtime/ray_backend.py`` places it).

The actor is a small supervisor, not the model server: it starts the same replica process a
local replica is (``python -m modelport.runtime.worker``, with the actor's interpreter, so a
``runtime_env`` Ray built for the model applies), listening on TCP at the node's address with
the replica's secret (``runtime/transport.py``). The data plane then talks to that process
directly; Ray is only the way to place, find and stop it.

- The replica process watches the actor (``--parent-pid``): when Ray kills the actor (or its
  node), the replica stops by itself.
- The entity's environment (its ``environment_vars``, resolved secrets, the replica secret)
  comes in :meth:`start`'s arguments and goes only into the replica process's environment:
  never into the actor's name, options or ``runtime_env``, which Ray lists.
- The replica's output goes to a file in the actor's folder; :meth:`output` returns its end
  (what a failed start printed reaches the deployment's build log).
- Starting fast: each node runs one :class:`NodeAgent` (a detached actor named
  ``modelport-node-<node id>``) holding a zygote (``runtime/zygote.py``) that has imported
  MLflow; a replica whose interpreter and import-time environment match is forked from it
  (its model loads in a fraction of a second instead of an interpreter's 4-6 s of imports)
  and watches its actor as its owner (``--owner-pid``, ``runtime/stopping.py``), so it still
  stops within a second or two when the actor is killed. Others (a ``runtime_env`` of their
  own) start a fresh interpreter.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any

__all__ = ["AGENT_PREFIX", "NodeAgent", "ReplicaActor", "node_agent"]

#: Name prefix of the node agents (then the Ray node id).
AGENT_PREFIX = "modelport-node-"
#: A forked replica outlives its actor this long (it stops then): the actor's death is noticed.
ORPHAN_SECONDS = 1.0


def node_agent(namespace: str, node_id: str) -> Any:
    """The handle of node ``node_id``'s agent, placed on that node if it does not run yet."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    return (
        ray.remote(NodeAgent)
        .options(
            name=AGENT_PREFIX + node_id,
            namespace=namespace,
            get_if_exists=True,
            lifetime="detached",
            num_cpus=0,
            scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False),
        )
        .remote()
    )


class NodeAgent:
    """One per node: a zygote that replicas of the node fork from (async actor: the zygote's
    client runs on the actor's event loop)."""

    def __init__(self) -> None:
        self._dir = tempfile.mkdtemp(prefix="modelport-zygote-")
        self._client: Any = None

    def _zygote(self) -> Any:
        from pathlib import Path

        from modelport.runtime.launcher import ZygoteClient

        if self._client is None:
            folder = Path(self._dir)
            self._client = ZygoteClient(folder / "zygote.sock", folder / "zygote.log", dict(os.environ))
        return self._client

    async def warm(self) -> bool:
        """Start the zygote (it imports MLflow) unless it runs; True once it is ready."""
        import asyncio

        client = self._zygote()
        client.start()
        starting = client._starting
        if starting is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(starting)
        return bool(client._connected)

    async def spawn(
        self, python: str, argv: list[str], env: dict[str, str], log_path: str, cwd: str
    ) -> int | str:
        """Fork ``modelport.runtime.worker <argv>`` for a replica that would run ``python``:
        its pid, or why it cannot be forked (another interpreter: a ``runtime_env`` of its own)."""
        from pathlib import Path

        from modelport.runtime.launcher import ZygoteUnavailable, forkable

        client = self._zygote()
        if not forkable(python, env, client.env):
            return "its interpreter or import-time environment differs from the zygote's"
        try:
            child = await client.spawn(argv, env, Path(log_path), cwd)
        except ZygoteUnavailable as exc:
            return str(exc)
        return int(child.pid)


class ReplicaActor:
    """One replica process on this node. Threaded (``max_concurrency`` > 1): ``info`` and
    ``stop`` answer while ``start`` waits for the model to load."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._dir = tempfile.mkdtemp(prefix="modelport-replica-")
        self._log_path = os.path.join(self._dir, "replica.log")
        self._process: subprocess.Popen[bytes] | None = None
        self._pid: int | None = None
        self._address = ""
        self.mode = "a new interpreter"

    def start(
        self,
        argv: list[str],
        env: dict[str, str],
        timeout: float,
        tls: tuple[str, str] | None = None,
    ) -> dict[str, Any]:
        """Start the replica and wait until it listens: ``{"address", "pid", "node_ip"}``, or
        ``{"error", "output"}`` when it exited or did not listen within ``timeout`` seconds."""
        import ray

        node_ip = ray.util.get_node_ip_address()
        for flag in ("--model-path", "--engine-path"):
            path = argv[argv.index(flag) + 1] if flag in argv else ""
            if path and not os.path.exists(path):
                return {
                    "error": f"the model's files are not at {path} on the Ray node {node_ip}: "
                    "every node must see the servers' model folders at the same path",
                    "output": "",
                }
        address_file = os.path.join(self._dir, "address")
        extra: list[str] = []
        if tls is not None:
            cert, key = os.path.join(self._dir, "tls.crt"), os.path.join(self._dir, "tls.key")
            for path, text in ((cert, tls[0]), (key, tls[1])):
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "w") as fh:
                    fh.write(text)
            extra = ["--tls-certfile", cert, "--tls-keyfile", key]
        host = f"[{node_ip}]" if ":" in node_ip else node_ip
        command = [
            sys.executable,
            "-m",
            "modelport.runtime.worker",
            "--listen",
            f"tcp://{host}:0/{self.name}",
            "--address-file",
            address_file,
            "--parent-pid",
            str(os.getpid()),
            *extra,
            *argv,
        ]
        full_env = {**os.environ, **env}
        forked = self._fork(command[3:], full_env)  # the options after `-m modelport.runtime.worker`
        if forked is None:
            with open(self._log_path, "ab") as log:
                self._process = subprocess.Popen(
                    command,
                    env=full_env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=self._dir,
                    start_new_session=True,
                )
            self._pid = self._process.pid
        deadline = time.monotonic() + timeout
        while True:
            if os.path.exists(address_file):
                with open(address_file) as fh:
                    self._address = fh.read().strip()
                return {"address": self._address, "pid": self._pid, "node_ip": node_ip, "mode": self.mode}
            if not self._running():
                return {
                    "error": f"the model server exited{self._status()} while loading the model",
                    "output": self.output(),
                }
            if time.monotonic() > deadline:
                self._signal(signal.SIGKILL)
                return {"error": f"the model was not loaded after {timeout:.0f}s", "output": self.output()}
            time.sleep(0.02)

    def _fork(self, worker_argv: list[str], env: dict[str, str]) -> int | None:
        """Fork the replica from this node's agent; None where it cannot (then exec)."""
        import ray

        context = ray.get_runtime_context()
        try:
            agent = node_agent(context.namespace, context.get_node_id())
            # The parent watch of an exec'd replica becomes an owner watch: a forked one's
            # parent is the zygote, its owner this actor.
            argv = list(worker_argv)
            i = argv.index("--parent-pid")
            del argv[i : i + 2]
            argv += ["--owner-pid", str(os.getpid()), "--orphan-seconds", f"{ORPHAN_SECONDS:g}"]
            spawned = agent.spawn.remote(sys.executable, argv, env, self._log_path, self._dir)
            result = ray.get(spawned, timeout=120)
        except Exception as exc:  # the agent could not be placed or answered: exec instead
            result = f"{type(exc).__name__}: {exc}"
        if isinstance(result, int):
            self._pid, self.mode = result, "forked from the node's zygote"
            return result
        with open(self._log_path, "a") as log:
            log.write(f"modelport: starting a fresh interpreter ({result})\n")
        return None

    def _running(self) -> bool:
        if self._process is not None:
            return self._process.poll() is None
        if not self._pid:
            return False
        try:
            os.kill(self._pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return not _zombie(self._pid)

    def _status(self) -> str:
        if self._process is not None and self._process.returncode is not None:
            return f" with status {self._process.returncode}"
        return ""

    def info(self) -> dict[str, Any]:
        """Where the replica listens and whether it runs (a new leader adopting this actor)."""
        return {"address": self._address, "pid": self._pid, "running": self._running()}

    def output(self, limit: int = 8000) -> str:
        try:
            with open(self._log_path, "rb") as fh:
                fh.seek(max(0, os.path.getsize(self._log_path) - limit))
                return fh.read().decode("utf-8", errors="replace")
        except OSError:
            return ""

    def stop(self, grace: float) -> bool:
        """SIGTERM (the replica drains), SIGKILL after ``grace`` seconds; whether it drained."""
        try:
            self._signal(signal.SIGTERM)
            deadline = time.monotonic() + grace
            while self._running() and time.monotonic() < deadline:
                time.sleep(0.05)
            drained = not self._running()
            self._signal(signal.SIGKILL)
            return drained
        finally:
            shutil.rmtree(self._dir, ignore_errors=True)

    def _signal(self, signum: int) -> None:
        if self._pid and self._running():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._pid, signum)


def _zombie(pid: int) -> bool:
    """An exited process its parent (the zygote) has not reaped yet."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False
