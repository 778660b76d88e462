"""The content digest of a model version's files: what registration recorded and a replica checks.

``digest_of(folder)`` is a sha256 over the folder's files in sorted order of their relative
paths (``/``-separated, UTF-8), each contributing ``path NUL sha256(file) LF``; the result is
written ``sha256:<hex>``. Renaming, adding, removing or changing any file changes it; file
times, permissions and empty folders do not. A symbolic link contributes its target's text
(``path NUL link:target LF``), so re-pointing a link changes the digest without following it
out of the folder.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

__all__ = ["DIGEST_ALGORITHM", "digest_of"]

DIGEST_ALGORITHM = "sha256"


def _file_digest(path: Path) -> bytes:
    with path.open("rb") as f:
        return hashlib.file_digest(f, DIGEST_ALGORITHM).hexdigest().encode("ascii")


def _entries(folder: Path) -> list[tuple[str, Path]]:
    found: list[tuple[str, Path]] = []
    for root, dirs, files in os.walk(folder, followlinks=False):
        base = Path(root)
        # A link to a folder is listed in ``dirs`` and not walked: record it as a link.
        for name in [*files, *(d for d in dirs if (base / d).is_symlink())]:
            path = base / name
            found.append((path.relative_to(folder).as_posix(), path))
    return sorted(found)


def digest_of(folder: Path) -> str:
    """The digest of every file under ``folder`` (blocking: run it off the event loop).

    Raises ``FileNotFoundError`` when ``folder`` is not a folder.
    """
    if not folder.is_dir():
        raise FileNotFoundError(f"No model folder at {folder}")
    outer = hashlib.new(DIGEST_ALGORITHM)
    for rel, path in _entries(folder):
        if path.is_symlink():
            content = b"link:" + os.readlink(path).encode("utf-8", "surrogateescape")
        else:
            content = _file_digest(path)
        outer.update(rel.encode("utf-8", "surrogateescape") + b"\0" + content + b"\n")
    return f"{DIGEST_ALGORITHM}:{outer.hexdigest()}"
