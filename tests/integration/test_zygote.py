"""Replicas forked from the pre-warmed zygote (``runtime/zygote.py``, ``runtime/launcher.py``).

The probe model reports the process it runs in (pid, parent, its environment variables),
so the tests see from the outside that a forked replica is set up as a fresh one would
be: the entity's environment variables and no others of its own, its own session, the
worker's command line; that import-time variables get a fresh interpreter instead; and
that replicas come back when the zygote is killed.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.serverproc import ADMIN_TOKEN, ServerProcess
from tests.support.endpoints import wait_settled

PROBE = """
import os

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel


class Probe(PythonModel):
    def predict(self, context, model_input, params=None):
        row = {
            "pid": os.getpid(),
            "ppid": os.getppid(),
            "sid": os.getsid(0),
            "probe_var": os.environ.get("PROBE_VAR", ""),
            "omp": os.environ.get("OMP_NUM_THREADS", ""),
            "endpoint": os.environ.get("MODELPORT_ENDPOINT", ""),
        }
        return pd.DataFrame([row] * len(model_input))


mlflow.models.set_model(Probe())
"""


@pytest.fixture(scope="module")
def probe_model(server: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> str:
    import mlflow
    import pandas as pd

    os.environ["MLFLOW_TRACKING_TOKEN"] = ADMIN_TOKEN
    mlflow.set_tracking_uri(server.url)
    code = tmp_path_factory.mktemp("zygote-probe") / "probe.py"
    code.write_text(PROBE)
    with mlflow.start_run():
        mlflow.pyfunc.log_model(
            name="model",
            python_model=str(code),
            registered_model_name="zygote-probe",
            input_example=pd.DataFrame({"x": [1.0]}),
        )
    return "zygote-probe"


def deploy(http: httpx.Client, name: str, model: str, env: dict[str, str]) -> None:
    entity = {"name": "probe", "entity_name": model, "entity_version": "1", "environment_vars": env}
    r = http.post("/api/2.0/serving-endpoints", json={"name": name, "config": {"served_entities": [entity]}})
    assert r.status_code == 200, r.text
    got = wait_settled(http, name, timeout=120)
    assert got["state"]["config_update"] == "NOT_UPDATING", build_log(http, name)


def build_log(http: httpx.Client, name: str) -> str:
    return str(http.get(f"/api/2.0/serving-endpoints/{name}/served-models/probe/build-logs").json()["logs"])


ROW = {"dataframe_split": {"columns": ["x"], "data": [[1.0]]}}


def probe(http: httpx.Client, name: str) -> dict[str, Any]:
    r = http.post(f"/serving-endpoints/{name}/invocations", json=ROW)
    assert r.status_code == 200, r.text
    [row] = r.json()["predictions"]
    return dict(row)


def cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()


@pytest.fixture
def forked(http: httpx.Client, probe_model: str) -> str:
    deploy(http, "zy-forked", probe_model, {"PROBE_VAR": "hello"})
    return "zy-forked"


def test_replica_is_forked_from_the_zygote_and_set_up_like_a_fresh_one(
    http: httpx.Client, server: ServerProcess, forked: str
) -> None:
    assert "forked from the zygote" in build_log(http, forked)
    seen = probe(http, forked)
    assert seen["probe_var"] == "hello"
    assert seen["endpoint"] == forked
    assert seen["omp"] == ""
    assert seen["sid"] == seen["pid"], "a replica leads its own session"
    assert "modelport.runtime.worker --socket" in cmdline(seen["pid"])
    assert "modelport.runtime.zygote" in cmdline(seen["ppid"])
    assert Path(f"/proc/{seen['ppid']}/status").read_text().count(f"PPid:\t{server.proc.pid}") == 1  # type: ignore[union-attr]


def test_import_time_variables_get_a_fresh_interpreter(http: httpx.Client, probe_model: str) -> None:
    deploy(http, "zy-fresh", probe_model, {"OMP_NUM_THREADS": "1", "PROBE_VAR": "fresh"})
    assert "a new interpreter" in build_log(http, "zy-fresh")
    seen = probe(http, "zy-fresh")
    assert (seen["omp"], seen["probe_var"]) == ("1", "fresh")
    assert "modelport.runtime.zygote" not in cmdline(seen["ppid"])


def test_replicas_come_back_after_the_zygote_is_killed(http: httpx.Client, forked: str) -> None:
    before = probe(http, forked)
    os.kill(before["ppid"], signal.SIGKILL)
    deadline = time.monotonic() + 60
    after: dict[str, Any] = {}
    while time.monotonic() < deadline:
        r = http.post(f"/serving-endpoints/{forked}/invocations", json=ROW)
        if r.status_code == 200 and r.json()["predictions"][0]["pid"] != before["pid"]:
            after = r.json()["predictions"][0]
            break
        time.sleep(0.2)
    assert after, "no new replica answered after the zygote was killed"
    assert after["probe_var"] == "hello"
    assert not Path(f"/proc/{before['pid']}").exists(), "the old replica stopped with its zygote"


def test_a_zygote_whose_server_is_gone_leaves_replicas_waiting_for_adoption() -> None:
    """When the server goes, the zygote stops the replicas that stop with it and never the
    ones waiting for the next leader to adopt them (``--orphan-seconds``), not even after its
    10 s grace: they were killed then, in the middle of a slow takeover."""
    import socket
    import subprocess

    from modelport.runtime.zygote import Zygote

    stops, waits = (subprocess.Popen(["sleep", "60"]) for _ in range(2))
    zygote = Zygote(socket.socket(socket.AF_UNIX), os.getpid())
    zygote._send = lambda message: None  # type: ignore[method-assign]  # no server to tell
    zygote.children = {stops.pid, waits.pid}
    zygote.orphanable = {waits.pid}
    try:
        started = time.monotonic()
        zygote._stop_children()
        # The zygote reaped the one it stopped (so Popen cannot see its status).
        assert zygote.children == {waits.pid} and not os.path.exists(f"/proc/{stops.pid}")
        assert time.monotonic() - started < 5  # it did not wait the grace for the other
        assert waits.poll() is None, "the replica waiting for adoption was stopped"
    finally:
        for p in (stops, waits):
            p.kill()
            p.wait()
        zygote.listener.close()
