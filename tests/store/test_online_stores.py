"""The online stores side by side: the embedded SQLite file, PostgreSQL (127.0.0.1:5432) and Redis
(127.0.0.1:6379) publish the same tables and answer the same lookups with the same values.

Each test gets a store of its own: a fresh file, a fresh PostgreSQL schema (``?schema=``) or a
fresh Redis key prefix (``?prefix=``), removed afterwards, so parallel workers never meet.
PostgreSQL or Redis unreachable: their tests skip, except under ``CI`` where that is an error.
"""

from __future__ import annotations

import datetime as dt
import decimal
import os
import re
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from modelport.errors import InvalidParameterValue, TemporarilyUnavailable
from modelport.tables.features import FeatureTableInfo
from modelport.tables.online_stores import LookupReader, OnlineWriter, open_reader, open_store
from tests.support.stores import PG_ADMIN_URL

REDIS_URL = os.environ.get("MODELPORT_TEST_REDIS", "redis://127.0.0.1:6379/0")
STORES = ("sqlite", "postgresql", "redis")
DAY_MS = 86_400_000
CUSTOMERS = pa.table({"customer_id": [1, 2, 3], "spend": [10.0, 20.0, 30.0], "segment": ["a", "b", None]})


def info(
    name: str = "main.fs.customers", keys: list[str] | None = None, ts: list[str] | None = None
) -> FeatureTableInfo:
    return FeatureTableInfo(
        name=name,
        primary_keys=keys or ["customer_id"],
        timestamp_keys=ts or [],
        description="",
        columns=[],
        version=4,
        created_ms=0,
        updated_ms=0,
    )


def ms(day: int) -> int:
    return int(dt.datetime(2024, 1, day, tzinfo=dt.UTC).timestamp() * 1000)


def _unreachable(what: str, exc: Exception) -> None:
    if os.environ.get("CI"):
        raise exc
    pytest.skip(f"{what} not reachable: {exc}")


def _with_param(url: str, param: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}{param}"


@dataclass
class Online:
    """One store under test: its location, writer and reader, and what holds its rows."""

    kind: str
    location: str
    store: OnlineWriter
    reader: LookupReader
    _admin: Any

    def data_tables(self) -> list[str]:
        """The tables (SQLite, PostgreSQL) or hashes (Redis) that hold published rows."""
        if self.kind == "sqlite":
            with sqlite3.connect(self.location) as con:
                rows = con.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name GLOB 'g*'")
                return sorted(r[0] for r in rows)
        if self.kind == "postgresql":
            schema = self.location.rsplit("schema=", 1)[1]
            rows = self._admin.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = %s AND tablename ~ '^g[0-9]+$'", (schema,)
            )
            return sorted(r[0] for r in rows)
        prefix = self.location.rsplit("prefix=", 1)[1]
        return sorted(k.decode() for k in self._admin.scan_iter(match=f"{prefix}*:g*"))


@pytest.fixture(params=STORES)
def online(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Online]:
    admin: Any = None
    if request.param == "sqlite":
        location = str(tmp_path / "online" / "features.sqlite")
    elif request.param == "postgresql":
        import psycopg

        try:
            admin = psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=3)
        except psycopg.OperationalError as exc:
            _unreachable(f"PostgreSQL at {PG_ADMIN_URL}", exc)
        schema = f"online_test_{uuid.uuid4().hex[:12]}"
        location = _with_param(PG_ADMIN_URL, f"schema={schema}")
    else:
        import redis

        admin = redis.Redis.from_url(REDIS_URL, socket_timeout=5, socket_connect_timeout=3)
        try:
            admin.ping()
        except redis.exceptions.RedisError as exc:
            _unreachable(f"Redis at {REDIS_URL}", exc)
        location = _with_param(REDIS_URL, f"prefix=modelport-test:{uuid.uuid4().hex[:12]}:")
    store = open_store(location)
    reader = open_reader(location)
    yield Online(request.param, location, store, reader, admin)
    reader.close()
    store.close()
    if request.param == "postgresql":
        admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        admin.close()
    elif request.param == "redis":
        prefix = location.rsplit("prefix=", 1)[1]
        keys = list(admin.scan_iter(match=prefix + "*", count=1000))
        if keys:
            admin.delete(*keys)
        admin.close()


# -- publish and state ------------------------------------------------------------------------------


