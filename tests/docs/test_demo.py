"""``make run`` (``modelport serve --demo``): what it prints works as printed, and after the demo
a client registers, serves and queries its own model (the demo once broke every later
registration by leaving MLflow's tracking URI and a deleted token set in the server process)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx

from tests.serverproc import ServerProcess
from tests.support.docs import venv_env

ROOT = Path(__file__).resolve().parents[2]


def _next_steps(log: str) -> list[str]:
    lines = log.splitlines()
    start = next(i for i, line in enumerate(lines) if "is ready. In another terminal:" in line)
    steps = []
    for line in lines[start + 1 :]:
        if not line.startswith("  "):
            break
        steps.append(line.strip())
    return steps


def test_the_commands_printed_after_the_demo_work_as_printed(docs_server: ServerProcess, home: Path) -> None:
    steps = _next_steps(docs_server.log_path.read_text())
    assert steps[-1].startswith("modelport endpoints query demo-iris"), steps
    # A new terminal: nothing of modelport in its environment, not even the venv on PATH.
    env = venv_env(home)
    env["PATH"] = "/usr/local/bin:/usr/bin:/bin"
    done = subprocess.run(
        ["bash", "-eo", "pipefail", "-c", "\n".join(steps)],
        env=env,
        cwd=home,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "demo-iris" in done.stdout and "READY" in done.stdout
    assert '"predictions"' in done.stdout


def test_a_client_registers_serves_and_queries_a_model_after_the_demo(
    docs_server: ServerProcess, home: Path
) -> None:
    token = (home / ".modelport" / "admin-token").read_text().strip()
    code = "import sys; from tests.support.models import log_sklearn_model as log; print(log(*sys.argv[1:]))"
    registered = subprocess.run(
        [sys.executable, "-c", code, docs_server.url, token, "after-demo"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert registered.returncode == 0, registered.stdout + registered.stderr
    assert registered.stdout.strip().splitlines()[-1] == "1"
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=docs_server.url, headers=headers, timeout=60) as client:
        body = {
            "name": "after-demo",
            "config": {
                "served_entities": [
                    {"entity_name": "after-demo", "entity_version": "1", "workload_size": "Small"}
                ]
            },
        }
        assert client.post("/api/2.0/serving-endpoints", json=body).status_code == 200
        try:
            from modelport.client.sdk import ModelportClient

            with ModelportClient(docs_server.url, token) as sdk:
                sdk.wait_for_update("after-demo", timeout=180)
            answer = client.post(
                "/serving-endpoints/after-demo/invocations",
                json={"dataframe_records": [{"f0": 0.9, "f1": 0.1, "f2": 0.2, "f3": 0.3}]},
            )
            assert answer.status_code == 200, answer.text
            assert answer.json() == {"predictions": [1]}
        finally:
            client.delete("/api/2.0/serving-endpoints/after-demo")
