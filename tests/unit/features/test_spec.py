"""feature_spec.yaml: Databricks' layout, round trips, and what a spec may not hold."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest
import yaml

from modelport.errors import InvalidParameterValue
from modelport.features.spec import (
    FeatureColumn,
    FeatureSpec,
    SourceColumn,
    TableInfo,
    arrow_type,
    default_value_text,
    parse_default_value,
    spark_type,
)


def _spec() -> FeatureSpec:
    return FeatureSpec(
        columns=(
            SourceColumn("customer_id", "bigint"),
            SourceColumn("ts", "timestamp", include=False),
            SourceColumn("amount", "double"),
            FeatureColumn(
                output_name="avg_7d",
                table_name="main.fraud.tx",
                feature_name="amount_7d",
                lookup_key=("customer_id",),
                timestamp_lookup_key=("ts",),
                default_value="0.0",
                data_type="double",
            ),
        ),
        tables=(TableInfo("main.fraud.tx", lookback_window=86400.0, table_version=3),),
    )


def test_spec_is_written_in_databricks_layout() -> None:
    assert _spec().to_dict() == {
        "input_columns": [
            {"customer_id": {"data_type": "bigint", "topological_ordering": 0, "source": "training_data"}},
            {
                "ts": {
                    "data_type": "timestamp",
                    "include": False,
                    "topological_ordering": 0,
                    "source": "training_data",
                }
            },
            {"amount": {"data_type": "double", "topological_ordering": 0, "source": "training_data"}},
            {
                "avg_7d": {
                    "table_name": "main.fraud.tx",
                    "feature_name": "amount_7d",
                    "lookup_key": ["customer_id"],
                    "timestamp_lookup_key": ["ts"],
                    "default_value": "0.0",
                    "data_type": "double",
                    "topological_ordering": 1,
                    "source": "feature_store",
                }
            },
        ],
        "input_tables": [{"main.fraud.tx": {"table_version": 3, "lookback_window": 86400.0}}],
        "workspace_id": "0",
        "feature_store_client_version": "modelport",
        "serialization_version": 9,
    }


def test_spec_round_trips_through_a_file(tmp_path: Path) -> None:
    spec = _spec()
    path = spec.save(tmp_path)
    assert path.name == "feature_spec.yaml"
    assert list(yaml.safe_load(path.read_text())) == [
        "input_columns",
        "input_tables",
        "workspace_id",
        "feature_store_client_version",
        "serialization_version",
    ]
    loaded = FeatureSpec.load(tmp_path)
    assert loaded == spec
    assert loaded.output_columns == ["customer_id", "amount", "avg_7d"]
    assert loaded.required_columns == ["customer_id", "ts", "amount"]
    assert loaded.lookup_key_columns == ["customer_id"]
    assert loaded.feature_columns[0].default == 0.0
    assert loaded.table("main.fraud.tx").lookback_window == 86400.0


def test_a_spec_written_by_databricks_is_read() -> None:
    text = """
input_columns:
- user_id:
    data_type: bigint
    topological_ordering: 0
    source: training_data
- clicks:
    table_name: main.web.users
    feature_name: clicks
    lookup_key: user_id
    default_value: '7'
    data_type: int
    topological_ordering: 1
    source: feature_store
input_tables:
- main.web.users:
    table_id: 1b2c3d
workspace_id: '123'
feature_store_client_version: 0.14.0
serialization_version: 9
"""
    spec = FeatureSpec.from_yaml(text)
    (feature,) = spec.feature_columns
    assert feature.lookup_key == ("user_id",)
    assert feature.default == 7
    assert spec.workspace_id == 123
    assert spec.tables == (TableInfo("main.web.users"),)


def test_a_function_column_without_its_definition_is_refused_on_load() -> None:
    text = """
input_columns:
- x: {source: training_data}
- y: {udf_name: main.f.double_it, input_bindings: {v: x}, source: on_demand_feature}
input_tables: []
serialization_version: 9
"""
    with pytest.raises(
        InvalidParameterValue, match=r"computed by main\.f\.double_it, which input_functions does not"
    ):
        FeatureSpec.from_yaml(text)


def test_a_databricks_spec_naming_unity_catalog_functions_is_refused_saying_why() -> None:
    text = """
input_columns:
- x: {source: training_data}
- y: {udf_name: main.f.double_it, input_bindings: {v: x}, source: on_demand_feature}
input_tables: []
input_functions:
- main.f.double_it: {}
serialization_version: 9
"""
    with pytest.raises(InvalidParameterValue, match="carries no definition"):
        FeatureSpec.from_yaml(text)


def test_lookup_keys_must_be_source_columns() -> None:
    with pytest.raises(InvalidParameterValue, match="Lookup key 'customer_id' of feature 'f'"):
        FeatureSpec(
            columns=(FeatureColumn("f", "main.a.b", "f", ("customer_id",)),),
            tables=(TableInfo("main.a.b"),),
        )


def test_input_tables_must_match_the_features() -> None:
    with pytest.raises(InvalidParameterValue, match="input_tables"):
        FeatureSpec(columns=(SourceColumn("k"),), tables=(TableInfo("main.a.b"),))


@pytest.mark.parametrize(
    ("value", "data_type", "text", "back"),
    [
        (0, "bigint", "0", 0),
        (2, "double", "2", 2.0),
        (0.5, "double", "0.5", 0.5),
        (True, "boolean", "true", True),
    ],
)
def test_default_values_round_trip_by_type(value: object, data_type: str, text: str, back: object) -> None:
    assert default_value_text(value, data_type) == text
    assert parse_default_value(text, data_type) == back


def test_default_of_the_wrong_type_is_refused() -> None:
    with pytest.raises(InvalidParameterValue, match="does not fit a bigint feature"):
        default_value_text("x", "bigint")
    with pytest.raises(InvalidParameterValue, match="is not a bigint"):
        parse_default_value("x", "bigint")


@pytest.mark.parametrize(
    ("text", "spark"),
    [
        ("int64", "bigint"),
        ("double", "double"),
        ("string", "string"),
        ("bool", "boolean"),
        ("timestamp[us, tz=UTC]", "timestamp"),
        ("date32[day]", "date"),
        ("bigint", "bigint"),
        ("int32", "int"),
    ],
)
def test_arrow_and_spark_type_names(text: str, spark: str) -> None:
    typ = arrow_type(text)
    assert typ is not None
    assert spark_type(typ) == spark
    assert arrow_type("no such type") is None
    assert spark_type(pa.large_string()) == "string"
