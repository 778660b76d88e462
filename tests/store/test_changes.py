"""The store's change counter and the replica registry (store/changes.py, store/replicas.py,
control/changes.py) on SQLite and PostgreSQL: every control-plane write moves the counter in
its own transaction, a failed one does not, registry writes are fenced by the lease epoch, and
the change feed runs its listeners once per change and again after one fails."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelport.control.changes import ChangeFeed
from modelport.errors import LeaseLost, ResourceAlreadyExists
from modelport.store import Database, open_database
from modelport.store.leases import RECONCILER_LEASE
from modelport.store.records import EndpointRecord
from modelport.store.replicas import ReplicaRecord
from tests.support.stores import STORES, fresh_pg_database


@pytest.fixture(params=STORES)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    if request.param == "postgresql":
        with fresh_pg_database() as url:
            database = open_database(url)
            yield database
            database.close()
    else:
        database = open_database(f"sqlite:///{tmp_path / 'store.db'}")
        yield database
        database.close()


def endpoint(endpoint_id: str) -> EndpointRecord:
    return EndpointRecord(
        id=endpoint_id,
        name=f"ep-{endpoint_id}",
        creator="admin",
        created_ms=1,
        updated_ms=1,
        config_update="NOT_UPDATING",
    )


def test_each_control_plane_write_moves_the_counter_and_a_failed_one_does_not(db: Database) -> None:
    seen = [db.changes.version()]

    def moved() -> bool:
        seen.append(db.changes.version())
        return seen[-1] > seen[-2]

    admin = db.principals.create("admin", "user", display_name=None, is_admin=True, now_ms=1)
    assert moved()
    db.endpoints.create(endpoint("e1"), None, admin.id)
    assert moved()
    db.endpoints.write_acl("e1", {admin.id: 3}, replace=True)
    assert moved()
    db.grants.write("table", "main.default.t", {admin.id: 1}, replace=True)
    assert moved()
    db.secrets.create_scope("scope", "admin", 1, admin.id)
    assert moved()
    with pytest.raises(ResourceAlreadyExists):
        db.endpoints.create(endpoint("e1"), None, admin.id)  # rolled back: nothing changed
    assert not moved()
    db.endpoints.delete("e1")
    assert moved()


def record(epoch: int, replica_id: str = "holder/r1.sock") -> ReplicaRecord:
    return ReplicaRecord(
        id=replica_id,
        endpoint_id="e1",
        config_version=1,
        entity="iris",
        host="here",
        address="/tmp/r1.sock",
        pid=123,
        state="READY",
        owner="holder",
        epoch=epoch,
        concurrency=64,
        updated_ms=1,
    )


def test_registry_writes_are_fenced_by_the_lease_epoch(db: Database) -> None:
    lease = db.leases.acquire_or_renew(RECONCILER_LEASE, "holder", 30)
    assert lease is not None
    before = db.changes.version()
    db.replicas.put(record(lease.epoch), lease=RECONCILER_LEASE)
    assert [r.id for r in db.replicas.list()] == ["holder/r1.sock"]
    assert db.changes.version() > before  # the other processes re-read the registry
    db.leases.release(RECONCILER_LEASE, "holder")
    taken = db.leases.acquire_or_renew(RECONCILER_LEASE, "next", 30)
    assert taken is not None and taken.epoch == lease.epoch + 1
    with pytest.raises(LeaseLost):
        db.replicas.put(record(lease.epoch, "holder/r2.sock"), lease=RECONCILER_LEASE)
    with pytest.raises(LeaseLost):
        db.replicas.remove("holder/r1.sock", lease=RECONCILER_LEASE, epoch=lease.epoch)
    assert [r.id for r in db.replicas.list()] == ["holder/r1.sock"]  # the deposed wrote nothing
    assert db.replicas.remove_other_owners("next", lease=RECONCILER_LEASE, epoch=taken.epoch) == 1
    assert db.replicas.list() == []


def test_wake_requests_are_taken_once(db: Database) -> None:
    db.replicas.request_wake("e1", 2, "iris", 1)
    db.replicas.request_wake("e1", 2, "iris", 2)  # asked twice: one request
    assert db.replicas.take_wakes() == [("e1", 2, "iris")]
    assert db.replicas.take_wakes() == []


def test_the_feed_runs_listeners_once_per_change_and_again_after_a_failure(db: Database) -> None:
    calls: list[str] = []
    failing = [True]

    async def flaky() -> None:
        calls.append("flaky")
        if failing[0]:
            failing[0] = False
            raise RuntimeError("first run fails")

    async def main() -> None:
        feed = ChangeFeed(db.changes, interval=3600)  # polled by hand below
        feed.subscribe_blocking("steady", lambda: calls.append("steady"))
        feed.subscribe("flaky", flaky)
        await feed.start()
        try:
            assert await feed.poll() is False and calls == []  # nothing changed since start
            db.principals.create("someone", "user", display_name=None, is_admin=False, now_ms=1)
            assert await feed.poll() is False  # a listener failed: the change is not consumed
            assert calls == ["steady", "flaky"]
            assert await feed.poll() is True  # run again, both succeed
            assert calls == ["steady", "flaky", "steady", "flaky"]
            assert await feed.poll() is False and len(calls) == 4
        finally:
            await feed.stop()

    asyncio.run(main())
