"""The metrics of every HTTP worker process of one server (``serve --workers N``), merged for
``/metrics`` and for ``GET /api/2.0/serving-endpoints/{name}/metrics``.

Each worker keeps its own ``Metrics`` registry and a scrape lands on any one of them. A
``MetricsExchange`` publishes its process's samples every second to
``<directory>/<process_id>.<pid>.json`` (written to a temporary file and renamed, so a reader
sees a whole file or the one before), and answers a scrape with this process's fresh samples
merged with every other process's last published file. The rules are those of
prometheus_client's multiprocess mode:

- counters, histograms (buckets, ``_sum``, ``_count``) and summaries are summed by identical
  label sets over every file, those of processes no longer alive included, so a total never
  goes backwards when a worker is replaced; a ``_created`` sample is the earliest one;
- gauges (and untyped samples) are **summed** over the live processes (an in-flight count,
  records held in memory: each process holds its own). The file of a process that is gone
  (``os.kill(pid, 0)`` fails), or that has not been rewritten for ``stale_seconds`` (its pid
  may belong to another program by now), contributes no gauges;
- info and stateset samples come from the first live process that has them.

Replica statistics (``modelport_endpoint_replicas``, ``_in_flight``, ``_queued``,
``_cold_starts``, ``_restarts``) are runtime state, not registry samples: a process that runs
replicas publishes the ``stats()`` of its replica sets (``replicas=``), and
``replica_stats`` sums them over the live processes.

A deleted endpoint is forgotten everywhere: ``Metrics.forget_endpoint`` in one process leaves a
tombstone in ``<directory>/forgotten/``; the other processes drop their series of that endpoint
at their next publish or scrape, and samples of that endpoint in files published before the
tombstone (dead processes' included) are left out of the merge.

Files carry the pid in their name, so a replaced worker never overwrites its predecessor's
counts. Nothing here empties the directory: files of an earlier run of the server would be
counted, so it must be emptied when the server starts (the run folder is).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import orjson
from prometheus_client import generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from modelport.metrics import Metrics, render_endpoint_text

__all__ = ["MetricsExchange", "ReplicaSource"]

log = logging.getLogger("modelport.metrics")

_FORMAT = 1
_CUMULATIVE = frozenset({"counter", "histogram", "summary"})
_FIRST_ONLY = frozenset({"info", "stateset"})
_PROCESS_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")

# One sample as published: (sample name, labels, value).
_Sample = tuple[str, dict[str, str], float]


class _StatsSource(Protocol):
    name: str

    def stats(self) -> Mapping[str, Any]: ...


class ReplicaSource(Protocol):
    """What runs replicas (``runtime.local.LocalBackend``): every replica set as (endpoint id,
    config version, set)."""

    def all_sets(self) -> Sequence[tuple[str, int, _StatsSource]]: ...


@dataclass(frozen=True)
class _Family:
    name: str
    type: str
    documentation: str
    unit: str
    samples: list[_Sample]


@dataclass(frozen=True)
class _Published:
    """One process's file, as read."""

    pid: int
    published_at: float
    families: list[_Family]
    replicas: list[tuple[str, int, str, dict[str, float]]]


@dataclass
class _Source:
    families: Sequence[_Family]
    alive: bool
    dropped: frozenset[str]  # endpoints forgotten after this source was published