def test_publish_returns_the_state_and_states_list_the_tables(online: Online) -> None:
    state = online.store.publish(info(), CUSTOMERS, mode="snapshot")
    published_ms = state.pop("published_ms")
    assert state == {
        "name": "main.fs.customers",
        "mode": "snapshot",
        "published_version": 4,
        "rows": 3,
        "columns": ["customer_id", "spend", "segment"],
        "primary_keys": ["customer_id"],
        "timestamp_keys": [],
        "status": "ONLINE",
    }
    assert published_ms > 1_700_000_000_000
    assert online.store.state("MAIN.fs.customers") == {**state, "published_ms": published_ms}
    assert online.store.state("main.fs.other") is None
    online.store.publish(info("main.fs.zeta"), CUSTOMERS, mode="continuous")
    assert [(s["name"], s["mode"]) for s in online.store.states()] == [
        ("main.fs.customers", "snapshot"),
        ("main.fs.zeta", "continuous"),
    ]


@pytest.mark.parametrize(
    ("data", "mode", "message"),
    [
        (CUSTOMERS, "streaming", "mode must be one of snapshot, triggered, continuous"),
        (pa.table({"spend": [1.0]}), "snapshot", "lacks key column 'customer_id'"),
        (pa.table({"customer_id": [1, None]}), "snapshot", "Key column 'customer_id' .* holds null"),
    ],
)
def test_bad_publishes_are_refused(online: Online, data: pa.Table, mode: str, message: str) -> None:
    with pytest.raises(InvalidParameterValue, match=message):
        online.store.publish(info(), data, mode=mode)
    assert online.store.states() == []
    assert online.data_tables() == []


def test_a_repeated_key_keeps_its_last_row(online: Online) -> None:
    data = pa.table({"customer_id": [1, 2, 1], "spend": [1.0, 2.0, 3.0]})
    assert online.store.publish(info(), data, mode="snapshot")["rows"] == 2
    assert online.reader.lookup("main.fs.customers", [(1,), (2,)]) == [{"spend": 3.0}, {"spend": 2.0}]


# -- lookup -----------------------------------------------------------------------------------------


def test_lookup_answers_in_key_order_with_none_for_missing_keys(online: Online) -> None:
    online.store.publish(info(), CUSTOMERS, mode="snapshot")
    assert online.reader.lookup("main.fs.customers", [(3,), (9,), (1,), (1,)]) == [
        {"spend": 30.0, "segment": None},
        None,
        {"spend": 10.0, "segment": "a"},
        {"spend": 10.0, "segment": "a"},
    ]
    assert online.reader.lookup("main.fs.customers", [(2,)], ["segment", "customer_id"]) == [
        {"segment": "b", "customer_id": 2}
    ]
    assert online.reader.lookup("main.fs.customers", [(2,), (5,)], []) == [{}, None]
    assert online.reader.lookup("main.fs.customers", []) == []


def test_every_store_gives_back_the_same_python_values(online: Online) -> None:
    data = pa.table(
        {
            "customer_id": [1],
            "flag": [True],
            "nan": [float("nan")],
            "big": [float("inf")],
            "third": [1 / 3],
            "f32": pa.array([0.1], pa.float32()),
            "seen": pa.array([dt.datetime(2024, 5, 1, 12, 30, 0, 5)], pa.timestamp("us", tz="UTC")),
            "naive_ns": pa.array([1_714_564_800_000_001_999], pa.timestamp("ns")),
            "day": pa.array([dt.date(2024, 5, 1)], pa.date32()),
            "emb": [[0.5, 1.5]],
            "attrs": [{"a": 1, "b": "x"}],
            "raw": [b"\x00\x01\xff"],
            "price": pa.array([decimal.Decimal("1.25")], pa.decimal128(5, 2)),
            "small": pa.array([7], pa.int8()),
            "huge": pa.array([2**62], pa.int64()),
            "text": ['said "hi",\nthen\\left'],
            "empty": [""],
        }
    )
    online.store.publish(info(), data, mode="snapshot")
    assert online.reader.lookup("main.fs.customers", [(1,)]) == [
        {
            "flag": True,
            "nan": None,
            "big": float("inf"),
            "third": 1 / 3,
            "f32": 0.10000000149011612,
            "seen": "2024-05-01T12:30:00.000005+00:00",
            "naive_ns": "2024-05-01T12:00:00.000001+00:00",
            "day": "2024-05-01",
            "emb": [0.5, 1.5],
            "attrs": {"a": 1, "b": "x"},
            "raw": b"\x00\x01\xff",
            "price": 1.25,
            "small": 7,
            "huge": 2**62,
            "text": 'said "hi",\nthen\\left',
            "empty": "",
        }
    ]


