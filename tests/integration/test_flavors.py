"""XGBoost and PyTorch models logged into the embedded registry and served by real replicas.

Each model gets one endpoint for the whole module (a replica is a real process). Every
answer is compared with what the model computes in this process: XGBoost exactly (float32),
PyTorch within float32 tolerance. The concurrent tests send single-row requests at once,
which the replica's batcher may predict together (both flavors are batch-capable for
DataFrame inputs; tensor inputs are predicted alone), so the rows must come back split to
the right requests.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from tests.integration.conftest import kept_endpoint
from tests.serverproc import ADMIN_TOKEN, ServerProcess

COLUMNS = ["f0", "f1", "f2", "f3"]
CONCURRENT = 32


def _use_registry(server: ServerProcess) -> Any:
    import mlflow

    os.environ["MLFLOW_TRACKING_TOKEN"] = ADMIN_TOKEN
    mlflow.set_tracking_uri(server.url)
    return mlflow


def _entity(model: str) -> list[dict[str, Any]]:
    return [{"name": "m", "entity_name": model, "entity_version": "1", "workload_size": "Small"}]


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> Iterator[httpx.Client]:
    limits = httpx.Limits(max_connections=CONCURRENT, max_keepalive_connections=CONCURRENT)
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=60, limits=limits) as c:
        yield c


def query(client: httpx.Client, endpoint: str, body: dict[str, Any]) -> httpx.Response:
    return client.post(f"/serving-endpoints/{endpoint}/invocations", json=body)


def predictions(client: httpx.Client, endpoint: str, body: dict[str, Any]) -> Any:
    r = query(client, endpoint, body)
    assert r.status_code == 200, (body, r.text)
    return r.json()["predictions"]


def all_at_once(bodies: list[dict[str, Any]], send: Callable[[dict[str, Any]], Any]) -> list[Any]:
    """Send every body from its own thread, released together, and return the answers in order."""
    start = threading.Barrier(len(bodies))

    def one(body: dict[str, Any]) -> Any:
        start.wait(timeout=30)
        return send(body)

    with ThreadPoolExecutor(max_workers=len(bodies)) as pool:
        return list(pool.map(one, bodies))


def assert_signature_error(r: httpx.Response, *names: str) -> None:
    assert r.status_code == 400, r.text
    error = r.json()
    assert error["error_code"] == "INVALID_PARAMETER_VALUE", error
    for name in names:
        assert name in error["message"], error


# --- XGBoost ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def xgb(server: ServerProcess) -> Iterator[dict[str, Any]]:
    """An XGBRegressor on f0..f3 (float predictions: a mix-up of rows cannot go unnoticed)."""
    xgboost = pytest.importorskip("xgboost")
    from mlflow.models import infer_signature

    rng = np.random.default_rng(7)
    x = pd.DataFrame(rng.random((80, 4)), columns=COLUMNS)
    y = 3 * x["f0"] - 2 * x["f1"] + x["f2"] * x["f3"] + rng.normal(scale=0.05, size=80)
    model = xgboost.XGBRegressor(n_estimators=20, max_depth=3, random_state=0).fit(x, y)
    mlflow = _use_registry(server)
    with mlflow.start_run():
        mlflow.xgboost.log_model(
            model,
            name="model",
            signature=infer_signature(x, model.predict(x)),
            registered_model_name="flavor-xgb",
            pip_requirements=["xgboost"],
        )
    with kept_endpoint(server, "flavor-xgb", _entity("flavor-xgb")) as endpoint:
        yield {"endpoint": endpoint, "x": x, "expected": model.predict(x)}


def test_xgboost_every_input_format_matches_the_model(client: httpx.Client, xgb: dict[str, Any]) -> None:
    head: pd.DataFrame = xgb["x"].head(5)
    records = head.to_dict(orient="records")
    bodies = {
        "dataframe_split": {"dataframe_split": head.to_dict(orient="split")},
        "dataframe_records": {"dataframe_records": records},
        "instances": {"instances": records},
        "inputs": {"inputs": head.to_dict(orient="list")},
    }
    for family, body in bodies.items():
        got = np.asarray(predictions(client, xgb["endpoint"], body), dtype=np.float32)
        assert got.tolist() == xgb["expected"][:5].tolist(), family


def test_xgboost_signature_errors_name_the_column(client: httpx.Client, xgb: dict[str, Any]) -> None:
    wrong = {"columns": ["f0", "f1", "f2", "oops"], "data": [[0.1, 0.2, 0.3, 0.4]]}
    assert_signature_error(query(client, xgb["endpoint"], {"dataframe_split": wrong}), "f3")
    text = [{"f0": "abc", "f1": 0.2, "f2": 0.3, "f3": 0.4}]
    assert_signature_error(query(client, xgb["endpoint"], {"dataframe_records": text}), "f0")


def test_xgboost_concurrent_single_rows_get_their_own_prediction(
    client: httpx.Client, xgb: dict[str, Any]
) -> None:
    rows = xgb["x"].head(CONCURRENT).to_numpy().tolist()
    bodies = [{"dataframe_split": {"columns": COLUMNS, "data": [row]}} for row in rows]
    answers = all_at_once(bodies, lambda body: predictions(client, xgb["endpoint"], body))
    got = np.asarray(answers, dtype=np.float32).reshape(-1)
    assert got.tolist() == xgb["expected"][:CONCURRENT].tolist()


# --- PyTorch ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def net(server: ServerProcess) -> Iterator[dict[str, Any]]:
    """A 4 → 8 → 3 MLP, initialised with a fixed seed, with a float32 tensor signature."""
    torch = pytest.importorskip("torch")
    from mlflow.models import infer_signature

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    model.eval()
    x = np.random.default_rng(3).normal(size=(CONCURRENT, 4)).astype(np.float32)
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    mlflow = _use_registry(server)
    with mlflow.start_run():
        mlflow.pytorch.log_model(
            model,
            name="model",
            signature=infer_signature(x, expected),
            input_example=x[:2],  # the default pt2 format traces the model with it
            registered_model_name="flavor-torch",
            pip_requirements=["torch"],
        )
    with kept_endpoint(server, "flavor-torch", _entity("flavor-torch")) as endpoint:
        yield {"endpoint": endpoint, "x": x, "expected": expected}


def _close(got: Any, expected: np.ndarray) -> None:
    np.testing.assert_allclose(np.asarray(got, dtype=np.float32), expected, rtol=1e-5, atol=1e-6)


def test_pytorch_tensor_and_frame_inputs_match_the_forward_pass(
    client: httpx.Client, net: dict[str, Any]
) -> None:
    x, expected = net["x"][:3], net["expected"][:3]
    rows = x.tolist()
    for body in (
        {"inputs": rows},
        {"instances": rows},
        {"dataframe_split": {"columns": COLUMNS, "data": rows}},
    ):
        _close(predictions(client, net["endpoint"], body), expected)


def test_pytorch_shape_errors_name_the_expected_shape(client: httpx.Client, net: dict[str, Any]) -> None:
    assert_signature_error(query(client, net["endpoint"], {"inputs": [[0.1, 0.2, 0.3]]}), "(-1, 4)")
    narrow = {"columns": ["f0", "f1", "f2"], "data": [[0.1, 0.2, 0.3]]}
    assert_signature_error(query(client, net["endpoint"], {"dataframe_split": narrow}), "(-1, 4)")


def test_pytorch_concurrent_single_rows_get_their_own_prediction(
    client: httpx.Client, net: dict[str, Any]
) -> None:
    # Frames of one row may be predicted together; tensors are predicted alone, in between.
    bodies = [
        {"dataframe_split": {"columns": COLUMNS, "data": [row]}} if i % 2 else {"inputs": [row]}
        for i, row in enumerate(net["x"].tolist())
    ]
    answers = all_at_once(bodies, lambda body: predictions(client, net["endpoint"], body))
    _close(np.asarray(answers).reshape(-1, 3), net["expected"])
