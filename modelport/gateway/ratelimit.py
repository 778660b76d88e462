"""AI-gateway rate limits: queries and tokens per minute, per endpoint, user, group or service principal.

Configuration
    The endpoint's ``ai_gateway.rate_limits`` (``{renewal_period: "minute", calls?, tokens?, key,
    principal?}``, validated by :func:`modelport.spec.validation.normalize_ai_gateway`) and the legacy
    ``rate_limits`` (``{calls, renewal_period: "minute", key: "user" | "endpoint"}``) both apply;
    :func:`endpoint_limits` joins them into the one list :meth:`RateLimiter.admit` takes.

Which limits apply to a caller (each one separately for ``calls`` and for ``tokens``)
    ``endpoint``
        One counter for the whole endpoint.
    ``user``
        One counter per caller. A limit with ``principal`` is an override for that one user: for that
        user it replaces the generic ``user`` limit, whether it is stricter or looser. The generic
        ``user`` limit is the default for every caller, service principals included.
    ``service_principal``
        One counter per service-principal caller (the same counter as its ``user`` one). A generic
        ``service_principal`` limit replaces the generic ``user`` limit for service principals; one
        with ``principal`` (the application id, which is the caller's name) overrides both for that
        one, and so does a ``user`` limit whose ``principal`` is that application id.
    ``user_group``
        One counter per group, shared by its members. With ``principal`` = a group name it applies to
        that group; without, to each group of the caller separately (built-in ``users`` included);
        for a group that has its own limit, that one replaces the generic ``user_group`` limit.

    An override replaces only the measures it sets: an override with ``calls`` alone leaves the
    generic ``tokens`` limit in force. Several limits on the same counter (the legacy and the AI-gateway
    ``endpoint`` limit, two overrides for one user) merge into the strictest one.

Admission
    Every applicable limit is checked and the strictest wins: if any counter is exhausted the request
    is refused with :class:`~modelport.errors.RequestLimitExceeded` (429), naming that limit (the
    smallest exhausted one) and with ``retry_after`` = seconds until its window renews. ``calls``
    counters count queries; the check and the increment of all of them are atomic: either all pass
    and all are incremented, or none is incremented. ``tokens`` counters count the input and output
    tokens of answered queries, which are known only after the answer: admission requires the token
    window not to be exhausted yet (count < limit) and :meth:`RateLimiter.add_tokens` adds the real
    count to every applicable token counter afterwards, so one query may overshoot a token limit by
    its own size; the next one is refused.

Windows
    Fixed windows of one minute aligned to the epoch (window id = ``floor(now / 60)``), as the local
    clock of each server process sees it (keep the clocks in sync with NTP). A burst across a minute
    boundary can reach twice a limit within 60 s; the counts themselves are exact, never N times a
    limit with N server processes, when the processes share :class:`RedisCounters`.

Backends
    :class:`LocalCounters` (the default) keeps the counters in this process: exact for one server
    process. :class:`RedisCounters` keeps them in Redis and does the check-and-increment in one Lua
    script, so every server process sharing the Redis sees the same counts.

Redis unavailable
    By default the limiter fails *open* (availability over strictness): a request that cannot be
    checked is admitted, a warning is logged when Redis goes away (and an info line when it is back),
    :attr:`RateLimiter.unchecked_admits` counts those requests, and for ``retry_interval`` seconds
    after a failure no request waits for Redis. With ``fail_open=False`` such requests are refused
    with :class:`~modelport.errors.TemporarilyUnavailable` (503) instead.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from modelport.errors import RequestLimitExceeded, TemporarilyUnavailable
from modelport.gateway.refusal_bursts import RefusedLimit
from modelport.spec.identity import Caller

if TYPE_CHECKING:
    import redis.asyncio

__all__ = [
    "WINDOW_SECONDS",
    "Admission",
    "CounterBackend",
    "CounterBackendError",
    "LocalCounters",
    "RateLimiter",
    "RedisCounters",
    "endpoint_limits",
]

log = logging.getLogger("modelport.gateway")

#: Length of a rate-limit window; the only ``renewal_period`` is ``minute``.
WINDOW_SECONDS = 60

_CALLS = "calls"
_TOKENS = "tokens"
_MEASURES = (_CALLS, _TOKENS)
_RESOLVED_CACHE_SIZE = 4096


def endpoint_limits(
    ai_gateway: Mapping[str, Any] | None, rate_limits: Sequence[Mapping[str, Any]] | None
) -> list[dict[str, Any]]:
    """All rate limits of an endpoint: its ``ai_gateway.rate_limits`` and its legacy ``rate_limits``."""
    out = [dict(x) for x in ((ai_gateway or {}).get("rate_limits") or [])]
    out.extend(dict(x) for x in (rate_limits or []))
    return out


class CounterBackendError(Exception):
    """The counters could not be read or updated (e.g. Redis is unreachable)."""


class CounterBackend(Protocol):
    """Where the counters live. Keys are opaque strings; a counter that does not exist counts 0.

    Implementations must make :meth:`check_and_add` atomic with respect to every other call on the
    same counters, from any process sharing the backend, and raise :class:`CounterBackendError`
    when the counters cannot be reached.
    """

    async def check_and_add(
        self, window: int, keys: Sequence[str], limits: Sequence[int], increments: Sequence[int]
    ) -> int:
        """In ``window``: if every ``keys[i]`` counts less than ``limits[i]``, add ``increments[i]``
        to each and return -1; otherwise change nothing and return the first ``i`` that does not."""
        ...

    async def add(self, window: int, keys: Sequence[str], amount: int) -> None:
        """Add ``amount`` to each of ``keys`` in ``window``."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