class _Families(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterator[Metric]:
        return iter(self._families)


def _encode_value(value: float) -> float | str:
    return value if math.isfinite(value) else repr(value)  # JSON has no inf or nan


def _numeric(stats: Mapping[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in stats.items() if isinstance(v, int | float)}


def _alive(pid: int) -> bool:
    if pid <= 0:  # os.kill(0, ...) would signal our own process group
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by someone else
        return True
    return True


def _families_of(metrics: Iterable[Metric]) -> list[_Family]:
    return [
        _Family(m.name, m.type, m.documentation, m.unit, [(s.name, s.labels, s.value) for s in m.samples])
        for m in metrics
    ]


def _decode(raw: bytes) -> _Published:
    """Parse a published file; raises ValueError (or KeyError, TypeError) on anything else."""
    doc = orjson.loads(raw)
    if doc["format"] != _FORMAT:
        raise ValueError(f"unknown format {doc['format']!r}")
    families = [
        _Family(
            str(name),
            str(kind),
            str(documentation),
            str(unit),
            [
                (str(sample), {str(k): str(v) for k, v in labels.items()}, float(value))
                for sample, labels, value in samples
            ],
        )
        for name, kind, documentation, unit, samples in doc["families"]
    ]
    replicas = [
        (str(endpoint_id), int(version), str(entity), {str(k): float(v) for k, v in stats.items()})
        for endpoint_id, version, entity, stats in doc["replicas"]
    ]
    return _Published(int(doc["pid"]), float(doc["published_at"]), families, replicas)


def _merge(sources: Iterable[_Source], endpoint: str | None = None) -> list[Metric]:
    """Families merged by the module's rules, in the order first seen; with ``endpoint``, only
    the samples labelled with it."""
    merged: dict[str, tuple[Metric, dict[tuple[str, tuple[tuple[str, str], ...]], list[Any]]]] = {}
    for source in sources:
        for family in source.families:
            if family.type not in _CUMULATIVE and not source.alive:
                continue
            entry = merged.get(family.name)
            if entry is None:
                metric = Metric(family.name, family.documentation, family.type, family.unit)
                entry = merged[family.name] = (metric, {})
            elif entry[0].type != family.type:
                continue  # two processes disagree on a family: keep the first
            series = entry[1]
            first_only = family.type in _FIRST_ONLY
            created = family.name + "_created"
            for name, labels, value in family.samples:
                where = labels.get("endpoint")
                if endpoint is not None and where != endpoint:
                    continue
                if source.dropped and where in source.dropped:
                    continue
                key = (name, tuple(sorted(labels.items())))
                seen = series.get(key)
                if seen is None:
                    series[key] = [name, labels, value]
                elif first_only:
                    continue
                elif name == created:
                    seen[2] = min(seen[2], value)
                else:
                    seen[2] += value
    out = []
    for metric, series in merged.values():
        for name, labels, value in series.values():
            metric.add_sample(name, labels, value)
        out.append(metric)
    return out


class MetricsExchange:
    """Publishes one process's metrics to ``directory`` and merges those of its siblings.

    Guarantees: a file is replaced atomically (never read half written); a file that cannot be
    read or parsed is left out of the merge, never raised; publishing failures are logged and
    the next tick tries again. ``server_text`` and ``endpoint_text`` run on the event loop and
    read only small files (a parsed file is kept until it is replaced).
    """

    def __init__(
        self,
        directory: Path,
        metrics: Metrics,
        process_id: str,
        *,
        replicas: ReplicaSource | None = None,
        interval_seconds: float = 1.0,
        stale_seconds: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``process_id`` names this worker in file names (letters, digits, ``-`` and ``_``);
        ``replicas`` is given in the process that runs replicas; ``clock`` is wall time (files
        of several processes are compared by it)."""
        if not _PROCESS_ID.fullmatch(process_id):
            raise ValueError(f"process_id must be 1-64 letters, digits, '-' or '_', not {process_id!r}.")
        self.directory = directory
        self.metrics = metrics
        self.process_id = process_id
        self._replicas = replicas
        self._interval = interval_seconds
        self._stale = stale_seconds
        self._clock = clock
        self._pid = os.getpid()
        self._file_name = f"{process_id}.{self._pid}.json"
        self._forgotten_dir = directory / "forgotten"
        # file name -> (inode, mtime_ns, size, parsed): each publish is a new inode, and mtimes
        # can be too coarse to tell two writes apart
        self._cache: dict[str, tuple[int, int, int, _Published | None]] = {}
        self._tombstones: dict[str, float] = {}  # endpoint name -> when it was forgotten
        self._tombstone_cache: dict[str, int] = {}  # file name -> mtime_ns when read
        self._applying = False
        self._failing = False
        self._task: asyncio.Task[None] | None = None
        self._read_tombstones()  # forgotten before this process started: nothing to drop here
        metrics.on_forget(self._forgotten_here)

    # ---- publishing ---------------------------------------------------------------------------
    def publish(self) -> None:
        """Write this process's current samples now (blocking; ``start`` does it every second)."""
        self._write(self._snapshot())

    async def start(self) -> None:
        """Publish once, then every ``interval_seconds`` until ``stop``."""
        self.directory.mkdir(parents=True, exist_ok=True)
        await self._publish_async()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="metrics-exchange")

    async def stop(self) -> None:
        """Stop publishing after a last write, so that the counts of this process's final
        second stay in the totals after it exits."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        try:
            await self._publish_async()
        except OSError as exc:
            log.warning("metrics not published at stop", extra={"error": str(exc)})

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self._publish_async()
            except Exception as exc:  # the loop outlives a full disk or an emptied folder
                if not self._failing:
                    log.warning("metrics not published", extra={"error": f"{type(exc).__name__}: {exc}"})
                self._failing = True
            else:
                self._failing = False

    async def _publish_async(self) -> None:
        data = self._snapshot()  # collectors read their owners' state: on the loop
        await asyncio.to_thread(self._write, data)

    def _snapshot(self) -> bytes:
        # Stamped before the tombstones are read: a tombstone left after this stamp drops this
        # file's samples of that endpoint from the merge, even if they were collected below.
        published_at = self._clock()
        self._apply_tombstones()
        families = [
            [
                m.name,
                m.type,
                m.documentation,
                m.unit,
                [[s.name, s.labels, _encode_value(s.value)] for s in m.samples],
            ]
            for m in self.metrics.registry.collect()
        ]
        replicas = [
            [endpoint_id, version, s.name, _numeric(s.stats())]
            for endpoint_id, version, s in (self._replicas.all_sets() if self._replicas else ())
        ]
        doc = {
            "format": _FORMAT,
            "pid": self._pid,
            "process_id": self.process_id,
            "published_at": published_at,
            "families": families,
            "replicas": replicas,
        }
        return orjson.dumps(doc)

    def _write(self, data: bytes) -> None:
        self._atomic_write(self.directory, self._file_name, data)

    @staticmethod
    def _atomic_write(directory: Path, name: str, data: bytes) -> None:
        for attempt in range(2):
            try:
                tmp = directory / f".{name}.{os.getpid()}.tmp"
                tmp.write_bytes(data)
                os.replace(tmp, directory / name)
                return
            except FileNotFoundError:  # the run folder was emptied under us
                if attempt:
                    raise
                directory.mkdir(parents=True, exist_ok=True)

    # ---- merged views -------------------------------------------------------------------------
    def server_text(self) -> bytes:
        """``/metrics`` of the whole server: this process's samples now, merged with the other
        processes' last published ones."""
        return generate_latest(_Families(_merge(self._sources())))

    def endpoint_text(
        self,
        name: str,
        gauges: dict[str, tuple[str, float]],
        entity_gauges: dict[str, tuple[str, dict[str, float]]] | None = None,
    ) -> str:
        """An endpoint's metrics: its series merged over all processes, then ``gauges`` and
        ``entity_gauges`` as given. The caller reads those from the store (identical in every
        process) or passes ``replica_stats`` already merged; they are not summed here."""
        return render_endpoint_text(_merge(self._sources(), endpoint=name), name, gauges, entity_gauges)

    def replica_stats(
        self, endpoint_id: str, version: int, local: Mapping[str, Mapping[str, Any]]
    ) -> dict[str, dict[str, float]]:
        """Per served entity, the statistics of one config version's replica sets: ``local``
        (this process's ``stats()``) plus those the other live processes published, summed."""
        out = {entity: _numeric(stats) for entity, stats in local.items()}
        for published, alive in self._others():
            if not alive:
                continue
            for endpoint, v, entity, stats in published.replicas:
                if endpoint == endpoint_id and v == version:
                    into = out.setdefault(entity, {})
                    for key, value in stats.items():
                        into[key] = into.get(key, 0.0) + value
        return out

    def _sources(self) -> Iterator[_Source]:
        self._apply_tombstones()
        yield _Source(_families_of(self.metrics.registry.collect()), True, frozenset())
        tombstones = self._tombstones
        for published, alive in self._others():
            dropped = frozenset(n for n, at in tombstones.items() if at > published.published_at)
            yield _Source(published.families, alive, dropped)

    def _others(self) -> list[tuple[_Published, bool]]:
        """The other processes' files (sorted by name), each with whether its gauges count."""
        try:
            entries = sorted(
                (e for e in os.scandir(self.directory) if e.name.endswith(".json") and e.is_file()),
                key=lambda e: e.name,
            )
        except OSError:  # not created yet, or emptied
            return []
        now = self._clock()
        out = []
        names = set()
        for entry in entries:
            if entry.name.startswith(".") or entry.name == self._file_name:
                continue
            published = self._read(entry)
            names.add(entry.name)
            if published is None:
                continue
            alive = now - published.published_at <= self._stale and _alive(published.pid)
            out.append((published, alive))
        for gone in set(self._cache) - names:
            del self._cache[gone]
        return out

    def _read(self, entry: os.DirEntry[str]) -> _Published | None:
        try:
            st = entry.stat()
            cached = self._cache.get(entry.name)
            if cached is not None and cached[:3] == (st.st_ino, st.st_mtime_ns, st.st_size):
                return cached[3]
            raw = Path(entry.path).read_bytes()
        except OSError:  # removed between the listing and now
            return None
        try:
            published: _Published | None = _decode(raw)
        except (ValueError, KeyError, TypeError, AttributeError):
            log.debug("unreadable metrics file left out", extra={"file": entry.name})
            published = None
        self._cache[entry.name] = (st.st_ino, st.st_mtime_ns, st.st_size, published)
        return published

    # ---- deleted endpoints --------------------------------------------------------------------
    def _forgotten_here(self, name: str) -> None:
        """``Metrics.forget_endpoint`` ran in this process: leave a tombstone for the others."""
        if self._applying:
            return
        at = self._clock()
        self._tombstones[name] = at
        digest = hashlib.sha256(name.encode()).hexdigest()[:32]
        try:
            self._atomic_write(self._forgotten_dir, f"{digest}.json", orjson.dumps({"name": name, "at": at}))
        except OSError as exc:
            log.warning("endpoint's metrics not forgotten by other workers", extra={"error": str(exc)})

    def _read_tombstones(self) -> list[str]:
        """Read new tombstones into ``_tombstones``; returns the names newly forgotten."""
        try:
            entries = [e for e in os.scandir(self._forgotten_dir) if e.name.endswith(".json")]
        except OSError:
            return []
        fresh = []
        for entry in entries:
            if entry.name.startswith("."):
                continue
            try:
                mtime = entry.stat().st_mtime_ns
                if self._tombstone_cache.get(entry.name) == mtime:
                    continue
                doc = orjson.loads(Path(entry.path).read_bytes())
                name, at = str(doc["name"]), float(doc["at"])
            except (OSError, ValueError, KeyError, TypeError):
                continue
            self._tombstone_cache[entry.name] = mtime
            if at > self._tombstones.get(name, -math.inf):
                self._tombstones[name] = at
                fresh.append(name)
        return fresh

    def _apply_tombstones(self) -> None:
        """Drop this process's series of endpoints another process forgot since the last look."""
        fresh = self._read_tombstones()
        if not fresh:
            return
        self._applying = True
        try:
            for name in fresh:
                self.metrics.forget_endpoint(name)
        finally:
            self._applying = False
