"""One embedded registry for every server on one PostgreSQL store (docs/configuration.md,
"Several servers, one registry").

Two ``modelport serve`` processes, each with its own data directory, start on a fresh PostgreSQL
database (the second while the first loads its registry) and share it, one ``--artifacts-root``
and one secrets key. A model version registered through the first server's MLflow API is read
through the second: the registered model, the version, its files. MLflow's tables live in the
schema ``mlflow`` of that database; modelport's stay in ``public``, where MLflow's
``alembic_version`` must not be.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.serverproc import ADMIN_TOKEN, ServerProcess
from tests.support.models import log_sklearn_model
from tests.support.stores import fresh_pg_database

MODEL = "shared-m"


@dataclass
class Pair:
    one: ServerProcess
    two: ServerProcess
    store: str
    shared: Path


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    from cryptography.fernet import Fernet

    env = {"MODELPORT_SECRETS_KEY": Fernet.generate_key().decode()}
    shared = tmp_path_factory.mktemp("shared-artifacts")
    started: list[ServerProcess] = []
    try:
        with fresh_pg_database() as url:
            started += [
                ServerProcess(
                    tmp_path_factory.mktemp(label),
                    store=url,
                    env=env,
                    extra_args=["--artifacts-root", str(shared)],
                )
                for label in ("registry-a", "registry-b")
            ]
            # The second starts while the first is still loading its registry (the control plane
            # is up, MLflow's tables are being made): they create the registry's schema one at a
            # time. (Not both from the first moment: the store's own migrations are not yet safe
            # to run twice at once on a fresh database.)
            one, two = started
            one.start_until("/health", timeout=240)
            two.start(timeout=240)
            one.wait_ready(timeout=240)
            yield Pair(started[0], started[1], url, shared)
    finally:
        for proc in started:
            proc.kill()


def admin(server: ServerProcess) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=60)


@pytest.mark.slow
def test_a_version_registered_through_one_server_is_read_through_the_other(
    pair: Pair, tmp_path: Path
) -> None:
    import mlflow
    from mlflow.artifacts import download_artifacts

    version = log_sklearn_model(pair.one.url, ADMIN_TOKEN, MODEL)
    assert version == "1"
    mlflow.set_tracking_uri(pair.two.url)  # models:/ URIs are resolved by the registry URI, which follows it
    with admin(pair.two) as http:
        model = http.get("/api/2.0/mlflow/registered-models/get", params={"name": MODEL})
        assert model.status_code == 200, model.text
        got = http.get("/api/2.0/mlflow/model-versions/get", params={"name": MODEL, "version": "1"})
        assert got.status_code == 200, got.text
        assert got.json()["model_version"]["status"] == "READY"
    files = Path(download_artifacts(f"models:/{MODEL}/1", dst_path=str(tmp_path), tracking_uri=pair.two.url))
    [stored] = list(pair.shared.glob("*/models/m-*/artifacts/MLmodel"))
    assert (files / "MLmodel").read_bytes() == stored.read_bytes()
    # Neither data directory holds a registry or artifacts of its own.
    for server in (pair.one, pair.two):
        assert not (server.data_dir / "mlflow.db").exists()
        assert not any((server.data_dir / "artifacts").glob("*"))


@pytest.mark.slow
def test_the_registry_has_its_own_schema_beside_the_store(pair: Pair) -> None:
    import psycopg

    with psycopg.connect(pair.store, autocommit=True) as conn:
        tables = {
            (schema, name)
            for schema, name in conn.execute(
                "SELECT table_schema, table_name FROM information_schema.tables "
                "WHERE table_schema IN ('public', 'mlflow')"
            )
        }
        versions = dict(
            conn.execute(
                "SELECT 'public', version_num FROM public.alembic_version "
                "UNION ALL SELECT 'mlflow', version_num FROM mlflow.alembic_version"
            ).fetchall()
        )
    assert ("mlflow", "registered_models") in tables and ("mlflow", "experiments") in tables
    assert ("public", "principals") in tables and ("public", "registered_models") not in tables
    # Both have an alembic_version of their own: modelport's revisions are numbered, MLflow's are hashes.
    assert versions["public"].isdecimal() and not versions["mlflow"].isdecimal()
