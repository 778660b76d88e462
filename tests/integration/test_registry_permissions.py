"""Registered-model and experiment permissions in the embedded MLflow registry, on the real
server, on SQLite and PostgreSQL.

Alice logs and registers a model with the MLflow client and her own token (so she manages it);
Bob and Carol are users with no grant until a test gives one; a group and a service principal
get grants through the Databricks permissions routes. Names carry a per-store suffix, so the
session servers shared with other suites are left as they were found (except what is listed).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests.serverproc import ADMIN_TOKEN, ServerProcess
from tests.support.models import log_sklearn_model
from tests.support.principals import SCIM, create_user, obo_token
from tests.support.stores import STORES, server_on_each_store

ML = "/api/2.0/mlflow"
PERMS = "/api/2.0/permissions"


@pytest.fixture(scope="module", params=STORES)
def server(request: pytest.FixtureRequest) -> ServerProcess:
    return server_on_each_store(request)


@dataclass
class World:
    admin: httpx.Client
    alice: httpx.Client
    bob: httpx.Client
    carol: httpx.Client
    bot: httpx.Client  # a service principal
    names: dict[str, str]  # alice, bob, carol, team (a group with bob), bot (application id)
    model: str  # registered by alice, version 1
    source: str  # version 1's source
    experiment: str  # created by alice


def _client(server: ServerProcess, token: str) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=60)


@pytest.fixture(scope="module")
def world(server: ServerProcess) -> Iterator[World]:
    import mlflow

    suffix = uuid.uuid4().hex[:6]
    previous = (mlflow.get_tracking_uri(), os.environ.get("MLFLOW_TRACKING_TOKEN"))
    admin = _client(server, ADMIN_TOKEN)
    names = {who: f"{who}-{suffix}@example.com" for who in ("alice", "bob", "carol")}
    tokens, ids = {}, {}
    for who, user_name in names.items():
        ids[who] = create_user(admin, user_name)["id"]
        tokens[who] = obo_token(admin, user_name=user_name)["token_value"]
    team = admin.post(f"{SCIM}/Groups", json={"displayName": f"team-{suffix}"})
    assert team.status_code == 201, team.text
    patched = admin.patch(
        f"{SCIM}/Groups/{team.json()['id']}",
        json={"Operations": [{"op": "add", "path": "members", "value": [{"value": ids["bob"]}]}]},
    )
    assert [m["display"] for m in patched.json()["members"]] == [names["bob"]]
    sp = admin.post(f"{SCIM}/ServicePrincipals", json={"displayName": f"bot-{suffix}"})
    assert sp.status_code == 201, sp.text
    app_id = sp.json()["applicationId"]
    tokens["bot"] = obo_token(admin, application_id=app_id)["token_value"]
    names.update(team=f"team-{suffix}", bot=app_id)

    model = f"rp-model-{suffix}"
    try:
        log_sklearn_model(server.url, tokens["alice"], model)
    finally:
        mlflow.set_tracking_uri(previous[0])
        if previous[1] is None:
            os.environ.pop("MLFLOW_TRACKING_TOKEN", None)
        else:
            os.environ["MLFLOW_TRACKING_TOKEN"] = previous[1]
    alice = _client(server, tokens["alice"])
    source = ok(alice.get(f"{ML}/model-versions/get", params={"name": model, "version": "1"}))[
        "model_version"
    ]
    experiment = ok(alice.post(f"{ML}/experiments/create", json={"name": f"rp-exp-{suffix}"}))[
        "experiment_id"
    ]
    world = World(
        admin=admin,
        alice=alice,
        bob=_client(server, tokens["bob"]),
        carol=_client(server, tokens["carol"]),
        bot=_client(server, tokens["bot"]),
        names=names,
        model=model,
        source=source["source"],
        experiment=experiment,
    )
    yield world
    for client in (world.admin, world.alice, world.bob, world.carol, world.bot):
        client.close()


def ok(resp: httpx.Response, status: int = 200) -> Any:
    assert resp.status_code == status, resp.text
    return resp.json()


def refused(resp: httpx.Response, status: int = 403, code: str = "PERMISSION_DENIED") -> str:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert body["error_code"] == code, body
    return str(body["message"])


def version_of(world: World, name: str) -> dict[str, str]:
    """A model-versions/create body: a new version of ``name`` from version 1's logged model."""
    return {"name": name, "source": world.source, "model_id": world.source.removeprefix("models:/")}


