"""A durable local spool: every recorded row is on disk before the server answers.

The spool is a folder of *segments*, files named ``<seq>.seg`` (``seq`` zero-padded, increasing across
runs). Exactly one segment, the *active* one, receives appends; :meth:`Spool.seal` closes it and opens
the next, and the sealed one waits in :meth:`Spool.pending` until the flusher has written its rows to
Delta and calls :meth:`Spool.mark_flushed`, which deletes it.

Each record is one line of JSON, written by a single ``os.write`` to a file opened with ``O_APPEND``::

    {"t":["inference","main.default.chat_payload","/data/tables/main/default/chat_payload"],"r":{...}}\\n

``t`` names the destination table (:attr:`modelport.tables.names.TableRef.spool_key`), ``r`` is the
row. Once ``os.write`` has returned, the line is in the kernel's page cache and survives a ``kill -9``
of the process; ``fsync="always"`` also makes it survive a machine crash (at the price of one
``fdatasync`` a record), ``fsync="interval"`` bounds the loss to what :meth:`Spool.sync` (called by the
flusher every flush interval) had not yet synced, and ``"never"`` leaves it to the kernel.

A segment that holds rows for several tables may be half done (one table committed, another failing):
:meth:`Spool.mark_table_done` records the table in ``<seq>.done`` so that those rows are not written
again. A line that does not parse (the torn tail of a write cut by a crash) is skipped and counted.

A full disk (or any write the file system refuses) does not lose accepted records: the record is kept
in memory, in order, up to ``memory_limit`` records, and later records queue behind it in memory;
:meth:`Spool.drain` (the flusher calls it every cycle) writes them to the active segment as soon as the
disk takes them again. Beyond ``memory_limit`` :meth:`Spool.append` raises
:class:`~modelport.errors.TemporarilyUnavailable` (the query is answered 503, not silently unrecorded),
counted in :attr:`Spool.refused`. Records in memory are lost if the process is killed meanwhile.

One process owns a spool folder at a time (``flock`` on ``<dir>/LOCK``, which holds the owner's pid);
segments left by an earlier run come back from :meth:`Spool.open` as pending segments with
``replayed=True``. :func:`spool_in_use` and :func:`spool_holder` let a server that is about to start
say that another one has the folder before it opens anything.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import orjson

from modelport.errors import InvalidParameterValue, InvalidState, TemporarilyUnavailable

__all__ = ["FsyncPolicy", "Segment", "SegmentContents", "Spool", "spool_holder", "spool_in_use"]

FsyncPolicy = Literal["never", "interval", "always"]

_SEG = ".seg"
_DONE = ".done"
_OPEN_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_CLOEXEC", 0)
_LOCK = "LOCK"

log = logging.getLogger("modelport.tables")


def spool_in_use(directory: str | os.PathLike[str]) -> bool:
    """Whether another process holds the spool folder ``directory`` now.

    A probe (it takes the lock and releases it at once): the answer may be stale by the time the caller
    acts on it, and :meth:`Spool.open` still refuses a folder that was taken in between.
    """
    try:
        fd = os.open(Path(directory) / _LOCK, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # releases the flock if it was taken
    return False


def spool_holder(directory: str | os.PathLike[str]) -> int | None:
    """The pid the holder of the spool folder wrote in its lock file; None when it cannot be read."""
    try:
        text = (Path(directory) / _LOCK).read_text(encoding="ascii").strip()
    except (OSError, ValueError):
        return None
    return int(text) if text.isdecimal() else None


@dataclass(eq=False)
class Segment:
    """A sealed spool file waiting to be flushed.

    ``tables`` holds the spool keys of the tables it has rows for (``None`` until read, for segments
    left by an earlier run); ``done`` those already committed to Delta. ``replayed`` is true for a
    segment from an earlier run and ``needs_dedup`` for one whose rows may already be in Delta (replayed,
    or a write of it failed in a way that may have committed), so the writer checks ids before writing.
    """

    seq: int
    path: Path
    records: int | None = None
    tables: set[bytes] | None = None
    done: set[bytes] = field(default_factory=set)
    replayed: bool = False
    needs_dedup: bool = False

    @property
    def done_path(self) -> Path:
        return self.path.with_suffix(_DONE)


@dataclass
class SegmentContents:
    """The rows of a segment grouped by table key, and how many lines could not be parsed."""

    rows: dict[bytes, list[dict[str, Any]]]
    corrupt: int = 0

    @property
    def count(self) -> int:
        return sum(len(r) for r in self.rows.values())


class Spool:
    """Append-only, segment-rotated record log in ``directory`` (see the module docstring).

    ``memory_limit``: records kept in memory while the disk refuses writes (0: refuse at once).
    """

    def __init__(
        self, directory: str | os.PathLike[str], *, fsync: FsyncPolicy = "never", memory_limit: int = 0
    ) -> None:
        if fsync not in ("never", "interval", "always"):
            raise InvalidParameterValue(f"fsync must be 'never', 'interval' or 'always'; got {fsync!r}.")
        if memory_limit < 0:
            raise InvalidParameterValue("memory_limit must be 0 or more.")
        self.memory_limit = memory_limit
        self.directory = Path(directory)
        self.fsync: FsyncPolicy = fsync
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._lock_fd: int | None = None
        self._seq = 0
        self._count = 0
        self._tables: set[bytes] = set()
        self._broken = False
        self._pending: list[Segment] = []
        #: Records appended since this object was made (those kept in memory included).
        self.appended = 0
        #: Records refused because the disk refused them and memory held ``memory_limit`` already.
        self.refused = 0
        #: (table key, line) of records the disk refused, oldest first (see :meth:`drain`).
        self._memory: list[tuple[bytes, bytes]] = []

    # -- life cycle ---------------------------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        return self._fd is not None

    def open(self) -> None:
        """Take the folder (creating it), list what an earlier run left and open a fresh active segment.

        Raises :class:`~modelport.errors.InvalidState` when another process holds the folder.
        """
        if self._fd is not None:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        lock_fd = os.open(self.directory / _LOCK, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(lock_fd)
            pid = spool_holder(self.directory)
            holder = f"another process (pid {pid})" if pid else "another process"
            raise InvalidState(f"The spool folder {self.directory} is in use by {holder}.") from None
        os.ftruncate(lock_fd, 0)
        os.pwrite(lock_fd, f"{os.getpid()}\n".encode("ascii"), 0)
        self._lock_fd = lock_fd
        pending: list[Segment] = []
        for path in sorted(self.directory.glob("*" + _SEG)):
            if not path.stem.isdecimal():
                continue
            seg = Segment(int(path.stem), path, replayed=True, needs_dedup=True)
            if seg.done_path.exists():
                seg.done = {line for line in seg.done_path.read_bytes().splitlines() if line}
            pending.append(seg)
        for done in self.directory.glob("*" + _DONE):
            if not done.with_suffix(_SEG).exists():
                done.unlink(missing_ok=True)
        self._pending = pending
        self._seq = max((s.seq for s in pending), default=0)
        with self._lock:
            self._open_next()
        self._sync_dir()

    def close(self) -> None:
        """Close the active segment (deleting it when empty) and release the folder.

        Records still in memory (the disk refused them until now) are lost, and logged as such."""
        if self.drain():
            log.error(
                "tables: %d record(s) kept in memory are lost: the spool's disk is full", self.in_memory
            )
        with self._lock:
            fd, self._fd = self._fd, None
            if fd is not None:
                if self.fsync != "never" and self._count:
                    os.fdatasync(fd)
                os.close(fd)
                if self._count == 0:
                    self._segment_path(self._seq).unlink(missing_ok=True)
            self._count = 0
            self._tables = set()
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None

    def _segment_path(self, seq: int) -> Path:
        return self.directory / f"{seq:016d}{_SEG}"

    def _open_next(self) -> None:
        """Open the next segment; when the file cannot be made, raise with nothing changed."""
        fd = os.open(self._segment_path(self._seq + 1), _OPEN_FLAGS, 0o644)
        self._seq += 1
        self._fd = fd
        self._count = 0
        self._tables = set()
        self._broken = False

    # -- hot path -----------------------------------------------------------------------------------

    def append(self, table_key: bytes, record: Any) -> int:
        """Write one record for the table ``table_key`` to the active segment; return its record count.

        ``record`` is anything orjson serialises (a dict or a dataclass). When this returns, the line is
        in the file (and on disk under ``fsync="always"``), or, when the disk refuses it, kept in memory
        (0 is returned; see the module docstring). Raises :class:`InvalidState` when the spool is not
        open and :class:`TemporarilyUnavailable` when the disk refuses the record and memory is full. A
        refused write seals the segment before the next one, so a torn line never runs into a record.
        """
        line = b'{"t":' + table_key + b',"r":' + orjson.dumps(record) + b"}\n"
        with self._lock:
            if self._fd is None:
                raise InvalidState("The spool is not open.")
            if self._memory:  # the disk refused records: these wait behind them, in order
                self._keep_locked(table_key, line, None)
                return 0
            try:
                self._write_locked(table_key, line)
            except OSError as exc:
                self._keep_locked(table_key, line, exc)
                return 0
            self.appended += 1
            return self._count

    def _write_locked(self, table_key: bytes, line: bytes) -> None:
        if self._broken:
            self._finish(self._seal_locked()[1])
        fd = self._fd
        assert fd is not None
        try:
            written = os.write(fd, line)
            while written < len(line):  # short writes only happen on a full disk or a signal
                written += os.write(fd, line[written:])
            if self.fsync == "always":
                os.fdatasync(fd)
        except BaseException:
            self._broken = True
            raise
        self._count += 1
        self._tables.add(table_key)

    def _keep_locked(self, table_key: bytes, line: bytes, exc: OSError | None) -> None:
        if len(self._memory) >= self.memory_limit:
            raise self._full()
        if not self._memory:
            log.warning(
                "tables: the spool's disk refuses writes (%s): keeping up to %d records in memory",
                exc,
                self.memory_limit,
            )
        self._memory.append((table_key, line))
        self.appended += 1

    def _full(self) -> TemporarilyUnavailable:
        self.refused += 1
        return TemporarilyUnavailable(
            f"The disk of the tables spool refuses writes and {len(self._memory)} record(s) already "
            "wait in memory: queries to endpoints with inference or usage tables are refused until "
            "it has room again.",
            retry_after=5,
        )

    def check_room(self) -> None:
        """Raise (and count) what :meth:`append` would raise now because memory is full; a cheap
        check before work whose record could not be kept. (With ``memory_limit`` 0 nothing is
        known before a write fails.)"""
        if self._memory and len(self._memory) >= self.memory_limit:
            with self._lock:
                raise self._full()

    @property
    def in_memory(self) -> int:
        """Records the disk refused that wait in memory for :meth:`drain`."""
        return len(self._memory)

    def drain(self) -> int:
        """Write the records kept in memory to the active segment, oldest first, as far as the disk
        takes them; return how many are still in memory."""
        with self._lock:
            if self._fd is None or not self._memory:
                return len(self._memory)
            written = 0
            with contextlib.suppress(OSError):
                for table_key, line in self._memory:
                    self._write_locked(table_key, line)
                    written += 1
            del self._memory[:written]
            if written and not self._memory:
                log.info(
                    "tables: the spool's disk takes writes again; %d record(s) written from memory", written
                )
            return len(self._memory)

    # -- flusher side -------------------------------------------------------------------------------

    def seal(self) -> Segment | None:
        """Close the active segment when it holds records and open the next; return the sealed one."""
        with self._lock:
            if self._fd is None or self._count == 0:
                return None
            seg, fd = self._seal_locked()
        self._finish(fd)  # syncing outside the lock: appends go on meanwhile
        return seg

    def _seal_locked(self) -> tuple[Segment, int]:
        fd = self._fd
        assert fd is not None
        seg = Segment(self._seq, self._segment_path(self._seq), self._count, set(self._tables))
        self._open_next()
        self._pending.append(seg)
        return seg, fd

    def _finish(self, fd: int) -> None:
        """Sync (per the policy) and close a sealed segment's descriptor, and the new file's name."""
        try:
            if self.fsync != "never":
                with contextlib.suppress(OSError):
                    os.fdatasync(fd)
        finally:
            os.close(fd)
        self._sync_dir()

    def _sync_dir(self) -> None:
        if self.fsync == "never":
            return
        dir_fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # the new segment's name must survive a machine crash too
        finally:
            os.close(dir_fd)

    def sync(self) -> None:
        """``fdatasync`` the active segment (the flusher calls this under ``fsync="interval"``).

        Syncs a duplicate of the descriptor outside the lock, so that appends are not held up.
        """
        with self._lock:
            if self._fd is None or self._count == 0:
                return
            fd = os.dup(self._fd)
        try:
            os.fdatasync(fd)
        finally:
            os.close(fd)

    @property
    def active_records(self) -> int:
        """Records in the active (not yet sealed) segment."""
        return self._count

    def pending(self) -> list[Segment]:
        """Sealed segments not yet flushed, oldest first."""
        with self._lock:
            return list(self._pending)

    def read(self, segment: Segment) -> SegmentContents:
        """The rows of ``segment`` grouped by table key, less those of tables already marked done."""
        contents = SegmentContents(rows={})
        try:
            data = segment.path.read_bytes()
        except FileNotFoundError:
            data = b""
        tables: set[bytes] = set()
        records = 0
        for line in _lines(data):
            try:
                obj = orjson.loads(line)
                row = obj["r"]
                # The key as written (a '"' inside a JSON string is escaped, so the first ',"r":' ends it).
                end = line.find(b',"r":')
                key = line[5:end] if line.startswith(b'{"t":') and end > 5 else orjson.dumps(obj["t"])
                if not isinstance(row, dict):
                    raise TypeError("row is not an object")
            except (orjson.JSONDecodeError, KeyError, TypeError):
                contents.corrupt += 1
                continue
            records += 1
            tables.add(key)
            if key in segment.done:
                continue
            contents.rows.setdefault(key, []).append(row)
        segment.tables = tables
        segment.records = records
        return contents

    def mark_table_done(self, segment: Segment, table_key: bytes) -> None:
        """Remember that the rows of ``table_key`` in ``segment`` are committed.

        When the disk refuses the note, it is kept in memory only and the segment marked
        ``needs_dedup``: a replay after a crash checks ids, so the rows are not written twice."""
        if table_key in segment.done:
            return
        segment.done.add(table_key)
        try:
            fd = os.open(segment.done_path, _OPEN_FLAGS, 0o644)
            try:
                if os.write(fd, table_key + b"\n") != len(table_key) + 1:
                    raise OSError("short write")
            finally:
                os.close(fd)
        except OSError as exc:
            segment.needs_dedup = True
            log.warning("tables: could not note a flushed table in %s (%s)", segment.done_path, exc)

    def mark_flushed(self, segment: Segment) -> None:
        """Forget a segment whose rows are all in Delta: delete its files."""
        segment.path.unlink(missing_ok=True)
        segment.done_path.unlink(missing_ok=True)
        with self._lock:
            if segment in self._pending:
                self._pending.remove(segment)


def _lines(data: bytes) -> Iterator[bytes]:
    for line in data.split(b"\n"):
        if line.strip(b" \r\t\x00"):
            yield line