class LocalCounters:
    """Counters in this process: a dict per window, pruned when a newer window starts.

    The methods never await, so on one event loop each call is atomic without a lock. Use one
    instance from one event loop (not from several threads).
    """

    def __init__(self) -> None:
        self._windows: dict[int, dict[str, int]] = {}
        self._latest = -1

    def _counts(self, window: int) -> dict[str, int]:
        counts = self._windows.get(window)
        if counts is None:
            counts = self._windows[window] = {}
            if window > self._latest:
                self._latest = window
                for old in [w for w in self._windows if w < window - 1]:
                    del self._windows[old]
        return counts

    async def check_and_add(
        self, window: int, keys: Sequence[str], limits: Sequence[int], increments: Sequence[int]
    ) -> int:
        counts = self._counts(window)
        for i, key in enumerate(keys):
            if counts.get(key, 0) >= limits[i]:
                return i
        for i, key in enumerate(keys):
            if increments[i]:
                counts[key] = counts.get(key, 0) + increments[i]
        return -1

    async def add(self, window: int, keys: Sequence[str], amount: int) -> None:
        counts = self._counts(window)
        for key in keys:
            counts[key] = counts.get(key, 0) + amount

    async def aclose(self) -> None:
        self._windows.clear()

    def count(self, window: int, key: str) -> int:
        """The current count of one counter (for tests and debugging)."""
        return self._windows.get(window, {}).get(key, 0)


# KEYS: the counters. ARGV[1]: seconds to keep a counter; ARGV[1+i]: limit of KEYS[i];
# ARGV[1+n+i]: increment of KEYS[i]. Returns 0 when all were below their limits (and were
# incremented), else the (1-based) index of the first exhausted one (and nothing changed).
_CHECK_AND_ADD_LUA = """
local n = #KEYS
for i = 1, n do
  local count = tonumber(redis.call('GET', KEYS[i]) or '0')
  if count >= tonumber(ARGV[1 + i]) then
    return i
  end
end
for i = 1, n do
  local inc = tonumber(ARGV[1 + n + i])
  if inc > 0 then
    if redis.call('INCRBY', KEYS[i], inc) == inc then
      redis.call('EXPIRE', KEYS[i], ARGV[1])
    end
  end
end
return 0
"""

# KEYS: the counters. ARGV[1]: seconds to keep a counter; ARGV[2]: amount to add to each.
_ADD_LUA = """
local inc = tonumber(ARGV[2])
for i = 1, #KEYS do
  if redis.call('INCRBY', KEYS[i], inc) == inc then
    redis.call('EXPIRE', KEYS[i], ARGV[1])
  end
end
return 0
"""


