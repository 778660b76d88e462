"""The data plane's routing table follows control-plane changes, even mid-rebuild.

A real SQLite store and the real EndpointService/Reconciler (with the fake deployment
backend of the reconciler tests); no replicas are involved: only ``DataPlane.route``.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from modelport.errors import ResourceDoesNotExist
from modelport.gateway import dataplane
from modelport.gateway.dataplane import DataPlane
from modelport.metrics import Metrics
from modelport.spec.endpoint import CreateEndpoint
from tests.unit.control.test_reconciler import ADMIN, settle, setup


def body(name: str) -> CreateEndpoint:
    return CreateEndpoint.model_validate(
        {"name": name, "config": {"served_entities": [{"entity_name": "iris", "entity_version": "1"}]}}
    )


def test_queries_arriving_during_a_rebuild_see_the_new_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def main() -> None:
        db, backend, reconciler, service = setup(tmp_path)
        plane = DataPlane(db, backend, Metrics(), timeout=5.0, refresh_seconds=60.0)  # type: ignore[arg-type]
        service._on_change = plane.invalidate  # what api/app.py wires
        reconciler._on_change = plane.invalidate
        await reconciler.start()
        try:
            await asyncio.to_thread(service.create, ADMIN, body("first"))
            await settle(reconciler)
            assert (await plane.route("first")).version == 1

            build = dataplane._build_table

            def slow_build(db_: object) -> object:
                time.sleep(0.3)  # a slow store: other queries arrive meanwhile
                return build(db_)  # type: ignore[arg-type]

            monkeypatch.setattr(dataplane, "_build_table", slow_build)
            await asyncio.to_thread(service.create, ADMIN, body("second"))
            await settle(reconciler)
            first = asyncio.create_task(plane.route("second"))
            await asyncio.sleep(0.05)  # the first query is rebuilding the table now
            second = asyncio.create_task(plane.route("second"))
            routes = await asyncio.gather(first, second)
            assert [r.version for r in routes] == [1, 1]
        finally:
            await reconciler.stop()

    asyncio.run(main())


def test_deleted_endpoint_disappears_at_once(tmp_path: Path) -> None:
    async def main() -> None:
        db, backend, reconciler, service = setup(tmp_path)
        plane = DataPlane(db, backend, Metrics(), timeout=5.0, refresh_seconds=60.0)  # type: ignore[arg-type]
        service._on_change = plane.invalidate
        reconciler._on_change = plane.invalidate
        await reconciler.start()
        try:
            await asyncio.to_thread(service.create, ADMIN, body("gone"))
            await settle(reconciler)
            assert (await plane.route("gone")).name == "gone"
            await asyncio.to_thread(service.delete, ADMIN, "gone")
            with pytest.raises(ResourceDoesNotExist, match="'gone' does not exist"):
                await plane.route("gone")
        finally:
            await reconciler.stop()

    asyncio.run(main())


def test_the_periodic_refresh_does_not_hold_up_queries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def main() -> None:
        db, backend, reconciler, service = setup(tmp_path)
        plane = DataPlane(db, backend, Metrics(), timeout=5.0, refresh_seconds=0.1)  # type: ignore[arg-type]
        service._on_change = plane.invalidate
        reconciler._on_change = plane.invalidate
        await reconciler.start()
        try:
            await asyncio.to_thread(service.create, ADMIN, body("steady"))
            await settle(reconciler)
            await plane.route("steady")
            built = plane._built
            build = dataplane._build_table

            def slow_build(db_: object) -> object:
                time.sleep(0.5)
                return build(db_)  # type: ignore[arg-type]

            monkeypatch.setattr(dataplane, "_build_table", slow_build)
            await asyncio.sleep(0.15)  # the table is older than refresh_seconds now
            started = time.monotonic()
            assert (await plane.route("steady")).name == "steady"
            assert time.monotonic() - started < 0.25, "the query waited for the periodic refresh"
            refreshing = plane._refreshing
            assert refreshing is not None
            await refreshing
            assert plane._built > built
        finally:
            await reconciler.stop()

    asyncio.run(main())