def new_model(world: World, owner: httpx.Client) -> str:
    name = f"rp-{uuid.uuid4().hex[:8]}"
    ok(owner.post(f"{ML}/registered-models/create", json={"name": name}))
    ok(owner.post(f"{ML}/model-versions/create", json=version_of(world, name)))
    return name


def grant(
    world: World, by: httpx.Client, kind: str, object_id: str, method: str = "PATCH", **entry: str
) -> Any:
    return by.request(
        method, f"{PERMS}/{kind}/{quote(object_id, safe='')}", json={"access_control_list": [entry]}
    )


def test_a_user_without_permission_cannot_delete_a_model_and_it_stays(world: World) -> None:
    message = refused(
        world.bob.request("DELETE", f"{ML}/registered-models/delete", json={"name": world.model})
    )
    assert f"does not have CAN_MANAGE permission on registered model '{world.model}'" in message
    # the MLflow UI's path goes through the same check
    refused(
        world.bob.request(
            "DELETE", "/ajax-api/2.0/mlflow/registered-models/delete", json={"name": world.model}
        )
    )
    assert ok(world.admin.get(f"{ML}/registered-models/get", params={"name": world.model}))[
        "registered_model"
    ]
    assert ok(world.alice.get(f"{ML}/registered-models/get", params={"name": world.model}))[
        "registered_model"
    ]


def test_can_read_gets_searches_and_downloads_but_changes_nothing(world: World) -> None:
    name = new_model(world, world.alice)
    bob = world.bob
    refused(bob.get(f"{ML}/registered-models/get", params={"name": name}))
    ok(
        grant(
            world,
            world.alice,
            "registered-models",
            name,
            user_name=world.names["bob"],
            permission_level="CAN_READ",
        )
    )

    assert (
        ok(bob.get(f"{ML}/registered-models/get", params={"name": name}))["registered_model"]["name"] == name
    )
    found = ok(bob.get(f"{ML}/registered-models/search", params={"filter": f"name='{name}'"}))
    assert [m["name"] for m in found["registered_models"]] == [name]
    ok(bob.get(f"{ML}/model-versions/get-download-uri", params={"name": name, "version": "1"}))
    mlmodel = bob.get(
        "/model-versions/get-artifact", params={"name": name, "version": "1", "path": "MLmodel"}
    )
    assert mlmodel.status_code == 200 and b"flavors" in mlmodel.content

    refused(bob.patch(f"{ML}/registered-models/update", json={"name": name, "description": "mine"}))
    refused(bob.post(f"{ML}/registered-models/set-tag", json={"name": name, "key": "k", "value": "v"}))
    refused(bob.post(f"{ML}/model-versions/create", json=version_of(world, name)))
    refused(bob.request("DELETE", f"{ML}/registered-models/delete", json={"name": name}))
    refused(bob.request("DELETE", f"{ML}/model-versions/delete", json={"name": name, "version": "1"}))


def test_can_edit_adds_versions_and_tags_but_cannot_delete_or_share(world: World) -> None:
    name = new_model(world, world.alice)
    bob = world.bob
    ok(
        grant(
            world,
            world.alice,
            "registered-models",
            name,
            user_name=world.names["bob"],
            permission_level="CAN_EDIT",
        )
    )

    ok(bob.post(f"{ML}/registered-models/set-tag", json={"name": name, "key": "k", "value": "v"}))
    ok(bob.post(f"{ML}/registered-models/alias", json={"name": name, "alias": "champion", "version": "1"}))
    version = ok(bob.post(f"{ML}/model-versions/create", json=version_of(world, name)))
    assert version["model_version"]["version"] == "2"

    refused(bob.request("DELETE", f"{ML}/model-versions/delete", json={"name": name, "version": "2"}))
    refused(bob.request("DELETE", f"{ML}/registered-models/delete", json={"name": name}))
    refused(
        grant(
            world, bob, "registered-models", name, user_name=world.names["carol"], permission_level="CAN_READ"
        )
    )