class RedisCounters:
    """Counters in Redis, shared by every server process that uses the same Redis and ``prefix``.

    The check-and-increment of all of a request's counters runs as one Lua script (EVALSHA; the
    script is loaded once and again after a ``NOSCRIPT`` answer, e.g. after a Redis restart), so it
    is atomic across processes. Counter keys are ``<prefix><window>:{<endpoint>}:<measure>:<who>``
    (the hash tag keeps one request's keys in one Redis Cluster slot) and expire two windows after
    they are created. One ``redis.asyncio`` client with a connection pool serves all requests; the
    short socket timeouts bound how long a request waits for an unresponsive Redis.
    """

    def __init__(
        self,
        url: str,
        prefix: str = "modelport:rl:",
        *,
        max_connections: int = 64,
        socket_timeout: float = 0.5,
        client: redis.asyncio.Redis | None = None,
    ) -> None:
        import redis.asyncio as aioredis
        import redis.exceptions

        self.prefix = prefix
        self._ttl = 2 * WINDOW_SECONDS
        self._client = client or aioredis.Redis.from_url(
            url,
            max_connections=max_connections,
            socket_timeout=socket_timeout,
            socket_connect_timeout=socket_timeout,
        )
        self._errors: tuple[type[BaseException], ...] = (
            redis.exceptions.RedisError,
            OSError,
            asyncio.TimeoutError,
        )
        self._noscript = redis.exceptions.NoScriptError
        self._shas: dict[str, str] = {}

    async def _run(self, script: str, keys: Sequence[str], args: Sequence[int]) -> Any:
        try:
            sha = self._shas.get(script)
            if sha is None:
                sha = self._shas[script] = await self._client.script_load(script)
            try:
                return await self._client.evalsha(sha, len(keys), *keys, *args)
            except self._noscript:
                self._shas[script] = await self._client.script_load(script)
                return await self._client.evalsha(self._shas[script], len(keys), *keys, *args)
        except self._errors as exc:
            raise CounterBackendError(f"Redis: {type(exc).__name__}: {exc}") from exc

    def _keys(self, window: int, keys: Sequence[str]) -> list[str]:
        head = f"{self.prefix}{window}:"
        return [head + k for k in keys]

    async def check_and_add(
        self, window: int, keys: Sequence[str], limits: Sequence[int], increments: Sequence[int]
    ) -> int:
        args = [self._ttl, *limits, *increments]
        failed = await self._run(_CHECK_AND_ADD_LUA, self._keys(window, keys), args)
        return int(failed) - 1

    async def add(self, window: int, keys: Sequence[str], amount: int) -> None:
        await self._run(_ADD_LUA, self._keys(window, keys), [self._ttl, amount])

    async def aclose(self) -> None:
        await self._client.aclose()


@dataclass(frozen=True, slots=True)
class _Check:
    """One counter a request is checked against, with its limit and how to name it."""

    key: str
    measure: str
    limit: int
    who: str
    rule_key: str


@dataclass(frozen=True, slots=True)
class _Resolved:
    """The checks of one caller on one endpoint, in the order a refusal names them."""

    checks: tuple[_Check, ...]
    keys: tuple[str, ...]
    limits: tuple[int, ...]
    increments: tuple[int, ...]
    token_keys: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Admission:
    """An admitted request: the token counters that :meth:`RateLimiter.add_tokens` credits."""

    endpoint_name: str
    token_keys: tuple[str, ...] = ()
    #: False when the counters could not be reached and the request was admitted unchecked.
    checked: bool = True


_NOTHING = _Resolved((), (), (), (), ())

_Measures = dict[str, int]


def _merge(into: _Measures, limit: Mapping[str, Any]) -> None:
    for measure in _MEASURES:
        value = limit.get(measure)
        if value is not None:
            value = int(value)
            into[measure] = min(value, into.get(measure, value))


