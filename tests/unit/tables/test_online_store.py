"""The embedded online store: publish feature tables into SQLite, look rows up by key."""

from __future__ import annotations

import datetime as dt
import decimal
import re
import sqlite3
import threading
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from modelport.errors import InvalidParameterValue, TemporarilyUnavailable
from modelport.tables.features import FeatureTableInfo, FeatureTables
from modelport.tables.online_store import OnlineReader, OnlineStore

DAY_MS = 86_400_000


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


CUSTOMERS = pa.table({"customer_id": [1, 2, 3], "spend": [10.0, 20.0, 30.0], "segment": ["a", "b", None]})


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "online" / "features.sqlite"


@pytest.fixture
def store(path: Path) -> OnlineStore:
    return OnlineStore(path)


@pytest.fixture
def reader(path: Path, store: OnlineStore) -> OnlineReader:
    return OnlineReader(path)


# -- publish and state ------------------------------------------------------------------------------


def test_publish_returns_the_state_and_the_file_is_in_wal_mode(store: OnlineStore, path: Path) -> None:
    state = store.publish(info(), CUSTOMERS, mode="snapshot")
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
    assert store.state("MAIN.fs.customers") == {**state, "published_ms": published_ms}
    assert store.state("main.fs.other") is None
    with sqlite3.connect(path) as con:
        assert con.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_states_lists_every_published_table_by_name(store: OnlineStore) -> None:
    store.publish(info("main.fs.zeta"), CUSTOMERS, mode="continuous")
    store.publish(info(), CUSTOMERS, mode="triggered")
    assert [(s["name"], s["mode"]) for s in store.states()] == [
        ("main.fs.customers", "triggered"),
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
def test_bad_publishes_are_refused(store: OnlineStore, data: pa.Table, mode: str, message: str) -> None:
    with pytest.raises(InvalidParameterValue, match=message):
        store.publish(info(), data, mode=mode)
    assert store.states() == []


def test_a_repeated_key_keeps_its_last_row(store: OnlineStore, reader: OnlineReader) -> None:
    data = pa.table({"customer_id": [1, 2, 1], "spend": [1.0, 2.0, 3.0]})
    assert store.publish(info(), data, mode="snapshot")["rows"] == 2
    assert reader.lookup("main.fs.customers", [(1,)]) == [{"spend": 3.0}]


def test_published_tables_survive_reopening_the_store(store: OnlineStore, path: Path) -> None:
    store.publish(info(), CUSTOMERS, mode="snapshot")
    store.close()
    again = OnlineStore(path)
    assert again.state("main.fs.customers") is not None
    assert OnlineReader(path).lookup("main.fs.customers", [(2,)]) == [{"spend": 20.0, "segment": "b"}]


# -- lookup -----------------------------------------------------------------------------------------


def test_lookup_answers_in_key_order_with_none_for_missing_keys(
    store: OnlineStore, reader: OnlineReader
) -> None:
    store.publish(info(), CUSTOMERS, mode="snapshot")
    assert reader.lookup("main.fs.customers", [(3,), (9,), (1,), (1,)]) == [
        {"spend": 30.0, "segment": None},
        None,
        {"spend": 10.0, "segment": "a"},
        {"spend": 10.0, "segment": "a"},
    ]
    assert reader.lookup("main.fs.customers", [(2,)], ["segment", "customer_id"]) == [
        {"segment": "b", "customer_id": 2}
    ]
    assert reader.lookup("main.fs.customers", []) == []


def test_values_come_back_as_python_scalars(store: OnlineStore, reader: OnlineReader) -> None:
    data = pa.table(
        {
            "customer_id": [1],
            "flag": [True],
            "nan": [float("nan")],
            "seen": pa.array([dt.datetime(2024, 5, 1, 12, 30, 0, 5)], pa.timestamp("us", tz="UTC")),
            "naive_ns": pa.array([1_714_564_800_000_001_999], pa.timestamp("ns")),
            "day": pa.array([dt.date(2024, 5, 1)], pa.date32()),
            "emb": [[0.5, 1.5]],
            "attrs": [{"a": 1, "b": "x"}],
            "raw": [b"\x00\x01"],
            "price": pa.array([decimal.Decimal("1.25")], pa.decimal128(5, 2)),
            "small": pa.array([7], pa.int8()),
        }
    )
    store.publish(info(), data, mode="snapshot")
    assert reader.lookup("main.fs.customers", [(1,)]) == [
        {
            "flag": True,
            "nan": None,
            "seen": "2024-05-01T12:30:00.000005+00:00",
            "naive_ns": "2024-05-01T12:00:00.000001+00:00",
            "day": "2024-05-01",
            "emb": [0.5, 1.5],
            "attrs": {"a": 1, "b": "x"},
            "raw": b"\x00\x01",
            "price": 1.25,
            "small": 7,
        }
    ]


def test_composite_keys_and_key_values_are_coerced_to_the_key_types(
    store: OnlineStore, reader: OnlineReader
) -> None:
    data = pa.table({"user": [1, 1, 2], "item": ["x", "y", "x"], "score": [0.1, 0.2, 0.3]})
    store.publish(info("main.fs.pairs", ["user", "item"]), data, mode="snapshot")
    keys = [(np.int64(1), "y"), ("2", "x"), (2.0, "y"), (1, np.str_("x"))]
    assert reader.lookup("main.fs.pairs", keys) == [{"score": 0.2}, {"score": 0.3}, None, {"score": 0.1}]


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
def test_bad_keys_are_refused_naming_the_key(
    store: OnlineStore, reader: OnlineReader, key: tuple[object, ...], message: str
) -> None:
    store.publish(
        info("main.fs.pairs", ["user", "item"]), pa.table({"user": [1], "item": ["x"]}), mode="snapshot"
    )
    with pytest.raises(InvalidParameterValue, match=message):
        reader.lookup("main.fs.pairs", [key])


def test_a_null_key_finds_no_row(store: OnlineStore, reader: OnlineReader) -> None:
    store.publish(info(), CUSTOMERS, mode="snapshot")
    assert reader.lookup("main.fs.customers", [(None,), (1,)]) == [None, {"spend": 10.0, "segment": "a"}]


@pytest.mark.parametrize("limit", [250_000, 999])
def test_a_large_batch_is_answered_whole(store: OnlineStore, reader: OnlineReader, limit: int) -> None:
    n = 5_000
    store.publish(
        info(),
        pa.table({"customer_id": list(range(n)), "spend": [float(i) for i in range(n)]}),
        mode="snapshot",
    )
    reader.lookup("main.fs.customers", [(0,)])
    con = reader._connection()
    assert con is not None
    con.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, limit)  # 999: batches of 499 keys
    keys = [(i,) for i in range(n + 4, -1, -1)]  # 5 unknown keys first
    out = reader.lookup("main.fs.customers", keys)
    assert out[:6] == [None] * 5 + [{"spend": float(n - 1)}]
    assert out[-1] == {"spend": 0.0}
    assert [r["spend"] if r else None for r in out[5:]] == [float(i) for i in range(n - 1, -1, -1)]


