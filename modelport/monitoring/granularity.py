"""Monitor granularities: the accepted spellings, their canonical Databricks names, and window arithmetic.

Databricks accepts "5 minutes", "30 minutes", "1 hour", "1 day", "<n> week(s)", "1 month" and
"1 year" (``MonitorTimeSeries``/``MonitorInferenceLog``), and the Data Quality API the
``AGGREGATION_GRANULARITY_*`` enum (1 to 4 weeks). Every spelling is canonicalised to the string
the output tables carry in their ``granularity`` column.

Windows are half-open ``[start, end)`` in UTC. Fixed-width granularities (minutes to weeks) are
aligned to the Unix epoch, as Spark's ``window()`` aligns them (so weeks start on Thursdays); months
and years are calendar-aligned (the 1st of the month, January 1st).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from modelport.errors import InvalidParameterValue

__all__ = ["CANONICAL_GRANULARITIES", "Granularity", "canonical_granularity", "granularity"]

#: The canonical names, shortest first.
CANONICAL_GRANULARITIES = (
    "5 minutes",
    "30 minutes",
    "1 hour",
    "1 day",
    "1 week",
    "2 weeks",
    "3 weeks",
    "4 weeks",
    "1 month",
    "1 year",
)

_ENUM_PREFIX = "AGGREGATION_GRANULARITY_"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SPELLING = re.compile(r"^\s*(\d+)\s*[_ ]?\s*([a-z]+?)s?\s*$")
_UNIT_ALIASES = {
    "minute": "minute",
    "min": "minute",
    "hour": "hour",
    "hr": "hour",
    "day": "day",
    "week": "week",
    "month": "month",
    "year": "year",
}


@dataclass(frozen=True)
class Granularity:
    """One canonical granularity and how to place a timestamp in its window.

    ``months`` is set for calendar granularities (1 or 12) and ``width`` for fixed ones.
    """

    name: str
    width: timedelta | None
    months: int | None

    def bucket_sql(self, ts_sql: str) -> str:
        """DuckDB SQL for the start of the window holding ``ts_sql`` (a naive UTC TIMESTAMP)."""
        if self.months is not None:
            unit = "year" if self.months == 12 else "month"
            return f"date_trunc('{unit}', {ts_sql})"
        assert self.width is not None
        micros = self.width // timedelta(microseconds=1)
        return f"time_bucket(to_microseconds({micros}), {ts_sql}, TIMESTAMP '1970-01-01 00:00:00')"

    def start_of(self, ts: datetime) -> datetime:
        """The start of the window holding ``ts`` (tz-aware UTC)."""
        ts = _utc(ts)
        if self.months is not None:
            if self.months == 12:
                return datetime(ts.year, 1, 1, tzinfo=UTC)
            return datetime(ts.year, ts.month, 1, tzinfo=UTC)
        assert self.width is not None
        return _EPOCH + ((ts - _EPOCH) // self.width) * self.width

    def shift(self, start: datetime, steps: int) -> datetime:
        """The start of the window ``steps`` windows after (or before, if negative) ``start``."""
        start = _utc(start)
        if self.months is not None:
            index = start.year * 12 + (start.month - 1) + steps * self.months
            return datetime(index // 12, index % 12 + 1, 1, tzinfo=UTC)
        assert self.width is not None
        return start + steps * self.width

    def end_of(self, start: datetime) -> datetime:
        return self.shift(start, 1)


def canonical_granularity(text: str) -> str:
    """The canonical Databricks name of a granularity spelling; InvalidParameterValue if unknown.

    Accepts the canonical strings, singular/plural and case variants ("1 HOURS", "2 week"),
    "<n> week(s)" for n = 1..4, and the enum spellings ("AGGREGATION_GRANULARITY_1_HOUR").
    """
    raw = str(text).strip().lower()
    if raw.upper().startswith(_ENUM_PREFIX):
        raw = raw[len(_ENUM_PREFIX) :].replace("_", " ")
    match = _SPELLING.match(raw)
    if match is not None:
        count, unit = int(match.group(1)), _UNIT_ALIASES.get(match.group(2))
        if unit is not None:
            name = f"{count} {unit}" if count == 1 else f"{count} {unit}s"
            if name in CANONICAL_GRANULARITIES:
                return name
    accepted = ", ".join(f'"{g}"' for g in CANONICAL_GRANULARITIES)
    raise InvalidParameterValue(
        f"Unsupported granularity {text!r}: use one of {accepted}"
        f" (or {_ENUM_PREFIX}<N>_<UNIT>, e.g. {_ENUM_PREFIX}1_HOUR)."
    )


def granularity(text: str) -> Granularity:
    """The :class:`Granularity` for any accepted spelling."""
    name = canonical_granularity(text)
    count_text, unit = name.split(" ", 1)
    count = int(count_text)
    unit = unit.rstrip("s")
    if unit == "month":
        return Granularity(name, None, count)
    if unit == "year":
        return Granularity(name, None, 12 * count)
    width = {
        "minute": timedelta(minutes=count),
        "hour": timedelta(hours=count),
        "day": timedelta(days=count),
        "week": timedelta(weeks=count),
    }[unit]
    return Granularity(name, width, None)


def _utc(ts: datetime) -> datetime:
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)
