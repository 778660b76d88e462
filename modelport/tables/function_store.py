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

from dataclasses import dataclass
from typing import Any

from modelport.errors import InvalidParameterValue
from modelport.tables.feature_functions import FunctionDef
from modelport.tables.json_folder import JsonFolder, readable

__all__ = ["FUNCTIONS_FOLDER", "FunctionStore", "StoredFunction"]

#: The folder of the tables root that holds the functions (not a valid name part: never a catalog).
FUNCTIONS_FOLDER = "feature-functions"


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
        self._files = JsonFolder(root, FUNCTIONS_FOLDER, "Feature function")
        self.folder = self._files.folder

    def create(self, stored: StoredFunction) -> None:
        """Store a new function; :class:`ResourceAlreadyExists` when one has its name."""
        self._files.create(stored.definition.name, stored.to_json())

    def get(self, name: str) -> StoredFunction:
        """The function ``name`` (canonical); :class:`ResourceDoesNotExist` when there is none or
        its file cannot be read as one."""
        body = self._files.read(name)
        try:
            return StoredFunction.from_json(body)
        except (InvalidParameterValue, ValueError, TypeError):
            raise self._files.damaged(name) from None

    def list(self) -> list[StoredFunction]:
        """Every readable function, by name (a damaged file is left out)."""
        return readable(self._files, self.get)

    def delete(self, name: str) -> None:
        """Remove the function ``name``; :class:`ResourceDoesNotExist` when there is none."""
        self._files.delete(name)
