"""Tools through the gateway: an agent's calls to other endpoints with its request's agent token
(``gateway/agent_tokens.py``, ``client/agent_tools.py``), on the package's shared server.

The agents of ``world.py`` ask ``ag-llm`` (the OpenAI fake) when ``custom_inputs.use_tool`` is
true. Each test makes its own principals (``tools-*``) so the others' permissions stay as the
world made them. Tokens the tests forge or tamper with are signed with the server's key, read
from its SQLite store, as another server of the store would sign them.
"""

from __future__ import annotations

import sqlite3
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from modelport.gateway.agent_tokens import KEY_META, AgentClaims, AgentTokens
from modelport.runtime.protocol import AgentContext
from modelport.tables.query import query
from tests.agents.world import CHAT, CHAT_MODEL, LLM, RESPONSES, World
from tests.support.endpoints import wait_settled
from tests.support.principals import create_user, obo_token

SCIM = "/api/2.0/preview/scim/v2"
API = "/api/2.0/serving-endpoints"
SCOPED = "ag-tools-scoped"


@dataclass
class People:
    """``carol``: may query ag-chat, ag-responses and ag-llm; ``bob``: ag-chat only;
    ``bot``: a service principal that may query ag-llm."""

    carol: httpx.Client
    bob: httpx.Client
    bot: str


def _grant(world: World, endpoint: str, **who: str) -> None:
    endpoint_id = world.admin.get(f"{API}/{endpoint}").json()["id"]
    resp = world.admin.patch(
        f"/api/2.0/permissions/serving-endpoints/{endpoint_id}",
        json={"access_control_list": [{**who, "permission_level": "CAN_QUERY"}]},
    )
    assert resp.status_code == 200, resp.text


def _client(world: World, **who: str) -> httpx.Client:
    token = obo_token(world.admin, **who)["token_value"]
    return httpx.Client(base_url=world.url, headers={"Authorization": f"Bearer {token}"}, timeout=60)


@pytest.fixture(scope="module")
def people(world: World) -> Iterator[People]:
    for name in ("tools-carol", "tools-bob"):
        create_user(world.admin, name)
    resp = world.admin.post(f"{SCIM}/ServicePrincipals", json={"applicationId": "tools-bot"})
    assert resp.status_code == 201, resp.text
    for endpoint in (CHAT, RESPONSES, LLM):
        _grant(world, endpoint, user_name="tools-carol")
    _grant(world, CHAT, user_name="tools-bob")
    _grant(world, LLM, service_principal_name="tools-bot")
    carol, bob = _client(world, user_name="tools-carol"), _client(world, user_name="tools-bob")
    yield People(carol, bob, "tools-bot")
    carol.close()
    bob.close()


def _ask(
    world: World, endpoint: str, text: str, client: httpx.Client, path: str = ""
) -> tuple[str, httpx.Response]:
    """Query agent ``endpoint`` (a ChatAgent body) so that it uses its tool; (request id, answer)."""
    rid = f"agtools-{uuid.uuid4().hex[:12]}"
    body = {"messages": [{"role": "user", "content": text}], "custom_inputs": {"use_tool": True}}
    resp = client.post(
        f"/serving-endpoints/{endpoint}{path}/invocations", json=body, headers={"x-request-id": rid}
    )
    return rid, resp


def _usage(world: World, count: int, **where: Any) -> list[dict[str, Any]]:
    """The usage rows (``system.serving.endpoint_usage``) matching ``where`` once there are
    ``count`` (``parent_request_id``/``agent_endpoint``: keys of their ``usage_context``)."""
    context_keys = {k: where.pop(k) for k in ("parent_request_id", "agent_endpoint") if k in where}
    deadline = time.monotonic() + 30
    rows: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        if (world.tables / "system" / "serving" / "endpoint_usage" / "_delta_log").exists():
            columns, raw = query("SELECT * FROM system.serving.endpoint_usage", str(world.tables))
            rows = []
            for values in raw:
                row = dict(zip(columns, values, strict=True))
                context = dict(row.get("usage_context") or {})
                if all(row.get(k) == v for k, v in where.items()) and all(
                    context.get(k) == v for k, v in context_keys.items()
                ):
                    rows.append({**row, "usage_context": context})
            if len(rows) >= count:
                return rows
        time.sleep(0.3)
    raise AssertionError(f"{len(rows)} usage rows match {where} {context_keys}, not {count}")


def _content(resp: httpx.Response) -> str:
    assert resp.status_code == 200, resp.text
    return str(resp.json()["messages"][-1]["content"])


def test_tool_call_acts_as_the_caller_and_names_its_parent(world: World, people: People) -> None:
    seen = len(world.fake.requests)
    rid, resp = _ask(world, CHAT, "ping one", people.carol)
    assert _content(resp) == "echo: ping one | tool: You said: ping one"
    asked = [r for r in world.fake.requests[seen:] if r.path.endswith("/chat/completions")]
    assert len(asked) == 1 and b"ping one" in asked[0].body
    (inner,) = _usage(world, 1, endpoint_name=LLM, parent_request_id=rid)
    assert inner["requester"] == "tools-carol" and inner["status_code"] == 200
    assert inner["usage_context"] == {"parent_request_id": rid, "agent_endpoint": CHAT}
    assert inner["request_id"] != rid
    (outer,) = _usage(world, 1, endpoint_name=CHAT, request_id=rid)
    assert outer["requester"] == "tools-carol"


