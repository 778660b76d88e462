"""Feature specs kept under the tables root, one JSON file each, beside the feature tables they read.

A feature spec served by endpoints (Databricks keeps it in Unity Catalog, as a function of type
``FEATURE_SPEC``) is a catalog object like a feature table, so it lives where the tables live::

    <root>/feature-specs/<catalog>.<schema>.<name>.json

``feature-specs`` is not a valid name part (it holds a dash), so table discovery
(:func:`modelport.tables.query.discover_tables`) never takes it for a catalog, and the folder
holds files only, so it is never walked. Every server that shares the tables root (a folder on a
shared disk, an object-store prefix) sees the same specs, as it sees the same feature tables;
nothing is kept in the metadata store, whose endpoints copy the spec into their configs (a config
version keeps the spec it was made with, whatever happens to the file later).

A file holds ``{"name", "owner", "created_ms", "feature_spec": <feature_spec.yaml as JSON>}``.

Guarantees: a reader sees a whole file or none (a local file is written aside, then linked into
place; an object-store PUT is atomic). On a local root, two servers creating the same name
concurrently get one success and one :class:`~modelport.errors.ResourceAlreadyExists`; on an
object store the check and the write are two calls, so such a race keeps the later spec.

Blocking (file I/O): call it from a thread.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from modelport.errors import InvalidParameterValue
from modelport.tables.json_folder import JsonFolder, readable
from modelport.tables.names import split_name

__all__ = ["SPECS_FOLDER", "FeatureSpecStore", "StoredSpec", "spec_name"]

#: The folder of the tables root that holds the specs (not a valid name part: never a catalog).
SPECS_FOLDER = "feature-specs"


def spec_name(name: Any) -> str:
    """A feature spec's ``catalog.schema.name``, checked and lower-cased."""
    if not isinstance(name, str) or not name:
        raise InvalidParameterValue("A feature spec's name must be a string catalog.schema.name.")
    try:
        return ".".join(split_name(name))
    except InvalidParameterValue:
        raise InvalidParameterValue(
            f"Feature spec name {name!r} must be catalog.schema.name (letters, digits and underscores "
            "in each part)."
        ) from None


@dataclass(frozen=True)
class StoredSpec:
    """One stored feature spec: its name, who owns it, when it was made, and the spec document."""

    name: str
    owner: str
    created_ms: int
    #: The ``feature_spec.yaml`` document (``FeatureSpec.to_dict()``).
    document: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "owner": self.owner,
            "created_ms": self.created_ms,
            "feature_spec": self.document,
        }

    @classmethod
    def from_json(cls, body: Any, where: str) -> StoredSpec:
        if not isinstance(body, dict) or not isinstance(body.get("feature_spec"), dict):
            raise ValueError(f"{where} is not a stored feature spec")
        return cls(
            name=str(body["name"]),
            owner=str(body.get("owner") or ""),
            created_ms=int(body.get("created_ms") or 0),
            document=dict(body["feature_spec"]),
        )


class FeatureSpecStore:
    """The feature specs under one tables root (a local folder or a URI pyarrow reads)."""

    def __init__(self, root: str) -> None:
        self._files = JsonFolder(root, SPECS_FOLDER, "Feature spec")
        self.folder = self._files.folder

    def create(self, spec: StoredSpec) -> None:
        """Store a new spec; :class:`ResourceAlreadyExists` when one has its name."""
        self._files.create(spec.name, spec.to_json())

    def get(self, name: str) -> StoredSpec:
        """The spec ``name`` (canonical); :class:`ResourceDoesNotExist` when there is none."""
        body = self._files.read(name)
        try:
            return StoredSpec.from_json(body, self._files.path(name))
        except (ValueError, KeyError, TypeError):
            raise self._files.damaged(name) from None

    def list(self) -> list[StoredSpec]:
        """Every readable spec, by name (a damaged file is left out)."""
        return readable(self._files, self.get)

    def delete(self, name: str) -> None:
        """Remove the spec ``name``; :class:`ResourceDoesNotExist` when there is none."""
        self._files.delete(name)
