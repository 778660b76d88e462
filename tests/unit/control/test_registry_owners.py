"""Owners for registered models and experiments that existed before registry permissions:
real MLflow SQLite stores with data made the way an earlier release left it (no grants)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from modelport.control.registry_owners import DONE_KEY, backfill_owners
from modelport.store import Database, open_database


@pytest.fixture(scope="module")
def mlflow_stores(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any]:
    """MLflow's tracking and registry stores on one SQLite file, with:
    experiment 'alice-exp' whose first run is alice's, 'stranger-exp' whose run is an OS user's;
    model 'alice-model' (version by alice), 'run-model' (version without user, run by alice),
    'orphan' (no versions)."""
    from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore as RegistryStore
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore as TrackingStore

    folder = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    tracking = TrackingStore(uri, str(folder / "artifacts"))
    registry = RegistryStore(uri)
    alice_exp = tracking.create_experiment("alice-exp")
    stranger_exp = tracking.create_experiment("stranger-exp")
    alice_run = tracking.create_run(alice_exp, "alice", 1, [], "r1")
    tracking.create_run(stranger_exp, "root", 1, [], "r2")
    registry.create_registered_model("alice-model")
    registry.create_model_version("alice-model", "mlflow-artifacts:/1/x", run_id=None)
    registry.create_registered_model("run-model")
    registry.create_model_version("run-model", "mlflow-artifacts:/1/y", run_id=alice_run.info.run_id)
    registry.create_registered_model("orphan")
    # a version's user_id is what the client sent; set alice's on the first model's version
    with registry.ManagedSessionMaker() as session:
        from mlflow.store.model_registry.dbmodels.models import SqlModelVersion

        session.query(SqlModelVersion).filter(SqlModelVersion.name == "alice-model").update(
            {"user_id": "alice"}
        )
    return tracking, registry


@pytest.fixture
def db(tmp_path: Path) -> Database:
    db = open_database(f"sqlite:///{tmp_path / 'm.db'}")
    db.principals.create("admins", "group", display_name="admins", is_admin=True, now_ms=1)
    db.principals.create("alice", "user", display_name=None, is_admin=False, now_ms=1)
    db.principals.create("bob", "user", display_name=None, is_admin=False, now_ms=1)
    return db


def owners(db: Database, kind: str) -> dict[str, dict[str, int]]:
    names = {p.id: p.name for p in db.principals.list()}
    return {
        oid: {names[p]: lvl for p, lvl in db.grants.acl(kind, oid).items()}
        for oid in db.grants.object_ids(kind)
    }


def test_existing_objects_get_their_creator_or_the_admins_group(db: Database, mlflow_stores: Any) -> None:
    tracking, registry = mlflow_stores
    alice_exp = tracking.get_experiment_by_name("alice-exp").experiment_id
    stranger_exp = tracking.get_experiment_by_name("stranger-exp").experiment_id

    done = backfill_owners(db, tracking, registry)

    assert done == {"registered-model": 3, "experiment": 2}
    assert owners(db, "registered-model") == {
        "alice-model": {"alice": 3},
        "run-model": {"alice": 3},
        "orphan": {"admins": 3},
    }
    assert owners(db, "experiment") == {alice_exp: {"alice": 3}, stranger_exp: {"admins": 3}}
    assert db.meta_get(DONE_KEY) is not None


def test_objects_with_a_grant_are_left_as_they_are_and_a_second_run_changes_nothing(
    db: Database, mlflow_stores: Any
) -> None:
    tracking, registry = mlflow_stores
    bob = db.principals.get("bob")
    assert bob is not None
    db.grants.write("registered-model", "orphan", {bob.id: 1}, replace=True)

    backfill_owners(db, tracking, registry)
    first = owners(db, "registered-model")
    again = backfill_owners(db, tracking, registry)

    assert first["orphan"] == {"bob": 1}
    assert again == {"registered-model": 0, "experiment": 0}
    assert owners(db, "registered-model") == first
