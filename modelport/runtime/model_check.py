"""A replica loads only what was registered: the model folder's digest against the recorded one.

Before the replicas of a registered model version start, the files they will load are hashed
(``entities/model_digest.py``) and compared with the digest recorded at registration
(``model_version_digests``, see ``control/model_seal.py``); a mismatch fails the deployment
with a message naming the model, the version and both digests.

- **Embedded registry, no digest recorded** (a version registered before digests existed, or
  one whose recording has not finished yet): the digest of what is loaded now is recorded
  (trust on first use, source ``first-load``) and later loads are held to it.
- **External registry** (``--registry-uri``): nothing is checked. modelport does not see that
  registry's registrations, so it has nothing to compare with; that server's own controls apply.

Every deployment hashes the folder: one sha256 pass over the files (0.13-0.17 GiB/s measured
on a busy 2-core machine, so seconds for a GB-sized model).
Replicas that the supervisor restarts later load the same folder without hashing it again;
the seal (``api/mlflow_seal.py``) keeps MLflow's routes from writing there.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from modelport.entities.model_digest import digest_of
from modelport.errors import InvalidState

__all__ = ["DigestStore", "ModelCheck"]


class DigestStore(Protocol):
    def get(self, model_name: str, version: int) -> tuple[str, str] | None: ...

    def record(self, model_name: str, version: int, digest: str, source: str, now_ms: int) -> bool: ...


class _Log(Protocol):
    def write(self, line: str) -> None: ...


class ModelCheck:
    """Compares a version's files with its recorded digest (blocking: run it in a thread)."""

    def __init__(
        self, digests: DigestStore, *, embedded: bool, clock: Callable[[], float] = time.time
    ) -> None:
        self._digests = digests
        self._embedded = embedded
        self._clock = clock

    def verify(self, name: str, version: str, folder: Path, log: _Log) -> None:
        """Raise :class:`InvalidState` when ``folder`` is not what was registered as ``name`` ``version``."""
        if not self._embedded or not version.isdecimal():
            return
        number = int(version)
        found = digest_of(folder)
        recorded = self._digests.get(name, number)
        if recorded is None:
            self._digests.record(name, number, found, "first-load", int(self._clock() * 1000))
            recorded = self._digests.get(name, number)
            log.write(
                f"Model files digest {found} recorded at first load (none was recorded at registration)."
            )
        if recorded is not None and recorded[0] != found:
            message = (
                f"model '{name}' version {version}: artifacts changed since registration "
                f"(digest {found} != recorded {recorded[0]}); refusing to load"
            )
            log.write(f"FAILED: {message}")
            raise InvalidState(message)
        log.write(f"Model files match the digest recorded at registration ({found}).")
