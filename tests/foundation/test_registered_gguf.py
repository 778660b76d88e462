"""A user's own GGUF model: logged to the registry as a pyfunc whose artifacts hold the
file, deployed on an endpoint of its own and served by the llama.cpp engine."""

from __future__ import annotations

import os
from typing import Any

import httpx
import pytest

from modelport.entities.foundation.catalog import SYSTEM_MODELS
from tests.serverproc import ADMIN_TOKEN, ServerProcess
from tests.support.endpoints import wait_settled

API = "/api/2.0/serving-endpoints"


class GgufChat:
    """What a user would log: a pyfunc wrapper around a GGUF file (modelport never calls it;
    the file among the artifacts is what it serves)."""

    def load_context(self, context: Any) -> None:  # pragma: no cover - not loaded by modelport
        self.path = context.artifacts["gguf"]

    def predict(self, context: Any, model_input: Any) -> Any:  # pragma: no cover
        raise NotImplementedError


@pytest.fixture(scope="module")
def gguf_model(llm_server: ServerProcess) -> str:
    import mlflow

    gguf = SYSTEM_MODELS["smollm2-135m-instruct"].path()
    assert gguf is not None
    os.environ["MLFLOW_TRACKING_TOKEN"] = ADMIN_TOKEN
    mlflow.set_tracking_uri(llm_server.url)
    wrapper = type("GgufChat", (mlflow.pyfunc.PythonModel,), dict(GgufChat.__dict__))
    with mlflow.start_run():
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=wrapper(),
            artifacts={"gguf": str(gguf)},
            registered_model_name="my-gguf-chat",
            pip_requirements=["llama-cpp-python"],
            metadata={"task": "llm/v1/chat"},
        )
    return str(info.registered_model_version)


def test_registered_gguf_is_served_by_llama_cpp(llm_http: httpx.Client, gguf_model: str) -> None:
    entity = {
        "entity_name": "my-gguf-chat",
        "entity_version": gguf_model,
        "workload_size": "Small",
        "environment_vars": {"MODELPORT_LLM_PARALLEL": "2"},
    }
    r = llm_http.post(API, json={"name": "my-gguf", "config": {"served_entities": [entity]}})
    assert r.status_code == 200, r.text
    try:
        got = wait_settled(llm_http, "my-gguf", timeout=180)
        assert got["state"]["ready"] == "READY", got
        served = got["config"]["served_entities"][0]["name"]
        build = llm_http.get(f"{API}/my-gguf/served-models/{served}/build-logs").json()["logs"]
        assert "Foundation model: llama.cpp serving llm/v1/chat" in build, build
        messages = [{"role": "user", "content": "Hello!"}]
        r = llm_http.post(
            "/serving-endpoints/my-gguf/invocations", json={"messages": messages, "max_tokens": 6}
        )
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["object"] == "chat.completion" and body["model"] == "my-gguf"
        assert body["usage"]["completion_tokens"] <= 6 and body["choices"][0]["message"]["content"]
        r = llm_http.post(
            "/serving-endpoints/completions",
            json={"model": "my-gguf", "prompt": "Once upon", "max_tokens": 3},
        )
        assert r.status_code == 200 and r.json()["object"] == "text_completion"
        logs = llm_http.get(f"{API}/my-gguf/served-models/{served}/logs").json()["logs"]
        assert "loaded llama.cpp" in logs, logs
        assert '"parallel":2' in logs.replace(" ", ""), logs
    finally:
        llm_http.delete(f"{API}/my-gguf")


def test_pt_endpoint_of_a_custom_model_fails_its_deployment(
    llm_server: ServerProcess, llm_http: httpx.Client
) -> None:
    """Provisioned throughput sizes foundation models: a scikit-learn model on a /pt endpoint
    fails its deployment, saying why; /pt without model units is a 400."""
    from tests.integration.conftest import log_sklearn_model

    version = log_sklearn_model(llm_server.url, ADMIN_TOKEN, "pt-sklearn")
    r = llm_http.post(
        f"{API}/pt",
        json={"name": "pt-missing", "config": {"served_entities": [{"entity_name": "pt-sklearn"}]}},
    )
    assert r.status_code == 400 and "provisioned_model_units" in r.json()["message"]
    entity = {"entity_name": "pt-sklearn", "entity_version": version, "provisioned_model_units": 1}
    r = llm_http.post(f"{API}/pt", json={"name": "pt-sklearn", "config": {"served_entities": [entity]}})
    assert r.status_code == 200, r.text
    try:
        got = wait_settled(llm_http, "pt-sklearn", timeout=60)
        assert got["state"]["config_update"] == "UPDATE_FAILED", got
        served = got["pending_config"]["served_entities"][0]
        assert "is a custom model" in served["state"]["deployment_state_message"], served
    finally:
        llm_http.delete(f"{API}/pt-sklearn")
