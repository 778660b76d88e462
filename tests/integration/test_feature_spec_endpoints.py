"""Feature-spec endpoints on the real server (issue 18, item 5).

A feature table is created, written and published; ``create_feature_spec`` stores a spec of its
features; an endpoint serves the spec (``"is_feature_serving": true``, as Databricks' feature
serving client sends it) and answers key rows with ``{"outputs": [...]}``, looked up in the
online store by the gateway itself (no replicas), under the same governance as any endpoint:
CAN_QUERY, the inference table, the endpoint's metrics. Then the rules: a key with no row gets
nulls and the lookup's defaults, a null or missing key is a 400 naming the column, creating a
spec needs SELECT on its tables, a served spec cannot be deleted, and a dropped table is a 503
naming it.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pandas as pd
import pytest
from databricks.sdk import WorkspaceClient
from databricks.sdk.service.serving import EndpointCoreConfigInput, ServedEntityInput

from modelport.errors import PermissionDenied
from modelport.features import FeatureEngineeringClient, FeatureLookup
from modelport.features.entities import FeatureFunction
from tests.serverproc import ADMIN_TOKEN, ServerProcess
from tests.support.endpoints import KEPT_ENDPOINTS, wait_settled
from tests.support.names import unique
from tests.support.principals import create_user, obo_token

API = "/api/2.0/serving-endpoints"
SPECS = "/api/2.0/feature-engineering/feature-specs"
DEFAULTS = {"segment": "new", "orders_30d": 0}


@pytest.fixture(scope="module")
def shop(server: ServerProcess) -> Iterator[dict[str, Any]]:
    """Feature table ``main.<schema>.customers`` (customers 1..5, published), a spec of three of
    its features (one renamed, two with defaults) and an endpoint serving it with an inference
    table."""
    schema = unique("shop").replace("-", "_")
    table = f"main.{schema}.customers"
    spec = f"main.{schema}.customer_spec"
    rows = pd.DataFrame(
        {
            "customer_id": [1, 2, 3, 4, 5],
            "spend_30d": [10.5, 99.0, 0.25, 1234.5, 7.0],
            "orders_30d": [1, 9, 0, 42, 3],
            "segment": ["a", "b", "a", "vip", "b"],
            "unused": [0.0, 0.0, 0.0, 0.0, 0.0],
        }
    )
    fe = FeatureEngineeringClient(host=server.url, token=ADMIN_TOKEN)
    fe.create_table(table, primary_keys="customer_id", df=rows)
    fe.publish_table(table, mode="snapshot")
    info = fe.create_feature_spec(
        name=spec,
        features=[
            FeatureLookup(
                table_name=table,
                lookup_key="customer_id",
                feature_names=["spend_30d", "orders_30d", "segment"],
                rename_outputs={"spend_30d": "spend"},
                default_values=DEFAULTS,
            )
        ],
    )
    name = unique("shop-fs")
    body = {
        "name": name,
        "config": {
            "served_entities": [
                {"name": "", "entity_name": spec, "workload_size": "Small", "scale_to_zero_enabled": True}
            ]
        },
        "ai_gateway": {
            "inference_table_config": {
                "catalog_name": "main",
                "schema_name": schema,
                "table_name_prefix": "shop_log",
                "enabled": True,
            }
        },
        "is_feature_serving": True,
    }
    with httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=60
    ) as http:
        created = http.post(API, json=body)
        assert created.status_code == 200, created.text
        KEPT_ENDPOINTS.add(name)
        try:
            settled = wait_settled(http, name)
            yield {
                "fe": fe,
                "http": http,
                "table": table,
                "spec": spec,
                "info": info,
                "rows": rows.set_index("customer_id"),
                "name": name,
                "schema": schema,
                "endpoint": settled,
            }
        finally:
            KEPT_ENDPOINTS.discard(name)
            http.delete(f"{API}/{name}")
            http.delete(f"{SPECS}/{spec}")
            with contextlib.suppress(Exception):  # dropped by the last test already
                fe.drop_table(table)
            fe.close()


def ask(shop: dict[str, Any], body: dict[str, Any], token: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else None
    return shop["http"].post(f"/serving-endpoints/{shop['name']}/invocations", json=body, headers=headers)


def expected(shop: dict[str, Any], key: int) -> dict[str, Any]:
    row = shop["rows"].loc[key]
    return {
        "customer_id": key,
        "spend": float(row["spend_30d"]),
        "orders_30d": int(row["orders_30d"]),
        "segment": str(row["segment"]),
    }


@pytest.fixture(scope="module")
def bob(shop: dict[str, Any]) -> dict[str, str]:
    """A user with a token and no grant on anything."""
    name = unique("bob")
    create_user(shop["http"], name)
    return {"name": name, "token": obo_token(shop["http"], user_name=name)["token_value"]}


def test_the_spec_is_stored_with_its_inputs_outputs_and_owner(shop: dict[str, Any]) -> None:
    info = shop["info"]
    assert info.name == shop["spec"]
    assert info.owner == "admin"
    assert info.tables == [shop["table"]]
    assert info.inputs == ["customer_id"]
    assert info.outputs == ["customer_id", "spend", "orders_30d", "segment"]
    columns = {c.output_name: c for c in info.feature_spec.columns}
    assert columns["customer_id"].data_type == "bigint"  # typed as the table's primary key
    assert (columns["spend"].feature_name, columns["spend"].data_type) == ("spend_30d", "double")
    assert columns["segment"].default == "new"
    fe = shop["fe"]
    assert fe.get_feature_spec(shop["spec"]).feature_spec == info.feature_spec
    assert shop["spec"] in [s.name for s in fe.list_feature_specs()]
    again = shop["http"].post(SPECS, json={"name": shop["spec"], "feature_spec": info.raw["feature_spec"]})
    assert again.status_code == 409, again.text


def test_the_endpoint_is_ready_without_replicas_and_shows_the_spec_name(shop: dict[str, Any]) -> None:
    endpoint = shop["http"].get(f"{API}/{shop['name']}").json()
    assert endpoint["state"]["ready"] == "READY"
    [entity] = endpoint["config"]["served_entities"]
    assert entity["entity_name"] == shop["spec"]
    assert entity["name"] == "customer_spec"
    assert "entity_version" not in entity and "feature_spec" not in entity
    assert entity["state"]["deployment"] == "DEPLOYMENT_READY"
    assert "served_models" not in endpoint["config"]


def test_keys_are_answered_with_their_features_in_every_row_format(shop: dict[str, Any]) -> None:
    want = [expected(shop, 4), expected(shop, 1)]
    for body in (
        {"dataframe_records": [{"customer_id": 4}, {"customer_id": 1}]},
        {"dataframe_split": {"columns": ["customer_id"], "data": [[4], [1]]}},
        {"inputs": [{"customer_id": 4}, {"customer_id": 1}]},
        {"inputs": {"customer_id": [4, 1]}},
        {"instances": [{"customer_id": 4}, {"customer_id": 1}]},
    ):
        answer = ask(shop, body)
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"outputs": want}, body
    # More rows than are evaluated on the event loop: the same answer from a thread.
    many = ask(shop, {"dataframe_records": [{"customer_id": k % 5 + 1} for k in range(40)]})
    assert many.status_code == 200, many.text
    assert many.json()["outputs"] == [expected(shop, k % 5 + 1) for k in range(40)]


def test_the_databricks_sdk_queries_it_and_reads_outputs(shop: dict[str, Any], server: ServerProcess) -> None:
    w = WorkspaceClient(host=server.url, token=ADMIN_TOKEN)
    answer = w.serving_endpoints.query(shop["name"], dataframe_records=[{"customer_id": 2}])
    assert answer.outputs == [expected(shop, 2)]


def test_the_databricks_sdk_creates_one_without_is_feature_serving(
    shop: dict[str, Any], server: ServerProcess
) -> None:
    """The SDK's create has no is_feature_serving: a versionless three-part name that names a
    spec serves it."""
    w = WorkspaceClient(host=server.url, token=ADMIN_TOKEN)
    name = unique("sdk-fs")
    config = EndpointCoreConfigInput(name=name, served_entities=[ServedEntityInput(entity_name=shop["spec"])])
    w.serving_endpoints.create(name=name, config=config)
    wait_settled(shop["http"], name)
    answer = w.serving_endpoints.query(name, dataframe_records=[{"customer_id": 3}])
    assert answer.outputs == [expected(shop, 3)]
    # A versionless three-part name that names no spec is still a model missing its version.
    wrong = shop["http"].post(
        API,
        json={"name": unique("no-spec"), "config": {"served_entities": [{"entity_name": "main.x.nothing"}]}},
    )
    assert wrong.status_code == 400 and "entity_version" in wrong.json()["message"], wrong.text


def test_a_key_without_a_row_gets_nulls_then_defaults_and_is_counted(shop: dict[str, Any]) -> None:
    answer = ask(shop, {"dataframe_records": [{"customer_id": 999}, {"customer_id": 5}]})
    assert answer.status_code == 200, answer.text
    assert answer.json()["outputs"] == [
        {"customer_id": 999, "spend": None, **DEFAULTS},
        expected(shop, 5),
    ]
    metrics = shop["http"].get("/metrics").text
    line = f'modelport_feature_lookup_missing_total{{endpoint="{shop["name"]}",table="{shop["table"]}"}}'
    counted = [row for row in metrics.splitlines() if row.startswith(line)]
    assert counted and float(counted[0].split()[-1]) >= 1, metrics


def test_a_null_or_missing_key_is_a_400_naming_the_column(shop: dict[str, Any]) -> None:
    null = ask(shop, {"dataframe_records": [{"customer_id": None}]})
    assert null.status_code == 400 and "customer_id" in null.json()["message"], null.text
    missing = ask(shop, {"dataframe_records": [{"client": 1}]})
    assert missing.status_code == 400 and "customer_id" in missing.json()["message"], missing.text
    no_rows = ask(shop, {"messages": [{"role": "user", "content": "hi"}]})
    assert no_rows.status_code == 400 and "dataframe_records" in no_rows.json()["message"], no_rows.text


def test_without_can_query_a_user_gets_403(shop: dict[str, Any], bob: dict[str, str]) -> None:
    answer = ask(shop, {"dataframe_records": [{"customer_id": 1}]}, token=bob["token"])
    assert answer.status_code == 403 and "CAN_QUERY" in answer.json()["message"], answer.text


def test_specs_need_select_on_their_tables(
    shop: dict[str, Any], bob: dict[str, str], server: ServerProcess
) -> None:
    http, table = shop["http"], shop["table"]
    lookup = FeatureLookup(table_name=table, lookup_key="customer_id", feature_names=["segment"])
    bobs_spec = f"main.{shop['schema']}.bobs_spec"
    with FeatureEngineeringClient(host=server.url, token=bob["token"]) as fe:
        # Without SELECT, bob can neither read the table nor make (or read) a spec of it.
        with pytest.raises(PermissionDenied):
            fe.get_table(table)
        denied = http.post(
            SPECS,
            json={"name": bobs_spec, "feature_spec": shop["info"].raw["feature_spec"]},
            headers={"Authorization": f"Bearer {bob['token']}"},
        )
        assert denied.status_code == 403 and table in denied.json()["message"], denied.text
        with pytest.raises(PermissionDenied):
            fe.get_feature_spec(shop["spec"])
        assert shop["spec"] not in [s.name for s in fe.list_feature_specs()]
        granted = http.patch(
            f"/api/2.0/permissions/tables/{table}",
            json={"access_control_list": [{"user_name": bob["name"], "permission_level": "SELECT"}]},
        )
        assert granted.status_code == 200, granted.text
        made = fe.create_feature_spec(bobs_spec, [lookup], exclude_columns=["customer_id"])
        assert (made.owner, made.outputs) == (bob["name"], ["segment"])
        assert fe.get_feature_spec(shop["spec"]).name == shop["spec"]  # SELECT reads admin's spec
        # ... but only its owner (or an admin) deletes it.
        with pytest.raises(PermissionDenied):
            fe.delete_feature_spec(shop["spec"])
        # Bob serves his spec (he holds SELECT): an excluded key is required, not echoed.
        name = unique("bob-fs")
        bob_http = {"Authorization": f"Bearer {bob['token']}"}
        body = {
            "name": name,
            "config": {"served_entities": [{"entity_name": bobs_spec}]},
            "is_feature_serving": True,
        }
        assert http.post(API, json=body, headers=bob_http).status_code == 200
        wait_settled(server.url, name, token=bob["token"])
        answer = http.post(
            f"/serving-endpoints/{name}/invocations",
            json={"dataframe_records": [{"customer_id": 4}]},
            headers=bob_http,
        )
        assert answer.json() == {"outputs": [{"segment": "vip"}]}, answer.text
        revoked = http.put(f"/api/2.0/permissions/tables/{table}", json={"access_control_list": []})
        assert revoked.status_code == 200, revoked.text
        # Without SELECT again, his next config cannot serve the spec, though he owns it.
        again = http.put(
            f"{API}/{name}/config", json={"served_entities": [{"entity_name": bobs_spec}]}, headers=bob_http
        )
        assert again.status_code == 403 and table in again.json()["message"], again.text
        http.delete(f"{API}/{name}")
        fe.delete_feature_spec(bobs_spec)


def spend_per_order(spend: float | None, orders: int | None, discount: float) -> float | None:
    """A feature function: spend per order, less a request-time discount (null without a row)."""
    if spend is None or orders is None:
        return None
    return spend / max(orders, 1) - discount


def test_a_spec_computes_its_feature_functions_from_lookups_and_request_inputs(shop: dict[str, Any]) -> None:
    fe, http = shop["fe"], shop["http"]
    function = f"main.{shop['schema']}.spend_per_order"
    fe.create_function(function, spend_per_order)
    spec = f"main.{shop['schema']}.with_function"
    lookup = FeatureLookup(shop["table"], "customer_id", feature_names=["spend_30d", "orders_30d"])
    compute = FeatureFunction(
        udf_name=function,
        input_bindings={"spend": "spend_30d", "orders": "orders_30d"},
        output_name="per_order",
    )
    info = fe.create_feature_spec(spec, [lookup, compute], exclude_columns=["spend_30d", "orders_30d"])
    assert (info.inputs, info.outputs, info.functions) == (
        ["customer_id", "discount"],
        ["customer_id", "discount", "per_order"],
        [function],
    )
    name = unique("fn-fs")
    body = {"name": name, "config": {"served_entities": [{"entity_name": spec}]}, "is_feature_serving": True}
    assert http.post(API, json=body).status_code == 200
    wait_settled(http, name)
    # Deleting the function now changes nothing: the endpoint's config carries its definition.
    fe.delete_function(function)
    rows = [{"customer_id": 2, "discount": 1.0}, {"customer_id": 999, "discount": 0.5}]
    answer = http.post(f"/serving-endpoints/{name}/invocations", json={"dataframe_records": rows})
    assert answer.status_code == 200, answer.text
    assert answer.json()["outputs"] == [
        {"customer_id": 2, "discount": 1.0, "per_order": 99.0 / 9 - 1.0},
        {"customer_id": 999, "discount": 0.5, "per_order": None},  # no row: nulls in, null out
    ]
    missing = http.post(
        f"/serving-endpoints/{name}/invocations", json={"dataframe_records": [{"customer_id": 2}]}
    )
    assert missing.status_code == 400 and "discount" in missing.json()["message"], missing.text
    http.delete(f"{API}/{name}")
    fe.delete_feature_spec(spec)


def test_a_served_spec_cannot_be_deleted(shop: dict[str, Any]) -> None:
    answer = shop["http"].delete(f"{SPECS}/{shop['spec']}")
    assert answer.status_code == 400 and shop["name"] in answer.json()["message"], answer.text
    assert shop["http"].get(f"{SPECS}/{shop['spec']}").status_code == 200


def test_the_inference_table_records_request_and_response(shop: dict[str, Any]) -> None:
    body = {"dataframe_records": [{"customer_id": 3}]}
    answer = ask(shop, body)
    assert answer.status_code == 200, answer.text
    request_id = answer.headers["x-request-id"]
    sql = (
        "SELECT request, response, status_code, served_entity_name "
        f"FROM main.{shop['schema']}.shop_log_payload WHERE databricks_request_id = '{request_id}'"
    )
    deadline = time.monotonic() + 30
    while True:
        found = shop["http"].post("/api/2.0/modelport/tables/query", json={"sql": sql})
        if found.status_code == 200 and found.json()["rows"]:
            break
        assert time.monotonic() < deadline, found.text
        time.sleep(0.3)
    [[request, response, status, served]] = found.json()["rows"]
    assert json.loads(request) == body
    assert json.loads(response) == {"outputs": [expected(shop, 3)]}
    assert (status, served) == (200, "customer_spec")


def test_a_dropped_table_is_a_503_naming_it(shop: dict[str, Any]) -> None:
    """Runs last: it drops the module's table."""
    shop["fe"].drop_table(shop["table"])
    answer = ask(shop, {"dataframe_records": [{"customer_id": 1}]})
    assert answer.status_code == 503, answer.text
    assert shop["table"] in answer.json()["message"], answer.text