def test_composite_keys_and_key_values_are_coerced_to_the_key_types(online: Online) -> None:
    data = pa.table({"user": [1, 1, 2], "item": ["x", "y", "x"], "score": [0.1, 0.2, 0.3]})
    online.store.publish(info("main.fs.pairs", ["user", "item"]), data, mode="snapshot")
    keys = [(np.int64(1), "y"), ("2", "x"), (2.0, "y"), (1, np.str_("x")), (None, "x")]
    assert online.reader.lookup("main.fs.pairs", keys) == [
        {"score": 0.2},
        {"score": 0.3},
        None,
        {"score": 0.1},
        None,
    ]


def test_keys_of_other_types_find_their_rows(online: Online) -> None:
    data = pa.table(
        {
            "flag": [True, False],
            "code": [b"\x00a", b"b"],
            "ratio": [0.5, -0.0],
            "day": pa.array([dt.date(2024, 1, 1), dt.date(2024, 1, 2)], pa.date32()),
            "n": [1, 2],
        }
    )
    online.store.publish(info("main.fs.typed", ["flag", "code", "ratio", "day"]), data, mode="snapshot")
    keys = [
        (True, b"\x00a", 0.5, "2024-01-01"),
        (0, b"b", 0.0, dt.date(2024, 1, 2)),
        (1, b"b", 0.0, "2024-01-02"),
    ]
    assert online.reader.lookup("main.fs.typed", keys) == [{"n": 1}, {"n": 2}, None]


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ((1,), "Each key of 'main.fs.pairs' must have 2 value\\(s\\) \\(user, item\\)"),
        (("one", "x"), "Lookup key 'user' cannot be 'one'"),
        ((1.5, "x"), "Lookup key 'user' cannot be 1.5"),
        ((True, "x"), "Lookup key 'user' cannot be True"),
        ((1, 2.5), "Lookup key 'item' cannot be 2.5"),
    ],
)
def test_bad_keys_are_refused_naming_the_key(online: Online, key: tuple[object, ...], message: str) -> None:
    online.store.publish(
        info("main.fs.pairs", ["user", "item"]), pa.table({"user": [1], "item": ["x"]}), mode="snapshot"
    )
    with pytest.raises(InvalidParameterValue, match=message):
        online.reader.lookup("main.fs.pairs", [key])


def test_a_large_batch_is_answered_whole_and_in_order(online: Online) -> None:
    n = 5_000
    data = pa.table({"customer_id": list(range(n)), "spend": [float(i) for i in range(n)]})
    assert online.store.publish(info(), data, mode="snapshot")["rows"] == n
    keys = [(i,) for i in range(n + 4, -1, -1)]  # 5 unknown keys first
    out = online.reader.lookup("main.fs.customers", keys)
    assert out[:5] == [None] * 5
    assert [r["spend"] if r else None for r in out[5:]] == [float(i) for i in range(n - 1, -1, -1)]


# -- point in time ----------------------------------------------------------------------------------


@pytest.fixture
def history(online: Online) -> Online:
    ts = pa.array([ms(1), ms(5), ms(10), ms(3)], pa.timestamp("ms", tz="UTC"))
    data = pa.table({"customer_id": [1, 1, 1, 2], "ts": ts, "spend": [1.0, 5.0, 10.0, 3.0]})
    state = online.store.publish(info("main.fs.history", ts=["ts"]), data, mode="snapshot")
    assert (state["rows"], state["timestamp_keys"]) == (4, ["ts"])
    return online


def test_without_as_of_the_latest_row_per_key(history: Online) -> None:
    assert history.reader.lookup("main.fs.history", [(1,), (2,), (3,)]) == [
        {"spend": 10.0},
        {"spend": 3.0},
        None,
    ]