class _EndpointLimits:
    """The parsed limits of one endpoint, indexed for resolving callers; caches resolutions."""

    def __init__(self, endpoint_name: str, limits: Sequence[Mapping[str, Any]]) -> None:
        self.endpoint_name = endpoint_name
        self.endpoint: _Measures = {}
        self.user: _Measures = {}
        self.sp: _Measures = {}
        self.group: _Measures = {}
        self.user_overrides: dict[str, _Measures] = {}
        self.sp_overrides: dict[str, _Measures] = {}
        self.group_overrides: dict[str, _Measures] = {}
        for limit in limits:
            key = limit.get("key") or "endpoint"
            principal = limit.get("principal")
            if key == "endpoint":
                _merge(self.endpoint, limit)
            elif key in ("user", "service_principal", "user_group"):
                generic, overrides = {
                    "user": (self.user, self.user_overrides),
                    "service_principal": (self.sp, self.sp_overrides),
                    "user_group": (self.group, self.group_overrides),
                }[key]
                _merge(overrides.setdefault(principal, {}) if principal else generic, limit)
            else:  # validation rejects other keys; ignore rather than fail the request path
                log.warning("Endpoint '%s': ignoring a rate limit with unknown key %r.", endpoint_name, key)
        self.empty = not (
            self.endpoint
            or self.user
            or self.sp
            or self.group
            or self.user_overrides
            or self.sp_overrides
            or self.group_overrides
        )
        self._resolved: dict[tuple[str, str, tuple[str, ...]], _Resolved] = {}

    def resolve(self, caller: Caller) -> _Resolved:
        if self.empty:
            return _NOTHING
        cache_key = (caller.name, caller.kind, caller.groups)
        hit = self._resolved.get(cache_key)
        if hit is None:
            if len(self._resolved) >= _RESOLVED_CACHE_SIZE:
                self._resolved.clear()
            hit = self._resolved[cache_key] = self._resolve(caller)
        return hit

    def _resolve(self, caller: Caller) -> _Resolved:
        tag = "{" + self.endpoint_name + "}"
        checks: list[_Check] = []
        is_sp = caller.kind == "service_principal"
        who = f"service principal '{caller.name}'" if is_sp else f"user '{caller.name}'"
        # Most specific first: the first source that sets a measure decides it for this caller.
        sources: list[tuple[_Measures, str]] = [(self.user_overrides.get(caller.name, {}), "user")]
        if is_sp:
            sources.insert(0, (self.sp_overrides.get(caller.name, {}), "service_principal"))
            sources.append((self.sp, "service_principal"))
        sources.append((self.user, "user"))
        me = f"{'s' if is_sp else 'u'}:{caller.name}"
        for measure in _MEASURES:
            letter = measure[0]
            if measure in self.endpoint:
                checks.append(_Check(f"{tag}:{letter}:e", measure, self.endpoint[measure], "", "endpoint"))
            for source, rule_key in sources:
                if measure in source:
                    checks.append(_Check(f"{tag}:{letter}:{me}", measure, source[measure], who, rule_key))
                    break
            for group in caller.groups:
                override = self.group_overrides.get(group, {})
                limit = override.get(measure, self.group.get(measure))
                if limit is not None:
                    key = f"{tag}:{letter}:g:{group}"
                    checks.append(_Check(key, measure, limit, f"group '{group}'", "user_group"))
        # The first exhausted check names the refusal: calls before tokens, smallest limit first.
        checks.sort(key=lambda c: (c.measure != _CALLS, c.limit))
        return _Resolved(
            checks=tuple(checks),
            keys=tuple(c.key for c in checks),
            limits=tuple(c.limit for c in checks),
            increments=tuple(1 if c.measure == _CALLS else 0 for c in checks),
            token_keys=tuple(c.key for c in checks if c.measure == _TOKENS),
        )


def _fingerprint(limits: Sequence[Mapping[str, Any]]) -> tuple[Any, ...]:
    return tuple(
        (x.get("key"), x.get("principal"), x.get("calls"), x.get("tokens"), x.get("renewal_period"))
        for x in limits
    )


