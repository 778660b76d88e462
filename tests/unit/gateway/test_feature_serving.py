"""The gateway's feature-spec plane: request rows in every format, answers from a real embedded
online store, the missing-row metric, and evaluators kept per serving version."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pytest

from modelport.errors import InvalidParameterValue, TemporarilyUnavailable
from modelport.gateway.exchange import Exchange
from modelport.gateway.feature_serving import FeaturePlane, request_rows
from modelport.gateway.routing import Route, ServedEntity
from modelport.metrics import Metrics
from modelport.spec.identity import Caller
from modelport.tables.feature_spec import FeatureColumn, FeatureSpec, SourceColumn, TableInfo
from modelport.tables.features import FeatureTableInfo
from modelport.tables.online_store import OnlineStore

TABLE = "main.shop.customers"
CALLER = Caller(id=1, name="admin", kind="user", groups=("admins",), principal_ids=frozenset({1}))
SPEC = FeatureSpec(
    (
        SourceColumn("customer_id", "bigint"),
        FeatureColumn("spend", TABLE, "spend_30d", ("customer_id",), data_type="double"),
        FeatureColumn("segment", TABLE, "segment", ("customer_id",), default_value="new", data_type="string"),
    ),
    (TableInfo(TABLE),),
)


@pytest.mark.parametrize(
    "body",
    [
        {"dataframe_records": [{"k": 1}, {"k": 2}]},
        {"dataframe_split": {"columns": ["k"], "data": [[1], [2]]}},
        {"dataframe_split": {"columns": ["k"], "data": [[1], [2]], "index": [0, 1]}},
        {"inputs": [{"k": 1}, {"k": 2}]},
        {"inputs": {"k": [1, 2]}},
        {"instances": [{"k": 1}, {"k": 2}]},
    ],
)
def test_every_row_format_gives_the_same_records(body: dict[str, Any]) -> None:
    assert request_rows(body) == [{"k": 1}, {"k": 2}]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "exactly one of the fields"),
        ({"dataframe_records": [{"k": 1}], "inputs": [{"k": 1}]}, "found dataframe_records, inputs"),
        ({"dataframe_records": [1, 2]}, "list of records"),
        ({"dataframe_records": []}, "holds no rows"),
        ({"instances": {"k": 1}}, "list of records"),
        ({"dataframe_split": {"columns": ["k"], "data": [[1, 2]]}}, "row 0 must be a list of 1 values"),
        ({"dataframe_split": [1]}, "must be an object"),
        ({"inputs": {"k": [1], "j": [1, 2]}}, "equally long column lists"),
    ],
)
def test_bad_bodies_are_400s_saying_what_is_wrong(body: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidParameterValue, match=message):
        request_rows(body)


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    path = tmp_path / "online.sqlite"
    info = FeatureTableInfo(TABLE, ["customer_id"], [], "", [], 1, 0, 0)
    rows = pa.table({"customer_id": [1, 2], "spend_30d": [10.5, 99.0], "segment": ["a", None]})
    OnlineStore(path).publish(info, rows, mode="snapshot")
    return path


def route(version: int = 1) -> tuple[Route, ServedEntity]:
    entity = ServedEntity(
        "spec", {"name": "spec", "entity_name": "main.shop.spec", "feature_spec": SPEC.to_dict()}
    )
    return Route("ep-id", "shop", version, "NOT_UPDATING", {"spec": entity}, ("spec",), (100,)), entity


def ask(plane: FeaturePlane, rows: list[dict[str, Any]], version: int = 1) -> Any:
    r, entity = route(version)
    body = orjson.dumps({"dataframe_records": rows})
    answer = asyncio.run(plane.answer(Exchange(CALLER, "shop", body), r, entity))
    return orjson.loads(answer.body)


def missing_count(metrics: Metrics) -> float | None:
    return metrics.registry.get_sample_value(
        "modelport_feature_lookup_missing_total", {"endpoint": "shop", "table": TABLE}
    )


def test_keys_are_answered_from_the_store_with_defaults_and_missing_rows_counted(store_path: Path) -> None:
    metrics = Metrics()
    plane = FeaturePlane(store_path, metrics)
    rows = [{"customer_id": 1}, {"customer_id": 2}, {"customer_id": 3}]
    assert ask(plane, rows) == {
        "outputs": [
            {"customer_id": 1, "spend": 10.5, "segment": "a"},
            {"customer_id": 2, "spend": 99.0, "segment": "new"},
            {"customer_id": 3, "spend": None, "segment": "new"},
        ]
    }
    assert missing_count(metrics) == 1.0
    # A big batch goes to a thread: the same answers, every missing row counted once.
    many = [{"customer_id": 3}] * 40
    assert ask(plane, many)["outputs"] == [{"customer_id": 3, "spend": None, "segment": "new"}] * 40
    assert missing_count(metrics) == 41.0


def test_evaluators_are_kept_per_serving_version(store_path: Path) -> None:
    plane = FeaturePlane(store_path, Metrics())
    ask(plane, [{"customer_id": 1}], version=1)
    ask(plane, [{"customer_id": 1}], version=2)
    assert sorted(plane._served) == [("ep-id", 1, "spec"), ("ep-id", 2, "spec")]
    plane.retain([("ep-id", 2)])
    assert list(plane._served) == [("ep-id", 2, "spec")]
    plane.close()


def test_a_table_missing_from_the_store_is_a_503_naming_it(tmp_path: Path) -> None:
    plane = FeaturePlane(tmp_path / "empty.sqlite", Metrics())
    with pytest.raises(TemporarilyUnavailable, match=TABLE):
        ask(plane, [{"customer_id": 1}])
