"""``modelport migrate``: a single-machine installation moved to PostgreSQL and a shared
artifacts folder, then served from there (docs/cli.md, "modelport migrate").

A server on a SQLite data directory gets a user with a token, a secret and a registered model
version; it is stopped, the installation is migrated (the command is refused while the data
directory is held), and a server on another data directory, started on the PostgreSQL
database and the shared artifacts folder with the same secrets key, must know all of it: the
token authenticates, the secret decrypts, the version and its files are there and its folder
is still sealed. The same is done with an installation made by the previous release
(``tests/integration/test_upgrade.py``).
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from modelport.tables.spool import Spool
from tests.integration.test_upgrade import previous_release as previous_release
from tests.serverproc import ADMIN_TOKEN, ServerProcess
from tests.support.models import log_sklearn_model
from tests.support.principals import create_user, obo_token
from tests.support.stores import fresh_pg_database

MODEL = "moved-m"
SECRET = b"still secret after the move"


def secrets_env() -> dict[str, str]:
    from cryptography.fernet import Fernet

    return {"MODELPORT_SECRETS_KEY": Fernet.generate_key().decode()}


def admin(server: ServerProcess) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=60)


def migrate(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "modelport", "migrate", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=300,
    )


def populate(server: ServerProcess) -> str:
    """A user with a token, a secret scope with a secret, a registered model version; the token."""
    with admin(server) as http:
        create_user(http, "mover@example.com")
        token = str(obo_token(http, user_name="mover@example.com")["token_value"])
        assert http.post("/api/2.0/secrets/scopes/create", json={"scope": "moved"}).status_code == 200
        put = http.post(
            "/api/2.0/secrets/put",
            json={"scope": "moved", "key": "k", "string_value": SECRET.decode()},
        )
        assert put.status_code == 200, put.text
    assert log_sklearn_model(server.url, ADMIN_TOKEN, MODEL) == "1"
    return token


def check_moved(server: ServerProcess, token: str, shared: Path, tmp_path: Path) -> None:
    """Everything :func:`populate` made is served from the new store and artifacts folder."""
    import mlflow
    from mlflow.artifacts import download_artifacts

    mlflow.set_tracking_uri(server.url)  # models:/ URIs are resolved by the registry URI, which follows it
    me = httpx.get(
        f"{server.url}/api/2.0/preview/scim/v2/Me", headers={"Authorization": f"Bearer {token}"}, timeout=30
    )
    assert me.status_code == 200, me.text
    assert me.json()["userName"] == "mover@example.com"
    with admin(server) as http:
        got = http.get("/api/2.0/secrets/get", params={"scope": "moved", "key": "k"})
        assert got.status_code == 200, got.text
        assert base64.b64decode(got.json()["value"]) == SECRET
        version = http.get("/api/2.0/mlflow/model-versions/get", params={"name": MODEL, "version": "1"})
        assert version.status_code == 200, version.text
        assert version.json()["model_version"]["status"] == "READY"
        [folder] = list(shared.glob("*/models/m-*/artifacts"))
        relative = folder.relative_to(shared).as_posix()
        # The version's folder, now under the shared root, is sealed as it was.
        put = http.put(f"/api/2.0/mlflow-artifacts/artifacts/{relative}/MLmodel", content=b"x")
        assert put.status_code == 403, put.text
    files = Path(
        download_artifacts(f"models:/{MODEL}/1", dst_path=str(tmp_path / "got"), tracking_uri=server.url)
    )
    assert (files / "MLmodel").read_bytes() == (folder / "MLmodel").read_bytes()


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_an_installation_moves_to_postgresql_and_a_shared_artifacts_folder(tmp_path: Path) -> None:
    env = secrets_env()
    data, shared = tmp_path / "data", tmp_path / "shared"
    old = ServerProcess(data, env=env)
    servers = [old]
    try:
        token = populate(old.start(timeout=180))
        assert old.stop() == 0
        before = sorted(p.relative_to(data).as_posix() for p in data.rglob("*") if p.is_file())
        with fresh_pg_database() as url:
            args = ("--to", url, "--artifacts-root", str(shared), "--data-dir", str(data))
            held = Spool(data / "spool")
            held.open()  # as a server holds its data directory
            try:
                refused = migrate(*args, env=env)
            finally:
                held.close()
            assert refused.returncode == 1
            assert refused.stderr.startswith("Error: RESOURCE_CONFLICT: the data directory"), refused.stderr
            assert not shared.exists()

            moved = migrate(*args, env=env)
            assert moved.returncode == 0, moved.stdout + moved.stderr
            assert "store      principals" in moved.stdout
            assert "registry   model_versions                      1 rows" in moved.stdout
            assert "1 model version digests, 1 secrets" in moved.stdout
            again = migrate(*args, env=env)
            assert again.returncode == 1
            assert "already holds modelport data" in again.stderr, again.stderr

            new = ServerProcess(
                tmp_path / "elsewhere", store=url, env=env, extra_args=["--artifacts-root", str(shared)]
            )
            servers.append(new)
            check_moved(new.start(timeout=180), token, shared, tmp_path)
        # The source is as it was: nothing removed (the spool's lock file may be new).
        after = {p.relative_to(data).as_posix() for p in data.rglob("*") if p.is_file()}
        assert set(before) <= after
    finally:
        for proc in servers:
            proc.kill()


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
def test_an_installation_of_the_previous_release_moves(
    previous_release: Path, tmp_path: Path, store: str
) -> None:
    """SQLite: everything moves. PostgreSQL: the store is the target already (the previous
    release kept only its registry in the data directory): the registry and artifacts move."""
    env = secrets_env()
    data, shared = tmp_path / "data", tmp_path / "shared"
    servers: list[ServerProcess] = []
    try:
        with fresh_pg_database() as url:
            old = ServerProcess(
                data,
                store=url if store == "postgresql" else None,
                env={**env, "PYTHONPATH": str(previous_release)},
                cwd=previous_release,
            )
            servers.append(old)
            token = populate(old.start(timeout=180))
            assert old.stop() == 0
            args = ["--to", url, "--artifacts-root", str(shared), "--data-dir", str(data)]
            if store == "postgresql":
                args += ["--store", url]
            moved = migrate(*args, env=env)
            assert moved.returncode == 0, moved.stdout + moved.stderr
            assert ("store      principals" in moved.stdout) == (store == "sqlite")
            assert "registry   model_versions                      1 rows" in moved.stdout
            new = ServerProcess(
                tmp_path / "elsewhere", store=url, env=env, extra_args=["--artifacts-root", str(shared)]
            )
            servers.append(new)
            check_moved(new.start(timeout=180), token, shared, tmp_path)
    finally:
        for proc in servers:
            proc.kill()