def test_responses_agent_tool_call_too(world: World, people: People) -> None:
    rid = f"agtools-{uuid.uuid4().hex[:12]}"
    body = {"input": [{"role": "user", "content": "ping two"}], "custom_inputs": {"use_tool": True}}
    resp = people.carol.post(
        f"/serving-endpoints/{RESPONSES}/invocations", json=body, headers={"x-request-id": rid}
    )
    assert resp.status_code == 200, resp.text
    assert "tool: You said: ping two" in resp.text
    (inner,) = _usage(world, 1, endpoint_name=LLM, parent_request_id=rid)
    assert (inner["requester"], inner["usage_context"]["agent_endpoint"]) == ("tools-carol", RESPONSES)


def test_caller_without_can_query_on_the_tool_gets_it_refused(world: World, people: People) -> None:
    """What the agent sees: ``query`` raises PermissionDenied naming the endpoint; the agent
    does not catch it, so its request answers that 403."""
    seen = len(world.fake.requests)
    _, resp = _ask(world, CHAT, "may I", people.bob)
    assert resp.status_code == 403, resp.text
    error = resp.json()
    assert error["error_code"] == "PERMISSION_DENIED"
    assert "Tool call to endpoint 'ag-llm' failed (403)" in error["message"]
    assert "'tools-bob' does not have CAN_QUERY permission on serving endpoint 'ag-llm'" in error["message"]
    assert len(world.fake.requests) == seen  # the provider was never asked
    _, plain = _ask(world, CHAT, "no tool", people.bob)
    assert plain.status_code == 403  # the same caller, the same refusal each time


def test_inner_calls_are_rate_limited(world: World, people: People) -> None:
    limits = [{"calls": 2, "renewal_period": "minute", "key": "user", "principal": "tools-carol"}]
    gateway = {"usage_tracking_config": {"enabled": True}}
    put = world.admin.put(f"{API}/{LLM}/ai-gateway", json={**gateway, "rate_limits": limits})
    assert put.status_code == 200, put.text
    try:
        for i in range(2):
            _, resp = _ask(world, CHAT, f"limited {i}", people.carol)
            assert _content(resp).endswith(f"You said: limited {i}")
        _, refused = _ask(world, CHAT, "limited 2", people.carol)
        assert refused.status_code == 429, refused.text
        assert refused.json()["error_code"] == "REQUEST_LIMIT_EXCEEDED"
        assert "Tool call to endpoint 'ag-llm' failed (429)" in refused.json()["message"]
        # the outer endpoint has no limit: the same caller still gets answers without the tool
        plain = people.carol.post(
            f"/serving-endpoints/{CHAT}/invocations", json={"messages": [{"role": "user", "content": "x"}]}
        )
        assert _content(plain) == "echo: x"
    finally:
        restored = world.admin.put(f"{API}/{LLM}/ai-gateway", json=gateway)
        assert restored.status_code == 200, restored.text


# -- tokens as another server of the store would mint them ---------------------------------------


@pytest.fixture(scope="module")
def tokens(world: World) -> AgentTokens:
    with sqlite3.connect(f"file:{world.server.data_dir / 'modelport.db'}?mode=ro", uri=True) as con:
        (key,) = con.execute("SELECT value FROM meta WHERE key = ?", (KEY_META,)).fetchone()
    return AgentTokens(key, host=world.url, timeout=60)


def _claims(**over: Any) -> AgentClaims:
    base: dict[str, Any] = {
        "principal": "tools-carol",
        "principal_id": None,
        "allowed": None,
        "expiry_ms": int(time.time() * 1000) + 60_000,
        "depth": 1,
        "chain": (CHAT,),
        "parent_request_id": "agtools-forged",
    }
    return AgentClaims(**{**base, **over})


def _chat(world: World, endpoint: str, token: str) -> httpx.Response:
    body = {"messages": [{"role": "user", "content": "direct"}]}
    return httpx.post(
        f"{world.url}/serving-endpoints/{endpoint}/invocations",
        json=body,
        headers={"Authorization": f"Bearer {token}"},
        timeout=60,
    )


def test_agent_token_works_with_agent_tools_query_and_the_openai_client(
    world: World, people: People, tokens: AgentTokens
) -> None:
    from modelport.client import agent_tools
    from modelport.errors import InvalidState

    with pytest.raises(InvalidState, match="outside an agent's request"):
        agent_tools.query(LLM, {"messages": []})
    claims = _claims(allowed=(LLM,))
    context = AgentContext(world.url, tokens.mint(claims), 1, claims.parent_request_id, CHAT)
    reset = agent_tools.current_context.set(context)
    try:
        answer = agent_tools.query(LLM, {"messages": [{"role": "user", "content": "via query"}]})
        assert answer["choices"][0]["message"]["content"] == "You said: via query"
        with agent_tools.openai_client() as client:
            chat = client.chat.completions.create(
                model=LLM, messages=[{"role": "user", "content": "via openai"}]
            )
        assert chat.choices[0].message.content == "You said: via openai"
    finally:
        agent_tools.current_context.reset(reset)
    rows = _usage(world, 2, endpoint_name=LLM, parent_request_id=claims.parent_request_id)
    assert {r["requester"] for r in rows} == {"tools-carol"}


