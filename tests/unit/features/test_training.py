"""Training sets: lookups checked against their tables, point-in-time joins against a hand-computed
answer, and the spec a training set produces."""

from __future__ import annotations

import datetime
import math
from typing import Any

import pandas as pd
import pytest

from modelport.errors import InvalidParameterValue
from modelport.features import FeatureLookup, FeatureTable
from modelport.features.spec import FeatureColumn, SourceColumn, TableInfo
from modelport.features.training import TrainingSet, build_feature_spec, point_in_time_join, resolve_lookups

TX = "main.fraud.tx"
CUSTOMERS = "main.fraud.customers"


def _info(name: str, primary: list[str], timestamp: list[str], columns: dict[str, str]) -> FeatureTable:
    return FeatureTable.from_json(
        {
            "name": name,
            "primary_keys": primary,
            "timestamp_keys": timestamp,
            "columns": [{"name": n, "type": t, "nullable": True} for n, t in columns.items()],
            "version": 7,
        }
    )


TABLES = {
    TX: _info(
        TX,
        ["customer_id"],
        ["ts"],
        {"customer_id": "int64", "ts": "timestamp[us, tz=UTC]", "amount_7d": "double"},
    ),
    CUSTOMERS: _info(
        CUSTOMERS, ["customer_id"], [], {"customer_id": "int64", "tier": "string", "age": "int64"}
    ),
}
TX_ROWS = pd.DataFrame(
    {
        "customer_id": [1, 1, 2],
        "ts": pd.to_datetime(["2024-01-01", "2024-01-03", "2024-01-02"], utc=True),
        "amount_7d": [10.0, 30.0, 200.0],
    }
)
CUSTOMER_ROWS = pd.DataFrame({"customer_id": [2, 1], "tier": ["silver", "gold"], "age": [40, 30]})
ROWS = {TX: TX_ROWS, CUSTOMERS: CUSTOMER_ROWS}


def _events() -> pd.DataFrame:
    # Naive times (taken as UTC), not in time order, and an index that is not 0..n-1.
    return pd.DataFrame(
        {
            "customer_id": [1, 1, 1, 2, 3, 1],
            "event_ts": pd.to_datetime(
                [
                    "2024-01-03 12:00",  # 12 h after the 01-03 row          -> 30
                    "2024-01-02 00:00",  # exactly 24 h after the 01-01 row  -> 10 (window is inclusive)
                    "2023-12-31 00:00",  # before any row                    -> default
                    "2024-01-05 00:00",  # newest row of key 2 is 3 days old -> default (1-day window)
                    "2024-01-05 00:00",  # key 3 has no rows                 -> default
                    "2024-01-01 00:00",  # exact match                       -> 10
                ]
            ),
            "amount": [5.0, 6.0, 7.0, 8.0, 9.0, 1.0],
            "is_fraud": [0, 1, 0, 1, 0, 0],
        },
        index=[10, 11, 12, 13, 14, 15],
    )


def _resolve(*lookups: FeatureLookup, labels: tuple[str, ...] = ("is_fraud",)) -> list[Any]:
    return resolve_lookups(lookups, TABLES, list(_events().columns), labels)


def test_point_in_time_join_matches_the_hand_computed_answer() -> None:
    lookups = _resolve(
        FeatureLookup(
            TX,
            "customer_id",
            timestamp_lookup_key="event_ts",
            lookback_window=datetime.timedelta(days=1),
            default_values={"amount_7d": -1.0},
        ),
        FeatureLookup(
            TX,
            "customer_id",
            rename_outputs={"amount_7d": "amount_7d_any_age"},
            timestamp_lookup_key="event_ts",
        ),
    )
    events = _events()
    joined = point_in_time_join(events, lookups, ROWS)
    assert list(joined.index) == [10, 11, 12, 13, 14, 15]
    assert joined["amount_7d"].tolist() == [30.0, 10.0, -1.0, -1.0, -1.0, 10.0]
    without_window = joined["amount_7d_any_age"].tolist()
    assert without_window[:2] + without_window[3:4] + without_window[5:] == [30.0, 10.0, 200.0, 10.0]
    assert math.isnan(without_window[2]) and math.isnan(without_window[4])
    # The input is not changed.
    assert list(events.columns) == ["customer_id", "event_ts", "amount", "is_fraud"]


