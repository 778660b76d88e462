"""The endpoint event log: the repository (``store/events.py``: paging, kinds, retention) on
SQLite in a temporary folder, and the writer the leader's work uses (``runtime/event_sink.py``:
order, never raising, log tails, pruning), and the reconciler's emission through it."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest

from modelport.runtime.event_sink import EventSink, log_tail
from modelport.spec.endpoint import CreateEndpoint, EndpointCoreConfigInput
from modelport.store import Database, open_database
from modelport.store.records import EndpointRecord
from tests.support.control import ADMIN, lead, settle, setup


@pytest.fixture
def db(tmp_path: Path) -> Database:
    database = open_database(f"sqlite:///{tmp_path / 'm.db'}")
    owner = database.principals.create("admin", "user", display_name=None, is_admin=True, now_ms=1).id
    for eid in ("e1", "e2"):
        record = EndpointRecord(
            id=eid,
            name=f"ep-{eid}",
            creator="admin",
            created_ms=1,
            updated_ms=1,
            config_update="NOT_UPDATING",
        )
        database.endpoints.create(record, None, owner)
    yield database
    database.close()


def test_pages_newest_first_every_event_once(db: Database) -> None:
    ids = [db.events.add("e1", "REPLICA_STARTED", f"m{i}", config_version=i, ts_ms=100 + i) for i in range(7)]
    db.events.add("e2", "REPLICA_STARTED", "another endpoint's")
    assert all(isinstance(i, int) for i in ids) and ids == sorted(ids)
    seen: list[int] = []
    before = None
    while True:
        page = db.events.page("e1", before_id=before, limit=3)
        if not page:
            break
        assert [e.id for e in page] == sorted((e.id for e in page), reverse=True)
        seen.extend(e.id for e in page)
        before = page[-1].id
    assert seen == list(reversed(ids))
    first = db.events.page("e1", limit=1)[0]
    assert (first.kind, first.message, first.config_version, first.ts_ms) == ("REPLICA_STARTED", "m6", 6, 106)


def test_kinds_filter_and_fields_round_trip(db: Database) -> None:
    db.events.add("e1", "CONFIG_UPDATE_STARTED", "v2", actor="alice", config_version=2)
    db.events.add("e1", "REPLICA_SCALED", "1 to 2", served_entity="a", details={"from": 1, "to": 2})
    db.events.add("e1", "REPLICA_CRASHED", "exit 3", served_entity="a", details={"exit_code": 3})
    got = db.events.page("e1", kinds=["REPLICA_SCALED", "CONFIG_UPDATE_STARTED"])
    assert [e.kind for e in got] == ["REPLICA_SCALED", "CONFIG_UPDATE_STARTED"]
    assert got[0].details == {"from": 1, "to": 2} and got[0].served_entity == "a"
    assert got[1].actor == "alice" and got[1].details is None


def test_an_event_of_a_deleted_endpoint_is_dropped_not_raised(db: Database) -> None:
    assert db.events.add("nope", "REPLICA_STOPPED", "gone") is None
    db.events.add("e2", "REPLICA_STOPPED", "kept")
    db.endpoints.delete("e2")
    assert db.events.page("e2") == [] and db.events.count("e2") == 0


def test_prune_keeps_the_newest(db: Database) -> None:
    ids = [db.events.add("e1", "COLD_START", str(i)) for i in range(10)]
    db.events.add("e2", "COLD_START", "other")
    assert db.events.prune("e1", 4) == 6
    assert [e.id for e in db.events.page("e1")] == list(reversed(ids[-4:]))
    assert db.events.prune("e1", 4) == 0 and db.events.count("e2") == 1


# ---- the writer ------------------------------------------------------------------------------


def test_the_sink_writes_in_order_off_the_callers_thread(db: Database) -> None:
    threads: set[str] = set()

    def add(*args: Any, **kwargs: Any) -> int | None:
        threads.add(threading.current_thread().name)
        return db.events.add(*args, **kwargs)

    sink = EventSink(add)
    for i in range(50):
        sink("e1", "REPLICA_STARTED", f"m{i}", served_entity="a", config_version=1)
    assert sink.flush(10)
    got = db.events.page("e1", limit=100)
    assert [e.message for e in reversed(got)] == [f"m{i}" for i in range(50)]
    assert [e.ts_ms for e in reversed(got)] == sorted(e.ts_ms for e in got)  # stamped when emitted
    assert threads == {"modelport-events"}
    sink.close()
    sink("e1", "REPLICA_STARTED", "after close")
    assert db.events.count("e1") == 50


def test_a_failed_write_is_counted_never_raised(db: Database) -> None:
    calls: list[str] = []

    def add(endpoint_id: str, kind: str, message: str, **kwargs: Any) -> int | None:
        calls.append(message)
        if message == "bad":
            raise RuntimeError("store down")
        return db.events.add(endpoint_id, kind, message, **kwargs)

    sink = EventSink(add)
    sink("e1", "REPLICA_STARTED", "bad")
    sink("e1", "REPLICA_STARTED", "good")
    assert sink.flush(10)
    assert calls == ["bad", "good"] and sink.failed == 1
    assert [e.message for e in db.events.page("e1")] == ["good"]
    sink.close()


def test_a_full_queue_drops_and_counts(db: Database) -> None:
    gate = threading.Event()

    def add(*args: Any, **kwargs: Any) -> int | None:
        gate.wait(10)
        return db.events.add(*args, **kwargs)

    sink = EventSink(add, max_queued=2)
    for i in range(6):
        sink("e1", "REPLICA_STARTED", str(i))
    assert sink.dropped >= 3  # one may be in the writer's hands, two wait, the rest are dropped
    gate.set()
    sink.close()
    assert db.events.count("e1") == 6 - sink.dropped


def test_a_crash_event_carries_the_log_tail_and_the_sink_prunes(db: Database, tmp_path: Path) -> None:
    log = tmp_path / "runtime.log"
    log.write_text("".join(f"line {i}\n" for i in range(40)) + "\n  \n")
    assert log_tail(log, 3) == ["line 37", "line 38", "line 39"]
    assert log_tail(tmp_path / "missing.log") == []
    sink = EventSink(db.events.add, prune=db.events.prune, keep=5, prune_every=4)
    sink("e1", "REPLICA_CRASHED", "exited", details={"exit_code": 3}, tail_of=log)
    assert sink.flush(10)
    crashed = db.events.page("e1")[0]
    assert crashed.details is not None and crashed.details["exit_code"] == 3
    assert crashed.details["log_tail"][-1] == "line 39" and len(crashed.details["log_tail"]) == 20
    for i in range(11):
        sink("e1", "COLD_START", str(i))
    sink.close()
    # 12 writes: pruned to the newest 5 after the 8th and the 12th
    assert db.events.count("e1") == 5
    assert db.events.page("e1", limit=1)[0].message == "10"


# ---- the reconciler's emission ---------------------------------------------------------------


def _create(*names: str) -> CreateEndpoint:
    entities = [{"name": n, "entity_name": "iris", "entity_version": "1"} for n in names]
    routes = [{"served_entity_name": names[0], "traffic_percentage": 100}]
    return CreateEndpoint.model_validate(
        {"name": "ep", "config": {"served_entities": entities, "traffic_config": {"routes": routes}}}
    )


def test_the_reconciler_records_success_and_failure(tmp_path: Path) -> None:
    async def main() -> None:
        db, _, reconciler, service = setup(tmp_path)
        sink = EventSink(db.events.add)
        reconciler.events = sink
        await lead(reconciler)
        await asyncio.to_thread(service.create, ADMIN, _create("a"))
        await settle(reconciler)
        update = EndpointCoreConfigInput.model_validate(_create("bad-one").config.model_dump())  # type: ignore[union-attr]
        await asyncio.to_thread(service.update_config, ADMIN, "ep", update)
        await settle(reconciler)
        assert await asyncio.to_thread(sink.flush, 10)
        endpoint = db.endpoints.get("ep")
        assert endpoint is not None
        got = list(
            reversed(db.events.page(endpoint.id, kinds=["CONFIG_UPDATE_SUCCEEDED", "CONFIG_UPDATE_FAILED"]))
        )
        assert [(e.kind, e.config_version, e.actor) for e in got] == [
            ("CONFIG_UPDATE_SUCCEEDED", 1, "admin"),
            ("CONFIG_UPDATE_FAILED", 2, "admin"),
        ]
        assert got[1].served_entity == "bad-one" and "model failed to load: boom" in got[1].message
        assert got[1].details is not None and got[1].details["reason"] == "model failed to load: boom"
        sink.close()

    asyncio.run(main())
