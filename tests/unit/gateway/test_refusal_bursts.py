"""Refusal bursts (``gateway/refusal_bursts.py``): when a burst opens and closes, what its event
says, with an injected clock; then the pipeline's hooks on a real DataPlane (SQLite store,
scripted provider): refused queries are counted, accepted ones are not."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from modelport.entities.providers.base import Provider
from modelport.errors import BadRequest, RequestLimitExceeded
from modelport.gateway.exchange import Exchange
from modelport.gateway.external import ExternalPlane
from modelport.gateway.pipeline import DataPlane
from modelport.gateway.ratelimit import RateLimiter
from modelport.gateway.refusal_bursts import (
    GUARDRAIL_BLOCKED,
    MAX_NAMES,
    RATE_LIMITED,
    RefusalBursts,
    RefusedLimit,
    blocked_guardrail,
)
from modelport.metrics import Metrics
from modelport.spec.endpoint import CreateEndpoint
from modelport.spec.identity import Caller
from modelport.spec.llm import CHAT, chat_response, usage
from modelport.store.events import KINDS
from tests.support.control import ADMIN, lead, settle, setup


def caller(name: str, kind: str = "user", groups: tuple[str, ...] = ("users",)) -> Caller:
    return Caller(
        id=abs(hash(name)) % 1000 + 10, name=name, kind=kind, groups=groups, principal_ids=frozenset()
    )


ALICE, BOB = caller("alice"), caller("bob")
USER_5 = RefusedLimit("user", "calls", 5)


class Clock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Emitted:
    """An ``OnEvent`` that keeps what it is given."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def __call__(self, endpoint_id: str, kind: str, message: str, **fields: Any) -> None:
        self.events.append({"endpoint_id": endpoint_id, "kind": kind, "message": message, **fields})


def bursts(clock: Clock, emitted: Emitted, **kw: Any) -> RefusalBursts:
    return RefusalBursts(emitted, quiet_seconds=30, max_open_seconds=60, clock=clock, process="h:1", **kw)


def test_the_kinds_are_event_kinds() -> None:
    assert RATE_LIMITED in KINDS and GUARDRAIL_BLOCKED in KINDS


def test_a_burst_closes_after_the_quiet_period_as_one_event() -> None:
    clock, out = Clock(), Emitted()
    b = bursts(clock, out)
    first = clock.now
    for i in range(42):
        b.rate_limited("e1", "ep", ALICE if i < 40 else BOB, USER_5)
        clock.now += 0.5
    last = clock.now - 0.5
    assert b.sweep() == 0 and out.events == []  # 0.5 s after the last: still open
    clock.now = last + 29.9
    assert b.sweep() == 0 and b.open_bursts == 1
    clock.now = last + 30
    assert b.sweep() == 1 and b.open_bursts == 0
    [event] = out.events
    assert (event["endpoint_id"], event["kind"]) == ("e1", RATE_LIMITED)
    d = event["details"]
    assert d["count"] == 42 and d["first"] == int(first * 1000) and d["last"] == int(last * 1000)
    assert d["by_principal"] == [{"name": "alice", "count": 40}, {"name": "bob", "count": 2}]
    assert d["by_limit"] == [{"name": "user limit 5 calls/min", "count": 42}]
    assert (d["principals"], d["others"], d["closed"], d["process"]) == (2, 0, "quiet", "h:1")
    assert (d["quiet_seconds"], d["max_open_seconds"]) == (30.0, 60.0)
    assert event["message"] == (
        "42 requests refused by user limit 5 calls/min between 22:13:20 and 22:13:40 UTC (alice 40, bob 2)"
    )


def test_a_long_storm_is_written_every_max_open_seconds() -> None:
    clock, out = Clock(), Emitted()
    b = bursts(clock, out)
    start = clock.now
    for _ in range(150):  # one refusal a second for 150 s: never quiet
        b.rate_limited("e1", "ep", ALICE, USER_5)
        b.sweep()
        clock.now += 1
    assert [e["details"]["count"] for e in out.events] == [60, 60]
    assert [e["details"]["closed"] for e in out.events] == ["max_open", "max_open"]
    assert out.events[1]["details"]["first"] == int((start + 60) * 1000)
    clock.now += 30
    b.sweep()
    assert [e["details"]["count"] for e in out.events] == [60, 60, 30]
    assert sum(e["details"]["count"] for e in out.events) == 150 == b.refusals


def test_a_refusal_after_the_quiet_period_opens_the_next_burst_without_a_sweep() -> None:
    clock, out = Clock(), Emitted()
    b = bursts(clock, out)
    b.rate_limited("e1", "ep", ALICE, USER_5)
    clock.now += 31
    b.rate_limited("e1", "ep", BOB, USER_5)  # the first burst is due: written now
    assert [e["details"]["count"] for e in out.events] == [1]
    assert out.events[0]["details"]["by_principal"] == [{"name": "alice", "count": 1}]
    assert out.events[0]["message"].startswith("1 request refused by user limit 5 calls/min at ")
    b.close()
    assert [e["details"]["by_principal"][0]["name"] for e in out.events] == ["alice", "bob"]


