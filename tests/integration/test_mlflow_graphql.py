"""MLflow's GraphQL route (the web UI's run pages) on the real server, with registry permissions
applied field by field, on SQLite and PostgreSQL.

Alice logs and registers a model into an experiment of her own (she manages both) and logs a
metric on its run. Bob never gets a grant: every protected field is null for him, with a
PERMISSION_DENIED error, and searches leave out what he may not read. Carol gets CAN_READ on
the experiment, then on the model, and sees each once granted. The admin sees everything.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests.serverproc import ADMIN_TOKEN, ServerProcess
from tests.support.models import log_sklearn_model
from tests.support.names import unique
from tests.support.principals import create_user, obo_token
from tests.support.stores import STORES, server_on_each_store

ML = "/api/2.0/mlflow"

GET_EXPERIMENT = """query($id: String) {
  mlflowGetExperiment(input: {experimentId: $id}) { experiment { experimentId name } }
}"""
GET_RUN = """query($id: String) {
  mlflowGetRun(input: {runId: $id}) {
    run { info { runId experimentId } experiment { experimentId } modelVersions { name version } }
  }
}"""
LIST_ARTIFACTS = """query($id: String) {
  mlflowListArtifacts(input: {runId: $id}) { rootUri files { path } }
}"""
METRICS = """query($ids: [String]) {
  mlflowGetMetricHistoryBulkInterval(input: {runIds: $ids, metricKey: "loss"}) {
    metrics { key value runId }
  }
}"""
SEARCH_RUNS = """query($ids: [String]) {
  mlflowSearchRuns(input: {experimentIds: $ids, maxResults: 1000}) { runs { info { runId } } }
}"""
SEARCH_RUNS_MUTATION = SEARCH_RUNS.replace("query", "mutation", 1)
SEARCH_DATASETS = """mutation($ids: [String]) {
  mlflowSearchDatasets(input: {experimentIds: $ids}) { datasetSummaries { experimentId name } }
}"""
SEARCH_VERSIONS = """query($filter: String) {
  mlflowSearchModelVersions(input: {filter: $filter}) { modelVersions { name version } }
}"""


@pytest.fixture(scope="module", params=STORES)
def server(request: pytest.FixtureRequest) -> ServerProcess:
    return server_on_each_store(request)


@dataclass
class World:
    admin: httpx.Client
    alice: httpx.Client
    bob: httpx.Client  # never granted anything
    carol: httpx.Client  # granted by the test that needs it
    names: dict[str, str]
    experiment: str  # alice's
    run: str  # in alice's experiment, with the model's artifacts and a metric
    model: str  # registered by alice from that run, version 1


def _client(server: ServerProcess, token: str) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=60)


@contextmanager
def _mlflow_client_in(experiment_id: str) -> Iterator[None]:
    """The MLflow client's runs go to ``experiment_id``; its tracking settings are restored after."""
    import mlflow

    names = ("MLFLOW_TRACKING_TOKEN", "MLFLOW_EXPERIMENT_ID")
    previous = mlflow.get_tracking_uri(), {n: os.environ.get(n) for n in names}
    os.environ["MLFLOW_EXPERIMENT_ID"] = experiment_id
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous[0])
        for name, value in previous[1].items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def ok(resp: httpx.Response) -> Any:
    assert resp.status_code == 200, resp.text
    return resp.json()


