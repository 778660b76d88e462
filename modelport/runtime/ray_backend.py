"""Replicas on a Ray cluster: the deployment backend of ``modelport serve --backend ray``.

Everything the local backend does stays (``runtime/local.py``: resolving and checking the
model, replica sets beside the serving version, promotion, drain, autoscaling, scale-to-zero,
adoption by a new leader); only where a replica runs changes. Each replica is a detached,
named Ray actor (:class:`~modelport.runtime.ray_actor.ReplicaActor`, in the namespace
``--ray-namespace``) that runs the usual replica process on its node, listening on TCP
(``runtime/transport.py``). Every modelport process, leader or not, connects to that port
directly; Ray is only asked to place, find and stop actors:

- ``num_cpus`` / ``num_gpus`` per replica come from ``workload_type`` (:func:`resources_of`);
  an entity whose request no node of the cluster can meet fails its update at once, naming
  the resource (Ray would otherwise keep the actor pending).
- A per-model environment (``MODELPORT_ENV_MANAGER=uv`` or ``--env-manager uv``) is Ray's
  ``runtime_env`` ``pip`` list, the model's ``requirements.txt``: Ray builds it on the node
  (in a virtualenv over the node's packages) and a failed build fails the update with Ray's
  message in the build log.
- Detached actors outlive the leader: a new leader finds them by name (from the replica
  registry) and adopts them without a restart; one that steps down alive leaves them.
- The model's files are read where the server has them: every node must see the same path
  (the servers' ``--artifacts-root`` and ``--data-dir`` models folder on a shared filesystem,
  as for several servers); a node that does not fails the start with a message that says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelport.entities.foundation.catalog import EngineSpec
from modelport.runtime.base import DeploymentFailed
from modelport.runtime.environments import env_manager_of
from modelport.runtime.local import LocalBackend
from modelport.runtime.replica import ReplicaDied, ReplicaHandle, ReplicaSpec, ReplicaStartFailed
from modelport.runtime.transport import SECRET_ENV, ReplicaKeys, open_replica
from modelport.spec.endpoint import runs_in_gateway
from modelport.store.records import EndpointRecord
from modelport.store.replicas import ReplicaRecord

__all__ = ["RayBackend", "RayDriver", "RayOptions", "RayReplica", "resources_of"]

log = logging.getLogger("modelport.runtime")

#: How long a replica's actor has to stop (it drains first) before it is killed.
STOP_GRACE_SECONDS = 30.0


def resources_of(entity: Mapping[str, Any], cpus_per_replica: float) -> dict[str, float]:
    """What one replica of ``entity`` asks Ray for: ``{"num_cpus": .., "num_gpus": ..}``."""
    wtype = str(entity.get("workload_type") or "CPU")
    gpus = 0.0
    if wtype.startswith(("GPU", "MULTIGPU")):
        gpus = 8.0 if wtype.endswith("_8") else 4.0 if wtype.startswith("MULTIGPU") else 1.0
    return {"num_cpus": cpus_per_replica, "num_gpus": gpus}


class RayDriver:
    """This process's connection to the cluster, made on first use (``ray.init`` takes a
    second or two and only the leader needs it). Every method blocks: call from a thread."""

    def __init__(self, address: str, namespace: str) -> None:
        self.address = address
        self.namespace = namespace
        self._lock = threading.Lock()
        self._connected = False

    def connect(self) -> Any:
        """The ``ray`` module, connected to the cluster."""
        with self._lock:
            if self._connected:
                import ray

                return ray
            factory = logging.getLogRecordFactory()
            import ray

            # Importing Ray replaces the log record factory (each record gets _ray_timestamp_ns,
            # which modelport's log lines would then carry): keep ours.
            logging.setLogRecordFactory(factory)
            ray.init(
                address=self.address,
                namespace=self.namespace,
                log_to_driver=False,  # replicas' output stays on their nodes (ReplicaActor.output)
                configure_logging=False,  # modelport's log records are its own
                ignore_reinit_error=True,
            )
            self._connected = True
            log.info("connected to the Ray cluster", extra={"address": self.address})
            return ray

    def nodes(self) -> list[dict[str, float]]:
        """The resources of each live node."""
        ray = self.connect()
        return [dict(n.get("Resources") or {}) for n in ray.nodes() if n.get("Alive")]

    def create(self, name: str, options: Mapping[str, Any]) -> Any:
        ray = self.connect()
        from modelport.runtime.ray_actor import ReplicaActor

        actor_class = ray.remote(ReplicaActor)
        return actor_class.options(
            name=name,
            namespace=self.namespace,
            lifetime="detached",
            max_restarts=0,  # modelport replaces a dead replica itself (a new name, a new port)
            max_concurrency=4,
            **options,
        ).remote(name)

    def find(self, name: str) -> Any | None:
        ray = self.connect()
        try:
            return ray.get_actor(name, namespace=self.namespace)
        except ValueError:
            return None

    def call(self, actor: Any, method: str, *args: Any, timeout: float | None = None) -> Any:
        ray = self.connect()
        return ray.get(getattr(actor, method).remote(*args), timeout=timeout)

    def kill(self, actor: Any) -> None:
        ray = self.connect()
        with contextlib.suppress(Exception):
            ray.kill(actor, no_restart=True)

    def warm(self) -> None:
        """Start the node agent (and its zygote) of every live node, so that the first replica
        of a node is forked too (``runtime/ray_actor.py``); does not wait for the imports."""
        ray = self.connect()
        from modelport.runtime.ray_actor import node_agent

        for node in ray.nodes():
            if node.get("Alive"):
                node_agent(self.namespace, node["NodeID"]).warm.remote()

    def stop_agents(self) -> None:
        """Kill the node agents of this namespace (their zygotes exit with them)."""
        from modelport.runtime.ray_actor import AGENT_PREFIX

        for name in self.names():
            if name.startswith(AGENT_PREFIX):
                actor = self.find(name)
                if actor is not None:
                    self.kill(actor)

    def names(self) -> list[str]:
        """The names of the live actors of this namespace."""
        ray = self.connect()
        return [
            a["name"]
            for a in ray.util.list_named_actors(all_namespaces=True)
            if a.get("namespace") == self.namespace
        ]


class RayReplica(ReplicaHandle):
    """A replica placed as a detached named actor; reached over TCP like an attached one."""

    def __init__(self, spec: ReplicaSpec, index: int, driver: RayDriver) -> None:
        super().__init__(spec, index)
        self.driver = driver
        self._name = f"{spec.socket_prefix}-r{index}-{secrets.token_hex(4)}"
        self._address = ""
        self._host = ""
        self._pid: int | None = None
        self._actor: Any = None
        self._gone = False
        self._adopting = False
        self.start_mode = "placed on Ray"

    @classmethod
    def adopting(cls, spec: ReplicaSpec, index: int, driver: RayDriver, record: ReplicaRecord) -> RayReplica:
        replica = cls(spec, index, driver)
        replica._name = record.address.rsplit("/", 1)[-1]
        replica._address, replica._host, replica._pid = record.address, record.host, record.pid
        replica.start_mode = "adopted"
        replica._adopting = True
        return replica

    @property
    def name(self) -> str:
        return self._name

    @property
    def address(self) -> str:
        return self._address

    @property
    def host(self) -> str:
        return self._host

    @property
    def pid(self) -> int | None:
        return self._pid

    @property
    def alive(self) -> bool:
        return not self._gone and self._writer is not None and not self._lost

    async def start(self) -> None:
        """Place the actor, start the replica in it, connect, ping (adopting: find it by name)."""
        if self._adopting:
            await self.adopt()
            return
        spec = self.spec
        self.started_at = time.monotonic()
        try:
            self._actor = await asyncio.to_thread(self.driver.create, self._name, spec.placement)
            tls = spec.placement.get("_tls")
            argv = spec.argv(Path(os.devnull))[2:]  # the actor listens on TCP instead of --socket
            result = await asyncio.to_thread(
                self.driver.call,
                self._actor,
                "start",
                argv,
                {**spec.env, SECRET_ENV: self._secret().hex()},
                spec.start_timeout,
                tls,
                timeout=spec.start_timeout + 600,  # Ray may first build the runtime_env
            )
        except Exception as exc:
            await self.kill()
            raise ReplicaStartFailed(
                f"Ray could not start the replica: {_ray_error(exc)}", str(exc)
            ) from None
        if "error" in result:
            await self.kill()
            raise ReplicaStartFailed(result["error"], result.get("output", ""))
        self._address, self._host, self._pid = result["address"], result["node_ip"], result["pid"]
        self.start_mode = f"{result.get('mode', 'started')} on Ray node {self._host}"
        await self._connect()

    async def adopt(self) -> None:
        """Connect to the actor an earlier leader placed (found by name): no restart."""
        self.started_at = time.monotonic()
        self._actor = await asyncio.to_thread(self.driver.find, self._name)
        if self._actor is None:
            raise ReplicaDied(f"the Ray actor {self._name} is gone")
        await self._connect()

    async def _connect(self) -> None:
        self._reader, self._writer = await open_replica(self._address, self.spec.keys)
        self._reader_task = asyncio.get_running_loop().create_task(self._read_loop())
        await self.ping(timeout=30)
        self.ready = True
        self.was_ready = True

    def _secret(self) -> bytes:
        assert self.spec.keys is not None
        return self.spec.keys.secret(self._name)

    async def stop(self, grace: float = 10.0) -> None:
        """The replica drains (SIGTERM from its actor), then the actor is killed."""
        self.closing = True
        self.ready = False
        actor, self._actor = self._actor, None
        if actor is not None:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self.driver.call, actor, "stop", grace, timeout=grace + 10)
            await asyncio.to_thread(self.driver.kill, actor)
        self._gone = True
        await self._close()

    async def kill(self) -> None:
        actor, self._actor = self._actor, None
        if actor is not None:
            await asyncio.to_thread(self.driver.kill, actor)
        self._gone = True
        await self._close()

    async def release(self) -> None:
        """Leave the actor for the next leader (it is detached): close the connection only."""
        self.closing = True
        self.ready = False
        self._actor = None
        await self._close()

    async def _close(self) -> None:
        self.keep_socket = True  # there is no local socket file
        await super()._close()


def _ray_error(exc: BaseException) -> str:
    """Ray's own message, without its long traceback framing."""
    text = str(exc).strip()
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1][:2000] if lines else type(exc).__name__