def test_bursts_are_kept_per_endpoint_and_kind() -> None:
    clock, out = Clock(), Emitted()
    b = bursts(clock, out)
    b.rate_limited("e1", "ep1", ALICE, USER_5)
    b.rate_limited("e2", "ep2", ALICE, RefusedLimit("user_group", "tokens", 100, "eng"))
    decisions = [
        {"side": "input", "name": "pii", "result": "allowed"},
        {"side": "input", "name": "invalid_keywords", "result": "blocked"},
    ]
    assert b.guardrail_blocked("e1", "ep1", BOB, decisions)
    assert b.open_bursts == 3
    clock.now += 30
    assert b.sweep() == 3
    got = {(e["endpoint_id"], e["kind"]): e["details"] for e in out.events}
    assert got[("e2", RATE_LIMITED)]["by_limit"] == [
        {"name": "user_group 'eng' limit 100 tokens/min", "count": 1}
    ]
    guard = got[("e1", GUARDRAIL_BLOCKED)]
    assert guard["by_guardrail"] == [{"name": "input invalid_keywords", "count": 1}]
    assert "by_limit" not in guard
    message = next(e["message"] for e in out.events if e["kind"] == GUARDRAIL_BLOCKED)
    assert message.startswith("1 request refused by the input invalid_keywords guardrail at ")
    assert message.endswith("(bob 1)")


def test_a_400_that_no_guardrail_decided_is_not_a_refusal() -> None:
    b = bursts(Clock(), Emitted())
    assert not b.guardrail_blocked("e1", "ep", ALICE, [{"side": "input", "name": "pii", "result": "masked"}])
    assert b.open_bursts == 0 and b.refusals == 0
    assert blocked_guardrail([]) is None
    assert blocked_guardrail([{"side": "output", "name": "safety", "result": "blocked"}]) == (
        "output",
        "safety",
    )


def test_the_breakdowns_keep_the_top_five_and_count_the_rest() -> None:
    clock, out = Clock(), Emitted()
    b = bursts(clock, out)
    for i in range(8):
        for _ in range(8 - i):
            b.rate_limited("e1", "ep", caller(f"u{i}"), USER_5)
    b.close()
    d = out.events[0]["details"]
    assert [p["name"] for p in d["by_principal"]] == ["u0", "u1", "u2", "u3", "u4"]
    assert d["others"] == 3 + 2 + 1 and d["principals"] == 8 and d["count"] == 36
    assert out.events[0]["message"].endswith("(u0 8, u1 7, u2 6, u3 5, u4 4, others 6)")


def test_distinct_names_are_bounded() -> None:
    clock, out = Clock(), Emitted()
    b = bursts(clock, out)
    for i in range(MAX_NAMES + 50):
        b.rate_limited("e1", "ep", caller(f"u{i}"), USER_5)
    b.close()
    d = out.events[0]["details"]
    assert d["count"] == MAX_NAMES + 50 and d["principals"] == MAX_NAMES
    assert sum(p["count"] for p in d["by_principal"]) + d["others"] == MAX_NAMES + 50


def test_close_writes_the_open_bursts_and_counts_no_more() -> None:
    clock, out = Clock(), Emitted()
    b = bursts(clock, out)
    b.rate_limited("e1", "ep", ALICE, USER_5)
    b.rate_limited("e1", "ep", ALICE, USER_5)
    assert b.close() == 1
    assert out.events[0]["details"]["closed"] == "shutdown" and out.events[0]["details"]["count"] == 2
    b.rate_limited("e1", "ep", ALICE, USER_5)
    assert b.open_bursts == 0 and len(out.events) == 1


def test_a_failing_sink_never_reaches_the_query() -> None:
    def broken(*_args: Any, **_kwargs: Any) -> None:
        raise RuntimeError("store down")

    clock = Clock()
    b = RefusalBursts(broken, quiet_seconds=1, max_open_seconds=2, clock=clock)
    b.rate_limited("e1", "ep", ALICE, USER_5)
    clock.now += 5
    b.rate_limited("e1", "ep", ALICE, USER_5)  # closes the first (the sink raises), opens the next
    assert b.emitted == 0 and b.open_bursts == 1


def test_settings_must_be_positive() -> None:
    with pytest.raises(ValueError):
        RefusalBursts(Emitted(), quiet_seconds=0)


def test_the_loop_closes_bursts_on_its_timers() -> None:
    """Attached to a running loop, a burst closes by itself once quiet, and a refusal while it is
    open moves its end (the timer waits again)."""
    out = Emitted()

    async def main() -> None:
        b = RefusalBursts(out, quiet_seconds=0.2, max_open_seconds=5)
        b.attach(asyncio.get_running_loop())
        b.rate_limited("e1", "ep", ALICE, USER_5)
        await asyncio.sleep(0.12)
        b.rate_limited("e1", "ep", BOB, USER_5)
        await asyncio.sleep(0.12)  # 0.24 s after the first: its first end passed, not the new one
        assert out.events == []
        await asyncio.sleep(0.25)
        assert [e["details"]["count"] for e in out.events] == [2]
        assert b.open_bursts == 0

    asyncio.run(main())


