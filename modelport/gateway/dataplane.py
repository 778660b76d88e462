"""The query path: endpoint lookup, CAN_QUERY check, traffic split, replica or provider, answer.

Everything a query needs comes from an in-memory routing table (endpoint → serving
config version, traffic weights, grants); the table is rebuilt from the store only after
the control plane changed something (``invalidate``) or every ``refresh_seconds`` (for
changes made by another server process), never per request. Custom models are answered by
their replica sets, external models by their provider (``gateway/external.py``).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import orjson

from modelport.entities.providers.base import CHAT, COMPLETIONS, EMBEDDINGS
from modelport.errors import (
    InvalidParameterValue,
    InvalidState,
    MalformedRequest,
    ModelportError,
    PermissionDenied,
    ResourceDoesNotExist,
    TemporarilyUnavailable,
    error_from_body,
)
from modelport.gateway.external import Chunks, ExternalPlane
from modelport.gateway.guarding import guard_answer, guard_request, guard_stream, policies_of
from modelport.gateway.ratelimit import RateLimiter, endpoint_limits
from modelport.gateway.recording import Recorder, Trace, usage_of
from modelport.log_format import request_id_var
from modelport.metrics import Metrics
from modelport.runtime import protocol
from modelport.runtime.replica_set import ReplicaSet, SetClosed
from modelport.spec.identity import Caller
from modelport.spec.permissions import PermissionLevel, effective_level
from modelport.store import Database

__all__ = ["Answer", "DataPlane", "Route"]

log = logging.getLogger("modelport.gateway")

#: The system endpoint whose model embeds texts for ``valid_topics`` guardrails.
EMBEDDING_ENDPOINT = "modelport-all-minilm-l6-v2"


class ReplicaSource(Protocol):
    def replica_set(self, endpoint_id: str, version: int, entity: str) -> ReplicaSet | None: ...


@dataclass(frozen=True)
class Route:
    endpoint_id: str
    name: str
    version: int | None
    config_update: str
    entities: dict[str, dict[str, Any]]
    names: tuple[str, ...]
    weights: tuple[int, ...]
    grants: dict[int, int] = field(default_factory=dict)
    #: AI gateway: rate limits (ai_gateway and legacy ones, joined), their cache key, fallbacks.
    limits: tuple[dict[str, Any], ...] = ()
    fingerprint: Any = None
    fallback: bool = False
    gateway: dict[str, Any] = field(default_factory=dict)
    #: Usage tracking on; the inference table's config (ai_gateway's or the legacy auto-capture).
    usage: bool = False
    inference: dict[str, Any] | None = None


@dataclass(frozen=True)
class Answer:
    """A JSON ``body``, or for a streamed answer ``stream``: chunks to send as server-sent
    events, the first of which has arrived. Whoever takes a ``stream`` must ``aclose`` it."""

    body: bytes
    served: str
    stream: Chunks | None = None
    #: With fallbacks: every served entity tried, in order, with its status (the last answered).
    fallback_chain: tuple[dict[str, Any], ...] = ()
    #: Every guardrail decision taken on the request and the answer.
    guardrails: tuple[dict[str, Any], ...] = ()


#: The OpenAI-compatible route of each task (compat-api.md §C).
OPENAI_ROUTES = {
    CHAT: "/serving-endpoints/chat/completions",
    COMPLETIONS: "/serving-endpoints/completions",
    EMBEDDINGS: "/serving-endpoints/embeddings",
}


def _parse(body: bytes) -> dict[str, Any]:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise MalformedRequest(f"Request body is not valid JSON: {exc}.") from None
    if not isinstance(data, dict):
        raise MalformedRequest("Request body must be a JSON object.")
    return data


def _build_table(db: Database) -> dict[str, Route]:
    acls = db.endpoints.all_acls()
    table: dict[str, Route] = {}
    for endpoint in db.endpoints.list():
        cfg = db.endpoints.get_config(endpoint.id, endpoint.active_version)
        entities: dict[str, dict[str, Any]] = {}
        names: tuple[str, ...] = ()
        weights: tuple[int, ...] = ()
        if cfg is not None:
            entities = {e["name"]: e for e in cfg.body["served_entities"]}
            routes = [r for r in cfg.body["traffic_config"]["routes"] if r["traffic_percentage"] > 0]
            names = tuple(r["served_entity_name"] for r in routes)
            weights = tuple(int(r["traffic_percentage"]) for r in routes)
        gateway = endpoint.ai_gateway or {}
        inference = gateway.get("inference_table_config")
        if not (inference and inference.get("enabled")):
            inference = (cfg.body.get("auto_capture_config") if cfg is not None else None) or None
            if inference is not None and not inference.get("enabled"):
                inference = None
        table[endpoint.name] = Route(
            endpoint.id,
            endpoint.name,
            endpoint.active_version,
            endpoint.config_update,
            entities,
            names,
            weights,
            acls.get(endpoint.id, {}),
            limits=tuple(endpoint_limits(gateway, endpoint.rate_limits)),
            fingerprint=(endpoint.id, endpoint.updated_ms),
            fallback=bool((gateway.get("fallback_config") or {}).get("enabled")),
            gateway=gateway,
            usage=bool((gateway.get("usage_tracking_config") or {}).get("enabled")),
            inference=inference,
        )
    return table


class DataPlane:
    def __init__(
        self,
        db: Database,
        replicas: ReplicaSource,
        metrics: Metrics,
        *,
        timeout: float,
        refresh_seconds: float = 2.0,
        external: ExternalPlane | None = None,
        limiter: RateLimiter | None = None,
        recorder: Recorder | None = None,
    ) -> None:
        self._db = db
        self._recorder = recorder
        self._limiter = limiter or RateLimiter()
        self._replicas = replicas
        self._metrics = metrics
        self._timeout = timeout
        self._external = external
        self._refresh = refresh_seconds
        self._table: dict[str, Route] = {}
        self._built = 0.0
        # Bumped by every change; the table is current while it was built at the latest one.
        self._changes = itertools.count(2)  # next() is atomic: invalidate runs on any thread
        self._generation = 1
        self._built_generation = 0
        self._lock = asyncio.Lock()
        self._refreshing: asyncio.Task[None] | None = None

    async def aclose(self) -> None:
        """Close the providers' HTTP pool and the rate limiter's connections (at shutdown)."""
        if self._external is not None:
            await self._external.aclose()
        await self._limiter.aclose()

    async def _rebuild(self) -> None:
        """Under ``self._lock``: read the table from the store."""
        generation = self._generation
        self._table = await asyncio.to_thread(_build_table, self._db)
        self._built = time.monotonic()
        self._built_generation = generation
        if self._external is not None:
            serving = ((r.endpoint_id, r.version) for r in self._table.values() if r.version is not None)
            self._external.retain(serving)

    async def _refresh_in_background(self) -> None:
        try:
            async with self._lock:
                if time.monotonic() - self._built > self._refresh or self._changed():
                    await self._rebuild()
        except Exception:
            log.exception("routing table refresh failed")
        finally:
            self._refreshing = None

    def invalidate(self) -> None:
        """The control plane changed something: rebuild the table before the next query."""
        self._generation = next(self._changes)

    def _changed(self) -> bool:
        return self._built_generation != self._generation

    async def route(self, name: str) -> Route:
        # After a change made here, queries wait for the new table: the old one may name
        # replica sets that were just retired, or miss an endpoint that was just created.
        # The periodic refresh (for changes made by other server processes) runs in the
        # background while queries keep using the current table.
        if self._changed():
            async with self._lock:
                if self._changed():
                    await self._rebuild()
        elif time.monotonic() - self._built > self._refresh and self._refreshing is None:
            self._refreshing = asyncio.get_running_loop().create_task(self._refresh_in_background())
        found = self._table.get(name)
        if found is None:
            raise ResourceDoesNotExist(f"Endpoint with name '{name}' does not exist.")
        return found

    def _choose(self, route: Route, served: str | None) -> str:
        if served is not None:
            if served not in route.entities:
                raise ResourceDoesNotExist(
                    f"Served model '{served}' is not part of the serving config of endpoint '{route.name}' "
                    f"(served entities: {', '.join(sorted(route.entities))})."
                )
            return served
        if len(route.names) == 1:
            return route.names[0]
        return random.choices(route.names, weights=route.weights)[0]

    async def query(self, caller: Caller, name: str, body: bytes, served: str | None = None) -> Answer:
        """A query of ``/serving-endpoints/{name}/invocations`` (``served``: the per-entity route)."""
        return await self._gatewayed(caller, name, body, served, None, None)

    async def query_openai(self, caller: Caller, task: str, body: bytes) -> Answer:
        """A query of the OpenAI-compatible routes: ``model`` names the endpoint, whose
        served entities must serve ``task``."""
        data = _parse(body)
        name = data.get("model")
        if not isinstance(name, str) or not name:
            raise InvalidParameterValue(
                "Missing required field 'model': the name of the serving endpoint to query."
            )
        return await self._gatewayed(caller, name, body, None, task, data)

    async def _serving(self, caller: Caller, name: str) -> tuple[Route, int]:
        """The endpoint's route and serving config version, once CAN_QUERY is checked."""
        route = await self.route(name)
        level = effective_level(route.grants, caller)
        if level is None or level < PermissionLevel.CAN_QUERY:
            raise PermissionDenied(
                f"'{caller.name}' does not have CAN_QUERY permission on serving endpoint '{name}'."
            )
        if route.version is None:
            if route.config_update == "IN_PROGRESS":
                raise TemporarilyUnavailable(
                    f"Endpoint '{name}' is not ready yet: its first config is still being deployed.",
                    retry_after=5,
                )
            raise InvalidState(
                f"Endpoint '{name}' has no serving config (state: {route.config_update}); "
                "update its config first."
            )
        return route, route.version

    async def _gatewayed(
        self,
        caller: Caller,
        name: str,
        body: bytes,
        served: str | None,
        task: str | None,
        data: dict[str, Any] | None,
    ) -> Answer:
        """The AI gateway around one query: rate limits, then the served entity the traffic
        split picks, then (with ``fallback_config.enabled``) the endpoint's other entities in
        config order while the answer is a 429 or a 5xx."""
        route, _ = await self._serving(caller, name)
        if self._recorder is None or not (route.usage or route.inference is not None):
            return await self._steps(route, caller, body, served, task, data, [], [], None)
        trace = Trace(request_id_var.get() or uuid.uuid4().hex, name, caller.name, body)
        chain: list[dict[str, Any]] = []
        decisions: list[dict[str, Any]] = []
        try:
            answer = await self._steps(route, caller, body, served, task, data, chain, decisions, trace)
        except ModelportError as exc:
            trace.status, trace.error_code = exc.status, exc.error_code
            trace.response = orjson.dumps(exc.to_body())
            trace.fallback_chain, trace.guardrails = tuple(chain), tuple(decisions)
            trace.served_entity = chain[-1]["served_entity"] if chain else None
            self._record(route, trace)
            raise
        trace.served_entity = answer.served
        trace.fallback_chain, trace.guardrails = answer.fallback_chain, answer.guardrails
        if answer.stream is None:
            trace.response = answer.body
            trace.tokens = usage_of(answer.body)
            self._record(route, trace)
            return answer
        return replace(answer, stream=_RecordedStream(answer.stream, lambda t: self._record(route, t), trace))

    def _record(self, route: Route, trace: Trace) -> None:
        assert self._recorder is not None
        try:
            self._recorder.record(trace, usage=route.usage, inference=route.inference)
        except ModelportError:
            log.exception("query not recorded", extra={"endpoint": route.name})

    async def _steps(
        self,
        route: Route,
        caller: Caller,
        body: bytes,
        served: str | None,
        task: str | None,
        data: dict[str, Any] | None,
        chain: list[dict[str, Any]],
        decisions: list[dict[str, Any]],
        trace: Trace | None,
    ) -> Answer:
        name = route.name
        limits = route.limits
        admission = None
        if limits:
            admission = await self._limiter.admit(route.name, limits, caller, fingerprint=route.fingerprint)
        guard_in, guard_out = policies_of(route.gateway)
        if guard_in is not None:
            data = await guard_request(
                guard_in, data if data is not None else _parse(body), self._embed, decisions
            )
            body = orjson.dumps(data)
            # The tables keep the request as the model received it (masked), unless the
            # endpoint asked for the client's own bytes.
            if trace is not None and not (route.inference or {}).get("record_raw_request"):
                trace.request = body
        first = self._choose(route, served)
        order = [first]
        if route.fallback and served is None:
            order += [e for e in route.entities if e != first]
        for i, entity_name in enumerate(order):
            try:
                answer = await self._dispatch_rerouted(name, route, entity_name, body, task, data)
            except ModelportError as exc:
                chain.append(
                    {"served_entity": entity_name, "status_code": exc.status, "error_code": exc.error_code}
                )
                retryable = exc.status == 429 or exc.status >= 500
                if i == len(order) - 1 or not retryable:
                    raise
                log.info(
                    "falling back to the next served entity",
                    extra={"endpoint": name, "failed": entity_name, "status": exc.status},
                )
                continue
            if chain:
                chain.append({"served_entity": entity_name, "status_code": 200})
            if guard_out is not None:
                if answer.stream is None:
                    guarded_body = await guard_answer(guard_out, answer.body, self._embed, decisions)
                    answer = replace(answer, body=guarded_body)
                else:
                    guarded = await guard_stream(guard_out, answer.stream, self._embed, decisions)
                    answer = replace(answer, stream=guarded)
            answer = replace(answer, fallback_chain=tuple(chain), guardrails=tuple(decisions))
            if admission is not None and admission.token_keys:
                await self._count_tokens(admission, answer)
            return answer
        raise AssertionError("unreachable: the last entity's failure is raised")

    async def _embed(self, texts: list[str]) -> list[list[float]]:
        """Vectors from the system embedding endpoint (for ``valid_topics`` guardrails)."""
        route = self._table.get(EMBEDDING_ENDPOINT)
        replica_set = None
        if route is not None and route.version is not None and route.names:
            replica_set = self._replicas.replica_set(route.endpoint_id, route.version, route.names[0])
        if replica_set is None:
            raise TemporarilyUnavailable(
                f"The 'valid_topics' guardrail needs the embedding model of the system endpoint "
                f"'{EMBEDDING_ENDPOINT}', which does not serve on this server (install the llm extra "
                "and keep --system-endpoints on).",
                retry_after=5,
            )
        body = orjson.dumps({"input": texts, "encoding_format": "float"})
        kind, payload = await replica_set.submit(protocol.PREDICT, body, self._timeout)
        if kind != protocol.OK:
            raise error_from_body(400 if kind == protocol.CLIENT_ERROR else 500, orjson.loads(payload))
        return [item["embedding"] for item in orjson.loads(payload)["data"]]

    async def _count_tokens(self, admission: Any, answer: Answer) -> None:
        if answer.stream is not None:
            if isinstance(answer.stream, _Measured):
                answer.stream.on_usage = lambda tokens: self._credit(admission, tokens)
            return
        try:
            used = orjson.loads(answer.body).get("usage") or {}
        except (orjson.JSONDecodeError, AttributeError):
            return
        tokens = int(
            used.get("total_tokens") or (used.get("prompt_tokens", 0) + used.get("completion_tokens", 0))
        )
        await self._limiter.add_tokens(admission, tokens)

    def _credit(self, admission: Any, tokens: int) -> None:
        asyncio.get_running_loop().create_task(self._limiter.add_tokens(admission, tokens))

    async def _dispatch_rerouted(
        self,
        name: str,
        route: Route,
        entity_name: str,
        body: bytes,
        task: str | None,
        data: dict[str, Any] | None,
    ) -> Answer:
        try:
            return await self._dispatch(route, entity_name, body, task, data)
        except SetClosed:
            # The config changed under this request: the new table routes to the new replicas.
            self.invalidate()
            fresh = await self.route(name)
            if entity_name not in fresh.entities:
                entity_name = self._choose(fresh, None)
            return await self._dispatch(fresh, entity_name, body, task, data)

    async def _dispatch(
        self, route: Route, entity_name: str, body: bytes, task: str | None, data: dict[str, Any] | None
    ) -> Answer:
        """Send the query to one served entity (``task``: the OpenAI route's, None for /invocations)."""
        name = route.name
        version = route.version
        assert version is not None
        entity = route.entities[entity_name]
        external = entity.get("external_model")
        if external is not None:
            if task is not None and external["task"] != task:
                raise InvalidParameterValue(
                    f"Endpoint '{name}' serves {external['task']}: send this query to "
                    f"{OPENAI_ROUTES[external['task']]}."
                )
            return await self._external_query(route, version, entity_name, entity, data or _parse(body))
        if task is not None and "foundation_model" not in entity:
            raise InvalidParameterValue(
                f"Endpoint '{name}' serves a custom model, which answers at "
                f"/serving-endpoints/{name}/invocations, not at {OPENAI_ROUTES[task]}."
            )
        replica_set = self._replicas.replica_set(route.endpoint_id, version, entity_name)
        if replica_set is None:
            raise TemporarilyUnavailable(
                f"Served entity '{entity_name}' of endpoint '{name}' is starting.", retry_after=2
            )
        engine = replica_set.spec.engine
        if engine is not None:
            if task is not None and task != engine.task and not (engine.task == CHAT and task == COMPLETIONS):
                route_of = OPENAI_ROUTES[engine.task]
                raise InvalidParameterValue(
                    f"Endpoint '{name}' serves {engine.task}: send this query to {route_of}."
                )
            return await self._foundation_query(route, entity_name, replica_set, body, data or _parse(body))
        return await self._replica_answer(name, entity_name, replica_set, body)

    async def _foundation_query(
        self, route: Route, entity_name: str, replica_set: ReplicaSet, body: bytes, data: dict[str, Any]
    ) -> Answer:
        """A model served by an engine here: one answer, or a stream of chunks."""
        if data.get("stream") is not True:
            return await self._replica_answer(route.name, entity_name, replica_set, body)
        started = time.perf_counter()
        labels = (route.name, entity_name)
        self._metrics.endpoint_in_flight.labels(*labels).inc()
        status = "200"
        try:
            chunks = _ReplicaChunks(await replica_set.stream(body, self._timeout))
            try:
                await chunks.peek()  # an error before the first chunk is an error answer
            except BaseException:
                await chunks.aclose()
                raise
        except ModelportError as exc:
            status = str(exc.status)
            raise
        except SetClosed:
            status = "rerouted"
            raise
        finally:
            if status != "200":
                self._metrics.endpoint_in_flight.labels(*labels).dec()
                self._metrics.endpoint_requests.labels(*labels, status).inc()
        return Answer(b"", entity_name, _Measured(chunks, self._metrics, labels, started))

    async def _replica_answer(
        self, name: str, entity_name: str, replica_set: ReplicaSet, body: bytes
    ) -> Answer:
        started = time.perf_counter()
        labels = (name, entity_name)
        gauge = self._metrics.endpoint_in_flight.labels(*labels)
        gauge.inc()
        status = "200"
        try:
            kind, payload = await replica_set.submit(protocol.PREDICT, body, self._timeout)
            if kind == protocol.OK:
                return Answer(payload, entity_name)
            status = "400" if kind == protocol.CLIENT_ERROR else "500"
            raise error_from_body(int(status), orjson.loads(payload))
        except ModelportError as exc:
            status = str(exc.status)
            raise
        except SetClosed:
            status = "rerouted"
            raise
        finally:
            gauge.dec()
            self._metrics.endpoint_requests.labels(name, entity_name, status).inc()
            self._metrics.endpoint_latency.labels(*labels).observe(time.perf_counter() - started)

    async def _external_query(
        self, route: Route, version: int, entity_name: str, entity: dict[str, Any], body: dict[str, Any]
    ) -> Answer:
        if self._external is None:
            raise InvalidState(f"This server does not serve external models (served entity '{entity_name}').")
        started = time.perf_counter()
        labels = (route.name, entity_name)
        gauge = self._metrics.endpoint_in_flight.labels(*labels)
        gauge.inc()
        status = "200"
        streaming = False
        try:
            provider = self._external.provider(route.endpoint_id, route.name, version, entity)
            answer = await self._external.answer(provider, body)
            if isinstance(answer, dict):
                return Answer(orjson.dumps(answer), entity_name)
            streaming = True
            return Answer(b"", entity_name, _Measured(answer, self._metrics, labels, started))
        except ModelportError as exc:
            status = str(exc.status)
            raise
        except Exception:
            status = "500"
            raise
        finally:
            if not streaming:
                gauge.dec()
                self._metrics.endpoint_requests.labels(*labels, status).inc()
                self._metrics.endpoint_latency.labels(*labels).observe(time.perf_counter() - started)


