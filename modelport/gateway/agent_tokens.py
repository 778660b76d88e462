"""Agent tokens: short-lived bearer tokens with which an agent's code calls other endpoints
on behalf of a principal (tools through the gateway).

For each query of an agent endpoint the gateway mints one (:meth:`AgentTokens.context_for`) and
sends it to the agent's replica with the request (``runtime/protocol.py``'s ``AgentContext``);
the agent's tool code presents it as ``Authorization: Bearer`` (``client/agent_tools.py``) and
``gateway/auth.py`` turns it back into the principal's :class:`~modelport.spec.identity.Caller`
with an :class:`~modelport.spec.identity.AgentGrant` on it. Nothing stores a token: it is
verified by its signature, so every server process sharing the store accepts what any of them
minted.

The token is ``mpagent_<payload>.<signature>``: the payload is compact JSON (base64url, no
padding), the signature HMAC-SHA256 of ``mpagent_<payload>`` under the store's key
(``meta.agent_token_key``, 32 random bytes made by the first server), base64url. The prefix
never starts a personal access token (``dapi`` + hex, ``spec/identity.py``). The payload:

    ``v``       1 (the format)
    ``sub``     the principal's name: the caller of the agent endpoint, or the service
                principal of ``agent_config.run_as``
    ``pid``     the principal's id when known at minting (the caller's), else null; a principal
                of that name but another id (deleted, then made again) is refused
    ``allow``   the endpoints the agent may call (``agent_config.allowed_endpoints``), null: any
                the principal may query
    ``exp``     expiry, epoch ms: the request timeout + 60 s after minting
    ``depth``   1 for the tools of an agent queried by a client, one more per agent in between
    ``chain``   the agent endpoints above the call, outermost first (the self-call guard)
    ``parent``  the request id of the agent endpoint's query (the inner usage rows' context)

A token's checks happen in three places: signature, format and expiry here
(:meth:`AgentTokens.verify`, 401), and the depth (``--agent-max-depth``, 400) too; the
principal (it must exist and be active, 401) in ``gateway/auth.py``; the endpoint it is used
for (in its chain: 400 "calls itself"; not allowed: 403) by the data plane
(:meth:`AgentGrant.admit <modelport.spec.identity.AgentGrant.admit>`, called by
``pipeline.py`` before the endpoint's route is looked up), then CAN_QUERY of the principal like
any query. Tokens are never logged: errors name the principal and endpoints, not the token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any

import orjson

from modelport.clock import now_ms
from modelport.config import Settings
from modelport.errors import InvalidParameterValue, Unauthenticated
from modelport.gateway.exchange import Exchange
from modelport.gateway.routing import Route, ServedEntity
from modelport.runtime.protocol import AgentContext
from modelport.spec.endpoint import RUN_AS_CALLER
from modelport.spec.identity import AgentGrant
from modelport.store import Database

__all__ = [
    "GRACE_SECONDS",
    "KEY_META",
    "TOKEN_PREFIX",
    "AgentClaims",
    "AgentTokens",
    "is_agent_token",
    "server_url",
]

TOKEN_PREFIX = "mpagent_"
#: The store's ``meta`` key of the signing key (hex), shared by every server of the store.
KEY_META = "agent_token_key"
#: Seconds a token outlives the request timeout (the agent's last tool calls, clocks apart).
GRACE_SECONDS = 60


def is_agent_token(value: str) -> bool:
    """Whether a bearer token is an agent token (by its prefix; :meth:`AgentTokens.verify` says
    whether it is a valid one)."""
    return value.startswith(TOKEN_PREFIX)


def server_url(settings: Settings) -> str:
    """The URL at which a replica reaches this server: its listen address (a wildcard address:
    the loopback), https when it serves TLS."""
    scheme = "https" if settings.tls_certfile else "http"
    host = settings.host or "127.0.0.1"
    if host == "0.0.0.0":
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{scheme}://{host}:{settings.port}"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class AgentClaims:
    """What an agent token says (see the module docstring for each field's wire name)."""

    principal: str
    principal_id: int | None
    allowed: tuple[str, ...] | None
    expiry_ms: int
    depth: int
    chain: tuple[str, ...]
    parent_request_id: str

    def grant(self) -> AgentGrant:
        """The grant a caller carries while it acts through the agent."""
        return AgentGrant(
            chain=self.chain,
            depth=self.depth,
            parent_request_id=self.parent_request_id,
            allowed=None if self.allowed is None else frozenset(self.allowed),
            expiry_ms=self.expiry_ms,
        )

    def payload(self) -> dict[str, Any]:
        return {
            "v": 1,
            "sub": self.principal,
            "pid": self.principal_id,
            "allow": None if self.allowed is None else list(self.allowed),
            "exp": self.expiry_ms,
            "depth": self.depth,
            "chain": list(self.chain),
            "parent": self.parent_request_id,
        }

    @classmethod
    def of(cls, payload: Any) -> AgentClaims:
        """The claims of a decoded payload; ValueError when it is not one of ours."""
        if not isinstance(payload, dict) or payload.get("v") != 1:
            raise ValueError("not a version-1 payload")
        sub, pid, allow = payload.get("sub"), payload.get("pid"), payload.get("allow")
        exp, depth, chain, parent = (payload.get(k) for k in ("exp", "depth", "chain", "parent"))
        if not isinstance(sub, str) or not sub or not isinstance(parent, str):
            raise ValueError("bad principal or parent")
        if pid is not None and (not isinstance(pid, int) or isinstance(pid, bool)):
            raise ValueError("bad principal id")
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (exp, depth)) or depth < 1:
            raise ValueError("bad expiry or depth")
        if not isinstance(chain, list) or not chain or not all(isinstance(c, str) for c in chain):
            raise ValueError("bad chain")
        if allow is not None and (not isinstance(allow, list) or not all(isinstance(a, str) for a in allow)):
            raise ValueError("bad allowed endpoints")
        return cls(
            principal=sub,
            principal_id=pid,
            allowed=None if allow is None else tuple(allow),
            expiry_ms=exp,
            depth=depth,
            chain=tuple(chain),
            parent_request_id=parent,
        )


