"""Leadership: which server process does the work only one may do (the reconciler), decided by
a lease on the metadata store (``store/leases.py``).

Every server campaigns; the one holding the lease leads. Leading is a hint for starting and
stopping work; the guarantee is the fence: each write of the leader's work calls
``store.leases.fence`` with the epoch it was elected at, and is refused once another tenure
has begun. Not wired into ``modelport serve`` yet (issue 15): the reconciler and the replica
registry take it up in a later change.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, Protocol, TypeVar

from modelport.errors import InvalidParameterValue
from modelport.store.leases import Lease

__all__ = ["Leadership", "LeaseStore", "holder_id"]

log = logging.getLogger("modelport.leadership")

T = TypeVar("T")

#: Part of the ttl by which this process gives up leading before the database would give the
#: lease away: it covers the two clocks running at slightly different rates.
MARGIN = 0.1


class LeaseStore(Protocol):
    """What :class:`Leadership` needs of ``store.leases.LeaseRepository``."""

    def acquire_or_renew(self, name: str, holder: str, ttl_seconds: float) -> Lease | None: ...

    def release(self, name: str, holder: str) -> bool: ...

    def current(self, name: str) -> Lease | None: ...


def holder_id() -> str:
    """A holder id unique to this process and this run: ``hostname:pid:random``."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


class _Late(Exception):
    """A database call did not return in time (it goes on in its own thread)."""


