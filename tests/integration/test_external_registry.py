"""``--registry-uri``: modelport resolves entities in an existing MLflow server instead of its own."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.conftest import log_sklearn_model
from tests.serverproc import ADMIN_TOKEN, ServerProcess, free_port
from tests.support.endpoints import wait_settled

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    log = (root / "mlflow.log").open("wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--backend-store-uri",
            f"sqlite:///{root / 'mlflow.db'}",
            "--artifacts-destination",
            str(root / "art"),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=root,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert proc.poll() is None, (root / "mlflow.log").read_text()
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail("mlflow server did not start")
    yield url
    proc.terminate()
    proc.wait(30)


def test_endpoint_resolves_models_in_an_external_registry(mlflow_server: str, tmp_path: Path) -> None:
    version = log_sklearn_model(mlflow_server, "unused", "ext-model")
    os.environ.pop("MLFLOW_TRACKING_TOKEN", None)
    server = ServerProcess(tmp_path / "mp", extra_args=["--registry-uri", mlflow_server]).start()
    try:
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        with httpx.Client(base_url=server.url, headers=headers, timeout=60) as http:
            body = {
                "name": "ext",
                "config": {"served_entities": [{"entity_name": "ext-model", "entity_version": version}]},
            }
            created = http.post("/api/2.0/serving-endpoints", json=body)
            assert created.status_code == 200, created.text
            got = wait_settled(http, "ext", timeout=60)
            assert got["state"] == {
                "ready": "READY",
                "config_update": "NOT_UPDATING",
                "suspend": "NOT_SUSPENDED",
            }
            assert got["config"]["served_entities"][0]["entity_version"] == version
            logs = http.get(
                f"/api/2.0/serving-endpoints/ext/served-models/ext-model-{version}/build-logs"
            ).json()
            assert "Flavors: python_function, sklearn" in logs["logs"]
            missing = http.post(
                "/api/2.0/serving-endpoints",
                json={
                    "name": "ext2",
                    "config": {"served_entities": [{"entity_name": "ext-model", "entity_version": "99"}]},
                },
            )
            assert missing.status_code == 404
            assert missing.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
            assert "Version 99 of registered model 'ext-model'" in missing.json()["message"]
            # The embedded registry is off: its routes are not served here.
            assert http.get("/api/2.0/mlflow/registered-models/search").status_code == 404
    finally:
        server.stop()
