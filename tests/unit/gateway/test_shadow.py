"""Shadow copies (``gateway/shadow.py``): the share drawn, the bound, failures counted and never
raised; and in the data plane: copies of live queries only, observers, fallbacks that skip the
shadow, ``call_entity`` (real SQLite store, scripted providers: no sockets)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from modelport.entities.providers.base import Provider
from modelport.errors import MalformedRequest, ResourceDoesNotExist, TemporarilyUnavailable
from modelport.gateway.exchange import Answer, Exchange
from modelport.gateway.external import ExternalPlane
from modelport.gateway.pipeline import DataPlane
from modelport.gateway.routing import Route, ServedEntity
from modelport.gateway.shadow import Shadows
from modelport.metrics import Metrics
from modelport.spec.endpoint import CreateEndpoint
from modelport.spec.llm import CHAT, chat_chunk, chat_response, usage
from tests.support.control import ADMIN, lead, settle, setup

HI = {"messages": [{"role": "user", "content": "hi"}]}


def route(shadow: tuple[str, float] | None = ("v4", 0.25)) -> Route:
    entities = {n: ServedEntity(n, {"name": n}) for n in ("v1", "v4")}
    return Route("e1", "ep", 1, "NOT_UPDATING", entities, ("v1",), (100,), shadow=shadow)


def sample(metrics: Metrics, outcome: str, entity: str = "v4") -> float:
    labels = {"endpoint": "ep", "served_entity": entity, "outcome": outcome}
    return metrics.registry.get_sample_value("modelport_shadow_requests_total", labels) or 0.0


class Calls:
    """A served entity that answers at once, or when ``gate`` opens; every exchange kept."""

    def __init__(self, gate: asyncio.Event | None = None) -> None:
        self.gate = gate
        self.seen: list[tuple[Exchange, str]] = []

    async def __call__(self, ex: Exchange, route: Route, entity: str) -> Answer:
        self.seen.append((ex, entity))
        if self.gate is not None:
            await self.gate.wait()
        return Answer(b'{"predictions": [1]}', entity)


async def drain(shadows: Shadows) -> None:
    for _ in range(100):
        if shadows.in_flight == 0:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{shadows.in_flight} copies still in flight")


def test_a_quarter_of_live_queries_is_copied_as_the_model_received_them() -> None:
    async def main() -> None:
        metrics, calls = Metrics(), Calls()
        shadows = Shadows(calls, metrics, timeout=5.0, max_in_flight=4000)
        random.seed(7)
        lives = [Exchange(ADMIN, "ep", b'{"x": %d}' % i) for i in range(4000)]
        for ex in lives:
            ex.sent = ex.body + b" "  # as a guardrail left it
            shadows.after(ex, route())
        await drain(shadows)
        assert 900 <= len(calls.seen) <= 1100
        by_id = {ex.request_id: ex for ex in lives}
        for copy, entity in calls.seen:
            live = by_id[copy.shadow_of or ""]
            assert (entity, copy.body, copy.caller) == ("v4", live.sent, ADMIN)
            assert copy.request_id != live.request_id and len(copy.request_id) == 32
            assert copy.served is None and copy.replay_of is None
        assert sample(metrics, "sent") == len(calls.seen) and sample(metrics, "dropped") == 0

    asyncio.run(main())


@pytest.mark.parametrize(
    "change",
    [{"served": "v1"}, {"shadow_of": "abc"}, {"replay_of": "abc"}, {"route": None}],
)
def test_only_live_queries_of_a_route_with_a_shadow_are_copied(change: dict[str, Any]) -> None:
    async def main() -> None:
        calls = Calls()
        shadows = Shadows(calls, Metrics(), timeout=5.0)
        the_route = route(None) if "route" in change else route(("v4", 1.0))
        ex = Exchange(ADMIN, "ep", b"{}", **{k: v for k, v in change.items() if k != "route"})
        assert shadows.after(ex, the_route) is False
        await asyncio.sleep(0)
        assert calls.seen == []
        assert shadows.after(Exchange(ADMIN, "ep", b"{}"), route(("v4", 1.0))) is True

    asyncio.run(main())


def test_copies_beyond_the_bound_are_dropped_and_counted() -> None:
    async def main() -> None:
        metrics, gate = Metrics(), asyncio.Event()
        calls = Calls(gate)
        shadows = Shadows(calls, metrics, timeout=5.0, max_in_flight=3)
        sent = [shadows.copy(Exchange(ADMIN, "ep", b"{}"), route(), "v4") for _ in range(5)]
        assert sent == [True, True, True, False, False]
        assert (shadows.in_flight, shadows.dropped, sample(metrics, "dropped")) == (3, 2, 2)
        gate.set()
        await drain(shadows)
        assert sample(metrics, "sent") == 3
        assert shadows.copy(Exchange(ADMIN, "ep", b"{}"), route(), "v4") is True  # room again
        await drain(shadows)
        none = Shadows(calls, metrics, timeout=5.0, max_in_flight=0)
        assert none.after(Exchange(ADMIN, "ep", b"{}"), route(("v4", 1.0))) is False

    asyncio.run(main())


def test_failures_and_hangs_are_counted_reported_and_never_raised() -> None:
    async def hang(ex: Exchange, route: Route, entity: str) -> Answer:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def busy(ex: Exchange, route: Route, entity: str) -> Answer:
        raise TemporarilyUnavailable("replica crashed", retry_after=1)

    async def broken(ex: Exchange, route: Route, entity: str) -> Answer:
        raise RuntimeError("bug")

    async def main() -> None:
        metrics = Metrics()
        done: list[tuple[int, bytes | None, float]] = []

        def on_done(status: int, body: bytes | None, latency_ms: float) -> None:
            done.append((status, body, latency_ms))
            raise ValueError("a callback's own error is logged")

        for call in (hang, busy, broken):
            shadows = Shadows(call, metrics, timeout=0.05)
            assert shadows.copy(Exchange(ADMIN, "ep", b"{}"), route(), "v4", on_done) is True
            await drain(shadows)
        assert [(s, b) for s, b, _ in done] == [(504, None), (503, None), (500, None)]
        assert done[0][2] >= 50
        assert sample(metrics, "error") == 3 and sample(metrics, "sent") == 0

        answered = Shadows(Calls(), metrics, timeout=1.0)
        answered.copy(Exchange(ADMIN, "ep", b"{}"), route(), "v4", lambda *a: done.append(a))
        await drain(answered)
        assert done[-1][:2] == (200, b'{"predictions": [1]}')

    asyncio.run(main())


def test_aclose_cancels_the_copies_in_flight() -> None:
    async def main() -> None:
        calls = Calls(asyncio.Event())
        shadows = Shadows(calls, Metrics(), timeout=60.0)
        for _ in range(3):
            shadows.copy(Exchange(ADMIN, "ep", b"{}"), route(), "v4")
        await asyncio.sleep(0)
        await shadows.aclose()
        assert shadows.in_flight == 0 and len(calls.seen) == 3

    asyncio.run(main())


# ---- in the data plane --------------------------------------------------------------------------


class Named(Provider):
    """Answers with its model's name; the model ``down`` answers 503."""

    provider = "openai"
    tasks = frozenset({CHAT})
    streaming = frozenset({CHAT})
    asked: list[str] = []

    async def chat(self, body: dict[str, Any]) -> dict[str, Any]:
        Named.asked.append(self.ctx.model)
        if self.ctx.model == "down":
            raise TemporarilyUnavailable("down")
        message = {"role": "assistant", "content": self.ctx.model}
        return chat_response(self.ctx.endpoint, [{"message": message}], usage(1, 1))

    async def chat_stream(self, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        Named.asked.append(self.ctx.model)
        yield chat_chunk("c", self.ctx.endpoint, 1, {"content": self.ctx.model})


def external(name: str, model: str) -> dict[str, Any]:
    config = {"openai_api_key_plaintext": "sk-x"}
    return {
        "name": name,
        "external_model": {"provider": "openai", "name": model, "task": CHAT, "openai_config": config},
    }


def with_plane(
    tmp_path: Path, config: dict[str, Any], test: Callable[[DataPlane, Metrics], Awaitable[None]]
) -> None:
    async def main() -> None:
        db, _, reconciler, service = setup(tmp_path)
        metrics = Metrics()
        ext = ExternalPlane(lambda scope, key: "sk-x", timeout=5.0, providers={"openai": Named})
        plane = DataPlane(db, None, metrics, timeout=5.0, external=ext)  # type: ignore[arg-type]
        reconciler.on_change = plane.invalidate
        service._on_change = plane.invalidate
        await lead(reconciler)
        Named.asked = []
        try:
            await asyncio.to_thread(service.create, ADMIN, CreateEndpoint.model_validate(config))
            await settle(reconciler)
            await test(plane, metrics)
        finally:
            await reconciler.stop()
            await plane.aclose()

    asyncio.run(main())


SHADOWED = {
    "name": "ep",
    "config": {
        "served_entities": [external("live", "live"), external("v4", "shadow")],
        "traffic_config": {
            "routes": [
                {"served_entity_name": "live", "traffic_percentage": 100},
                {"served_entity_name": "v4", "traffic_percentage": 0},
            ]
        },
        "shadow": {"served_entity_name": "v4", "percentage": 100},
    },
}


def ask(plane: DataPlane, body: dict[str, Any], served: str | None = None) -> Awaitable[Answer]:
    return plane.query(Exchange(ADMIN, "ep", orjson.dumps(body), served=served))


def test_live_answers_are_copied_to_the_shadow_and_observed(tmp_path: Path) -> None:
    async def test(plane: DataPlane, metrics: Metrics) -> None:
        seen: list[tuple[str | None, int, bool, str | None]] = []

        def observer(
            ex: Exchange, route: Route, status: int, latency_ms: float, answer: Answer | None
        ) -> None:
            assert route.name == "ep" and latency_ms >= 0
            seen.append((ex.entity, status, answer is not None, ex.served))

        def failing(*args: Any) -> None:
            raise RuntimeError("an observer's error is logged, never raised")

        plane.observers += [failing, observer]
        answer = await ask(plane, HI)
        assert orjson.loads(answer.body)["choices"][0]["message"]["content"] == "live"
        await drain(plane.shadows)
        assert Named.asked == ["live", "shadow"] and sample(metrics, "sent") == 1
        assert seen == [("live", 200, True, None)]

        await ask(plane, HI, served="v4")  # a named entity's query: no copy
        stream = await ask(plane, {**HI, "stream": True})  # a stream: no copy, observed at its end
        assert stream.stream is not None
        assert len(seen) == 2
        assert [c async for c in stream.stream]
        await stream.stream.aclose()
        with pytest.raises(MalformedRequest):
            await plane.query(Exchange(ADMIN, "ep", b"[1]"))
        await drain(plane.shadows)
        assert Named.asked == ["live", "shadow", "shadow", "live"]
        assert seen[1:] == [("v4", 200, True, "v4"), ("live", 200, True, None), ("live", 400, False, None)]

        replay = Exchange(ADMIN, "ep", orjson.dumps(HI), replay_of="r1")
        answer = await plane.call_entity(replay, "v4")
        assert (answer.served, replay.entity, len(seen)) == ("v4", "v4", 4)  # not observed
        with pytest.raises(ResourceDoesNotExist, match="'nope' is not part"):
            await plane.call_entity(Exchange(ADMIN, "ep", orjson.dumps(HI)), "nope")

    with_plane(tmp_path, SHADOWED, test)


def test_fallbacks_never_go_to_the_shadow(tmp_path: Path) -> None:
    config = {
        "name": "ep",
        "config": {
            "served_entities": [external("live", "down"), external("v4", "shadow"), external("b", "backup")],
            "traffic_config": {
                "routes": [
                    {"served_entity_name": "live", "traffic_percentage": 100},
                    {"served_entity_name": "v4", "traffic_percentage": 0},
                    {"served_entity_name": "b", "traffic_percentage": 0},
                ]
            },
            "shadow": {"served_entity_name": "v4", "percentage": 100},
        },
        "ai_gateway": {"fallback_config": {"enabled": True}},
    }

    async def test(plane: DataPlane, metrics: Metrics) -> None:
        answer = await ask(plane, HI)
        assert answer.served == "b"
        await drain(plane.shadows)
        assert Named.asked == ["down", "backup", "shadow"]

    with_plane(tmp_path, config, test)
