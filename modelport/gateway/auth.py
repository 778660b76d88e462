"""Bearer-token authentication with an in-memory cache in front of the store.

Tokens are stored as SHA-256 hashes; the cache maps a hash to the caller for a few
seconds so the request path does no database read per request. Deleting a token evicts
it from this process's cache at once; other server processes see the deletion within
``ttl_seconds``.

While the store is unreachable (``store/connectivity.py``: PostgreSQL restarting, the network
cut), a token this process has seen keeps working from its expired cache entry, so the data
plane goes on answering the callers it knows; the entry is checked against the store again
as soon as the store answers. A token never seen before gets 503 ``TEMPORARILY_UNAVAILABLE``
meanwhile. The price: a token deleted or a principal deactivated by another process while the
store is away stays accepted here until the store is back (expiry times are still enforced).

Agent tokens (``mpagent_...``, ``gateway/agent_tokens.py``) are accepted only where the caller
asks for them (``agent=True``: the query routes), never by the control plane, sessions or the
MLflow routes. They are checked by their signature and expiry on every request (never cached
themselves); the principal they name is read from the store and cached like a token's
(``ttl_seconds``, the same fallback while the store is unreachable). The caller is that
principal with :attr:`~modelport.spec.identity.Caller.agent` set.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from dataclasses import replace

from modelport.clock import now_ms
from modelport.errors import TemporarilyUnavailable, Unauthenticated
from modelport.gateway.agent_tokens import AgentClaims, AgentTokens, is_agent_token
from modelport.spec.identity import Caller, hash_token
from modelport.store import Database
from modelport.store.connectivity import RETRY_AFTER_SECONDS, is_unreachable
from modelport.store.records import PrincipalRecord

__all__ = ["Authenticator", "active_caller", "caller_from"]

log = logging.getLogger("modelport.gateway")


def caller_from(record: PrincipalRecord, token_id: str | None = None) -> Caller:
    return Caller(
        id=record.id,
        name=record.name,
        kind=record.kind,
        groups=record.groups,
        principal_ids=frozenset({record.id, *record.group_ids}),
        token_id=token_id,
    )


def active_caller(db: Database, name: str) -> Caller | None:
    """The caller that principal ``name`` is, when it exists and is active (work run on its
    behalf later, such as a bulk job, stops when it is removed or deactivated)."""
    record = db.principals.get(name)
    return caller_from(record) if record is not None and record.active else None


def _bearer(authorization: str | None) -> str:
    """The token of an ``Authorization: Bearer`` header (401 for none or another scheme)."""
    if not authorization:
        raise Unauthenticated(
            "Missing credentials: send the header 'Authorization: Bearer <token>'. "
            "The first admin token is in <data-dir>/admin-token."
        )
    scheme, _, value = authorization.strip().partition(" ")
    value = value.strip()
    if scheme.lower() != "bearer" or not value:
        raise Unauthenticated("Unsupported authorization scheme: use 'Authorization: Bearer <token>'.")
    return value


def _agent_caller(claims: AgentClaims, record: PrincipalRecord | None) -> Caller:
    """The caller an agent token acts as: its principal, as the store has it now."""
    if record is None or (claims.principal_id is not None and record.id != claims.principal_id):
        raise Unauthenticated(f"Principal '{claims.principal}' of this agent token no longer exists.")
    if not record.active:
        raise Unauthenticated(f"Principal '{record.name}' is deactivated.")
    return replace(caller_from(record), agent=claims.grant())


class Authenticator:
    """Tokens to callers, cached ``ttl_seconds`` per token hash (see the module docstring for
    what happens while the store is unreachable). Thread-safe; lookups run in threads."""

    def __init__(self, db: Database, ttl_seconds: float = 5.0, agents: AgentTokens | None = None) -> None:
        """``agents``: verifies agent tokens (None: none is accepted)."""
        self._db = db
        self._ttl = ttl_seconds
        self._cache: dict[str, tuple[float, Caller, int | None]] = {}
        #: Agent tokens' principals by name: (until, the record).
        self._principals: dict[str, tuple[float, PrincipalRecord | None]] = {}
        self._lock = threading.Lock()
        self._stale_served = False
        self.agents = agents

    def authenticate(self, authorization: str | None, *, agent: bool = False) -> Caller:
        """Resolve an ``Authorization`` header to a caller or raise :class:`Unauthenticated`.
        ``agent``: accept an agent token too (the query routes only)."""
        value = _bearer(authorization)
        if is_agent_token(value):
            claims = self._agent_claims(value, agent)
            hit = self._cached_principal(claims.principal)
            return _agent_caller(claims, hit[0] if hit is not None else self._principal(claims.principal))
        digest = hash_token(value)
        hit = self._cached(digest)
        return self._check(hit if hit is not None else self._lookup(digest))

    async def authenticate_async(self, authorization: str | None, *, agent: bool = False) -> Caller:
        """:meth:`authenticate` for the event loop: a cache miss reads the store in a thread,
        so one slow lookup does not stall every query in flight."""
        value = _bearer(authorization)
        if is_agent_token(value):
            claims = self._agent_claims(value, agent)
            found = self._cached_principal(claims.principal)
            record = (
                found[0] if found is not None else await asyncio.to_thread(self._principal, claims.principal)
            )
            return _agent_caller(claims, record)
        digest = hash_token(value)
        hit = self._cached(digest)
        return self._check(hit if hit is not None else await asyncio.to_thread(self._lookup, digest))

    def _agent_claims(self, value: str, accepted: bool) -> AgentClaims:
        if not accepted:
            raise Unauthenticated(
                "Agent tokens are accepted only by the query routes (/serving-endpoints/{name}/"
                "invocations and the OpenAI-compatible /serving-endpoints/... routes)."
            )
        if self.agents is None:
            raise Unauthenticated("Invalid access token.")
        return self.agents.verify(value)

    def _cached_principal(self, name: str) -> tuple[PrincipalRecord | None] | None:
        with self._lock:
            hit = self._principals.get(name)
        if hit is not None and hit[0] > time.monotonic():
            return (hit[1],)
        return None

    def _principal(self, name: str) -> PrincipalRecord | None:
        """The principal of an agent token, read from the store (its expired cache entry while
        the store is unreachable, else 503) and cached ``ttl_seconds``."""
        try:
            record = self._db.principals.get(name)
        except Exception as exc:
            if not is_unreachable(exc):
                raise
            with self._lock:
                hit = self._principals.get(name)
                if hit is not None:
                    self._principals[name] = (time.monotonic() + self._ttl, hit[1])
            if hit is None:
                raise TemporarilyUnavailable(
                    "The metadata store is unreachable, so this agent token's principal cannot be "
                    "checked now; retry later.",
                    retry_after=RETRY_AFTER_SECONDS,
                ) from exc
            return hit[1]
        with self._lock:
            self._principals[name] = (time.monotonic() + self._ttl, record)
        return record

    def _cached(self, digest: str) -> tuple[Caller, int | None] | None:
        with self._lock:
            hit = self._cache.get(digest)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1], hit[2]
        return None

    def _lookup(self, digest: str) -> tuple[Caller, int | None]:
        try:
            found = self._db.principals.find_token(digest)
        except Exception as exc:
            if not is_unreachable(exc):
                raise
            return self._stale(digest, exc)
        if self._stale_served:
            self._stale_served = False
            log.info("metadata store reachable again: tokens are checked against it")
        if found is None:
            raise Unauthenticated("Invalid access token.")
        token, principal = found
        if not principal.active:
            raise Unauthenticated(f"Principal '{principal.name}' is deactivated.")
        caller, expiry_ms = caller_from(principal, token.id), token.expiry_ms
        with self._lock:
            self._cache[digest] = (time.monotonic() + self._ttl, caller, expiry_ms)
        return caller, expiry_ms

    def _stale(self, digest: str, exc: BaseException) -> tuple[Caller, int | None]:
        """The expired cache entry of ``digest`` while the store cannot be asked; else 503."""
        with self._lock:
            hit = self._cache.get(digest)
        if hit is None:
            raise TemporarilyUnavailable(
                "The metadata store is unreachable, so this token cannot be checked now; retry later.",
                retry_after=RETRY_AFTER_SECONDS,
            ) from exc
        with self._lock:  # ask the store again for this token one TTL from now, not per request
            self._cache[digest] = (time.monotonic() + self._ttl, hit[1], hit[2])
        if not self._stale_served:
            self._stale_served = True
            log.warning(
                "metadata store unreachable (%s): serving tokens seen before from the cache",
                str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
            )
        return hit[1], hit[2]

    @staticmethod
    def _check(found: tuple[Caller, int | None]) -> Caller:
        caller, expiry_ms = found
        if expiry_ms is not None and expiry_ms <= now_ms():
            raise Unauthenticated("Access token has expired; create a new one.")
        return caller

    def forget(self, token_hash: str | None = None) -> None:
        """Drop one cached token (after a delete) or the whole cache (after group changes)."""
        with self._lock:
            if token_hash is None:
                self._cache.clear()
                self._principals.clear()
            else:
                self._cache.pop(token_hash, None)
