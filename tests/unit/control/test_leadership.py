"""Leadership's set-up, without a database: the holder id, the ttl and its setting."""

from __future__ import annotations

import os

import pytest

from modelport.config import Settings
from modelport.control.leadership import Leadership, holder_id
from modelport.errors import InvalidParameterValue
from modelport.store.leases import Lease


class NoStore:
    """Never called: these tests do not campaign."""

    def acquire_or_renew(self, name: str, holder: str, ttl_seconds: float) -> Lease | None:
        raise AssertionError("no campaign in unit tests")

    def release(self, name: str, holder: str) -> bool:
        raise AssertionError("no campaign in unit tests")

    def current(self, name: str) -> Lease | None:
        raise AssertionError("no campaign in unit tests")


def test_holder_ids_name_the_process_and_differ_between_runs() -> None:
    first, second = holder_id(), holder_id()
    assert first != second
    assert first.split(":")[1] == str(os.getpid()) and len(first.split(":")) == 3


def test_a_leadership_not_started_does_not_lead() -> None:
    leadership = Leadership(NoStore(), ttl_seconds=10)
    assert (leadership.is_leader, leadership.epoch, leadership.name) == (False, None, "reconciler")
    leadership.close()  # nothing to stop


@pytest.mark.parametrize("ttl", [0, -1])
def test_a_ttl_must_be_positive(ttl: float) -> None:
    with pytest.raises(InvalidParameterValue):
        Leadership(NoStore(), ttl_seconds=ttl)


def test_leader_lease_seconds_defaults_to_10_and_must_be_at_least_1() -> None:
    assert Settings.load(environ={}).leader_lease_seconds == 10
    assert Settings.load(environ={"MODELPORT_LEADER_LEASE_SECONDS": "3"}).leader_lease_seconds == 3
    with pytest.raises(ValueError, match="--leader-lease-seconds must be at least 1"):
        Settings.load({"leader_lease_seconds": 0}, environ={})
