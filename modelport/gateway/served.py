"""Calling one served entity: its replicas (custom and foundation models), its provider, or the
online store (feature specs, answered in the gateway: ``gateway/feature_serving.py``).

:class:`ServedEntities` sends an :class:`~modelport.gateway.exchange.Exchange`'s request, as the
model is to receive it, to one served entity of the endpoint's serving config, and counts it in
the endpoint's metrics (requests by status, latency, in flight; a stream when it ends). Replica
frames are decoded in ``runtime/`` (:meth:`ReplicaSet.predict`, :meth:`ReplicaSet.open_stream`):
what comes back here is an answer's bytes, chunks, or one of our errors.

A model that looks its features up answers with a trailer: its keys that found no row are
counted in ``modelport_feature_lookup_missing_total{endpoint, table}``, and when the endpoint
has an inference table (the request then asks for them) the rows its raw model received become
the exchange's ``model_input``, which the record keeps as its ``request`` (``recording.py``).

An agent (an entity whose deployed config holds ``agent_task``: ``entities/agents.py``) answers
``/invocations`` with its interface's body (a 400 naming the field otherwise; ``"stream": true``
streams its events) and, for ``agent/v1/responses`` agents, the Responses route
(``ex.task`` = ``agent/v1/responses``: ``api/data/responses.py``); other routes are refused, as
is the Responses route to any other entity. Each agent request carries the
:class:`~modelport.runtime.protocol.AgentContext` that ``agent_context(ex, route, entity)``
gives (the agent token of its tools: ``gateway/agent_tokens.py``; None: no tools), and its
replica's trailer holds the request's MLflow trace, which becomes ``ex.trace`` (a stream's once
its last chunk has been read; a stream closed early has none).
"""

from __future__ import annotations

import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, Protocol

from modelport.entities.agents import AGENT_TASK_KEY, AGENT_TASKS, RESPONSES_AGENT, check_body
from modelport.errors import InvalidParameterValue, InvalidState, ModelportError, TemporarilyUnavailable
from modelport.gateway.exchange import Answer, Exchange
from modelport.gateway.external import ExternalPlane
from modelport.gateway.feature_serving import FeaturePlane
from modelport.gateway.routing import Route, ServedEntity
from modelport.gateway.streams import Measured
from modelport.metrics import Metrics
from modelport.runtime.protocol import AgentContext
from modelport.runtime.replica_set import ReplicaSet, SetClosed
from modelport.runtime.streams import ReplicaChunks
from modelport.spec.endpoint import FEATURE_SPEC_KEY
from modelport.spec.llm import CHAT, COMPLETIONS, OPENAI_ROUTES

__all__ = ["AgentContextOf", "ReplicaSource", "ServedEntities"]

#: ``agent_context(ex, route, entity)``: the context of an agent's request (or an awaitable of it).
AgentContextOf = Callable[[Exchange, Route, str], "AgentContext | Awaitable[AgentContext | None] | None"]


class ReplicaSource(Protocol):
    def replica_set(self, endpoint_id: str, version: int, entity: str) -> ReplicaSet | None: ...


class _Count:
    """What :meth:`ServedEntities._measured` counts: the status, unless a stream takes it over."""

    status = "200"
    stream: Measured | None = None


