"""The reconciler: drives each endpoint from its stored pending config to a serving one.

Guarantees:
- One update per endpoint at a time (the store refuses a second one atomically); at most
  ``max_concurrent`` updates run across endpoints, so model loads don't fight for a small box.
- The config that serves keeps serving until the new one is fully up; a failed or
  cancelled update leaves it untouched.
- Only the leader works (``control/leadership.py``): one server process among those sharing
  the store, elected by a lease. Each of its store writes carries the lease epoch and is
  refused (``LeaseLost``) once another tenure has begun, so a leader that was paused past its
  lease cannot promote or fail a config after its successor started.
- Work is idempotent and resumable: when a process starts leading, every endpoint left
  ``IN_PROGRESS`` (by a kill -9, or by the previous leader) has its pending config deployed
  again.
- Level-triggered: changes recorded by other processes (an update, a cancellation, a delete,
  a wake-up of an entity scaled to zero) reach the leader through the store's change counter
  (:meth:`scan`); ``submit``, ``cancel`` and ``remove`` are the fast path for changes made in
  the leader itself, and do nothing in other processes.
- ``submit``, ``cancel`` and ``remove`` may be called from any thread (the control-plane
  services run in a thread pool); the work itself runs on the server's event loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import Future
from typing import Any

from modelport.clock import now_ms
from modelport.control.endpoint_state import with_entity_states
from modelport.errors import LeaseLost
from modelport.runtime.base import DeploymentBackend, DeploymentFailed
from modelport.runtime.event_sink import OnEvent, no_events
from modelport.runtime.logs import LogStore
from modelport.spec.extensions import SHADOW_ENTITY_KEY, runtime_entities
from modelport.store import Database
from modelport.store.records import ConfigRecord

__all__ = ["Reconciler"]

log = logging.getLogger("modelport.reconciler")


class Reconciler:
    def __init__(
        self,
        db: Database,
        backend: DeploymentBackend,
        logs: LogStore,
        *,
        max_concurrent: int = 4,
        on_change: Callable[[str], None] = lambda endpoint_id: None,
        events: OnEvent = no_events,
    ) -> None:
        self._db = db
        #: The endpoint event log's writer: an update's success or failure (its creator as actor).
        self.events = events
        self._backend = backend
        self._logs = logs
        self._max_concurrent = max(1, max_concurrent)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._slots: asyncio.Semaphore | None = None
        self._tasks: dict[str, tuple[int, asyncio.Task[None]]] = {}
        self._restoring: set[asyncio.Task[None]] = set()
        self.on_change = on_change
        #: Awaited after a config's replicas are up, before it is reported ready (the replica
        #: registry is written then, so every process can reach them once a client sees READY).
        self.on_deployed: Callable[[], Awaitable[None]] | None = None
        self._epoch: int | None = None  # the lease epoch while this process leads

    # ---- lifecycle (event-loop side) -------------------------------------------------
    async def start(self) -> None:
        """Bind to the running loop. Nothing runs until this process leads (:meth:`lead`)."""
        self._loop = asyncio.get_running_loop()
        self._slots = asyncio.Semaphore(self._max_concurrent)

    @property
    def db(self) -> Database:
        return self._db

    @property
    def leading(self) -> bool:
        return self._epoch is not None

    async def lead(self, epoch: int) -> None:
        """This process was elected (lease epoch ``epoch``): bring up the replicas of every
        serving config and resume the updates left ``IN_PROGRESS`` (by a kill -9, or by the
        previous leader). Every store write of the work is fenced by ``epoch``."""
        self._epoch = epoch
        for endpoint in await asyncio.to_thread(self._db.endpoints.list):
            cfg = await asyncio.to_thread(self._db.endpoints.get_config, endpoint.id, endpoint.active_version)
            if cfg is not None:
                entities = runtime_entities(cfg.body)
                logs = {e["name"]: self._logs.build_log(endpoint.id, e["name"]) for e in entities}
                task = asyncio.get_running_loop().create_task(
                    self._backend.restore(endpoint, cfg.version, entities, logs)
                )
                self._restoring.add(task)
                task.add_done_callback(self._restoring.discard)
        for endpoint in await asyncio.to_thread(self._db.endpoints.in_progress):
            if endpoint.pending_version is not None:
                log.info(
                    "resuming config update",
                    extra={"endpoint": endpoint.name, "config_version": endpoint.pending_version},
                )
                self._spawn(endpoint.id, endpoint.pending_version)

    async def restored(self) -> None:
        """Wait until the replicas of the serving configs are up (or adopted) after :meth:`lead`."""
        while self._restoring:
            await asyncio.gather(*list(self._restoring), return_exceptions=True)

    async def unlead(self) -> None:
        """This process stopped leading: stop every update and every replica it runs (the next
        leader brings up its own). Updates in flight stay IN_PROGRESS and resume there."""
        self._epoch = None
        await self.stop()
        await self._backend.remove_all()

    async def scan(self) -> None:
        """Level-triggered pass over the store (the leader runs it whenever the store changed):
        start the updates another process recorded, interrupt those cancelled or deleted
        there, stop the replicas of deleted endpoints, and start replicas asked for by a
        process that got a query for an entity scaled to zero."""
        if self._epoch is None:
            return
        endpoints = {e.id: e for e in await asyncio.to_thread(self._db.endpoints.list)}
        for endpoint_id, (version, _) in list(self._tasks.items()):
            e = endpoints.get(endpoint_id)
            if e is None or (e.pending_version != version and e.active_version != version):
                await self._interrupt(endpoint_id)
        for endpoint_id in self._backend.endpoint_ids():
            if endpoint_id not in endpoints:
                await self._interrupt(endpoint_id)
                await self._backend.remove(endpoint_id)
        for e in endpoints.values():
            # Also when a task of the endpoint still runs for an older version (finishing its
            # switch): the newer one starts beside it, as submit() does (_spawn ignores a
            # version that runs already).
            if e.config_update == "IN_PROGRESS" and e.pending_version is not None:
                self._spawn(e.id, e.pending_version)
        for endpoint_id, version, entity in await asyncio.to_thread(self._db.replicas.take_wakes):
            replica_set = self._backend.replica_set(endpoint_id, version, entity)
            if replica_set is not None:
                replica_set.start_if_idle()

    async def stop(self) -> None:
        """Stop working; updates in flight stay IN_PROGRESS in the store and resume next start."""
        tasks = [task for _, task in self._tasks.values()] + list(self._restoring)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()

    async def idle(self) -> None:
        """Wait until no update is running (for orderly shutdown and tests of this class)."""
        while self._tasks:
            await asyncio.gather(*(t for _, t in list(self._tasks.values())), return_exceptions=True)

    # ---- thread-safe entry points ----------------------------------------------------------
    def _on_loop(self, coro: Coroutine[Any, Any, Any]) -> Any:
        assert self._loop is not None, "Reconciler.start() has not run"
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            return asyncio.ensure_future(coro)
        fut: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return fut.result()

    def submit(self, endpoint_id: str, version: int) -> None:
        """Start deploying config ``version`` of the endpoint (already recorded as pending)."""

        async def go() -> None:
            if self._epoch is not None:
                self._spawn(endpoint_id, version)

        self._on_loop(go())

    def cancel(self, endpoint_id: str) -> None:
        """Interrupt a running update (the store has already recorded the cancellation)."""
        self._on_loop(self._interrupt(endpoint_id))

    def remove(self, endpoint_id: str) -> None:
        """Interrupt any update and stop everything the endpoint runs; blocks until done."""

        async def go() -> None:
            await self._interrupt(endpoint_id)
            await self._backend.remove(endpoint_id)

        result = self._on_loop(go())
        if isinstance(result, asyncio.Future):  # called on the loop itself: nothing to wait for here
            return

    # ---- work --------------------------------------------------------------------------
    def _spawn(self, endpoint_id: str, version: int) -> None:
        current = self._tasks.get(endpoint_id)
        if current is not None and current[0] == version and not current[1].done():
            return
        task = asyncio.get_running_loop().create_task(self._run(endpoint_id, version))
        self._tasks[endpoint_id] = (version, task)
        task.add_done_callback(lambda t, eid=endpoint_id: self._forget(eid, t))

    def _forget(self, endpoint_id: str, task: asyncio.Task[None]) -> None:
        current = self._tasks.get(endpoint_id)
        if current is not None and current[1] is task:
            del self._tasks[endpoint_id]

    async def _interrupt(self, endpoint_id: str) -> None:
        current = self._tasks.pop(endpoint_id, None)
        if current is None:
            return
        version, task = current
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await self._backend.abort(endpoint_id, version)

    async def _run(self, endpoint_id: str, version: int) -> None:
        try:
            await self._update(endpoint_id, version)
        except LeaseLost as exc:  # another process leads now; it resumes the update
            log.warning("config update stopped: %s", exc.message, extra={"config_version": version})
            await self._backend.abort(endpoint_id, version)

    def _finished(
        self, endpoint_id: str, cfg: ConfigRecord, success: bool, message: str | None, entity: str | None
    ) -> None:
        """Record in the event log that config ``cfg`` was promoted or failed (its creator as actor)."""
        seconds = round(max(0, now_ms() - cfg.created_ms) / 1000, 3)
        if success:
            kind = "CONFIG_UPDATE_SUCCEEDED"
            text = f"Config version {cfg.version} is serving ({seconds:g} s)."
            details: dict[str, Any] = {"seconds": seconds}
        else:
            kind = "CONFIG_UPDATE_FAILED"
            text = f"Config version {cfg.version} failed (served entity '{entity}'): {message}"
            details = {"seconds": seconds, "served_entity": entity, "reason": message}
        self.events(
            endpoint_id,
            kind,
            text,
            actor=cfg.creator,
            config_version=cfg.version,
            served_entity=entity,
            details=details,
        )

    async def _update(self, endpoint_id: str, version: int) -> None:
        assert self._slots is not None
        db = self._db.endpoints
        async with self._slots:
            endpoint = await asyncio.to_thread(db.get_by_id, endpoint_id)
            cfg = await asyncio.to_thread(db.get_config, endpoint_id, version)
            if (
                endpoint is None
                or cfg is None
                or endpoint.pending_version != version
                or endpoint.config_update != "IN_PROGRESS"
            ):
                return
            creating = with_entity_states(cfg.body, "DEPLOYMENT_CREATING")
            await asyncio.to_thread(db.save_progress, endpoint_id, version, creating, epoch=self._epoch)
            entities = runtime_entities(cfg.body)
            build_logs = {e["name"]: self._logs.build_log(endpoint_id, e["name"]) for e in entities}
            for e in entities:
                build_logs[e["name"]].write(
                    f"Config version {version}: deploying served entity '{e['name']}'."
                )
            try:
                deployed = await self._backend.deploy(endpoint, version, entities, build_logs)
                deployed = [{k: v for k, v in e.items() if k != SHADOW_ENTITY_KEY} for e in deployed]
            except DeploymentFailed as exc:
                log.warning(
                    "config update failed",
                    extra={
                        "endpoint": endpoint.name,
                        "config_version": version,
                        "entity": exc.entity_name,
                        "reason": exc.message,
                    },
                )
                body = with_entity_states(cfg.body, "", failed=exc.entity_name, message=exc.message)
                await self._backend.abort(endpoint_id, version)
                failed = await asyncio.to_thread(
                    db.finish_update,
                    endpoint_id,
                    version,
                    success=False,
                    body=body,
                    message=exc.message,
                    now_ms=now_ms(),
                    epoch=self._epoch,
                )
                if failed:
                    self._finished(endpoint_id, cfg, False, exc.message, exc.entity_name)
                await asyncio.to_thread(self.on_change, endpoint_id)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a backend bug must not leave the endpoint stuck IN_PROGRESS
                log.exception("deployment backend error", extra={"endpoint": endpoint.name})
                message = f"Internal error while deploying: {type(exc).__name__}: {exc}"
                body = with_entity_states(cfg.body, "", failed=entities[0]["name"], message=message)
                failed = await asyncio.to_thread(
                    db.finish_update,
                    endpoint_id,
                    version,
                    success=False,
                    body=body,
                    message=message,
                    now_ms=now_ms(),
                    epoch=self._epoch,
                )
                if failed:
                    self._finished(endpoint_id, cfg, False, message, entities[0]["name"])
                await asyncio.to_thread(self.on_change, endpoint_id)
                return
            if self.on_deployed is not None:
                await self.on_deployed()
            body = with_entity_states(cfg.body, "DEPLOYMENT_READY", entities=deployed)
            promoted = await asyncio.to_thread(
                db.finish_update,
                endpoint_id,
                version,
                success=True,
                body=body,
                message=None,
                now_ms=now_ms(),
                epoch=self._epoch,
            )
            await asyncio.to_thread(self.on_change, endpoint_id)
            if promoted:
                self._finished(endpoint_id, cfg, True, None, None)
                for e in entities:
                    build_logs[e["name"]].write(f"Config version {version} is serving.")
                log.info("config update done", extra={"endpoint": endpoint.name, "config_version": version})
                await self._backend.retire(endpoint_id, version)
            else:
                await self._backend.abort(endpoint_id, version)
