"""Leadership (control/leadership.py) on the real stores: one leader among threads and among
processes, renewal, a leader that stops renewing (a hung connection, a process frozen with
SIGSTOP) deposed before its lease runs out, takeover by the next epoch, the old leader's
fenced writes refused. Takeover times are printed (``-s`` shows them)."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pytest
from sqlalchemy.exc import OperationalError

from modelport.control.leadership import Leadership
from modelport.errors import LeaseLost
from modelport.store import Database, open_database
from modelport.store.leases import Lease, LeaseRepository
from tests.store.lease_contender import fenced_write, tags, writes_md
from tests.support.stores import STORES, fresh_pg_database

ROOT = Path(__file__).resolve().parents[2]
TTL = 1.0


@pytest.fixture(scope="module", params=STORES)
def db(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    if request.param == "postgresql":
        with fresh_pg_database() as url:
            yield from _opened(url)
    else:
        yield from _opened(f"sqlite:///{tmp_path_factory.mktemp('leadership') / 'store.db'}")


def _opened(url: str) -> Iterator[Database]:
    database = open_database(url)
    writes_md.create_all(database.engine)
    yield database
    database.close()


@pytest.fixture
def name() -> str:
    return f"lease-{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True)
class Event:
    who: str
    kind: str  # elected | deposed
    epoch: int | None
    t: float  # time.monotonic()


class Events:
    """What the leaderships' callbacks reported, in order."""

    def __init__(self) -> None:
        self.seen: list[Event] = []
        self._cond = threading.Condition()

    def add(self, who: str, kind: str, epoch: int | None = None) -> None:
        with self._cond:
            self.seen.append(Event(who, kind, epoch, time.monotonic()))
            self._cond.notify_all()

    def callbacks(self, who: str) -> dict[str, Any]:
        return {
            "on_elected": lambda epoch: self.add(who, "elected", epoch),
            "on_deposed": lambda: self.add(who, "deposed"),
        }

    def wait(self, match: Callable[[Event], bool], timeout: float = 5.0) -> Event:
        with self._cond:
            found: list[Event] = []
            self._cond.wait_for(lambda: found.extend(e for e in self.seen if match(e)) or found, timeout)
        assert found, f"no such event within {timeout}s; seen: {self.seen}"
        return found[0]


class Pausable:
    """The real lease repository, with a switch that makes calls hang (a stopped thread, a
    connection that stopped answering) or fail (the database refused)."""

    def __init__(self, inner: LeaseRepository) -> None:
        self.inner = inner
        self.running = threading.Event()
        self.running.set()
        self.failing = False

    def _gate(self) -> None:
        self.running.wait()
        if self.failing:
            raise OperationalError("UPDATE leases ...", {}, ConnectionError("connection lost"))

    def acquire_or_renew(self, name: str, holder: str, ttl_seconds: float) -> Lease | None:
        self._gate()
        return self.inner.acquire_or_renew(name, holder, ttl_seconds)

    def release(self, name: str, holder: str) -> bool:
        self._gate()
        return self.inner.release(name, holder)

    def current(self, name: str) -> Lease | None:
        self._gate()
        return self.inner.current(name)


def test_one_leader_among_contending_threads_renewing_and_handing_over_on_close(
    db: Database, name: str
) -> None:
    events = Events()
    contenders = {
        who: Leadership(db.leases, name=name, ttl_seconds=TTL, **events.callbacks(who)) for who in "abc"
    }
    try:
        for leadership in contenders.values():
            leadership.start_thread()
        first = events.wait(lambda e: e.kind == "elected")
        time.sleep(1.2 * TTL)  # three renewals or more
        assert [e.kind for e in events.seen] == ["elected"]
        assert [w for w, lead in contenders.items() if lead.is_leader] == [first.who]
        assert contenders[first.who].epoch == first.epoch
        assert all(lead.epoch is None for w, lead in contenders.items() if w != first.who)

        closed = time.monotonic()
        contenders[first.who].close()
        second = events.wait(lambda e: e.kind == "elected" and e.who != first.who)
        print(f"\n[{db.dialect}] handover after close: {second.t - closed:.3f}s (ttl {TTL}s)")
        assert second.epoch == first.epoch + 1  # type: ignore[operator]
        assert second.t - closed < TTL / 3 + 0.5  # released: no wait for the expiry
        deposed = events.wait(lambda e: e.kind == "deposed")
        assert deposed.who == first.who and deposed.t <= second.t
        assert not contenders[first.who].is_leader
    finally:
        for leadership in contenders.values():
            leadership.close()
    assert db.leases.current(name).expired  # type: ignore[union-attr]