def test_an_agent_calling_itself_or_nesting_too_deep_is_refused(
    world: World, people: People, tokens: AgentTokens
) -> None:
    for chain, target in (((CHAT,), CHAT), ((RESPONSES, CHAT), RESPONSES)):
        resp = _chat(world, target, tokens.mint(_claims(chain=chain, depth=len(chain))))
        assert resp.status_code == 400, resp.text
        assert resp.json()["error_code"] == "INVALID_PARAMETER_VALUE"
        assert "calls itself" in resp.json()["message"] and f"'{target}'" in resp.json()["message"]
    deep = tuple(f"ag-hop-{i}" for i in range(6))
    resp = _chat(world, LLM, tokens.mint(_claims(chain=deep, depth=6)))
    assert resp.status_code == 400 and "--agent-max-depth" in resp.json()["message"], resp.text
    five = tuple(f"ag-hop-{i}" for i in range(5))
    assert _chat(world, LLM, tokens.mint(_claims(chain=five, depth=5))).status_code == 200


def test_expired_tampered_or_misused_tokens_are_refused(
    world: World, people: People, tokens: AgentTokens
) -> None:
    expired = tokens.mint(_claims(expiry_ms=int(time.time() * 1000) - 1))
    resp = _chat(world, LLM, expired)
    assert resp.status_code == 401 and "expired" in resp.json()["message"], resp.text
    good = tokens.mint(_claims())
    body, signature = good.split(".")
    widened = tokens.mint(_claims(principal="admin"))  # another payload under the old signature
    for bad in (f"{widened.split('.')[0]}.{signature}", f"{body}.{signature[::-1]}"):
        resp = _chat(world, LLM, bad)
        assert resp.status_code == 401 and resp.json()["error_code"] == "UNAUTHENTICATED", resp.text
    # a valid token on the control plane: refused
    resp = httpx.get(f"{world.url}{API}", headers={"Authorization": f"Bearer {good}"})
    assert resp.status_code == 401 and "only by the query routes" in resp.json()["message"], resp.text
    assert _chat(world, LLM, good).status_code == 200


def test_allowed_endpoints_and_run_as_a_service_principal(world: World, people: People) -> None:
    def entity(name: str, agent_config: dict[str, Any]) -> dict[str, Any]:
        return {
            "name": name,
            "entity_name": CHAT_MODEL,
            "entity_version": "1",
            "workload_size": "Small",
            "scale_to_zero_enabled": False,
            "agent_config": agent_config,
        }

    narrow = entity("narrow", {"allowed_endpoints": [RESPONSES, "ag-not-yet-created"]})
    as_bot = entity("as-bot", {"run_as": people.bot, "allowed_endpoints": [LLM]})
    routes = [
        {"served_entity_name": "narrow", "traffic_percentage": 100},
        {"served_entity_name": "as-bot", "traffic_percentage": 0},
    ]
    config = {"served_entities": [narrow, as_bot], "traffic_config": {"routes": routes}}
    # Only an admin (or the service principal itself) makes an agent act as a service principal.
    refused = people.bob.post(API, json={"name": SCOPED, "config": config})
    assert refused.status_code == 403, refused.text
    assert "agent_config.run_as" in refused.json()["message"]
    created = world.admin.post(API, json={"name": SCOPED, "config": config})
    assert created.status_code == 200, created.text
    try:
        got = wait_settled(world.admin, SCOPED, timeout=120, poll=0.2)
        assert got["state"]["ready"] == "READY", got
        stored = {e["name"]: e.get("agent_config") for e in got["config"]["served_entities"]}
        assert stored["as-bot"] == {"run_as": "tools-bot", "allowed_endpoints": [LLM]}
        _grant(world, SCOPED, user_name="tools-bob")
        _, resp = _ask(world, SCOPED, "scoped", people.bob, "/served-models/narrow")
        assert resp.status_code == 403, resp.text
        assert "may not call endpoint 'ag-llm'" in resp.json()["message"]
        # run as the service principal: bob may not query ag-llm himself, the agent may
        rid, resp = _ask(world, SCOPED, "as the bot", people.bob, "/served-models/as-bot")
        assert _content(resp) == "echo: as the bot | tool: You said: as the bot"
        (inner,) = _usage(world, 1, endpoint_name=LLM, parent_request_id=rid)
        assert inner["requester"] == "tools-bot"
        assert inner["usage_context"] == {"parent_request_id": rid, "agent_endpoint": SCOPED}
    finally:
        world.admin.delete(f"{API}/{SCOPED}")