# -- point in time ----------------------------------------------------------------------------------


@pytest.fixture
def history(store: OnlineStore) -> None:
    ts = pa.array([ms(1), ms(5), ms(10), ms(3)], pa.timestamp("ms", tz="UTC"))
    data = pa.table({"customer_id": [1, 1, 1, 2], "ts": ts, "spend": [1.0, 5.0, 10.0, 3.0]})
    store.publish(info("main.fs.history", ts=["ts"]), data, mode="snapshot")


@pytest.mark.usefixtures("history")
def test_without_as_of_the_latest_row_per_key(reader: OnlineReader) -> None:
    assert reader.lookup("main.fs.history", [(1,), (2,), (3,)]) == [{"spend": 10.0}, {"spend": 3.0}, None]


@pytest.mark.usefixtures("history")
def test_as_of_takes_the_latest_row_at_or_before_it(reader: OnlineReader) -> None:
    as_of = [ms(5), ms(5) - 1, ms(1) - 1, None, ms(2)]
    keys = [(1,), (1,), (1,), (1,), (2,)]
    assert reader.lookup("main.fs.history", keys, as_of_ms=as_of) == [
        {"spend": 5.0},
        {"spend": 1.0},
        None,
        {"spend": 10.0},
        None,
    ]
    assert reader.lookup("main.fs.history", [(1,)], ["ts", "spend"], as_of_ms=[ms(7)]) == [
        {"ts": "2024-01-05T00:00:00+00:00", "spend": 5.0}
    ]


