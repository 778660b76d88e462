"""Quartz cron expressions (a monitor's ``schedule.quartz_cron_expression``): parsed, and the next
time they fire.

The Quartz form Databricks takes, six or seven fields::

    seconds minutes hours day-of-month month day-of-week [year]
    0       0       12    *            *     ?                    every day at 12:00:00
    0       */15    *     ?            *     MON-FRI              every 15 minutes on weekdays
    0       30      2     L            *     ?                    02:30 on the last day of each month

Each field takes ``*``, a value, a range ``a-b``, a list ``a,b``, and steps ``a/n`` or ``*/n``
(``a-b/n``). Months take ``JAN``-``DEC``, days of the week ``SUN``-``SAT`` or 1-7 (1 is Sunday,
as in Quartz). Exactly one of day-of-month and day-of-week is ``?`` (no specific value), as
Quartz requires. Day-of-month also takes ``L`` (the last day) and ``L-n`` (n days before it);
day-of-week takes ``L`` (Saturday), ``nL`` (the last weekday n of the month) and ``n#k`` (the
k-th weekday n of the month). ``W``, ``LW`` and calendars are refused. Years run 1970-2099.

Times are wall-clock times in the schedule's ``timezone_id`` (IANA names, and Java's short ids
such as ``PST`` that Databricks also accepts); a time that a daylight-saving change skips does
not fire, one it repeats fires once.
"""

from __future__ import annotations

import calendar
import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from modelport.errors import InvalidParameterValue

__all__ = ["CronExpression", "parse_cron", "zone"]

_MONTHS = {
    name: i + 1
    for i, name in enumerate(
        ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
    )
}
_DAYS = {"SUN": 1, "MON": 2, "TUE": 3, "WED": 4, "THU": 5, "FRI": 6, "SAT": 7}
#: Java's ``ZoneId.SHORT_IDS``, which Databricks' schedules accept beside IANA names.
_SHORT_IDS = {
    "ACT": "Australia/Darwin",
    "AET": "Australia/Sydney",
    "AGT": "America/Argentina/Buenos_Aires",
    "ART": "Africa/Cairo",
    "AST": "America/Anchorage",
    "BET": "America/Sao_Paulo",
    "BST": "Asia/Dhaka",
    "CAT": "Africa/Harare",
    "CNT": "America/St_Johns",
    "CST": "America/Chicago",
    "CTT": "Asia/Shanghai",
    "EAT": "Africa/Addis_Ababa",
    "ECT": "Europe/Paris",
    "IET": "America/Indiana/Indianapolis",
    "IST": "Asia/Kolkata",
    "JST": "Asia/Tokyo",
    "MIT": "Pacific/Apia",
    "NET": "Asia/Yerevan",
    "NST": "Pacific/Auckland",
    "PLT": "Asia/Karachi",
    "PNT": "America/Phoenix",
    "PRT": "America/Puerto_Rico",
    "PST": "America/Los_Angeles",
    "SST": "Pacific/Guadalcanal",
    "VST": "Asia/Ho_Chi_Minh",
    "EST": "Etc/GMT+5",
    "MST": "Etc/GMT+7",
    "HST": "Etc/GMT+10",
}
_LAST_YEAR = 2099


def zone(timezone_id: str) -> ZoneInfo:
    """The time zone a schedule names (400 when there is no such zone)."""
    name = _SHORT_IDS.get(timezone_id, timezone_id)
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidParameterValue(
            f"Invalid value for 'schedule.timezone_id': {timezone_id!r} is not a time zone id "
            "(e.g. UTC, America/Los_Angeles)."
        ) from None


class _Bad(Exception):
    pass


def _number(text: str, names: dict[str, int] | None, low: int, high: int) -> int:
    token = text.upper()
    if names is not None and token in names:
        return names[token]
    if not token.isdigit():
        raise _Bad(f"{text!r} is not a number")
    value = int(token)
    if not low <= value <= high:
        raise _Bad(f"{value} is outside {low}-{high}")
    return value


def _values(field: str, low: int, high: int, names: dict[str, int] | None = None) -> frozenset[int]:
    """The values of a field of ``*``, numbers, ranges, lists and steps."""
    out: set[int] = set()
    for part in field.split(","):
        if not part:
            raise _Bad("an empty list item")
        base, _, step_text = part.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) == 0:
                raise _Bad(f"step {step_text!r} must be a positive number")
            step = int(step_text)
        if base == "*":
            start, end = low, high
        elif "-" in base:
            a, _, b = base.partition("-")
            start, end = _number(a, names, low, high), _number(b, names, low, high)
            if end < start:
                raise _Bad(f"range {base!r} runs backwards")
        else:
            start = _number(base, names, low, high)
            end = high if step_text else start
        out.update(range(start, end + 1, step))
    return frozenset(out)


