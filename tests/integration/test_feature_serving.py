"""Seed 002's feature serving, end to end on the real server: a fraud model trained on a training
set built from a feature table, logged with ``FeatureEngineeringClient.log_model``, registered,
served, and queried with the user's id only; the endpoint looks the features up in the online
store and answers what the model answers on the features joined offline.

Then the lookup client's runtime rules over HTTP (a missing key column and a null key are 400s
naming the column, a key with no row gets the lookup's default values, a feature in the request
overrides the lookup), the endpoint's inference table (each query's row holds the rows the raw
model received, with the features looked up for that query) and the missing-key metric, a
continuous publish seen by the next query within 5 s, and a dropped table answered with an error
naming it (never wrong values).

A second model on the same table adds a feature function (``amount_ratio``, registered from
this file's :func:`amount_ratio`): trained on its outputs computed offline, served with only the
key and the amount, the replica computes it from the looked-up average.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from modelport.features import FeatureEngineeringClient, FeatureFunction, FeatureLookup
from tests.serverproc import ADMIN_TOKEN, ServerProcess
from tests.support.endpoints import kept_endpoint
from tests.support.names import unique
from tests.support.principals import create_user, obo_token

API = "/api/2.0/serving-endpoints"
FEATURES = ["avg_amount_30d", "txn_count_7d", "account_age_days"]
#: What a user without a row in the feature table gets (a new user).
DEFAULTS = {"avg_amount_30d": 50.0, "txn_count_7d": 0, "account_age_days": 0}


def _features(users: range, rng: np.random.Generator) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user_id": list(users),
            "avg_amount_30d": rng.uniform(5, 500, len(users)).round(2),
            "txn_count_7d": rng.integers(0, 40, len(users)).astype("int64"),
            "account_age_days": rng.integers(1, 3000, len(users)).astype("int64"),
        }
    )


@pytest.fixture(scope="module")
def fraud(server: ServerProcess) -> Iterator[dict[str, Any]]:
    """The feature table ``main.fraud_<id>.user_features`` (users 1..200, published continuously),
    the model trained on it, registered and served by an endpoint whose inference table is
    ``main.fraud_<id>.fraud_log_payload``."""
    import mlflow
    from sklearn.linear_model import LogisticRegression

    os.environ["MLFLOW_TRACKING_TOKEN"] = ADMIN_TOKEN
    mlflow.set_tracking_uri(server.url)
    rng = np.random.default_rng(7)
    schema = unique("fraud").replace("-", "_")
    table = f"main.{schema}.user_features"
    fe = FeatureEngineeringClient(host=server.url, token=ADMIN_TOKEN)
    features = _features(range(1, 201), rng)
    created = fe.create_table(table, primary_keys="user_id", df=features, description="per-user behaviour")
    assert created.primary_keys == ["user_id"]
    state = fe.publish_table(table, mode="continuous")
    assert state["rows"] == 200, state
    # Labelled transactions: the request-time input is the amount; the label depends on both.
    labels = pd.DataFrame(
        {"user_id": rng.integers(1, 201, 600), "amount": rng.uniform(1, 2000, 600).round(2)}
    )
    joined = labels.merge(features, on="user_id")
    labels["is_fraud"] = (
        (joined["amount"] > 3 * joined["avg_amount_30d"]) & (joined["txn_count_7d"] < 20)
    ).astype(int)
    training_set = fe.create_training_set(
        labels,
        [FeatureLookup(table_name=table, lookup_key="user_id", default_values=DEFAULTS)],
        label="is_fraud",
        exclude_columns=["user_id"],  # the key: looked up with, not a model input
    )
    train = training_set.load_df()
    assert sorted(train.columns) == sorted(["amount", *FEATURES, "is_fraud"])
    inputs = ["amount", *FEATURES]
    model = LogisticRegression(max_iter=2000).fit(train[inputs], train["is_fraud"])
    model_name = unique("fraud-detector")
    with mlflow.start_run():
        info = fe.log_model(
            model,
            "model",
            flavor=mlflow.sklearn,
            training_set=training_set,
            registered_model_name=model_name,
            pip_requirements=["scikit-learn"],
        )
    version = str(info.registered_model_version)
    entities = [{"entity_name": model_name, "entity_version": version}]
    with (
        kept_endpoint(server, unique("fraud-ep"), entities) as name,
        httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=60
        ) as http,
    ):
        # The inference table: set on the served endpoint (no new config, no new replicas).
        table_config = {"catalog_name": "main", "schema_name": schema, "table_name_prefix": "fraud_log"}
        gateway = http.put(
            f"{API}/{name}/ai-gateway", json={"inference_table_config": {**table_config, "enabled": True}}
        )
        assert gateway.status_code == 200, gateway.text
        yield {
            "fe": fe,
            "table": table,
            "payload_table": f"main.{schema}.fraud_log_payload",
            "features": features,
            "model": model,
            "inputs": inputs,
            "http": http,
            "name": name,
        }
    fe.drop_table(table)
    fe.close()


def ask(fraud: dict[str, Any], rows: list[dict[str, Any]]) -> httpx.Response:
    return fraud["http"].post(
        f"/serving-endpoints/{fraud['name']}/invocations", json={"dataframe_records": rows}
    )


def offline(
    fraud: dict[str, Any], rows: list[dict[str, Any]], features: pd.DataFrame | None = None
) -> list[Any]:
    """The model's predictions on the rows joined with the features offline."""
    table = fraud["features"] if features is None else features
    joined = pd.DataFrame(rows).merge(table, on="user_id", how="left")
    return fraud["model"].predict(joined[fraud["inputs"]]).tolist()


