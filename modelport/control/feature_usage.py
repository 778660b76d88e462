"""Which features each served entity of an endpoint looks up, and what stops a lookup now.

Answers ``GET /api/2.0/feature-engineering/serving-endpoints/{name}/features`` (CAN_VIEW on the
endpoint), which the endpoint page of the web UI shows::

    {"served_entities": [{"name", "entity_name", "entity_version",
                          "features": [{"output_name", "table_name", "feature_name", "lookup_key",
                                        "timestamp_lookup_key", "data_type", "default_value"}],
                          "functions": [{"output_name", "udf_name", "input_bindings", "data_type"}],
                          "problems": [{"table_name", "feature_name"?, "message"}]}]}

Where the spec comes from: a registered model whose MLmodel names the feature-aware loader
(``python_function.loader_module: modelport.features.mlflow_model``) carries it in
``data/feature_store/feature_spec.yaml``; an entity that names a feature spec (a feature-spec
endpoint) holds the spec itself under ``"feature_spec"``. Other entities (external, foundation,
plain custom models) look nothing up: ``features: []``.

Problems are what the lookups would answer now with a 503: a table that is not published to the
online store (or no longer exists), a feature column missing from the published copy, a copy
published with other primary keys than the spec's lookup keys. ``table_name`` is null for a
problem that is not about one table (the model's files could not be read).

A model version's files never change, so its parsed spec (or the fact that it has none) is
cached per version; the online state is read on every call.
"""

from __future__ import annotations

import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelport.entities.foundation.catalog import system_model
from modelport.errors import ModelportError, ResourceDoesNotExist, TemporarilyUnavailable
from modelport.spec.endpoint import FEATURE_SPEC_KEY
from modelport.spec.identity import Caller
from modelport.tables.feature_spec import FEATURE_SPEC_FILE, FeatureColumn, FeatureSpec, FunctionColumn
from modelport.tables.features import FeatureTables

if TYPE_CHECKING:
    from modelport.control.endpoints import EndpointService
    from modelport.entities.registry import ModelRegistry
    from modelport.entities.registry_handle import RegistryHandle

__all__ = ["FEATURE_LOADER", "FeatureUsage", "OnlineState"]

#: The ``loader_module`` of a model that looks its features up (``fe.log_model`` writes it).
FEATURE_LOADER = "modelport.features.mlflow_model"
#: Where the spec is inside such a model when its MLmodel names no ``data`` folder.
DEFAULT_DATA = "data/feature_store"
#: Model versions whose spec (or lack of one) is kept in memory.
CACHED_VERSIONS = 512

#: The online state of a feature table (``OnlineWriter.state``): ``None`` when not published.
OnlineState = Callable[[str], Mapping[str, Any] | None]
#: The online states read for one answer, by table.
_States = dict[str, Mapping[str, Any] | None]


def _problem(table: str | None, message: str, feature: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"table_name": table, "message": message}
    if feature is not None:
        out["feature_name"] = feature
    return out


def _looks_up(entity: Mapping[str, Any]) -> bool:
    """Whether the entity may be a registered custom model (which may carry a feature spec)."""
    return (
        "external_model" not in entity
        and "foundation_model" not in entity
        and system_model(str(entity.get("entity_name", ""))) is None
    )