class ServedEntities:
    def __init__(
        self,
        replicas: ReplicaSource,
        external: ExternalPlane | None,
        metrics: Metrics,
        timeout: float,
        features: FeaturePlane | None = None,
        *,
        agent_context: AgentContextOf | None = None,
    ) -> None:
        self.replicas = replicas
        self._external = external
        self._features = features
        self._metrics = metrics
        self.timeout = timeout
        #: Gives each agent request its context (C: ``gateway/agent_tokens.py``); None: no tools.
        self.agent_context = agent_context

    def replica_set(self, route: Route, entity: str) -> ReplicaSet:
        assert route.version is not None
        found = self.replicas.replica_set(route.endpoint_id, route.version, entity)
        if found is None:
            raise TemporarilyUnavailable(
                f"Served entity '{entity}' of endpoint '{route.name}' is starting.", retry_after=2
            )
        return found

    async def call(self, ex: Exchange, route: Route, entity: ServedEntity) -> Answer:
        """The entity's answer to ``ex`` (``ex.task``: the OpenAI route's, None for /invocations)."""
        agent_task = entity.config.get(AGENT_TASK_KEY)
        if agent_task is not None:
            return await self._agent_answer(ex, route, entity.name, str(agent_task))
        if ex.task in AGENT_TASKS:
            serves = entity.external_task or (
                "a foundation model" if "foundation_model" in entity.config else "a custom model"
            )
            raise InvalidParameterValue(
                f"Endpoint '{route.name}' serves {serves}, not an {RESPONSES_AGENT} agent: "
                f"/serving-endpoints/responses answers {RESPONSES_AGENT} agents only."
            )
        if entity.external_task is not None:
            if ex.task is not None and entity.external_task != ex.task:
                raise _wrong_route(route.name, entity.external_task)
            return await self._external_answer(ex, route, entity)
        if FEATURE_SPEC_KEY in entity.config:
            return await self._feature_answer(ex, route, entity)
        if ex.task is not None and "foundation_model" not in entity.config:
            raise InvalidParameterValue(
                f"Endpoint '{route.name}' serves a custom model, which answers at "
                f"/serving-endpoints/{route.name}/invocations, not at {OPENAI_ROUTES[ex.task]}."
            )
        replica_set = self.replica_set(route, entity.name)
        engine = replica_set.spec.engine
        if engine is None and "foundation_model" in entity.config:
            # Another process runs the replicas: they say what they serve once reached.
            engine = await replica_set.engine(self.timeout)
        if engine is None:
            return await self._predict(ex, route, entity.name, replica_set)
        if (
            ex.task is not None
            and ex.task != engine.task
            and not (engine.task == CHAT and ex.task == COMPLETIONS)
        ):
            raise _wrong_route(route.name, engine.task)
        if ex.data.get("stream") is True:
            return await self._stream(ex, route, entity.name, replica_set)
        return await self._predict(ex, route, entity.name, replica_set)

    @asynccontextmanager
    async def _measured(self, route: Route, entity: str) -> AsyncIterator[_Count]:
        """Count one call in the endpoint's metrics (a stream counts itself when it ends)."""
        labels = (route.name, entity)
        self._metrics.endpoint_in_flight.labels(*labels).inc()
        count = _Count()
        started = time.perf_counter()
        try:
            yield count
        except ModelportError as exc:
            count.status = str(exc.status)
            raise
        except SetClosed:  # the config changed under this call: it is tried again
            count.status = "rerouted"
            raise
        except Exception:
            count.status = "500"
            raise
        finally:
            if count.stream is None:
                self._metrics.endpoint_in_flight.labels(*labels).dec()
                self._metrics.endpoint_requests.labels(*labels, count.status).inc()
                self._metrics.endpoint_latency.labels(*labels).observe(time.perf_counter() - started)

    def _stream_of(self, chunks: Any, route: Route, entity: str, count: _Count) -> Measured:
        count.stream = Measured(chunks, self._metrics, (route.name, entity), time.perf_counter())
        return count.stream

    async def _predict(self, ex: Exchange, route: Route, entity: str, replica_set: ReplicaSet) -> Answer:
        async with self._measured(route, entity):
            recorded = route.inference is not None
            body, trailer = await replica_set.predict_with_trailer(ex.sent, self.timeout, recorded=recorded)
            if trailer is not None:  # a model that looks its features up
                self._metrics.count_missing_rows(route.name, trailer.missing_rows)
                if trailer.request is not None:
                    ex.model_input = trailer.request
                    ex.model_input_truncated = trailer.request_truncated
            return Answer(body, entity)

    async def _stream(self, ex: Exchange, route: Route, entity: str, replica_set: ReplicaSet) -> Answer:
        async with self._measured(route, entity) as count:
            chunks = await replica_set.open_stream(ex.sent, self.timeout)
            return Answer(b"", entity, self._stream_of(chunks, route, entity, count))

    async def _agent_answer(self, ex: Exchange, route: Route, entity: str, task: str) -> Answer:
        if ex.task is not None and ex.task != task:
            also = " or /serving-endpoints/responses" if task == RESPONSES_AGENT else ""
            raise InvalidParameterValue(
                f"Endpoint '{route.name}' serves an {task} agent, which answers at "
                f"/serving-endpoints/{route.name}/invocations{also}."
            )
        check_body(task, ex.data)
        replica_set = self.replica_set(route, entity)
        context = await self._context(ex, route, entity)
        if ex.data.get("stream") is True:
            async with self._measured(route, entity) as count:
                chunks = await replica_set.open_agent_stream(ex.sent, context, self.timeout)
                traced = _Traced(chunks, ex)
                return Answer(b"", entity, self._stream_of(traced, route, entity, count))
        async with self._measured(route, entity):
            body, trailer = await replica_set.predict_agent(ex.sent, context, self.timeout)
            if trailer is not None and trailer.trace is not None:
                ex.trace = trailer.trace
            return Answer(body, entity)

    async def _context(self, ex: Exchange, route: Route, entity: str) -> AgentContext | None:
        if self.agent_context is None:
            return None
        context = self.agent_context(ex, route, entity)
        if inspect.isawaitable(context):
            context = await context
        return context

    async def _feature_answer(self, ex: Exchange, route: Route, entity: ServedEntity) -> Answer:
        if ex.task is not None:
            raise InvalidParameterValue(
                f"Endpoint '{route.name}' serves a feature spec, which answers at "
                f"/serving-endpoints/{route.name}/invocations, not at {OPENAI_ROUTES[ex.task]}."
            )
        if self._features is None:
            raise InvalidState(f"This server does not serve feature specs (served entity '{entity.name}').")
        async with self._measured(route, entity.name):
            return await self._features.answer(ex, route, entity)

    async def _external_answer(self, ex: Exchange, route: Route, entity: ServedEntity) -> Answer:
        if self._external is None:
            raise InvalidState(f"This server does not serve external models (served entity '{entity.name}').")
        assert route.version is not None
        async with self._measured(route, entity.name) as count:
            provider = self._external.provider(route.endpoint_id, route.name, route.version, entity.config)
            answer = await self._external.answer(provider, ex.data)
            if isinstance(answer, dict):
                return Answer.of(answer, entity.name)
            return Answer(b"", entity.name, self._stream_of(answer, route, entity.name, count))


class _Traced:
    """An agent's streamed answer that puts the trace its replica sent after the last chunk on
    the exchange (``ex.trace``), before the end reaches the wrappers above it (the record)."""

    def __init__(self, chunks: ReplicaChunks, ex: Exchange) -> None:
        self._chunks = chunks
        self._ex = ex

    def __aiter__(self) -> _Traced:
        return self

    async def __anext__(self) -> bytes:
        try:
            return await self._chunks.__anext__()
        except StopAsyncIteration:
            trailer = self._chunks.trailer
            if trailer is not None and trailer.trace is not None:
                self._ex.trace = trailer.trace
            raise

    async def aclose(self) -> None:
        await self._chunks.aclose()


def _wrong_route(endpoint: str, task: str) -> InvalidParameterValue:
    return InvalidParameterValue(
        f"Endpoint '{endpoint}' serves {task}: send this query to {OPENAI_ROUTES[task]}."
    )
