"""The routing table: what a query needs to know about each endpoint, compiled once per change.

A :class:`Route` holds an endpoint's serving config version, its served entities, the traffic
split, the grants, and the AI-gateway settings already turned into the objects the query path
uses (guardrail policies, rate limits, the inference table): nothing of it is rebuilt per query.

:class:`RoutingTable` keeps one route per endpoint and never rebuilds the whole table on the
query path:

- a change made by this process (``invalidate(endpoint_id)``, called by the control plane
  and the reconciler after they wrote the store) reloads that one endpoint, in the caller's
  thread, before the call returns: a client that created or updated an endpoint finds it
  routed on its next query;
- changes made by other server processes are picked up by :meth:`RoutingTable.sync`, run
  whenever the store's change counter moved (``control/changes.py``, polled every 0.5 s): two
  queries (the endpoints' change markers and the grants), then a reload of only the endpoints
  whose markers or grants changed;
- a name this process does not know is read from the store before it is answered 404
  (:meth:`RoutingTable.lookup`, one indexed read, shared by concurrent queries for that name):
  an endpoint created through another process answers here at once, not after the next poll;
- :meth:`RoutingTable.load` reads everything once at start-up (three queries whatever the
  number of endpoints), before the first query is served.

Loads that overlap for one endpoint are ordered by a sequence number taken before reading:
an older read never replaces a newer one.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import logging
import random
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from modelport.errors import (
    InvalidState,
    PermissionDenied,
    ResourceDoesNotExist,
    TemporarilyUnavailable,
)
from modelport.gateway.cache_keys import CachePolicy
from modelport.gateway.guardrails import GuardrailPolicy, policies
from modelport.gateway.ratelimit import endpoint_limits
from modelport.spec.identity import Caller
from modelport.spec.permissions import PermissionLevel, effective_level
from modelport.store import Database
from modelport.store.records import ConfigRecord, EndpointRecord

__all__ = ["Route", "RoutingTable", "ServedEntity"]

log = logging.getLogger("modelport.gateway")


@dataclass(frozen=True)
class ServedEntity:
    """One served entity of a serving config: an external model or a model served by replicas
    (custom or foundation: the replica set's engine tells which)."""

    name: str
    config: dict[str, Any]
    #: The external model's task, None for a model served by replicas.
    external_task: str | None = None

    @property
    def external(self) -> bool:
        return self.external_task is not None


@dataclass(frozen=True)
class Route:
    """An endpoint as the query path sees it (immutable: a change makes a new one)."""

    endpoint_id: str
    name: str
    version: int | None
    config_update: str
    entities: dict[str, ServedEntity]
    #: The traffic split: entities with traffic and their weights, in config order.
    names: tuple[str, ...]
    weights: tuple[int, ...]
    grants: dict[int, int] = field(default_factory=dict)
    #: AI gateway: the rate limits (ai_gateway and legacy ones, joined) and their cache key.
    limits: tuple[dict[str, Any], ...] = ()
    fingerprint: Any = None
    fallback: bool = False
    guard_in: GuardrailPolicy | None = None
    guard_out: GuardrailPolicy | None = None
    usage: bool = False
    #: The inference table's config (ai_gateway's, else the legacy auto-capture), when enabled.
    inference: dict[str, Any] | None = None
    #: What changes when the endpoint changes (for :meth:`RoutingTable.sync`).
    marker: tuple[Any, ...] = ()
    #: The response cache (``ai_gateway.response_cache``), when enabled, and the group its
    #: entries live in: ``<endpoint id>:<digest of the serving version and AI gateway>``.
    cache: CachePolicy | None = None
    cache_group: str = ""
    #: ``config.shadow`` of the serving config: the entity that gets copies, and the share of
    #: queries copied (0..1), when it has one (``gateway/shadow.py``).
    shadow: tuple[str, float] | None = None
    #: The rollout moving this config's traffic (the endpoint row's ``rollout``, when it is the
    #: serving version's): its id, step, candidate, incumbents; ``names``/``weights`` are then
    #: the step's split (``control/rollouts.py`` writes it, ``gateway/rollout_tally.py`` counts).
    rollout: dict[str, Any] | None = None

    @property
    def recorded(self) -> bool:
        return self.usage or self.inference is not None

    def authorize(self, caller: Caller) -> int:
        """The serving config version, once CAN_QUERY is checked and the endpoint serves."""
        level = effective_level(self.grants, caller)
        if level is None or level < PermissionLevel.CAN_QUERY:
            raise PermissionDenied(
                f"'{caller.name}' does not have CAN_QUERY permission on serving endpoint '{self.name}'."
            )
        if self.version is None:
            if self.config_update == "IN_PROGRESS":
                raise TemporarilyUnavailable(
                    f"Endpoint '{self.name}' is not ready yet: its first config is still being deployed.",
                    retry_after=5,
                )
            raise InvalidState(
                f"Endpoint '{self.name}' has no serving config (state: {self.config_update}); "
                "update its config first."
            )
        return self.version

    def choose(self, served: str | None) -> str:
        """The served entity of a query: the one named, else one drawn by the traffic split."""
        if served is not None:
            if served not in self.entities:
                raise ResourceDoesNotExist(
                    f"Served model '{served}' is not part of the serving config of endpoint '{self.name}' "
                    f"(served entities: {', '.join(sorted(self.entities))})."
                )
            return served
        if len(self.names) == 1:
            return self.names[0]
        return random.choices(self.names, weights=self.weights)[0]

    def order(self, first: str, served: str | None) -> list[str]:
        """The entities to try: ``first``, then (with fallbacks, not for a named entity) the others."""
        if not self.fallback or served is not None:
            return [first]
        return [first, *(e for e in self.entities if e != first)]


def _marker(endpoint: EndpointRecord) -> tuple[Any, ...]:
    return (endpoint.updated_ms, endpoint.active_version, endpoint.pending_version, endpoint.config_update)


def compile_route(endpoint: EndpointRecord, config: ConfigRecord | None, grants: dict[int, int]) -> Route:
    """The route of ``endpoint`` serving ``config`` (its active config, or None)."""
    entities: dict[str, ServedEntity] = {}
    names: tuple[str, ...] = ()
    weights: tuple[int, ...] = ()
    shadow: tuple[str, float] | None = None
    rollout = endpoint.rollout
    if rollout is not None and (config is None or rollout.get("config_version") != config.version):
        rollout = None  # a rollout of another version (one being deployed, or rolled back from)
    if config is not None:
        for entity in config.body["served_entities"]:
            external = entity.get("external_model")
            task = external["task"] if external is not None else None
            entities[entity["name"]] = ServedEntity(entity["name"], entity, task)
        routes = [r for r in config.body["traffic_config"]["routes"] if r["traffic_percentage"] > 0]
        names = tuple(r["served_entity_name"] for r in routes)
        weights = tuple(int(r["traffic_percentage"]) for r in routes)
        if rollout is not None and rollout.get("traffic"):
            # The step's split (percentages may be fractions: weights are in basis points).
            step = [(r["served_entity_name"], r["traffic_percentage"]) for r in rollout["traffic"]]
            step = [(n, p) for n, p in step if p > 0 and n in entities]
            if step:
                names = tuple(n for n, _ in step)
                weights = tuple(round(p * 100) for _, p in step)
        if config.body.get("shadow"):
            block = config.body["shadow"]
            shadow = (str(block["served_entity_name"]), float(block["percentage"]) / 100)
    gateway = endpoint.ai_gateway or {}
    inference = gateway.get("inference_table_config")
    if not (inference and inference.get("enabled")):
        inference = (config.body.get("auto_capture_config") if config is not None else None) or None
        if inference is not None and not inference.get("enabled"):
            inference = None
    guard_in = guard_out = None
    if gateway.get("guardrails"):
        guard_in, guard_out = policies(gateway["guardrails"])
    return Route(
        endpoint.id,
        endpoint.name,
        endpoint.active_version,
        endpoint.config_update,
        entities,
        names,
        weights,
        dict(grants),
        limits=tuple(endpoint_limits(gateway, endpoint.rate_limits)),
        fingerprint=(endpoint.id, endpoint.updated_ms),
        fallback=bool((gateway.get("fallback_config") or {}).get("enabled")),
        guard_in=guard_in if guard_in is not None and guard_in.active else None,
        guard_out=guard_out if guard_out is not None and guard_out.active else None,
        usage=bool((gateway.get("usage_tracking_config") or {}).get("enabled")),
        inference=inference,
        marker=_marker(endpoint),
        cache=CachePolicy.of(gateway.get("response_cache")),
        cache_group=_cache_group(endpoint, gateway),
        shadow=shadow,
        rollout=rollout,
    )


def _cache_group(endpoint: EndpointRecord, gateway: dict[str, Any]) -> str:
    """The response cache's group of an endpoint: a new one for every serving config version
    and every AI-gateway change (a changed model, guardrail or limit never serves an old answer)."""
    identity = orjson.dumps(
        [endpoint.active_version, gateway, endpoint.rate_limits], option=orjson.OPT_SORT_KEYS
    )
    return f"{endpoint.id}:{hashlib.blake2b(identity, digest_size=8).hexdigest()}"


class RoutingTable:
    """One :class:`Route` per endpoint name, kept current per endpoint (see the module docstring).

    ``on_serving`` is called with every (endpoint id, version) that serves, after each change,
    so that whoever keeps per-version state (the external models' providers) can drop the rest;
    ``on_routes`` with every route (the response cache keeps the current groups only).
    """

    def __init__(
        self,
        db: Database,
        *,
        on_serving: Callable[[Iterable[tuple[str, int]]], None] | None = None,
        on_routes: Callable[[list[Route]], None] | None = None,
    ) -> None:
        self._db = db
        self._on_serving = on_serving
        self._on_routes = on_routes
        self._routes: dict[str, Route] = {}  # by name; replaced, never mutated in place
        self._names: dict[str, str] = {}  # endpoint id -> name
        self._lock = threading.Lock()
        self._sequence = itertools.count(1)
        self._applied: dict[str, int] = {}  # endpoint id -> sequence of the read applied last
        self._syncing: asyncio.Task[None] | None = None
        self._missing: dict[str, asyncio.Task[None]] = {}  # name -> its read-through on a miss

    # -- reads on the query path ----------------------------------------------------------------

    def get(self, name: str) -> Route:
        found = self._routes.get(name)
        if found is None:
            raise ResourceDoesNotExist(f"Endpoint with name '{name}' does not exist.")
        return found

    def find(self, name: str) -> Route | None:
        return self._routes.get(name)

    def by_id(self, endpoint_id: str) -> Route | None:
        name = self._names.get(endpoint_id)
        return None if name is None else self._routes.get(name)

    async def lookup(self, name: str) -> Route:
        """:meth:`get`, reading the store first when the name is not known here (an endpoint
        created through another process since the last poll); concurrent misses of one name
        share one read."""
        found = self._routes.get(name)
        if found is not None:
            return found
        task = self._missing.get(name)
        if task is None:
            task = asyncio.get_running_loop().create_task(asyncio.to_thread(self.read_name, name))
            self._missing[name] = task
            task.add_done_callback(lambda done: self._forget_miss(name, done))
        try:
            await asyncio.shield(task)
        except Exception:  # the store is unreachable: answer from what is known (404)
            log.warning("could not read endpoint %r from the store", name, exc_info=True)
        return self.get(name)

    def _forget_miss(self, name: str, task: asyncio.Task[None]) -> None:
        if self._missing.get(name) is task:
            del self._missing[name]

    def read_name(self, name: str) -> None:
        """Load one endpoint by name if the store has it (blocking)."""
        sequence = next(self._sequence)
        repo = self._db.endpoints
        endpoint = repo.get(name)
        if endpoint is None:
            return
        route = compile_route(
            endpoint, repo.get_config(endpoint.id, endpoint.active_version), repo.acl(endpoint.id)
        )
        with self._lock:
            self._apply(endpoint.id, route, sequence)
        self._serving_changed()

    def __len__(self) -> int:
        return len(self._routes)

    # -- loading --------------------------------------------------------------------------------

    def load(self) -> None:
        """Read every endpoint (three queries); blocking, run it before serving queries."""
        sequence = next(self._sequence)
        repo = self._db.endpoints
        endpoints = repo.list()
        grants = repo.all_acls()
        configs = repo.current_configs()
        routes = {
            e.id: compile_route(e, configs.get((e.id, e.active_version or 0)), grants.get(e.id, {}))
            for e in endpoints
        }
        with self._lock:
            for endpoint_id in set(self._names) - set(routes):
                self._drop(endpoint_id, sequence)
            for endpoint_id, route in routes.items():
                self._apply(endpoint_id, route, sequence)
        self._serving_changed()

    def invalidate(self, endpoint_id: str) -> None:
        """Reload one endpoint now (blocking: a few store reads). Call it after a store write."""
        sequence = next(self._sequence)
        repo = self._db.endpoints
        endpoint = repo.get_by_id(endpoint_id)
        route = None
        if endpoint is not None:
            config = repo.get_config(endpoint.id, endpoint.active_version)
            route = compile_route(endpoint, config, repo.acl(endpoint.id))
        with self._lock:
            if route is None:
                self._drop(endpoint_id, sequence)
            else:
                self._apply(endpoint_id, route, sequence)
        self._serving_changed()

    def sync(self) -> int:
        """Reload the endpoints another process changed (blocking); return how many changed.

        Two light queries (each endpoint's change marker, the grants), then the changed
        endpoints' rows and configs only."""
        sequence = next(self._sequence)
        repo = self._db.endpoints
        markers = repo.markers()
        grants = repo.all_acls()
        changed = []
        for endpoint_id, marker in markers.items():
            known = self._routes.get(self._names.get(endpoint_id, ""))
            if (
                known is None
                or known.endpoint_id != endpoint_id
                or known.marker != marker
                or known.grants != grants.get(endpoint_id, {})
            ):
                changed.append(endpoint_id)
        gone = set(self._names) - set(markers)
        if not changed and not gone:
            return 0
        endpoints = {e.id: e for e in repo.list_by_ids(changed)} if changed else {}
        configs = repo.current_configs(changed) if changed else {}
        with self._lock:
            for endpoint_id in gone:
                self._drop(endpoint_id, sequence)
            for endpoint_id, e in endpoints.items():
                config = configs.get((endpoint_id, e.active_version or 0))
                self._apply(endpoint_id, compile_route(e, config, grants.get(endpoint_id, {})), sequence)
        self._serving_changed()
        return len(changed) + len(gone)

    def sync_soon(self) -> None:
        """Start :meth:`sync` in the background unless one runs (call from the event loop)."""
        if self._syncing is None:
            self._syncing = asyncio.get_running_loop().create_task(self._sync_in_background())

    async def _sync_in_background(self) -> None:
        try:
            await asyncio.to_thread(self.sync)
        except Exception:
            log.exception("routing table sync failed")
        finally:
            self._syncing = None

    # -- under self._lock -----------------------------------------------------------------------

    def _apply(self, endpoint_id: str, route: Route, sequence: int) -> None:
        if self._applied.get(endpoint_id, 0) > sequence:
            return  # a newer read of this endpoint is in already
        self._applied[endpoint_id] = sequence
        old_name = self._names.get(endpoint_id)
        if old_name is not None and old_name != route.name:
            self._routes.pop(old_name, None)
        self._names[endpoint_id] = route.name
        self._routes[route.name] = route

    def _drop(self, endpoint_id: str, sequence: int) -> None:
        if self._applied.get(endpoint_id, 0) > sequence:
            return
        self._applied[endpoint_id] = sequence
        name = self._names.pop(endpoint_id, None)
        if (
            name is not None
            and (route := self._routes.get(name)) is not None
            and route.endpoint_id == endpoint_id
        ):
            del self._routes[name]

    def _serving_changed(self) -> None:
        routes = list(self._routes.values())
        if self._on_serving is not None:
            self._on_serving((r.endpoint_id, r.version) for r in routes if r.version is not None)
        if self._on_routes is not None:
            self._on_routes(routes)
