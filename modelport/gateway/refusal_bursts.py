"""Refusal bursts: the rate-limit and guardrail refusals of an endpoint, summarised in the
endpoint event log (``store/events.py``) as one event per burst instead of one per request.

Each server process counts its own refusals per (endpoint, kind):

``RATE_LIMITED``
    a query refused with 429 by an AI-gateway rate limit (``ratelimit.py``); the breakdown
    names the limit: its key (``endpoint``, ``user``, ``user_group``, ``service_principal``),
    its measure (calls or tokens) and size, and the group for a ``user_group`` limit.
``GUARDRAIL_BLOCKED``
    a query whose request (input) or answer (output) a guardrail blocked with 400
    (``guarding.py``); the breakdown names the side and the guardrail (``safety``, ``pii``,
    ``invalid_keywords``, ``valid_topics``).

A burst opens at the first refusal and closes ``quiet_seconds`` after the last one (30 s by
default), or once it has been open ``max_open_seconds`` (60 s), so a long storm shows up while
it lasts, as one event a minute; the next refusal opens the next burst. A closed burst is one
event through the event sink (``runtime/event_sink.py``: queued, written by its own thread):
``message`` says it in a sentence, ``details`` holds ``count``, ``first`` and ``last`` (epoch
ms), ``quiet_seconds``, ``max_open_seconds``, ``process`` (``host:pid``), ``closed``
(``quiet``, ``max_open`` or ``shutdown``), ``principals`` (how many distinct callers),
``by_principal`` and ``by_limit`` / ``by_guardrail`` (the top five, ``[{"name", "count"}]``,
most first) and ``others`` (refusals of callers beyond the top five).

Cost: nothing on an accepted query (the pipeline calls in only from its ``except`` of a
refusal); on a refused one a few dict updates on the event loop, and for the first refusal of a
burst one ``call_later`` timer. No I/O happens on the event loop: the sink queues. Open bursts
are emitted when the process shuts down (:meth:`RefusalBursts.close`, from
``DataPlane.aclose``). With several server processes each writes its own bursts (``process``
tells them apart) and the console merges bursts of the same kind that overlap in time.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from modelport.runtime.event_sink import OnEvent
from modelport.spec.identity import Caller

__all__ = [
    "GUARDRAIL_BLOCKED",
    "KINDS",
    "RATE_LIMITED",
    "RefusalBursts",
    "RefusedLimit",
    "blocked_guardrail",
]

log = logging.getLogger("modelport.gateway")

RATE_LIMITED = "RATE_LIMITED"
GUARDRAIL_BLOCKED = "GUARDRAIL_BLOCKED"
#: The event kinds this module writes (also in ``store/events.py``'s ``KINDS``).
KINDS: tuple[str, ...] = (RATE_LIMITED, GUARDRAIL_BLOCKED)
#: Entries of each breakdown an event keeps.
TOP = 5
#: Distinct callers (and reasons) one burst counts by name; refusals of more are counted as others.
MAX_NAMES = 1000
_OTHERS = "\x00others"


@dataclass(frozen=True, slots=True)
class RefusedLimit:
    """The rate limit that refused a query (``RequestLimitExceeded.limit``, set by ``ratelimit``)."""

    key: str  # endpoint | user | user_group | service_principal
    measure: str  # calls | tokens
    limit: int  # per minute
    group: str | None = None  # the group of a user_group limit

    @property
    def label(self) -> str:
        """``user limit 5 calls/min``, ``user_group 'eng' limit 100 tokens/min``."""
        group = f" '{self.group}'" if self.group else ""
        return f"{self.key}{group} limit {self.limit} {self.measure}/min"


@dataclass(slots=True)
class _Burst:
    endpoint_id: str
    endpoint: str
    kind: str
    first: float
    last: float
    count: int = 0
    by_principal: dict[str, int] = field(default_factory=dict)
    by_reason: dict[str, int] = field(default_factory=dict)
    timer: asyncio.TimerHandle | None = None


def _bump(counts: dict[str, int], name: str) -> None:
    if name not in counts and len(counts) >= MAX_NAMES:
        name = _OTHERS
    counts[name] = counts.get(name, 0) + 1


def _top(counts: dict[str, int], top: int) -> tuple[list[dict[str, Any]], int]:
    """The ``top`` largest counts, most first (ties by name), and the sum of the rest."""
    named = sorted(((n, c) for n, c in counts.items() if n != _OTHERS), key=lambda nc: (-nc[1], nc[0]))
    kept = named[:top]
    rest = sum(c for _, c in named[top:]) + counts.get(_OTHERS, 0)
    return [{"name": n, "count": c} for n, c in kept], rest


def _clock_text(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%H:%M:%S")


def blocked_guardrail(decisions: Sequence[dict[str, Any]]) -> tuple[str, str] | None:
    """(side, guardrail) of the block among a query's guardrail decisions (the last blocked
    one), or None when no guardrail blocked (the 400 came from elsewhere)."""
    for decision in reversed(decisions):
        if decision.get("result") == "blocked":
            return str(decision.get("side") or "input"), str(decision.get("name") or "guardrail")
    return None


class RefusalBursts:
    """Counts refusals per (endpoint, kind) and writes one event per burst to ``emit``.

    ``clock``: epoch seconds (injectable for tests). Runs on one event loop: :meth:`attach` it
    (``DataPlane.start``) for the bursts to close on their own; without a loop, :meth:`sweep`
    closes the bursts that are due (tests)."""

    def __init__(
        self,
        emit: OnEvent,
        *,
        quiet_seconds: float = 30.0,
        max_open_seconds: float = 60.0,
        clock: Callable[[], float] = time.time,
        top: int = TOP,
        process: str | None = None,
    ) -> None:
        if quiet_seconds <= 0 or max_open_seconds <= 0:
            raise ValueError("quiet_seconds and max_open_seconds must be above 0")
        self._emit = emit
        self.quiet_seconds = float(quiet_seconds)
        self.max_open_seconds = float(max_open_seconds)
        self._clock = clock
        self._top = top
        self.process = process or f"{socket.gethostname()}:{os.getpid()}"
        self._open: dict[tuple[str, str], _Burst] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        #: Bursts written (events emitted) and refusals counted, since the start.
        self.emitted = 0
        self.refusals = 0

    # -- the hooks (called on a refusal only) ------------------------------------------------

    def rate_limited(self, endpoint_id: str, endpoint: str, caller: Caller, refused: RefusedLimit) -> None:
        """A query of ``caller`` refused by the rate limit ``refused``."""
        self.refused(endpoint_id, endpoint, RATE_LIMITED, caller.name, refused.label)

    def guardrail_blocked(
        self, endpoint_id: str, endpoint: str, caller: Caller, decisions: Sequence[dict[str, Any]]
    ) -> bool:
        """A 400 on the guardrail steps: counted when a guardrail blocked (its decision says so)."""
        blocked = blocked_guardrail(decisions)
        if blocked is None:
            return False
        side, name = blocked
        self.refused(endpoint_id, endpoint, GUARDRAIL_BLOCKED, caller.name, f"{side} {name}")
        return True

    def refused(self, endpoint_id: str, endpoint: str, kind: str, principal: str, reason: str) -> None:
        """Count one refusal of ``kind`` (its burst opens when none is open)."""
        if self._closed:
            return
        now = self._clock()
        key = (endpoint_id, kind)
        burst = self._open.get(key)
        if burst is not None and self._due(burst, now):
            self._close(key, "max_open" if now - burst.first >= self.max_open_seconds else "quiet")
            burst = None
        if burst is None:
            burst = self._open[key] = _Burst(endpoint_id, endpoint, kind, now, now)
            self._schedule(key, burst, now)
        burst.count += 1
        burst.last = now
        _bump(burst.by_principal, principal)
        _bump(burst.by_reason, reason)
        self.refusals += 1

    # -- closing ---------------------------------------------------------------------------

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Close bursts on ``loop``'s timers from now on (the loop that calls the hooks)."""
        self._loop = loop

    @property
    def open_bursts(self) -> int:
        return len(self._open)

    def _due(self, burst: _Burst, now: float) -> bool:
        return now - burst.last >= self.quiet_seconds or now - burst.first >= self.max_open_seconds

    def _close_at(self, burst: _Burst) -> float:
        return min(burst.last + self.quiet_seconds, burst.first + self.max_open_seconds)

    def _schedule(self, key: tuple[str, str], burst: _Burst, now: float) -> None:
        if self._loop is None:
            return
        delay = max(0.0, self._close_at(burst) - now)
        burst.timer = self._loop.call_later(delay, self._fire, key, burst)

    def _fire(self, key: tuple[str, str], burst: _Burst) -> None:
        if self._open.get(key) is not burst:
            return  # closed meanwhile (a refusal after its end opened the next one)
        now = self._clock()
        if self._due(burst, now):
            self._close(key, "max_open" if now - burst.first >= self.max_open_seconds else "quiet")
        else:  # refused again meanwhile: wait for the new end
            self._schedule(key, burst, now)

    def sweep(self, now: float | None = None) -> int:
        """Close every burst that is due at ``now`` (default: the clock); how many closed."""
        now = self._clock() if now is None else now
        due = [key for key, burst in self._open.items() if self._due(burst, now)]
        for key in due:
            burst = self._open[key]
            self._close(key, "max_open" if now - burst.first >= self.max_open_seconds else "quiet")
        return len(due)

    def close(self) -> int:
        """Emit every open burst (shutdown) and count nothing more; how many were emitted."""
        self._closed = True
        keys = list(self._open)
        for key in keys:
            self._close(key, "shutdown")
        return len(keys)

    def _close(self, key: tuple[str, str], why: str) -> None:
        burst = self._open.pop(key)
        if burst.timer is not None:
            burst.timer.cancel()
        try:
            self._emit(
                burst.endpoint_id,
                burst.kind,
                self.message(burst),
                details=self.details(burst, why),
            )
            self.emitted += 1
        except Exception:  # the log must never break the queries it records
            log.exception("refusal burst not recorded", extra={"endpoint": burst.endpoint})

    # -- the event ---------------------------------------------------------------------------

    def details(self, burst: _Burst, why: str) -> dict[str, Any]:
        principals, others = _top(burst.by_principal, self._top)
        reasons, _ = _top(burst.by_reason, self._top)
        return {
            "count": burst.count,
            "first": int(burst.first * 1000),
            "last": int(burst.last * 1000),
            "quiet_seconds": self.quiet_seconds,
            "max_open_seconds": self.max_open_seconds,
            "process": self.process,
            "closed": why,
            "principals": len([n for n in burst.by_principal if n != _OTHERS]),
            "by_principal": principals,
            "others": others,
            ("by_limit" if burst.kind == RATE_LIMITED else "by_guardrail"): reasons,
        }

    def message(self, burst: _Burst) -> str:
        """``42 requests refused by user limit 5 calls/min between 13:01:02 and 13:01:40 UTC
        (alice 40, bob 2)``."""
        reasons, _ = _top(burst.by_reason, 2)
        by = " and ".join(r["name"] for r in reasons)
        if burst.kind == GUARDRAIL_BLOCKED:
            by = " and ".join(f"the {r['name']} guardrail" for r in reasons)
        if len(burst.by_reason) > 2:
            by += " and others"
        principals, others = _top(burst.by_principal, self._top)
        who = ", ".join(f"{p['name']} {p['count']}" for p in principals)
        if others:
            who += f", others {others}"
        plural = "request" if burst.count == 1 else "requests"
        when = (
            f"at {_clock_text(burst.first)} UTC"
            if int(burst.first) == int(burst.last)
            else f"between {_clock_text(burst.first)} and {_clock_text(burst.last)} UTC"
        )
        return f"{burst.count} {plural} refused by {by} {when} ({who})"
