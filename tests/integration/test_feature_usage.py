"""``GET /api/2.0/feature-engineering/serving-endpoints/{name}/features`` on the real server: the
features a served feature-aware model looks up (read from its registered files), nothing for an
entity that looks nothing up, CAN_VIEW on the endpoint, and the problems a lookup would meet now
(a table not published, a feature missing from its published copy, a dropped table), gone
again once a compatible table is published.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from modelport.features import FeatureEngineeringClient, FeatureLookup
from tests.serverproc import ADMIN_TOKEN, ServerProcess
from tests.support.endpoints import kept_endpoint
from tests.support.feature_models import DEFAULTS, create_user_features, log_feature_model
from tests.support.names import unique
from tests.support.principals import create_user, obo_token

pytestmark = pytest.mark.slow

FEATURES_OF = "/api/2.0/feature-engineering/serving-endpoints/{}/features"


@pytest.fixture(scope="module")
def served(server: ServerProcess) -> Iterator[dict[str, Any]]:
    """The table ``main.usage_<id>.users`` (published), a model that looks it up, and an
    endpoint serving that model."""
    table = f"main.{unique('usage').replace('-', '_')}.users"
    create_user_features(server.url, ADMIN_TOKEN, table)
    model = unique("usage-model")
    version = log_feature_model(server.url, ADMIN_TOKEN, table, model)
    entities = [{"name": "fraud", "entity_name": model, "entity_version": version}]
    with (
        kept_endpoint(server, unique("usage-ep"), entities) as name,
        httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=60
        ) as http,
    ):
        yield {"table": table, "model": model, "version": version, "name": name, "http": http}
    with FeatureEngineeringClient(host=server.url, token=ADMIN_TOKEN) as fe:
        fe.drop_table(table)


def features_of(http: httpx.Client, name: str) -> dict[str, Any]:
    answer = http.get(FEATURES_OF.format(name))
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def test_a_feature_aware_model_lists_the_features_it_looks_up(served: dict[str, Any]) -> None:
    table = served["table"]
    got = features_of(served["http"], served["name"])
    assert got == {
        "served_entities": [
            {
                "name": "fraud",
                "entity_name": served["model"],
                "entity_version": served["version"],
                "features": [
                    {
                        "output_name": feature,
                        "table_name": table,
                        "feature_name": feature,
                        "lookup_key": ["user_id"],
                        "timestamp_lookup_key": [],
                        "data_type": data_type,
                        "default_value": default,
                    }
                    for feature, data_type, default in (
                        ("avg_amount", "double", str(DEFAULTS["avg_amount"])),
                        ("txn_count", "bigint", str(DEFAULTS["txn_count"])),
                    )
                ],
                "functions": [],
                "problems": [],
            }
        ]
    }


def test_a_feature_spec_endpoint_lists_the_specs_features(served: dict[str, Any]) -> None:
    """An entity serving a feature spec carries the spec in its config: no registry involved."""
    http, table = served["http"], served["table"]
    spec = f"{table.rsplit('.', 1)[0]}.user_spec"
    with FeatureEngineeringClient(host=str(http.base_url), token=ADMIN_TOKEN) as fe:
        fe.create_feature_spec(
            spec, [FeatureLookup(table_name=table, lookup_key="user_id", feature_names=["txn_count"])]
        )
        try:
            name = unique("usage-spec")
            body = {
                "name": name,
                "config": {"served_entities": [{"entity_name": spec}]},
                "is_feature_serving": True,
            }
            created = http.post("/api/2.0/serving-endpoints", json=body)
            assert created.status_code == 200, created.text
            (entity,) = features_of(http, name)["served_entities"]
            assert (entity["entity_name"], entity["entity_version"], entity["problems"]) == (spec, None, [])
            assert entity["features"] == [
                {
                    "output_name": "txn_count",
                    "table_name": table,
                    "feature_name": "txn_count",
                    "lookup_key": ["user_id"],
                    "timestamp_lookup_key": [],
                    "data_type": "bigint",
                    "default_value": None,
                }
            ]
            assert http.delete(f"/api/2.0/serving-endpoints/{name}").status_code == 200
        finally:
            fe.delete_feature_spec(spec)


def test_feature_functions_are_listed_with_their_bindings(
    server: ServerProcess, served: dict[str, Any]
) -> None:
    http, table = served["http"], served["table"]
    function = f"{table.rsplit('.', 1)[0]}.amount_ratio"
    model = unique("usage-fn-model")
    version = log_feature_model(server.url, ADMIN_TOKEN, table, model, function=function)
    name = unique("usage-fn")
    entity = {"name": "fn", "entity_name": model, "entity_version": version}
    created = http.post(
        "/api/2.0/serving-endpoints", json={"name": name, "config": {"served_entities": [entity]}}
    )
    assert created.status_code == 200, created.text
    (got,) = features_of(http, name)["served_entities"]
    assert [f["output_name"] for f in got["features"]] == ["avg_amount", "txn_count"]
    assert got["functions"] == [
        {
            "output_name": "amount_ratio",
            "udf_name": function,
            "input_bindings": {"amount": "amount", "average": "avg_amount"},
            "data_type": "double",
        }
    ]
    assert got["problems"] == []


def test_an_entity_that_looks_nothing_up_has_no_features(http: httpx.Client) -> None:
    entity = {
        "name": "chat",
        "external_model": {
            "provider": "openai",
            "name": "gpt-4o-mini",
            "task": "llm/v1/chat",
            "openai_config": {"openai_api_key_plaintext": "sk-unused"},
        },
    }
    name = unique("usage-external")
    created = http.post(
        "/api/2.0/serving-endpoints", json={"name": name, "config": {"served_entities": [entity]}}
    )
    assert created.status_code == 200, created.text
    assert features_of(http, name) == {
        "served_entities": [
            {
                "name": "chat",
                "entity_name": None,
                "entity_version": None,
                "features": [],
                "functions": [],
                "problems": [],
            }
        ]
    }
    missing = http.get(FEATURES_OF.format(unique("no-such-endpoint")))
    assert missing.status_code == 404, missing.text
    assert missing.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"


def test_reading_them_needs_can_view_on_the_endpoint(server: ServerProcess, served: dict[str, Any]) -> None:
    http = served["http"]
    user = create_user(http, unique("usage-user"))["userName"]
    token = obo_token(http, user_name=user)["token_value"]
    path = FEATURES_OF.format(served["name"])
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=60) as alice:
        refused = alice.get(path)
        assert refused.status_code == 403, refused.text
        assert refused.json()["error_code"] == "PERMISSION_DENIED"
        endpoint_id = http.get(f"/api/2.0/serving-endpoints/{served['name']}").json()["id"]
        grant = {"access_control_list": [{"user_name": user, "permission_level": "CAN_VIEW"}]}
        granted = http.patch(f"/api/2.0/permissions/serving-endpoints/{endpoint_id}", json=grant)
        assert granted.status_code == 200, granted.text
        allowed = alice.get(path)
        assert allowed.status_code == 200, allowed.text
        assert [f["output_name"] for f in allowed.json()["served_entities"][0]["features"]] == [
            "avg_amount",
            "txn_count",
        ]


def test_problems_name_the_table_and_feature_and_heal_on_republish(
    server: ServerProcess, served: dict[str, Any]
) -> None:
    """Runs last: drops the module's table, makes it again without a feature, then whole."""
    http, table, name = served["http"], served["table"], served["name"]

    def problems() -> list[dict[str, Any]]:
        return list(features_of(http, name)["served_entities"][0]["problems"])

    with FeatureEngineeringClient(host=server.url, token=ADMIN_TOKEN) as fe:
        fe.drop_table(table)
        assert problems() == [
            {
                "table_name": table,
                "message": f"Feature table '{table}' does not exist: its lookups fail until it is "
                "created and published again.",
            }
        ]
        create_user_features(server.url, ADMIN_TOKEN, table, publish=None, drop=("txn_count",))
        assert problems() == [
            {
                "table_name": table,
                "message": f"Feature table '{table}' is not published to the online store: its lookups "
                "fail until it is published.",
            }
        ]
        fe.publish_table(table)
        assert problems() == [
            {
                "table_name": table,
                "feature_name": "txn_count",
                "message": f"Feature table '{table}' published to the online store has no feature "
                "'txn_count'.",
            }
        ]
        # the endpoint answers the same problem (never a value made up for the missing feature)
        query = {"dataframe_records": [{"user_id": 1, "amount": 10.0}]}
        broken = http.post(f"/serving-endpoints/{name}/invocations", json=query)
        assert broken.status_code == 503 and "txn_count" in broken.json()["message"], broken.text
        fe.drop_table(table)
        create_user_features(server.url, ADMIN_TOKEN, table, primary_keys=("user_id", "avg_amount"))
        assert problems() == [
            {
                "table_name": table,
                "message": f"Feature table '{table}' is published with primary key (user_id, avg_amount), "
                "but the model looks it up by (user_id).",
            }
        ]
        fe.drop_table(table)
        create_user_features(server.url, ADMIN_TOKEN, table)
        assert problems() == []
        healed = http.post(f"/serving-endpoints/{name}/invocations", json=query)
        assert healed.status_code == 200, healed.text
