"""FeatureEvaluator: Databricks' lookup rules over a real embedded online store (``OnlineStore``
in ``tmp_path``), for request rows as dicts (``records``, the gateway's path) and as a DataFrame
(``frame``, the served model's path)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from modelport.errors import InvalidParameterValue, TemporarilyUnavailable
from modelport.tables.feature_functions import FunctionDef
from modelport.tables.feature_lookup import FeatureEvaluator
from modelport.tables.feature_spec import FeatureColumn, FeatureSpec, FunctionColumn, SourceColumn, TableInfo
from modelport.tables.features import FeatureTableInfo
from modelport.tables.online_store import OnlineReader, OnlineStore

USERS = "main.fs.users"
EVENTS = "main.fs.events"
UTC_US = pa.timestamp("us", tz="UTC")

USERS_DATA = pa.table(
    {
        "user_id": pa.array([1, 2, 3], pa.int64()),
        "spend": [10.0, 20.0, None],
        "visits": pa.array([5, 6, 7], pa.int64()),
        "segment": ["a", "b", "c"],
        "vip": [True, False, True],
        "joined": pa.array([dt.date(2020, 1, d) for d in (1, 2, 3)], pa.date32()),
    }
)
EVENTS_DATA = pa.table(
    {
        "user_id": pa.array([1, 1, 2], pa.int64()),
        "ts": pa.array([dt.datetime(2024, 1, d, tzinfo=dt.UTC) for d in (1, 3, 2)], UTC_US),
        "clicks": pa.array([10, 30, 200], pa.int64()),
    }
)
RATIO = FunctionDef(
    name="main.fs.ratio",
    parameters=(("amount", "double"), ("spend", "double")),
    return_type="double",
    source="def ratio(amount, spend):\n    return None if amount is None else amount / spend\n",
    entry_point="ratio",
)
DOUBLED = FunctionDef(
    name="main.fs.doubled",
    parameters=(("x", "double"),),
    return_type="double",
    source="def doubled(x):\n    return None if x is None else 2 * x\n",
    entry_point="doubled",
)


def _info(name: str, data: pa.Table, keys: list[str], ts: list[str]) -> FeatureTableInfo:
    columns = [{"name": f.name, "type": str(f.type), "nullable": True} for f in data.schema]
    return FeatureTableInfo(name, keys, ts, "", columns, 1, 0, 0)


def _publish(path: Path, tables: dict[str, pa.Table]) -> Path:
    store = OnlineStore(path)
    for name, data in tables.items():
        keys, ts = (["user_id"], ["ts"]) if name == EVENTS else (["user_id"], [])
        store.publish(_info(name, data, keys, ts), data, mode="snapshot")
    store.close()
    return path


def _feature(name: str, data_type: str, *, default: str | None = None, include: bool = True) -> FeatureColumn:
    return FeatureColumn(
        name, USERS, name, ("user_id",), default_value=default, data_type=data_type, include=include
    )


def _spec() -> FeatureSpec:
    """user_id (key), amount (request input), ts (excluded: the point in time), the users'
    features, the events' clicks at ts within a day, and two functions: ratio(amount, spend),
    then doubled(ratio)."""
    return FeatureSpec(
        columns=(
            SourceColumn("user_id", "bigint"),
            SourceColumn("amount", "double"),
            SourceColumn("ts", "timestamp", include=False),
            _feature("spend", "double", default="1.0"),
            _feature("visits", "bigint"),
            _feature("segment", "string", default="none"),
            _feature("vip", "boolean"),
            _feature("joined", "date"),
            FeatureColumn(
                "clicks", EVENTS, "clicks", ("user_id",), ("ts",), default_value="-1", data_type="bigint"
            ),
            FunctionColumn("ratio", RATIO.name, (("amount", "amount"), ("spend", "spend")), "double"),
            FunctionColumn("doubled", DOUBLED.name, (("x", "ratio"),), "double"),
        ),
        tables=(TableInfo(USERS), TableInfo(EVENTS, lookback_window=86400.0)),
        functions=(RATIO, DOUBLED),
    )


class CountingReader(OnlineReader):
    """The real reader, recording each lookup: (table, keys, columns)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.calls: list[tuple[str, list[tuple[Any, ...]], list[str] | None]] = []

    def lookup(
        self, name: str, keys: list[tuple[Any, ...]], columns: list[str] | None = None, **kw: Any
    ) -> Any:
        self.calls.append((name, list(keys), columns))
        return super().lookup(name, keys, columns, **kw)


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return _publish(tmp_path / "online.sqlite", {USERS: USERS_DATA, EVENTS: EVENTS_DATA})


