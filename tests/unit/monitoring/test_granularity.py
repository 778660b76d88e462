"""Granularity spellings and window assignment (Python and DuckDB agree, months are calendar months)."""

from __future__ import annotations

from datetime import UTC, datetime

import duckdb
import pytest

from modelport.errors import InvalidParameterValue
from modelport.monitoring import canonical_granularity
from modelport.monitoring.granularity import CANONICAL_GRANULARITIES, granularity


@pytest.mark.parametrize(
    ("spelling", "canonical"),
    [
        ("5 minutes", "5 minutes"),
        ("1 HOUR", "1 hour"),
        ("1 hours", "1 hour"),
        ("2 week", "2 weeks"),
        ("1 weeks", "1 week"),
        ("AGGREGATION_GRANULARITY_30_MINUTES", "30 minutes"),
        ("AGGREGATION_GRANULARITY_4_WEEKS", "4 weeks"),
        ("aggregation_granularity_1_year", "1 year"),
        ("  1 month ", "1 month"),
    ],
)
def test_spellings_are_canonicalised(spelling: str, canonical: str) -> None:
    assert canonical_granularity(spelling) == canonical


@pytest.mark.parametrize(
    "spelling", ["1 minute", "5 weeks", "2 months", "hourly", "", "AGGREGATION_GRANULARITY_"]
)
def test_unsupported_spellings_name_the_accepted_ones(spelling: str) -> None:
    with pytest.raises(InvalidParameterValue, match='"1 hour"'):
        canonical_granularity(spelling)


def test_months_and_years_are_calendar_aligned() -> None:
    month = granularity("1 month")
    assert month.start_of(datetime(2026, 1, 31, 23, 59, tzinfo=UTC)) == datetime(2026, 1, 1, tzinfo=UTC)
    assert month.end_of(datetime(2026, 1, 1, tzinfo=UTC)) == datetime(2026, 2, 1, tzinfo=UTC)
    assert month.shift(datetime(2026, 1, 1, tzinfo=UTC), -1) == datetime(2025, 12, 1, tzinfo=UTC)
    assert month.end_of(datetime(2026, 12, 1, tzinfo=UTC)) == datetime(2027, 1, 1, tzinfo=UTC)
    year = granularity("1 year")
    assert year.start_of(datetime(2028, 2, 29, 12, tzinfo=UTC)) == datetime(2028, 1, 1, tzinfo=UTC)
    assert year.shift(datetime(2028, 1, 1, tzinfo=UTC), -1) == datetime(2027, 1, 1, tzinfo=UTC)


def test_fixed_widths_are_aligned_to_the_unix_epoch() -> None:
    # Spark's window() aligns to 1970-01-01 (a Thursday), so weeks start on Thursdays.
    week = granularity("1 week")
    assert week.start_of(datetime(2026, 3, 31, 12, tzinfo=UTC)) == datetime(2026, 3, 26, tzinfo=UTC)
    two_weeks = granularity("2 weeks")
    assert two_weeks.start_of(datetime(2026, 3, 31, tzinfo=UTC)) == datetime(2026, 3, 26, tzinfo=UTC)
    assert granularity("30 minutes").start_of(datetime(2026, 3, 31, 10, 59, 59, tzinfo=UTC)) == datetime(
        2026, 3, 31, 10, 30, tzinfo=UTC
    )


@pytest.mark.parametrize("name", CANONICAL_GRANULARITIES)
def test_duckdb_buckets_match_python_windows(name: str) -> None:
    g = granularity(name)
    stamps = [
        datetime(2025, 12, 31, 23, 59, 59, 999999),
        datetime(2026, 1, 1),
        datetime(2026, 2, 28, 23, 30),
        datetime(2028, 2, 29, 0, 4, 59),
        datetime(2026, 3, 31, 23, 59, 59),
        datetime(1969, 12, 31, 23, 0),
    ]
    con = duckdb.connect()
    for ts in stamps:
        (bucket,) = con.execute(f"SELECT {g.bucket_sql('?::TIMESTAMP')}", [ts]).fetchone()  # type: ignore[misc]
        expected = g.start_of(ts.replace(tzinfo=UTC))
        assert bucket.replace(tzinfo=UTC) == expected
        assert expected <= ts.replace(tzinfo=UTC) < g.end_of(expected)
