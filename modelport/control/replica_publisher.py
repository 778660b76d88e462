"""The leader's side of the replica registry: every ready replica this process runs is
registered in the store (``store/replicas.py``) for the other processes to reach, and removed
when it stops, within ``interval`` seconds. Every write is fenced by the lease epoch.

At the start of a tenure the rows of earlier leaders are removed: their replicas stopped with
them (a replica exits when its server does) or stop when it sees it is no longer leading.
"""

from __future__ import annotations

import asyncio
import logging

from modelport.clock import now_ms
from modelport.errors import LeaseLost
from modelport.runtime.local import LocalBackend
from modelport.store.leases import RECONCILER_LEASE
from modelport.store.replicas import ReplicaRecord, ReplicaRepository

__all__ = ["ReplicaPublisher"]

log = logging.getLogger("modelport.replicas")


class ReplicaPublisher:
    def __init__(
        self,
        repo: ReplicaRepository,
        backend: LocalBackend,
        *,
        owner: str,
        host: str,
        interval: float = 0.25,
    ) -> None:
        self._repo = repo
        self._backend = backend
        self._owner = owner
        self._host = host
        self.interval = interval
        self._task: asyncio.Task[None] | None = None
        self._epoch: int | None = None
        self._published: dict[str, ReplicaRecord] = {}
        self._writing = asyncio.Lock()

    def lead(self, epoch: int) -> None:
        """Start publishing for the tenure ``epoch`` (on the event loop)."""
        if self._task is not None:
            self._task.cancel()
        self._epoch = epoch
        self._published = {}
        self._task = asyncio.get_running_loop().create_task(self._run(epoch))

    async def publish_now(self) -> None:
        """Register what changed at once (the reconciler calls it before it reports a new
        config ready, so that every process can reach its replicas when the client learns it)."""
        if self._epoch is not None and self._task is not None:
            async with self._writing:
                await self._publish(self._epoch, self._published)

    async def stop(self) -> None:
        self._epoch = None
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    def current(self, epoch: int) -> dict[str, ReplicaRecord]:
        out: dict[str, ReplicaRecord] = {}
        for endpoint_id, version, replica_set in self._backend.all_sets():
            if replica_set.closed:
                continue
            for r in replica_set.ready_replicas:
                replica_id = f"{self._owner}/{r.name}"
                out[replica_id] = ReplicaRecord(
                    id=replica_id,
                    endpoint_id=endpoint_id,
                    config_version=version,
                    entity=replica_set.name,
                    host=r.host or self._host,
                    address=r.address,
                    pid=r.pid or 0,
                    state="READY",
                    owner=self._owner,
                    epoch=epoch,
                    concurrency=replica_set.per_replica_in_flight,
                    updated_ms=now_ms(),
                )
        return out

    async def _run(self, epoch: int) -> None:
        repo = self._repo
        published = self._published
        try:
            removed = await asyncio.to_thread(
                repo.remove_other_owners, self._owner, lease=RECONCILER_LEASE, epoch=epoch
            )
            if removed:
                log.info("removed the replica rows of earlier leaders", extra={"rows": removed})
            while True:
                try:
                    async with self._writing:
                        await self._publish(epoch, published)
                except LeaseLost:
                    raise
                except Exception as exc:  # the store away: try again (writes are idempotent)
                    log.warning("replica registry: publishing failed, retrying: %s", exc)
                    await asyncio.sleep(1.0)
                await asyncio.sleep(self.interval)
        except LeaseLost as exc:
            log.warning("replica registry: publishing stopped: %s", exc.message)

    async def _publish(self, epoch: int, published: dict[str, ReplicaRecord]) -> None:
        """Write what changed since the last pass (``published`` is updated in place)."""
        current = self.current(epoch)
        for replica_id in [i for i in published if i not in current]:
            await asyncio.to_thread(self._repo.remove, replica_id, lease=RECONCILER_LEASE, epoch=epoch)
            published.pop(replica_id)
        for replica_id, record in current.items():
            if replica_id not in published:
                await asyncio.to_thread(self._repo.put, record, lease=RECONCILER_LEASE)
                published[replica_id] = record
