"""Upgrading an installation: the previous release's data directory and store, served by this one.

The previous release (commit ``c1a65cd``, before model permissions and digests) is taken from
this repository's history with ``git archive`` and run with the same Python from its own tree
(``python -m modelport`` imports from the working folder first). It registers a model and
serves it; this release then starts on the same data directory and store (SQLite and
PostgreSQL): the endpoint keeps answering, the version gets its content digest (backfill or
first load) and the registered model an owner grant.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from modelport.entities.model_digest import digest_of
from modelport.store import open_database
from tests.serverproc import ADMIN_TOKEN, ServerProcess
from tests.support.endpoints import wait_settled
from tests.support.models import log_sklearn_model

PREVIOUS_RELEASE = "c1a65cd"
ROOT = Path(__file__).resolve().parents[2]
ROW = {"columns": ["f0", "f1", "f2", "f3"], "data": [[0.9, 0.1, 0.2, 0.3]]}


@pytest.fixture(scope="module")
def previous_release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The previous release's source tree (a shallow clone without that commit skips, except in CI)."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", PREVIOUS_RELEASE], capture_output=True)
    if archive.returncode != 0:
        reason = f"commit {PREVIOUS_RELEASE} is not in this checkout: {archive.stderr.decode().strip()}"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    tree = tmp_path_factory.mktemp("previous-release")
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
    return tree


@pytest.fixture
def servers(tmp_path: Path, store_url: str) -> Iterator[list[ServerProcess]]:
    started: list[ServerProcess] = []
    yield started
    for proc in started:
        proc.kill()


def answered(url: str, name: str, timeout: float) -> httpx.Response:
    """Query ``name`` until it stops answering 503 (its replicas coming up) or ``timeout``."""
    deadline = time.monotonic() + timeout
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    while True:
        answer = httpx.post(
            f"{url}/serving-endpoints/{name}/invocations",
            json={"dataframe_split": ROW},
            headers=headers,
            timeout=60,
        )
        if answer.status_code != 503 or time.monotonic() > deadline:
            return answer
        time.sleep(0.25)


@pytest.mark.slow
@pytest.mark.timeout(600)  # four server starts and two deployments
def test_the_previous_releases_installation_keeps_serving_and_gets_digests_and_owners(
    previous_release: Path, servers: list[ServerProcess], tmp_path: Path, store_url: str
) -> None:
    data = tmp_path / "data"
    old = ServerProcess(
        data, store=store_url, cwd=previous_release, env={"PYTHONPATH": str(previous_release)}
    )
    servers.append(old)
    old.start(timeout=180)
    version = httpx.get(f"{old.url}/version", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=30)
    assert version.status_code == 200, version.text
    assert log_sklearn_model(old.url, ADMIN_TOKEN, "upgrade-m") == "1"
    with httpx.Client(
        base_url=old.url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=60
    ) as http:
        entity = {"name": "m", "entity_name": "upgrade-m", "entity_version": "1"}
        created = http.post(
            "/api/2.0/serving-endpoints", json={"name": "upgraded", "config": {"served_entities": [entity]}}
        )
        assert created.status_code == 200, created.text
        assert (
            wait_settled(http, "upgraded", timeout=180, poll=0.2)["state"]["config_update"] == "NOT_UPDATING"
        )
    before = answered(old.url, "upgraded", 30)
    assert before.status_code == 200, before.text
    assert old.stop() == 0

    new = ServerProcess(data, store=store_url)
    servers.append(new)
    new.start(timeout=180)
    after = answered(new.url, "upgraded", 180)
    assert after.status_code == 200, after.text
    assert after.json() == before.json()

    [folder] = list((data / "artifacts").glob("*/models/m-*/artifacts"))
    db = open_database(store_url, migrate=False)
    try:
        deadline = time.monotonic() + 30
        while (found := db.digests.get("upgrade-m", 1)) is None:
            assert time.monotonic() < deadline, "no digest recorded after the upgrade"
            time.sleep(0.2)
        digest, source = found
        assert digest == digest_of(folder)
        assert source in ("backfill", "first-load")
        if importlib.util.find_spec("modelport.control.registry_owners") is not None:
            deadline = time.monotonic() + 30
            while not db.grants.acl("registered-model", "upgrade-m"):
                assert time.monotonic() < deadline, "no owner grant after the upgrade"
                time.sleep(0.2)
    finally:
        db.close()
