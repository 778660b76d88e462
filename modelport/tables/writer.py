"""Record inference and usage rows cheaply on the hot path; write them to Delta in the background.

Usage::

    writer = TableWriter(root="/data/tables", spool_dir="/data/spool")
    await writer.start()                       # open the spool; the flusher replays what a crash left
    chat = writer.payload_table("main", "default", "chat")   # main.default.chat_payload
    writer.record_inference(chat, InferenceRecord(...))      # before answering the client
    writer.record_usage(UsageRecord(...))
    await writer.stop()                        # flush everything, release the spool

``record_*`` appends one JSON line to the active spool segment (:mod:`modelport.tables.spool`) with one
``os.write`` and returns: a few microseconds, and the row survives a ``kill -9`` from then on. A
background thread wakes every ``flush_interval`` seconds (or as soon as ``max_batch`` records wait),
seals the active segment, reads the sealed segments, groups their rows by table and appends each group
to its Delta table with one ``write_deltalake(..., mode="append")`` commit, then deletes the segments.

Recovery: segments an earlier run left (a crash, a kill, a flush that failed) are replayed by the first
flush (:meth:`TableWriter.recover` does it at once). Their rows may already be in Delta, when the crash
came between the Delta commit and the deletion of the segment, so before writing them the writer reads
the ids of the date partitions involved and drops rows already there (and duplicates within the batch).

Concurrency: writes to one table from one process go through one lock; writers in other processes are
handled by Delta's optimistic concurrency (appends do not conflict; a failed commit is retried
``commit_retries`` times). A table whose write fails is retried with exponential backoff while other
tables go on; its rows stay in the spool until they are written.

A full spool disk: records the disk refuses wait in memory (``memory_records`` of them, see
:mod:`modelport.tables.spool`); each flush cycle first writes them to the spool, so they reach
Delta once the disk has room again. Beyond that bound ``record_*`` raise
:class:`~modelport.errors.TemporarilyUnavailable`, and :meth:`TableWriter.check_room` says so
before the work whose record it would be.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import threading
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc
from deltalake import DeltaTable, write_deltalake
from deltalake.exceptions import CommitFailedError, SchemaMismatchError

from modelport.errors import InvalidParameterValue, InvalidState
from modelport.tables.names import TableRef, audit_table, payload_table, usage_table
from modelport.tables.records import (
    MAX_BODY_BYTES,
    AuditRecord,
    InferenceRecord,
    UsageRecord,
    clip,
    to_arrow,
)
from modelport.tables.spool import FsyncPolicy, Segment, Spool

__all__ = ["TableWriter", "WriterStats"]

log = logging.getLogger("modelport.tables")

# A text of at most this many characters is surely at most MAX_BODY_BYTES of UTF-8.
_SAFE_CHARS = MAX_BODY_BYTES // 4

_table_locks: dict[str, threading.Lock] = {}
_table_locks_guard = threading.Lock()


def _table_lock(uri: str) -> threading.Lock:
    with _table_locks_guard:
        lock = _table_locks.get(uri)
        if lock is None:
            lock = _table_locks[uri] = threading.Lock()
        return lock


@dataclass
class WriterStats:
    """Counters of a :class:`TableWriter` (rows unless said otherwise).

    ``recorded``: accepted by ``record_*``; ``flushed``: written to Delta; ``replayed``: read back from
    segments of an earlier run; ``deduplicated``: dropped because their id was already in the table (or
    twice in the batch); ``failed``: rows whose write failed (each failed attempt counts; they are
    retried); ``rejected``: rows that could not be converted to the table's schema (kept in
    ``<spool>/rejected.jsonl``); ``corrupt``: spool lines that did not parse (a write torn by a crash);
    ``commits``: Delta commits made; ``pending_segments``: sealed segments not yet flushed;
    ``in_memory``: records the spool's disk refused that wait in memory; ``refused``: records (and
    queries) refused because that memory was full.
    """

    recorded: int = 0
    flushed: int = 0
    replayed: int = 0
    deduplicated: int = 0
    failed: int = 0
    rejected: int = 0
    corrupt: int = 0
    commits: int = 0
    pending_segments: int = 0
    in_memory: int = 0
    refused: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class TableWriter:
    """Writes inference and usage rows to Delta tables under ``root`` through a spool in ``spool_dir``.

    ``root`` is a local folder or a URI (``s3://bucket/prefix``, with ``storage_options`` for
    deltalake); ``spool_dir`` must be a local folder that only this process uses.
    ``flush_interval`` (seconds) and ``max_batch`` (records) bound how long rows wait in the spool;
    ``fsync`` is the spool's policy (``"never"``, ``"interval"``, ``"always"``, see
    :mod:`modelport.tables.spool`); ``commit_retries`` bounds retries of a conflicting Delta commit;
    ``max_bytes_per_cycle`` bounds how much of a backlog of spool segments one flush reads at once;
    ``memory_records`` bounds the records kept in memory while the spool's disk refuses writes.
    """

    def __init__(
        self,
        root: str | Path,
        spool_dir: str | Path,
        *,
        flush_interval: float = 1.0,
        max_batch: int = 1000,
        fsync: FsyncPolicy = "never",
        storage_options: dict[str, str] | None = None,
        commit_retries: int = 5,
        max_bytes_per_cycle: int = 64 * 1024 * 1024,
        memory_records: int = 10_000,
    ) -> None:
        if flush_interval <= 0:
            raise InvalidParameterValue("flush_interval must be positive.")
        if max_batch < 1:
            raise InvalidParameterValue("max_batch must be at least 1.")
        self.root = str(root)
        self.flush_interval = flush_interval
        self.max_batch = max_batch
        self.storage_options = storage_options
        self.commit_retries = commit_retries
        self.max_bytes_per_cycle = max_bytes_per_cycle
        self.usage = usage_table(self.root)
        self.audit = audit_table(self.root)
        self._spool = Spool(spool_dir, fsync=fsync, memory_limit=memory_records)
        self._stats = WriterStats()
        self._stats_lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._refs: dict[bytes, TableRef] = {
            self.usage.spool_key: self.usage,
            self.audit.spool_key: self.audit,
        }
        self._backoff: dict[bytes, tuple[float, int]] = {}  # table key -> (retry at, failures)

    # -- names --------------------------------------------------------------------------------------

    def payload_table(self, catalog_name: str, schema_name: str, table_name_prefix: str) -> TableRef:
        """The inference table ``<catalog>.<schema>.<prefix>_payload`` under this writer's root."""
        ref = payload_table(self.root, catalog_name, schema_name, table_name_prefix)
        self._refs.setdefault(ref.spool_key, ref)
        return ref

    @property
    def spool_dir(self) -> Path:
        return self._spool.directory

    # -- life cycle ---------------------------------------------------------------------------------

    def open(self) -> None:
        """Open the spool (taking its folder); segments from an earlier run become pending.

        Records are accepted from now on. Nothing is written to Delta until :meth:`recover`,
        :meth:`flush_now` or the flusher started by :meth:`start` runs.
        """
        self._spool.open()
        _warm_up()

    def recover(self) -> int:
        """Replay at once the segments an earlier run left; return how many rows were replayed."""
        if not self._spool.is_open:
            self.open()
        before = self.stats.replayed
        while any(s.replayed for s in self._spool.pending()):
            if not self._flush_cycle(only_replayed=True):
                break
        return self.stats.replayed - before

    async def start(self) -> None:
        """Open the spool and start the background flusher (which first replays an earlier run's rows)."""
        if not self._spool.is_open:
            await asyncio.to_thread(self.open)
        self.start_thread()

    def start_thread(self) -> None:
        """Start the background flusher thread (the spool must be open)."""
        if not self._spool.is_open:
            raise InvalidState("Open the writer before starting its flusher.")
        if self._thread is not None and self._thread.is_alive():
            return
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="modelport-tables-flusher", daemon=True)
        self._thread.start()

    async def stop(self, timeout: float | None = 60.0) -> None:
        """Flush every recorded row, stop the flusher and release the spool.

        Rows that could not be written within ``timeout`` seconds stay in the spool for the next start.
        """
        await asyncio.to_thread(self.close, timeout)

    def close(self, timeout: float | None = 60.0) -> None:
        """Synchronous :meth:`stop`."""
        if not self._spool.is_open:
            return
        thread = self._thread
        if thread is not None:
            self._stopping.set()
            self._wake.set()
            thread.join(timeout)
            if thread.is_alive():
                log.warning("tables: the flusher did not finish within %ss; rows stay in the spool", timeout)
            self._thread = None
        else:
            self.flush_now(deadline=None if timeout is None else time.monotonic() + timeout)
        with self._flush_lock:
            self._spool.close()

    def _run(self) -> None:
        sync_interval = self._spool.fsync == "interval"
        while True:
            stopping = self._stopping.is_set()
            if not stopping:
                self._wake.wait(self.flush_interval)
                self._wake.clear()
            try:
                if sync_interval:
                    self._spool.sync()
                more = self._flush_cycle()
                while more and self._has_ready_work():
                    more = self._flush_cycle()
            except Exception:  # never let the flusher die; the rows stay in the spool
                log.exception("tables: flush failed")
            if stopping:
                if self._spool.pending() and self._backoff:
                    # Give failing tables one last immediate try before giving up for this run.
                    self._backoff.clear()
                    try:
                        self._flush_cycle()
                    except Exception:
                        log.exception("tables: final flush failed")
                return

    def _has_ready_work(self) -> bool:
        now = time.monotonic()
        for seg in self._spool.pending():
            if seg.tables is None:
                return True
            if any(k not in seg.done and self._backoff.get(k, (0.0, 0))[0] <= now for k in seg.tables):
                return True
        return False

    # -- hot path -----------------------------------------------------------------------------------

    def record_inference(self, table: TableRef, record: InferenceRecord) -> None:
        """Append ``record`` to the spool for the inference ``table``; call it before answering.

        A ``request``/``response`` over 1 MiB is clipped and flagged here if the caller did not.
        Raises :class:`~modelport.errors.InvalidParameterValue` for a wrong table or record type and
        :class:`~modelport.errors.InvalidState` when the writer is not open.
        """
        if type(record) is not InferenceRecord:
            raise InvalidParameterValue("record_inference takes an InferenceRecord.")
        if table.kind != "inference":
            raise InvalidParameterValue(f"{table.name} is not an inference table.")
        if not record.databricks_request_id:
            raise InvalidParameterValue("databricks_request_id is required.")
        if record.request is not None and len(record.request) > _SAFE_CHARS:
            record.request, cut = clip(record.request)
            record.request_truncated = record.request_truncated or cut
        if record.response is not None and len(record.response) > _SAFE_CHARS:
            record.response, cut = clip(record.response)
            record.response_truncated = record.response_truncated or cut
        self._append(table, record)

    def record_audit(self, record: AuditRecord) -> None:
        """Append ``record`` to the spool for the audit log ``system.access.audit``."""
        if type(record) is not AuditRecord:
            raise InvalidParameterValue("record_audit takes an AuditRecord.")
        if not record.event_id:
            raise InvalidParameterValue("event_id is required.")
        self._append(self.audit, record)

    def record_usage(self, record: UsageRecord) -> None:
        """Append ``record`` to the spool for ``system.serving.endpoint_usage``."""
        if type(record) is not UsageRecord:
            raise InvalidParameterValue("record_usage takes a UsageRecord.")
        if not record.request_id:
            raise InvalidParameterValue("request_id is required.")
        self._append(self.usage, record)

    def check_room(self) -> None:
        """Raise :class:`~modelport.errors.TemporarilyUnavailable` when a record could be neither
        written nor kept now (the spool's disk refuses writes and its memory bound is reached)."""
        self._spool.check_room()

    def _append(self, table: TableRef, record: Any) -> None:
        key = table.spool_key
        if key not in self._refs:
            self._refs[key] = table
        count = self._spool.append(key, record)
        if count == self.max_batch:
            self._wake.set()

    # -- flushing -----------------------------------------------------------------------------------

    @property
    def stats(self) -> WriterStats:
        """A copy of the counters."""
        with self._stats_lock:
            copy = WriterStats(**self._stats.as_dict())
        copy.recorded = self._spool.appended
        copy.in_memory = self._spool.in_memory
        copy.refused = self._spool.refused
        copy.pending_segments = len(self._spool.pending()) if self._spool.is_open else 0
        return copy

    def _count(self, **deltas: int) -> None:
        with self._stats_lock:
            for name, value in deltas.items():
                setattr(self._stats, name, getattr(self._stats, name) + value)

    def flush_now(self, deadline: float | None = None) -> int:
        """Seal the active segment and write everything pending to Delta now; return rows written.

        A table whose write fails is retried (ignoring backoff) until ``deadline`` (a
        ``time.monotonic()`` value; ``None``: no retry), after which its rows stay in the spool.
        """
        before = self.stats.flushed
        self._backoff.clear()
        while True:
            if self._flush_cycle():
                continue  # more than one pass can read: go on
            if not self._spool.pending() or deadline is None or time.monotonic() >= deadline:
                break
            if self._backoff:
                time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
                self._backoff.clear()
        return self.stats.flushed - before

    def _flush_cycle(self, only_replayed: bool = False) -> bool:
        """One pass: seal, read pending segments (``max_bytes_per_cycle`` of them), write each table.

        Returns whether pending work remains that this pass did not reach.
        """
        with self._flush_lock:
            if not self._spool.is_open:
                return False
            if not only_replayed:
                self._spool.drain()  # records the disk refused before, if it takes them now
                self._spool.seal()
            now = time.monotonic()
            blocked = {k for k, (at, _) in self._backoff.items() if at > now}
            batches: dict[bytes, list[dict[str, Any]]] = {}
            sources: dict[bytes, list[Segment]] = {}
            dedup: set[bytes] = set()
            read: list[Segment] = []
            budget = self.max_bytes_per_cycle
            more = False
            for seg in self._spool.pending():
                if only_replayed and not seg.replayed:
                    continue
                if seg.tables is not None and not (seg.tables - seg.done - blocked):
                    if seg.tables <= seg.done:
                        self._spool.mark_flushed(seg)
                    continue
                if budget <= 0:
                    more = True
                    break
                with contextlib.suppress(FileNotFoundError):
                    budget -= seg.path.stat().st_size
                first_read = seg.tables is None
                contents = self._spool.read(seg)
                read.append(seg)
                if contents.corrupt:
                    self._count(corrupt=contents.corrupt)
                    log.warning("tables: %d unreadable line(s) skipped in %s", contents.corrupt, seg.path)
                for key, rows in contents.rows.items():
                    if key in blocked:
                        continue
                    batches.setdefault(key, []).extend(rows)
                    sources.setdefault(key, []).append(seg)
                    if seg.needs_dedup:
                        dedup.add(key)
                    if seg.replayed and first_read:
                        self._count(replayed=len(rows))
            for key, rows in batches.items():
                ok = self._write_rows(key, rows, dedup=key in dedup)
                for seg in sources[key]:
                    if ok:
                        self._spool.mark_table_done(seg, key)
                    else:
                        seg.needs_dedup = True
            for seg in read:
                if seg.tables is not None and seg.tables <= seg.done:
                    self._spool.mark_flushed(seg)
            return more

    def compact(self, table: TableRef, *, vacuum_retention_hours: int | None = None) -> dict[str, Any]:
        """Merge the table's small files (one a flush) into large ones; return deltalake's metrics.

        Appends from other writers may go on meanwhile. With ``vacuum_retention_hours``, files no
        longer referenced and older than that are then deleted (Delta refuses under 168 hours).
        Meant to be run now and then (e.g. hourly) by whoever owns the writer.
        """
        with _table_lock(table.uri):
            dt = DeltaTable(table.uri, storage_options=self.storage_options)
            metrics: dict[str, Any] = dict(dt.optimize.compact())
            if vacuum_retention_hours is not None:
                removed = dt.vacuum(retention_hours=vacuum_retention_hours, dry_run=False)
                metrics["vacuumed_files"] = len(removed)
        return metrics

    def _ref(self, key: bytes) -> TableRef:
        ref = self._refs.get(key)
        if ref is None:
            kind, name, uri = orjson.loads(key)
            ref = self._refs[key] = TableRef(kind, name, uri)
        return ref

    def _write_rows(self, key: bytes, rows: list[dict[str, Any]], *, dedup: bool) -> bool:
        """Append ``rows`` to the table ``key``; return whether they are now all in Delta (or rejected)."""
        try:
            ref = self._ref(key)
        except Exception:
            log.error("tables: dropping %d rows for an unknown table key %r", len(rows), key[:200])
            self._reject(key, rows, "unknown table key")
            return True
        table = self._convert(ref, key, rows)
        if table is None or table.num_rows == 0:
            return True
        try:
            with _table_lock(ref.uri):
                if dedup:
                    table = self._drop_existing(ref, table)
                    if table.num_rows == 0:
                        return True
                self._append_delta(ref, table)
        except Exception as exc:
            failures = self._backoff.get(key, (0.0, 0))[1] + 1
            delay = min(60.0, self.flush_interval * 2**failures) * (0.5 + random.random() / 2)
            self._backoff[key] = (time.monotonic() + delay, failures)
            self._count(failed=table.num_rows)
            log.warning(
                "tables: writing %d rows to %s failed (%s); retrying in %.1fs",
                table.num_rows,
                ref.name,
                exc,
                delay,
            )
            return False
        self._backoff.pop(key, None)
        self._count(flushed=table.num_rows, commits=1)
        return True

    def _convert(self, ref: TableRef, key: bytes, rows: list[dict[str, Any]]) -> pa.Table | None:
        try:
            return to_arrow(ref.kind, rows)
        except Exception:
            pass
        good: list[dict[str, Any]] = []
        for row in rows:  # find the rows at fault; keep the others
            try:
                to_arrow(ref.kind, [dict(row)])
            except Exception as exc:
                self._reject(key, [row], str(exc))
            else:
                good.append(row)
        return to_arrow(ref.kind, good) if good else None

    def _reject(self, key: bytes, rows: Iterable[dict[str, Any]], reason: str) -> None:
        rows = list(rows)
        path = self._spool.directory / "rejected.jsonl"
        with path.open("ab") as fh:
            for row in rows:
                fh.write(orjson.dumps({"t": orjson.Fragment(key), "error": reason, "r": row}, default=str))
                fh.write(b"\n")
        self._count(rejected=len(rows))
        log.error("tables: %d row(s) rejected (%s), kept in %s", len(rows), reason, path)

    def _drop_existing(self, ref: TableRef, table: pa.Table) -> pa.Table:
        """``table`` less rows whose id is already in the Delta table, or earlier in ``table``."""
        id_col = ref.id_column
        ids = table[id_col]
        # Duplicates within the batch: keep the first row of each id.
        unique = table.filter(_first_positions(ids))
        existing = self._existing_ids(ref, unique[id_col], unique[ref.partition_column])
        if existing is not None and len(existing):
            unique = unique.filter(pc.invert(pc.is_in(unique[id_col], value_set=existing)))
        dropped = table.num_rows - unique.num_rows
        if dropped:
            self._count(deduplicated=dropped)
        return unique

    def _existing_ids(self, ref: TableRef, ids: pa.ChunkedArray, dates: pa.ChunkedArray) -> pa.Array | None:
        if not DeltaTable.is_deltatable(ref.uri, storage_options=self.storage_options):
            return None
        import pyarrow.dataset as ds  # imports pandas (seconds): only when recovering

        dataset = DeltaTable(ref.uri, storage_options=self.storage_options).to_pyarrow_dataset()
        wanted = pc.unique(ids.combine_chunks())
        filt = ds.field(ref.partition_column).isin(pc.unique(dates.combine_chunks())) & ds.field(
            ref.id_column
        ).isin(wanted)
        found = dataset.to_table(filter=filt, columns=[ref.id_column])
        return pc.unique(found[ref.id_column].combine_chunks())

    def _append_delta(self, ref: TableRef, table: pa.Table) -> None:
        schema_mode: Any = None
        for attempt in range(self.commit_retries + 1):
            try:
                write_deltalake(
                    ref.uri,
                    table,
                    mode="append",
                    partition_by=[ref.partition_column],
                    storage_options=self.storage_options,
                    schema_mode=schema_mode,
                )
                return
            except SchemaMismatchError:
                if schema_mode is not None:
                    raise
                schema_mode = "merge"  # a table made by an older modelport: add the new columns
            except CommitFailedError:
                if attempt >= self.commit_retries:
                    raise
                time.sleep(0.05 * 2**attempt * (0.5 + random.random()))


def _warm_up() -> None:
    """Import now what the first flush would import in the flusher thread.

    ``write_deltalake`` imports pandas on its first call, and ``pyarrow.dataset`` (for recovery) does
    too: a second or more that, done in the flusher while the event loop keeps the GIL busy, stretches
    to many seconds and slows the event loop down. Better paid once at start.
    """
    import importlib

    for name in ("pandas", "pyarrow.dataset"):
        with contextlib.suppress(ImportError):
            importlib.import_module(name)


def _first_positions(ids: pa.ChunkedArray) -> pa.Array:
    """Boolean mask: true where the id is seen for the first time."""
    seen: set[Any] = set()
    mask = []
    for value in ids.to_pylist():
        mask.append(value not in seen)
        seen.add(value)
    return pa.array(mask, pa.bool_())
