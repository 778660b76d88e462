"""Leases and fencing (store/leases.py) on SQLite and PostgreSQL: one holder at a time, renewal,
expiry and takeover by the database's clock, release, and writes refused once a tenure ended.

One database per store for the module (creating a PostgreSQL database costs ~0.4 s); each test
campaigns for a lease name of its own."""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import Connection, create_engine, text
from sqlalchemy.pool import NullPool, QueuePool

from modelport.errors import LeaseLost
from modelport.store import Database, open_database
from modelport.store.leases import Lease, LeaseRepository, fence
from tests.store.lease_contender import fenced_write, tags, writes, writes_md
from tests.support.stores import STORES, fresh_pg_database


@pytest.fixture(scope="module", params=STORES)
def db(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    with fresh_pg_database() if request.param == "postgresql" else _sqlite(tmp_path_factory) as url:
        database = open_database(url)
        writes_md.create_all(database.engine)
        yield database
        database.close()


class _sqlite:
    def __init__(self, factory: pytest.TempPathFactory) -> None:
        self.url = f"sqlite:///{factory.mktemp('leases') / 'store.db'}"

    def __enter__(self) -> str:
        return self.url

    def __exit__(self, *_: object) -> None:
        return None


#: The PostgreSQL-only tests.
on_postgresql = pytest.mark.parametrize("db", ["postgresql"], indirect=True)


@pytest.fixture
def name() -> str:
    """A lease of this test's own."""
    return f"lease-{uuid.uuid4().hex[:8]}"


def take(db: Database, name: str, holder: str, ttl: float) -> Lease:
    lease = db.leases.acquire_or_renew(name, holder, ttl)
    assert lease is not None, f"{holder} could not take {name}"
    return lease


def wait_expired(db: Database, name: str) -> None:
    """Sleep until the database's clock has passed the lease's expiry."""
    lease = db.leases.current(name)
    assert lease is not None
    time.sleep(lease.remaining_ms / 1000 + 0.02)


def test_first_acquisition_is_epoch_one_and_renewal_keeps_the_epoch(db: Database, name: str) -> None:
    first = take(db, name, "a", 5)
    assert (first.holder, first.epoch, first.acquired_ms) == ("a", 1, first.now_ms)
    assert first.expires_ms - first.now_ms == 5000
    time.sleep(0.02)
    renewed = take(db, name, "a", 5)
    assert (renewed.epoch, renewed.acquired_ms) == (1, first.acquired_ms)
    assert renewed.renewed_ms > first.renewed_ms and renewed.expires_ms > first.expires_ms
    stored = db.leases.current(name)
    assert stored is not None and not stored.expired
    assert (stored.holder, stored.epoch, stored.expires_ms) == ("a", 1, renewed.expires_ms)


def test_a_running_lease_is_refused_to_others_and_leases_are_independent(db: Database, name: str) -> None:
    take(db, name, "a", 5)
    assert db.leases.acquire_or_renew(name, "b", 5) is None
    assert take(db, name + "-other", "b", 5).epoch == 1
    assert db.leases.current(name).holder == "a"  # type: ignore[union-attr]
    assert db.leases.current(name + "-never") is None


def test_an_expired_lease_is_taken_over_with_the_next_epoch(db: Database, name: str) -> None:
    old = take(db, name, "a", 0.3)
    wait_expired(db, name)
    new = take(db, name, "b", 5)
    assert (new.holder, new.epoch) == ("b", 2)
    assert new.acquired_ms >= old.expires_ms
    assert db.leases.acquire_or_renew(name, "a", 5) is None  # the old holder cannot renew


def test_the_same_holder_after_its_lease_lapsed_starts_a_new_tenure(db: Database, name: str) -> None:
    take(db, name, "a", 0.3)
    wait_expired(db, name)
    assert take(db, name, "a", 5).epoch == 2


def test_release_lets_another_take_it_at_once_with_a_new_epoch(db: Database, name: str) -> None:
    take(db, name, "a", 30)
    assert db.leases.release(name, "b") is False  # not b's to release
    assert db.leases.acquire_or_renew(name, "b", 30) is None
    assert db.leases.release(name, "a") is True
    assert db.leases.release(name, "a") is False  # released once
    assert db.leases.current(name).expired  # type: ignore[union-attr]
    assert (take(db, name, "b", 30).epoch, take(db, name, "b", 30).epoch) == (2, 2)


def test_only_one_holder_at_a_time_among_contending_threads(db: Database, name: str) -> None:
    """Six threads contend for 1.6 s; each holder renews twice, then goes quiet until its lease
    lapses. Every tenure (epoch) has one holder and ends, by the database's clock, before the
    next begins; no epoch is skipped."""
    ttl, seen, lock = 0.2, [], threading.Lock()
    stop = time.monotonic() + 1.6
    errors: list[BaseException] = []

    def contend(holder: str) -> None:
        try:
            while time.monotonic() < stop:
                lease = db.leases.acquire_or_renew(name, holder, ttl)
                if lease is None:
                    time.sleep(0.01)
                    continue
                with lock:
                    seen.append(lease)
                for _ in range(2):
                    time.sleep(0.03)
                    renewed = db.leases.acquire_or_renew(name, holder, ttl)
                    if renewed is not None:  # None: this thread was late and lost it
                        with lock:
                            seen.append(renewed)
                    if renewed is None or renewed.epoch != lease.epoch:
                        break
                time.sleep(ttl + 0.05)  # quiet: the lease lapses and another takes it
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=contend, args=(f"h{i}",)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    tenures: dict[int, list[Lease]] = {}
    for lease in seen:
        tenures.setdefault(lease.epoch, []).append(lease)
    epochs = sorted(tenures)
    assert len(epochs) >= 3, epochs
    assert epochs == list(range(epochs[0], epochs[0] + len(epochs)))  # no epoch skipped
    assert all(len({x.holder for x in tenures[e]}) == 1 for e in epochs)
    for before, after in itertools.pairwise(epochs):
        ended = max(x.expires_ms for x in tenures[before])
        began = min(x.acquired_ms for x in tenures[after])
        assert ended <= began, (before, ended, after, began)


def test_a_deposed_holders_fenced_write_is_refused_and_rolled_back(db: Database, name: str) -> None:
    old = take(db, name, "a", 0.3)
    fenced_write(db, name, "while-leading", old.epoch)
    wait_expired(db, name)
    new = take(db, name, "b", 5)
    with pytest.raises(LeaseLost, match=r"epoch 1 \(epoch 2 has begun\)") as refused:
        fenced_write(db, name, "stale", old.epoch)
    assert (refused.value.status, refused.value.error_code) == (503, "LEASE_LOST")
    fenced_write(db, name, "new-leader", new.epoch)
    assert tags(db, name) == ["while-leading", "new-leader"]


def test_the_fence_refuses_an_expired_lease_and_one_never_taken(db: Database, name: str) -> None:
    lease = take(db, name, "a", 0.3)
    wait_expired(db, name)  # nobody took it over, but it ran out
    with pytest.raises(LeaseLost, match="it expired"):
        fenced_write(db, name, "late", lease.epoch)
    with pytest.raises(LeaseLost, match="never taken"):
        fenced_write(db, name + "-nobody", "unknown", 1)
    assert tags(db, name) == tags(db, name + "-nobody") == []


@on_postgresql
def test_postgresql_a_fenced_transaction_holds_off_a_takeover_but_not_a_renewal(
    db: Database, name: str
) -> None:
    """The fence's FOR KEY SHARE lock: the holder keeps renewing while its transaction is open;
    a takeover waits (at most ttl/3, then answers None) and succeeds once it has committed."""
    lease = take(db, name, "a", 0.9)
    with db.engine.begin() as conn:
        conn.execute(writes.insert().values(lease=name, tag="slow", epoch=lease.epoch))
        fence(conn, name, lease.epoch)
        # Not held up by its own fence (it would be refused after lock_timeout, ttl/3).
        assert take(db, name, "a", 0.9).epoch == lease.epoch
        wait_expired(db, name)
        started = time.monotonic()
        assert db.leases.acquire_or_renew(name, "b", 0.9) is None
        assert 0.25 < time.monotonic() - started < 1.0  # waited for the lock: lock_timeout ttl/3
    assert take(db, name, "b", 0.9).epoch == lease.epoch + 1
    assert tags(db, name) == ["slow"]  # it passed its fence, so it counts: it came before epoch 2


def sessions(conn: Connection) -> tuple[str, int]:
    """This session's lock_timeout and the advisory locks it holds."""
    timeout = conn.execute(text("SHOW lock_timeout")).scalar_one()
    advisory = conn.execute(
        text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()")
    ).scalar_one()
    return str(timeout), int(advisory)


@on_postgresql
def test_postgresql_leases_leave_no_session_state_and_work_on_fresh_connections(
    db: Database, name: str
) -> None:
    """Through a transaction-mode pooler each statement may land on another server connection:
    nothing may rely on, or leave behind, state of the session."""
    one = create_engine(db.engine.url, poolclass=QueuePool, pool_size=1, max_overflow=0)
    fresh = create_engine(db.engine.url, poolclass=NullPool)  # a new connection every time
    try:
        on_one, on_fresh = LeaseRepository(one), LeaseRepository(fresh)
        assert on_one.acquire_or_renew(name, "a", 0.3) is not None
        with one.connect() as conn:
            assert sessions(conn) == ("0", 0)  # the same pooled connection: nothing left on it
        time.sleep(0.35)
        taken = on_fresh.acquire_or_renew(name, "b", 5)
        assert taken is not None and taken.epoch == 2
        renewed = on_fresh.acquire_or_renew(name, "b", 5)
        assert renewed is not None and renewed.epoch == 2
        with pytest.raises(LeaseLost), fresh.begin() as conn:
            fence(conn, name, 1)
        with fresh.begin() as conn:
            fence(conn, name, 2)
        assert on_fresh.release(name, "b")
        assert on_one.acquire_or_renew(name, "a", 5).epoch == 3  # type: ignore[union-attr]
        with one.connect() as conn:
            assert sessions(conn) == ("0", 0)
    finally:
        one.dispose()
        fresh.dispose()
