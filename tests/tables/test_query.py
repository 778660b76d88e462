"""SQL over the tables by their three-part names; usage totals."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from modelport.errors import InvalidParameterValue
from modelport.tables.query import (
    discover_tables,
    query,
    referenced_names,
    rewrite_table_names,
    usage_summary,
)
from modelport.tables.records import InferenceRecord, UsageRecord
from modelport.tables.writer import TableWriter

DAY1 = 1_767_182_400_000  # 2025-12-31T12:00:00Z
DAY2 = DAY1 + 86_400_000


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> str:
    base = tmp_path_factory.mktemp("q")
    w = TableWriter(str(base / "tables"), str(base / "spool"))
    w.open()
    chat = w.payload_table("main", "default", "chat")
    other = w.payload_table("ml", "prod", "fraud")
    usage = [
        # request id, requester, endpoint, status, in, out, estimated, time
        ("u1", "alice", "chat", 200, 10, 100, False, DAY1),
        ("u2", "alice", "chat", 200, 20, 200, True, DAY2),
        ("u3", "bob", "chat", 429, 0, 0, False, DAY2),
        ("u4", "bob", "fraud", 200, 0, 0, False, DAY2 + 1000),
        ("u5", None, "fraud", 500, 5, 0, False, DAY1),
    ]
    for rid, who, endpoint, status, tin, tout, est, ts in usage:
        w.record_usage(
            UsageRecord(
                rid,
                endpoint,
                status,
                requester=who,
                input_token_count=tin,
                output_token_count=tout,
                tokens_estimated=est,
                request_time_ms=ts,
            )
        )
        table = chat if endpoint == "chat" else other
        w.record_inference(
            table,
            InferenceRecord(
                rid, status, 3, request="{}", response="{}", timestamp_ms=ts, request_metadata={"k": rid}
            ),
        )
    w.flush_now()
    w.close()
    return str(base / "tables")


def test_tables_are_found_by_three_part_name(root: str) -> None:
    assert sorted(discover_tables(root)) == [
        "main.default.chat_payload",
        "ml.prod.fraud_payload",
        "system.serving.endpoint_usage",
    ]
    assert discover_tables(str(Path(root) / "missing")) == {}


def test_three_part_names_in_sql(root: str) -> None:
    columns, rows = query(
        """
        SELECT u.request_id, p.status_code, p.request_metadata, u.request_time
        FROM system.serving.endpoint_usage AS u
        JOIN main.default.chat_payload p ON p.databricks_request_id = u.request_id
        WHERE u.requester = ? ORDER BY 1
        """,
        root,
        ["alice"],
    )
    assert columns == ["request_id", "status_code", "request_metadata", "request_time"]
    assert rows == [
        ("u1", 200, {"k": "u1"}, dt.datetime(2025, 12, 31, 12, tzinfo=dt.UTC)),
        ("u2", 200, {"k": "u2"}, dt.datetime(2026, 1, 1, 12, tzinfo=dt.UTC)),
    ]
    # Quoted parts, any case, a table-qualified column, a name inside a literal left alone.
    _, rows = query(
        'SELECT "ML".prod."fraud_payload".databricks_request_id, \'ml.prod.fraud_payload\' '
        "FROM ml.PROD.fraud_payload ORDER BY 1",
        root,
    )
    assert rows == [("u4", "ml.prod.fraud_payload"), ("u5", "ml.prod.fraud_payload")]
    _, rows = query("SELECT count(*), min(date) FROM system.serving.endpoint_usage", root)
    assert rows == [(5, dt.date(2025, 12, 31))]


def test_queries_read_only_the_tables(root: str) -> None:
    with pytest.raises(InvalidParameterValue, match="Query failed"):
        query("SELECT * FROM read_csv('/etc/hostname')", root)
    with pytest.raises(InvalidParameterValue, match="Query failed"):
        query("SELECT * FROM main.default.missing_payload", root)


def test_rewrite_leaves_literals_comments_and_unknown_names() -> None:
    sql = 'SELECT \'a.b.c\', x.y.z -- a.b.c\nFROM a.b.c /* a.b.c */ JOIN "A".b."c" ON 1'
    assert rewrite_table_names(sql, {"a.b.c"}) == (
        'SELECT \'a.b.c\', x.y.z -- a.b.c\nFROM "a.b.c" /* a.b.c */ JOIN "a.b.c" ON 1'
    )


def test_usage_summary_by_user_endpoint_and_day(root: str) -> None:
    base = {"estimated": 0}
    assert usage_summary(root, by="user") == [
        {"user": "", "requests": 1, "input_tokens": 5, "output_tokens": 0, "total_tokens": 5, "errors": 1}
        | base,
        {
            "user": "alice",
            "requests": 2,
            "input_tokens": 30,
            "output_tokens": 300,
            "total_tokens": 330,
            "errors": 0,
            "estimated": 1,
        },
        {"user": "bob", "requests": 2, "input_tokens": 0, "output_tokens": 0, "total_tokens": 0, "errors": 1}
        | base,
    ]
    by_endpoint = {r["endpoint"]: (r["requests"], r["errors"]) for r in usage_summary(root, by="endpoint")}
    assert by_endpoint == {"chat": (3, 1), "fraud": (2, 1)}
    by_day = [(r["day"], r["requests"]) for r in usage_summary(root, by="day")]
    assert by_day == [(dt.date(2025, 12, 31), 2), (dt.date(2026, 1, 1), 3)]
    since = [(r["day"], r["requests"]) for r in usage_summary(root, by="day", since="2026-01-01")]
    assert since == [(dt.date(2026, 1, 1), 3)]
    late = usage_summary(root, by="user", since=dt.datetime(2026, 1, 1, 12, 0, 0, 500_000))
    assert [(r["user"], r["requests"]) for r in late] == [("bob", 1)]


def test_usage_summary_checks_its_arguments(root: str, tmp_path: Path) -> None:
    with pytest.raises(InvalidParameterValue):
        usage_summary(root, by="model")  # type: ignore[arg-type]
    with pytest.raises(InvalidParameterValue):
        usage_summary(root, since="yesterday")
    assert usage_summary(str(tmp_path)) == []


def test_only_the_tables_given_are_registered(root: str) -> None:
    """A table left out of ``tables=`` cannot be read, however the SQL names it."""
    only_usage = {"system.serving.endpoint_usage": discover_tables(root)["system.serving.endpoint_usage"]}
    for sql in (
        "SELECT count(*) FROM main.default.chat_payload",
        'SELECT count(*) FROM "main.default.chat_payload"',
        'SELECT count(*) FROM "main"."default"."chat_payload"',
    ):
        with pytest.raises(InvalidParameterValue, match="Catalog Error"):
            query(sql, root, tables=only_usage)


def test_row_filter_registers_only_matching_rows(root: str) -> None:
    usage = "system.serving.endpoint_usage"
    filters = {usage: ("requester", "alice")}
    for sql in (
        f"SELECT DISTINCT requester FROM {usage}",
        f"SELECT requester FROM {usage} WHERE requester = 'bob' OR requester IS NULL OR true",
    ):
        _, rows = query(sql, root, row_filters=filters)
        assert {r[0] for r in rows} == {"alice"}
    assert query(f"SELECT count(*) FROM {usage}", root, row_filters=filters)[1] == [(2,)]
    assert query(f"SELECT count(*) FROM {usage}", root)[1] == [(5,)]
    totals = usage_summary(root, "user", row_filter=("requester", "bob"))
    assert [(r["user"], r["requests"]) for r in totals] == [("bob", 2)]


def test_missing_is_told_the_unregistered_three_part_names(root: str) -> None:
    seen: list[set[str]] = []
    only_usage = {"system.serving.endpoint_usage": discover_tables(root)["system.serving.endpoint_usage"]}
    sql = (
        'SELECT * FROM system.serving.endpoint_usage u JOIN "Main"."default".chat_payload p '
        'ON true JOIN "a.b.c" ON true'
    )
    with pytest.raises(InvalidParameterValue):
        query(sql, root, tables=only_usage, missing=seen.append)
    assert seen == [{"main.default.chat_payload", "a.b.c"}]
    # When DuckDB cannot bind the query to list its tables, the names in the text are used.
    with pytest.raises(InvalidParameterValue):
        query(
            "SELECT * FROM system.serving.endpoint_usage JOIN ml.prod.fraud_payload USING (no_such_column)",
            root,
            tables=only_usage,
            missing=seen.append,
        )
    assert seen[1] == {"ml.prod.fraud_payload"}
    seen.clear()
    # A query that runs never calls it; nor does an error other than an unknown table.
    query("SELECT count(*) FROM system.serving.endpoint_usage", root, tables=only_usage, missing=seen.append)
    with pytest.raises(InvalidParameterValue):
        query("SELEC 1", root, tables=only_usage, missing=seen.append)
    assert seen == []


def test_only_the_tables_the_sql_names_are_opened(root: str, tmp_path: Path) -> None:
    """A query opens only the tables it names: a broken table it does not name costs nothing."""
    assert referenced_names(
        "SELECT 'x.y.z' FROM system.serving.endpoint_usage u -- a.b.c\n"
        'JOIN "Main"."default".chat_payload ON true JOIN "ml.prod.fraud_payload" ON true'
    ) == {"system.serving.endpoint_usage", "main.default.chat_payload", "ml.prod.fraud_payload"}
    broken = tmp_path / "broken"
    (broken / "_delta_log").mkdir(parents=True)  # no commit: DeltaTable() cannot open it
    tables = {**discover_tables(root), "main.broken.table": str(broken)}
    _, rows = query("SELECT count(*) FROM system.serving.endpoint_usage", root, tables=tables)
    assert rows == [(5,)]
    with pytest.raises(Exception):  # noqa: B017 (deltalake's own error: the table is opened)
        query("SELECT count(*) FROM main.broken.table", root, tables=tables)
