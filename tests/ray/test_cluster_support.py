"""The test supports of the Ray backend (issue 16) together: a network namespace with only
``lo`` (tests/support/netns.py), a private PostgreSQL and Redis inside it
(tests/support/private_services.py), and a two-node Ray cluster inside it
(tests/support/ray_cluster.py), on which a driver in another process places a detached actor by
a custom resource. At module end nothing may be left: no process in the namespace or under the
module's folder, and no namespace.

The module's fixture moves pytest's thread into the namespace for the module's tests: whatever
a test here starts (a session fixture first asked for here included) runs in the namespace.
Skipped where no namespace can be made (not root, no ``ip``), except under ``CI``, where that
fails: the Ray tests must never disappear silently.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.support.netns import current_netns, inside_netns, netns_unavailable, processes_in
from tests.support.private_services import PrivatePostgres, PrivateRedis, services_missing
from tests.support.ray_cluster import COUNT_NODES_SCRIPT, RayCluster

pytestmark = pytest.mark.xdist_group("ray")


def _missing(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"CI: {reason}", pytrace=False)
    pytest.skip(reason)


def _require_netns() -> None:
    reason = netns_unavailable()
    if reason is not None:
        _missing(f"no network namespace for the Ray tests: {reason}")


def _require() -> None:
    _require_netns()
    reason = services_missing()
    if reason is not None:
        _missing(reason)
    try:
        import ray  # noqa: F401
    except ImportError:
        _missing("ray is not installed (the `ray` extra)")


@dataclass
class Stack:
    """What the module runs in its namespace, and how long each part took to start."""

    netns: str
    root: Path
    postgres: PrivatePostgres
    redis: PrivateRedis
    cluster: RayCluster
    seconds: dict[str, float] = field(default_factory=dict)


def _timed(seconds: dict[str, float], name: str, started: float) -> None:
    seconds[name] = round(time.monotonic() - started, 2)


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    """The namespace and what runs in it, for the module; checks at the end that nothing is
    left. Prints how long each part took (``-s`` shows it)."""
    _require()
    module_started = time.monotonic()
    seconds: dict[str, float] = {}
    root = Path(tempfile.mkdtemp(prefix="mp-ray-"))
    root.chmod(0o755)  # the postgres user works in root/postgres
    try:
        yield from _stack_in_netns(root, seconds)
    finally:
        shutil.rmtree(root, ignore_errors=True)
        _timed(seconds, "module", module_started)
        print(f"\nray support timings (s): {json.dumps(seconds)}")


def _stack_in_netns(root: Path, seconds: dict[str, float]) -> Iterator[Stack]:
    host_netns = current_netns()
    started = time.monotonic()
    with inside_netns("mp-ray") as name:
        _timed(seconds, "namespace", started)
        postgres, redis, cluster = PrivatePostgres(root), PrivateRedis(root), RayCluster(root)
        try:
            postgres.start()
            seconds["postgres"] = round(postgres.start_seconds or 0, 2)
            redis.start()
            seconds["redis"] = round(redis.start_seconds or 0, 2)
            cluster.start_head(num_cpus=2)
            seconds["ray_head"] = round(cluster.nodes[0].start_seconds or 0, 2)
            cluster.add_node(num_cpus=1, resources={"second": 1})
            seconds["ray_second_node"] = round(cluster.nodes[1].start_seconds or 0, 2)
            yield Stack(name, root, postgres, redis, cluster, seconds)
        finally:
            started = time.monotonic()
            cluster.stop()
            redis.stop()
            postgres.stop()
            _timed(seconds, "stop", started)
            deadline = time.monotonic() + 10  # a process killed a moment ago may still be exiting
            while (left := processes_in(name)) and time.monotonic() < deadline:
                time.sleep(0.1)
        assert current_netns() != host_netns
    assert current_netns() == host_netns
    assert not Path(f"/run/netns/{name}").exists(), f"namespace {name} not deleted"
    assert not left, f"processes left in namespace {name}: {_describe(left)}"
    under_root = subprocess.run(["pgrep", "-af", str(root)], capture_output=True, text=True).stdout.strip()
    assert not under_root, f"processes left under {root}:\n{under_root}"


def _describe(pids: list[int]) -> str:
    out = []
    for pid in pids:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            out.append(f"{pid} {cmdline[:200]}")
        except OSError:
            out.append(f"{pid} (gone)")
    return "; ".join(out)


def test_namespace_moves_only_the_thread_and_new_sockets() -> None:
    """A socket connected before entering keeps working; a new one cannot reach the host's
    loopback; subprocesses and threads started inside are inside; other threads are not."""
    _require_netns()
    host = current_netns()
    with socket.create_server(("127.0.0.1", 0)) as server:
        before = socket.create_connection(server.getsockname(), timeout=5)
        accepted, _ = server.accept()
        outside: list[str] = []
        release = threading.Event()
        waiting = threading.Thread(target=lambda: (release.wait(10), outside.append(current_netns())))
        waiting.start()
        try:
            with inside_netns("mp-t") as name:
                inner = current_netns()
                assert inner != host
                before.sendall(b"ping")
                assert accepted.recv(4) == b"ping"
                with socket.socket() as fresh, pytest.raises(ConnectionRefusedError):
                    fresh.settimeout(5)
                    fresh.connect(server.getsockname())
                child = subprocess.run(
                    ["readlink", "/proc/self/ns/net"], capture_output=True, text=True, check=True
                )
                assert child.stdout.strip() == inner
                seen: list[str] = []
                thread = threading.Thread(target=lambda: seen.append(current_netns()))
                thread.start()
                thread.join(10)
                assert seen == [inner]
                release.set()
                waiting.join(10)
                assert outside == [host]
                links = subprocess.run(
                    ["ip", "-o", "link"], capture_output=True, text=True, check=True
                ).stdout
                assert [line.split(":")[1].strip() for line in links.splitlines()] == ["lo"]
        finally:
            release.set()
            before.close()
            accepted.close()
    assert current_netns() == host
    assert not Path(f"/run/netns/{name}").exists()


def test_loopback_is_the_namespaces_own(stack: Stack) -> None:
    """Inside, 127.0.0.1 is not the host's: its PostgreSQL (5432) and Redis (6379) are not
    there; the private servers and Ray's processes are in the namespace."""
    for port in (5432, 6379):
        with socket.socket() as probe:
            probe.settimeout(5)
            assert probe.connect_ex(("127.0.0.1", port)) != 0, f"something listens on 127.0.0.1:{port} inside"
    inside = set(processes_in(stack.netns))
    assert stack.redis.proc is not None and stack.redis.proc.pid in inside
    assert stack.postgres.server_pid() in inside
    assert set(stack.cluster.processes()) <= inside


