"""A real ``modelport serve`` shared by the integration tests, and models in its registry."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.serverproc import ADMIN_TOKEN, ServerProcess

#: Endpoints owned by module- or session-scoped fixtures (see :func:`kept_endpoint`):
#: ``_clean_endpoints`` leaves them alone, and their fixture deletes them when it ends.
KEPT_ENDPOINTS: set[str] = set()


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess(tmp_path_factory.mktemp("modelport-data")).start()
    yield proc
    proc.stop()


@pytest.fixture(scope="session")
def admin_token() -> str:
    return ADMIN_TOKEN


@pytest.fixture
def http(server: ServerProcess) -> Iterator[httpx.Client]:
    """An httpx client with the admin token."""
    with httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=60
    ) as client:
        yield client


@pytest.fixture(autouse=True)
def _clean_endpoints(request: pytest.FixtureRequest) -> Iterator[None]:
    """Delete every endpoint a test created, so tests don't see each other's (except those
    in :data:`KEPT_ENDPOINTS`)."""
    yield
    if "server" not in request.fixturenames:
        return
    server: ServerProcess = request.getfixturevalue("server")
    if server.proc is None or server.proc.poll() is not None:
        return
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    listing = httpx.get(f"{server.url}/api/2.0/serving-endpoints", headers=headers, timeout=30).json()
    for endpoint in listing.get("endpoints", []):
        if endpoint["name"] in KEPT_ENDPOINTS:
            continue
        httpx.delete(
            f"{server.url}/api/2.0/serving-endpoints/{endpoint['name']}", headers=headers, timeout=30
        )


@contextmanager
def kept_endpoint(server: ServerProcess, name: str, entities: list[dict[str, Any]]) -> Iterator[str]:
    """Create endpoint ``name``, wait until it serves, keep it across tests, delete it at exit.

    For module-scoped fixtures: each endpoint starts real replica processes, so a module
    that queries one model many times shares one endpoint instead of making one per test.
    """
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=60) as client:
        body = {"name": name, "config": {"served_entities": entities}}
        created = client.post("/api/2.0/serving-endpoints", json=body)
        assert created.status_code == 200, created.text
        KEPT_ENDPOINTS.add(name)
        try:
            deadline = time.monotonic() + 180
            while True:
                got = client.get(f"/api/2.0/serving-endpoints/{name}").json()
                if got["state"]["config_update"] != "IN_PROGRESS":
                    break
                assert time.monotonic() < deadline, f"endpoint {name} still updating after 180 s"
                time.sleep(0.2)
            assert got["state"]["config_update"] == "NOT_UPDATING", got
            yield name
        finally:
            KEPT_ENDPOINTS.discard(name)
            client.delete(f"/api/2.0/serving-endpoints/{name}")


def log_sklearn_model(tracking_uri: str, token: str, name: str, **kwargs: Any) -> str:
    """Train a tiny classifier on columns f0..f3 (label: f0 > 0.5) and register it as a new
    version of ``name``, with the signature MLflow infers from an input example."""
    import mlflow
    import numpy as np
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    os.environ["MLFLOW_TRACKING_TOKEN"] = token
    mlflow.set_tracking_uri(tracking_uri)
    rng = np.random.default_rng(0)
    x = pd.DataFrame(rng.random((40, 4)), columns=["f0", "f1", "f2", "f3"])
    y = (x["f0"] > 0.5).astype(int)
    model = LogisticRegression(C=100.0).fit(x, y)
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            registered_model_name=name,
            input_example=x.head(2),
            pip_requirements=["scikit-learn"],
            **kwargs,
        )
    return str(info.registered_model_version)


@pytest.fixture(scope="session")
def iris_model(server: ServerProcess) -> str:
    """Registered model 'iris' with versions 1 and 2 and alias @champion → 2."""
    log_sklearn_model(server.url, ADMIN_TOKEN, "iris")
    log_sklearn_model(server.url, ADMIN_TOKEN, "iris")
    from mlflow import MlflowClient

    MlflowClient(server.url).set_registered_model_alias("iris", "champion", "2")
    return "iris"


@pytest.fixture(scope="session")
def no_pyfunc_model(server: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A registered model version whose MLmodel has no python_function flavor."""
    import mlflow
    from mlflow import MlflowClient

    os.environ["MLFLOW_TRACKING_TOKEN"] = ADMIN_TOKEN
    mlflow.set_tracking_uri(server.url)
    folder: Path = tmp_path_factory.mktemp("nopyfunc")
    (folder / "MLmodel").write_text("artifact_path: model\nflavors:\n  onnx:\n    onnx_version: 1.0\n")
    with mlflow.start_run() as run:
        mlflow.log_artifacts(str(folder), artifact_path="model")
    client = MlflowClient(server.url)
    client.create_registered_model("onnx-only")
    client.create_model_version("onnx-only", f"runs:/{run.info.run_id}/model", run.info.run_id)
    return "onnx-only"
