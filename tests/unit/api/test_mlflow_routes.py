"""The MLflow guard's route table against the routes MLflow's Flask app really registers:
every route the mount passes through has a decision, and the table names no route that
does not exist (a new MLflow version with a new route fails here until someone decides)."""

from __future__ import annotations

from typing import Any

import pytest

from modelport.api.mlflow_mount import is_mlflow_path
from modelport.api.mlflow_routes import ADMIN_ONLY, PROMPT_SOURCE, RULES, Need, artifact_experiment, source_of
from modelport.errors import PermissionDenied
from modelport.spec.identity import Caller
from modelport.spec.registry_permissions import RegistryLevel, RegistryObject

MODEL, EXPERIMENT = RegistryObject.REGISTERED_MODEL, RegistryObject.EXPERIMENT
READ = RegistryLevel.CAN_READ


@pytest.fixture(scope="module")
def passed_through() -> dict[str, list[str]]:
    """Flask endpoint → the rules (paths) of it that the mount passes to MLflow."""
    from mlflow.server import app

    found: dict[str, list[str]] = {}
    for rule in app.url_map.iter_rules():
        if is_mlflow_path(rule.rule):
            found.setdefault(str(rule.endpoint), []).append(rule.rule)
    return found


def test_every_passed_through_mlflow_route_has_a_decision(passed_through: dict[str, list[str]]) -> None:
    undecided = {e: paths for e, paths in passed_through.items() if e not in RULES and e not in ADMIN_ONLY}
    assert not undecided, f"MLflow routes without a decision in api/mlflow_routes.py: {undecided}"


def test_the_table_names_only_routes_mlflow_has(passed_through: dict[str, list[str]]) -> None:
    stale = sorted((set(RULES) | ADMIN_ONLY) - set(passed_through))
    assert stale == []


def test_no_route_is_both_governed_and_admin_only() -> None:
    assert set(RULES) & ADMIN_ONLY == set()


def test_the_headline_routes_need_what_the_docs_say() -> None:
    class Named:
        def value(self, name: str) -> str:
            return {"name": "fraud"}.get(name, "")

    def needs(endpoint: str) -> list[Need]:
        return [n for locate in RULES[endpoint].needs for n in locate(Named())]  # type: ignore[arg-type]

    assert needs("_delete_registered_model") == [Need(MODEL, "fraud", RegistryLevel.CAN_MANAGE)]
    assert needs("_rename_registered_model") == [Need(MODEL, "fraud", RegistryLevel.CAN_MANAGE)]
    assert needs("_get_registered_model") == [Need(MODEL, "fraud", READ)]
    assert needs("_set_registered_model_tag") == [Need(MODEL, "fraud", RegistryLevel.CAN_EDIT)]
    assert needs("_delete_model_version") == [Need(MODEL, "fraud", RegistryLevel.CAN_MANAGE)]


@pytest.mark.parametrize(
    ("path", "experiment"),
    [("3/abc/artifacts/model.pkl", "3"), ("0/models/m-1/artifacts/MLmodel", "0"), ("12", "12")],
)
def test_an_artifact_path_belongs_to_the_experiment_it_starts_with(path: str, experiment: str) -> None:
    assert artifact_experiment(path) == experiment


@pytest.mark.parametrize("path", ["", "3/../4/x", "./3/x", "3//x", "x/3", "../3", "3\\..\\4"])
def test_an_artifact_path_outside_an_experiment_folder_is_refused(path: str) -> None:
    with pytest.raises(PermissionDenied):
        artifact_experiment(path)


def test_the_prompt_source_placeholder_is_mlflows() -> None:
    from mlflow.prompt.constants import _STORE_PROMPT_SOURCE_PLACEHOLDER

    assert PROMPT_SOURCE == _STORE_PROMPT_SOURCE_PLACEHOLDER


class Store:
    """A Target whose lookups know one run and one logged model."""

    def value(self, name: str) -> str:
        return ""

    def experiment_of_run(self, run_id: str) -> str | None:
        return "7" if run_id == "r1" else None

    def experiment_of_logged_model(self, model_id: str) -> str | None:
        return "8" if model_id == "m-1" else None


@pytest.mark.parametrize(
    ("uri", "needs"),
    [
        ("mlflow-artifacts:/5/models/m-1/artifacts", [Need(EXPERIMENT, "5", READ)]),
        ("mlflow-artifacts://127.0.0.1:8080/5/r/artifacts", [Need(EXPERIMENT, "5", READ)]),
        ("runs:/r1/model", [Need(EXPERIMENT, "7", READ)]),
        ("models:/m-1", [Need(EXPERIMENT, "8", READ)]),
        ("models:/fraud/3", [Need(MODEL, "fraud", READ)]),
        ("models:/fraud@champion", [Need(MODEL, "fraud", READ)]),
        ("", []),
        ("prompt-template", []),
    ],
)
def test_a_version_source_is_read_through_its_owner(uri: str, needs: list[Need]) -> None:
    assert source_of(uri, Store()) == needs  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "uri", ["file:///etc/passwd", "/data/models/x", "s3://bucket/x", "mlflow-artifacts:/../x"]
)
def test_a_version_source_elsewhere_is_for_admins_only(uri: str) -> None:
    with pytest.raises(PermissionDenied):
        source_of(uri, Store())  # type: ignore[arg-type]


def caller(admin: bool) -> Caller:
    return Caller(
        id=5, name="bob", kind="user", groups=("admins",) if admin else (), principal_ids=frozenset({5})
    )


@pytest.mark.parametrize("endpoint", ["_start_trace_v3", "_create_webhook", "_some_future_route"])
def test_routes_outside_the_table_are_refused_to_users_and_open_to_admins(endpoint: str) -> None:
    from modelport.api.mlflow_guard import MlflowGuard

    with pytest.raises(PermissionDenied, match="only admins"):
        MlflowGuard.rule_for(endpoint, caller(admin=False))
    rule: Any = MlflowGuard.rule_for(endpoint, caller(admin=True))
    assert rule.needs == ()