def test_can_manage_deletes_shares_and_renames_with_grants_following(world: World) -> None:
    name = new_model(world, world.alice)
    bob, admin = world.bob, world.admin
    ok(
        grant(
            world,
            world.alice,
            "registered-models",
            name,
            user_name=world.names["bob"],
            permission_level="CAN_MANAGE",
        )
    )

    ok(
        grant(
            world, bob, "registered-models", name, user_name=world.names["carol"], permission_level="CAN_READ"
        )
    )
    ok(bob.request("DELETE", f"{ML}/model-versions/delete", json={"name": name, "version": "1"}))
    renamed = f"{name}-renamed"
    ok(bob.post(f"{ML}/registered-models/rename", json={"name": name, "new_name": renamed}))
    assert ok(world.carol.get(f"{ML}/registered-models/get", params={"name": renamed}))
    ok(bob.request("DELETE", f"{ML}/registered-models/delete", json={"name": renamed}))
    # a model made again under the deleted name belongs to its new creator alone
    ok(admin.post(f"{ML}/registered-models/create", json={"name": renamed}))
    refused(world.carol.get(f"{ML}/registered-models/get", params={"name": renamed}))
    ok(admin.request("DELETE", f"{ML}/registered-models/delete", json={"name": renamed}))


def test_searches_list_only_what_the_caller_may_read(world: World) -> None:
    carol = world.carol
    models = ok(carol.get(f"{ML}/registered-models/search", params={"max_results": 1000}))
    assert world.model not in [m["name"] for m in models.get("registered_models", [])]
    versions = ok(carol.get(f"{ML}/model-versions/search", params={"filter": f"name='{world.model}'"}))
    assert versions.get("model_versions", []) == []
    ajax = ok(carol.get("/ajax-api/2.0/mlflow/registered-models/search", params={"max_results": 1000}))
    assert world.model not in [m["name"] for m in ajax.get("registered_models", [])]
    experiments = ok(carol.post(f"{ML}/experiments/search", json={"max_results": 1000}))
    assert [e["experiment_id"] for e in experiments["experiments"]] == ["0"]
    refused(carol.post(f"{ML}/runs/search", json={"experiment_ids": [world.experiment]}))

    mine = ok(world.alice.get(f"{ML}/registered-models/search", params={"max_results": 1000}))
    assert world.model in [m["name"] for m in mine["registered_models"]]
    assert world.experiment in [
        e["experiment_id"]
        for e in ok(world.alice.post(f"{ML}/experiments/search", json={"max_results": 1000}))["experiments"]
    ]


def test_permissions_routes_answer_in_the_databricks_shape(world: World) -> None:
    path = f"{PERMS}/registered-models/{quote(world.model, safe='')}"
    body = ok(world.alice.get(path))
    assert body["object_id"] == f"/registered-models/{world.model}"
    assert body["object_type"] == "registered-model"
    acl = {
        e.get("user_name") or e.get("group_name"): e["all_permissions"] for e in body["access_control_list"]
    }
    assert acl[world.names["alice"]] == [{"permission_level": "CAN_MANAGE", "inherited": False}]
    assert acl["admins"][0]["inherited"] is True
    levels = ok(world.alice.get(f"{path}/permissionLevels"))["permission_levels"]
    assert [lvl["permission_level"] for lvl in levels] == ["CAN_MANAGE", "CAN_EDIT", "CAN_READ"]
    exp = ok(world.alice.get(f"{PERMS}/experiments/{world.experiment}"))
    assert exp["object_id"] == f"/experiments/{world.experiment}" and exp["object_type"] == "experiment"
    default = ok(world.carol.get(f"{PERMS}/experiments/0"))["access_control_list"]
    assert {"group_name": "users", "display_name": "users"}.items() <= default[-1].items()


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"access_control_list": "x"}, 400, "INVALID_PARAMETER_VALUE"),
        (
            {"access_control_list": [{"user_name": "nobody@example.com", "permission_level": "CAN_READ"}]},
            400,
            None,
        ),
        ({"access_control_list": [{"user_name": "ALICE", "permission_level": "CAN_QUERY"}]}, 400, None),
        ({"access_control_list": [{"permission_level": "CAN_READ"}]}, 400, "INVALID_PARAMETER_VALUE"),
    ],
)
def test_bad_permission_changes_get_a_400(
    world: World, body: dict[str, Any], status: int, code: str | None
) -> None:
    resp = world.alice.patch(f"{PERMS}/registered-models/{quote(world.model, safe='')}", json=body)
    refused(resp, status, code or "INVALID_PARAMETER_VALUE")