class _Measured:
    """A streamed answer, counted in the endpoint's metrics when it ends: the latency is the
    whole stream's, and a stream closed before its end (the client left) counts as 499."""

    def __init__(self, chunks: Chunks, metrics: Metrics, labels: tuple[str, str], started: float) -> None:
        self._chunks = chunks
        self._metrics = metrics
        self._labels = labels
        self._started = started
        self._open = True
        #: Called once at the end with the answer's total tokens (token rate limits).
        self.on_usage: Callable[[int], None] | None = None
        self.tokens = 0

    def __aiter__(self) -> _Measured:
        return self

    def _note_usage(self, chunk: Any) -> None:
        if isinstance(chunk, bytes):
            if b'"usage"' not in chunk:
                return
            chunk = orjson.loads(chunk)
        used = chunk.get("usage") if isinstance(chunk, dict) else None
        if used:
            self.tokens = int(
                used.get("total_tokens") or (used.get("prompt_tokens", 0) + used.get("completion_tokens", 0))
            )

    async def __anext__(self) -> dict[str, Any]:
        try:
            chunk = await self._chunks.__anext__()
            if self.on_usage is not None:
                self._note_usage(chunk)
            return chunk
        except StopAsyncIteration:
            self._finish("200")
            raise
        except ModelportError as exc:
            self._finish(str(exc.status))
            raise
        except Exception:
            self._finish("500")
            raise

    def _finish(self, status: str) -> None:
        if self._open:
            self._open = False
            if self.on_usage is not None and self.tokens:
                self.on_usage(self.tokens)
            metrics, labels = self._metrics, self._labels
            metrics.endpoint_in_flight.labels(*labels).dec()
            metrics.endpoint_requests.labels(*labels, status).inc()
            metrics.endpoint_latency.labels(*labels).observe(time.perf_counter() - self._started)

    async def aclose(self) -> None:
        self._finish("499")
        await self._chunks.aclose()