def test_as_of_takes_the_latest_row_at_or_before_it(history: Online) -> None:
    as_of = [ms(5), ms(5) - 1, ms(1) - 1, None, ms(2)]
    keys = [(1,), (1,), (1,), (1,), (2,)]
    assert history.reader.lookup("main.fs.history", keys, as_of_ms=as_of) == [
        {"spend": 5.0},
        {"spend": 1.0},
        None,
        {"spend": 10.0},
        None,
    ]
    assert history.reader.lookup("main.fs.history", [(1,)], ["ts", "spend"], as_of_ms=[ms(7)]) == [
        {"ts": "2024-01-05T00:00:00+00:00", "spend": 5.0}
    ]
    at = dt.datetime(2024, 1, 6, tzinfo=dt.UTC)
    assert history.reader.lookup("main.fs.history", [(1,)], as_of_ms=[at]) == [{"spend": 5.0}]  # type: ignore[list-item]


def test_the_lookback_window_bounds_how_old_a_row_may_be(history: Online) -> None:
    keys = [(1,), (1,), (1,)]
    as_of = [ms(7), ms(6), ms(9)]
    assert history.reader.lookup("main.fs.history", keys, as_of_ms=as_of, lookback_ms=2 * DAY_MS) == [
        {"spend": 5.0},
        {"spend": 5.0},
        None,
    ]
    assert history.reader.lookup("main.fs.history", [(1,)], as_of_ms=[ms(5)], lookback_ms=0) == [
        {"spend": 5.0}
    ]
    assert history.reader.lookup("main.fs.history", [(1,)], as_of_ms=[ms(6)], lookback_ms=0) == [None]
    with pytest.raises(InvalidParameterValue, match="as_of_ms has 1 values for 2 keys"):
        history.reader.lookup("main.fs.history", [(1,), (2,)], as_of_ms=[ms(1)])
    with pytest.raises(InvalidParameterValue, match="lookback_ms must not be negative"):
        history.reader.lookup("main.fs.history", [(1,)], as_of_ms=[ms(1)], lookback_ms=-1)


def test_a_date_timestamp_key_compares_by_midnight_utc(online: Online) -> None:
    days = pa.array([dt.date(2024, 1, 1), dt.date(2024, 1, 5)], pa.date32())
    online.store.publish(
        info("main.fs.daily", ts=["day"]),
        pa.table({"customer_id": [1, 1], "day": days, "n": [1, 5]}),
        mode="snapshot",
    )
    assert online.reader.lookup("main.fs.daily", [(1,), (1,)], ["day", "n"], as_of_ms=[ms(5), ms(5) - 1]) == [
        {"day": "2024-01-05", "n": 5},
        {"day": "2024-01-01", "n": 1},
    ]


def test_as_of_is_ignored_without_a_timestamp_key(online: Online) -> None:
    online.store.publish(info(), CUSTOMERS, mode="snapshot")
    assert online.reader.lookup("main.fs.customers", [(1,)], ["spend"], as_of_ms=[0]) == [{"spend": 10.0}]


# -- errors, republish, drop ------------------------------------------------------------------------


def test_a_table_not_published_is_temporarily_unavailable(online: Online) -> None:
    message = "Feature table 'main.fs.customers' is not published to the online store."
    with pytest.raises(TemporarilyUnavailable, match=re.escape(message)) as caught:
        online.reader.lookup("main.fs.customers", [(1,)])
    assert caught.value.status == 503
    online.store.publish(info(), CUSTOMERS, mode="snapshot")  # seen by the same reader at once
    assert online.reader.lookup("main.fs.customers", [(1,)], ["spend"]) == [{"spend": 10.0}]


def test_a_feature_the_published_table_lacks_names_table_and_feature_until_republished(
    online: Online,
) -> None:
    online.store.publish(info(), CUSTOMERS, mode="snapshot")
    assert online.reader.lookup("main.fs.customers", [(1,)], ["segment"]) == [{"segment": "a"}]
    online.store.publish(info(), pa.table({"customer_id": [1], "spend": [11.0]}), mode="snapshot")
    message = (
        "Feature table 'main.fs.customers' published to the online store has no feature 'segment', 'zip'."
    )
    with pytest.raises(TemporarilyUnavailable, match=re.escape(message)):
        online.reader.lookup("main.fs.customers", [(1,)], ["spend", "segment", "zip"])
    online.store.publish(info(), CUSTOMERS, mode="snapshot")  # compatible again: the reader heals
    assert online.reader.lookup("main.fs.customers", [(1,)], ["segment"]) == [{"segment": "a"}]


