"""The usage dashboard's report (``tables/usage_report.py``): its SQL (bound parameters, the
partition filter, joins only when needed), the 400s, and its numbers over a real Delta table
checked against the same rows totalled in Python; CSV round-trips."""

from __future__ import annotations

import csv
import datetime as dt
import io
import random
import statistics
from collections import defaultdict
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest
from deltalake import write_deltalake

from modelport.errors import InvalidParameterValue
from modelport.tables import usage_report as usage_report_module
from modelport.tables.names import usage_table
from modelport.tables.records import UsageRecord, to_arrow
from modelport.tables.usage_report import (
    KEYS,
    METRICS,
    Principals,
    UsageQuery,
    UsageReport,
    build_sql,
    parse_keys,
    parse_time,
    to_csv,
    usage_report,
)

DAY0 = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
PRINCIPALS = Principals(
    kinds={"alice": "user", "bob": "user", "carol": "user", "sp-1": "service_principal"},
    groups={"alice": ("analysts", "blue"), "bob": ("analysts",), "sp-1": ("blue",)},
)


# ---- parsing and SQL -------------------------------------------------------------------------


def test_parse_keys_accepts_known_keys_in_order_and_refuses_the_rest() -> None:
    assert parse_keys("endpoint,day") == ("endpoint", "day")
    assert parse_keys("hour, user") == ("hour", "user")
    with pytest.raises(InvalidParameterValue, match="Unknown group_by key 'model'"):
        parse_keys("endpoint,model")
    with pytest.raises(InvalidParameterValue, match="repeats"):
        parse_keys("day,day")
    with pytest.raises(InvalidParameterValue, match="Unknown group_by key ''"):
        parse_keys("endpoint,")


def test_parse_time_dates_datetimes_and_bad_text() -> None:
    assert parse_time("since", "2026-03-02") == dt.datetime(2026, 3, 2, tzinfo=dt.UTC)
    assert parse_time("until", "2026-03-02", end=True) == dt.datetime(2026, 3, 3, tzinfo=dt.UTC)
    assert parse_time("since", "2026-03-02T10:30:00Z") == dt.datetime(2026, 3, 2, 10, 30, tzinfo=dt.UTC)
    assert parse_time("since", "2026-03-02T10:30:00+02:00") == dt.datetime(2026, 3, 2, 8, 30, tzinfo=dt.UTC)
    assert parse_time("since", "2026-03-02T10:30") == dt.datetime(2026, 3, 2, 10, 30, tzinfo=dt.UTC)
    assert parse_time("since", None) is None
    with pytest.raises(InvalidParameterValue, match="'until' must be an ISO 8601 date") as err:
        parse_time("until", "yesterday")
    assert err.value.error_code == "INVALID_PARAMETER_VALUE"
    with pytest.raises(InvalidParameterValue, match="'since'"):
        parse_time("since", "2026-02-30")


def test_until_must_follow_since() -> None:
    with pytest.raises(InvalidParameterValue, match="must be after"):
        UsageQuery(since=DAY0, until=DAY0)


def test_sql_binds_every_value_and_filters_the_partition() -> None:
    evil = "x' OR 1=1 --"
    q = UsageQuery(
        group_by=("endpoint", "day"),
        since=DAY0,
        until=DAY0 + dt.timedelta(days=2),
        endpoint=evil,
        user=evil,
        served_entity=evil,
        group=evil,
    )
    sql, params = build_sql(q)
    assert evil not in sql and "OR 1=1" not in sql
    assert sql.count("?") == len(params) == 8
    # the date partition bounds come first; until at midnight ends the day before
    assert params[:4] == [DAY0.date(), DAY0, dt.date(2026, 3, 2), DAY0 + dt.timedelta(days=2)]
    assert "u.date >= ?" in sql and "u.date <= ?" in sql
    assert params[4:] == [evil] * 4
    assert "GROUP BY 1, 2" in sql and "ORDER BY 1, 2" in sql
    # no join without a key or filter that needs one
    assert "JOIN" not in build_sql(UsageQuery(group_by=("user",)))[0]
    assert "LEFT JOIN usage_report_members" in build_sql(UsageQuery(group_by=("group",)))[0]
    assert "LEFT JOIN usage_report_principals" in build_sql(UsageQuery(group_by=("principal_type",)))[0]
    totals_sql, totals_params = build_sql(UsageQuery(group_by=("user",)), ())
    assert "GROUP BY" not in totals_sql and totals_params == []
    # rows and totals in one pass, the totals row first
    both, _ = build_sql(UsageQuery(group_by=("endpoint", "day")), with_totals=True)
    assert "GROUP BY GROUPING SETS ((1, 2), ())" in both
    assert 'ORDER BY "__totals" DESC, 1, 2' in both
    with pytest.raises(ValueError, match="not 'group'"):
        build_sql(UsageQuery(group_by=("group",)), with_totals=True)