class _ReplicaChunks:
    """A replica's STREAM frames as chunks (JSON bytes, sent as they are): CHUNK frames
    until END; an error frame is raised as the error it names."""

    def __init__(self, frames: Any) -> None:
        self._frames = frames
        self._peeked: bytes | None = None
        self._done = False

    async def peek(self) -> None:
        """Read the first chunk now, so that an error before any chunk is an error answer."""
        try:
            self._peeked = await self._next()
        except StopAsyncIteration:
            self._peeked = None

    async def _next(self) -> bytes:
        if self._done:
            raise StopAsyncIteration
        kind, payload = await self._frames.__anext__()
        if kind == protocol.CHUNK:
            return payload
        self._done = True
        if kind == protocol.END:
            raise StopAsyncIteration
        status = 400 if kind == protocol.CLIENT_ERROR else 500
        raise error_from_body(status, orjson.loads(payload))

    def __aiter__(self) -> _ReplicaChunks:
        return self

    async def __anext__(self) -> bytes:  # type: ignore[override]
        if self._peeked is not None:
            chunk, self._peeked = self._peeked, None
            return chunk
        return await self._next()

    async def aclose(self) -> None:
        await self._frames.aclose()


class _RecordedStream:
    """A streamed answer whose chunks are kept, to be recorded (as a JSON array) when the
    last one has been read; a stream closed early is recorded with status 499."""

    def __init__(self, chunks: Chunks, record: Callable[[Trace], None], trace: Trace) -> None:
        self._chunks = chunks
        self._record = record
        self._trace = trace
        self._seen: list[bytes] = []
        self._open = True

    def __aiter__(self) -> _RecordedStream:
        return self

    def _finish(self, status: int, error_code: str | None = None) -> None:
        if not self._open:
            return
        self._open = False
        trace = self._trace
        trace.status, trace.error_code = status, error_code
        trace.response = b"[" + b",".join(self._seen) + b"]"
        for chunk in reversed(self._seen):
            tokens = usage_of(chunk)
            if tokens is not None:
                trace.tokens = tokens
                break
        self._record(trace)

    async def __anext__(self) -> Any:
        try:
            chunk = await self._chunks.__anext__()
        except StopAsyncIteration:
            self._finish(200)
            raise
        except ModelportError as exc:
            self._finish(exc.status, exc.error_code)
            raise
        self._seen.append(chunk if isinstance(chunk, bytes) else orjson.dumps(chunk))
        return chunk

    async def aclose(self) -> None:
        self._finish(499, "CLIENT_CLOSED")
        await self._chunks.aclose()
