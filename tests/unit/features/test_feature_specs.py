"""``create_feature_spec``'s spec: source columns from the lookup keys, features from the tables."""

from __future__ import annotations

import datetime

import pytest

from modelport.errors import InvalidParameterValue
from modelport.features import FeatureLookup, FeatureSpecInfo, FeatureTable
from modelport.features.entities import FeatureFunction
from modelport.features.feature_specs import serving_spec
from modelport.tables.feature_functions import FunctionDef
from modelport.tables.feature_spec import FeatureColumn, FunctionColumn, SourceColumn, TableInfo

TX = "main.fraud.tx"
CUSTOMERS = "main.fraud.customers"


def _table(name: str, primary: list[str], timestamp: list[str], columns: dict[str, str]) -> FeatureTable:
    return FeatureTable.from_json(
        {
            "name": name,
            "primary_keys": primary,
            "timestamp_keys": timestamp,
            "columns": [{"name": n, "type": t, "nullable": True} for n, t in columns.items()],
            "version": 3,
        }
    )


TABLES = {
    TX: _table(
        TX,
        ["customer_id"],
        ["ts"],
        {"customer_id": "int64", "ts": "timestamp[us, tz=UTC]", "amount_7d": "double"},
    ),
    CUSTOMERS: _table(
        CUSTOMERS, ["customer_id"], [], {"customer_id": "int64", "tier": "string", "age": "int32"}
    ),
}


def test_the_keys_become_typed_source_columns_and_the_features_follow_in_lookup_order() -> None:
    spec = serving_spec(
        [
            FeatureLookup(
                CUSTOMERS, "customer_id", rename_outputs={"tier": "segment"}, default_values={"age": 0}
            ),
            FeatureLookup(
                TX,
                "customer_id",
                timestamp_lookup_key="at",
                lookback_window=datetime.timedelta(days=7),
            ),
        ],
        TABLES,
    )
    assert spec.columns == (
        SourceColumn("customer_id", "bigint"),
        SourceColumn("at", "timestamp"),
        FeatureColumn("segment", CUSTOMERS, "tier", ("customer_id",), data_type="string"),
        FeatureColumn("age", CUSTOMERS, "age", ("customer_id",), default_value="0", data_type="int"),
        FeatureColumn("amount_7d", TX, "amount_7d", ("customer_id",), ("at",), data_type="double"),
    )
    assert spec.tables == (TableInfo(CUSTOMERS), TableInfo(TX, lookback_window=7 * 86400.0))
    assert spec.required_columns == ["customer_id", "at"]
    assert spec.output_columns == ["customer_id", "at", "segment", "age", "amount_7d"]


def test_excluded_columns_are_left_out_of_the_answer_keys_still_required() -> None:
    spec = serving_spec([FeatureLookup(CUSTOMERS, "customer_id")], TABLES, ["customer_id", "age"])
    assert spec.output_columns == ["tier"]
    assert spec.required_columns == ["customer_id"]
    with pytest.raises(InvalidParameterValue, match="every feature"):
        serving_spec([FeatureLookup(CUSTOMERS, "customer_id")], TABLES, ["tier", "age"])
    with pytest.raises(InvalidParameterValue, match="neither a column"):
        serving_spec([FeatureLookup(CUSTOMERS, "customer_id")], TABLES, ["nope"])


def test_a_key_two_tables_type_differently_is_refused() -> None:
    tables = {
        **TABLES,
        "main.fraud.by_name": _table("main.fraud.by_name", ["k"], [], {"k": "string", "x": "double"}),
    }
    with pytest.raises(InvalidParameterValue, match=r"'customer_id' is bigint .* and string"):
        serving_spec(
            [FeatureLookup(CUSTOMERS, "customer_id"), FeatureLookup("main.fraud.by_name", "customer_id")],
            tables,
        )


def test_the_lookup_checks_of_training_sets_apply() -> None:
    with pytest.raises(InvalidParameterValue, match="has no feature 'nope'"):
        serving_spec([FeatureLookup(CUSTOMERS, "customer_id", feature_names=["nope"])], TABLES)
    with pytest.raises(InvalidParameterValue, match="primary keys"):
        serving_spec([FeatureLookup(CUSTOMERS, ["customer_id", "other"])], TABLES)
    with pytest.raises(InvalidParameterValue, match="at least one"):
        serving_spec([], TABLES)


def test_the_servers_description_reads_back() -> None:
    spec = serving_spec([FeatureLookup(CUSTOMERS, "customer_id")], TABLES)
    info = FeatureSpecInfo.from_json(
        {
            "name": "main.fraud.spec",
            "owner": "alice",
            "created_ms": 5,
            "tables": [CUSTOMERS],
            "inputs": ["customer_id"],
            "outputs": spec.output_columns,
            "feature_spec": spec.to_dict(),
        }
    )
    assert (info.owner, info.tables, info.outputs) == ("alice", [CUSTOMERS], ["customer_id", "tier", "age"])
    assert info.feature_spec == spec


RATIO = FunctionDef(
    "main.fraud.ratio",
    (("amount", "double"), ("average", "double")),
    "double",
    "def ratio(amount, average):\n    return amount / average\n",
    "ratio",
)


def test_function_inputs_no_lookup_gives_become_source_columns_typed_as_their_parameters() -> None:
    spec = serving_spec(
        [
            FeatureLookup(TX, "customer_id", timestamp_lookup_key="at"),
            FeatureFunction(
                udf_name=RATIO.name, input_bindings={"average": "amount_7d"}, output_name="ratio"
            ),
        ],
        TABLES,
        ["amount_7d"],
        definitions={RATIO.name: RATIO},
    )
    assert spec.required_columns == ["customer_id", "at", "amount"]
    assert [c.data_type for c in spec.source_columns] == ["bigint", "timestamp", "double"]
    # The excluded feature stays (the function reads it), out of the answer.
    assert spec.output_columns == ["customer_id", "at", "amount", "ratio"]
    assert spec.function_columns == [
        FunctionColumn("ratio", RATIO.name, (("amount", "amount"), ("average", "amount_7d")), "double")
    ]
    assert spec.functions == (RATIO,)
    with pytest.raises(InvalidParameterValue, match="No definition"):
        serving_spec([FeatureFunction(udf_name=RATIO.name)], TABLES)
    with pytest.raises(InvalidParameterValue, match="'customer_id' is bigint as a lookup key and double"):
        serving_spec(
            [
                FeatureLookup(CUSTOMERS, "customer_id"),
                FeatureFunction(udf_name=RATIO.name, input_bindings={"amount": "customer_id"}),
            ],
            TABLES,
            definitions={RATIO.name: RATIO},
        )