def test_a_leader_whose_renewal_hangs_is_deposed_before_the_takeover(db: Database, name: str) -> None:
    """A's renewals stop coming back. A stops leading by its own clock before its lease can
    expire; B takes over with the next epoch; A's writes under the old epoch are refused."""
    events = Events()
    stuck = Pausable(db.leases)
    a = Leadership(stuck, name=name, ttl_seconds=TTL, **events.callbacks("a"))
    b = Leadership(db.leases, name=name, ttl_seconds=TTL, **events.callbacks("b"))
    try:
        a.start_thread()
        elected = events.wait(lambda e: e.who == "a" and e.kind == "elected")
        b.start_thread()
        time.sleep(TTL / 2)
        stuck.running.clear()
        frozen = time.monotonic()
        deposed = events.wait(lambda e: e.who == "a" and e.kind == "deposed")
        assert not a.is_leader and a.epoch is None
        taken = events.wait(lambda e: e.who == "b" and e.kind == "elected")
        print(
            f"\n[{db.dialect}] renewals hung: a deposed after {deposed.t - frozen:.3f}s, "
            f"b elected after {taken.t - frozen:.3f}s (ttl {TTL}s)"
        )
        assert deposed.t - frozen < TTL  # by the local deadline (ttl - margin after a renewal)
        assert deposed.t < taken.t  # never two leaders
        assert taken.epoch == elected.epoch + 1  # type: ignore[operator]
        assert taken.t - frozen < TTL + 1.0
        with pytest.raises(LeaseLost):
            fenced_write(db, name, "from-a", elected.epoch)  # type: ignore[arg-type]
        fenced_write(db, name, "from-b", taken.epoch)  # type: ignore[arg-type]
        assert tags(db, name) == ["from-b"]
        stuck.running.set()  # A comes back: it campaigns again, B keeps the lease
        time.sleep(TTL / 2)
        assert b.is_leader and not a.is_leader
    finally:
        stuck.running.set()
        a.close()
        b.close()


@pytest.mark.parametrize("db", ["sqlite"], indirect=True)
def test_a_failed_renewal_deposes_at_once_and_the_next_tenure_has_a_new_epoch(
    db: Database, name: str
) -> None:
    ttl = 3.0  # renewals every 1 s; the local deadline would come 1.7 to 2.7 s after the failure
    events = Events()
    flaky = Pausable(db.leases)
    a = Leadership(flaky, name=name, ttl_seconds=ttl, **events.callbacks("a"))
    try:
        a.start_thread()
        first = events.wait(lambda e: e.kind == "elected")
        flaky.failing = True
        failed = time.monotonic()
        deposed = events.wait(lambda e: e.kind == "deposed")
        assert deposed.t - failed < 1.5  # at the next renewal, not at the deadline
        flaky.failing = False
        again = events.wait(lambda e: e.kind == "elected" and e.epoch != first.epoch)
        # Its lease was still valid in the database: released, then taken as a new tenure.
        assert again.epoch == first.epoch + 1  # type: ignore[operator]
        assert [e.kind for e in events.seen] == ["elected", "deposed", "elected"]
    finally:
        flaky.failing = False
        a.close()


@pytest.mark.parametrize("db", ["sqlite"], indirect=True)
def test_a_leader_that_cannot_start_its_work_gives_the_lease_up(db: Database, name: str) -> None:
    events = Events()

    def refuse(epoch: int) -> None:
        events.add("a", "elected", epoch)
        raise RuntimeError("the reconciler did not start")

    a = Leadership(
        db.leases, name=name, ttl_seconds=30, on_elected=refuse, on_deposed=lambda: events.add("a", "deposed")
    )
    b = Leadership(db.leases, name=name, ttl_seconds=30, **events.callbacks("b"))
    try:
        a.start_thread()
        events.wait(lambda e: e.who == "a" and e.kind == "deposed")
        assert not a.is_leader and [e.kind for e in events.seen] == ["elected", "deposed"]
        deadline = time.monotonic() + 2  # on_deposed comes first, the release just after it
        while not db.leases.current(name).expired:  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "a did not release its lease"
            time.sleep(0.01)
        b.start_thread()  # a 30 s lease, but released: b leads at once
        assert events.wait(lambda e: e.who == "b", timeout=2).epoch == 2
    finally:
        a.close()
        b.close()