class RateLimiter:
    """Checks requests against an endpoint's rate limits; see the module docstring for the rules.

    ``backend`` defaults to :class:`LocalCounters`. ``fail_open`` (default True) admits requests
    unchecked while the backend is unreachable (logged, counted in :attr:`unchecked_admits`);
    False refuses them with 503. After a backend failure, requests skip the backend for
    ``retry_interval`` seconds.
    """

    def __init__(
        self,
        backend: CounterBackend | None = None,
        *,
        fail_open: bool = True,
        retry_interval: float = 1.0,
    ) -> None:
        self.backend: CounterBackend = backend if backend is not None else LocalCounters()
        self.fail_open = fail_open
        self.retry_interval = retry_interval
        #: Requests admitted without a check because the backend was unreachable.
        self.unchecked_admits = 0
        #: Backend calls that failed (admissions and token updates).
        self.backend_errors = 0
        self._parsed: dict[str, tuple[Hashable, _EndpointLimits]] = {}
        self._down_until = 0.0
        self._down = False

    def _limits_for(
        self, endpoint_name: str, limits: Sequence[Mapping[str, Any]], fingerprint: Hashable | None
    ) -> _EndpointLimits:
        fp = fingerprint if fingerprint is not None else _fingerprint(limits)
        entry = self._parsed.get(endpoint_name)
        if entry is not None and entry[0] == fp:
            return entry[1]
        parsed = _EndpointLimits(endpoint_name, limits)
        self._parsed[endpoint_name] = (fp, parsed)
        return parsed

    def forget(self, endpoint_name: str) -> None:
        """Drop the cached limits of an endpoint (e.g. when it is deleted)."""
        self._parsed.pop(endpoint_name, None)

    async def admit(
        self,
        endpoint_name: str,
        limits: Sequence[Mapping[str, Any]],
        caller: Caller,
        now: float | None = None,
        *,
        fingerprint: Hashable | None = None,
    ) -> Admission:
        """Count one query of ``caller`` to ``endpoint_name`` or refuse it.

        ``limits`` is :func:`endpoint_limits` of the endpoint; parsed limits are cached per endpoint
        by ``fingerprint`` (e.g. the endpoint's ``updated_ms``; by default one computed from
        ``limits``). ``now`` (epoch seconds) defaults to the clock. Raises
        :class:`~modelport.errors.RequestLimitExceeded` when a limit is exhausted and, with
        ``fail_open=False``, :class:`~modelport.errors.TemporarilyUnavailable` when the counters
        cannot be reached.
        """
        if not limits:
            return Admission(endpoint_name)
        resolved = self._limits_for(endpoint_name, limits, fingerprint).resolve(caller)
        if not resolved.checks:
            return Admission(endpoint_name)
        if now is None:
            now = time.time()
        window = int(now // WINDOW_SECONDS)
        if self._down and time.monotonic() < self._down_until:
            return self._unchecked(endpoint_name, resolved.token_keys)
        try:
            failed = await self.backend.check_and_add(
                window, resolved.keys, resolved.limits, resolved.increments
            )
        except CounterBackendError as exc:
            self._failed(exc)
            return self._unchecked(endpoint_name, resolved.token_keys)
        self._recovered()
        if failed >= 0:
            raise _refusal(endpoint_name, resolved.checks[failed], window, now)
        return Admission(endpoint_name, resolved.token_keys)

    async def add_tokens(self, admission: Admission, tokens: int, now: float | None = None) -> None:
        """Add the input+output tokens of an answered query to its token counters.

        The tokens go to the window current at ``now`` (default: the clock), which for an answer
        that took past a minute boundary is the next one. Never raises: a backend failure is
        logged and counted.
        """
        if tokens <= 0 or not admission.token_keys:
            return
        if self._down and time.monotonic() < self._down_until:
            return
        if now is None:
            now = time.time()
        try:
            await self.backend.add(int(now // WINDOW_SECONDS), admission.token_keys, int(tokens))
        except CounterBackendError as exc:
            self._failed(exc)
            return
        self._recovered()

    async def aclose(self) -> None:
        """Close the backend (its connections)."""
        await self.backend.aclose()

    def _unchecked(self, endpoint_name: str, token_keys: tuple[str, ...]) -> Admission:
        if not self.fail_open:
            raise TemporarilyUnavailable(
                f"Rate limits of endpoint '{endpoint_name}' cannot be checked now (the rate-limit "
                "store is unreachable). Retry later.",
                retry_after=max(1, math.ceil(self.retry_interval)),
            )
        self.unchecked_admits += 1
        return Admission(endpoint_name, token_keys, checked=False)

    def _failed(self, exc: CounterBackendError) -> None:
        self.backend_errors += 1
        if not self._down:
            log.warning(
                "Rate-limit counters unreachable (%s): %s requests without checking rate limits "
                "until they are back.",
                exc,
                "admitting" if self.fail_open else "refusing",
            )
        self._down = True
        self._down_until = time.monotonic() + self.retry_interval

    def _recovered(self) -> None:
        if self._down:
            self._down = False
            log.info("Rate-limit counters reachable again: checking rate limits.")


def _refusal(endpoint_name: str, check: _Check, window: int, now: float) -> RequestLimitExceeded:
    retry_after = max(1, math.ceil((window + 1) * WINDOW_SECONDS - now))
    scope = f"for {check.who}" if check.who else "for the endpoint"
    group = check.who[len("group '") : -1] if check.rule_key == "user_group" else None
    return RequestLimitExceeded(
        f"Rate limit exceeded for endpoint '{endpoint_name}': {check.limit} {check.measure} per minute "
        f"{scope} (key {check.rule_key}). Retry after {retry_after} s.",
        retry_after=retry_after,
        limit=RefusedLimit(check.rule_key, check.measure, check.limit, group),
    )
