"""Sealed model versions: the folders of registered (READY) versions, and their content digests.

Once a version of the embedded registry is READY, the folder its files live in (a logged
model's ``artifacts`` folder, or a run's sub-folder for a version registered from
``runs:/``) is *sealed*: ``api/mlflow_seal.py`` refuses every write through MLflow's artifact
routes that lands in it (or, for a deletion, above it). The set of sealed folders is held in
memory, so the check costs a few dictionary look-ups; it is built at load from MLflow's
registry and kept current by the seal layer as versions are created, deleted and renamed.

A version's content digest (``entities/model_digest.py``) is recorded in the store
(``model_version_digests``) when it is registered, and a replica compares the files it
is about to load with it (``runtime/model_check.py``).

- **At registration**: recorded from the files as they are right after ``model-versions/create``
  answers READY (source ``registration``); a record left by an earlier, deleted version of the
  same number is replaced.
- **Upgrade and late registration**: at every load, each READY version without a digest gets
  one from its files as they are then (source ``backfill``); the first completed pass is noted
  in the store's meta (``model_digests_backfilled_ms``). A version that turns READY after
  ``PENDING_REGISTRATION`` (MLflow's own SQL registry never does this) is sealed at the next
  start, and its digest is recorded at its first deployment or at the next start.
- The digest trusts the files it first sees: what was on disk before an upgrade, or changed
  on the disk itself (not through MLflow) before a digest was recorded, is taken as registered.

Blocking methods read MLflow's registry and hash files: run them in a thread.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from modelport.entities.model_digest import digest_of
from modelport.store.database import Database

if TYPE_CHECKING:  # importing it imports MLflow (seconds): only the loaded registry holds one
    from modelport.entities.registry import ModelRegistry

__all__ = ["BACKFILL_META_KEY", "ModelSeal", "SealedVersion"]

log = logging.getLogger("modelport.registry")

BACKFILL_META_KEY = "model_digests_backfilled_ms"


@dataclass(frozen=True)
class SealedVersion:
    name: str
    version: int

    def describe(self) -> str:
        return f"model '{self.name}' version {self.version}"


def _norm(path: str | Path) -> str:
    return os.path.normpath(str(path))


class ModelSeal:
    """The sealed folders of one embedded registry (thread-safe; reads never block)."""

    def __init__(
        self,
        registry: ModelRegistry,
        db: Database,
        artifacts_root: Path,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.registry = registry
        self._db = db
        self.artifacts_root = _norm(artifacts_root)
        self._clock = clock
        self._lock = threading.Lock()
        # Replaced as a whole under the lock: readers on the event loop see one version of it.
        self._folders: dict[str, SealedVersion] = {}

    # ---- the check (no I/O) -----------------------------------------------------------------------
    def artifact_target(self, relative: str) -> str:
        """The local path an artifact-proxy path (relative to the artifact root) writes to."""
        return _norm(os.path.join(self.artifacts_root, relative.lstrip("/")))

    def covering(self, target: str) -> SealedVersion | None:
        """The sealed version whose folder is ``target`` or holds it, if any."""
        folders = self._folders
        path = _norm(target)
        while True:
            hit = folders.get(path)
            if hit is not None:
                return hit
            parent = os.path.dirname(path)
            if parent == path:
                return None
            path = parent

    def inside(self, target: str) -> SealedVersion | None:
        """A sealed version whose folder lies under ``target`` (deleting ``target`` would remove it)."""
        prefix = _norm(target).rstrip("/") + "/"
        for folder, sealed in self._folders.items():
            if folder.startswith(prefix):
                return sealed
        return None

    def sealed_count(self) -> int:
        return len(self._folders)

    # ---- keeping it current (blocking) ----------------------------------------------------------
    def folder_of(self, name: str, version: int | str) -> Path | None:
        """The local folder of a version's files; None when they are not on this machine."""
        return self.registry.local_path(self.registry.storage_uri(name, str(version)))

    def load(self) -> int:
        """Seal every READY version of the registry; returns how many folders are sealed."""
        folders: dict[str, SealedVersion] = {}
        for name, version, status in self.registry.all_versions():
            if status != "READY":
                continue
            try:
                folder = self.folder_of(name, version)
            except Exception:  # a version whose source is gone: nothing to seal
                log.warning("model version files not found", extra={"model": name, "version": version})
                continue
            if folder is not None:
                folders[_norm(folder)] = SealedVersion(name, int(version))
        with self._lock:
            self._folders = folders
        return len(folders)

    def seal(self, name: str, version: int | str) -> Path | None:
        """Seal one version's folder (just registered); returns the folder."""
        folder = self.folder_of(name, version)
        if folder is not None:
            with self._lock:
                self._folders = {**self._folders, _norm(folder): SealedVersion(name, int(version))}
        return folder

    def forget(self, name: str, version: int | str | None = None) -> None:
        """A version (or every version of a model) was deleted: unseal it, drop its digest."""
        with self._lock:
            self._folders = {
                f: s
                for f, s in self._folders.items()
                if not (s.name == name and (version is None or s.version == int(version)))
            }
        self._db.digests.drop(name, None if version is None else int(version))

    def rename(self, old: str, new: str) -> None:
        with self._lock:
            self._folders = {
                f: SealedVersion(new, s.version) if s.name == old else s for f, s in self._folders.items()
            }
        self._db.digests.rename(old, new)

    # ---- digests (blocking) -----------------------------------------------------------------------
    def record(self, name: str, version: int | str, folder: Path, source: str, *, replace: bool) -> str:
        """Hash ``folder`` and record it as the version's digest (``replace``: drop a stale one)."""
        digest = digest_of(folder)
        if replace:
            self._db.digests.drop(name, int(version))
        self._db.digests.record(name, int(version), digest, source, int(self._clock() * 1000))
        log.info(
            "model version digest recorded", extra={"model": name, "version": int(version), "source": source}
        )
        return digest

    def backfill(self) -> int:
        """Record a digest for each sealed version that has none (idempotent); returns how many."""
        have = self._db.digests.versions()
        done = 0
        for folder, sealed in list(self._folders.items()):
            if (sealed.name, sealed.version) in have:
                continue
            try:
                self.record(sealed.name, sealed.version, Path(folder), "backfill", replace=False)
                done += 1
            except OSError as exc:
                log.warning(
                    "model version digest not recorded",
                    extra={"model": sealed.name, "version": sealed.version, "error": str(exc)},
                )
        if self._db.meta_get(BACKFILL_META_KEY) is None:
            self._db.meta_set(BACKFILL_META_KEY, str(int(self._clock() * 1000)))
        return done
