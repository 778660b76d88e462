"""This process's part among the server processes that share one store: whether it leads
(runs the reconciler and the replicas), and how its data plane reaches the replicas.

- A **server** process (``modelport serve``; with ``--workers N`` the first process) campaigns
  for the reconciler's lease (``control/leadership.py``). While it leads, its reconciler works
  (fenced by the lease epoch), its backend runs the replicas and the publisher registers them
  (``control/replica_publisher.py``); its data plane calls them directly. When it stops leading,
  it stops its replicas and its reconciler's work; the next leader brings them up.
- A **worker** process (the other processes of ``--workers N``) never leads: it answers HTTP,
  and its data plane reaches the leader's replicas through the registry (``runtime/remote.py``).
  So does a server process that is not the leader.
- Every process follows the store's change counter (``control/changes.py``).

A lease held by a process of this machine that no longer exists (a server killed with -9 and
started again) is released at start, so the restarted server leads at once instead of waiting
for the lease to expire.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Coroutine
from concurrent.futures import Future
from typing import Any, Literal

from modelport.control.changes import ChangeFeed
from modelport.control.leadership import Leadership, holder_id
from modelport.control.reconciler import Reconciler
from modelport.control.replica_publisher import ReplicaPublisher
from modelport.runtime.local import LocalBackend
from modelport.runtime.remote import RemoteReplicas
from modelport.runtime.replica_set import ReplicaSet
from modelport.runtime.transport import ReplicaKeys
from modelport.store import Database
from modelport.store.leases import RECONCILER_LEASE

__all__ = ["Cluster", "Role", "holder_gone"]

log = logging.getLogger("modelport.cluster")

Role = Literal["server", "worker"]

#: How often each process writes its row of the process registry.
HEARTBEAT_SECONDS = 2.0
#: A process whose row is older than this is listed as gone (and the leader forgets it).
PROCESS_GONE_SECONDS = 15.0


def holder_gone(holder: str, host: str) -> bool:
    """True when ``holder`` (``host:pid:random``) was a process of this machine that has exited."""
    parts = holder.rsplit(":", 2)
    if len(parts) != 3 or parts[0] != host or not parts[1].isdecimal():
        return False
    pid = int(parts[1])
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


class Cluster:
    """Leadership, the change feed and the way to the replicas, for one process (see the
    module docstring). Also the data plane's ``ReplicaSource``."""

    def __init__(
        self,
        db: Database,
        backend: LocalBackend,
        reconciler: Reconciler,
        *,
        role: Role,
        worker_index: int = 0,
        lease_seconds: float,
        per_replica_in_flight: int,
        queue_limit: int,
        change_interval: float = 0.5,
        keys: ReplicaKeys | None = None,
    ) -> None:
        self.role = role
        self.worker_index = worker_index
        self.host = socket.gethostname()
        self.holder = holder_id()
        self._db = db
        self._backend = backend
        self._reconciler = reconciler
        self.changes = ChangeFeed(db.changes, interval=change_interval)
        self.remote = RemoteReplicas(
            db.replicas,
            self.host,
            per_replica_in_flight=per_replica_in_flight,
            queue_limit=queue_limit,
            keys=keys,
        )
        self.publisher = ReplicaPublisher(db.replicas, backend, owner=self.holder, host=self.host)
        reconciler.on_deployed = self.publisher.publish_now
        self.leadership: Leadership | None = None
        if role == "server":
            self.leadership = Leadership(
                db.leases,
                name=RECONCILER_LEASE,
                ttl_seconds=lease_seconds,
                holder=self.holder,
                on_elected=self._elected,
                on_deposed=self._deposed,
            )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._transitions = asyncio.Lock()
        self._heartbeat: asyncio.Task[None] | None = None
        self.elected_epoch: int | None = None

    # ---- ReplicaSource (the data plane) -----------------------------------------------------
    def replica_set(self, endpoint_id: str, version: int, entity: str) -> ReplicaSet | None:
        """Where a query goes: the replicas this process runs while it leads, else the leader's
        through the registry. Just after a takeover, until this process has brought up (or
        adopted) the replicas of an entity, the ones it reached as a follower still answer."""
        if not self._reconciler.leading:
            return self.remote.replica_set(endpoint_id, version, entity)
        local = self._backend.replica_set(endpoint_id, version, entity)
        if local is not None and (local.ready_replicas or local.closed):
            return local
        remote = self.remote.known_set(endpoint_id, version, entity)
        if remote is not None and remote.ready_replicas:
            return remote
        return local

    @property
    def leading(self) -> bool:
        return self._reconciler.leading

    # ---- life cycle -------------------------------------------------------------------------
    async def start(self) -> None:
        """Follow the store; campaign (a server process). Call after the reconciler started."""
        self._loop = asyncio.get_running_loop()
        self.changes.subscribe("replicas", self._refresh_remote)
        self.changes.subscribe("reconciler", self._reconciler.scan)
        await self.remote.start()
        await self.changes.start()
        await asyncio.to_thread(self._beat)
        self._heartbeat = asyncio.get_running_loop().create_task(self._beat_forever())
        if self.leadership is not None:
            await asyncio.to_thread(self._release_dead_holder)
            self.leadership.start_thread()

    async def stop(self) -> None:
        """Stop leading (replicas stopped, lease released) and following the store."""
        if self.leadership is not None:
            await asyncio.to_thread(self.leadership.close)
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            await asyncio.gather(self._heartbeat, return_exceptions=True)
        await self.changes.stop()
        await self.publisher.stop()
        await self.remote.stop()
        try:
            await asyncio.to_thread(self._db.processes.remove, self.holder)
        except Exception as exc:  # the store away: the row ages out
            log.warning("could not remove this process's row: %s", exc)

    # ---- the process registry (``modelport status``) -------------------------------------------
    def _beat(self) -> None:
        self._db.processes.beat(
            self.holder, host=self.host, pid=os.getpid(), role=self.role, worker=self.worker_index
        )
        if self.leading:
            self._db.processes.prune(int(PROCESS_GONE_SECONDS * 1000))

    async def _beat_forever(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_SECONDS)
            try:
                await asyncio.to_thread(self._beat)
            except Exception as exc:  # the store away: the next beat tries again
                log.debug("heartbeat failed: %s", exc)

    def status(self) -> dict[str, Any]:
        """This process, the reconciler's lease, every process and replica sharing the store
        (blocking: four reads)."""
        lease = self._db.leases.current(RECONCILER_LEASE)
        now, processes = self._db.processes.list()
        replicas = self._db.replicas.list()
        return {
            "process": {
                "id": self.holder,
                "host": self.host,
                "pid": os.getpid(),
                "role": self.role,
                "worker": self.worker_index,
                "leading": self.leading,
            },
            "leader": None
            if lease is None
            else {
                "holder": lease.holder,
                "epoch": lease.epoch,
                "expires_in_ms": lease.remaining_ms,
                "expired": lease.expired,
            },
            "processes": [
                {
                    "id": p.id,
                    "host": p.host,
                    "pid": p.pid,
                    "role": p.role,
                    "worker": p.worker,
                    "leader": lease is not None and not lease.expired and lease.holder == p.id,
                    "started_ms": p.started_ms,
                    "seen_ms_ago": max(0, now - p.seen_ms),
                    "live": now - p.seen_ms < PROCESS_GONE_SECONDS * 1000,
                }
                for p in processes
            ],
            "replicas": [
                {
                    "id": r.id,
                    "endpoint_id": r.endpoint_id,
                    "config_version": r.config_version,
                    "served_entity": r.entity,
                    "host": r.host,
                    "address": r.address,
                    "pid": r.pid,
                    "state": r.state,
                    "owner": r.owner,
                    "epoch": r.epoch,
                }
                for r in replicas
            ],
            "change_version": self._db.changes.version(),
        }

    def _release_dead_holder(self) -> None:
        lease = self._db.leases.current(RECONCILER_LEASE)
        if (
            lease is not None
            and not lease.expired
            and holder_gone(lease.holder, self.host)
            and self._db.leases.release(RECONCILER_LEASE, lease.holder)
        ):
            log.info("released the lease of a server that exited", extra={"holder": lease.holder})

    # ---- elections (called on the campaign thread) -----------------------------------------------
    def _elected(self, epoch: int) -> None:
        self._hand_over(self._lead(epoch))

    def _deposed(self) -> None:
        # Blocks the campaign thread until the work stopped: the lease is released (or renewed
        # by someone else) only after this process stopped acting as leader.
        future = self._hand_over(self._unlead())
        if future is not None:
            try:
                future.result(timeout=60)
            except Exception:
                log.exception("stopping the leader's work failed")

    def _hand_over(self, coro: Coroutine[Any, Any, None]) -> Future[None] | None:
        """Run ``coro`` on the event loop; errors are logged."""
        loop = self._loop
        if loop is None or loop.is_closed():
            coro.close()
            return None
        future = asyncio.run_coroutine_threadsafe(coro, loop)
        future.add_done_callback(_log_failure)
        return future

    async def _lead(self, epoch: int) -> None:
        async with self._transitions:
            self.elected_epoch = epoch
            log.info("leading", extra={"epoch": epoch, "holder": self.holder})
            rows = await asyncio.to_thread(self._db.replicas.list)
            self._backend.offer_adoption(
                [r for r in rows if r.owner != self.holder and r.state == "READY"], self.host
            )
            await self._reconciler.lead(epoch)
            self.publisher.lead(epoch)
        # Until this process runs (or adopted) the replicas, queries go on to those it reached as
        # a follower; then those connections close.
        await self._reconciler.restored()
        if self._reconciler.leading:
            await self.remote.stop()

    async def _unlead(self) -> None:
        async with self._transitions:
            self.elected_epoch = None
            await self.publisher.stop()
            await self._reconciler.unlead()
            await self.remote.refresh()

    async def _refresh_remote(self) -> None:
        if not self._reconciler.leading:
            await self.remote.refresh()


def _log_failure(future: Future[None]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.error("leadership change failed", exc_info=future.exception())
