"""Feature functions kept under the tables root, one JSON file each, beside the feature tables and
feature specs that use them.

Databricks keeps a feature function in Unity Catalog (a Python UDF), a catalog object like a
feature table; modelport keeps it where the tables live::

    <root>/feature-functions/<catalog>.<schema>.<function>.json

``feature-functions`` is not a valid name part (it holds a dash), so table discovery
(:func:`modelport.tables.query.discover_tables`) never takes it for a catalog, and it holds files
only, so it is never walked. Every server sharing the tables root sees the same functions, as it
sees the same tables. Nothing is kept in the metadata store: a model logged with a function
carries its definition (``input_functions`` of its feature spec), so a function's file is read
when a training set or a feature spec is built, never when a model is served.

A file holds ``FunctionDef.to_dict()`` plus ``"owner"`` and ``"created_ms"``.

Guarantees: a reader sees a whole file or none (a local file is written aside, then linked into
place, which also makes creation exclusive; an object-store PUT is atomic, but its existence check
and write are two calls). Blocking (file I/O): call it from a thread.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pyarrow.fs as pafs

from modelport.errors import InvalidParameterValue, ResourceAlreadyExists, ResourceDoesNotExist
from modelport.tables.feature_functions import FunctionDef
from modelport.tables.names import is_uri

__all__ = ["FUNCTIONS_FOLDER", "FunctionStore", "StoredFunction"]

#: The folder of the tables root that holds the functions (not a valid name part: never a catalog).
FUNCTIONS_FOLDER = "feature-functions"
_SUFFIX = ".json"


@dataclass(frozen=True)
class StoredFunction:
    """One stored function: its definition, who created it and when (epoch milliseconds)."""

    definition: FunctionDef
    owner: str
    created_ms: int

    def to_json(self) -> dict[str, Any]:
        return {**self.definition.to_dict(), "owner": self.owner, "created_ms": self.created_ms}

    @classmethod
    def from_json(cls, body: Any) -> StoredFunction:
        if not isinstance(body, dict):
            raise InvalidParameterValue("not an object")
        return cls(
            definition=FunctionDef.from_dict(body),
            owner=str(body.get("owner") or ""),
            created_ms=int(body.get("created_ms") or 0),
        )


class FunctionStore:
    """The feature functions under one tables root (a local folder or a URI pyarrow reads)."""

    def __init__(self, root: str) -> None:
        if is_uri(root):
            self._fs, base = pafs.FileSystem.from_uri(root)
            self._local = False
        else:
            self._fs, base = pafs.LocalFileSystem(), str(Path(root).expanduser().resolve())
            self._local = True
        self.folder = f"{base.rstrip('/')}/{FUNCTIONS_FOLDER}"

    def _path(self, name: str) -> str:
        return f"{self.folder}/{name}{_SUFFIX}"

    def create(self, stored: StoredFunction) -> None:
        """Store a new function; :class:`ResourceAlreadyExists` when one has its name."""
        name = stored.definition.name
        body = orjson.dumps(stored.to_json(), option=orjson.OPT_INDENT_2)
        path = self._path(name)
        taken = ResourceAlreadyExists(f"Feature function '{name}' already exists.")
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

    def get(self, name: str) -> StoredFunction:
        """The function ``name`` (canonical); :class:`ResourceDoesNotExist` when there is none or
        its file cannot be read as one."""
        path = self._path(name)
        try:
            with self._fs.open_input_stream(path) as stream:
                raw = stream.read()
        except FileNotFoundError:
            raise ResourceDoesNotExist(f"Feature function '{name}' does not exist.") from None
        try:
            return StoredFunction.from_json(orjson.loads(raw))
        except (orjson.JSONDecodeError, InvalidParameterValue, ValueError, TypeError):
            raise ResourceDoesNotExist(
                f"Feature function '{name}' cannot be read (its file {path} is damaged)."
            ) from None

    def list(self) -> list[StoredFunction]:
        """Every readable function, by name (a damaged file is left out)."""
        selector = pafs.FileSelector(self.folder, allow_not_found=True)
        out = []
        for info in sorted(self._fs.get_file_info(selector), key=lambda i: i.base_name):
            base = info.base_name
            if info.type != pafs.FileType.File or base.startswith(".") or not base.endswith(_SUFFIX):
                continue
            with contextlib.suppress(ResourceDoesNotExist):
                out.append(self.get(base.removesuffix(_SUFFIX)))
        return out

    def delete(self, name: str) -> None:
        """Remove the function ``name``; :class:`ResourceDoesNotExist` when there is none."""
        try:
            self._fs.delete_file(self._path(name))
        except FileNotFoundError:
            raise ResourceDoesNotExist(f"Feature function '{name}' does not exist.") from None
