"""Build logs and runtime logs of served entities, kept as files under ``<data-dir>/logs``.

Layout: ``<root>/<endpoint-id>/<served-entity>/build.log`` (what preparing the entity
printed: resolution, downloads, environment builds) and ``.../runtime.log`` (what the
replicas print). Files survive restarts; deleting an endpoint deletes its folder.
"""

from __future__ import annotations

import re
import shutil
import threading
from datetime import UTC, datetime
from pathlib import Path

__all__ = ["BuildLog", "LogStore"]

_SAFE = re.compile(r"[^A-Za-z0-9_.-]")
MAX_READ_BYTES = 1 << 20


class BuildLog:
    """Appends timestamped lines to one build log (thread-safe)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, line: str) -> None:
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z"
        with self._lock, self.path.open("a", encoding="utf-8") as fh:
            for part in line.rstrip("\n").split("\n"):
                fh.write(f"{stamp} {part}\n")


class LogStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def _dir(self, endpoint_id: str, served: str) -> Path:
        return self.root / _SAFE.sub("_", endpoint_id) / _SAFE.sub("_", served)

    def build_log(self, endpoint_id: str, served: str) -> BuildLog:
        return BuildLog(self._dir(endpoint_id, served) / "build.log")

    def runtime_log_path(self, endpoint_id: str, served: str) -> Path:
        return self._dir(endpoint_id, served) / "runtime.log"

    def zygote_log_path(self) -> Path:
        """What the replica zygote (``runtime/zygote.py``) prints."""
        return self.root / "zygote.log"

    def read(self, endpoint_id: str, served: str, kind: str) -> str:
        """The last megabyte of a ``build`` or ``runtime`` log; empty if none was written."""
        path = self._dir(endpoint_id, served) / f"{kind}.log"
        if not path.exists():
            return ""
        size = path.stat().st_size
        with path.open("rb") as fh:
            if size > MAX_READ_BYTES:
                fh.seek(size - MAX_READ_BYTES)
                fh.readline()
            return fh.read().decode("utf-8", errors="replace")

    def remove(self, endpoint_id: str) -> None:
        shutil.rmtree(self.root / _SAFE.sub("_", endpoint_id), ignore_errors=True)