@pytest.mark.usefixtures("history")
def test_the_lookback_window_bounds_how_old_a_row_may_be(reader: OnlineReader) -> None:
    keys = [(1,), (1,), (1,)]
    as_of = [ms(7), ms(6), ms(9)]
    assert reader.lookup("main.fs.history", keys, as_of_ms=as_of, lookback_ms=2 * DAY_MS) == [
        {"spend": 5.0},
        {"spend": 5.0},
        None,
    ]
    assert reader.lookup("main.fs.history", [(1,)], as_of_ms=[ms(5)], lookback_ms=0) == [{"spend": 5.0}]
    assert reader.lookup("main.fs.history", [(1,)], as_of_ms=[ms(6)], lookback_ms=0) == [None]


@pytest.mark.usefixtures("history")
def test_as_of_accepts_datetimes_and_must_match_the_keys(reader: OnlineReader) -> None:
    at = dt.datetime(2024, 1, 6, tzinfo=dt.UTC)
    assert reader.lookup("main.fs.history", [(1,)], as_of_ms=[at]) == [{"spend": 5.0}]  # type: ignore[list-item]
    with pytest.raises(InvalidParameterValue, match="as_of_ms has 1 values for 2 keys"):
        reader.lookup("main.fs.history", [(1,), (2,)], as_of_ms=[ms(1)])
    with pytest.raises(InvalidParameterValue, match="lookback_ms must not be negative"):
        reader.lookup("main.fs.history", [(1,)], as_of_ms=[ms(1)], lookback_ms=-1)


def test_a_date_timestamp_key_compares_by_midnight_utc(store: OnlineStore, reader: OnlineReader) -> None:
    days = pa.array([dt.date(2024, 1, 1), dt.date(2024, 1, 5)], pa.date32())
    store.publish(
        info("main.fs.daily", ts=["day"]),
        pa.table({"customer_id": [1, 1], "day": days, "n": [1, 5]}),
        mode="snapshot",
    )
    assert reader.lookup("main.fs.daily", [(1,), (1,)], ["day", "n"], as_of_ms=[ms(5), ms(5) - 1]) == [
        {"day": "2024-01-05", "n": 5},
        {"day": "2024-01-01", "n": 1},
    ]


def test_as_of_is_ignored_without_a_timestamp_key(store: OnlineStore, reader: OnlineReader) -> None:
    store.publish(info(), CUSTOMERS, mode="snapshot")
    assert reader.lookup("main.fs.customers", [(1,)], ["spend"], as_of_ms=[0]) == [{"spend": 10.0}]


# -- errors, republish, drop ------------------------------------------------------------------------


def test_a_table_not_published_is_temporarily_unavailable(store: OnlineStore, reader: OnlineReader) -> None:
    message = "Feature table 'main.fs.customers' is not published to the online store."
    with pytest.raises(TemporarilyUnavailable, match=re.escape(message)) as caught:
        reader.lookup("main.fs.customers", [(1,)])
    assert caught.value.status == 503


def test_a_missing_file_means_nothing_is_published_until_it_appears(tmp_path: Path) -> None:
    path = tmp_path / "later.sqlite"
    reader = OnlineReader(path)
    with pytest.raises(TemporarilyUnavailable, match="not published"):
        reader.lookup("main.fs.customers", [(1,)])
    OnlineStore(path).publish(info(), CUSTOMERS, mode="snapshot")
    assert reader.lookup("main.fs.customers", [(1,)], ["spend"]) == [{"spend": 10.0}]


def test_a_feature_the_published_table_lacks_names_table_and_feature(
    store: OnlineStore, reader: OnlineReader
) -> None:
    store.publish(info(), CUSTOMERS, mode="snapshot")
    message = "Feature table 'main.fs.customers' published to the online store has no feature 'age', 'zip'."
    with pytest.raises(TemporarilyUnavailable, match=re.escape(message)):
        reader.lookup("main.fs.customers", [(1,)], ["spend", "age", "zip"])


def test_a_republish_replaces_the_rows_for_a_reader_that_read_the_old_ones(
    store: OnlineStore, reader: OnlineReader, path: Path
) -> None:
    store.publish(info(), CUSTOMERS, mode="snapshot")
    assert reader.lookup("main.fs.customers", [(1,), (2,)]) == [
        {"spend": 10.0, "segment": "a"},
        {"spend": 20.0, "segment": "b"},
    ]
    store.publish(
        info(), pa.table({"customer_id": [2, 4], "spend": [22.0, 44.0], "age": [30, 40]}), mode="triggered"
    )
    assert reader.lookup("main.fs.customers", [(1,), (2,)]) == [None, {"spend": 22.0, "age": 30}]
    assert reader.lookup("main.fs.customers", [(4,)], ["age"]) == [{"age": 40}]
    with sqlite3.connect(path) as con:  # the old rows' table is gone
        tables = con.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").fetchall()
    assert tables == [("g2",), ("online_meta",), ("online_tables",)]