def amount_ratio(amount: float, average: float) -> float:
    """How many times the user's 30-day average the amount is."""
    return round(amount / average, 6)


@pytest.fixture(scope="module")
def ratio_model(server: ServerProcess, fraud: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """A model trained on the table's features and ``amount_ratio`` (a feature function reading
    the request's amount and the looked-up average), served by its own endpoint."""
    import mlflow
    from sklearn.linear_model import LogisticRegression

    fe, table = fraud["fe"], fraud["table"]
    function = f"{table.rsplit('.', 1)[0]}.amount_ratio"
    fe.create_function(function, amount_ratio)
    rng = np.random.default_rng(11)
    labels = pd.DataFrame(
        {"user_id": rng.integers(1, 201, 400), "amount": rng.uniform(1, 2000, 400).round(2)}
    )
    joined = labels.merge(fraud["features"], on="user_id")
    labels["is_fraud"] = (joined["amount"] > 3 * joined["avg_amount_30d"]).astype(int)
    training_set = fe.create_training_set(
        labels,
        [
            FeatureLookup(table_name=table, lookup_key="user_id", default_values=DEFAULTS),
            FeatureFunction(
                udf_name=function, input_bindings={"average": "avg_amount_30d"}, output_name="amount_ratio"
            ),
        ],
        label="is_fraud",
        exclude_columns=["user_id"],
    )
    train = training_set.load_df()
    inputs = ["amount", *FEATURES, "amount_ratio"]
    assert list(train.columns) == [*inputs, "is_fraud"]
    model = LogisticRegression(max_iter=2000).fit(train[inputs], train["is_fraud"])
    model_name = unique("fraud-ratio")
    with mlflow.start_run():
        info = fe.log_model(
            model,
            "model",
            flavor=mlflow.sklearn,
            training_set=training_set,
            registered_model_name=model_name,
            pip_requirements=["scikit-learn"],
        )
    entities = [{"entity_name": model_name, "entity_version": str(info.registered_model_version)}]
    with kept_endpoint(server, unique("fraud-ratio-ep"), entities) as name:
        yield {"function": function, "model": model, "inputs": inputs, "name": name}
    fe.delete_function(function)


def test_only_the_key_is_sent_and_the_answer_is_the_models_on_the_joined_features(
    fraud: dict[str, Any],
) -> None:
    rows = [
        {"user_id": 3, "amount": 1500.0},
        {"user_id": 42, "amount": 12.5},
        {"user_id": 200, "amount": 900.0},
    ]
    answer = ask(fraud, rows)
    assert answer.status_code == 200, answer.text
    assert answer.json()["predictions"] == offline(fraud, rows)
    # The same rows in one request each: the batcher joins them; the answers do not change.
    for row, expected in zip(rows, offline(fraud, rows), strict=True):
        single = ask(fraud, [row])
        assert single.json()["predictions"] == [expected]


def test_the_runtime_rules_of_the_lookup(fraud: dict[str, Any]) -> None:
    missing = ask(fraud, [{"amount": 10.0}])
    assert missing.status_code == 400 and "user_id" in missing.json()["message"], missing.text
    null_key = ask(fraud, [{"user_id": None, "amount": 10.0}])
    assert null_key.status_code == 400 and "user_id" in null_key.json()["message"], null_key.text
    # A key with no row: the lookup's default values.
    unknown = [{"user_id": 99_999, "amount": 400.0}]
    answer = ask(fraud, unknown)
    assert answer.status_code == 200, answer.text
    defaults = pd.DataFrame(unknown).assign(**DEFAULTS)
    assert answer.json()["predictions"] == fraud["model"].predict(defaults[fraud["inputs"]]).tolist()
    # A feature sent with the request overrides the lookup.
    overridden = [{"user_id": 5, "amount": 800.0, "avg_amount_30d": 1.0, "txn_count_7d": 0}]
    answer = ask(fraud, overridden)
    assert answer.status_code == 200, answer.text
    joined = pd.DataFrame(overridden).assign(
        account_age_days=int(fraud["features"].set_index("user_id").loc[5, "account_age_days"])
    )
    assert answer.json()["predictions"] == fraud["model"].predict(joined[fraud["inputs"]]).tolist()


def missing_keys_counted(fraud: dict[str, Any]) -> float:
    """``modelport_feature_lookup_missing_total`` of the endpoint and its table, from ``/metrics``."""
    metrics = fraud["http"].get("/metrics").text
    line = f'modelport_feature_lookup_missing_total{{endpoint="{fraud["name"]}",table="{fraud["table"]}"}}'
    counted = [row for row in metrics.splitlines() if row.startswith(line + " ")]
    return float(counted[0].split()[-1]) if counted else 0.0


def recorded(fraud: dict[str, Any], request_ids: list[str]) -> dict[str, tuple[Any, Any, bool]]:
    """The inference table's ``(request, received_request, request_truncated)`` of each request
    id, once the flusher (every 2 s) has written them all."""
    ids = ", ".join(f"'{i}'" for i in request_ids)
    sql = (
        "SELECT databricks_request_id, request, received_request, request_truncated "
        f"FROM {fraud['payload_table']} WHERE databricks_request_id IN ({ids})"
    )
    deadline = time.monotonic() + 30
    while True:
        found = fraud["http"].post("/api/2.0/modelport/tables/query", json={"sql": sql})
        if found.status_code == 200 and len(found.json()["rows"]) == len(request_ids):
            break
        assert time.monotonic() < deadline, found.text
        time.sleep(0.3)
    return {rid: (json.loads(req), json.loads(sent), cut) for rid, req, sent, cut in found.json()["rows"]}


def looked_up(fraud: dict[str, Any], row: dict[str, Any]) -> dict[str, Any]:
    """What the raw model receives for ``row``: its amount and its user's features (the defaults
    for a user without a row), in the spec's order; the key is excluded from the model's inputs."""
    table = fraud["features"].set_index("user_id")
    if row["user_id"] in table.index:
        features = {f: table.loc[row["user_id"], f].item() for f in FEATURES}
    else:
        features = DEFAULTS
    return {"amount": row["amount"], **features}


def test_the_inference_table_records_each_querys_looked_up_features_and_missing_keys_are_counted(
    fraud: dict[str, Any],
) -> None:
    before = missing_keys_counted(fraud)
    # One request of several rows, two of them keys without a row.
    rows = [
        {"user_id": 3, "amount": 1500.0},
        {"user_id": 88_881, "amount": 30.0},
        {"user_id": 42, "amount": 12.5},
        {"user_id": 88_882, "amount": 1.0},
    ]
    answer = ask(fraud, rows)
    assert answer.status_code == 200, answer.text
    # Key-only queries sent at once: the replica predicts them together (when they meet in its
    # queue), and each query's record still holds its own row's features.
    singles = [{"user_id": u, "amount": 100.0 + u} for u in (5, 6, 7, 8, 9, 88_883)]
    with ThreadPoolExecutor(len(singles)) as pool:
        answers = list(pool.map(lambda row: ask(fraud, [row]), singles))
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
    # Every key without a row, counted per endpoint and table, as for feature-spec endpoints.
    assert missing_keys_counted(fraud) - before == 3
    ids = [answer.headers["x-request-id"]] + [a.headers["x-request-id"] for a in answers]
    records = recorded(fraud, ids)
    request, received, cut = records[ids[0]]
    assert request == {"dataframe_records": [looked_up(fraud, row) for row in rows]}
    assert received == {"dataframe_records": rows}  # the request as sent: the keys
    assert not cut
    for rid, row in zip(ids[1:], singles, strict=True):
        assert records[rid][0] == {"dataframe_records": [looked_up(fraud, row)]}, row
        assert records[rid][1] == {"dataframe_records": [row]}


def test_a_continuous_publish_reaches_the_next_query_within_five_seconds(fraud: dict[str, Any]) -> None:
    row = {"user_id": 77, "amount": 700.0}
    before = ask(fraud, [row]).json()["predictions"]
    assert before == offline(fraud, [row])
    changed = fraud["features"].copy()
    # User 77 now spends little and rarely: the same amount becomes suspicious (or the opposite).
    new_avg, new_count = (10.0, 1) if before == [0] else (5000.0, 39)
    changed.loc[changed["user_id"] == 77, ["avg_amount_30d", "txn_count_7d"]] = [new_avg, new_count]
    expected = offline(fraud, [row], changed)
    assert expected != before, "the change must move the model's answer"
    fraud["fe"].write_table(fraud["table"], changed[changed["user_id"] == 77], mode="merge")
    written = time.monotonic()
    while (got := ask(fraud, [row]).json()["predictions"]) != expected:
        assert time.monotonic() - written < 5.0, f"still {got} 5 s after the write"
        time.sleep(0.1)
    print(
        f"\ncontinuous publish: the new features answered {time.monotonic() - written:.2f} s after the write"
    )
    fraud["features"] = changed


def ask_ratio(fraud: dict[str, Any], ratio: dict[str, Any], rows: list[dict[str, Any]]) -> httpx.Response:
    return fraud["http"].post(
        f"/serving-endpoints/{ratio['name']}/invocations", json={"dataframe_records": rows}
    )


def test_a_feature_function_is_computed_at_serving_as_in_training(
    fraud: dict[str, Any], ratio_model: dict[str, Any]
) -> None:
    rows = [
        {"user_id": 3, "amount": 1500.0},
        {"user_id": 42, "amount": 12.5},
        {"user_id": 99_999, "amount": 400.0},  # no row: the default average, then the function
    ]
    answer = ask_ratio(fraud, ratio_model, rows)
    assert answer.status_code == 200, answer.text
    joined = pd.DataFrame(rows).merge(fraud["features"], on="user_id", how="left").fillna(DEFAULTS)
    joined["amount_ratio"] = [
        amount_ratio(a, b) for a, b in zip(joined["amount"], joined["avg_amount_30d"], strict=True)
    ]
    assert (
        answer.json()["predictions"] == ratio_model["model"].predict(joined[ratio_model["inputs"]]).tolist()
    )


def test_a_feature_functions_output_in_the_request_overrides_it_and_its_errors_name_it(
    fraud: dict[str, Any], ratio_model: dict[str, Any]
) -> None:
    overridden = [{"user_id": 3, "amount": 1.0, "amount_ratio": 1000.0}]
    answer = ask_ratio(fraud, ratio_model, overridden)
    assert answer.status_code == 200, answer.text
    joined = pd.DataFrame(overridden).merge(fraud["features"], on="user_id")
    assert (
        answer.json()["predictions"] == ratio_model["model"].predict(joined[ratio_model["inputs"]]).tolist()
    )
    # A zero average (sent as an override of the feature) makes the function divide by zero.
    failing = [{"user_id": 3, "amount": 1.0}, {"user_id": 4, "amount": 1.0, "avg_amount_30d": 0.0}]
    answer = ask_ratio(fraud, ratio_model, failing)
    assert answer.status_code == 400, answer.text
    message = answer.json()["message"]
    assert ratio_model["function"] in message and "row 1" in message and "ZeroDivisionError" in message


def test_feature_functions_are_read_by_anyone_and_registered_by_admins(
    server: ServerProcess, fraud: dict[str, Any], ratio_model: dict[str, Any], tmp_path: Any
) -> None:
    from typer.testing import CliRunner

    from modelport.client.cli.main import app

    http, function = fraud["http"], ratio_model["function"]
    user = create_user(http, unique("fn-reader"))["userName"]
    token = obo_token(http, user_name=user)["token_value"]
    base = "/api/2.0/feature-engineering/functions"
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as alice:
        got = alice.get(f"{base}/{function}")
        assert got.status_code == 200, got.text
        assert got.json()["parameters"] == [
            {"name": "amount", "type": "double"},
            {"name": "average", "type": "double"},
        ]
        assert function in [f["name"] for f in alice.get(base).json()["functions"]]
        body = {**got.json(), "name": function.replace("amount_ratio", "mine")}
        assert alice.post(base, json=body).status_code == 403
        assert alice.delete(f"{base}/{function}").status_code == 403
    # The CLI registers a function of a file (parsed, not run, on the client).
    source = tmp_path / "fns.py"
    source.write_text(
        "import math\n\n\ndef log_amount(amount: float) -> float:\n    return math.log(amount)\n"
    )
    name = function.replace("amount_ratio", "log_amount")
    common = ["--host", server.url, "--token", ADMIN_TOKEN]
    runner = CliRunner()
    created = runner.invoke(
        app,
        ["features", "functions", "create", name, "--file", str(source), "--entry", "log_amount", *common],
    )
    assert created.exit_code == 0, created.output
    assert "log_amount(amount double) -> double" in created.output
    shown = runner.invoke(app, ["features", "functions", "get", name, *common])
    assert "return math.log(amount)" in shown.output, shown.output
    assert runner.invoke(app, ["features", "functions", "delete", name, *common]).exit_code == 0
    assert http.get(f"{base}/{name}").status_code == 404


def test_a_dropped_table_is_named_in_the_error_and_a_republish_heals_the_endpoint(
    fraud: dict[str, Any],
) -> None:
    """Runs last: it drops the module's table and makes it again."""
    fe, table, row = fraud["fe"], fraud["table"], {"user_id": 3, "amount": 1500.0}
    fe.drop_table(table)
    broken = ask(fraud, [row])
    assert broken.status_code == 503, broken.text
    assert table in broken.json()["message"], broken.text  # never an answer on wrong values
    fe.create_table(table, primary_keys="user_id", df=fraud["features"])
    fe.publish_table(table, mode="snapshot")
    healed = ask(fraud, [row])
    assert healed.status_code == 200, healed.text
    assert healed.json()["predictions"] == offline(fraud, [row])