def test_a_zero_lookback_window_takes_exact_matches_only() -> None:
    (lookup,) = _resolve(
        FeatureLookup(
            TX, "customer_id", timestamp_lookup_key="event_ts", lookback_window=datetime.timedelta(0)
        )
    )
    values = point_in_time_join(_events(), [lookup], ROWS)["amount_7d"].tolist()
    assert values[5] == 10.0
    assert all(math.isnan(v) for v in values[:5])


def test_without_a_timestamp_lookup_key_the_latest_row_of_each_key_is_joined() -> None:
    lookups = _resolve(
        FeatureLookup(TX, "customer_id"),
        FeatureLookup(CUSTOMERS, "customer_id", default_values={"age": 0}),
    )
    joined = point_in_time_join(_events(), lookups, ROWS)
    assert joined["amount_7d"].tolist()[:4] == [30.0, 30.0, 30.0, 200.0]
    assert joined["tier"].tolist()[:4] == ["gold", "gold", "gold", "silver"]
    assert pd.isna(joined["tier"].iloc[4])
    # A default fills key 3's age, and the integer column stays integer.
    assert joined["age"].tolist() == [30, 30, 30, 40, 0, 30]
    assert joined["age"].dtype == "int64"


@pytest.mark.parametrize(
    ("lookup", "message"),
    [
        (FeatureLookup(TX, ["customer_id", "amount"]), "has primary keys \\['customer_id'\\]"),
        (FeatureLookup(TX, "cust"), "lookup_key column 'cust' \\(feature table 'main.fraud.tx'\\)"),
        (FeatureLookup(TX, "is_fraud"), "is a label column"),
        (FeatureLookup(CUSTOMERS, "customer_id", timestamp_lookup_key="event_ts"), "has no timestamp key"),
        (FeatureLookup(TX, "customer_id", timestamp_lookup_key="when"), "timestamp_lookup_key column 'when'"),
        (FeatureLookup(TX, "customer_id", feature_names=["nope"]), "has no feature 'nope'"),
        (
            FeatureLookup(CUSTOMERS, "customer_id", feature_names=["age"], rename_outputs={"age": "amount"}),
            "'amount'",
        ),
        (FeatureLookup(CUSTOMERS, "customer_id", default_values={"age": "old"}), "does not fit a bigint"),
        (FeatureLookup(CUSTOMERS, "customer_id", default_values={"nope": 1}), "default_values names 'nope'"),
    ],
)
def test_lookups_that_do_not_fit_their_table_are_refused(lookup: FeatureLookup, message: str) -> None:
    with pytest.raises(InvalidParameterValue, match=message):
        _resolve(lookup)


def test_the_same_feature_twice_needs_a_rename() -> None:
    with pytest.raises(InvalidParameterValue, match=r"'tier' of table 'main\.fraud\.customers'"):
        _resolve(
            FeatureLookup(CUSTOMERS, "customer_id"),
            FeatureLookup(CUSTOMERS, "customer_id", feature_names="tier"),
        )


def test_join_on_keys_of_another_type_is_refused_naming_the_key() -> None:
    (lookup,) = _resolve(FeatureLookup(CUSTOMERS, "customer_id"))
    events = _events().assign(customer_id=["a", "b", "c", "d", "e", "f"])
    with pytest.raises(InvalidParameterValue, match="lookup_key \\['customer_id'\\]"):
        point_in_time_join(events, [lookup], ROWS)


