"""Demo content for ``modelport serve --demo`` (what ``make run`` starts).

Runs once the server is up, as an ordinary client of it: trains two small iris
classifiers, registers them as versions 1 and 2 of ``demo-iris`` in the embedded MLflow
registry (alias ``@champion`` on version 2), and creates the endpoint ``demo-iris`` with
an 80/20 traffic split between them. Skips whatever already exists.

The models are logged by a child process (``python -m modelport.client.demo URL``) that
gets the tracking URI and a short-lived token in its own environment: the server process
never sets MLflow's client globals. MLflow's server-side handlers resolve ``models:/``
sources through those globals, so a URI and token set here once (and the token deleted
after the demo) broke every later model registration with a 500.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelport.client.sdk import ModelportClient
from modelport.errors import ModelportError, ResourceDoesNotExist

if TYPE_CHECKING:
    from modelport.api.services import Services

__all__ = ["DEMO_ENDPOINT", "seed_demo"]

log = logging.getLogger("modelport.demo")
DEMO_MODEL = "demo-iris"
DEMO_ENDPOINT = "demo-iris"
_EXAMPLE_QUERY = (
    '{"dataframe_records": [{"sepal length (cm)": 5.1, "sepal width (cm)": 3.5, '
    '"petal length (cm)": 1.4, "petal width (cm)": 0.2}]}'
)


def _register_models(base_url: str, token: str) -> None:
    """Log and register the demo models from a child process (see the module docstring)."""
    env = {**os.environ, "MLFLOW_TRACKING_URI": base_url, "MLFLOW_TRACKING_TOKEN": token}
    done = subprocess.run(
        [sys.executable, "-m", "modelport.client.demo", base_url],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=600,
        check=False,
    )
    if done.returncode != 0:
        tail = "\n".join(done.stdout.strip().splitlines()[-15:])
        raise ModelportError(f"registering the demo models failed (exit {done.returncode}):\n{tail}")


def _log_models(base_url: str) -> None:
    """The child process: MLFLOW_TRACKING_URI and MLFLOW_TRACKING_TOKEN come from its environment."""
    import mlflow
    from mlflow import MlflowClient
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    client = MlflowClient(base_url)
    existing = client.search_model_versions(f"name='{DEMO_MODEL}'")
    if len(existing) >= 2:
        return
    x, y = load_iris(return_X_y=True, as_frame=True)
    mlflow.set_experiment("modelport-demo")
    # Two versions that differ visibly: a well-regularised and a weakly fitted classifier.
    for model in (LogisticRegression(max_iter=500), LogisticRegression(C=0.01, max_iter=500)):
        with mlflow.start_run(run_name=type(model).__name__):
            model.fit(x, y)
            mlflow.log_metric("train_accuracy", float(model.score(x, y)))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                mlflow.sklearn.log_model(
                    model,
                    name="model",
                    registered_model_name=DEMO_MODEL,
                    input_example=x.head(2),
                    pip_requirements=["scikit-learn"],
                )
    client.set_registered_model_alias(DEMO_MODEL, "champion", "2")


def _endpoint_body() -> dict[str, Any]:
    return {
        "name": DEMO_ENDPOINT,
        "config": {
            "served_entities": [
                {
                    "name": "iris-v1",
                    "entity_name": DEMO_MODEL,
                    "entity_version": "1",
                    "workload_size": "Small",
                    "scale_to_zero_enabled": True,
                },
                {
                    "name": "iris-v2",
                    "entity_name": DEMO_MODEL,
                    "entity_version": "2",
                    "workload_size": "Small",
                    "scale_to_zero_enabled": True,
                },
            ],
            "traffic_config": {
                "routes": [
                    {"served_entity_name": "iris-v1", "traffic_percentage": 80},
                    {"served_entity_name": "iris-v2", "traffic_percentage": 20},
                ]
            },
        },
        "tags": [{"key": "demo", "value": "true"}],
    }


def next_steps(base_url: str, data_dir: Path) -> str:
    """What to type next, in another terminal, exactly as it works there."""
    lines = [f"modelport: the demo endpoint '{DEMO_ENDPOINT}' is ready. In another terminal:"]
    if sys.prefix != sys.base_prefix:  # a virtual environment: the reader's shell lacks its bin
        lines.append(f"  source {Path(sys.prefix) / 'bin' / 'activate'}")
    lines += [
        f"  export MODELPORT_HOST={base_url}",
        f"  export MODELPORT_TOKEN=$(cat {data_dir.resolve() / 'admin-token'})",
        "  modelport endpoints list",
        f"  modelport endpoints query {DEMO_ENDPOINT} --json '{_EXAMPLE_QUERY}'",
        f"The web UI: {base_url}/ui/ (sign in with that token).",
    ]
    return "\n".join(lines)


def seed_demo(services: Services) -> None:
    """Create the demo content through the public API, with a short-lived admin token."""
    settings = services.settings
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
    base_url = f"http://{host}:{settings.port}"
    admin = services.identity.find(settings.admin_user)
    from modelport.gateway.auth import caller_from

    token = services.identity.create_token(caller_from(admin), 3600, "demo set-up (deleted when done)")
    try:
        _register_models(base_url, token.value)
        with ModelportClient(base_url, token.value) as client:
            try:
                client.get_endpoint(DEMO_ENDPOINT)
            except ResourceDoesNotExist:
                client.create_endpoint(_endpoint_body())
            client.wait_for_update(DEMO_ENDPOINT, timeout=120)
        log.info("demo ready", extra={"endpoint": DEMO_ENDPOINT, "url": base_url})
        print(next_steps(base_url, settings.data_path), flush=True)
    except (ModelportError, Exception) as exc:  # the server keeps running without its demo
        log.error("demo set-up failed", extra={"error": f"{type(exc).__name__}: {exc}"})
    finally:
        services.identity.delete_token(caller_from(admin), token.record.id)


if __name__ == "__main__":
    _log_models(sys.argv[1])
