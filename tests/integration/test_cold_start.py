"""A burst of concurrent queries to an endpoint scaled to zero: every query is answered, one
cold start serves them all, and the replica count stays within the entity's band."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.serverproc import ADMIN_TOKEN, ServerProcess
from tests.support.endpoints import wait_settled
from tests.support.models import log_sklearn_model

BURST = 32
ROW = {"columns": ["f0", "f1", "f2", "f3"], "data": [[0.9, 0.1, 0.2, 0.3]]}
#: 0-8 concurrent requests at 4 per replica: a band of 0-2 replicas.
ENTITY = {
    "name": "m",
    "entity_name": "zero",
    "entity_version": "1",
    "scale_to_zero_enabled": True,
    "min_provisioned_concurrency": 0,
    "max_provisioned_concurrency": 8,
}
BAND_MAX = 2


@pytest.fixture
def zero_server(tmp_path: Path) -> Iterator[ServerProcess]:
    server = ServerProcess(tmp_path / "mp", extra_args=["--scale-to-zero-seconds", "2"]).start(timeout=240)
    try:
        yield server
    finally:
        server.stop()


def gauges(http: httpx.Client, name: str) -> dict[str, float]:
    """The endpoint's per-entity gauges for entity ``m`` (``modelport_endpoint_<name>``)."""
    text = http.get(f"/api/2.0/serving-endpoints/{name}/metrics").text
    suffix = f'{{endpoint="{name}",served_entity="m"}} '
    out = {}
    for line in text.splitlines():
        if line.startswith("modelport_endpoint_") and suffix in line:
            key, value = line.split(suffix)
            out[key.removeprefix("modelport_endpoint_")] = float(value)
    return out


def worker_pids(endpoint_id: str) -> list[int]:
    """The endpoint's replica processes, starting or ready (see ``ReplicaSpec.argv``)."""
    out = subprocess.run(
        ["pgrep", "-f", f"modelport.runtime.worker --socket .*{endpoint_id}"], capture_output=True, text=True
    )
    return [int(p) for p in out.stdout.split()]


@pytest.mark.slow
def test_concurrent_queries_to_a_scaled_to_zero_endpoint_share_one_cold_start(
    zero_server: ServerProcess,
) -> None:
    log_sklearn_model(zero_server.url, ADMIN_TOKEN, "zero")
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    with httpx.Client(base_url=zero_server.url, headers=headers, timeout=120) as http:
        r = http.post(
            "/api/2.0/serving-endpoints", json={"name": "zero", "config": {"served_entities": [ENTITY]}}
        )
        assert r.status_code == 200, r.text
        settled = wait_settled(http, "zero", timeout=120)
        assert settled["state"]["config_update"] == "NOT_UPDATING", settled
        deadline = time.monotonic() + 30
        while gauges(http, "zero").get("replicas") != 0 or worker_pids(settled["id"]):  # idle 2 s
            assert time.monotonic() < deadline, gauges(http, "zero")
            time.sleep(0.2)
        before = gauges(http, "zero")
        assert before["replicas"] == 0 and before["cold_starts"] == 0, before

        gate = threading.Barrier(BURST + 1)
        answers: list[tuple[int, str]] = []
        lock = threading.Lock()

        def one() -> None:
            with httpx.Client(base_url=zero_server.url, headers=headers, timeout=120) as client:
                gate.wait()
                resp = client.post("/serving-endpoints/zero/invocations", json={"dataframe_split": ROW})
            with lock:
                answers.append((resp.status_code, resp.text))

        threads = [threading.Thread(target=one) for _ in range(BURST)]
        for t in threads:
            t.start()
        gate.wait()
        seen_replicas: list[float] = []
        seen_processes: list[int] = []
        while any(t.is_alive() for t in threads):
            seen_replicas.append(gauges(http, "zero")["replicas"])
            seen_processes.append(len(worker_pids(settled["id"])))
            time.sleep(0.1)
        for t in threads:
            t.join()

        assert [status for status, _ in answers] == [200] * BURST, [a for a in answers if a[0] != 200][:3]
        assert all(json.loads(text) == {"predictions": [1]} for _, text in answers)
        after = gauges(http, "zero")
        assert after["cold_starts"] == 1, after
        assert 1 <= after["replicas"] <= BAND_MAX, after
        assert max(seen_replicas) <= BAND_MAX, seen_replicas
        assert max(seen_processes) <= BAND_MAX, seen_processes
        assert len(worker_pids(settled["id"])) <= BAND_MAX
        print(f"ready replicas seen: {sorted(set(seen_replicas))}, processes: {sorted(set(seen_processes))}")
