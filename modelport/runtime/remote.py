"""Replicas that another process runs: how a process that does not lead (an HTTP worker of
``--workers N``, or another server on the same machine) reaches the leader's replicas.

The leader registers every ready replica in the store (``store/replicas.py``: endpoint, config
version, served entity, host, unix-socket address). :class:`RemoteReplicas` reads that registry
whenever the store's change counter moves and keeps one :class:`RemoteSet` per served entity,
connected straight to the replicas' sockets: a query goes from this process to the replica with
no hop through the leader, over the same multiplexed protocol the leader uses.

- Admission (in flight per replica, the queue, 429 beyond it) is this process's own: with N
  processes a replica may hold N times ``per_replica_in_flight``; it batches what it holds.
- Only replicas whose unix socket this process can open are reachable: those of this
  machine, or of another container that shares the socket folder (a volume); other rows are
  left out. Replicas on a Ray cluster listen on TCP (``runtime/transport.py``): every
  process reaches them, proving the replica's secret.
- A served entity with no replica here (scaled to zero, or the leader still starting it):
  the first query asks the leader to start one (a wake request in the store) and waits, within
  its deadline, for the registry to show it.
- These processes never start, stop or kill a replica: the leader supervises them. A replica
  that goes away is dropped here when its connection closes or its row disappears.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import orjson

from modelport.clock import now_ms
from modelport.entities.foundation.catalog import EngineSpec
from modelport.errors import TemporarilyUnavailable
from modelport.runtime import protocol
from modelport.runtime.autoscaler import Band
from modelport.runtime.replica import ReplicaDied, ReplicaHandle, ReplicaSpec
from modelport.runtime.replica_set import ReplicaSet, SetClosed
from modelport.runtime.stopping import alive as pid_alive
from modelport.runtime.transport import ReplicaAddress, ReplicaKeys, open_replica
from modelport.store.replicas import ReplicaRecord, ReplicaRepository

__all__ = ["AttachedReplica", "RemoteReplicas", "RemoteSet"]

log = logging.getLogger("modelport.runtime")

#: How long the requests waiting on a cold start through another process wait for the leader
#: to register a replica before they get 503: the default request timeout, as a cold start in
#: the leader itself (a Ray actor under load took over 30 s in CI); a request's own deadline
#: still applies.
WAKE_WAIT_SECONDS = 120.0
#: How often a wake request is repeated while no replica is registered.
WAKE_REPEAT_SECONDS = 3.0

Key = tuple[str, int, str]  # (endpoint id, config version, served entity)


class AttachedReplica(ReplicaHandle):
    """A replica started by another process, reached over its socket. Closing it only closes
    the connection (the process belongs to the leader), unless ``own``: a new leader adopting
    the replicas of the previous one tells the replica it owns it now (ADOPT) and stops it with
    signals (it has no process handle)."""

    def __init__(self, spec: ReplicaSpec, record: ReplicaRecord, index: int, *, own: bool = False) -> None:
        super().__init__(spec, index)
        where = ReplicaAddress.parse(record.address)
        self.socket_path = Path(where.path or where.name)
        self._address = record.address
        self._host = record.host if where.is_tcp else ""
        self.record_id = record.id
        self._pid = record.pid
        self.own = own
        self.start_mode = "adopted" if own else "attached"
        self.serves: tuple[str, str] | None = None
        self.keep_socket = True  # the replica's own; it removes it when it stops

    @property
    def pid(self) -> int | None:
        return self._pid

    @property
    def address(self) -> str:
        return self._address

    @property
    def host(self) -> str:
        return self._host

    @property
    def _signals(self) -> bool:
        """Whether its process can be signalled from here (a replica of this machine we own)."""
        return self.own and not self._host and bool(self._pid)

    @property
    def alive(self) -> bool:
        if self._signals and not pid_alive(self._pid or 0):
            return False
        return self._writer is not None and not self._lost

    async def start(self) -> None:
        """Connect and check that it answers a ping (adopt it when ``own``)."""
        self.started_at = time.monotonic()
        self._reader, self._writer = await open_replica(self._address, self.spec.keys)
        self._reader_task = asyncio.get_running_loop().create_task(self._read_loop())
        if self.own:
            kind, pong = await self.call(protocol.ADOPT, str(os.getpid()).encode(), 10)
            if kind != protocol.PONG:
                raise ReplicaDied(f"replica pid {self._pid} refused to be adopted (frame kind {kind})")
        else:
            pong = await self.ping(timeout=10)
        stats = orjson.loads(pong)
        #: What an engine replica serves (its PONG says): (engine, task); None for a custom model.
        self.serves = (str(stats["engine"]), str(stats["task"])) if "task" in stats else None
        self.ready = True
        self.was_ready = True

    async def stop(self, grace: float = 10.0) -> None:
        self.closing = True
        self.ready = False
        if self._signals and self._pid:  # SIGTERM: it drains what it holds, then exits
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._pid, signal.SIGTERM)
            deadline = time.monotonic() + grace
            while pid_alive(self._pid) and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            if pid_alive(self._pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self._pid, signal.SIGKILL)
        else:
            deadline = time.monotonic() + grace
            while self.in_flight and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
        await self._close()

    async def release(self) -> None:
        if self.own:
            await super().release()
        else:
            await self._close()

    async def kill(self) -> None:
        if self._signals and self._pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._pid, signal.SIGKILL)
        await self._close()


class RemoteSet(ReplicaSet):
    """The leader's replicas of one served entity, as this process reaches them. Admission,
    picking and the request methods are :class:`ReplicaSet`'s; scaling is the leader's."""

    def __init__(
        self,
        key: Key,
        *,
        per_replica_in_flight: int,
        queue_limit: int,
        wake: Callable[[Key], None],
        keys: ReplicaKeys | None = None,
    ) -> None:
        spec = ReplicaSpec(
            model_path=Path(os.devnull),
            run_dir=Path(os.devnull),
            socket_prefix="",
            log_path=Path(os.devnull),
            env={},
            keys=keys,
        )
        band = Band(min_replicas=1, max_replicas=1, per_replica=1, scale_to_zero=False, idle_seconds=0.0)
        super().__init__(
            key[2], spec, band, per_replica_in_flight=per_replica_in_flight, queue_limit=queue_limit
        )
        self.key = key
        self._request_wake = wake
        self._attached: dict[str, AttachedReplica] = {}

    async def attach(self, records: list[ReplicaRecord]) -> None:
        """Make the set's replicas those of ``records`` (connect new ones, drop the others)."""
        wanted = {r.id: r for r in records}
        for record_id in [i for i in self._attached if i not in wanted]:
            replica = self._attached.pop(record_id)
            self.replicas = [r for r in self.replicas if r is not replica]
            await replica.stop()
        new = [r for i, r in wanted.items() if i not in self._attached]
        for record in new:
            replica = AttachedReplica(self.spec, record, self.next_index())
            self._attached[record.id] = replica
            self.replicas.append(replica)
        results = await asyncio.gather(*(self._attached[r.id].start() for r in new), return_exceptions=True)
        for record, result in zip(new, results, strict=True):
            if isinstance(result, BaseException):
                log.warning(
                    "replica unreachable",
                    extra={"entity": self.name, "address": record.address, "error": str(result)},
                )
                replica = self._attached.pop(record.id)
                self.replicas = [r for r in self.replicas if r is not replica]
                await replica.kill()
        # A foundation model's replica says what it serves: the data plane needs it to stream
        # and to check the route (the leader knows it from the model; this process does not).
        if self.spec.engine is None:
            for replica in self._attached.values():
                if replica.ready and replica.serves is not None:
                    engine, task = replica.serves
                    self.spec = dataclasses.replace(self.spec, engine=EngineSpec(engine, task, "", {}))
                    break
        # A connection that closed (the replica died) is dropped; its row goes with the leader's
        # next registry write, and a replacement arrives as a new row.
        for record_id, replica in list(self._attached.items()):
            if replica.was_ready and not replica.alive:
                self._attached.pop(record_id)
                self.replicas = [r for r in self.replicas if r is not replica]
        if self.ready_replicas:
            self._ready.set()
        else:
            self._ready.clear()
        self._wake()

    async def engine(self, timeout: float) -> EngineSpec | None:
        """What the entity's replicas serve, once one is attached (a foundation model's query
        waits for that, within ``timeout``, asking the leader for a replica if none runs)."""
        if self.spec.engine is None and not self.ready_replicas:
            if self._cold_start_task is None:
                self._cold_start_task = asyncio.get_running_loop().create_task(self._cold_start())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._ready.wait(), timeout)
        return self.spec.engine

    async def scale_to(self, target: int, *, reason: str = "") -> None:
        """Scaling is the leader's: only a set with no replica asks it for one (a wake)."""
        if target > 0 and not self.ready_replicas:
            await asyncio.to_thread(self._request_wake, self.key)

    async def _cold_start(self) -> None:
        """Ask the leader to start a replica and wait for it to be registered (``attach``
        wakes the requests queued meanwhile, within their own deadlines); after
        :data:`WAKE_WAIT_SECONDS` with none, those still waiting get 503."""
        self.cold_starts += 1
        deadline = time.monotonic() + WAKE_WAIT_SECONDS
        try:
            # Asked again every WAKE_REPEAT_SECONDS: a wake the leader took while it still had a
            # replica (this process had not seen it yet) starts nothing, and that replica may
            # scale to zero before this process reaches it.
            while True:
                await asyncio.to_thread(self._request_wake, self.key)
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError
                try:
                    await asyncio.wait_for(self._ready.wait(), min(WAKE_REPEAT_SECONDS, left))
                    break
                except TimeoutError:
                    if time.monotonic() >= deadline:
                        raise
        except TimeoutError:
            self._fail_waiters(
                TemporarilyUnavailable(
                    f"Served entity '{self.name}' has no reachable replica: the leader did not "
                    f"register one within {WAKE_WAIT_SECONDS:g}s.",
                    retry_after=5,
                )
            )
        except Exception:
            log.exception("could not ask the leader for a replica", extra={"entity": self.name})
        finally:
            self._cold_start_task = None

    def _fail_waiters(self, error: Exception) -> None:
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_exception(error)

    async def retire(self) -> None:
        """The config version moved on: queries waiting here look their route up again."""
        self.closed = True
        self._fail_waiters(SetClosed(self.name))
        await self.attach([])

    async def close(self, *, reason: str = "") -> None:
        self.closed = True
        await self.attach([])