def test_every_key_and_metric_has_sql() -> None:
    assert list(KEYS) == ["endpoint", "user", "group", "principal_type", "served_entity", "day", "hour"]
    assert list(METRICS)[:6] == [
        "requests",
        "input_tokens",
        "output_tokens",
        "total_tokens",
        "errors",
        "estimated",
    ]
    for key in KEYS:
        sql, _ = build_sql(UsageQuery(group_by=(key,)))
        assert f'AS "{key}"' in sql


# ---- reports over a real Delta table ------------------------------------------------------------


def _records(n: int = 400, seed: int = 7) -> list[UsageRecord]:
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        at = DAY0 + dt.timedelta(minutes=rnd.randrange(0, 4 * 24 * 60))
        out.append(
            UsageRecord(
                request_id=f"r-{i}",
                endpoint_name=rnd.choice(["chat", "embed", "tools"]),
                status_code=rnd.choice([200, 200, 200, 429, 500]),
                requester=rnd.choice(["alice", "bob", "carol", "sp-1", "gone", None]),
                served_entity_name=rnd.choice(["a", "b", None]),
                input_token_count=rnd.randrange(0, 50),
                output_token_count=rnd.randrange(0, 80),
                tokens_estimated=rnd.random() < 0.2,
                latency_ms=rnd.randrange(1, 900),
                request_time_ms=int(at.timestamp() * 1000),
            )
        )
    return out


@pytest.fixture(scope="module")
def table(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, list[UsageRecord]]:
    root = tmp_path_factory.mktemp("tables")
    records = _records()
    ref = usage_table(str(root))
    arrow = to_arrow("usage", [asdict(r) for r in records])
    # two commits, so the report reads more than one file
    write_deltalake(ref.uri, arrow.slice(0, 150), mode="append", partition_by=["date"])
    write_deltalake(ref.uri, arrow.slice(150), mode="append", partition_by=["date"])
    return str(root), records


def _key_values(r: UsageRecord, key: str) -> list[Any]:
    at = dt.datetime.fromtimestamp(r.request_time_ms / 1000, dt.UTC)
    if key == "endpoint":
        return [r.endpoint_name]
    if key == "user":
        return [r.requester or ""]
    if key == "group":
        return list(PRINCIPALS.groups.get(r.requester or "", ())) or [None]
    if key == "principal_type":
        return [PRINCIPALS.kinds.get(r.requester or "", "unknown")]
    if key == "served_entity":
        return [r.served_entity_name or ""]
    if key == "day":
        return [at.date()]
    return [at.replace(minute=0, second=0, microsecond=0)]


def _expected(records: list[UsageRecord], keys: tuple[str, ...]) -> dict[tuple[Any, ...], dict[str, Any]]:
    groups: dict[tuple[Any, ...], list[UsageRecord]] = defaultdict(list)
    for r in records:
        combos: list[tuple[Any, ...]] = [()]
        for key in keys:
            combos = [(*c, v) for c in combos for v in _key_values(r, key)]
        for combo in combos:
            groups[combo].append(r)
    return {k: _metrics(v) for k, v in groups.items()}


def _metrics(rs: list[UsageRecord]) -> dict[str, Any]:
    lat = [r.latency_ms for r in rs]
    return {
        "requests": len(rs),
        "input_tokens": sum(r.input_token_count for r in rs),
        "output_tokens": sum(r.output_token_count for r in rs),
        "total_tokens": sum(r.input_token_count + r.output_token_count for r in rs),
        "errors": sum(r.status_code >= 400 for r in rs),
        "estimated": sum(r.tokens_estimated for r in rs),
        "latency_p50_ms": round(statistics.median(lat), 1),
        "latency_avg_ms": round(sum(lat) / len(lat), 1),
        "latency_max_ms": max(lat),
    }


