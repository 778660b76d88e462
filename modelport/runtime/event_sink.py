"""Writes the endpoint event log (``store/events.py``) for the work that runs on the event loop:
the reconciler's config updates and the runtime's replicas (started, stopped, crashed, scaled,
cold starts).

An :class:`EventSink` is called on the event loop and never blocks it: each event is stamped
with the time it happened and queued; one thread appends the queue to the store in the order the
events were emitted (so a replica started during an update comes before the update's success).
A failed write is logged and dropped, never raised: the log must not break the work it records.
Only the leading server runs replicas and updates, so these events come from one process.

Retention: every ``prune_every`` events it wrote for an endpoint, the sink deletes all but that
endpoint's ``keep`` newest (10,000 by default). A bound by count, not age: a quiet endpoint's
history (who changed its config, when) stays readable however old, while a replica in a crash
loop (a crash and a start every second or two) cannot fill the store.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from modelport.clock import now_ms

__all__ = ["EventSink", "OnEvent", "log_tail", "no_events"]

log = logging.getLogger("modelport.events")

#: The events kept per endpoint (older ones are pruned).
KEEP_PER_ENDPOINT = 10_000
#: Lines of a crashed replica's runtime log kept in its REPLICA_CRASHED event.
TAIL_LINES = 20
_TAIL_BYTES = 16 * 1024


class OnEvent(Protocol):
    """Records one event of an endpoint (what :class:`EventSink` is called with)."""

    def __call__(
        self,
        endpoint_id: str,
        kind: str,
        message: str,
        *,
        actor: str | None = None,
        config_version: int | None = None,
        served_entity: str | None = None,
        details: dict[str, Any] | None = None,
        tail_of: Path | None = None,
    ) -> None: ...


def no_events(
    endpoint_id: str,
    kind: str,
    message: str,
    *,
    actor: str | None = None,
    config_version: int | None = None,
    served_entity: str | None = None,
    details: dict[str, Any] | None = None,
    tail_of: Path | None = None,
) -> None:
    """An :class:`OnEvent` that records nothing (a setup without an event log)."""


def log_tail(path: Path, lines: int = TAIL_LINES) -> list[str]:
    """The last ``lines`` non-empty lines of a log file (read from its last 16 KiB); [] if unreadable."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, 2)
            size = fh.tell()
            fh.seek(max(0, size - _TAIL_BYTES))
            text = fh.read().decode("utf-8", errors="replace")
    except OSError:
        return []
    kept = [line for line in text.splitlines() if line.strip()]
    if size > _TAIL_BYTES and kept:
        kept = kept[1:]  # the first line read is probably cut
    return kept[-lines:]


@dataclass
class _Pending:
    """One event waiting for the writer thread."""

    endpoint_id: str
    kind: str
    message: str
    fields: dict[str, Any]
    tail_of: Path | None = None
    done: threading.Event | None = field(default=None, compare=False)  # a flush marker when set


class EventSink:
    """An :class:`OnEvent` that appends to the store from one thread (started on first use).

    ``add`` is ``db.events.add``. At most ``max_queued`` events wait; beyond that new ones are
    dropped and counted (``dropped``), as are those whose write failed (``failed``)."""

    def __init__(
        self,
        add: Callable[..., int | None],
        *,
        prune: Callable[[str, int], int] | None = None,
        keep: int = KEEP_PER_ENDPOINT,
        prune_every: int = 500,
        max_queued: int = 10_000,
    ) -> None:
        """``add``: ``db.events.add``; ``prune``: ``db.events.prune`` (None: keep everything)."""
        self._add = add
        self._prune = prune
        self.keep = keep
        self.prune_every = prune_every
        self._written: dict[str, int] = {}  # per endpoint, events written since its last prune
        self._queue: queue.Queue[_Pending | None] = queue.Queue(maxsize=max_queued)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False
        self.dropped = 0
        self.failed = 0

    def __call__(
        self,
        endpoint_id: str,
        kind: str,
        message: str,
        *,
        actor: str | None = None,
        config_version: int | None = None,
        served_entity: str | None = None,
        details: dict[str, Any] | None = None,
        tail_of: Path | None = None,
    ) -> None:
        fields = {
            "actor": actor,
            "config_version": config_version,
            "served_entity": served_entity,
            "details": details,
            "ts_ms": now_ms(),
        }
        self._put(_Pending(endpoint_id, kind, message, fields, tail_of))

    def _put(self, item: _Pending) -> bool:
        with self._lock:
            if self._closed:
                return False
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="modelport-events", daemon=True)
                self._thread.start()
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self.dropped += 1
            log.warning("event log queue full: event dropped", extra={"kind": item.kind})
            return False
        return True

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every event queued before this call is written (False on timeout or when closed)."""
        marker = _Pending("", "", "", {}, done=threading.Event())
        if not self._put(marker):
            return False
        assert marker.done is not None
        return marker.done.wait(timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued (up to ``timeout`` seconds), then stop; later events are dropped."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            thread = self._thread
        if thread is None:
            return
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            return
        thread.join(timeout)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            if item.done is not None:
                item.done.set()
                continue
            self._write(item)

    def _write(self, item: _Pending) -> None:
        fields = item.fields
        try:
            if item.tail_of is not None:
                tail = log_tail(item.tail_of)
                if tail:
                    fields = {**fields, "details": {**(fields["details"] or {}), "log_tail": tail}}
            self._add(item.endpoint_id, item.kind, item.message, **fields)
        except Exception:  # the log must never break the work it records
            self.failed += 1
            log.exception("event not recorded", extra={"endpoint_id": item.endpoint_id, "kind": item.kind})
            return
        written = self._written.get(item.endpoint_id, 0) + 1
        self._written[item.endpoint_id] = written
        if self._prune is not None and written >= self.prune_every:
            self._written.pop(item.endpoint_id)
            try:
                self._prune(item.endpoint_id, self.keep)
            except Exception:
                log.exception("event log not pruned", extra={"endpoint_id": item.endpoint_id})