@dataclass(frozen=True)
class CronExpression:
    """A parsed expression: the allowed values of each field (see the module docstring)."""

    text: str
    seconds: frozenset[int]
    minutes: frozenset[int]
    hours: frozenset[int]
    months: frozenset[int]
    years: frozenset[int] | None
    #: Day of month: specific days, or None when it is ``?``.
    month_days: frozenset[int] | None
    #: ``L`` / ``L-n``: the day n days before the last (0: the last day).
    last_day_offset: int | None
    #: Day of week (1 = Sunday): specific days, or None when it is ``?``.
    week_days: frozenset[int] | None
    #: ``nL``: the last weekday n of the month.
    last_week_day: int | None
    #: ``n#k``: the k-th weekday n of the month.
    nth_week_day: tuple[int, int] | None

    def _day_matches(self, year: int, month: int, day: int) -> bool:
        last = calendar.monthrange(year, month)[1]
        if self.month_days is not None or self.last_day_offset is not None:
            if self.last_day_offset is not None:
                return day == last - self.last_day_offset
            return self.month_days is not None and day in self.month_days
        quartz_dow = (dt.date(year, month, day).weekday() + 1) % 7 + 1
        if self.last_week_day is not None:
            return quartz_dow == self.last_week_day and day + 7 > last
        if self.nth_week_day is not None:
            weekday, nth = self.nth_week_day
            return quartz_dow == weekday and (day - 1) // 7 + 1 == nth
        return self.week_days is not None and quartz_dow in self.week_days

    def _wall_times(self, start: dt.datetime) -> Iterator[dt.datetime]:
        """Matching wall-clock times at or after naive ``start``, in order."""
        first_year = start.year
        years = sorted(self.years) if self.years is not None else range(first_year, _LAST_YEAR + 1)
        seconds, minutes, hours = sorted(self.seconds), sorted(self.minutes), sorted(self.hours)
        for year in years:
            if year < first_year:
                continue
            for month in sorted(self.months):
                if (year, month) < (start.year, start.month):
                    continue
                for day in range(1, calendar.monthrange(year, month)[1] + 1):
                    if (year, month, day) < (start.year, start.month, start.day):
                        continue
                    if not self._day_matches(year, month, day):
                        continue
                    same_day = (year, month, day) == (start.year, start.month, start.day)
                    for hour in hours:
                        if same_day and hour < start.hour:
                            continue
                        same_hour = same_day and hour == start.hour
                        for minute in minutes:
                            if same_hour and minute < start.minute:
                                continue
                            same_minute = same_hour and minute == start.minute
                            for second in seconds:
                                if same_minute and second < start.second:
                                    continue
                                yield dt.datetime(year, month, day, hour, minute, second)

    def next_after(self, after: dt.datetime, tz: ZoneInfo) -> dt.datetime | None:
        """The first firing strictly after ``after`` (aware), in UTC; None when it never fires again."""
        after_utc = after.astimezone(dt.UTC)
        local = after_utc.astimezone(tz).replace(tzinfo=None, microsecond=0)
        for wall in self._wall_times(local):
            fold0 = wall.replace(tzinfo=tz)
            if fold0.astimezone(dt.UTC).astimezone(tz).replace(tzinfo=None) != wall:
                continue  # skipped by a daylight-saving change
            fired = fold0.astimezone(dt.UTC)
            if fired > after_utc:
                return fired
        return None


def _day_of_month(field: str) -> tuple[frozenset[int] | None, int | None]:
    if field == "?":
        return None, None
    if field == "L":
        return None, 0
    if field.startswith("L-"):
        offset = field[2:]
        if not offset.isdigit() or not 0 <= int(offset) <= 30:
            raise _Bad(f"'L-n' takes n from 0 to 30, not {offset!r}")
        return None, int(offset)
    if "W" in field.upper():
        raise _Bad("'W' (nearest weekday) is not supported")
    return _values(field, 1, 31), None


def _day_of_week(field: str) -> tuple[frozenset[int] | None, int | None, tuple[int, int] | None]:
    if field == "?":
        return None, None, None
    if field.upper() == "L":
        return frozenset({7}), None, None
    if field.upper().endswith("L"):
        return None, _number(field[:-1], _DAYS, 1, 7), None
    if "#" in field:
        day, _, nth = field.partition("#")
        if not nth.isdigit() or not 1 <= int(nth) <= 5:
            raise _Bad(f"'#k' takes k from 1 to 5, not {nth!r}")
        return None, None, (_number(day, _DAYS, 1, 7), int(nth))
    return _values(field, 1, 7, _DAYS), None, None


def parse_cron(text: str) -> CronExpression:
    """Parse a Quartz expression (400 ``INVALID_PARAMETER_VALUE`` saying which field is wrong)."""
    if not isinstance(text, str):
        raise InvalidParameterValue("Invalid value for 'schedule.quartz_cron_expression': must be a string.")
    fields = text.split()
    if len(fields) not in (6, 7):
        raise InvalidParameterValue(
            f"Invalid quartz_cron_expression {text!r}: Quartz takes 6 or 7 fields (seconds minutes "
            f"hours day-of-month month day-of-week [year]); got {len(fields)}."
        )
    current = "seconds"
    try:
        seconds = _values(fields[0], 0, 59)
        current = "minutes"
        minutes = _values(fields[1], 0, 59)
        current = "hours"
        hours = _values(fields[2], 0, 23)
        current = "day-of-month"
        if "?" in fields[3] and fields[3] != "?":
            raise _Bad("'?' stands alone")
        month_days, last_offset = _day_of_month(fields[3])
        current = "month"
        months = _values(fields[4], 1, 12, _MONTHS)
        current = "day-of-week"
        if "?" in fields[5] and fields[5] != "?":
            raise _Bad("'?' stands alone")
        week_days, last_week_day, nth = _day_of_week(fields[5])
        current = "year"
        years = _values(fields[6], 1970, _LAST_YEAR) if len(fields) == 7 and fields[6] != "*" else None
    except _Bad as exc:
        raise InvalidParameterValue(
            f"Invalid quartz_cron_expression {text!r}: {current} field: {exc}."
        ) from None
    if (fields[3] == "?") == (fields[5] == "?"):
        raise InvalidParameterValue(
            f"Invalid quartz_cron_expression {text!r}: exactly one of day-of-month and day-of-week "
            "must be '?' (e.g. '0 0 12 * * ?')."
        )
    return CronExpression(
        text=text,
        seconds=seconds,
        minutes=minutes,
        hours=hours,
        months=months,
        years=years,
        month_days=month_days,
        last_day_offset=last_offset,
        week_days=week_days,
        last_week_day=last_week_day,
        nth_week_day=nth,
    )
