"""The real ``modelport serve`` processes shared by the integration tests, and models in
their registry.

- ``server``: the session's server (SQLite); ``_clean_endpoints`` deletes what each test
  created, except the endpoints of :func:`~tests.support.endpoints.kept_endpoint`.
- ``postgresql_server``: a session server on a fresh PostgreSQL database. The suites where
  storage matters run on both: they override ``server`` with a module fixture over
  :data:`~tests.support.stores.STORES` (see :func:`~tests.support.stores.server_on_each_store`);
  ``iris_model`` and ``no_pyfunc_model`` register their model once on each server that asks.
- ``provider_server``: a second session server whose provider base URLs point at every
  external-provider fake (``fakes``, see :mod:`tests.support.providers`), with their
  endpoints made at start; ``client`` (the ``openai`` client) and ``databricks``
  (``mlflow.deployments``) query it, each with the fakes reset.

Shared helpers live in :mod:`tests.support`; ``log_sklearn_model``, ``kept_endpoint`` and
``KEPT_ENDPOINTS`` are still importable from here.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from tests.serverproc import ADMIN_TOKEN, ServerProcess
from tests.support.endpoints import KEPT_ENDPOINTS
from tests.support.endpoints import kept_endpoint as kept_endpoint
from tests.support.models import log_sklearn_model
from tests.support.providers import EXTERNAL_TIMEOUT_S, ProviderFakes, create_external, provider_endpoints
from tests.support.stores import fresh_pg_database

if TYPE_CHECKING:
    import openai
    from mlflow.deployments import BaseDeploymentClient


@pytest.fixture(scope="session")
def sqlite_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess(tmp_path_factory.mktemp("modelport-data")).start()
    yield proc
    proc.stop()


@pytest.fixture(scope="session")
def server(sqlite_server: ServerProcess) -> ServerProcess:
    return sqlite_server


@pytest.fixture(scope="session")
def postgresql_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with fresh_pg_database() as url:
        proc = ServerProcess(tmp_path_factory.mktemp("modelport-pg"), store=url).start()
        try:
            yield proc
        finally:
            proc.stop()


@pytest.fixture(scope="session")
def _registered() -> set[tuple[str, str]]:
    """(server URL, model name) of the models ``iris_model`` and ``no_pyfunc_model`` registered."""
    return set()


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


def register_iris(server: ServerProcess, registered: set[tuple[str, str]]) -> str:
    """Registered model 'iris' with versions 1 and 2 and alias @champion → 2, once per server
    (``registered`` remembers which servers have it)."""
    if (server.url, "iris") in registered:
        return "iris"
    log_sklearn_model(server.url, ADMIN_TOKEN, "iris")
    log_sklearn_model(server.url, ADMIN_TOKEN, "iris")
    from mlflow import MlflowClient

    MlflowClient(server.url).set_registered_model_alias("iris", "champion", "2")
    registered.add((server.url, "iris"))
    return "iris"


@pytest.fixture
def iris_model(server: ServerProcess, _registered: set[tuple[str, str]]) -> str:
    """Registered model 'iris' (:func:`register_iris`)."""
    return register_iris(server, _registered)


@pytest.fixture
def no_pyfunc_model(
    server: ServerProcess,
    tmp_path_factory: pytest.TempPathFactory,
    _registered: set[tuple[str, str]],
) -> str:
    """A registered model version whose MLmodel has no python_function flavor (registered
    once per server)."""
    if (server.url, "onnx-only") in _registered:
        return "onnx-only"
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
    _registered.add((server.url, "onnx-only"))
    return "onnx-only"


# ---- external providers ------------------------------------------------------------------------
@pytest.fixture(scope="session")
def fakes() -> Iterator[ProviderFakes]:
    """Every external-provider fake (OpenAI, Anthropic, Bedrock, Cohere, Google, AI21)."""
    started = ProviderFakes()
    yield started
    started.stop()


@pytest.fixture(scope="session")
def provider_server(
    fakes: ProviderFakes, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """A server in front of the fakes (``MODELPORT_*_BASE_URL``, a short ``--external-timeout``)
    with the endpoints of :func:`~tests.support.providers.provider_endpoints`."""
    proc = ServerProcess(
        tmp_path_factory.mktemp("modelport-providers"),
        env=fakes.env(),
        extra_args=["--external-timeout", str(EXTERNAL_TIMEOUT_S)],
    ).start()
    try:
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        with httpx.Client(base_url=proc.url, headers=headers, timeout=30) as http:
            for name, ext in provider_endpoints(fakes).items():
                create_external(http, name, ext)
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def client(provider_server: ServerProcess, fakes: ProviderFakes) -> openai.OpenAI:
    """The official ``openai`` client on the provider server (the fakes reset)."""
    import openai

    fakes.reset()
    return openai.OpenAI(
        base_url=f"{provider_server.url}/serving-endpoints", api_key=ADMIN_TOKEN, max_retries=0
    )


@pytest.fixture
def databricks(
    provider_server: ServerProcess, fakes: ProviderFakes, monkeypatch: pytest.MonkeyPatch
) -> BaseDeploymentClient:
    """``mlflow.deployments``' "databricks" target on the provider server (the fakes reset)."""
    from mlflow.deployments import get_deploy_client

    fakes.reset()
    monkeypatch.setenv("DATABRICKS_HOST", provider_server.url)
    monkeypatch.setenv("DATABRICKS_TOKEN", ADMIN_TOKEN)
    return get_deploy_client("databricks")
