"""A config update under load with a slow model: no query fails, every answer comes from a
version that was serving, and the switch to the new version is one-way.

The two versions of ``slow-tag`` answer differently (``"one"``, ``"two"``) and take 0.2 s
per query, so queries are in flight on the old replicas while the update swaps them.
Streams during a swap are not covered here (custom models answer whole bodies).
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.serverproc import ADMIN_TOKEN, ServerProcess
from tests.support.endpoints import wait_settled

MODEL = """
import time
import mlflow
import pandas as pd


class Tagged(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        time.sleep(0.2)
        return pd.DataFrame([{{"tag": "{tag}"}}] * len(model_input))


mlflow.models.set_model(Tagged())
"""
ROW = {"dataframe_split": {"columns": ["x"], "data": [[1.0]]}}


@dataclass(frozen=True)
class Answer:
    sent: float
    answered: float
    status: int
    tag: str | None


def register(server: ServerProcess, folder: Path) -> str:
    """Versions 1 (answers "one") and 2 (answers "two") of ``slow-tag``."""
    import mlflow
    import pandas as pd

    os.environ["MLFLOW_TRACKING_TOKEN"] = ADMIN_TOKEN
    mlflow.set_tracking_uri(server.url)
    for tag in ("one", "two"):
        code = folder / f"tagged_{tag}.py"
        code.write_text(MODEL.format(tag=tag))
        with mlflow.start_run():
            mlflow.pyfunc.log_model(
                name="model",
                python_model=str(code),
                registered_model_name="slow-tag",
                input_example=pd.DataFrame({"x": [1.0]}),
            )
    return "slow-tag"


@pytest.mark.slow
def test_update_under_load_answers_every_query_and_switches_versions_once(
    server: ServerProcess, http: httpx.Client, tmp_path: Path
) -> None:
    model = register(server, tmp_path)
    entity = {"name": "slow", "entity_name": model, "workload_size": "Small"}
    created = http.post(
        "/api/2.0/serving-endpoints",
        json={"name": "swap", "config": {"served_entities": [{**entity, "entity_version": "1"}]}},
    )
    assert created.status_code == 200, created.text
    assert wait_settled(http, "swap", timeout=180)["state"]["config_update"] == "NOT_UPDATING"

    answers: list[Answer] = []
    lock = threading.Lock()
    stop = threading.Event()

    def load() -> None:
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        with httpx.Client(base_url=server.url, headers=headers, timeout=60) as client:
            while not stop.is_set():
                sent = time.monotonic()
                resp = client.post("/serving-endpoints/swap/invocations", json=ROW)
                tag = resp.json()["predictions"][0]["tag"] if resp.status_code == 200 else None
                with lock:
                    answers.append(Answer(sent, time.monotonic(), resp.status_code, tag))

    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        time.sleep(1.0)
        put = http.put(
            "/api/2.0/serving-endpoints/swap/config",
            json={"served_entities": [{**entity, "entity_version": "2"}]},
        )
        assert put.status_code == 200, put.text
        settled = wait_settled(http, "swap", timeout=180)
        settled_at = time.monotonic()
        assert settled["state"]["config_update"] == "NOT_UPDATING", settled
        time.sleep(1.0)
    finally:
        stop.set()
        for t in threads:
            t.join()

    assert answers and all(a.status == 200 for a in answers), [a for a in answers if a.status != 200][:3]
    assert {a.tag for a in answers} == {"one", "two"}
    first_two = min(a.answered for a in answers if a.tag == "two")
    late_ones = [a for a in answers if a.tag == "one" and a.sent > first_two]
    assert late_ones == [], "the old version answered queries sent after the new one had answered"
    assert all(a.tag == "two" for a in answers if a.sent > settled_at)
    [served] = settled["config"]["served_entities"]
    assert (served["entity_version"], settled["config"]["config_version"]) == ("2", 2)
    print(f"{len(answers)} answers: {sum(a.tag == 'one' for a in answers)} from version 1")