def _got(report: UsageReport) -> dict[tuple[Any, ...], dict[str, Any]]:
    keys = report.group_by
    return {tuple(row[k] for k in keys): {m: row[m] for m in METRICS} for row in report.rows}


def _same(
    got: dict[tuple[Any, ...], dict[str, Any]], expected: dict[tuple[Any, ...], dict[str, Any]]
) -> None:
    """Same groups, same counts; latencies rounded to 0.1 ms may differ by one rounding step."""
    assert sorted(got, key=repr) == sorted(expected, key=repr)
    for key, metrics in expected.items():
        for name, value in metrics.items():
            if name.startswith("latency"):
                assert got[key][name] == pytest.approx(value, abs=0.1001), (key, name)
            else:
                assert got[key][name] == value, (key, name)


@pytest.mark.parametrize(
    "keys",
    [
        ("endpoint",),
        ("user",),
        ("group",),
        ("principal_type",),
        ("served_entity",),
        ("day",),
        ("hour",),
        ("endpoint", "day"),
        ("group", "principal_type"),
        ("user", "served_entity", "day"),
    ],
)
def test_each_grouping_matches_the_rows_totalled_in_python(
    table: tuple[str, list[UsageRecord]], keys: tuple[str, ...]
) -> None:
    root, records = table
    report = usage_report(root, UsageQuery(group_by=keys), PRINCIPALS)
    expected = _expected(records, keys)
    _same(_got(report), expected)
    _same({(): report.totals}, {(): _metrics(records)})
    assert not report.truncated


def test_filters_and_time_range(table: tuple[str, list[UsageRecord]]) -> None:
    root, records = table
    since = DAY0 + dt.timedelta(days=1, hours=6)
    until = DAY0 + dt.timedelta(days=3)
    q = UsageQuery(group_by=("endpoint",), since=since, until=until, user="alice", served_entity="a")

    def at(r: UsageRecord) -> dt.datetime:
        return dt.datetime.fromtimestamp(r.request_time_ms / 1000, dt.UTC)

    kept = [
        r
        for r in records
        if since <= at(r) < until and r.requester == "alice" and r.served_entity_name == "a"
    ]
    assert kept
    report = usage_report(root, q, PRINCIPALS)
    _same(_got(report), _expected(kept, ("endpoint",)))
    # group filter: requesters in the group (alice, bob in analysts), with or without the group key
    analysts = [r for r in records if r.requester in ("alice", "bob")]
    by_user = usage_report(root, UsageQuery(group_by=("user",), group="analysts"), PRINCIPALS)
    _same(_got(by_user), _expected(analysts, ("user",)))
    by_group = usage_report(root, UsageQuery(group_by=("group",), group="analysts"), PRINCIPALS)
    _same(_got(by_group), {("analysts",): _metrics(analysts)})
    _same({(): by_group.totals}, {(): _metrics(analysts)})
    # nothing matches: no rows, zero totals
    none = usage_report(root, UsageQuery(group_by=("day",), endpoint="nope"), PRINCIPALS)
    assert none.rows == [] and none.totals["requests"] == 0 and none.totals["latency_max_ms"] is None


def test_row_filter_reads_one_requesters_rows_and_series_by_day(table: tuple[str, list[UsageRecord]]) -> None:
    root, records = table
    report = usage_report(
        root, UsageQuery(group_by=("user",)), PRINCIPALS, row_filter=("requester", "bob"), series="day"
    )
    bobs = [r for r in records if r.requester == "bob"]
    _same(_got(report), {("bob",): _metrics(bobs)})
    assert report.series_by == "day"
    assert {row["day"]: row["requests"] for row in report.series} == {
        k[0]: v["requests"] for k, v in _expected(bobs, ("day",)).items()
    }
    answer = report.answer()
    assert answer["series_by"] == "day" and isinstance(answer["series"][0]["day"], str)
    with pytest.raises(InvalidParameterValue, match="'series'"):
        usage_report(root, UsageQuery(), series="week")


def test_no_usage_table_yet(tmp_path: Path) -> None:
    report = usage_report(str(tmp_path), UsageQuery(group_by=("endpoint",)), series="day")
    assert report.rows == [] and report.totals["requests"] == 0
    assert to_csv(report) == "endpoint," + ",".join(METRICS) + "\r\n"


