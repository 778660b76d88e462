"""The pipeline routes external served entities to their provider: invocations, the OpenAI
routes' checks, CAN_QUERY, streams and metrics (real SQLite store, scripted provider)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from modelport.entities.providers.base import Provider
from modelport.errors import InvalidParameterValue, MalformedRequest, PermissionDenied, ResourceDoesNotExist
from modelport.gateway.exchange import Answer, Exchange
from modelport.gateway.external import ExternalPlane
from modelport.gateway.pipeline import DataPlane
from modelport.metrics import Metrics
from modelport.spec.endpoint import CreateEndpoint
from modelport.spec.identity import Caller
from modelport.spec.llm import CHAT, EMBEDDINGS, chat_chunk, chat_response, usage
from tests.support.control import ADMIN, lead, settle, setup

BOB = Caller(id=2, name="bob", kind="user", groups=("users",), principal_ids=frozenset({2}))
HI = {"messages": [{"role": "user", "content": "hi"}]}


class Echo(Provider):
    provider = "openai"
    tasks = frozenset({CHAT})
    streaming = frozenset({CHAT})

    async def chat(self, body: dict[str, Any]) -> dict[str, Any]:
        text = body["messages"][-1]["content"]
        return chat_response(
            self.ctx.endpoint, [{"message": {"role": "assistant", "content": text}}], usage(1, 1)
        )

    async def chat_stream(self, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        for word in ("a", "b"):
            yield chat_chunk("c", self.ctx.endpoint, 1, {"content": word})


def external(name: str, task: str = CHAT) -> dict[str, Any]:
    return {
        "name": name,
        "external_model": {
            "provider": "openai",
            "name": "gpt",
            "task": task,
            "openai_config": {"openai_api_key_plaintext": "sk-x"},
        },
    }


def with_plane(tmp_path: Path, test: Callable[[DataPlane, Metrics], Awaitable[None]]) -> None:
    async def main() -> None:
        db, _, reconciler, service = setup(tmp_path)
        metrics = Metrics()
        ext = ExternalPlane(lambda scope, key: "sk-x", timeout=5.0, providers={"openai": Echo})
        plane = DataPlane(db, _NoReplicas(), metrics, timeout=5.0, external=ext)  # type: ignore[arg-type]
        reconciler.on_change = plane.invalidate
        service._on_change = plane.invalidate
        await lead(reconciler)
        try:
            for name, entity in (
                ("chat", external("gpt-a")),
                ("emb", external("e", EMBEDDINGS)),
                ("iris", {"name": "v1", "entity_name": "iris", "entity_version": "1"}),
            ):
                body = {"name": name, "config": {"served_entities": [entity]}}
                await asyncio.to_thread(service.create, ADMIN, CreateEndpoint.model_validate(body))
            await settle(reconciler)
            await test(plane, metrics)
        finally:
            await reconciler.stop()
            await plane.aclose()

    asyncio.run(main())


async def ask(plane: DataPlane, caller: Caller, name: str, body: bytes, served: str | None = None) -> Answer:
    return await plane.query(Exchange(caller, name, body, served=served))


async def ask_openai(plane: DataPlane, caller: Caller, task: str, body: bytes) -> Answer:
    return await plane.query(Exchange(caller, "", body, task=task))


class _NoReplicas:
    def replica_set(self, endpoint_id: str, version: int, entity: str) -> None:
        return None


def test_invocations_answer_from_the_provider(tmp_path: Path) -> None:
    async def test(plane: DataPlane, metrics: Metrics) -> None:
        answer = await ask(plane, ADMIN, "chat", orjson.dumps(HI))
        assert answer.served == "gpt-a" and answer.stream is None
        body = orjson.loads(answer.body)
        assert (body["model"], body["choices"][0]["message"]["content"]) == ("chat", "hi")
        pinned = await ask(plane, ADMIN, "chat", orjson.dumps(HI), served="gpt-a")
        assert pinned.served == "gpt-a"
        with pytest.raises(ResourceDoesNotExist, match="Served model 'gpt-b'"):
            await ask(plane, ADMIN, "chat", orjson.dumps(HI), served="gpt-b")
        sample = metrics.registry.get_sample_value
        labels = {"endpoint": "chat", "served_entity": "gpt-a"}
        assert sample("modelport_endpoint_requests_total", {**labels, "status": "200"}) == 2
        assert sample("modelport_endpoint_in_flight_requests", labels) == 0

    with_plane(tmp_path, test)


def test_streams_are_measured_when_they_end(tmp_path: Path) -> None:
    async def test(plane: DataPlane, metrics: Metrics) -> None:
        answer = await ask(plane, ADMIN, "chat", orjson.dumps({**HI, "stream": True}))
        assert answer.stream is not None and answer.body == b""
        labels = {"endpoint": "chat", "served_entity": "gpt-a"}
        assert metrics.registry.get_sample_value("modelport_endpoint_in_flight_requests", labels) == 1
        chunks = [c async for c in answer.stream]
        await answer.stream.aclose()
        assert [c["choices"][0]["delta"]["content"] for c in chunks] == ["a", "b"]
        assert metrics.registry.get_sample_value("modelport_endpoint_in_flight_requests", labels) == 0
        done = {**labels, "status": "200"}
        assert metrics.registry.get_sample_value("modelport_endpoint_requests_total", done) == 1

        left = await ask(plane, ADMIN, "chat", orjson.dumps({**HI, "stream": True}))
        assert left.stream is not None
        await left.stream.aclose()  # the client went away before reading
        gone = {**labels, "status": "499"}
        assert metrics.registry.get_sample_value("modelport_endpoint_requests_total", gone) == 1

    with_plane(tmp_path, test)


def test_can_query_is_needed_and_bodies_must_be_json_objects(tmp_path: Path) -> None:
    async def test(plane: DataPlane, metrics: Metrics) -> None:
        with pytest.raises(PermissionDenied, match="'bob' does not have CAN_QUERY"):
            await ask(plane, BOB, "chat", orjson.dumps(HI))
        with pytest.raises(PermissionDenied):
            await ask_openai(plane, BOB, CHAT, orjson.dumps({"model": "chat", **HI}))
        with pytest.raises(MalformedRequest):
            await ask(plane, ADMIN, "chat", b"[1, 2]")
        with pytest.raises(InvalidParameterValue, match="needs 'messages'"):
            await ask(plane, ADMIN, "chat", b'{"dataframe_records": []}')

    with_plane(tmp_path, test)


def test_openai_routes_check_model_and_task(tmp_path: Path) -> None:
    async def test(plane: DataPlane, metrics: Metrics) -> None:
        answer = await ask_openai(plane, ADMIN, CHAT, orjson.dumps({"model": "chat", **HI}))
        assert orjson.loads(answer.body)["model"] == "chat"
        with pytest.raises(InvalidParameterValue, match="Missing required field 'model'"):
            await ask_openai(plane, ADMIN, CHAT, orjson.dumps(HI))
        with pytest.raises(ResourceDoesNotExist, match="'nope' does not exist"):
            await ask_openai(plane, ADMIN, CHAT, orjson.dumps({"model": "nope", **HI}))
        with pytest.raises(InvalidParameterValue) as wrong:
            await ask_openai(plane, ADMIN, CHAT, orjson.dumps({"model": "emb", **HI}))
        assert wrong.value.message == (
            "Endpoint 'emb' serves llm/v1/embeddings: send this query to /serving-endpoints/embeddings."
        )
        with pytest.raises(InvalidParameterValue, match="serves a custom model"):
            await ask_openai(plane, ADMIN, CHAT, orjson.dumps({"model": "iris", **HI}))

    with_plane(tmp_path, test)


def test_a_query_right_after_the_first_deploy_is_answered_before_the_route_reloads(tmp_path: Path) -> None:
    """The reconciler commits a first config as serving, then reloads the routes: a client that
    saw the endpoint ready (GET reads the store) and queries in between is answered, not 503
    (3 in 100 new endpoints were refused under load before)."""

    async def main() -> None:
        db, _, reconciler, service = setup(tmp_path)
        ext = ExternalPlane(lambda scope, key: "sk-x", timeout=5.0, providers={"openai": Echo})
        plane = DataPlane(db, _NoReplicas(), Metrics(), timeout=5.0, external=ext)  # type: ignore[arg-type]
        service._on_change = plane.invalidate  # the create is seen: the route says "deploying"
        reconciler.on_change = lambda _endpoint_id: None  # the reload after the commit: not yet
        await lead(reconciler)
        try:
            body = {"name": "late", "config": {"served_entities": [external("gpt-a")]}}
            await asyncio.to_thread(service.create, ADMIN, CreateEndpoint.model_validate(body))
            await settle(reconciler)
            stored = await asyncio.to_thread(db.endpoints.get, "late")
            assert stored is not None and stored.active_version == 1  # the store says it serves
            assert plane.routes.get("late").version is None  # this process's route does not yet
            answer = await ask(plane, ADMIN, "late", orjson.dumps(HI))
            assert answer.served == "gpt-a"
            with pytest.raises(PermissionDenied):  # the re-read route still checks CAN_QUERY
                await ask(plane, BOB, "late", orjson.dumps(HI))
        finally:
            await reconciler.stop()
            await plane.aclose()

    asyncio.run(main())