@pytest.fixture
def reader(store: Path) -> CountingReader:
    return CountingReader(store)


@pytest.fixture
def evaluator(reader: CountingReader) -> FeatureEvaluator:
    return FeatureEvaluator(_spec(), reader)


def _row(
    user_id: Any = 1, amount: Any = 50.0, ts: Any = "2024-01-03T12:00:00", **more: Any
) -> dict[str, Any]:
    return {"user_id": user_id, "amount": amount, "ts": ts, **more}


# ---- records ----------------------------------------------------------------------------------


def test_records_give_the_included_columns_in_spec_order_json_ready(evaluator: FeatureEvaluator) -> None:
    (out,) = evaluator.records([_row()])
    assert out == {
        "user_id": 1,
        "amount": 50.0,
        "spend": 10.0,
        "visits": 5,
        "segment": "a",
        "vip": True,
        "joined": "2020-01-01",
        "clicks": 30,
        "ratio": 5.0,
        "doubled": 10.0,
    }
    assert list(out) == [
        "user_id",
        "amount",
        "spend",
        "visits",
        "segment",
        "vip",
        "joined",
        "clicks",
        "ratio",
        "doubled",
    ]


def test_one_lookup_per_table_for_a_batch(evaluator: FeatureEvaluator, reader: CountingReader) -> None:
    evaluator.records([_row(1), _row(2), _row(3), _row(9)])
    assert sorted((name, len(keys), columns) for name, keys, columns in reader.calls) == [
        (EVENTS, 4, ["clicks"]),
        (USERS, 4, ["spend", "visits", "segment", "vip", "joined"]),
    ]


def test_two_key_groups_of_one_table_share_its_one_lookup(store: Path) -> None:
    reader = CountingReader(store)
    spec = FeatureSpec(
        columns=(
            SourceColumn("sender", "bigint"),
            SourceColumn("receiver", "bigint"),
            FeatureColumn("sender_spend", USERS, "spend", ("sender",), data_type="double"),
            FeatureColumn("receiver_spend", USERS, "spend", ("receiver",), data_type="double"),
        ),
        tables=(TableInfo(USERS),),
    )
    out = FeatureEvaluator(spec, reader).records([{"sender": 1, "receiver": 2}, {"sender": 2, "receiver": 9}])
    assert out == [
        {"sender": 1, "receiver": 2, "sender_spend": 10.0, "receiver_spend": 20.0},
        {"sender": 2, "receiver": 9, "sender_spend": 20.0, "receiver_spend": None},
    ]
    assert [(name, keys) for name, keys, _ in reader.calls] == [(USERS, [(1,), (2,), (2,), (9,)])]


@pytest.mark.parametrize("column", ["user_id", "amount", "ts"])
def test_a_missing_required_column_is_named(evaluator: FeatureEvaluator, column: str) -> None:
    row = _row()
    del row[column]
    # ts is excluded from the output, yet required (as in Databricks).
    with pytest.raises(InvalidParameterValue, match=f"Input is missing columns \\['{column}'\\]"):
        evaluator.records([row])


def test_a_column_absent_from_some_rows_only_is_null_there(evaluator: FeatureEvaluator) -> None:
    rows = [_row(1), {"user_id": 2, "ts": "2024-01-02T00:00:00"}]
    out = evaluator.records(rows)
    assert out[1]["amount"] is None and out[1]["ratio"] is None


def test_a_null_lookup_key_is_named(evaluator: FeatureEvaluator) -> None:
    with pytest.raises(InvalidParameterValue, match="null values for lookup_key columns \\['user_id'\\]"):
        evaluator.records([_row(1), _row(None)])


def test_a_key_with_no_row_gets_nulls_then_defaults_and_is_counted(evaluator: FeatureEvaluator) -> None:
    (out,) = evaluator.records([_row(9)])
    assert out["spend"] == 1.0 and out["segment"] == "none"  # defaults
    assert out["visits"] is None and out["vip"] is None and out["joined"] is None  # no default
    assert out["clicks"] == -1
    assert evaluator.missing_rows == {USERS: 1, EVENTS: 1}
    evaluator.records([_row(1), _row(9)])
    assert evaluator.missing_rows == {USERS: 2, EVENTS: 2}


def test_a_stored_null_takes_the_default_too(evaluator: FeatureEvaluator) -> None:
    (out,) = evaluator.records([_row(3)])
    assert out["spend"] == 1.0 and out["ratio"] == 50.0
    assert evaluator.missing_rows == {USERS: 0, EVENTS: 1}


