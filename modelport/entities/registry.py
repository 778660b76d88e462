"""The MLflow model registry as the source of custom-model entities.

Turns what a user writes in ``entity_name`` / ``entity_version`` into a concrete
registered model version: names may be ``name``, ``models:/name`` or
``catalog.schema.name``; versions a number or an alias written ``@alias``. MLflow
exceptions are translated here, once, into modelport errors that name what is missing.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import yaml
from mlflow.exceptions import MlflowException, RestException
from mlflow.tracking import MlflowClient

from modelport.errors import ModelportError, ResourceDoesNotExist, TemporarilyUnavailable

__all__ = ["ModelRegistry", "ModelVersionRef", "ResolvedModel"]

MAX_LISTED = 10


@dataclass(frozen=True)
class ModelVersionRef:
    """A registered model version as named by the user and as found in the registry."""

    name: str
    version: str
    alias: str | None = None


@dataclass(frozen=True)
class ResolvedModel:
    """A model version ready to load: where its files are and what its MLmodel says."""

    ref: ModelVersionRef
    artifact_uri: str
    mlmodel: dict[str, Any]

    @property
    def flavors(self) -> dict[str, Any]:
        return dict(self.mlmodel.get("flavors") or {})


def _not_found(exc: MlflowException) -> bool:
    return exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND") or "not found" in str(exc).lower()


class ModelRegistry:
    """Looks up registered models. Blocking calls: run them off the event loop."""

    def __init__(self, tracking_uri: str, artifact_destination: Path | None = None) -> None:
        self.tracking_uri = tracking_uri
        self._artifacts = artifact_destination
        self._client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)

    def _call(self, what: str, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except RestException as exc:
            if _not_found(exc):
                raise
            raise TemporarilyUnavailable(f"The model registry failed while {what}: {exc.message}") from None
        except MlflowException:
            raise
        except Exception as exc:  # connection errors from a remote registry
            raise TemporarilyUnavailable(
                f"The model registry at {self.tracking_uri} could not be reached while {what}: {exc}"
            ) from None

    def _registered_name(self, entity_name: str) -> str:
        raw = entity_name.removeprefix("models:/").strip("/")
        candidates = [raw]
        parts = raw.split(".")
        if len(parts) == 3 and all(parts):
            candidates.append(parts[2])
        for candidate in candidates:
            try:
                self._call(f"looking up model '{candidate}'", self._client.get_registered_model, candidate)
                return candidate
            except MlflowException as exc:
                if not _not_found(exc):
                    raise ModelportError(f"Model registry error: {exc.message}") from None
        raise ResourceDoesNotExist(
            f"Registered model '{entity_name}' does not exist in the model registry. Log it with "
            f"mlflow.<flavor>.log_model(..., registered_model_name='{raw}') first."
        )

    def _versions(self, name: str) -> list[str]:
        found = self._client.search_model_versions(f"name='{name}'", max_results=1000)
        return sorted((str(v.version) for v in found), key=int)

    def lookup(self, entity_name: str, entity_version: str) -> ModelVersionRef:
        """Check that the model and version (or alias) exist; raise ResourceDoesNotExist if not."""
        name = self._registered_name(entity_name)
        if entity_version.startswith("@"):
            alias = entity_version[1:]
            try:
                mv = self._call(
                    f"resolving alias '@{alias}'", self._client.get_model_version_by_alias, name, alias
                )
            except MlflowException as exc:
                if not _not_found(exc):
                    raise ModelportError(f"Model registry error: {exc.message}") from None
                aliases = sorted(self._client.get_registered_model(name).aliases or {})
                known = ", ".join("@" + a for a in aliases) or "none"
                raise ResourceDoesNotExist(
                    f"Registered model '{name}' has no alias '@{alias}' (aliases: {known})."
                ) from None
            return ModelVersionRef(name=name, version=str(mv.version), alias=alias)
        try:
            self._call(
                f"looking up version {entity_version} of '{name}'",
                self._client.get_model_version,
                name,
                entity_version,
            )
        except MlflowException as exc:
            if not _not_found(exc):
                raise ModelportError(f"Model registry error: {exc.message}") from None
            versions = self._versions(name)
            shown = ", ".join(versions[-MAX_LISTED:]) or "none"
            raise ResourceDoesNotExist(
                f"Version {entity_version} of registered model '{name}' does not exist (versions: {shown})."
            ) from None
        return ModelVersionRef(name=name, version=str(entity_version))

    def resolve(self, entity_name: str, entity_version: str) -> ResolvedModel:
        """Look the version up and read its MLmodel file."""
        ref = self.lookup(entity_name, entity_version)
        uri = self._call(
            "finding the model files", self._client.get_model_version_download_uri, ref.name, ref.version
        )
        uri = self._underlying_uri(str(uri))
        return ResolvedModel(ref=ref, artifact_uri=uri, mlmodel=self._read_mlmodel(uri))

    def storage_uri(self, name: str, version: str) -> str:
        """Where a registered version's files are stored (blocking), as a storage URI."""
        uri = self._call(
            f"finding the files of '{name}' version {version}",
            self._client.get_model_version_download_uri,
            name,
            version,
        )
        return self._underlying_uri(str(uri))

    def all_versions(self) -> list[tuple[str, str, str]]:
        """Every registered version that is not deleted: (name, version, status), blocking."""
        found: list[tuple[str, str, str]] = []
        token: str | None = None
        while True:
            page = self._call(
                "listing model versions", self._client.search_model_versions, None, 1000, None, token
            )
            found.extend((str(v.name), str(v.version), str(v.status)) for v in page)
            token = page.token
            if not token:
                return found

    def run_artifact_uri(self, run_id: str, path: str) -> str:
        """The storage URI of ``path`` among a run's artifacts (blocking)."""
        return self._underlying_uri(f"runs:/{run_id}/{path}")

    def _underlying_uri(self, uri: str) -> str:
        """Turn ``runs:/<run>/<path>`` and ``models:/<logged-model-id>`` into storage URIs."""
        parsed = urlparse(uri)
        if parsed.scheme == "runs":
            run_id, _, path = parsed.path.lstrip("/").partition("/")
            run = self._call(f"looking up run {run_id}", self._client.get_run, run_id)
            return f"{run.info.artifact_uri.rstrip('/')}/{path}".rstrip("/")
        if parsed.scheme == "models" and parsed.path.lstrip("/").startswith("m-"):
            model_id = parsed.path.lstrip("/").split("/")[0]
            logged = self._call(
                f"looking up logged model {model_id}", self._client.get_logged_model, model_id
            )
            return str(logged.artifact_location)
        return uri

    def local_path(self, artifact_uri: str) -> Path | None:
        """The local folder behind an artifact URI, when it is on this machine."""
        parsed = urlparse(artifact_uri)
        if parsed.scheme == "mlflow-artifacts" and self._artifacts is not None:
            return self._artifacts / parsed.path.lstrip("/")
        if parsed.scheme in ("", "file"):
            return Path(parsed.path)
        return None

    def download(self, artifact_uri: str, target: Path) -> Path:
        """Copy a model's files from a remote artifact store into ``target`` (blocking)."""
        from mlflow.artifacts import download_artifacts

        target.mkdir(parents=True, exist_ok=True)
        got = download_artifacts(
            artifact_uri=artifact_uri, dst_path=str(target), tracking_uri=self.tracking_uri
        )
        return Path(got)

    def _read_mlmodel(self, artifact_uri: str) -> dict[str, Any]:
        local = self.local_path(artifact_uri)
        if local is not None:
            path = local / "MLmodel"
            if not path.exists():
                raise ResourceDoesNotExist(f"No MLmodel file at {artifact_uri}: this is not an MLflow model.")
            return dict(yaml.safe_load(path.read_text()) or {})
        from mlflow.artifacts import download_artifacts

        with tempfile.TemporaryDirectory() as tmp:
            try:
                got = download_artifacts(
                    artifact_uri=artifact_uri.rstrip("/") + "/MLmodel",
                    dst_path=tmp,
                    tracking_uri=self.tracking_uri,
                )
            except MlflowException as exc:
                raise ResourceDoesNotExist(f"No MLmodel file at {artifact_uri}: {exc.message}") from None
            return dict(yaml.safe_load(Path(got).read_text()) or {})