class FeatureUsage:
    """The features of an endpoint's served entities, with what the online store says of them.

    Blocking (registry and store calls): call from a thread. Safe from several threads.
    """

    def __init__(
        self,
        endpoints: EndpointService,
        registry: RegistryHandle,
        tables: FeatureTables,
        online_state: OnlineState,
    ) -> None:
        """``tables``: the feature tables (asked whether an unpublished one exists);
        ``online_state``: the online store's state of a table."""
        self._endpoints = endpoints
        self._registry = registry
        self._tables = tables
        self._online_state = online_state
        self._specs: OrderedDict[tuple[str, str], FeatureSpec | None] = OrderedDict()
        self._lock = threading.Lock()

    def of_endpoint(self, caller: Caller, name: str) -> dict[str, Any]:
        """The answer of ``GET .../serving-endpoints/{name}/features`` (CAN_VIEW on the endpoint):
        the entities of the serving config (the pending one while nothing serves yet)."""
        _, config = self._endpoints.snapshot(caller, name)
        entities = config.body["served_entities"] if config is not None else []
        states: _States = {}
        return {"served_entities": [self._entity(e, states) for e in entities]}

    # ---- one entity ---------------------------------------------------------------------------
    def _entity(self, entity: Mapping[str, Any], states: _States) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": entity.get("name"),
            "entity_name": entity.get("entity_name"),
            "entity_version": entity.get("entity_version"),
            "features": [],
            "functions": [],
            "problems": [],
        }
        try:
            spec = self._spec_of(entity)
        except (ModelportError, OSError) as exc:  # OSError: the files could not be fetched
            reason = exc.message if isinstance(exc, ModelportError) else str(exc)
            message = f"The model's feature spec could not be read: {reason}"
            out["problems"].append(_problem(None, message))
            return out
        if spec is None:
            return out
        out["features"] = [_feature(f) for f in _looked_up(spec)]
        out["functions"] = [_function(f) for f in spec.columns if isinstance(f, FunctionColumn)]
        out["problems"] = self._problems(spec, states)
        return out

    def _spec_of(self, entity: Mapping[str, Any]) -> FeatureSpec | None:
        embedded = entity.get(FEATURE_SPEC_KEY)
        if isinstance(embedded, Mapping):
            return FeatureSpec.from_dict(dict(embedded))
        if not _looks_up(entity) or not entity.get("entity_name"):
            return None
        return self._model_spec(str(entity["entity_name"]), str(entity.get("entity_version", "")))

    def _model_spec(self, entity_name: str, entity_version: str) -> FeatureSpec | None:
        """The spec a registered model version carries (None: it looks nothing up), cached per
        version; an alias (``@champion``) is resolved on every call, its version then cached."""
        if not entity_version.startswith("@"):
            found = self._cached((entity_name, entity_version))
            if found is not _MISSING:
                return found  # type: ignore[return-value]
        if not self._registry.loaded:
            # never wait for it here: the endpoint page asks again in a few seconds
            raise TemporarilyUnavailable("the model registry is still starting.")
        registry = self._registry.get()
        resolved = registry.resolve(entity_name, entity_version)
        key = (resolved.ref.name, resolved.ref.version)
        found = self._cached(key)
        if found is _MISSING:
            found = _read_spec(registry, resolved.artifact_uri, resolved.flavors)
            self._remember(key, found)
        if not entity_version.startswith("@"):
            self._remember((entity_name, entity_version), found)  # type: ignore[arg-type]
        return found  # type: ignore[return-value]

    def _cached(self, key: tuple[str, str]) -> object:
        with self._lock:
            if key not in self._specs:
                return _MISSING
            self._specs.move_to_end(key)
            return self._specs[key]

    def _remember(self, key: tuple[str, str], spec: FeatureSpec | None) -> None:
        with self._lock:
            self._specs[key] = spec
            self._specs.move_to_end(key)
            while len(self._specs) > CACHED_VERSIONS:
                self._specs.popitem(last=False)

    # ---- problems -----------------------------------------------------------------------------
    def _problems(self, spec: FeatureSpec, states: _States) -> list[dict[str, Any]]:
        problems: list[dict[str, Any]] = []
        by_table: dict[str, list[FeatureColumn]] = {}
        for feature in _looked_up(spec):
            by_table.setdefault(feature.table_name, []).append(feature)
        for table, features in by_table.items():
            if table not in states:
                states[table] = self._online_state(table)
            state = states[table]
            if state is None:
                if self._exists(table):
                    message = (
                        f"Feature table '{table}' is not published to the online store: its lookups "
                        "fail until it is published."
                    )
                else:
                    message = (
                        f"Feature table '{table}' does not exist: its lookups fail until it is created "
                        "and published again."
                    )
                problems.append(_problem(table, message))
                continue
            columns = set(state.get("columns") or [])
            primary_keys = list(state.get("primary_keys") or [])
            keys = {len(f.lookup_key) for f in features}
            for count in sorted(keys - {len(primary_keys)}):
                looked = next(f for f in features if len(f.lookup_key) == count)
                problems.append(
                    _problem(
                        table,
                        f"Feature table '{table}' is published with primary key "
                        f"({', '.join(primary_keys)}), but the model looks it up by "
                        f"({', '.join(looked.lookup_key)}).",
                    )
                )
            for feature in features:
                if feature.feature_name not in columns:
                    problems.append(
                        _problem(
                            table,
                            f"Feature table '{table}' published to the online store has no feature "
                            f"'{feature.feature_name}'.",
                            feature.feature_name,
                        )
                    )
        return problems

    def _exists(self, table: str) -> bool:
        try:
            self._tables.get(table)
        except ResourceDoesNotExist:
            return False
        return True


_MISSING = object()


def _looked_up(spec: FeatureSpec) -> list[FeatureColumn]:
    """The feature columns a lookup reads: the included ones and those a function takes."""
    bound = {column for f in spec.columns if isinstance(f, FunctionColumn) for _, column in f.input_bindings}
    return [f for f in spec.columns if isinstance(f, FeatureColumn) and (f.include or f.output_name in bound)]


def _feature(feature: FeatureColumn) -> dict[str, Any]:
    return {
        "output_name": feature.output_name,
        "table_name": feature.table_name,
        "feature_name": feature.feature_name,
        "lookup_key": list(feature.lookup_key),
        "timestamp_lookup_key": list(feature.timestamp_lookup_key),
        "data_type": feature.data_type,
        "default_value": feature.default_value,
    }


def _function(function: FunctionColumn) -> dict[str, Any]:
    return {
        "output_name": function.output_name,
        "udf_name": function.udf_name,
        "input_bindings": dict(function.input_bindings),
        "data_type": function.data_type,
    }


def _read_spec(registry: ModelRegistry, artifact_uri: str, flavors: Mapping[str, Any]) -> FeatureSpec | None:
    """The spec in a model's files, or None when its MLmodel does not name the feature loader."""
    pyfunc = flavors.get("python_function") or {}
    if pyfunc.get("loader_module") != FEATURE_LOADER:
        return None
    data = str(pyfunc.get("data") or DEFAULT_DATA).strip("/")
    local = registry.local_path(artifact_uri)
    if local is not None:
        path = local / data / FEATURE_SPEC_FILE
        if not path.is_file():
            raise ResourceDoesNotExist(f"The model has no {data}/{FEATURE_SPEC_FILE}.")
        return FeatureSpec.from_yaml(path.read_text(encoding="utf-8"))
    with tempfile.TemporaryDirectory(prefix="modelport-feature-spec-") as tmp:
        got = registry.download(f"{artifact_uri.rstrip('/')}/{data}/{FEATURE_SPEC_FILE}", Path(tmp))
        return FeatureSpec.from_yaml(got.read_text(encoding="utf-8"))