def test_point_in_time_within_the_lookback_window(evaluator: FeatureEvaluator) -> None:
    rows = [
        _row(1, ts="2024-01-03T12:00:00"),  # the 01-03 row
        _row(1, ts="2024-01-02T00:00:00"),  # the 01-01 row, 24 h back (inclusive)
        _row(2, ts="2024-01-05T00:00:00"),  # its 01-02 row is older than a day: the default
        _row(1, ts=None),  # a null time finds no row, as a training set's join
        _row(1, ts=dt.datetime(2024, 1, 3, 12)),  # a datetime works as ISO text does
    ]
    assert [r["clicks"] for r in evaluator.records(rows)] == [30, 10, -1, -1, 30]


def test_a_timestamp_that_is_not_one_is_named(evaluator: FeatureEvaluator) -> None:
    with pytest.raises(InvalidParameterValue, match="Column 'ts' must hold timestamps"):
        evaluator.records([_row(ts="yesterday")])


def test_a_fully_overridden_feature_is_not_looked_up(
    evaluator: FeatureEvaluator, reader: CountingReader
) -> None:
    out = evaluator.records([_row(1, clicks=7), _row(2, clicks=8)])
    assert [r["clicks"] for r in out] == [7, 8]
    assert EVENTS not in [name for name, _, _ in reader.calls]


def test_a_partly_overridden_feature_is_merged_cell_by_cell(evaluator: FeatureEvaluator) -> None:
    out = evaluator.records([_row(1, spend=100.0), _row(2, spend=None), _row(9)])
    assert [r["spend"] for r in out] == [100.0, 20.0, 1.0]
    assert [r["ratio"] for r in out] == [0.5, 2.5, 50.0]  # functions read the merged values


def test_function_outputs_are_overridden_fully_or_per_cell(evaluator: FeatureEvaluator) -> None:
    out = evaluator.records([_row(1, ratio=3.0), _row(2, ratio=None)])
    assert [r["ratio"] for r in out] == [3.0, 2.5]
    assert [r["doubled"] for r in out] == [6.0, 5.0]  # a later function reads the override
    out = evaluator.records([_row(1, doubled=1.0)])
    assert out[0]["doubled"] == 1.0 and out[0]["ratio"] == 5.0


def test_an_error_inside_a_function_names_it_and_the_row(store: Path) -> None:
    evaluator = FeatureEvaluator(_spec(), OnlineReader(store))
    with pytest.raises(
        InvalidParameterValue,
        match=r"Feature function main\.fs\.ratio \(column 'ratio'\) failed on row 1: ZeroDivisionError",
    ):
        evaluator.records([_row(1), _row(2, spend=0.0)])


def test_an_argument_of_the_wrong_type_is_a_400_naming_the_parameter(evaluator: FeatureEvaluator) -> None:
    with pytest.raises(
        InvalidParameterValue, match=r"main\.fs\.ratio .* row 0: .*parameter 'amount' \(double\)"
    ):
        evaluator.records([_row(amount="fifty")])


def test_no_rows_give_no_records(evaluator: FeatureEvaluator, reader: CountingReader) -> None:
    assert evaluator.records([]) == []
    assert reader.calls == []


# ---- the store changing under the spec -----------------------------------------------------------


def test_a_table_not_published_is_unavailable_naming_it(tmp_path: Path) -> None:
    store = _publish(tmp_path / "online.sqlite", {USERS: USERS_DATA})
    with pytest.raises(TemporarilyUnavailable, match=r"'main\.fs\.events' is not published"):
        FeatureEvaluator(_spec(), OnlineReader(store)).records([_row()])


def test_a_republished_table_without_a_feature_is_unavailable_naming_it(tmp_path: Path) -> None:
    store = _publish(
        tmp_path / "online.sqlite", {USERS: USERS_DATA.drop_columns(["vip"]), EVENTS: EVENTS_DATA}
    )
    with pytest.raises(TemporarilyUnavailable, match=r"'main\.fs\.users'.*no feature 'vip'"):
        FeatureEvaluator(_spec(), OnlineReader(store)).records([_row()])