# ---- separate processes -----------------------------------------------------------------
Message = dict[str, Any]


class Contender:
    """``tests/store/lease_contender.py`` in a process of its own."""

    def __init__(self, url: str, name: str, ttl: float, out: queue.Queue[tuple[Contender, Message]]):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.store.lease_contender", url, name, str(ttl)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        self.pid = self.proc.pid
        assert self.proc.stdout is not None
        threading.Thread(target=self._read, args=(self.proc.stdout, out), daemon=True).start()

    def _read(self, stdout: IO[str], out: queue.Queue[tuple[Contender, Message]]) -> None:
        for line in stdout:
            out.put((self, json.loads(line)))

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.pid, signal.SIGCONT)
            self.proc.kill()
        self.proc.wait(10)


class Inbox:
    def __init__(self) -> None:
        self.queue: queue.Queue[tuple[Contender, Message]] = queue.Queue()
        self.seen: list[tuple[Contender, Message]] = []

    def wait(self, match: Callable[[Contender, Message], bool], timeout: float) -> tuple[Contender, Message]:
        deadline = time.monotonic() + timeout
        for who, event in self.seen:
            if match(who, event):
                return who, event
        while (left := deadline - time.monotonic()) > 0:
            try:
                who, event = self.queue.get(timeout=left)
            except queue.Empty:
                break
            self.seen.append((who, event))
            if match(who, event):
                return who, event
        raise AssertionError(f"no such event within {timeout}s; seen: {[e for _, e in self.seen]}")


@pytest.mark.parametrize("db", ["postgresql"], indirect=True)
def test_processes_one_leader_a_frozen_leader_loses_the_lease_and_its_writes(db: Database, name: str) -> None:
    """Three server processes contend; the leader is frozen with SIGSTOP right after it decided
    to write (it read its epoch). Another takes over with the next epoch; resumed, the old
    leader's write is refused (LEASE_LOST) and nothing of it is stored."""
    ttl = 1.5
    url = db.engine.url.render_as_string(hide_password=False)
    inbox = Inbox()
    contenders = [Contender(url, name, ttl, inbox.queue) for _ in range(3)]
    try:
        leader, elected = inbox.wait(lambda _, e: e["event"] == "elected", timeout=20)
        time.sleep(ttl)  # more than one renewal; still one leader
        assert [e for _, e in inbox.seen if e["event"] == "elected"] == [elected]
        assert db.leases.current(name).epoch == elected["epoch"]  # type: ignore[union-attr]

        leader.send("hold")
        _, holding = inbox.wait(lambda w, e: w is leader and e["event"] == "holding", timeout=5)
        assert holding["epoch"] == elected["epoch"]
        os.kill(leader.pid, signal.SIGSTOP)
        frozen = time.monotonic()
        successor, taken = inbox.wait(lambda w, e: w is not leader and e["event"] == "elected", timeout=10)
        takeover = taken["t"] - frozen
        print(f"\n[postgresql] leader SIGSTOPped: another process leads after {takeover:.3f}s (ttl {ttl}s)")
        assert taken["epoch"] == elected["epoch"] + 1
        assert ttl / 2 < takeover < ttl + 1.5  # not before the lease could have expired
        successor.send("hold")
        successor.send("write from-successor")
        inbox.wait(lambda w, e: w is successor and e["event"] == "wrote", timeout=5)

        os.kill(leader.pid, signal.SIGCONT)
        leader.send("write from-frozen-leader")
        _, answer = inbox.wait(lambda w, e: w is leader and e["event"] in ("wrote", "refused"), timeout=5)
        assert answer == {**answer, "event": "refused", "error_code": "LEASE_LOST"}
        inbox.wait(lambda w, e: w is leader and e["event"] == "deposed", timeout=5)
        assert tags(db, name) == ["from-successor"]
        elections = [e for _, e in inbox.seen if e["event"] == "elected"]
        assert [e["epoch"] for e in elections] == [elected["epoch"], elected["epoch"] + 1]
    finally:
        for contender in contenders:
            contender.stop()