def test_the_rate_limiter_names_the_limit_that_refused() -> None:
    async def main() -> None:
        limiter = RateLimiter()
        limits = [{"key": "user_group", "principal": "eng", "calls": 1, "renewal_period": "minute"}]
        eng = caller("carol", groups=("users", "eng"))
        await limiter.admit("ep", limits, eng, now=120.0)
        with pytest.raises(RequestLimitExceeded) as refused:
            await limiter.admit("ep", limits, eng, now=121.0)
        assert isinstance(refused.value, RequestLimitExceeded) and refused.value.status == 429
        assert refused.value.limit == RefusedLimit("user_group", "calls", 1, "eng")

    asyncio.run(main())


# ---- the pipeline's hooks ----------------------------------------------------------------------


class Echo(Provider):
    provider = "openai"
    tasks = frozenset({CHAT})

    async def chat(self, body: dict[str, Any]) -> dict[str, Any]:
        text = body["messages"][-1]["content"]
        return chat_response(
            self.ctx.endpoint, [{"message": {"role": "assistant", "content": text}}], usage(1, 1)
        )

    async def chat_stream(self, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        raise NotImplementedError
        yield {}


class _NoReplicas:
    def replica_set(self, endpoint_id: str, version: int, entity: str) -> None:
        return None


def _ask(text: str) -> bytes:
    return orjson.dumps({"messages": [{"role": "user", "content": text}]})


def test_the_pipeline_counts_refusals_and_nothing_else(tmp_path: Path) -> None:
    out = Emitted()

    async def main() -> None:
        db, _, reconciler, service = setup(tmp_path)
        ext = ExternalPlane(lambda scope, key: "sk-x", timeout=5.0, providers={"openai": Echo})
        clock = Clock()
        refusals = RefusalBursts(out, quiet_seconds=30, max_open_seconds=60, clock=clock)
        plane = DataPlane(db, _NoReplicas(), Metrics(), timeout=5.0, external=ext, refusals=refusals)  # type: ignore[arg-type]
        reconciler.on_change = plane.invalidate
        service._on_change = plane.invalidate
        await lead(reconciler)
        try:
            entity = {
                "name": "gpt-a",
                "external_model": {
                    "provider": "openai",
                    "name": "gpt",
                    "task": CHAT,
                    "openai_config": {"openai_api_key_plaintext": "sk-x"},
                },
            }
            body = {
                "name": "guarded",
                "config": {"served_entities": [entity]},
                "ai_gateway": {
                    "rate_limits": [{"key": "endpoint", "calls": 4, "renewal_period": "minute"}],
                    "guardrails": {
                        "input": {"invalid_keywords": ["forbidden"]},
                        "output": {"invalid_keywords": ["secret"]},
                    },
                },
            }
            await asyncio.to_thread(service.create, ADMIN, CreateEndpoint.model_validate(body))
            await settle(reconciler)
            endpoint_id = plane.routes.get("guarded").endpoint_id
            if time.time() % 60 > 55:  # the limiter's windows are clock minutes: stay in one
                await asyncio.sleep(60 - time.time() % 60 + 0.1)
            await plane.query(Exchange(ADMIN, "guarded", _ask("hello")))  # accepted: nothing counted
            assert refusals.refusals == 0 and refusals.open_bursts == 0
            with pytest.raises(BadRequest, match="input guardrail"):
                await plane.query(Exchange(ADMIN, "guarded", _ask("a forbidden word")))
            with pytest.raises(BadRequest, match="output guardrail"):
                await plane.query(Exchange(ADMIN, "guarded", _ask("tell the secret")))
            with pytest.raises(BadRequest):  # not JSON: a bad request, not a guardrail's refusal
                await plane.query(Exchange(ADMIN, "guarded", b"{not json"))
            for _ in range(4):
                with pytest.raises(RequestLimitExceeded):
                    await plane.query(Exchange(ADMIN, "guarded", _ask("hello")))
            assert refusals.refusals == 6 and refusals.open_bursts == 2
            clock.now += 30
            refusals.sweep()
        finally:
            await reconciler.stop()
            await plane.aclose()
        got = {e["kind"]: e for e in out.events}
        assert set(got) == {RATE_LIMITED, GUARDRAIL_BLOCKED}
        assert all(e["endpoint_id"] == endpoint_id for e in out.events)
        assert got[RATE_LIMITED]["details"]["count"] == 4
        assert got[RATE_LIMITED]["details"]["by_limit"] == [
            {"name": "endpoint limit 4 calls/min", "count": 4}
        ]
        assert got[RATE_LIMITED]["details"]["by_principal"] == [{"name": ADMIN.name, "count": 4}]
        assert got[GUARDRAIL_BLOCKED]["details"]["by_guardrail"] == [
            {"name": "input invalid_keywords", "count": 1},
            {"name": "output invalid_keywords", "count": 1},
        ]

    asyncio.run(main())