def test_permissions_of_a_missing_object_or_without_manage_are_refused(world: World) -> None:
    missing = f"{PERMS}/registered-models/no-such-model-{uuid.uuid4().hex[:6]}"
    # a user is not told whether an object they may not see exists: the same 403 as for one that does
    refused(world.alice.get(missing), 403, "PERMISSION_DENIED")
    refused(world.alice.get(f"{PERMS}/experiments/987654321"), 403, "PERMISSION_DENIED")
    refused(world.admin.get(missing), 404, "RESOURCE_DOES_NOT_EXIST")  # admins see everything
    refused(world.admin.get(f"{PERMS}/experiments/987654321"), 404, "RESOURCE_DOES_NOT_EXIST")
    refused(world.carol.get(f"{PERMS}/registered-models/{quote(world.model, safe='')}"))
    refused(
        grant(
            world,
            world.carol,
            "experiments",
            world.experiment,
            user_name=world.names["carol"],
            permission_level="CAN_MANAGE",
        )
    )
    refused(world.carol.put(f"{PERMS}/registered-models/{quote(world.model, safe='')}", json={}), 403)


def test_groups_and_service_principals_hold_grants(world: World) -> None:
    name = new_model(world, world.alice)
    refused(world.bob.get(f"{ML}/registered-models/get", params={"name": name}))
    refused(world.bot.post(f"{ML}/registered-models/set-tag", json={"name": name, "key": "k", "value": "v"}))
    ok(
        grant(
            world,
            world.alice,
            "registered-models",
            name,
            group_name=world.names["team"],
            permission_level="CAN_READ",
        )
    )
    ok(
        grant(
            world,
            world.alice,
            "registered-models",
            name,
            service_principal_name=world.names["bot"],
            permission_level="CAN_EDIT",
        )
    )

    ok(world.bob.get(f"{ML}/registered-models/get", params={"name": name}))  # bob is in the team
    ok(world.bot.post(f"{ML}/registered-models/set-tag", json={"name": name, "key": "k", "value": "v"}))
    refused(world.carol.get(f"{ML}/registered-models/get", params={"name": name}))


def test_the_artifact_proxy_needs_edit_on_the_experiment_to_write(world: World) -> None:
    path = f"/api/2.0/mlflow-artifacts/artifacts/{world.experiment}/planted/model.pkl"
    message = refused(world.bob.put(path, content=b"not a pickle"))
    assert f"experiment '{world.experiment}'" in message
    refused(world.bob.put(f"/api/2.0/mlflow-artifacts/artifacts/0/../{world.experiment}/x.pkl", content=b"x"))
    ok(world.alice.put(path, content=b"alice's bytes"))
    refused(world.bob.get(path))
    assert world.admin.get(path).content == b"alice's bytes"
    refused(world.bob.request("DELETE", path))
    listing = world.bob.get("/api/2.0/mlflow-artifacts/artifacts", params={"path": world.experiment})
    refused(listing)
    refused(world.bob.get("/api/2.0/mlflow-artifacts/artifacts"), 400, "INVALID_PARAMETER_VALUE")


def test_experiments_and_runs_belong_to_their_creator(world: World) -> None:
    bob, carol = world.bob, world.carol
    exp = ok(bob.post(f"{ML}/experiments/create", json={"name": f"bob-exp-{uuid.uuid4().hex[:6]}"}))[
        "experiment_id"
    ]
    run = ok(bob.post(f"{ML}/runs/create", json={"experiment_id": exp}))["run"]["info"]["run_id"]
    ok(bob.post(f"{ML}/runs/log-metric", json={"run_id": run, "key": "m", "value": 1.0, "timestamp": 1}))

    refused(carol.get(f"{ML}/experiments/get", params={"experiment_id": exp}))
    refused(carol.get(f"{ML}/runs/get", params={"run_id": run}))
    refused(
        carol.post(f"{ML}/runs/log-metric", json={"run_id": run, "key": "m", "value": 2.0, "timestamp": 2})
    )
    refused(carol.post(f"{ML}/runs/create", json={"experiment_id": exp}))
    refused(carol.post(f"{ML}/experiments/delete", json={"experiment_id": exp}))
    # the protobuf JSON names MLflow also accepts are read the same way
    refused(
        carol.post(f"{ML}/runs/log-metric", json={"runId": run, "key": "m", "value": 2.0, "timestamp": 2})
    )
    # only admins choose where an experiment's artifacts go
    refused(
        bob.post(
            f"{ML}/experiments/create",
            json={
                "name": f"x-{uuid.uuid4().hex[:6]}",
                "artifact_location": f"mlflow-artifacts:/{world.experiment}",
            },
        )
    )
    # the Default experiment is everyone's to log to
    ok(carol.post(f"{ML}/runs/create", json={"experiment_id": "0"}))