@pytest.mark.parametrize(
    ("column", "values"),
    [("visits", ["5", "6", "7"]), ("spend", ["x", "y", "z"]), ("vip", [1, 0, 1]), ("segment", [1, 2, 3])],
)
def test_a_feature_of_another_type_is_unavailable_never_a_wrong_value(
    tmp_path: Path, column: str, values: list[Any]
) -> None:
    changed = USERS_DATA.set_column(USERS_DATA.schema.get_field_index(column), column, pa.array(values))
    store = _publish(tmp_path / "online.sqlite", {USERS: changed, EVENTS: EVENTS_DATA})
    evaluator = FeatureEvaluator(_spec(), OnlineReader(store))
    with pytest.raises(TemporarilyUnavailable, match=f"Feature '{column}' of table 'main.fs.users'"):
        evaluator.records([_row()])
    with pytest.raises(TemporarilyUnavailable, match=f"Feature '{column}' of table 'main.fs.users'"):
        evaluator.frame(pd.DataFrame([_row()]))


def test_an_integer_published_for_a_double_feature_still_reads(tmp_path: Path) -> None:
    changed = USERS_DATA.set_column(1, "spend", pa.array([10, 20, None], pa.int64()))
    store = _publish(tmp_path / "online.sqlite", {USERS: changed, EVENTS: EVENTS_DATA})
    (out,) = FeatureEvaluator(_spec(), OnlineReader(store)).records([_row()])
    assert out["spend"] == 10.0 and isinstance(out["spend"], float)


def test_a_reader_factory_is_called_once_on_the_first_lookup(store: Path) -> None:
    opened: list[OnlineReader] = []

    def open_reader() -> OnlineReader:
        opened.append(OnlineReader(store))
        return opened[-1]

    evaluator = FeatureEvaluator(_spec(), open_reader)
    assert opened == []
    evaluator.records([_row()])
    evaluator.records([_row(2)])
    assert len(opened) == 1


# ---- frames -----------------------------------------------------------------------------------


def test_frame_holds_the_values_of_records_with_training_dtypes(evaluator: FeatureEvaluator) -> None:
    rows = [_row(1), _row(9)]
    df = pd.DataFrame(rows, index=[10, 20])
    frame = evaluator.frame(df)
    assert list(frame.index) == [10, 20]
    assert list(frame.columns) == evaluator.spec.output_columns
    records = evaluator.records(rows)
    for name in frame.columns:
        got = [None if (isinstance(v, float) and np.isnan(v)) else v for v in frame[name].tolist()]
        want = [r[name] for r in records]
        if name == "joined":
            want = [None if v is None else dt.date.fromisoformat(v) for v in want]
        assert got == want, name
    expected_types = {
        "user_id": "int64",
        "amount": "float64",
        "spend": "float64",
        "visits": "float64",  # an integer feature with a null: float64, as a left join makes it
        "segment": str(pa.array(["a"]).to_pandas().dtype),
        "vip": "object",
        "joined": "object",
        "clicks": "int64",  # every null filled by the default
        "ratio": "float64",
        "doubled": "float64",
    }
    assert {c: str(t) for c, t in frame.dtypes.items()} == expected_types


def test_frame_keeps_integers_and_booleans_without_nulls_as_such(evaluator: FeatureEvaluator) -> None:
    frame = evaluator.frame(pd.DataFrame([_row(1), _row(2)]))
    assert frame["visits"].dtype == "int64" and frame["vip"].dtype == "bool"


def test_frame_refuses_a_duplicate_column(evaluator: FeatureEvaluator) -> None:
    df = pd.concat([pd.DataFrame([_row()]), pd.DataFrame({"amount": [1.0]})], axis=1)
    with pytest.raises(InvalidParameterValue, match="duplicate columns: \\['amount'\\]"):
        evaluator.frame(df)


def test_frame_takes_nan_and_nat_as_nulls(evaluator: FeatureEvaluator) -> None:
    df = pd.DataFrame([_row(1), _row(2)]).assign(
        spend=[np.nan, 4.0], ts=pd.to_datetime(["2024-01-03 12:00", None], utc=True)
    )
    frame = evaluator.frame(df)
    assert frame["spend"].tolist() == [10.0, 4.0]
    assert frame["clicks"].tolist() == [30, -1]
    with pytest.raises(InvalidParameterValue, match="lookup_key columns \\['user_id'\\]"):
        evaluator.frame(pd.DataFrame([_row(1), _row(2)]).assign(user_id=[1.0, np.nan]))


def test_a_fully_overridden_column_keeps_the_requests_dtype(evaluator: FeatureEvaluator) -> None:
    frame = evaluator.frame(pd.DataFrame([_row(1)]).assign(visits=np.array([3], dtype="int32")))
    assert frame["visits"].dtype == "int32" and frame["visits"].tolist() == [3]
