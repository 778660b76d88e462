"""The engine contract's defaults (entities/foundation/engine.py)."""

from __future__ import annotations

import pytest

from modelport.entities.foundation.engine import default_threads


def test_default_threads_are_half_the_cores_this_process_may_use(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1, 2, 3, 4})
    assert default_threads() == 2
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0})
    assert default_threads() == 1


def test_engines_do_not_read_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # The server's settings and an entity's environment_vars reach engines as options.
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1, 2, 3})
    monkeypatch.setenv("MODELPORT_LLM_THREADS", "7")
    monkeypatch.setenv("MODELPORT_EMBED_THREADS", "7")
    assert default_threads() == 2
