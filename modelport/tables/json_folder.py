"""Catalog objects kept as JSON files in a folder of the tables root (feature specs, feature
functions): one file per object, ``<root>/<folder>/<catalog>.<schema>.<name>.json``.

The folder's name holds a dash, which no name part may, so table discovery
(:func:`modelport.tables.query.discover_tables`) never takes it for a catalog; it holds files only,
so it is never walked. Every server that shares the tables root (a folder on a shared disk, an
object-store prefix) sees the same objects, as it sees the same tables.

Guarantees: a reader sees a whole file or none (a local file is written aside, then linked into
place; an object-store PUT is atomic). On a local root, two servers creating the same name
concurrently get one success and one :class:`~modelport.errors.ResourceAlreadyExists`; on an
object store the check and the write are two calls, so such a race keeps the later object.

Blocking (file I/O): call it from a thread.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path
from typing import Any

import orjson
import pyarrow.fs as pafs

from modelport.errors import ResourceAlreadyExists, ResourceDoesNotExist
from modelport.tables.names import is_uri

__all__ = ["JsonFolder"]

_SUFFIX = ".json"


class JsonFolder:
    """The JSON objects of one folder of a tables root; ``what`` names them in errors
    ("Feature spec")."""

    def __init__(self, root: str, folder: str, what: str) -> None:
        if is_uri(root):
            self._fs, base = pafs.FileSystem.from_uri(root)
            self._local = False
        else:
            self._fs, base = pafs.LocalFileSystem(), str(Path(root).expanduser().resolve())
            self._local = True
        self.folder = f"{base.rstrip('/')}/{folder}"
        self._what = what

    def path(self, name: str) -> str:
        return f"{self.folder}/{name}{_SUFFIX}"

    def create(self, name: str, doc: dict[str, Any]) -> None:
        """Store a new object; :class:`ResourceAlreadyExists` when one has its name."""
        body = orjson.dumps(doc, option=orjson.OPT_INDENT_2)
        path = self.path(name)
        taken = ResourceAlreadyExists(f"{self._what} '{name}' already exists.")
        if self._local:
            os.makedirs(self.folder, exist_ok=True)
            aside = f"{self.folder}/.{name}.{secrets.token_hex(6)}.tmp"
            with open(aside, "wb") as out:
                out.write(body)
                out.flush()
                os.fsync(out.fileno())
            try:
                os.link(aside, path)  # fails when the name is taken: creation is exclusive
            except FileExistsError:
                raise taken from None
            finally:
                os.unlink(aside)
            return
        if self._fs.get_file_info(path).type != pafs.FileType.NotFound:
            raise taken
        self._fs.create_dir(self.folder, recursive=True)
        with self._fs.open_output_stream(path) as out:
            out.write(body)

    def read(self, name: str) -> Any:
        """The parsed JSON of object ``name``; :class:`ResourceDoesNotExist` when there is none
        or its file is not JSON."""
        path = self.path(name)
        try:
            with self._fs.open_input_stream(path) as stream:
                raw = stream.read()
        except FileNotFoundError:
            raise ResourceDoesNotExist(f"{self._what} '{name}' does not exist.") from None
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise self.damaged(name) from None

    def damaged(self, name: str) -> ResourceDoesNotExist:
        return ResourceDoesNotExist(
            f"{self._what} '{name}' cannot be read (its file {self.path(name)} is damaged)."
        )

    def names(self) -> list[str]:
        """The names of the stored objects, sorted."""
        selector = pafs.FileSelector(self.folder, allow_not_found=True)
        out = []
        for info in sorted(self._fs.get_file_info(selector), key=lambda i: i.base_name):
            base = info.base_name
            if info.type == pafs.FileType.File and not base.startswith(".") and base.endswith(_SUFFIX):
                out.append(base.removesuffix(_SUFFIX))
        return out

    def delete(self, name: str) -> None:
        """Remove object ``name``; :class:`ResourceDoesNotExist` when there is none."""
        try:
            self._fs.delete_file(self.path(name))
        except FileNotFoundError:
            raise ResourceDoesNotExist(f"{self._what} '{name}' does not exist.") from None


def readable(folder: JsonFolder, get: Any) -> list[Any]:
    """``get(name)`` of every stored object, by name, leaving out those that cannot be read."""
    out = []
    for name in folder.names():
        with contextlib.suppress(ResourceDoesNotExist):
            out.append(get(name))
    return out
