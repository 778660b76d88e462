"""A server started as ``make run`` starts it, shared by the docs and the demo tests.

``modelport serve --demo`` with the system endpoints on, HOME set to a scratch folder whose
``.modelport`` is the data directory (so ``~/.modelport/admin-token`` is this server's first
admin token, generated and written as on a reader's machine).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.serverproc import ServerProcess


@pytest.fixture(scope="package")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("docs-home")


@pytest.fixture(scope="package")
def docs_server(home: Path) -> Iterator[ServerProcess]:
    proc = ServerProcess(
        home / ".modelport",
        extra_args=["--demo"],
        # As make run: the token is generated and written to ~/.modelport/admin-token.
        env={"MODELPORT_ADMIN_TOKEN": "", "MODELPORT_SYSTEM_ENDPOINTS": "true", "HOME": str(home)},
    ).start()
    try:
        _wait_for_demo(proc)
        yield proc
    finally:
        try:
            proc.stop()
        except Exception:
            proc.kill()


def _wait_for_demo(proc: ServerProcess, timeout: float = 240.0) -> None:
    """A reader starts the tour once ``make run`` has printed that the demo is ready."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        log = proc.log_path.read_text(errors="replace")
        if "is ready. In another terminal:" in log:
            return
        if "demo set-up failed" in log:
            raise RuntimeError(f"the demo failed:\n{proc.log_tail()}")
        if proc.proc is not None and proc.proc.poll() is not None:
            raise RuntimeError(f"the server exited:\n{proc.log_tail()}")
        time.sleep(0.2)
    raise RuntimeError(f"the demo was not ready after {timeout}s:\n{proc.log_tail()}")
