"""Unit tests run without sockets or child processes: any attempt fails the test."""

from __future__ import annotations

import platform
import socket
import subprocess
from typing import Any

import pytest

# The interpreter's own processor lookup runs `uname -p` once and caches it; importing mlflow (which
# a unit test may do first) asks for it. Ask here, before the guard below refuses processes.
platform.uname().processor  # noqa: B018


@pytest.fixture(autouse=True)
def _no_network_no_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_args: Any, **_kwargs: Any) -> Any:
        raise AssertionError("unit tests must not open sockets or start processes")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(subprocess, "Popen", refuse)
