"""Errors a replica answers with reach the client whole: status, error_code and Retry-After.

A replica that is told to stop (SIGTERM: an operator, a process manager) finishes what it
holds and answers anything that arrives meanwhile with 503 ``TEMPORARILY_UNAVAILABLE`` and
``retry_after=1`` (``runtime/replica_server.py``). The model here reports where it runs and
touches a file when a predict starts, so the test sees from the outside when a request is
in the replica and when the replica has stopped listening.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.conftest import kept_endpoint
from tests.serverproc import ADMIN_TOKEN, ServerProcess

SLOW = """
import os
import time
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel


class Slow(PythonModel):
    def predict(self, context, model_input, params=None):
        for started in model_input["started"]:
            if started:
                Path(started).touch()
        time.sleep(float(model_input["seconds"].max()))
        return pd.DataFrame({"pid": [os.getpid()] * len(model_input)})


mlflow.models.set_model(Slow())
"""


@pytest.fixture(scope="module")
def slow_endpoint(server: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    import mlflow
    import pandas as pd

    os.environ["MLFLOW_TRACKING_TOKEN"] = ADMIN_TOKEN
    mlflow.set_tracking_uri(server.url)
    code = tmp_path_factory.mktemp("slow-model") / "slow.py"
    code.write_text(SLOW)
    with mlflow.start_run():
        mlflow.pyfunc.log_model(
            name="model",
            python_model=str(code),
            registered_model_name="slow-model",
            input_example=pd.DataFrame({"seconds": [0.0], "started": [""]}),
        )
    entity = {"name": "slow", "entity_name": "slow-model", "entity_version": "1"}
    with kept_endpoint(server, "replica-errors", [entity]) as name:
        yield name


def query(url: str, name: str, seconds: float, started: str = "") -> httpx.Response:
    body = {"dataframe_split": {"columns": ["seconds", "started"], "data": [[seconds, started]]}}
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    return httpx.post(f"{url}/serving-endpoints/{name}/invocations", json=body, headers=headers, timeout=60)


def socket_of(pid: int) -> str:
    # A replica forked from the zygote has its title set as one string: split on spaces too.
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().split()
    return argv[argv.index("--socket") + 1]


def wait_until(condition: Any, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.01)


def refuses_connections(path: str) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(path)
        except (ConnectionRefusedError, FileNotFoundError):
            return True
    return False


def test_a_stopping_replicas_503_reaches_the_client_with_retry_after(
    server: ServerProcess, slow_endpoint: str, tmp_path: Path
) -> None:
    first = query(server.url, slow_endpoint, 0)
    assert first.status_code == 200, first.text
    [row] = first.json()["predictions"]
    pid = int(row["pid"])
    path = socket_of(pid)

    started = tmp_path / "started"
    held: list[httpx.Response] = []
    holder = threading.Thread(target=lambda: held.append(query(server.url, slow_endpoint, 3, str(started))))
    holder.start()
    try:
        wait_until(started.exists, "the slow request is in the replica")
        os.kill(pid, signal.SIGTERM)
        wait_until(lambda: refuses_connections(path), "the replica stops listening")

        refused = query(server.url, slow_endpoint, 0)
    finally:
        holder.join(timeout=60)

    assert refused.status_code == 503, refused.text
    assert refused.headers.get("retry-after") == "1"
    assert refused.json()["error_code"] == "TEMPORARILY_UNAVAILABLE"
    assert "stopping" in refused.json()["message"]
    assert [r.status_code for r in held] == [200], (
        "the request in flight is finished before the replica exits"
    )
