"""A replica that hangs (its process SIGSTOPped): the health ping marks it hung, it is killed and
replaced, and the queries after that are answered."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time

import httpx

from tests.faults.conftest import HEALTH_SECONDS, create, query
from tests.serverproc import ADMIN_TOKEN, ServerProcess
from tests.support.models import log_sklearn_model
from tests.support.names import unique

ROW = {"dataframe_split": {"columns": ["f0", "f1", "f2", "f3"], "data": [[0.9, 0.1, 0.2, 0.3]]}}


def _worker_pids(endpoint_id: str) -> list[int]:
    out = subprocess.run(
        ["pgrep", "-f", f"modelport.runtime.worker .*{endpoint_id}"], capture_output=True, text=True
    )
    return [int(p) for p in out.stdout.split()]


def test_a_stopped_replica_is_found_by_the_health_ping_and_replaced(
    http: httpx.Client, fault_server: ServerProcess
) -> None:
    model = unique("hang-model")
    log_sklearn_model(fault_server.url, ADMIN_TOKEN, model)
    name = unique("hang")
    got = create(http, name, [{"name": "m", "entity_name": model, "entity_version": "1"}])
    assert got["state"]["ready"] == "READY", got
    assert query(http, name, ROW).status_code == 200
    [pid] = _worker_pids(got["id"])
    os.kill(pid, signal.SIGSTOP)
    stopped = time.monotonic()
    in_flight: list[int] = []
    caught = threading.Thread(target=lambda: in_flight.append(query(http, name, ROW).status_code))
    caught.start()
    try:
        replaced = None
        while time.monotonic() - stopped < 30:
            pids = _worker_pids(got["id"])
            if pids and pid not in pids and query(http, name, ROW).status_code == 200:
                replaced = time.monotonic() - stopped
                break
            time.sleep(0.2)
    finally:
        caught.join()
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)  # no-op once killed; frees it if the test failed
    assert replaced is not None, "the stopped replica was not replaced within 30 s"
    assert "replica hung" in fault_server.log_path.read_text()  # logged before the kill
    assert [query(http, name, ROW).status_code for _ in range(5)] == [200] * 5
    # The query caught on the stopped replica gets an error, not a hang past the request timeout.
    assert in_flight and in_flight[0] in (200, 503, 504), in_flight
    print(
        f"replica SIGSTOPped: replaced and answering {replaced:.2f} s later "
        f"(health {HEALTH_SECONDS} s); the query in flight got {in_flight[0]}"
    )