def test_a_reader_told_a_feature_is_missing_sees_it_once_a_table_with_it_is_published(
    store: OnlineStore, reader: OnlineReader
) -> None:
    store.publish(info(), CUSTOMERS, mode="snapshot")
    assert reader.lookup("main.fs.customers", [(1,)], ["segment"]) == [{"segment": "a"}]
    store.publish(info(), pa.table({"customer_id": [1], "spend": [11.0]}), mode="snapshot")
    with pytest.raises(TemporarilyUnavailable, match="has no feature 'segment'"):
        reader.lookup("main.fs.customers", [(1,)], ["segment"])
    store.publish(info(), CUSTOMERS, mode="snapshot")  # compatible again: the endpoint heals
    assert reader.lookup("main.fs.customers", [(1,)], ["segment"]) == [{"segment": "a"}]


def test_drop_takes_the_table_out_and_ignores_unknown_ones(store: OnlineStore, reader: OnlineReader) -> None:
    store.publish(info(), CUSTOMERS, mode="snapshot")
    assert reader.lookup("main.fs.customers", [(1,)], ["spend"]) == [{"spend": 10.0}]
    store.drop("main.fs.customers")
    store.drop("main.fs.never")
    assert store.state("main.fs.customers") is None
    with pytest.raises(TemporarilyUnavailable, match="not published"):
        reader.lookup("main.fs.customers", [(1,)])


def test_the_reader_never_writes_the_file(store: OnlineStore, reader: OnlineReader) -> None:
    store.publish(info(), CUSTOMERS, mode="snapshot")
    reader.lookup("main.fs.customers", [(1,)])
    con = reader._connection()
    assert con is not None
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        con.execute("DELETE FROM online_tables")


def test_lookups_from_several_threads_during_republishes_see_whole_publishes(
    store: OnlineStore, reader: OnlineReader
) -> None:
    n = 200
    store.publish(info(), pa.table({"customer_id": list(range(n)), "v": [0] * n}), mode="snapshot")
    errors: list[BaseException] = []
    seen: set[int] = set()
    stop = threading.Event()

    def look() -> None:
        try:
            while not stop.is_set():
                rows = reader.lookup("main.fs.customers", [(i,) for i in range(n)])
                values = {r["v"] for r in rows if r is not None}
                assert len(values) == 1 and None not in rows  # one publish, never a mix
                seen.update(values)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=look) for _ in range(3)]
    for t in threads:
        t.start()
    for generation in range(1, 8):
        store.publish(
            info(), pa.table({"customer_id": list(range(n)), "v": [generation] * n}), mode="snapshot"
        )
    stop.set()
    for t in threads:
        t.join()
    assert errors == []
    assert reader.lookup("main.fs.customers", [(0,)]) == [{"v": 7}]
    assert seen <= set(range(8))


# -- with a feature table ---------------------------------------------------------------------------


def test_a_feature_table_published_at_its_version(
    tmp_path: Path, store: OnlineStore, reader: OnlineReader
) -> None:
    tables = FeatureTables(str(tmp_path / "tables"))
    schema = pa.schema(
        [("customer_id", pa.int64()), ("ts", pa.timestamp("us", tz="UTC")), ("spend", pa.float64())]
    )
    data = pa.table(
        {
            "customer_id": [1, 1],
            "ts": pa.array([ms(1), ms(3)], pa.timestamp("ms", tz="UTC")),
            "spend": [1.0, 3.0],
        }
    )
    tables.create("main.fs.spend", ["customer_id"], schema, timestamp_keys=["ts"], data=data)
    meta = tables.get("main.fs.spend")
    state = store.publish(meta, tables.read(meta.name, meta.version), mode="snapshot")
    assert (state["published_version"], state["rows"], state["timestamp_keys"]) == (1, 2, ["ts"])
    assert reader.lookup("main.fs.spend", [(1,), (1,)], meta.feature_names, as_of_ms=[ms(2), None]) == [
        {"spend": 1.0},
        {"spend": 3.0},
    ]