def test_unknown_and_ungoverned_mlflow_routes_are_refused(world: World) -> None:
    refused(world.bob.get(f"{ML}/no-such-route"), 404, "ENDPOINT_NOT_FOUND")
    message = refused(world.bob.get(f"{ML}/webhooks"))
    assert "only admins may call it" in message
    refused(world.bob.post("/api/3.0/mlflow/traces/search", json={}))
    assert world.admin.get(f"{ML}/webhooks").status_code == 200
    assert world.bob.get("/version").status_code == 200


def test_serving_a_model_needs_can_read_on_it(world: World, server: ServerProcess) -> None:
    name = f"rp-ep-{uuid.uuid4().hex[:6]}"
    config = {
        "served_entities": [
            {
                "entity_name": world.model,
                "entity_version": "1",
                "workload_size": "Small",
                "scale_to_zero_enabled": True,
            }
        ]
    }
    message = refused(world.bob.post("/api/2.0/serving-endpoints", json={"name": name, "config": config}))
    assert f"registered model '{world.model}'" in message
    assert world.admin.get(f"/api/2.0/serving-endpoints/{name}").status_code == 404

    created = world.alice.post("/api/2.0/serving-endpoints", json={"name": name, "config": config})
    assert created.status_code == 200, created.text
    update = {"served_entities": config["served_entities"]}
    ok(
        world.alice.patch(
            f"{PERMS}/serving-endpoints/{created.json()['id']}",
            json={
                "access_control_list": [{"user_name": world.names["bob"], "permission_level": "CAN_MANAGE"}]
            },
        )
    )
    message = refused(world.bob.put(f"/api/2.0/serving-endpoints/{name}/config", json=update))
    assert f"registered model '{world.model}'" in message


def test_a_model_the_caller_may_not_read_and_a_missing_one_get_the_same_answer(world: World) -> None:
    """Serving names registered models: a caller without CAN_READ learns nothing of which
    private models (or versions) exist, on create and on a config update; admins and the
    model's readers are told what is missing."""
    missing = f"rp-missing-{uuid.uuid4().hex[:6]}"

    def served(model: str, version: str = "1") -> dict[str, Any]:
        entity = {"entity_name": model, "entity_version": version, "workload_size": "Small"}
        return {"served_entities": [{**entity, "scale_to_zero_enabled": True}]}

    def create(client: httpx.Client, model: str, version: str = "1") -> httpx.Response:
        name = f"rp-ep-{uuid.uuid4().hex[:6]}"
        return client.post(
            "/api/2.0/serving-endpoints", json={"name": name, "config": served(model, version)}
        )

    def shape(message: str, model: str) -> str:
        return message.replace(f"'{model}'", "'<model>'")

    carol = world.names["carol"]
    answers = {
        "private": shape(refused(create(world.carol, world.model)), world.model),
        "missing": shape(refused(create(world.carol, missing)), missing),
        "missing version": shape(refused(create(world.carol, world.model, "99")), world.model),
        "missing alias": shape(refused(create(world.carol, world.model, "@nope")), world.model),
    }
    expected = f"'{carol}' does not have CAN_READ permission on registered model '<model>'."
    assert answers == dict.fromkeys(answers, expected)

    # A config update answers the same way (carol's own endpoint, created without a config).
    mine = f"rp-ep-{uuid.uuid4().hex[:6]}"
    ok(world.carol.post("/api/2.0/serving-endpoints", json={"name": mine}))
    try:
        update = f"/api/2.0/serving-endpoints/{mine}/config"
        private = refused(world.carol.put(update, json=served(world.model)))
        absent = refused(world.carol.put(update, json=served(missing)))
        assert shape(private, world.model) == shape(absent, missing) == expected
    finally:
        ok(world.carol.delete(f"/api/2.0/serving-endpoints/{mine}"))

    assert "does not exist" in refused(create(world.admin, missing), 404, "RESOURCE_DOES_NOT_EXIST")
    message = refused(create(world.alice, world.model, "99"), 404, "RESOURCE_DOES_NOT_EXIST")
    assert "Version 99" in message  # alice manages the model: she is told which version is missing
