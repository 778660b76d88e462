"""Quartz cron expressions: parsing, refusals, and the next firing time."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from modelport.errors import InvalidParameterValue
from modelport.monitoring.schedule import parse_cron, zone

UTC = zone("UTC")


def _next(expr: str, after: str, tz: str = "UTC") -> str:
    fired = parse_cron(expr).next_after(dt.datetime.fromisoformat(after), zone(tz))
    assert fired is not None
    return fired.isoformat()


def test_every_day_at_noon() -> None:
    assert _next("0 0 12 * * ?", "2026-12-07T08:00:00+00:00") == "2026-12-07T12:00:00+00:00"
    assert _next("0 0 12 * * ?", "2026-12-07T12:00:00+00:00") == "2026-12-08T12:00:00+00:00"


def test_steps_ranges_and_week_day_names() -> None:
    # Every 15 minutes on weekdays: Saturday 2026-12-05 goes to Monday 00:00.
    assert _next("0 */15 * ? * MON-FRI", "2026-12-05T10:07:00+00:00") == "2026-12-07T00:00:00+00:00"
    assert _next("0 0/15 * ? * MON-FRI", "2026-12-07T10:07:00+00:00") == "2026-12-07T10:15:00+00:00"
    assert _next("30 5 1,13 * * ?", "2026-12-07T13:05:30+00:00") == "2026-12-08T01:05:30+00:00"


def test_last_day_of_month_and_nth_week_day() -> None:
    assert _next("0 30 2 L * ?", "2026-02-01T00:00:00+00:00") == "2026-02-28T02:30:00+00:00"
    assert _next("0 0 0 L-1 * ?", "2028-02-01T00:00:00+00:00") == "2028-02-28T00:00:00+00:00"
    # 6#3: the third Friday; 6L: the last Friday (Quartz counts 1 = Sunday).
    assert _next("0 0 9 ? * 6#3", "2026-12-01T00:00:00+00:00") == "2026-12-18T09:00:00+00:00"
    assert _next("0 0 9 ? * 6L", "2026-12-01T00:00:00+00:00") == "2026-12-25T09:00:00+00:00"


def test_time_zones_and_java_short_ids() -> None:
    # Noon in Los Angeles is 20:00 UTC in December; PST is Java's short id for that zone.
    assert _next("0 0 12 * * ?", "2026-12-07T00:00:00+00:00", "PST") == "2026-12-07T20:00:00+00:00"
    assert _next("0 0 12 * * ?", "2026-12-07T00:00:00+00:00", "Europe/Paris") == "2026-12-07T11:00:00+00:00"


def test_a_time_skipped_by_daylight_saving_does_not_fire() -> None:
    # 2026-03-08 02:30 does not exist in Los Angeles: the next run is the day after.
    fired = _next("0 30 2 * * ?", "2026-03-08T09:00:00+00:00", "America/Los_Angeles")
    assert fired == "2026-03-09T09:30:00+00:00"


def test_a_year_field_ends_the_schedule() -> None:
    expr = parse_cron("0 0 0 1 1 ? 2027")
    assert expr.next_after(dt.datetime(2026, 6, 1, tzinfo=dt.UTC), UTC) == dt.datetime(
        2027, 1, 1, tzinfo=dt.UTC
    )
    assert expr.next_after(dt.datetime(2027, 6, 1, tzinfo=dt.UTC), UTC) is None


@pytest.mark.parametrize(
    ("expr", "fragment"),
    [
        ("0 0 12 * *", "6 or 7 fields"),
        ("0 0 12 * * *", "exactly one of day-of-month and day-of-week"),
        ("0 0 12 ? * ?", "exactly one of day-of-month and day-of-week"),
        ("60 0 12 * * ?", "seconds field: 60 is outside 0-59"),
        ("0 0 24 * * ?", "hours field"),
        ("0 0 12 15W * ?", "'W' (nearest weekday) is not supported"),
        ("0 0 12 * FOO ?", "month field"),
        ("0 0 12 ? * 6#9", "day-of-week field"),
        ("0 0/0 12 * * ?", "step"),
        ("0 5-1 12 * * ?", "runs backwards"),
    ],
)
def test_bad_expressions_are_refused_naming_the_field(expr: str, fragment: str) -> None:
    with pytest.raises(InvalidParameterValue, match="quartz_cron_expression") as caught:
        parse_cron(expr)
    assert fragment in caught.value.message


def test_an_unknown_time_zone_is_refused() -> None:
    with pytest.raises(InvalidParameterValue, match="Mars/Olympus"):
        zone("Mars/Olympus")


def test_the_runner_queues_a_scheduled_refresh_once_it_is_due(tmp_path: Path) -> None:
    from modelport.control.monitor_runner import MonitorRunner
    from modelport.control.monitors import MonitorService

    service = MonitorService(None, str(tmp_path))  # type: ignore[arg-type]  # no privilege checks here
    created = int(dt.datetime(2026, 12, 7, 11, 30, tzinfo=dt.UTC).timestamp() * 1000)
    schedule = {"quartz_cron_expression": "0 0 12 * * ?", "timezone_id": "UTC"}
    body = {"output_schema_name": "main.m", "assets_dir": "/x", "snapshot": {}, "schedule": schedule}
    service.store.create(
        "main.s.t", {**body, "monitor_version": 1, "created_ms": created, "updated_ms": created}
    )
    now = {"ms": created + 20 * 60_000}  # 11:50: not due yet
    runner = MonitorRunner(service, leading=lambda: True, clock=lambda: now["ms"])

    assert runner._scan(set()) == []
    now["ms"] = created + 31 * 60_000  # 12:01: due
    assert runner._scan(set()) == [("main.s.t", 1)]
    refresh = service.store.refresh("main.s.t", 1)
    assert (refresh["state"], refresh["trigger"]) == ("PENDING", "SCHEDULE")
    # Pending: found again (to be run), not queued a second time.
    assert runner._scan(set()) == [("main.s.t", 1)]
    assert service.store.refresh_ids("main.s.t") == [1]
    # Once it ended, the next one is due the next day at noon only.
    service.store.save_refresh("main.s.t", {**refresh, "state": "SUCCESS"})
    assert runner._scan(set()) == []
    now["ms"] += 24 * 3600_000
    assert runner._scan(set()) == [("main.s.t", 2)]
