"""Feature tables: Delta tables with primary keys, created, merged, read, listed and dropped."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import orjson
import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake

from modelport.errors import InvalidParameterValue, ResourceAlreadyExists, ResourceDoesNotExist
from modelport.tables.features import (
    PRIMARY_KEYS_PROPERTY,
    FeatureTables,
    arrow_type,
    schema_from_columns,
)

SCHEMA = pa.schema([("customer_id", pa.int64()), ("spend", pa.float64()), ("segment", pa.string())])
TS_SCHEMA = pa.schema(
    [("customer_id", pa.int64()), ("ts", pa.timestamp("us", tz="UTC")), ("spend", pa.float64())]
)


def utc(day: int) -> dt.datetime:
    return dt.datetime(2024, 1, day, tzinfo=dt.UTC)


def rows(table: pa.Table, *keys: str) -> list[dict[str, object]]:
    return table.sort_by([(k, "ascending") for k in keys]).to_pylist()


@pytest.fixture
def tables(tmp_path: Path) -> FeatureTables:
    return FeatureTables(str(tmp_path))


def customers(tables: FeatureTables) -> None:
    data = pa.table({"customer_id": [1, 2], "spend": [10.0, 20.0], "segment": ["a", "b"]})
    tables.create("main.fs.customers", ["customer_id"], SCHEMA, description="spend", data=data)


# -- create -----------------------------------------------------------------------------------------


def test_create_stores_keys_in_table_properties_and_lives_under_the_root(
    tables: FeatureTables, tmp_path: Path
) -> None:
    info = tables.create("Main.FS.Customers", ["customer_id"], SCHEMA, description="Customer spend")
    assert info.name == "main.fs.customers"
    assert info.primary_keys == ["customer_id"]
    assert info.timestamp_keys == []
    assert info.description == "Customer spend"
    assert info.version == 0
    assert info.columns == [
        {"name": "customer_id", "type": "int64", "nullable": False},
        {"name": "spend", "type": "double", "nullable": True},
        {"name": "segment", "type": "string", "nullable": True},
    ]
    assert info.feature_names == ["spend", "segment"]
    delta = DeltaTable(str(tmp_path / "main" / "fs" / "customers"))
    assert delta.metadata().configuration[PRIMARY_KEYS_PROPERTY] == '["customer_id"]'
    assert info.created_ms <= info.updated_ms


def test_create_with_data_writes_version_one(tables: FeatureTables) -> None:
    customers(tables)
    info = tables.get("main.fs.customers")
    assert info.version == 1
    assert rows(tables.read("main.fs.customers"), "customer_id") == [
        {"customer_id": 1, "spend": 10.0, "segment": "a"},
        {"customer_id": 2, "spend": 20.0, "segment": "b"},
    ]


def test_create_with_bad_data_creates_nothing(tables: FeatureTables) -> None:
    data = pa.table({"customer_id": [1, None], "spend": [1.0, 2.0]})
    with pytest.raises(InvalidParameterValue, match="Key column 'customer_id'"):
        tables.create("main.fs.customers", ["customer_id"], SCHEMA, data=data)
    assert tables.list() == []


def test_types_are_normalised_to_what_delta_stores(tables: FeatureTables) -> None:
    schema = pa.schema(
        [
            ("id", pa.int32()),
            ("ts", pa.timestamp("ns")),
            ("name", pa.large_string()),
            ("emb", pa.large_list(pa.float32())),
        ]
    )
    info = tables.create("main.fs.t", ["id"], schema, timestamp_keys=["ts"])
    assert [(c["name"], c["type"], c["nullable"]) for c in info.columns] == [
        ("id", "int32", False),
        ("ts", "timestamp[us, tz=UTC]", False),
        ("name", "string", True),
        ("emb", "list<element: float>", True),
    ]


def test_a_timestamp_key_listed_among_the_primary_keys_is_taken_out_of_them(tables: FeatureTables) -> None:
    info = tables.create("main.fs.t", ["customer_id", "ts"], TS_SCHEMA, timestamp_keys=["ts"])
    assert info.primary_keys == ["customer_id"]
    assert info.timestamp_keys == ["ts"]
    assert info.feature_names == ["spend"]


@pytest.mark.parametrize(
    ("primary_keys", "timestamp_keys", "schema", "message"),
    [
        (["nope"], None, SCHEMA, "Key 'nope' of feature table 'main.fs.t' is not one of its columns"),
        ([], None, SCHEMA, "needs at least one primary key"),
        (["customer_id", "customer_id"], None, SCHEMA, "repeat a column"),
        (["customer_id"], ["spend"], SCHEMA, "Timestamp key 'spend' .* must be a timestamp or date column"),
        (["customer_id"], ["ts", "spend"], TS_SCHEMA, "at most one timestamp key"),
        (["customer_id"], None, pa.schema([("customer_id", pa.uint64())]), "'customer_id' has type uint64"),
        (["customer_id"], None, pa.schema([]), "at least one column"),
    ],
)
def test_bad_keys_and_types_are_refused_naming_them(
    tables: FeatureTables,
    primary_keys: list[str],
    timestamp_keys: list[str] | None,
    schema: pa.Schema,
    message: str,
) -> None:
    with pytest.raises(InvalidParameterValue, match=message):
        tables.create("main.fs.t", primary_keys, schema, timestamp_keys=timestamp_keys)
    with pytest.raises(ResourceDoesNotExist):
        tables.get("main.fs.t")


@pytest.mark.parametrize("name", ["main.fs", "a.b.c.d", "main.fs.bad-name", "main..t"])
def test_bad_names_are_refused(tables: FeatureTables, name: str) -> None:
    with pytest.raises(InvalidParameterValue):
        tables.create(name, ["customer_id"], SCHEMA)


def test_create_refuses_an_existing_table_feature_table_or_not(tables: FeatureTables, tmp_path: Path) -> None:
    customers(tables)
    with pytest.raises(ResourceAlreadyExists, match=re.escape("main.fs.customers")):
        tables.create("main.fs.customers", ["customer_id"], SCHEMA)
    write_deltalake(str(tmp_path / "main" / "default" / "chat_payload"), pa.table({"x": [1]}))
    with pytest.raises(ResourceAlreadyExists, match=re.escape("main.default.chat_payload")):
        tables.create("main.default.chat_payload", ["x"], pa.schema([("x", pa.int64())]))
    assert DeltaTable(str(tmp_path / "main" / "default" / "chat_payload")).version() == 0


# -- write ------------------------------------------------------------------------------------------


def test_merge_replaces_matched_rows_and_appends_new_keys_in_one_commit(tables: FeatureTables) -> None:
    customers(tables)
    update = pa.table({"customer_id": [2, 3], "spend": [25.0, 30.0], "segment": ["c", "d"]})
    info = tables.write("main.fs.customers", update)
    assert info.version == 2
    assert rows(tables.read("main.fs.customers"), "customer_id") == [
        {"customer_id": 1, "spend": 10.0, "segment": "a"},
        {"customer_id": 2, "spend": 25.0, "segment": "c"},
        {"customer_id": 3, "spend": 30.0, "segment": "d"},
    ]
    history = DeltaTable(tables._resolve("main.fs.customers")[1]).history(1)
    assert history[0]["operation"] == "MERGE"


def test_merge_with_some_columns_keeps_the_others_and_nulls_them_in_new_rows(tables: FeatureTables) -> None:
    customers(tables)
    tables.write("main.fs.customers", pa.table({"customer_id": [1, 5], "spend": [11.0, 50.0]}))
    assert rows(tables.read("main.fs.customers"), "customer_id") == [
        {"customer_id": 1, "spend": 11.0, "segment": "a"},
        {"customer_id": 2, "spend": 20.0, "segment": "b"},
        {"customer_id": 5, "spend": 50.0, "segment": None},
    ]


def test_merge_with_a_timestamp_key_upserts_on_key_and_time(tables: FeatureTables) -> None:
    first = pa.table({"customer_id": [1, 1], "ts": [utc(1), utc(2)], "spend": [1.0, 2.0]}, schema=TS_SCHEMA)
    tables.create("main.fs.ts", ["customer_id"], TS_SCHEMA, timestamp_keys=["ts"], data=first)
    # A naive nanosecond timestamp (what pandas makes) is taken as UTC.
    naive = pa.array([dt.datetime(2024, 1, 2), dt.datetime(2024, 1, 3)], pa.timestamp("ns"))
    tables.write("main.fs.ts", pa.table({"customer_id": [1, 1], "ts": naive, "spend": [20.0, 3.0]}))
    assert rows(tables.read("main.fs.ts"), "customer_id", "ts") == [
        {"customer_id": 1, "ts": utc(1), "spend": 1.0},
        {"customer_id": 1, "ts": utc(2), "spend": 20.0},
        {"customer_id": 1, "ts": utc(3), "spend": 3.0},
    ]


def test_overwrite_replaces_every_row_and_nulls_missing_columns(tables: FeatureTables) -> None:
    customers(tables)
    info = tables.write(
        "main.fs.customers", pa.table({"customer_id": [7], "spend": [70.0]}), mode="overwrite"
    )
    assert info.version == 2
    assert tables.read("main.fs.customers").to_pylist() == [
        {"customer_id": 7, "spend": 70.0, "segment": None}
    ]


def test_values_are_cast_to_the_table_types(tables: FeatureTables) -> None:
    customers(tables)
    data = pa.table({"customer_id": pa.array([3], pa.int32()), "spend": pa.array([1], pa.int64())})
    tables.write("main.fs.customers", data)
    table = tables.read("main.fs.customers")
    assert table.schema.field("customer_id").type == pa.int64()
    assert rows(table, "customer_id")[-1] == {"customer_id": 3, "spend": 1.0, "segment": None}


def test_merging_no_rows_makes_no_commit(tables: FeatureTables) -> None:
    customers(tables)
    empty = pa.table({"customer_id": pa.array([], pa.int64())})
    assert tables.write("main.fs.customers", empty).version == 1


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            pa.table({"customer_id": [1], "colour": ["red"], "size": [1]}),
            "has no column\\(s\\) 'colour', 'size'",
        ),
        (pa.table({"spend": [1.0]}), "lacks key column 'customer_id'"),
        (pa.table({"customer_id": [1, None]}), "Key column 'customer_id' .* holds 1 null"),
        (pa.table({"customer_id": [1, 1], "spend": [1.0, 2.0]}), "1 key\\(s\\) on more than one row"),
        (pa.table({"customer_id": [1], "spend": ["lots"]}), "Column 'spend' of feature table .* is double"),
    ],
)
def test_bad_data_is_refused_naming_the_column(tables: FeatureTables, data: pa.Table, message: str) -> None:
    customers(tables)
    with pytest.raises(InvalidParameterValue, match=message):
        tables.write("main.fs.customers", data)
    assert tables.get("main.fs.customers").version == 1


def test_write_refuses_an_unknown_mode(tables: FeatureTables) -> None:
    customers(tables)
    with pytest.raises(InvalidParameterValue, match="mode"):
        tables.write("main.fs.customers", pa.table({"customer_id": [1]}), mode="append")  # type: ignore[arg-type]


# -- read, get, list, drop --------------------------------------------------------------------------


def test_read_an_earlier_version_and_a_missing_one(tables: FeatureTables) -> None:
    customers(tables)
    tables.write("main.fs.customers", pa.table({"customer_id": [9]}), mode="overwrite")
    assert tables.read("main.fs.customers", version=1).num_rows == 2
    assert tables.read("main.fs.customers").num_rows == 1
    with pytest.raises(ResourceDoesNotExist, match="no version 7"):
        tables.read("main.fs.customers", version=7)


def test_a_delta_table_without_keys_is_not_a_feature_table(tables: FeatureTables, tmp_path: Path) -> None:
    write_deltalake(str(tmp_path / "main" / "default" / "chat_payload"), pa.table({"x": [1]}))
    with pytest.raises(
        ResourceDoesNotExist, match=re.escape("'main.default.chat_payload' is not a feature table")
    ):
        tables.get("main.default.chat_payload")
    with pytest.raises(ResourceDoesNotExist, match="not a feature table"):
        tables.read("main.default.chat_payload")
    with pytest.raises(ResourceDoesNotExist, match=re.escape("Feature table 'main.fs.nope' does not exist")):
        tables.get("main.fs.nope")


def test_list_shows_only_feature_tables_by_name(tables: FeatureTables, tmp_path: Path) -> None:
    tables.create("main.fs.zeta", ["customer_id"], SCHEMA)
    customers(tables)
    write_deltalake(str(tmp_path / "main" / "default" / "chat_payload"), pa.table({"x": [1]}))
    listed = tables.list()
    assert [(i.name, i.version) for i in listed] == [("main.fs.customers", 1), ("main.fs.zeta", 0)]


def test_drop_removes_a_feature_table_and_nothing_else(tables: FeatureTables, tmp_path: Path) -> None:
    customers(tables)
    tables.drop("MAIN.fs.customers")
    assert not (tmp_path / "main" / "fs" / "customers").exists()
    with pytest.raises(ResourceDoesNotExist):
        tables.get("main.fs.customers")
    write_deltalake(str(tmp_path / "main" / "default" / "chat_payload"), pa.table({"x": [1]}))
    with pytest.raises(ResourceDoesNotExist, match="not a feature table"):
        tables.drop("main.default.chat_payload")
    assert DeltaTable(str(tmp_path / "main" / "default" / "chat_payload")).version() == 0


def test_updated_ms_follows_the_last_commit(tables: FeatureTables) -> None:
    customers(tables)
    before = tables.get("main.fs.customers")
    info = tables.write("main.fs.customers", pa.table({"customer_id": [3]}))
    history = DeltaTable(tables._resolve("main.fs.customers")[1]).history(1)
    assert info.updated_ms == history[0]["timestamp"]
    assert info.updated_ms >= before.updated_ms
    assert info.created_ms == before.created_ms


def test_info_to_json_is_json_ready(tables: FeatureTables) -> None:
    customers(tables)
    info = tables.get("main.fs.customers")
    body = orjson.loads(orjson.dumps(info.to_json()))
    assert body == {
        "name": "main.fs.customers",
        "primary_keys": ["customer_id"],
        "timestamp_keys": [],
        "description": "spend",
        "columns": [
            {"name": "customer_id", "type": "int64", "nullable": False},
            {"name": "spend", "type": "double", "nullable": True},
            {"name": "segment", "type": "string", "nullable": True},
        ],
        "version": 1,
        "created_ms": info.created_ms,
        "updated_ms": info.updated_ms,
    }


# -- type names -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("int64", pa.int64()),
        ("BIGINT", pa.int64()),
        ("double", pa.float64()),
        ("float", pa.float32()),
        ("boolean", pa.bool_()),
        ("string", pa.string()),
        ("date", pa.date32()),
        ("timestamp", pa.timestamp("us", tz="UTC")),
        ("timestamp[ns, tz=Europe/Paris]", pa.timestamp("us", tz="UTC")),
        ("decimal(10, 2)", pa.decimal128(10, 2)),
        ("array<double>", pa.list_(pa.float64())),
        ("list<item: float>", pa.list_(pa.float32())),
    ],
)
def test_arrow_type_reads_arrow_and_spark_names(text: str, expected: pa.DataType) -> None:
    assert arrow_type(text) == expected


def test_schema_from_columns_names_the_bad_column() -> None:
    schema = schema_from_columns(
        [{"name": "id", "type": "bigint", "nullable": False}, {"name": "x", "type": "double"}]
    )
    assert schema == pa.schema([pa.field("id", pa.int64(), nullable=False), ("x", pa.float64())])
    with pytest.raises(InvalidParameterValue, match="Column 'x' has an unsupported type 'complex'"):
        schema_from_columns([{"name": "x", "type": "complex"}])
    with pytest.raises(InvalidParameterValue, match="Unsupported column type 'decimal\\(50, 2\\)'"):
        arrow_type("decimal(50, 2)")