def _log_warm_failure(future: asyncio.Future[None]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.warning("could not start the Ray node agents: %s", future.exception())


@dataclass(frozen=True)
class RayOptions:
    address: str
    namespace: str = "modelport"
    cpus_per_replica: float = 1.0
    #: PEM text of the server's certificate and key: replicas serve TLS with them.
    tls: tuple[str, str] | None = None


class RayBackend(LocalBackend):
    """:class:`LocalBackend` with replicas placed on a Ray cluster (see the module docstring)."""

    def __init__(self, *args: Any, ray: RayOptions, keys: ReplicaKeys, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.ray = ray
        self.keys = keys
        self.driver = RayDriver(ray.address, ray.namespace)
        self._warmed = False

    async def start(self) -> None:
        self.options.run_dir.mkdir(parents=True, exist_ok=True)
        self._supervisor = asyncio.get_running_loop().create_task(self._supervise())

    async def stop(self) -> None:
        """Stop the replicas this process runs; the only server (no store shared with others)
        also stops the node agents, which nothing else needs then."""
        await super().stop()
        if self._warmed and self.options.orphan_seconds <= 0:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self.driver.stop_agents)

    # ---- placement -------------------------------------------------------------------------
    async def _check_resources(self, entity: dict[str, Any]) -> None:
        """Fail at once when no live node of the cluster has what one replica asks for."""
        wanted = resources_of(entity, self.ray.cpus_per_replica)
        nodes = await asyncio.to_thread(self.driver.nodes)
        need = {"CPU": wanted["num_cpus"], "GPU": wanted["num_gpus"]}
        if any(all(node.get(k, 0.0) >= v for k, v in need.items() if v) for node in nodes):
            return
        missing = [k for k, v in need.items() if v and not any(node.get(k, 0.0) >= v for node in nodes)]
        have = ", ".join(
            f"node {i + 1}: {node.get('CPU', 0):g} CPU, {node.get('GPU', 0):g} GPU"
            for i, node in enumerate(nodes)
        )
        what = " and ".join(f"{need[k]:g} {k}" for k in missing) or "its resources"
        raise DeploymentFailed(
            entity["name"],
            f"workload_type {entity.get('workload_type') or 'CPU'} needs {what} per replica and no node "
            f"of the Ray cluster at {self.ray.address} has that ({have or 'no live node'}).",
        )

    async def deploy(
        self,
        endpoint: EndpointRecord,
        version: int,
        entities: list[dict[str, Any]],
        logs: dict[str, Any],
    ) -> list[dict[str, Any]]:
        for entity in entities:
            if runs_in_gateway(entity):
                continue
            try:
                await self._check_resources(entity)
            except DeploymentFailed as exc:
                logs[entity["name"]].write(f"FAILED: {exc.message}")
                raise
        return list(
            await asyncio.gather(
                *(self._bring_up(endpoint, version, e, logs[e["name"]], start=True) for e in entities)
            )
        )

    def _prepare_environment(self, deployed: dict[str, Any], local: Path, log_: Any) -> None:
        """Ray builds per-model environments on the node (``runtime_env``), not here."""
        if env_manager_of(deployed, self.options.env_manager) == "uv":
            log_.write(
                "Per-model environment: Ray builds it on the node from requirements.txt (runtime_env pip)."
            )

    def _spec(
        self, endpoint: EndpointRecord, entity: dict[str, Any], model_path: Path, engine: EngineSpec | None
    ) -> ReplicaSpec:
        local = super()._spec(endpoint, entity, model_path, engine)
        # Only the entity's own variables travel: the server's environment stays here, and Ray
        # sets CUDA_VISIBLE_DEVICES for the GPUs it gave the actor.
        env = self._entity_vars(entity)
        env.update(
            PYTHONUNBUFFERED="1",
            MODELPORT_ENDPOINT=endpoint.name,
            MODELPORT_SERVED_ENTITY=entity["name"],
        )
        # The online store feature-aware models look their features up in: a postgresql:// or
        # redis:// URL reaches it from any node; an embedded file path only from this machine.
        if "MODELPORT_ONLINE_STORE" in self._base_env:
            env["MODELPORT_ONLINE_STORE"] = self._base_env["MODELPORT_ONLINE_STORE"]
        resources = resources_of(entity, self.ray.cpus_per_replica)
        placement: dict[str, Any] = {"num_cpus": resources["num_cpus"]}
        if resources["num_gpus"]:
            placement["num_gpus"] = resources["num_gpus"]
        if engine is None and env_manager_of(entity, self.options.env_manager) == "uv":
            requirements = model_path / "requirements.txt"
            if requirements.exists():
                packages = [
                    line.strip()
                    for line in requirements.read_text().splitlines()
                    if line.strip() and not line.startswith("#")
                ]
                placement["runtime_env"] = {"pip": {"packages": packages, "pip_check": False}}
        if self.ray.tls is not None:
            placement["_tls"] = self.ray.tls
        driver = self.driver

        def make_replica(spec: ReplicaSpec, index: int) -> ReplicaHandle:
            return RayReplica(spec, index, driver)

        # No zygote of this machine and no orphan watch: the node agent forks, the actor owns.
        return dataclasses.replace(
            local,
            env=env,
            zygote=None,
            orphan_seconds=0.0,
            keys=self.keys,
            make_replica=make_replica,
            placement=placement,
        )

    # ---- adoption ----------------------------------------------------------------------------
    def offer_adoption(self, records: list[ReplicaRecord], host: str) -> None:
        """This process leads now: the actors the registry lists are adopted by name as their
        entities are restored; the node agents start warming their zygotes meanwhile."""
        self._warmed = True
        warming = asyncio.get_running_loop().run_in_executor(None, self.driver.warm)
        warming.add_done_callback(_log_warm_failure)
        self._adoptable = {}
        for r in records:
            if r.address.startswith("tcp://"):
                self._adoptable.setdefault((r.endpoint_id, r.config_version, r.entity), []).append(r)

    def _adoption(self, spec: ReplicaSpec, index: int, record: ReplicaRecord) -> ReplicaHandle:
        return RayReplica.adopting(spec, index, self.driver, record)

    async def _unadoptable(self, handle: ReplicaHandle) -> None:
        await handle.kill()  # an actor that cannot be reached is killed; the set starts another
