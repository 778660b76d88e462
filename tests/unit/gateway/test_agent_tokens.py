"""Agent tokens: minting, verifying, the claims of a query, the grant's checks, and the
Authenticator accepting them on the query routes only (no sockets: a SQLite file)."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path

import orjson
import pytest

import modelport.gateway.agent_tokens as tokens_module
from modelport.config import Settings
from modelport.control.identity import IdentityService
from modelport.errors import InvalidParameterValue, PermissionDenied, Unauthenticated
from modelport.gateway.agent_tokens import (
    GRACE_SECONDS,
    KEY_META,
    TOKEN_PREFIX,
    AgentClaims,
    AgentTokens,
    is_agent_token,
    server_url,
)
from modelport.gateway.auth import Authenticator
from modelport.gateway.exchange import Exchange
from modelport.gateway.routing import Route, ServedEntity
from modelport.spec.identity import AgentGrant, Caller, new_token_value
from modelport.store import Database, open_database

KEY = "ab" * 32
NOW = 1_800_000_000_000


@pytest.fixture
def fixed_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tokens_module, "now_ms", lambda: NOW)


def _tokens(key: str = KEY, max_depth: int = 5) -> AgentTokens:
    return AgentTokens(key, host="http://127.0.0.1:8080", timeout=120, max_depth=max_depth)


def _claims(**over: object) -> AgentClaims:
    base: dict[str, object] = {
        "principal": "alice",
        "principal_id": 7,
        "allowed": ("ag-llm",),
        "expiry_ms": NOW + 60_000,
        "depth": 1,
        "chain": ("ag-agent",),
        "parent_request_id": "req-1",
    }
    base.update(over)
    return AgentClaims(**base)  # type: ignore[arg-type]


def _caller(name: str = "alice", agent: AgentGrant | None = None) -> Caller:
    return Caller(7, name, "user", ("users",), frozenset({7}), agent=agent)


def _route(agent_config: dict[str, object] | None = None) -> Route:
    config: dict[str, object] = {"name": "agent", "entity_name": "m", "entity_version": "1"}
    if agent_config is not None:
        config["agent_config"] = agent_config
    entity = ServedEntity("agent", config)
    return Route("id1", "ag-agent", 1, "NOT_UPDATING", {"agent": entity}, ("agent",), (100,))


# -- the token ------------------------------------------------------------------------------------


def test_minted_token_verifies_to_its_claims(fixed_clock: None) -> None:
    claims = _claims(allowed=None, chain=("outer", "ag-agent"), depth=2)
    token = _tokens().mint(claims)
    assert token.startswith(TOKEN_PREFIX) and is_agent_token(token)
    assert _tokens().verify(token) == claims


def test_the_payload_is_compact_json_with_the_documented_fields(fixed_clock: None) -> None:
    token = _tokens().mint(_claims())
    body = token[len(TOKEN_PREFIX) :].split(".")[0]
    raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    assert b" " not in raw
    assert orjson.loads(raw) == {
        "v": 1,
        "sub": "alice",
        "pid": 7,
        "allow": ["ag-llm"],
        "exp": NOW + 60_000,
        "depth": 1,
        "chain": ["ag-agent"],
        "parent": "req-1",
    }


def test_a_token_is_never_taken_for_a_personal_access_token() -> None:
    assert not is_agent_token(new_token_value())
    assert not _tokens().mint(_claims()).startswith("dapi")


@pytest.mark.parametrize("part", ["payload", "signature"])
def test_tampered_token_is_refused(fixed_clock: None, part: str) -> None:
    token = _tokens().mint(_claims())
    body, signature = token[len(TOKEN_PREFIX) :].split(".")
    if part == "payload":  # widen the allowed endpoints, keep the old signature
        forged = orjson.dumps({**_claims(allowed=None).payload()})
        body = base64.urlsafe_b64encode(forged).rstrip(b"=").decode()
    else:
        signature = ("A" if signature[0] != "A" else "B") + signature[1:]
    with pytest.raises(Unauthenticated, match="signature"):
        _tokens().verify(f"{TOKEN_PREFIX}{body}.{signature}")


def test_token_of_another_key_and_garbage_are_refused(fixed_clock: None) -> None:
    other = _tokens("cd" * 32).mint(_claims())
    with pytest.raises(Unauthenticated, match="signature"):
        _tokens().verify(other)
    for garbage in (TOKEN_PREFIX, TOKEN_PREFIX + "abc", TOKEN_PREFIX + "abc.def", "dapi123"):
        with pytest.raises(Unauthenticated):
            _tokens().verify(garbage)


def test_expired_token_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tokens_module, "now_ms", lambda: NOW)
    token = _tokens().mint(_claims(expiry_ms=NOW + 1000))
    assert _tokens().verify(token).principal == "alice"
    monkeypatch.setattr(tokens_module, "now_ms", lambda: NOW + 1000)
    with pytest.raises(Unauthenticated, match="expired"):
        _tokens().verify(token)


def test_depth_beyond_the_limit_is_a_400(fixed_clock: None) -> None:
    chain = ("a", "b", "c")
    assert _tokens(max_depth=3).verify(_tokens().mint(_claims(depth=3, chain=chain))).depth == 3
    with pytest.raises(InvalidParameterValue, match=r"depth 4 .* limit of 3"):
        _tokens(max_depth=3).verify(_tokens().mint(_claims(depth=4, chain=(*chain, "d"))))


def test_short_key_is_refused() -> None:
    with pytest.raises(ValueError, match="32"):
        AgentTokens("short", host="http://x", timeout=1)


# -- the claims of a query ------------------------------------------------------------------------


def test_claims_of_a_client_query_act_as_the_caller(fixed_clock: None) -> None:
    ex = Exchange(_caller(), "ag-agent", b"{}")
    route = _route()
    claims = _tokens().claims_for(ex, route, route.entities["agent"])
    assert claims == AgentClaims(
        principal="alice",
        principal_id=7,
        allowed=None,
        expiry_ms=NOW + (120 + GRACE_SECONDS) * 1000,
        depth=1,
        chain=("ag-agent",),
        parent_request_id=ex.request_id,
    )


def test_claims_follow_agent_config_and_the_chain_above(fixed_clock: None) -> None:
    above = AgentGrant(("outer",), 1, "req-0", None, NOW + 1)
    ex = Exchange(_caller(agent=above), "ag-agent", b"{}")
    route = _route({"run_as": "svc-bot", "allowed_endpoints": ["ag-llm", "ag-retriever"]})
    claims = _tokens().claims_for(ex, route, route.entities["agent"])
    assert (claims.principal, claims.principal_id) == ("svc-bot", None)
    assert claims.allowed == ("ag-llm", "ag-retriever")
    assert (claims.depth, claims.chain) == (2, ("outer", "ag-agent"))
    assert claims.parent_request_id == ex.request_id


# -- the grant's checks ---------------------------------------------------------------------------


def test_grant_refuses_its_own_chain_then_endpoints_not_allowed() -> None:
    grant = AgentGrant(("outer", "ag-agent"), 2, "req-9", frozenset({"ag-llm", "outer"}), NOW)
    grant.admit("ag-llm")
    for own in ("outer", "ag-agent"):
        with pytest.raises(InvalidParameterValue, match="calls itself"):
            grant.admit(own)
    with pytest.raises(PermissionDenied, match="may not call endpoint 'ag-other'"):
        grant.admit("ag-other")
    AgentGrant(("ag-agent",), 1, "r", None, NOW).admit("anything")  # None: any endpoint
    with pytest.raises(PermissionDenied):
        AgentGrant(("ag-agent",), 1, "r", frozenset(), NOW).admit("ag-llm")
    assert grant.usage_context == {"parent_request_id": "req-9", "agent_endpoint": "ag-agent"}


# -- the server's URL and key ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "tls", "url"),
    [
        ("127.0.0.1", False, "http://127.0.0.1:9000"),
        ("0.0.0.0", False, "http://127.0.0.1:9000"),
        ("::", True, "https://[::1]:9000"),
        ("fd00::5", False, "http://[fd00::5]:9000"),
        ("models.internal", True, "https://models.internal:9000"),
    ],
)
def test_server_url(host: str, tls: bool, url: str, tmp_path: Path) -> None:
    extra = {"tls_certfile": str(tmp_path / "c.pem"), "tls_keyfile": str(tmp_path / "k.pem")} if tls else {}
    assert server_url(Settings(host=host, port=9000, **extra)) == url  # type: ignore[arg-type]


@pytest.fixture
def db(tmp_path: Path) -> Database:
    return open_database(f"sqlite:///{tmp_path / 'm.db'}")


def test_servers_of_one_store_share_the_key(db: Database, fixed_clock: None) -> None:
    settings = Settings(port=9000, request_timeout=30, agent_max_depth=2)
    first, second = AgentTokens.for_store(db, settings), AgentTokens.for_store(db, settings)
    assert len(db.meta_get(KEY_META) or "") == 64
    assert second.verify(first.mint(_claims())) == _claims()
    assert (first.host, first.timeout, first.max_depth) == ("http://127.0.0.1:9000", 30.0, 2)


# -- the Authenticator ----------------------------------------------------------------------------


def _auth(db: Database, tmp_path: Path) -> tuple[Authenticator, IdentityService, Caller]:
    auth = Authenticator(db, ttl_seconds=60, agents=_tokens())
    identity = IdentityService(db, auth.forget)
    identity.bootstrap("admin", "dapi-ok", tmp_path)
    admin = auth.authenticate("Bearer dapi-ok")
    return auth, identity, admin


def test_agent_token_is_its_principal_acting_through_the_agent(
    db: Database, tmp_path: Path, fixed_clock: None
) -> None:
    auth, identity, admin = _auth(db, tmp_path)
    alice = identity.create_principal(admin, "alice", "user")
    token = _tokens().mint(_claims(principal_id=alice.id))
    caller = auth.authenticate(f"Bearer {token}", agent=True)
    assert (caller.id, caller.name, caller.groups, caller.token_id) == (alice.id, "alice", ("users",), None)
    assert caller.agent == _claims().grant()
    with pytest.raises(Unauthenticated, match="only by the query routes"):
        auth.authenticate(f"Bearer {token}")  # the control plane, sessions, MLflow


def test_agent_token_async_and_its_principal_gone(db: Database, tmp_path: Path, fixed_clock: None) -> None:
    auth, identity, admin = _auth(db, tmp_path)
    alice = identity.create_principal(admin, "alice", "user")
    header = f"Bearer {_tokens().mint(_claims(principal_id=alice.id))}"
    assert asyncio.run(auth.authenticate_async(header, agent=True)).name == "alice"
    with pytest.raises(Unauthenticated, match="only by the query routes"):
        asyncio.run(auth.authenticate_async(header))
    identity.delete_principal(admin, "alice", "user")  # forgets the cache, like a change elsewhere
    with pytest.raises(Unauthenticated, match="no longer exists"):
        asyncio.run(auth.authenticate_async(header, agent=True))


def test_principal_of_another_id_is_refused(db: Database, tmp_path: Path, fixed_clock: None) -> None:
    auth, identity, admin = _auth(db, tmp_path)
    alice = identity.create_principal(admin, "alice", "user")
    with pytest.raises(Unauthenticated, match="no longer exists"):
        auth.authenticate(f"Bearer {_tokens().mint(_claims(principal_id=alice.id + 100))}", agent=True)
    # run_as a service principal: minted without an id, named only
    identity.create_principal(admin, "svc-bot", "service_principal")
    caller = auth.authenticate(
        f"Bearer {_tokens().mint(_claims(principal='svc-bot', principal_id=None))}", agent=True
    )
    assert (caller.name, caller.kind) == ("svc-bot", "service_principal")


def test_without_agent_tokens_configured_they_are_invalid(db: Database, tmp_path: Path) -> None:
    auth = Authenticator(db)
    with pytest.raises(Unauthenticated, match="Invalid access token"):
        auth.authenticate(f"Bearer {_tokens().mint(_claims(expiry_ms=2**60))}", agent=True)


def test_context_for_a_query_carries_a_fresh_token(fixed_clock: None) -> None:
    ex = Exchange(_caller(), "ag-agent", b"{}")
    context = _tokens().context_for(ex, _route({"allowed_endpoints": ["ag-llm"]}), "agent")
    assert context is not None
    assert (context.host, context.depth, context.parent_request_id, context.endpoint) == (
        "http://127.0.0.1:8080",
        1,
        ex.request_id,
        "ag-agent",
    )
    claims = _tokens().verify(context.token)
    assert (claims.principal, claims.allowed, claims.chain) == ("alice", ("ag-llm",), ("ag-agent",))
    assert context.token not in repr(context)  # never logged with the context
