"""When a replica stops by itself (runtime/stopping.py): with its parent (one server), or, when
several servers share the store, after a grace period unless a new leader adopts it."""

from __future__ import annotations

import os

from modelport.runtime.stopping import Watch, alive


def gone_pid() -> int:
    """A pid no process has now."""
    for pid in range(4_000_000, 3_000_000, -7):
        if not alive(pid):
            return pid
    raise AssertionError("no free pid found")


PARENT = os.getppid()
ME = os.getpid()


def test_with_one_server_it_stops_when_its_parent_is_gone() -> None:
    assert not Watch(PARENT).must_stop(0.0)
    assert Watch(gone_pid()).must_stop(0.0)  # the parent it was started by is not its parent


def test_an_orphan_waits_for_adoption_then_stops() -> None:
    watch = Watch(PARENT, owner_pid=gone_pid(), orphan_seconds=30)
    assert not watch.must_stop(100.0)  # the owner is gone: the grace period starts
    assert not watch.must_stop(129.0)
    assert watch.must_stop(130.0)


def test_an_adopted_replica_follows_its_new_owner() -> None:
    watch = Watch(gone_pid(), owner_pid=gone_pid(), orphan_seconds=30)  # parent and owner gone
    assert not watch.must_stop(100.0)
    watch.adopt(ME)
    assert not watch.must_stop(1000.0)  # owned again: no deadline, its parent does not matter


def test_a_release_starts_the_grace_period_only_from_the_owner() -> None:
    watch = Watch(PARENT, owner_pid=ME, orphan_seconds=30)
    watch.release(gone_pid())  # not the owner (a process that lost the replica already)
    assert not watch.must_stop(100.0) and not watch.must_stop(1000.0)
    watch.release(ME)
    assert not watch.must_stop(1000.0)
    assert watch.must_stop(1030.0)
    watch.adopt(PARENT)  # taken over in the end: no longer released
    assert not watch.must_stop(5000.0)


def test_with_its_owner_alive_a_replica_whose_zygote_died_stops_at_once() -> None:
    # The owner counts it dead (its zygote reported so) and starts another.
    assert Watch(gone_pid(), owner_pid=ME, orphan_seconds=30).must_stop(0.0)