def test_csv_round_trips_and_defuses_formulas(table: tuple[str, list[UsageRecord]]) -> None:
    root, _ = table
    report = usage_report(root, UsageQuery(group_by=("endpoint", "day")), PRINCIPALS)
    parsed = list(csv.DictReader(io.StringIO(to_csv(report))))
    assert len(parsed) == len(report.rows) > 0
    for line, row in zip(parsed, report.rows, strict=True):
        assert line["endpoint"] == row["endpoint"]
        assert line["day"] == row["day"].isoformat()
        for m in METRICS:
            assert float(line[m]) == float(row[m])
    odd = UsageReport(
        ("user", "group"), [dict(user="=HYPERLINK(1)", group=None, **{m: 1 for m in METRICS})], {}
    )
    text = to_csv(odd)
    line = next(iter(csv.DictReader(io.StringIO(text))))
    assert line["user"] == "'=HYPERLINK(1)" and line["group"] == ""
    assert text.splitlines()[0] == "user,group," + ",".join(METRICS)


# ---- how the table is read ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def unpartitioned(tmp_path_factory: pytest.TempPathFactory, table: tuple[str, list[UsageRecord]]) -> str:
    """The same rows in a table without the ``date`` partition (files not in ``date=`` folders)."""
    root = tmp_path_factory.mktemp("flat")
    arrow = to_arrow("usage", [asdict(r) for r in table[1]])
    write_deltalake(usage_table(str(root)).uri, arrow, mode="append")
    return str(root)


QUERIES = [
    UsageQuery(group_by=("endpoint", "day")),
    UsageQuery(group_by=("group", "hour"), since=DAY0 + dt.timedelta(hours=30)),
    UsageQuery(group_by=("principal_type",), until=DAY0 + dt.timedelta(days=2, hours=5), group="blue"),
    UsageQuery(group_by=("user",), since=DAY0 + dt.timedelta(days=1), until=DAY0 + dt.timedelta(days=3)),
]


@pytest.mark.parametrize("q", QUERIES)
def test_pyarrow_and_unpartitioned_reads_give_the_same_report(
    table: tuple[str, list[UsageRecord]], unpartitioned: str, q: UsageQuery, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, _ = table
    native = usage_report(root, q, PRINCIPALS, row_filter=None, series="day")
    flat = usage_report(unpartitioned, q, PRINCIPALS, series="day")
    own = usage_report(root, q, PRINCIPALS, row_filter=("requester", "alice"), series="hour")
    # the way remote tables are read: a pyarrow dataset registered in DuckDB
    monkeypatch.setattr(usage_report_module, "_local_files", lambda uri, q: None)
    through_arrow = usage_report(root, q, PRINCIPALS, series="day")
    own_arrow = usage_report(root, q, PRINCIPALS, row_filter=("requester", "alice"), series="hour")
    for other in (flat, through_arrow):
        _same(_got(other), _got(native))
        _same({(): other.totals}, {(): native.totals})
        assert other.series == native.series
    _same(_got(own_arrow), _got(own))
    assert own.series == own_arrow.series
    assert native.totals["requests"] > own.totals["requests"] > 0


def test_a_time_range_reads_only_its_files(table: tuple[str, list[UsageRecord]], unpartitioned: str) -> None:
    root, _ = table
    uri = usage_table(root).uri
    every = usage_report_module._local_files(uri, UsageQuery())
    assert every is not None and len(every) == 8  # 4 days, 2 commits
    since = DAY0 + dt.timedelta(days=2, hours=12)
    kept = usage_report_module._local_files(uri, UsageQuery(since=since))
    assert kept is not None and sorted(kept) == sorted(
        f for f in every if "date=2026-03-03" in f or "date=2026-03-04" in f
    )
    until = usage_report_module._local_files(uri, UsageQuery(until=DAY0 + dt.timedelta(days=1)))
    assert until is not None and all("date=2026-03-01" in f for f in until) and len(until) == 2
    # no partition: the files' request_time statistics prune (one file here: it spans every day)
    flat = usage_report_module._local_files(usage_table(unpartitioned).uri, UsageQuery(since=since))
    assert flat is not None and len(flat) == 1
    late = DAY0 + dt.timedelta(days=30)
    assert usage_report_module._local_files(usage_table(unpartitioned).uri, UsageQuery(since=late)) == []
    empty = usage_report(unpartitioned, UsageQuery(group_by=("day",), since=late), PRINCIPALS, series="day")
    assert empty.rows == [] and empty.series == [] and empty.totals["requests"] == 0
