"""When a replica may be forked from the zygote, and when it needs a fresh interpreter."""

from __future__ import annotations

import sys

from modelport.runtime.launcher import forkable

BASE = {"PATH": "/usr/bin", "HOME": "/root", "OMP_NUM_THREADS": "2"}


def test_same_interpreter_and_ordinary_variables_fork() -> None:
    env = {**BASE, "MY_SETTING": "x", "MODELPORT_ENDPOINT": "e", "CUDA_VISIBLE_DEVICES": "0"}
    assert forkable(sys.executable, env, BASE)


def test_a_variable_read_at_import_time_needs_a_fresh_interpreter() -> None:
    assert not forkable(sys.executable, {**BASE, "OMP_NUM_THREADS": "1"}, BASE)
    assert not forkable(sys.executable, {**BASE, "MKL_NUM_THREADS": "1"}, BASE)
    assert not forkable(sys.executable, {**BASE, "PYTHONHASHSEED": "0"}, BASE)
    assert not forkable(sys.executable, {"PATH": "/usr/bin", "HOME": "/root"}, BASE), "unset differs too"


def test_per_replica_variables_do_not_count() -> None:
    assert forkable(sys.executable, {**BASE, "PYTHONUNBUFFERED": "1"}, {**BASE, "PYTHONUNBUFFERED": "0"})


def test_another_interpreter_is_never_forked() -> None:
    assert not forkable("/opt/envs/abc/bin/python", BASE, BASE)
