"""One real server for the security suite: the authorization matrix runs on it first (its file
sorts first), then the fuzzer, which leaves random objects behind."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.serverproc import ADMIN_TOKEN, ServerProcess


@pytest.fixture(scope="package")
def security_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    # The registry (MLflow) must be loaded: the fuzzer's writes reach it. A loaded machine
    # takes longer than the default 90 s to get there.
    proc = ServerProcess(tmp_path_factory.mktemp("security-data")).start(timeout=240)
    try:
        yield proc
    finally:
        try:
            proc.stop()
        except Exception:
            proc.kill()


@pytest.fixture(scope="package")
def admin(security_server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=security_server.url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=60
    ) as client:
        yield client
