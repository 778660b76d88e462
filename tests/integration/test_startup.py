"""The first seconds after start: the control plane answers while MLflow is still loading."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from tests.serverproc import ADMIN_TOKEN, ServerProcess

HEADERS = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
EXTERNAL = {
    "name": "early",
    "config": {
        "served_entities": [
            {
                "name": "gpt",
                "external_model": {
                    "provider": "openai",
                    "name": "gpt-4o-mini",
                    "task": "llm/v1/chat",
                    "openai_config": {"openai_api_key_plaintext": "sk-test"},
                },
            }
        ]
    },
}


def _registry_state(url: str) -> str:
    return str(httpx.get(f"{url}/ready", timeout=10).json()["checks"]["registry"])


def test_an_external_endpoint_is_created_and_ready_while_the_registry_loads(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data")
    server.start_until("/health")
    try:
        # A fresh data directory: MLflow creates its database after the import (seconds).
        assert _registry_state(server.url) == "starting"
        with httpx.Client(base_url=server.url, headers=HEADERS, timeout=10) as client:
            created = client.post("/api/2.0/serving-endpoints", json=EXTERNAL)
            assert created.status_code == 200, created.text
            states = []
            for _ in range(20):
                got = client.get("/api/2.0/serving-endpoints/early")  # 10 s timeout: no stall
                assert got.status_code == 200, got.text
                states.append(got.json()["state"]["config_update"])
                if states[-1] != "IN_PROGRESS":
                    break
                time.sleep(0.05)
            assert states[-1] == "NOT_UPDATING", states
            assert got.json()["state"]["ready"] == "READY"
            # Everything above happened before the registry finished loading.
            assert _registry_state(server.url) == "starting"
            listed = client.get("/api/2.0/serving-endpoints")
            assert [e["name"] for e in listed.json()["endpoints"]] == ["early"]
        server.wait_ready()
        assert _registry_state(server.url) == "ok"
    finally:
        server.stop()
