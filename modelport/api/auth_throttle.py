"""Failed authentications limited per client address: a guessing client is turned away.

Every answer 401 counts one failure against the request's client address (``scope["client"]``:
the connection's peer, or the address a trusted proxy names in ``X-Forwarded-For`` when
``--trusted-proxies`` lists it; uvicorn resolves that before the app sees the request). Once an
address has ``limit`` failures within a window of ``window`` seconds (the window opens at its first
failure), **every** request from it is answered 429 ``REQUEST_LIMIT_EXCEEDED`` with
``Retry-After`` until the window ends, whatever token it carries; then it starts afresh.

Why every request and not only the failing ones: a block that let a request with a valid token
through would still tell a guesser, at full speed, which guess is right (200 against 429), so it
would slow nothing. The cost is that clients sharing an address (a NAT, a proxy that is not
trusted) share the block: put modelport's own proxy in ``--trusted-proxies``. ``/health`` and
``/ready`` are never blocked (load balancers probe them from the same address).

IPv6 addresses count by their /64 prefix, the block an ISP hands one customer. The map of
addresses is bounded (:class:`FailureCounter`): it holds at most ``max_addresses`` entries and
drops the oldest window first, so an attacker rotating addresses costs a fixed amount of memory
(about 200 bytes an entry) and can at worst make the counter forget addresses. Counts live in this
process: several server processes count separately.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable

from starlette.types import Message, Receive, Scope, Send

from modelport.api.errors import send_error
from modelport.errors import RequestLimitExceeded

__all__ = ["AuthThrottle", "FailureCounter", "address_key"]

log = logging.getLogger("modelport.server")

Handler = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Paths machines probe without a token, never blocked.
_PROBES = frozenset({"/health", "/ready"})


def address_key(host: str) -> str:
    """The key an address counts under: IPv4 (or a name) as is, IPv6 by its /64 network."""
    if ":" not in host:
        return host
    try:
        address = ipaddress.IPv6Address(host.split("%", 1)[0])
    except ValueError:
        return host
    if address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(ipaddress.IPv6Network((address, 64), strict=False))


class FailureCounter:
    """Failures per key in fixed windows, holding at most ``max_addresses`` keys.

    Entries are kept in the order their windows opened, so expired ones are dropped from the
    front and, when full, the oldest window goes first. ``now`` is passed in (monotonic seconds).
    """

    def __init__(self, limit: int, window: float, max_addresses: int = 10_000) -> None:
        self.limit = limit
        self.window = window
        self.max_addresses = max_addresses
        self._entries: OrderedDict[str, list[float]] = OrderedDict()  # key -> [opened, failures]

    def __len__(self) -> int:
        return len(self._entries)

    def blocked_for(self, key: str, now: float) -> float | None:
        """Seconds until ``key`` may send again, or None when it is not blocked."""
        entry = self._entries.get(key)
        if entry is None or entry[1] < self.limit:
            return None
        left = entry[0] + self.window - now
        return left if left > 0 else None

    def fail(self, key: str, now: float) -> bool:
        """Count one failure of ``key``; True when this failure reached the limit."""
        self._expire(now)
        entry = self._entries.get(key)
        if entry is None or entry[0] + self.window <= now:
            self._entries.pop(key, None)
            entry = self._entries[key] = [now, 0.0]
            while len(self._entries) > self.max_addresses:
                self._entries.popitem(last=False)
        entry[1] += 1
        return entry[1] == self.limit

    def _expire(self, now: float) -> None:
        while self._entries:
            opened = next(iter(self._entries.values()))[0]
            if opened + self.window > now:
                return
            self._entries.popitem(last=False)


class AuthThrottle:
    """Wraps an ASGI handler: counts the 401 answers of each client address and answers 429
    for an address that reached the limit (see the module docstring)."""

    def __init__(
        self,
        handler: Handler,
        limit: int,
        window: float,
        *,
        max_addresses: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._handler = handler
        self._counter = FailureCounter(limit, window, max_addresses)
        self._clock = clock
        self._on = limit > 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        client = scope.get("client")
        if not self._on or client is None or scope["path"] in _PROBES:
            await self._handler(scope, receive, send)
            return
        key = address_key(client[0])
        counter = self._counter
        if len(counter):
            left = counter.blocked_for(key, self._clock())
            if left is not None:
                await send_error(
                    send,
                    RequestLimitExceeded(
                        f"Too many failed authentications from this address ({counter.limit} in "
                        f"{counter.window:g} seconds); retry after {math.ceil(left)} seconds.",
                        retry_after=math.ceil(left),
                    ),
                )
                return

        async def counted(message: Message) -> None:
            failed = message["type"] == "http.response.start" and message["status"] == 401
            if failed and counter.fail(key, self._clock()):
                log.warning(
                    "client address blocked after failed authentications",
                    extra={"client": key, "failures": counter.limit, "seconds": counter.window},
                )
            await send(message)

        await self._handler(scope, receive, counted)
