"""The spool's disk full: queries are still answered while their records fit in memory, then 503
(never an answer whose record is silently lost), with metrics; when the disk has room again the
records kept in memory reach the table."""

from __future__ import annotations

import os
import time

import httpx
import pytest

from modelport.tables.query import query as sql
from tests.fakes.openai_server import FakeOpenAI
from tests.faults.conftest import MEMORY_RECORDS, SpoolDisk, create, metric, query
from tests.serverproc import ServerProcess
from tests.support.names import unique
from tests.support.providers import custom_chat_entity


class _NotWrittenYet(Exception):
    pass


def _usage_ids(server: ServerProcess, endpoint: str) -> list[str]:
    """The request ids of ``endpoint``'s usage rows; none while the usage table has not been
    written yet (its first flush may come a second after the first query, later on a busy machine)."""

    def not_written_yet(tables: set[str]) -> None:
        if tables == {"system.serving.endpoint_usage"}:
            raise _NotWrittenYet
        raise AssertionError(f"unexpected missing tables: {tables}")

    try:
        _columns, rows = sql(
            f"SELECT request_id FROM system.serving.endpoint_usage WHERE endpoint_name = '{endpoint}'",
            str(server.data_dir / "tables"),
            missing=not_written_yet,
        )
    except _NotWrittenYet:
        return []
    return sorted(row[0] for row in rows)


def test_queries_answered_from_memory_then_503_and_kept_records_written_after(
    http: httpx.Client, fault_server: ServerProcess, spool_disk: SpoolDisk, fake: FakeOpenAI
) -> None:
    if not spool_disk.mounted:
        if os.environ.get("CI"):
            raise AssertionError(f"cannot mount a tmpfs for the spool: {spool_disk.reason}")
        pytest.skip(f"cannot mount a tmpfs for the spool here: {spool_disk.reason}")
    name = unique("spool")
    create(
        http, name, [custom_chat_entity(fake.url)], ai_gateway={"usage_tracking_config": {"enabled": True}}
    )
    # Made before the disk is full: a control-plane write is audited through the same spool.
    plain = unique("spool-plain")
    create(http, plain, [custom_chat_entity(fake.url)])
    first = query(http, name)
    assert first.status_code == 200, first.text
    answered = {first.headers["x-request-id"]}
    spool_disk.fill()
    refused_before = metric(http, "modelport_spool_records_refused_total")
    try:
        # One usage record a query. The active segment's last page still takes a few lines; then
        # MEMORY_RECORDS more queries are answered with their records in memory; the next is 503.
        statuses = []
        while len(statuses) < 100:
            refused = query(http, name)
            statuses.append(refused.status_code)
            if refused.status_code != 200:
                break
            answered.add(refused.headers["x-request-id"])
        assert statuses[-1] == 503, refused.text
        assert set(statuses[:-1]) == {200} and len(statuses) > MEMORY_RECORDS
        assert metric(http, "modelport_spool_records_in_memory") == MEMORY_RECORDS
        assert refused.json()["error_code"] == "TEMPORARILY_UNAVAILABLE"
        assert int(refused.headers["Retry-After"]) > 0
        assert metric(http, "modelport_spool_records_refused_total") - refused_before == 1
        # Queries to an endpoint without tables are not affected.
        assert query(http, plain).status_code == 200
    finally:
        spool_disk.free()
    freed = time.monotonic()
    while metric(http, "modelport_spool_records_in_memory") and time.monotonic() - freed < 10:
        time.sleep(0.1)
    drained = time.monotonic() - freed
    assert metric(http, "modelport_spool_records_in_memory") == 0
    # Space again: queries answered and recorded; every answered query is in the table once.
    r = query(http, name)
    assert r.status_code == 200, r.text
    answered.add(r.headers["x-request-id"])
    deadline = time.monotonic() + 15
    while _usage_ids(fault_server, name) != sorted(answered) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _usage_ids(fault_server, name) == sorted(answered)  # each once: none lost, none twice
    assert refused.headers["x-request-id"] not in answered
    print(
        f"spool full: {len(statuses) - 1} answered ({MEMORY_RECORDS} from memory), then 503; "
        f"memory written {drained:.2f} s after space came back"
    )
