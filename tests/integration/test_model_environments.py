"""Served entities that opt in to their own uv-built environment (MODELPORT_ENV_MANAGER=uv).

The probe model reports the interpreter that runs it and which packages it can import, so
the tests see the replica's environment from the outside: the interpreter is inside
``<data-dir>/envs``, the model's own requirement (tomli-w, which the server lacks) is
there, and the server's packages (psycopg, a modelport dependency that MLflow does not
bring) are not.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.serverproc import ADMIN_TOKEN, ServerProcess
from tests.support.endpoints import wait_settled

PROBE = """
import importlib.util
import sys

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel


class Probe(PythonModel):
    def predict(self, context, model_input, params=None):
        found = {m: importlib.util.find_spec(m) is not None for m in ("tomli_w", "psycopg")}
        return pd.DataFrame([{"python": sys.executable, **found}] * len(model_input))


mlflow.models.set_model(Probe())
"""
MISSING = "modelport-no-such-package-xyz"
OPT_IN = {"MODELPORT_ENV_MANAGER": "uv"}


def log_probe(server: ServerProcess, folder: Path, name: str, requirements: list[str]) -> None:
    import mlflow
    import pandas as pd

    os.environ["MLFLOW_TRACKING_TOKEN"] = ADMIN_TOKEN
    mlflow.set_tracking_uri(server.url)
    code = folder / "probe.py"
    code.write_text(PROBE)
    with mlflow.start_run():
        mlflow.pyfunc.log_model(
            name="model",
            python_model=str(code),
            registered_model_name=name,
            input_example=pd.DataFrame({"x": [1.0]}),
            pip_requirements=requirements,
        )


@pytest.fixture(scope="module")
def probe_models(server: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> None:
    """'env-probe' (requirements: mlflow, tomli-w) and 'env-broken' (a package that does not exist)."""
    log_probe(server, tmp_path_factory.mktemp("probe"), "env-probe", ["tomli-w"])
    log_probe(server, tmp_path_factory.mktemp("broken"), "env-broken", [f"{MISSING}==1.0"])


def deploy(http: httpx.Client, name: str, model: str, timeout: float = 300) -> tuple[dict[str, Any], float]:
    """Create an endpoint serving ``model`` version 1 in its own environment; wait until settled."""
    entity = {"name": "probe", "entity_name": model, "entity_version": "1", "environment_vars": OPT_IN}
    started = time.monotonic()
    r = http.post("/api/2.0/serving-endpoints", json={"name": name, "config": {"served_entities": [entity]}})
    assert r.status_code == 200, r.text
    got = wait_settled(http, name, timeout=timeout)
    return got, time.monotonic() - started


def build_log(http: httpx.Client, name: str) -> str:
    r = http.get(f"/api/2.0/serving-endpoints/{name}/served-models/probe/build-logs")
    assert r.status_code == 200, r.text
    return str(r.json()["logs"])


def probe(http: httpx.Client, name: str) -> dict[str, Any]:
    r = http.post(
        f"/serving-endpoints/{name}/invocations",
        json={"dataframe_split": {"columns": ["x"], "data": [[1.0]]}},
    )
    assert r.status_code == 200, r.text
    [row] = r.json()["predictions"]
    return dict(row)


def test_opted_in_entity_runs_in_an_environment_built_from_its_requirements_and_shared(
    http: httpx.Client, server: ServerProcess, probe_models: None
) -> None:
    envs = server.data_dir.resolve() / "envs"

    got, first_seconds = deploy(http, "env-uv", "env-probe")
    build = build_log(http, "env-uv")
    assert got["state"]["config_update"] == "NOT_UPDATING", build
    seen = probe(http, "env-uv")
    python = Path(seen["python"])
    assert python.parent.parent.parent == envs, seen
    assert seen == {"python": str(python), "tomli_w": True, "psycopg": False}
    env_key = python.parent.parent.name
    # uv's own output, line by line, in the build log.
    assert f"Building environment {env_key} with uv" in build
    assert "uv pip install" in build and "Resolved " in build and "+ tomli-w==" in build
    assert f"Replicas run {python}." in build

    again, reuse_seconds = deploy(http, "env-uv-2", "env-probe")
    assert again["state"]["config_update"] == "NOT_UPDATING"
    reused = build_log(http, "env-uv-2")
    assert f"Reusing environment {env_key} built " in reused
    assert "uv pip install" not in reused
    assert probe(http, "env-uv-2")["python"] == str(python)
    timings = [
        line[25:]
        for line in (build + reused).splitlines()
        if "Built environment" in line or "ready in" in line
    ]
    print(f"\nendpoint ready: first {first_seconds:.1f}s, second {reuse_seconds:.1f}s; {'; '.join(timings)}")


def test_unresolvable_requirement_fails_the_update_with_uvs_error(
    http: httpx.Client, server: ServerProcess, probe_models: None
) -> None:
    got, _ = deploy(http, "env-broken", "env-broken")
    assert got["state"]["config_update"] == "UPDATE_FAILED"
    [entity] = got["pending_config"]["served_entities"]
    message = entity["state"]["deployment_state_message"]
    assert "uv could not build the model's environment" in message and MISSING in message
    build = build_log(http, "env-broken")
    assert "uv pip install" in build and MISSING in build
    assert "FAILED: uv exited with status" in build
    # Nothing half-built is left for a later deployment to pick up.
    envs = server.data_dir.resolve() / "envs"
    assert not list(envs.glob(".build-*"))


def test_unknown_env_manager_is_rejected(http: httpx.Client, probe_models: None) -> None:
    entity = {
        "entity_name": "env-probe",
        "entity_version": "1",
        "environment_vars": {"MODELPORT_ENV_MANAGER": "conda"},
    }
    r = http.post(
        "/api/2.0/serving-endpoints", json={"name": "env-bad", "config": {"served_entities": [entity]}}
    )
    assert r.status_code == 400
    assert r.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert "'conda' is not one of local, uv" in r.json()["message"]