class Leadership:
    """Campaigns for the lease ``name`` on a thread of its own and keeps it while it can.

    Guarantees:

    - :attr:`is_leader` is true only before a local deadline: ``ttl - margin`` after the start of
      the last acquisition or renewal that succeeded, on this process's monotonic clock. The
      database set the lease's expiry ``ttl`` after its own clock reading, which came after that
      start, so this process stops leading before the database can give the lease away (the
      margin covers clocks running at slightly different rates). It is read from the clock at
      every call, so it turns false on time even while the campaign thread is held up.
    - Leadership is lost at once when a renewal fails (the database's error, the lease gone) or
      has not returned by the deadline: a hung connection does not keep a stale leader.
    - Every tenure has an epoch of its own: ``on_elected`` is never called twice with the same
      epoch (a tenure given up locally but still valid in the database is released, and the
      next acquisition starts a new one).
    - ``on_elected(epoch)`` and ``on_deposed()`` alternate, starting with ``on_elected``, on the
      campaign thread, never at the same time. They must return quickly: renewals wait for them.
      To act on an event loop, hand the work over with ``loop.call_soon_threadsafe``.
    - :meth:`close` calls ``on_deposed`` (when leading) before it releases the lease, so the next
      leader starts after this one's work stopped, without waiting for the lease to expire.

    Database calls run on a helper thread, one at a time, so the campaign thread keeps its
    deadlines whatever the connection does.
    """

    def __init__(
        self,
        leases: LeaseStore,
        *,
        name: str = "reconciler",
        ttl_seconds: float = 10.0,
        holder: str | None = None,
        on_elected: Callable[[int], None] = lambda epoch: None,
        on_deposed: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if ttl_seconds <= 0:
            raise InvalidParameterValue(f"A lease's ttl must be positive, not {ttl_seconds}.")
        self._leases = leases
        self.name = name
        self.holder = holder or holder_id()
        self.ttl = float(ttl_seconds)
        self._on_elected = on_elected
        self._on_deposed = on_deposed
        self._clock = clock
        self._lock = threading.Lock()
        self._epoch: int | None = None
        self._deadline = 0.0
        self._last_epoch: int | None = None
        self._pending: Future[Any] | None = None
        self._failing = False
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    # ---- state ---------------------------------------------------------------------------
    @property
    def is_leader(self) -> bool:
        with self._lock:
            return self._epoch is not None and self._clock() < self._deadline

    @property
    def epoch(self) -> int | None:
        """The epoch of the current tenure (the fencing token), None when not leading."""
        with self._lock:
            return self._epoch if self._epoch is not None and self._clock() < self._deadline else None

    # ---- life cycle ----------------------------------------------------------------------
    async def start(self) -> None:
        self.start_thread()

    async def stop(self) -> None:
        await asyncio.to_thread(self.close)

    def start_thread(self) -> None:
        """Start campaigning (idempotent)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stopping.clear()
        self._thread = threading.Thread(
            target=self._run, name=f"modelport-leadership-{self.name}", daemon=True
        )
        self._thread.start()

    def close(self, timeout: float | None = None) -> None:
        """Stop campaigning: stop leading (``on_deposed``), then release the lease."""
        thread = self._thread
        if thread is None:
            return
        self._stopping.set()
        thread.join(timeout)
        self._thread = None

    # ---- the campaign --------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                wait = self._campaign()
            except Exception:  # a bug must not end the campaign silently with the lease held
                log.exception("leadership %s: campaign round failed", self.name)
                self._depose("the campaign failed")
                wait = self.ttl / 3
            self._stopping.wait(max(0.0, wait))
        self._depose("the server is stopping")
        self._release()

    def _campaign(self) -> float:
        """One acquisition or renewal; returns the seconds to wait before the next one."""
        interval = self.ttl / 3
        started = self._clock()
        with self._lock:
            deadline = self._deadline if self._epoch is not None else started + self.ttl * (1 - MARGIN)
        try:
            lease = self._call(
                self._leases.acquire_or_renew, self.name, self.holder, self.ttl, timeout=deadline - started
            )
        except _Late:
            self._depose("the renewal did not return before the lease could expire")
            return 0.0  # the next round waits for the call in flight
        except Exception as exc:
            # Logged once per run of failures (a leader's is in its deposition line).
            (log.debug if self._failing else log.warning)(
                "leadership %s: acquiring the lease failed: %s", self.name, exc
            )
            self._failing = True
            self._depose(f"the renewal failed: {exc}")
            return interval
        self._failing = False
        if lease is None:
            self._depose("another server holds the lease")
            return self._until_free(interval)
        with self._lock:
            renewed = self._epoch == lease.epoch and self._clock() < self._deadline
            if renewed:
                self._deadline = started + self.ttl * (1 - MARGIN)
        if renewed:
            return max(0.0, started + interval - self._clock())
        self._depose("the lease lapsed")  # another tenure while we led: ours ended in between
        if lease.epoch == self._last_epoch:
            # A tenure given up here but still valid in the database: its work may still be
            # finishing, so start a new one rather than lead again under the same epoch.
            self._release()
            return 0.0
        self._elect(lease.epoch, started + self.ttl * (1 - MARGIN))
        return max(0.0, started + interval - self._clock())

    def _until_free(self, interval: float) -> float:
        """Seconds to wait for another holder's lease: until it expires (by the database's
        clock) if that comes first, else ``interval``, which bounds the wait after a release."""
        try:
            lease = self._call(self._leases.current, self.name, timeout=interval)
        except Exception:
            return interval
        if lease is None:
            return 0.0
        return min(interval, max(0.02, lease.remaining_ms / 1000 + 0.01))

    def _elect(self, epoch: int, deadline: float) -> None:
        with self._lock:
            self._epoch, self._deadline, self._last_epoch = epoch, deadline, epoch
        log.info("leadership %s: elected (epoch %d, holder %s)", self.name, epoch, self.holder)
        try:
            self._on_elected(epoch)
        except Exception:
            log.exception("leadership %s: on_elected failed; giving the lease up", self.name)
            self._depose("on_elected failed")
            self._release()

    def _release(self) -> None:
        try:
            self._call(self._leases.release, self.name, self.holder, timeout=self.ttl / 3)
        except Exception as exc:  # then it expires on its own
            log.warning("leadership %s: could not release the lease: %s", self.name, exc)

    def _depose(self, why: str) -> None:
        with self._lock:
            epoch, self._epoch = self._epoch, None
        if epoch is None:
            return
        log.warning("leadership %s: deposed (epoch %d): %s", self.name, epoch, why)
        try:
            self._on_deposed()
        except Exception:
            log.exception("leadership %s: on_deposed failed", self.name)

    def _call(self, fn: Callable[..., T], *args: object, timeout: float) -> T:
        """``fn(*args)`` on a helper thread, waiting at most ``timeout`` seconds (``_Late``).

        One call at a time: a call that is late is waited for before the next one starts.
        """
        pending = self._pending
        if pending is not None and not pending.done():
            try:
                pending.exception(timeout=max(0.0, timeout))
            except TimeoutError:
                raise _Late from None
        future: Future[T] = Future()

        def call() -> None:
            try:
                future.set_result(fn(*args))
            except BaseException as exc:
                future.set_exception(exc)

        self._pending = future
        threading.Thread(target=call, name=f"modelport-leadership-{self.name}-call", daemon=True).start()
        try:
            return future.result(timeout=max(0.0, timeout))
        except TimeoutError:
            raise _Late from None
