"""FeatureLookup's validation (Databricks' rules) and FeatureTable built from the server's info."""

from __future__ import annotations

import datetime

import pytest

from modelport.errors import InvalidParameterValue
from modelport.features import FeatureLookup, FeatureTable


def test_lookup_normalises_its_arguments() -> None:
    lookup = FeatureLookup(
        "Main.Fraud.Customers",
        "customer_id",
        feature_names="avg_amount",
        timestamp_lookup_key=["ts"],
        lookback_window=datetime.timedelta(days=1),
    )
    assert lookup.table_name == "main.fraud.customers"
    assert lookup.lookup_key == ["customer_id"]
    assert lookup.feature_names == ["avg_amount"]
    assert lookup.timestamp_lookup_key == "ts"
    assert lookup.lookback_window == datetime.timedelta(days=1)
    assert lookup.output_name("avg_amount") == "avg_amount"


def test_renamed_outputs_and_defaults_by_renamed_name() -> None:
    lookup = FeatureLookup(
        "main.fraud.customers",
        ["customer_id"],
        feature_names=["avg_amount", "n_tx"],
        rename_outputs={"avg_amount": "customer_avg"},
        default_values={"customer_avg": 0.0, "n_tx": 0},
    )
    assert lookup.output_name("avg_amount") == "customer_avg"
    assert lookup.default_values == {"customer_avg": 0.0, "n_tx": 0}


def test_deprecated_feature_name_and_output_name_are_accepted() -> None:
    lookup = FeatureLookup("main.fraud.customers", "customer_id", feature_name="n_tx", output_name="count")
    assert lookup.feature_names == ["n_tx"]
    assert lookup.rename_outputs == {"n_tx": "count"}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"timestamp_lookup_key": ["a", "b"]}, "multiple timestamp lookup keys"),
        ({"lookback_window": datetime.timedelta(hours=1)}, "lookback windows can only be applied"),
        (
            {"timestamp_lookup_key": "ts", "lookback_window": datetime.timedelta(seconds=-1)},
            "only non-negative datetime.timedelta",
        ),
        ({"timestamp_lookup_key": "ts", "lookback_window": 60}, "only non-negative datetime.timedelta"),
        (
            {"feature_names": ["a"], "rename_outputs": {"a": "b"}, "default_values": {"a": 1}},
            "please use the renamed feature name",
        ),
        ({"feature_names": ["a"], "default_values": {"c": 1}}, "must be one of \\['a'\\]"),
        ({"default_values": {"a": [1]}}, "must be an int, float, bool or str"),
        ({"rename_outputs": ["a"]}, "Unexpected type for rename_outputs"),
        ({"feature_names": ["a"], "rename_outputs": {"z": "y"}}, "not in feature_names"),
        ({"feature_names": ["a", 3]}, "non-empty column names"),
    ],
)
def test_invalid_lookups_are_refused_naming_the_problem(kwargs: dict, message: str) -> None:
    with pytest.raises(InvalidParameterValue, match=message):
        FeatureLookup("main.fraud.customers", "customer_id", **kwargs)


def test_lookup_needs_a_three_part_table_name_and_a_key() -> None:
    with pytest.raises(InvalidParameterValue, match="three parts"):
        FeatureLookup("fraud.customers", "customer_id")
    with pytest.raises(InvalidParameterValue, match="lookup_key"):
        FeatureLookup("main.fraud.customers", [])


def test_unknown_keyword_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="feature_namez"):
        FeatureLookup("main.fraud.customers", "customer_id", feature_namez=["a"])


def test_feature_table_from_server_info() -> None:
    table = FeatureTable.from_json(
        {
            "name": "main.fraud.tx",
            "primary_keys": ["customer_id", "ts"],
            "timestamp_keys": ["ts"],
            "description": "card activity",
            "columns": [
                {"name": "customer_id", "type": "int64", "nullable": False},
                {"name": "ts", "type": "timestamp[us, tz=UTC]", "nullable": False},
                {"name": "amount_7d", "type": "double", "nullable": True},
            ],
            "version": 4,
            "created_ms": 1000,
            "updated_ms": 2000,
            "online": None,
        }
    )
    assert table.features == ["amount_7d"]
    assert table.lookup_keys == ["customer_id"]
    assert table.column_type("ts") == "timestamp[us, tz=UTC]"
    assert table.column_type("nope") is None
    assert (table.version, table.creation_timestamp, table.update_timestamp) == (4, 1000, 2000)


def test_package_exports_its_public_classes() -> None:
    import modelport.features as features

    classes = {n for n in dir(features) if not n.startswith("_") and isinstance(getattr(features, n), type)}
    assert set(features.__all__) == classes
    assert {"FeatureEngineeringClient", "FeatureFunction", "FeatureLookup"} <= classes
