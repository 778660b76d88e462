"""The routing table follows changes one endpoint at a time (gateway/routing.py).

A real SQLite store and the real EndpointService/Reconciler (with the fake deployment backend
of the reconciler tests); store reads are counted through a proxy of the endpoint repository.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from modelport.errors import PermissionDenied, ResourceDoesNotExist, TemporarilyUnavailable
from modelport.gateway.routing import RoutingTable, compile_route
from modelport.spec.endpoint import CreateEndpoint
from modelport.spec.identity import Caller
from tests.support.control import ADMIN, lead, settle, setup

BOB = Caller(id=99, name="bob", kind="user", groups=("users",), principal_ids=frozenset({99}))


class CountingRepo:
    """The endpoint repository, with every read counted (by method) and the ids it was asked for."""

    def __init__(self, repo: Any) -> None:
        self._repo = repo
        self.calls: Counter[str] = Counter()
        self.ids: list[Any] = []

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._repo, name)

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] += 1
            self.ids.append(args[0] if args else None)
            return method(*args, **kwargs)

        return counted


class CountingDb:
    def __init__(self, db: Any) -> None:
        self._db = db
        self.endpoints = CountingRepo(db.endpoints)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._db, name)


def body(name: str, *, gateway: dict[str, Any] | None = None) -> CreateEndpoint:
    data: dict[str, Any] = {
        "name": name,
        "config": {"served_entities": [{"name": "v1", "entity_name": "iris", "entity_version": "1"}]},
    }
    if gateway is not None:
        data["ai_gateway"] = gateway
    return CreateEndpoint.model_validate(data)


def with_table(tmp_path: Path, count: int, test: Any) -> None:
    async def main() -> None:
        db, _, reconciler, service = setup(tmp_path)
        table = RoutingTable(CountingDb(db))  # type: ignore[arg-type]
        service._on_change = table.invalidate  # what api/app.py wires (through the DataPlane)
        reconciler.on_change = table.invalidate
        await lead(reconciler)
        try:
            for i in range(count):
                await asyncio.to_thread(service.create, ADMIN, body(f"ep-{i}"))
            await settle(reconciler)
            await test(db, table, service, reconciler)
        finally:
            await reconciler.stop()

    asyncio.run(main())


def test_a_change_made_here_is_routed_before_the_call_returns(tmp_path: Path) -> None:
    async def test(db: Any, table: RoutingTable, service: Any, reconciler: Any) -> None:
        route = table.get("ep-0")
        assert route.version == 1 and route.names == ("v1",)
        route.authorize(ADMIN)
        with pytest.raises(PermissionDenied, match="'bob' does not have CAN_QUERY"):
            route.authorize(BOB)
        await asyncio.to_thread(service.create, ADMIN, body("fresh"))
        pending = table.get("fresh")  # routed at once, while its first config deploys
        assert pending.version is None and pending.config_update == "IN_PROGRESS"
        with pytest.raises(TemporarilyUnavailable, match="still being deployed"):
            pending.authorize(ADMIN)
        await settle(reconciler)
        assert table.get("fresh").version == 1
        await asyncio.to_thread(service.delete, ADMIN, "fresh")
        with pytest.raises(ResourceDoesNotExist, match="'fresh' does not exist"):
            table.get("fresh")

    with_table(tmp_path, 1, test)


def test_a_change_reloads_that_endpoint_only(tmp_path: Path) -> None:
    async def test(db: Any, table: RoutingTable, service: Any, reconciler: Any) -> None:
        repo: CountingRepo = table._db.endpoints  # type: ignore[assignment]
        repo.calls.clear()
        repo.ids.clear()
        gateway = {"rate_limits": [{"calls": 5, "renewal_period": "minute"}]}
        from modelport.spec.endpoint import AiGatewayConfig

        await asyncio.to_thread(
            service.put_ai_gateway, ADMIN, "ep-7", AiGatewayConfig.model_validate(gateway)
        )
        target = table.get("ep-7")
        assert target.limits == ({"calls": 5, "renewal_period": "minute", "key": "endpoint"},)
        # One endpoint read, its config and its grants: nothing of the other 49 endpoints.
        reads = {k: v for k, v in repo.calls.items() if k in ("get_by_id", "get_config", "acl")}
        assert reads == {"get_by_id": 1, "get_config": 1, "acl": 1}
        assert (
            "list" not in repo.calls and "all_acls" not in repo.calls and "current_configs" not in repo.calls
        )
        assert {i for i in repo.ids if i is not None} == {target.endpoint_id}
        assert len(table) == 50

    with_table(tmp_path, 50, test)


def test_sync_reloads_only_what_another_process_changed(tmp_path: Path) -> None:
    async def test(db: Any, table: RoutingTable, service: Any, reconciler: Any) -> None:
        other = RoutingTable(db)  # another server process on the same store
        other.load()
        assert len(other) == 10
        assert other.sync() == 0  # nothing changed
        await asyncio.to_thread(service.create, ADMIN, body("new"))
        await asyncio.to_thread(service.delete, ADMIN, "ep-3")
        from modelport.spec.endpoint import AiGatewayConfig

        limits = AiGatewayConfig.model_validate({"rate_limits": [{"calls": 1, "renewal_period": "minute"}]})
        await asyncio.to_thread(service.put_ai_gateway, ADMIN, "ep-5", limits)
        await settle(reconciler)
        counting = CountingDb(db)
        other._db = counting  # type: ignore[assignment]
        assert other.sync() == 3  # created, deleted, changed
        assert counting.endpoints.calls["current_configs"] == 1
        assert counting.endpoints.calls["list_by_ids"] == 1 and "list" not in counting.endpoints.calls
        asked = [i for i in counting.endpoints.ids if isinstance(i, list)]
        changed = sorted([table.get("new").endpoint_id, table.get("ep-5").endpoint_id])
        assert [sorted(ids) for ids in asked] == [changed, changed]  # rows, then configs
        assert other.get("new").version == 1
        assert other.get("ep-5").limits == ({"calls": 1, "renewal_period": "minute", "key": "endpoint"},)
        with pytest.raises(ResourceDoesNotExist):
            other.get("ep-3")

    with_table(tmp_path, 10, test)


def test_an_older_read_never_replaces_a_newer_one(tmp_path: Path) -> None:
    async def test(db: Any, table: RoutingTable, service: Any, reconciler: Any) -> None:
        endpoint = db.endpoints.get("ep-0")
        stale = compile_route(endpoint, None, {})  # as if read before the current version
        table._apply(endpoint.id, stale, sequence=0)
        assert table.get("ep-0").version == 1
        table._drop(endpoint.id, sequence=0)
        assert table.get("ep-0").version == 1

    with_table(tmp_path, 1, test)


def test_load_reads_the_whole_table_in_three_queries(tmp_path: Path) -> None:
    async def test(db: Any, table: RoutingTable, service: Any, reconciler: Any) -> None:
        counting = CountingDb(db)
        fresh = RoutingTable(counting)  # type: ignore[arg-type]
        fresh.load()
        assert len(fresh) == 30
        assert dict(counting.endpoints.calls) == {"list": 1, "all_acls": 1, "current_configs": 1}
        assert fresh.get("ep-29").version == 1

    with_table(tmp_path, 30, test)


def test_a_name_created_through_another_process_is_read_on_its_first_query(tmp_path: Path) -> None:
    async def test(db: Any, table: RoutingTable, service: Any, reconciler: Any) -> None:
        counting = CountingDb(db)
        other = RoutingTable(counting)  # type: ignore[arg-type]  # another process, not yet polled
        other.load()
        await asyncio.to_thread(service.create, ADMIN, body("late"))
        await settle(reconciler)
        with pytest.raises(ResourceDoesNotExist):
            other.get("late")
        counting.endpoints.calls.clear()
        first, second = await asyncio.gather(other.lookup("late"), other.lookup("late"))
        assert first is second and first.version == 1 and first.names == ("v1",)
        assert counting.endpoints.calls["get"] == 1  # concurrent misses share one read
        with pytest.raises(ResourceDoesNotExist, match="'nope' does not exist"):
            await other.lookup("nope")
        assert counting.endpoints.calls["get"] == 2
        assert other.find("nope") is None and len(other) == 2

    with_table(tmp_path, 1, test)