def test_a_republish_swaps_the_rows_for_a_reader_that_read_the_old_ones(online: Online) -> None:
    online.store.publish(info(), CUSTOMERS, mode="snapshot")
    assert online.reader.lookup("main.fs.customers", [(1,), (2,)]) == [
        {"spend": 10.0, "segment": "a"},
        {"spend": 20.0, "segment": "b"},
    ]
    first = online.data_tables()
    assert len(first) == 1
    new = pa.table({"customer_id": [2, 4], "spend": [22.0, 44.0], "age": [30, 40]})
    assert online.store.publish(info(), new, mode="triggered")["rows"] == 2
    assert online.reader.lookup("main.fs.customers", [(1,), (2,)]) == [None, {"spend": 22.0, "age": 30}]
    assert online.reader.lookup("main.fs.customers", [(4,)], ["age"]) == [{"age": 40}]
    second = online.data_tables()
    assert len(second) == 1 and second != first  # the old rows are gone


def test_drop_takes_the_table_and_its_rows_out_and_ignores_unknown_ones(online: Online) -> None:
    online.store.publish(info(), CUSTOMERS, mode="snapshot")
    assert online.reader.lookup("main.fs.customers", [(1,)], ["spend"]) == [{"spend": 10.0}]
    online.store.drop("main.fs.customers")
    online.store.drop("main.fs.never")
    assert online.store.state("main.fs.customers") is None
    assert online.data_tables() == []
    with pytest.raises(TemporarilyUnavailable, match="not published"):
        online.reader.lookup("main.fs.customers", [(1,)])


def test_lookups_from_several_threads_during_republishes_see_whole_publishes(online: Online) -> None:
    n = 200
    online.store.publish(info(), pa.table({"customer_id": list(range(n)), "v": [0] * n}), mode="snapshot")
    errors: list[BaseException] = []
    seen: set[int] = set()
    stop = threading.Event()

    def look() -> None:
        try:
            while not stop.is_set():
                rows = online.reader.lookup("main.fs.customers", [(i,) for i in range(n)])
                values = {r["v"] for r in rows if r is not None}
                assert len(values) == 1 and None not in rows  # one publish, never a mix
                seen.update(values)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=look) for _ in range(3)]

    def readers_saw(generation: int) -> None:  # readers run between publishes, however loaded
        deadline = time.monotonic() + 10
        while generation not in seen and not errors and time.monotonic() < deadline:
            time.sleep(0.001)

    for t in threads:
        t.start()
    readers_saw(0)
    for generation in range(1, 6):
        online.store.publish(
            info(), pa.table({"customer_id": list(range(n)), "v": [generation] * n}), mode="snapshot"
        )
        readers_saw(generation)
    stop.set()
    for t in threads:
        t.join()
    assert errors == []
    assert online.reader.lookup("main.fs.customers", [(0,)]) == [{"v": 5}]
    assert seen == set(range(6))
    assert len(online.data_tables()) == 1


# -- unreachable stores -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "location",
    [
        "postgresql://modelport:pg-secret-42@127.0.0.1:1/features?schema=x",
        "redis://:redis-secret-42@127.0.0.1:1/0",
    ],
)
def test_an_unreachable_store_is_a_503_naming_it_without_its_password(location: str) -> None:
    reader = open_reader(location)
    store = open_store(location)  # opens nothing yet: a server starts while its store is down
    for call in (lambda: reader.lookup("main.fs.t", [(1,)]), lambda: store.state("main.fs.t")):
        with pytest.raises(
            TemporarilyUnavailable, match=r"The online store at \S+:1/\S* is unavailable"
        ) as caught:
            call()
        assert "secret-42" not in str(caught.value)
        assert ":***@127.0.0.1:1" in str(caught.value)


@pytest.mark.parametrize("online", ["postgresql", "redis"], indirect=True)
def test_a_reader_whose_connection_the_server_closed_reconnects(online: Online) -> None:
    online.store.publish(info(), CUSTOMERS, mode="snapshot")
    assert online.reader.lookup("main.fs.customers", [(1,)], ["spend"]) == [{"spend": 10.0}]
    if online.kind == "postgresql":
        (idle,) = online.reader._pool._idle  # type: ignore[attr-defined]
        online._admin.execute("SELECT pg_terminate_backend(%s)", (idle.info.backend_pid,))
    else:
        client = online.reader._client  # type: ignore[attr-defined]
        assert online._admin.client_kill_filter(_id=client.client_id()) == 1
    assert online.reader.lookup("main.fs.customers", [(1,)], ["spend"]) == [{"spend": 10.0}]