class RemoteReplicas:
    """A ``ReplicaSource`` (``gateway/served.py``) over the replica registry, for a process that
    does not run the replicas (see the module docstring)."""

    def __init__(
        self,
        repo: ReplicaRepository,
        host: str,
        *,
        per_replica_in_flight: int,
        queue_limit: int,
        keys: ReplicaKeys | None = None,
    ) -> None:
        self._repo = repo
        self._host = host
        self._keys = keys
        self._per_replica_in_flight = per_replica_in_flight
        self._queue_limit = queue_limit
        self._sets: dict[Key, RemoteSet] = {}
        self._records: dict[Key, list[ReplicaRecord]] = {}
        self._applying = asyncio.Lock()

    def replica_set(self, endpoint_id: str, version: int, entity: str) -> ReplicaSet | None:
        key = (endpoint_id, version, entity)
        found = self._sets.get(key)
        if found is None:
            found = self._sets[key] = RemoteSet(
                key,
                per_replica_in_flight=self._per_replica_in_flight,
                queue_limit=self._queue_limit,
                wake=self._wake,
                keys=self._keys,
            )
            records = self._records.get(key)
            if records:
                asyncio.get_running_loop().create_task(found.attach(records))
        return found

    def known_set(self, endpoint_id: str, version: int, entity: str) -> RemoteSet | None:
        """The set of that entity if this process made one (no new set)."""
        return self._sets.get((endpoint_id, version, entity))

    def _wake(self, key: Key) -> None:
        self._repo.request_wake(*key, now_ms())

    async def start(self) -> None:
        await self.refresh()

    async def refresh(self) -> None:
        """Re-read the registry and connect to what changed (run it when the store changed)."""
        rows = await asyncio.to_thread(self._repo.list)
        records: dict[Key, list[ReplicaRecord]] = {}
        for r in rows:
            # A socket of this machine, or one in a folder this process shares with the leader's
            # (containers of one host sharing a volume), or a TCP replica (on a Ray node).
            reachable = r.host == self._host or r.address.startswith("tcp://") or os.path.exists(r.address)
            if r.state == "READY" and reachable:
                records.setdefault((r.endpoint_id, r.config_version, r.entity), []).append(r)
        newest: dict[str, int] = {}
        for endpoint_id, version, _ in records:
            newest[endpoint_id] = max(version, newest.get(endpoint_id, version))
        async with self._applying:
            self._records = records
            for key, remote_set in list(self._sets.items()):
                if key not in records and key[1] < newest.get(key[0], key[1]):
                    del self._sets[key]  # superseded by a newer config version
                    await remote_set.retire()
                else:
                    await remote_set.attach(records.get(key, []))

    async def stop(self) -> None:
        """Close every set; queries waiting in one look their route up again (SetClosed)."""
        sets, self._sets = list(self._sets.values()), {}
        for remote_set in sets:
            await remote_set.retire()
