"""The query path: one linear pipeline over an :class:`~modelport.gateway.exchange.Exchange`.

    route (CAN_QUERY) → rate limits → input guardrails → response cache → served entity
      (→ fallbacks) → output guardrails → cache store → token counts
      → usage + inference-table record → answer → (``config.shadow``) a copy to the shadow
      entity, in the background (``shadow.py``) → the observers (``observers.py``)

A cache hit (``caching.py``) skips the served entity only: it is admitted by the rate limits
(tokens are not counted), checked by the output guardrails and recorded like any answer.

Each step is a call into a module of its own: ``routing.py`` (the compiled routing table, never
rebuilt whole on this path), ``ratelimit.py``, ``guarding.py``, ``served.py`` (replicas and
providers, with the endpoint metrics), ``recording.py`` and ``streams.py``. Authentication
happens before (``api/``), so a :class:`DataPlane` is given a caller. The request is parsed at
most once (the exchange keeps it) and only when a step needs its fields; an answer is decoded at
most once (guardrails, token counts and the record share it).

With ``fallback_config.enabled``, a served entity that answers 429 or 5xx is followed by the
endpoint's other entities in config order (not for ``/served-models/{name}/invocations``); the
exchange's ``chain`` says who was tried (never the ``config.shadow`` entity, which answers no
live query).

:meth:`DataPlane.call_entity` sends a request to one served entity and nothing else (replays).

A query refused by a rate limit (429) or blocked by a guardrail (400) is counted, from the
``except`` of that step only, into the refusal bursts of the endpoint event log
(``refusal_bursts.py``): an accepted query pays nothing for it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import replace

import orjson

from modelport.errors import (
    BadRequest,
    InvalidParameterValue,
    ModelportError,
    RequestLimitExceeded,
    ResourceDoesNotExist,
    TemporarilyUnavailable,
)
from modelport.gateway.cache_store import CacheStore, LocalCache
from modelport.gateway.caching import Lookup, ResponseCache
from modelport.gateway.exchange import Answer, Exchange
from modelport.gateway.external import ExternalPlane
from modelport.gateway.feature_serving import FeaturePlane
from modelport.gateway.guarding import guard_answer, guard_request, guard_stream
from modelport.gateway.observers import Observed, Observer, notify
from modelport.gateway.ratelimit import Admission, RateLimiter
from modelport.gateway.recording import Recorder
from modelport.gateway.refusal_bursts import RefusalBursts, RefusedLimit
from modelport.gateway.routing import Route, RoutingTable
from modelport.gateway.served import AgentContextOf, ReplicaSource, ServedEntities
from modelport.gateway.shadow import Shadows
from modelport.gateway.streams import Measured, Recorded
from modelport.metrics import Metrics
from modelport.runtime.replica_set import SetClosed
from modelport.store import Database

__all__ = ["EMBEDDING_ENDPOINT", "DataPlane"]

log = logging.getLogger("modelport.gateway")

#: The system endpoint whose model embeds texts for ``valid_topics`` guardrails.
EMBEDDING_ENDPOINT = "modelport-all-minilm-l6-v2"


class DataPlane:
    """Answers queries. Holds the routing table (``routes``) and the per-query collaborators;
    every method runs on the event loop and never reads the store there."""

    def __init__(
        self,
        db: Database,
        replicas: ReplicaSource,
        metrics: Metrics,
        *,
        timeout: float,
        external: ExternalPlane | None = None,
        limiter: RateLimiter | None = None,
        recorder: Recorder | None = None,
        cache: CacheStore | None = None,
        features: FeaturePlane | None = None,
        shadow_max_in_flight: int = 64,
        agent_context: AgentContextOf | None = None,
        refusals: RefusalBursts | None = None,
    ) -> None:
        """``features``: answers the feature-spec entities (None: they are refused);
        ``shadow_max_in_flight``: the shadow copies in flight at once (``gateway/shadow.py``);
        ``agent_context``: the context an agent's request carries for its tools
        (``gateway/served.py``; None: agents get none); ``refusals``: counts rate-limit and
        guardrail refusals into bursts of the event log (``refusal_bursts.py``; None: not logged)."""
        self._external = external
        self._features = features
        self.cache = ResponseCache(cache or LocalCache(64 * 1024 * 1024), metrics, self.embed)
        self.routes = RoutingTable(db, on_serving=self._retain, on_routes=self.cache.retain)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._served = ServedEntities(
            replicas, external, metrics, timeout, features, agent_context=agent_context
        )
        self._limiter = limiter or RateLimiter()
        self._recorder = recorder
        self._reloading: dict[str, asyncio.Task[None]] = {}  # endpoint id -> its route's reload
        #: Shadow copies of live queries (``config.shadow``), and copies asked for by a canary.
        self.shadows = Shadows(
            self._direct, metrics, timeout=timeout, max_in_flight=shadow_max_in_flight, recorder=recorder
        )
        #: Told how each live query ended (``gateway/observers.py``); append only before serving.
        self.observers: list[Observer] = []
        #: Rate-limit and guardrail refusals, summarised in bursts in the endpoint event log.
        self.refusals = refusals

    # -- life cycle -------------------------------------------------------------------------------

    def _retain(self, serving: Iterable[tuple[str, int]]) -> None:
        """Let the planes that keep per-version state drop what no longer serves."""
        versions = list(serving)
        if self._external is not None:
            self._external.retain(versions)
        if self._features is not None:
            self._features.retain(versions)

    async def start(self) -> None:
        """Load the routing table (before the first query). Other processes' changes are
        followed by the change feed (``control/changes.py``), which calls ``routes.sync``."""
        self._loop = self.cache.loop = asyncio.get_running_loop()
        if self.refusals is not None:
            self.refusals.attach(self._loop)
        await asyncio.to_thread(self.routes.load)

    def invalidate(self, endpoint_id: str) -> None:
        """The control plane changed this endpoint (blocking: reloads its route; call from a thread).

        The process that made the change also drops the endpoint's cached answers that the change
        made stale from a shared cache (other processes' own caches drop them as they sync);
        only when the endpoint had a cache and its group changed (a new serving version, another
        AI gateway, or deleted)."""
        before = self.routes.by_id(endpoint_id)
        self.routes.invalidate(endpoint_id)
        if self._loop is None or before is None or before.cache is None:
            return
        after = self.routes.by_id(endpoint_id)
        keep = after.cache_group if after is not None and after.cache is not None else None
        if keep != before.cache_group:
            asyncio.run_coroutine_threadsafe(self.cache.drop_endpoint(endpoint_id, keep), self._loop)

    async def aclose(self) -> None:
        """Stop following changes; close the providers' HTTP pool and the rate limiter's connections.
        The open refusal bursts go to the event sink (which the app closes after this)."""
        if self.refusals is not None:
            self.refusals.close()
        await self.shadows.aclose()
        if self._external is not None:
            await self._external.aclose()
        if self._features is not None:
            self._features.close()
        await self._limiter.aclose()
        await self.cache.store.aclose()

    # -- the pipeline ----------------------------------------------------------------------------

    async def query(self, ex: Exchange) -> Answer:
        """Answer one query (``ex.task`` set: an OpenAI route, whose ``model`` names the endpoint)."""
        if ex.task is not None and not ex.endpoint:
            name = ex.data.get("model")
            if not isinstance(name, str) or not name:
                raise InvalidParameterValue(
                    "Missing required field 'model': the name of the serving endpoint to query."
                )
            ex.endpoint = name
        if ex.caller.agent is not None:  # an agent's tool call: its chain and allowed endpoints
            ex.caller.agent.admit(ex.endpoint)
        route = await self.routes.lookup(ex.endpoint)
        try:
            route.authorize(ex.caller)
        except TemporarilyUnavailable:
            route = await self._deployed(route)
            route.authorize(ex.caller)
        ex.route = route
        if route.shadow is None and not self.observers:
            return await self._recorded(ex, route)
        return await self._watched(ex, route)

    async def _watched(self, ex: Exchange, route: Route) -> Answer:
        """:meth:`_recorded`, then (a live query's) the shadow copy and the observers."""
        observers = self.observers if ex.shadow_of is None and ex.replay_of is None else []
        try:
            answer = await self._recorded(ex, route)
        except ModelportError as exc:
            if observers:
                notify(observers, ex, route, exc.status, None)
            raise
        except Exception:
            if observers:
                notify(observers, ex, route, 500, None)
            raise
        if answer.stream is not None:
            if not observers:
                return answer

            def ended(status: int, done: Answer | None) -> None:
                notify(observers, ex, route, status, done)

            return replace(answer, stream=Observed(answer, ended))
        if route.shadow is not None:
            self.shadows.after(ex, route)  # scheduled: runs once this answer is on its way
        if observers:
            notify(observers, ex, route, 200, answer)
        return answer

    async def _recorded(self, ex: Exchange, route: Route) -> Answer:
        """The answer to ``ex``, recorded when ``route`` records queries."""
        if self._recorder is None or not route.recorded:
            return await self._steps(ex, route)
        # A query whose record could be neither written nor kept (the spool's disk is full and
        # its memory bound reached) is refused with 503 before any work: never answered unrecorded.
        self._recorder.writer.check_room()
        try:
            answer = await self._steps(ex, route)
        except ModelportError as exc:
            self._record(ex, route, exc.status, ex.entity, orjson.dumps(exc.to_body()), None, exc.error_code)
            raise
        if answer.stream is None:
            self._record(ex, route, 200, answer.served, answer.body, answer.tokens, None)
            return answer

        def record(
            status: int, error_code: str | None, response: bytes, tokens: tuple[int, int] | None
        ) -> None:
            self._record(ex, route, status, answer.served, response, tokens, error_code, streamed=True)

        return replace(answer, stream=Recorded(answer.stream, record))

    async def _steps(self, ex: Exchange, route: Route) -> Answer:
        admission = None
        if route.limits:
            try:
                admission = await self._limiter.admit(
                    route.name, route.limits, ex.caller, fingerprint=route.fingerprint
                )
            except RequestLimitExceeded as exc:
                if self.refusals is not None and isinstance(exc.limit, RefusedLimit):
                    self.refusals.rate_limited(route.endpoint_id, route.name, ex.caller, exc.limit)
                raise
        if route.guard_in is not None:
            try:
                await guard_request(route.guard_in, ex, self.embed)
            except BadRequest:
                self._blocked(ex, route)
                raise
        first = route.choose(ex.served)
        found = None
        if route.cache is not None:
            found = await self.cache.lookup(ex, route, first)
        if isinstance(found, Answer):
            answer = found
            ex.entity = found.served
        else:
            answer = await self._answer(ex, route, first)
        if admission is not None and admission.token_keys and ex.cache != "hit":
            # The model's tokens, counted before the output guardrails and the cache wrap a stream
            # (and whether a guardrail then blocks the answer or not: they were spent).
            self._count_tokens(admission, answer)
        if route.guard_out is not None:
            try:
                if answer.stream is None:
                    answer = await guard_answer(route.guard_out, answer, self.embed, ex.decisions)
                else:
                    answer = replace(
                        answer,
                        stream=await guard_stream(route.guard_out, answer.stream, self.embed, ex.decisions),
                    )
            except BadRequest:
                self._blocked(ex, route)
                raise
        if isinstance(found, Lookup):
            answer = await self.cache.keep(ex, route, found, answer)
        return answer

    async def _answer(self, ex: Exchange, route: Route, first: str) -> Answer:
        """The served entity the split picked, then (with fallbacks) the others while the answer is
        a 429 or a 5xx."""
        order = route.order(first, ex.served)
        if route.shadow is not None and len(order) > 1:  # a shadow never answers a live query
            order = [e for e in order if e == first or e != route.shadow[0]]
        for i, entity in enumerate(order):
            try:
                answer = await self._call(ex, route, entity)
            except ModelportError as exc:
                ex.chain.append(
                    {"served_entity": entity, "status_code": exc.status, "error_code": exc.error_code}
                )
                if i == len(order) - 1 or not (exc.status == 429 or exc.status >= 500):
                    raise
                log.info(
                    "falling back to the next served entity",
                    extra={"endpoint": route.name, "failed": entity, "status": exc.status},
                )
                continue
            if ex.chain:
                ex.chain.append({"served_entity": entity, "status_code": 200})
            return answer
        raise AssertionError("unreachable: the last entity's failure is raised")

    async def _deployed(self, route: Route) -> Route:
        """The route of an endpoint whose first config was deploying when this process last read
        it, read again: the reconciler commits the config as serving, then reloads the route, so a
        client that saw the endpoint ready (GET) must not be told it is not. One reload per
        endpoint at a time, shared by every query that waits for it."""
        task = self._reloading.get(route.endpoint_id)
        if task is None or task.done():  # a finished read may predate this query: read again
            task = asyncio.get_running_loop().create_task(
                asyncio.to_thread(self.routes.invalidate, route.endpoint_id)
            )
            self._reloading[route.endpoint_id] = task
        try:
            await asyncio.shield(task)
        except Exception:
            log.warning("could not re-read endpoint %s's route", route.name, exc_info=True)
            return route  # still deploying, as far as this process can tell
        finally:
            if self._reloading.get(route.endpoint_id) is task and task.done():
                del self._reloading[route.endpoint_id]
        return self.routes.get(route.name)

    async def _call(self, ex: Exchange, route: Route, entity: str) -> Answer:
        ex.entity = entity
        try:
            return await self._served.call(ex, route, route.entities[entity])
        except SetClosed:
            # The config changed under this query: the fresh route names the new replicas.
            await asyncio.to_thread(self.routes.invalidate, route.endpoint_id)
            fresh = self.routes.get(route.name)
            fresh.authorize(ex.caller)
            if entity not in fresh.entities:
                entity = ex.entity = fresh.choose(None)
            return await self._served.call(ex, fresh, fresh.entities[entity])

    # -- one served entity, nothing else on the way (replays, shadow copies) ---------------------

    async def call_entity(self, ex: Exchange, entity: str) -> Answer:
        """``ex`` answered by served entity ``entity`` of endpoint ``ex.endpoint`` (CAN_QUERY of
        ``ex.caller``), with no traffic split, fallback, rate limits, guardrails or response cache:
        a replay's (``ex.replay_of`` set by the caller). Recorded in the inference table when the
        endpoint has one (not in the usage table); a streamed answer is read whole (its chunks as
        a JSON array); never shadowed nor observed. A failure is raised (a ModelportError)."""
        route = await self.routes.lookup(ex.endpoint)
        route.authorize(ex.caller)
        ex.route = route
        recorder = self._recorder if route.inference is not None else None
        if recorder is not None:
            recorder.writer.check_room()
            route = replace(route, usage=False) if route.usage else route
        try:
            answer = await self._direct(ex, route, entity)
            if answer.stream is not None:
                answer = await _read_whole(answer)
        except ModelportError as exc:
            if recorder is not None:
                self._record(ex, route, exc.status, entity, orjson.dumps(exc.to_body()), None, exc.error_code)
            raise
        if recorder is not None:
            self._record(ex, route, 200, entity, answer.body, answer.tokens, None)
        return answer

    async def _direct(self, ex: Exchange, route: Route, entity: str) -> Answer:
        """``ex`` sent to ``entity`` of ``route``, and to nothing else."""
        found = route.entities.get(entity)
        if found is None:
            raise ResourceDoesNotExist(
                f"Served entity '{entity}' is not part of the serving config of endpoint '{route.name}' "
                f"(served entities: {', '.join(sorted(route.entities))})."
            )
        ex.entity = entity
        try:
            return await self._served.call(ex, route, found)
        except SetClosed:
            raise TemporarilyUnavailable(
                f"Endpoint '{route.name}' changed its serving config during the call; try again.",
                retry_after=1,
            ) from None

    # -- steps' helpers --------------------------------------------------------------------------

    def _blocked(self, ex: Exchange, route: Route) -> None:
        """A 400 on a guardrail step: a refusal burst's when a guardrail blocked (not a bad request)."""
        if self.refusals is not None:
            self.refusals.guardrail_blocked(route.endpoint_id, route.name, ex.caller, ex.decisions)

    def _record(
        self,
        ex: Exchange,
        route: Route,
        status: int,
        served: str | None,
        response: bytes | None,
        tokens: tuple[int, int] | None,
        error_code: str | None,
        *,
        streamed: bool = False,
    ) -> None:
        """Record the query; a record refused for want of room (503) is raised, so the client
        gets the 503 instead of an unrecorded answer, except for a stream, which has begun."""
        assert self._recorder is not None
        try:
            self._recorder.record(
                ex,
                route,
                status=status,
                served=served,
                response=response,
                tokens=tokens,
                error_code=error_code,
            )
        except TemporarilyUnavailable:
            if not streamed:
                raise
            log.error("streamed query not recorded: the spool is full", extra={"endpoint": route.name})
        except ModelportError:
            log.exception("query not recorded", extra={"endpoint": route.name})

    def _count_tokens(self, admission: Admission, answer: Answer) -> None:
        """Credit the answer's tokens to the token rate limits (a stream's when it ends)."""
        if isinstance(answer.stream, Measured):
            answer.stream.on_end = lambda tokens: self._credit(admission, tokens[2])
        elif answer.stream is None and (tokens := answer.tokens) is not None:
            self._credit(admission, tokens[2])

    def _credit(self, admission: Admission, tokens: int) -> None:
        asyncio.get_running_loop().create_task(self._limiter.add_tokens(admission, tokens))

    async def embed(self, texts: list[str]) -> list[list[float]]:
        """Vectors from the system embedding endpoint (for ``valid_topics`` guardrails)."""
        route = self.routes.find(EMBEDDING_ENDPOINT)
        replica_set = None
        if route is not None and route.version is not None and route.names:
            replica_set = self._served.replicas.replica_set(route.endpoint_id, route.version, route.names[0])
        if replica_set is None:
            raise TemporarilyUnavailable(
                f"The 'valid_topics' guardrail needs the embedding model of the system endpoint "
                f"'{EMBEDDING_ENDPOINT}', which does not serve on this server (install the llm extra "
                "and keep --system-endpoints on).",
                retry_after=5,
            )
        body = orjson.dumps({"input": texts, "encoding_format": "float"})
        answer = await replica_set.predict(body, self._served.timeout)
        return [item["embedding"] for item in orjson.loads(answer)["data"]]


async def _read_whole(answer: Answer) -> Answer:
    """A streamed answer read to its end: its chunks as one JSON array."""
    assert answer.stream is not None
    chunks: list[bytes] = []
    try:
        async for chunk in answer.stream:
            chunks.append(chunk if isinstance(chunk, bytes) else orjson.dumps(chunk))
    finally:
        await answer.stream.aclose()
    return Answer(b"[" + b",".join(chunks) + b"]", answer.served)