@pytest.fixture(scope="module")
def world(server: ServerProcess) -> Iterator[World]:
    admin = _client(server, ADMIN_TOKEN)
    names = {who: f"{unique(who)}@example.com" for who in ("alice", "bob", "carol")}
    tokens = {}
    for who, user_name in names.items():
        create_user(admin, user_name)
        tokens[who] = obo_token(admin, user_name=user_name)["token_value"]
    alice = _client(server, tokens["alice"])
    experiment = ok(alice.post(f"{ML}/experiments/create", json={"name": unique("gql-exp")}))["experiment_id"]
    model = unique("gql-model")
    with _mlflow_client_in(experiment):
        log_sklearn_model(server.url, tokens["alice"], model)
    version = ok(alice.get(f"{ML}/model-versions/get", params={"name": model, "version": "1"}))
    run = version["model_version"]["run_id"]
    logged = ok(alice.get(f"{ML}/runs/get", params={"run_id": run}))["run"]["info"]
    assert logged["experiment_id"] == experiment
    # MLflow 3 keeps a logged model's files with the model: give the run a file of its own
    root = logged["artifact_uri"].removeprefix("mlflow-artifacts:")
    ok(alice.put(f"/api/2.0/mlflow-artifacts/artifacts{root}/notes.txt", content=b"alice's notes"))
    for step, loss in enumerate((0.9, 0.5)):
        ok(
            alice.post(
                f"{ML}/runs/log-metric",
                json={"run_id": run, "key": "loss", "value": loss, "timestamp": 1, "step": step},
            )
        )
    world = World(
        admin=admin,
        alice=alice,
        bob=_client(server, tokens["bob"]),
        carol=_client(server, tokens["carol"]),
        names=names,
        experiment=experiment,
        run=run,
        model=model,
    )
    yield world
    for client in (world.admin, world.alice, world.bob, world.carol):
        client.close()


def graphql(client: httpx.Client, query: str, **variables: Any) -> Any:
    """(data, errors) of a GraphQL request: MLflow answers 200 either way."""
    body = ok(client.post("/graphql", json={"query": query, "variables": variables}))
    return body["data"], body["errors"] or []


def denied(client: httpx.Client, query: str, **variables: Any) -> str:
    """The one field of ``query`` is null, with a PERMISSION_DENIED error; its message."""
    data, errors = graphql(client, query, **variables)
    assert list(data.values()) == [None], data
    assert len(errors) == 1 and errors[0].startswith("PERMISSION_DENIED: "), errors
    return str(errors[0])


def grant(by: httpx.Client, kind: str, object_id: str, user_name: str) -> None:
    ok(
        by.patch(
            f"/api/2.0/permissions/{kind}/{quote(object_id, safe='')}",
            json={"access_control_list": [{"user_name": user_name, "permission_level": "CAN_READ"}]},
        )
    )


def run_ids(data: Any) -> list[str]:
    return [r["info"]["runId"] for r in data["mlflowSearchRuns"]["runs"] or []]


def test_a_user_without_a_grant_reads_no_protected_field(world: World) -> None:
    bob, exp, run = world.bob, world.experiment, world.run
    message = denied(bob, GET_EXPERIMENT, id=exp)
    assert f"does not have CAN_READ permission on experiment '{exp}'" in message
    assert f"experiment '{exp}'" in denied(bob, GET_RUN, id=run)
    denied(bob, LIST_ARTIFACTS, id=run)
    denied(bob, METRICS, ids=[run])
    denied(bob, SEARCH_RUNS, ids=[exp])
    denied(bob, SEARCH_RUNS_MUTATION, ids=[exp])
    denied(bob, SEARCH_DATASETS, ids=[exp])

    data, errors = graphql(bob, SEARCH_VERSIONS, filter=f"name='{world.model}'")
    assert (data, errors) == ({"mlflowSearchModelVersions": {"modelVersions": []}}, [])
    data, errors = graphql(world.admin, SEARCH_VERSIONS, filter=f"name='{world.model}'")
    assert data["mlflowSearchModelVersions"]["modelVersions"] == [{"name": world.model, "version": "1"}]


def test_searches_keep_only_the_experiments_a_user_may_read(world: World) -> None:
    # the Default experiment is everyone's: the search runs there, and not in alice's
    data, errors = graphql(world.bob, SEARCH_RUNS, ids=[world.experiment, "0"])
    assert errors == [] and data["mlflowSearchRuns"] is not None
    assert world.run not in run_ids(data)
    assert world.run in run_ids(graphql(world.alice, SEARCH_RUNS, ids=[world.experiment, "0"])[0])
    data, errors = graphql(world.bob, SEARCH_DATASETS, ids=[world.experiment, "0"])
    assert errors == [] and data["mlflowSearchDatasets"] is not None