def test_spec_of_a_training_set() -> None:
    lookups = _resolve(
        FeatureLookup(
            TX, "customer_id", timestamp_lookup_key="event_ts", lookback_window=datetime.timedelta(hours=2)
        ),
        FeatureLookup(CUSTOMERS, "customer_id", default_values={"age": 18}),
    )
    spec = build_feature_spec(_events(), lookups, ["is_fraud"], ["event_ts", "tier"], {TX: 7, CUSTOMERS: 2})
    assert spec.columns == (
        SourceColumn("customer_id", "bigint"),
        SourceColumn("event_ts", "timestamp_ntz", include=False),
        SourceColumn("amount", "double"),
        FeatureColumn("amount_7d", TX, "amount_7d", ("customer_id",), ("event_ts",), None, "double"),
        FeatureColumn("age", CUSTOMERS, "age", ("customer_id",), (), "18", "bigint"),
    )
    assert spec.tables == (TableInfo(TX, 7200.0, 7), TableInfo(CUSTOMERS, None, 2))
    # The label is no input; the excluded time is still required at serving.
    assert spec.output_columns == ["customer_id", "amount", "amount_7d", "age"]
    assert spec.required_columns == ["customer_id", "event_ts", "amount"]


@pytest.mark.parametrize(
    ("labels", "exclude", "message"),
    [
        (["is_fraud"], ["is_fraud"], "label column 'is_fraud'"),
        (["is_fraud"], ["nope"], "'nope', which is neither"),
    ],
)
def test_bad_exclude_columns_are_refused(labels: list[str], exclude: list[str], message: str) -> None:
    lookups = _resolve(FeatureLookup(CUSTOMERS, "customer_id"))
    with pytest.raises(InvalidParameterValue, match=message):
        build_feature_spec(_events(), lookups, labels, exclude)


def test_one_table_with_two_lookback_windows_is_refused() -> None:
    lookups = _resolve(
        FeatureLookup(
            TX, "customer_id", timestamp_lookup_key="event_ts", lookback_window=datetime.timedelta(hours=1)
        ),
        FeatureLookup(TX, "customer_id", timestamp_lookup_key="event_ts", rename_outputs={"amount_7d": "b"}),
    )
    with pytest.raises(InvalidParameterValue, match="two lookback windows"):
        build_feature_spec(_events(), lookups, ["is_fraud"], [])


def test_load_df_reads_the_pinned_versions_and_orders_columns_like_the_spec() -> None:
    reads: list[tuple[str, int | None]] = []

    def reader(name: str, version: int | None) -> pd.DataFrame:
        reads.append((name, version))
        return ROWS[name]

    lookups = _resolve(
        FeatureLookup(CUSTOMERS, "customer_id", feature_names=["age"], default_values={"age": 0})
    )
    events = _events()[["amount", "customer_id", "is_fraud"]]
    spec = build_feature_spec(events, lookups, ["is_fraud"], [], {CUSTOMERS: 2})
    training = TrainingSet(events, lookups, ["is_fraud"], spec, reader, {CUSTOMERS: 2})
    df = training.load_df()
    assert reads == [(CUSTOMERS, 2)]
    assert list(df.columns) == ["amount", "customer_id", "age", "is_fraud"]
    assert df["age"].tolist() == [30, 30, 30, 40, 0, 30]
    assert training.label_types() == {"is_fraud": "bigint"}


def test_a_primary_key_may_be_looked_up_as_a_feature() -> None:
    lookups = _resolve(
        FeatureLookup(
            CUSTOMERS, "customer_id", feature_names=["customer_id"], rename_outputs={"customer_id": "known"}
        ),
        FeatureLookup(TX, "customer_id", feature_names=["ts"], timestamp_lookup_key="event_ts"),
    )
    joined = point_in_time_join(_events(), lookups, ROWS)
    assert joined["known"].fillna(0).tolist() == [1, 1, 1, 2, 0, 1]
    assert [str(t.date()) if not pd.isna(t) else None for t in joined["ts"]] == [
        "2024-01-03",
        "2024-01-01",
        None,
        "2024-01-02",
        None,
        "2024-01-01",
    ]