def test_private_postgres_answers(stack: Stack) -> None:
    import psycopg

    from modelport.store import open_database

    url = stack.postgres.url
    assert url.startswith("postgresql+psycopg://postgres@127.0.0.1:")
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), connect_timeout=5) as conn:
        assert conn.execute("SELECT current_database(), 6 * 7").fetchone() == ("modelport", 42)
    database = open_database(url)  # the store takes the URL, and its migrations run there
    database.close()


def test_private_redis_answers(stack: Stack) -> None:
    import redis

    client = redis.Redis.from_url(stack.redis.url, socket_timeout=5)
    try:
        assert client.ping()
        client.set("modelport:smoke", "42")
        assert client.get("modelport:smoke") == b"42"
    finally:
        client.close()


_CREATE = """
import json, ray
ray.init(namespace="mp-smoke")

@ray.remote(resources={"second": 1})
class Where:
    def node(self):
        return ray.get_runtime_context().get_node_id()

actor = Where.options(name="where", lifetime="detached").remote()
print(json.dumps({
    "actor_node": ray.get(actor.node.remote(), timeout=120),
    "driver_node": ray.get_runtime_context().get_node_id(),
    "nodes": {n["NodeID"]: n["Resources"] for n in ray.nodes() if n["Alive"]},
}))
"""

_FIND_AND_KILL = """
import json, time, ray
ray.init(namespace="mp-smoke")
actor = ray.get_actor("where")
node = ray.get(actor.node.remote(), timeout=120)
ray.kill(actor)
deadline = time.monotonic() + 30
while time.monotonic() < deadline:
    try:
        ray.get_actor("where")
    except ValueError:
        gone = True
        break
    time.sleep(0.2)
else:
    gone = False
print(json.dumps({"actor_node": node, "gone": gone}))
"""


def _driver(cluster: RayCluster, code: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", code], env=cluster.process_env(), capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, f"driver failed ({done.returncode}):\n{done.stdout}\n{done.stderr[-4000:]}"
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def test_detached_actor_runs_on_the_second_node(stack: Stack) -> None:
    cluster = stack.cluster
    assert cluster.node_count() == 2
    assert set(cluster.env()) >= {"RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN"}
    started = time.monotonic()
    created = _driver(cluster, _CREATE)
    stack.seconds["driver_create_actor"] = round(time.monotonic() - started, 2)
    nodes = created["nodes"]
    assert len(nodes) == 2
    assert nodes[created["actor_node"]].get("second") == 1, nodes
    assert created["actor_node"] != created["driver_node"]  # the driver joins the head
    memory = cluster.memory_bytes()
    stack.seconds["ray_pss_mib"] = round(memory / 2**20)
    stack.seconds["ray_processes"] = len(cluster.processes())
    # Detached: it outlived the driver that made it; another driver finds it by name.
    started = time.monotonic()
    found = _driver(cluster, _FIND_AND_KILL)
    stack.seconds["driver_find_kill"] = round(time.monotonic() - started, 2)
    assert found == {"actor_node": created["actor_node"], "gone": True}


def test_a_client_with_another_token_is_refused(stack: Stack) -> None:
    """The cluster runs with token authentication: the GCS refuses a client with another token
    (the node count above, with the cluster's token, got through)."""
    cluster = stack.cluster
    assert cluster.address is not None
    env = {**cluster.process_env(), "RAY_AUTH_TOKEN": "0" * 64}
    argv = [sys.executable, "-c", COUNT_NODES_SCRIPT, cluster.address, "0", "0"]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "InvalidAuthToken" in done.stderr, f"{done.stdout}\n{done.stderr[-3000:]}"
