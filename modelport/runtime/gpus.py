"""Which GPUs this machine has, for pinning GPU workloads with CUDA_VISIBLE_DEVICES."""

from __future__ import annotations

import functools
import shutil
import subprocess

__all__ = ["gpu_ids"]


@functools.cache
def gpu_ids() -> tuple[str, ...]:
    """Indices of the NVIDIA GPUs ``nvidia-smi`` lists; empty where there are none."""
    if shutil.which("nvidia-smi") is None:
        return ()
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return ()
    return tuple(line.strip() for line in out.splitlines() if line.strip())