class AgentTokens:
    """Mints and verifies agent tokens with one key; builds the agent context of a query.

    ``host``: the URL replicas reach this server at (:func:`server_url`); ``timeout``: the
    request timeout in seconds (a token lives that + :data:`GRACE_SECONDS`); ``max_depth``: the
    deepest call a token may make (``--agent-max-depth``)."""

    def __init__(self, key: str, *, host: str, timeout: float, max_depth: int = 5) -> None:
        if len(key) < 32:
            raise ValueError("the agent token key must have at least 32 characters")
        self._key = key.encode()
        self.host = host
        self.timeout = timeout
        self.max_depth = max_depth

    @classmethod
    def for_store(cls, db: Database, settings: Settings) -> AgentTokens:
        """The tokens of the servers that share ``db`` (blocking: reads, or first makes, the key)."""
        key = db.meta_setdefault(KEY_META, secrets.token_hex(32))
        return cls(
            key,
            host=server_url(settings),
            timeout=float(settings.request_timeout),
            max_depth=settings.agent_max_depth,
        )

    def _sign(self, body: str) -> str:
        mac = hmac.new(self._key, (TOKEN_PREFIX + body).encode(), hashlib.sha256)
        return _b64(mac.digest())

    def mint(self, claims: AgentClaims) -> str:
        """A token that says ``claims``."""
        body = _b64(orjson.dumps(claims.payload()))
        return f"{TOKEN_PREFIX}{body}.{self._sign(body)}"

    def verify(self, value: str) -> AgentClaims:
        """The claims of a token this store's key signed, once its expiry and depth are checked.

        Raises :class:`Unauthenticated` (401) for a token that is malformed, tampered with,
        signed with another key or expired, and :class:`InvalidParameterValue` (400) for one
        deeper than ``max_depth``."""
        if not is_agent_token(value):
            raise Unauthenticated("Invalid agent token.")
        body, dot, signature = value[len(TOKEN_PREFIX) :].partition(".")
        if not dot or not hmac.compare_digest(signature.encode(), self._sign(body).encode()):
            raise Unauthenticated("Invalid agent token: its signature does not match.")
        try:
            claims = AgentClaims.of(orjson.loads(_unb64(body)))
        except (ValueError, orjson.JSONDecodeError):  # signed by us, so only another format
            raise Unauthenticated("Invalid agent token: unknown format.") from None
        if claims.expiry_ms <= now_ms():
            raise Unauthenticated(
                f"Agent token has expired (agent endpoint '{claims.chain[-1]}', request "
                f"{claims.parent_request_id}): an agent's token lives as long as its request."
            )
        if claims.depth > self.max_depth:
            raise InvalidParameterValue(
                f"Agent calls nest too deeply: depth {claims.depth} through "
                f"{' -> '.join(claims.chain)} exceeds the limit of {self.max_depth} "
                "(the server's --agent-max-depth)."
            )
        return claims

    def claims_for(self, ex: Exchange, route: Route, entity: ServedEntity | None) -> AgentClaims:
        """What the token of query ``ex`` to agent entity ``entity`` of ``route`` says: the
        principal of ``agent_config.run_as`` (the caller by default), the allowed endpoints,
        the chain so far plus this endpoint."""
        config = entity.config.get("agent_config") if entity is not None else None
        config = config if isinstance(config, dict) else {}
        run_as = config.get("run_as") or RUN_AS_CALLER
        if run_as == RUN_AS_CALLER:
            principal, principal_id = ex.caller.name, ex.caller.id
        else:
            principal, principal_id = str(run_as), None
        allowed = config.get("allowed_endpoints")
        parent = ex.caller.agent
        return AgentClaims(
            principal=principal,
            principal_id=principal_id,
            allowed=None if allowed is None else tuple(str(a) for a in allowed),
            expiry_ms=now_ms() + int((self.timeout + GRACE_SECONDS) * 1000),
            depth=1 if parent is None else parent.depth + 1,
            chain=(route.name,) if parent is None else (*parent.chain, route.name),
            parent_request_id=ex.request_id,
        )

    def context_for(self, ex: Exchange, route: Route, entity: str | ServedEntity) -> AgentContext | None:
        """The agent context sent with query ``ex`` to agent entity ``entity`` of ``route``
        (``gateway/served.py`` asks it for every query of an agent replica): the host, a fresh
        token, the depth of its calls, the request id and the endpoint."""
        served = route.entities.get(entity) if isinstance(entity, str) else entity
        claims = self.claims_for(ex, route, served)
        return AgentContext(
            host=self.host,
            token=self.mint(claims),
            depth=claims.depth,
            parent_request_id=claims.parent_request_id,
            endpoint=route.name,
        )