def test_one_run_a_user_may_not_read_refuses_a_metric_history(world: World) -> None:
    own = ok(world.bob.post(f"{ML}/runs/create", json={"experiment_id": "0"}))["run"]["info"]["run_id"]
    ok(
        world.bob.post(
            f"{ML}/runs/log-metric", json={"run_id": own, "key": "loss", "value": 1.0, "timestamp": 1}
        )
    )
    data, errors = graphql(world.bob, METRICS, ids=[own])
    assert errors == [] and [m["runId"] for m in data["mlflowGetMetricHistoryBulkInterval"]["metrics"]] == [
        own
    ]
    assert f"experiment '{world.experiment}'" in denied(world.bob, METRICS, ids=[own, world.run])


def test_a_user_reads_each_field_once_granted(world: World) -> None:
    carol, exp, run = world.carol, world.experiment, world.run
    denied(carol, GET_RUN, id=run)
    grant(world.alice, "experiments", exp, world.names["carol"])

    data, errors = graphql(carol, GET_EXPERIMENT, id=exp)
    assert errors == [] and data["mlflowGetExperiment"]["experiment"]["experimentId"] == exp
    data, errors = graphql(carol, GET_RUN, id=run)
    assert errors == []
    assert data["mlflowGetRun"]["run"]["info"] == {"runId": run, "experimentId": exp}
    assert data["mlflowGetRun"]["run"]["experiment"] == {"experimentId": exp}
    # the run's model versions are of a model carol may not read yet
    assert data["mlflowGetRun"]["run"]["modelVersions"] == []
    data, errors = graphql(carol, LIST_ARTIFACTS, id=run)
    assert errors == [] and [f["path"] for f in data["mlflowListArtifacts"]["files"]] == ["notes.txt"]
    data, errors = graphql(carol, METRICS, ids=[run])
    assert errors == []
    assert [m["value"] for m in data["mlflowGetMetricHistoryBulkInterval"]["metrics"]] == [0.9, 0.5]
    data, errors = graphql(carol, SEARCH_RUNS_MUTATION, ids=[exp])
    assert errors == [] and run_ids(data) == [run]
    data, errors = graphql(carol, SEARCH_DATASETS, ids=[exp])
    assert errors == [] and data["mlflowSearchDatasets"] == {"datasetSummaries": []}
    data, errors = graphql(carol, SEARCH_VERSIONS, filter=f"name='{world.model}'")
    assert data["mlflowSearchModelVersions"]["modelVersions"] == []

    grant(world.alice, "registered-models", world.model, world.names["carol"])
    versions = [{"name": world.model, "version": "1"}]
    data, errors = graphql(carol, GET_RUN, id=run)
    assert errors == [] and data["mlflowGetRun"]["run"]["modelVersions"] == versions
    data, errors = graphql(carol, SEARCH_VERSIONS, filter=f"name='{world.model}'")
    assert errors == [] and data["mlflowSearchModelVersions"]["modelVersions"] == versions
    # bob still reads nothing
    denied(world.bob, GET_RUN, id=run)


def test_admins_read_every_field(world: World) -> None:
    admin, exp, run = world.admin, world.experiment, world.run
    data, errors = graphql(admin, GET_RUN, id=run)
    assert errors == []
    assert data["mlflowGetRun"]["run"]["experiment"] == {"experimentId": exp}
    assert data["mlflowGetRun"]["run"]["modelVersions"] == [{"name": world.model, "version": "1"}]
    for query, variables in [
        (GET_EXPERIMENT, {"id": exp}),
        (LIST_ARTIFACTS, {"id": run}),
        (METRICS, {"ids": [run]}),
        (SEARCH_DATASETS, {"ids": [exp]}),
    ]:
        data, errors = graphql(admin, query, **variables)
        assert errors == [] and None not in data.values(), (query, data)
    assert run_ids(graphql(admin, SEARCH_RUNS, ids=[exp])[0]) == [run]


def test_the_graphql_route_needs_a_token_and_has_no_ajax_form(world: World, server: ServerProcess) -> None:
    anonymous = httpx.post(f"{server.url}/graphql", json={"query": '{ test(inputString: "x") { output } }'})
    assert anonymous.status_code == 401, anonymous.text
    assert graphql(world.bob, '{ test(inputString: "x") { output } }') == ({"test": {"output": "x"}}, [])
    # MLflow serves GraphQL at /graphql only (its UI posts to "graphql" relative to the page)
    assert world.bob.post("/ajax-api/graphql", json={"query": "{ __typename }"}).status_code == 404
