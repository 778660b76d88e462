"""A real ``modelport serve`` shared by the integration tests, and models in its registry."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.serverproc import ADMIN_TOKEN, ServerProcess


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
    """Delete every endpoint a test created, so tests don't see each other's."""
    yield
    if "server" not in request.fixturenames:
        return
    server: ServerProcess = request.getfixturevalue("server")
    if server.proc is None or server.proc.poll() is not None:
        return
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    listing = httpx.get(f"{server.url}/api/2.0/serving-endpoints", headers=headers, timeout=30).json()
    for endpoint in listing.get("endpoints", []):
        httpx.delete(
            f"{server.url}/api/2.0/serving-endpoints/{endpoint['name']}", headers=headers, timeout=30
        )


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
