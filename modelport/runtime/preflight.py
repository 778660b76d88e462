"""Checks run on every served entity before anything starts.

Resolves each registered model version (aliases included), reads its MLmodel file and
checks that MLflow's pyfunc loader can serve it; entities the gateway answers itself
(external models, feature specs) are accepted as validated. Everything it does goes to the
entity's build log.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from modelport.errors import ModelportError
from modelport.runtime.base import DeploymentFailed
from modelport.runtime.logs import BuildLog
from modelport.spec.endpoint import FEATURE_SPEC_KEY, runs_in_gateway

if TYPE_CHECKING:
    from modelport.entities.registry import ModelRegistry

__all__ = ["check_entity", "check_external", "check_in_gateway"]

PYFUNC = "python_function"


def check_external(entity: dict[str, Any], log: BuildLog) -> dict[str, Any]:
    """An external model needs no registry: its config was validated when it was stored."""
    ext = entity["external_model"]
    log.write(
        f"External model '{ext['name']}' at provider '{ext['provider']}' for task {ext['task']}: "
        "configuration validated."
    )
    return entity


def check_in_gateway(entity: dict[str, Any], log: BuildLog) -> dict[str, Any]:
    """An entity the gateway answers (:func:`~modelport.spec.endpoint.runs_in_gateway`): no
    replicas, nothing to resolve; its config was checked when it was stored."""
    if "external_model" in entity:
        return check_external(entity, log)
    spec = entity[FEATURE_SPEC_KEY]
    columns = [next(iter(c)) for c in spec.get("input_columns", [])]
    tables = [next(iter(t)) for t in spec.get("input_tables", [])]
    read = ", ".join(tables) or "no table"
    log.write(
        f"Feature spec '{entity['entity_name']}' ({len(columns)} columns from {read}): answered by "
        "the gateway from the online store, no replicas."
    )
    return entity


def check_entity(registry: ModelRegistry, entity: dict[str, Any], log: BuildLog) -> dict[str, Any]:
    """Resolve and check one entity (blocking); return it as it will be deployed."""
    name = entity["name"]
    if runs_in_gateway(entity):
        return check_in_gateway(entity, log)
    wanted = f"{entity['entity_name']} version {entity['entity_version']}"
    log.write(f"Resolving {wanted} in the model registry.")
    try:
        resolved = registry.resolve(entity["entity_name"], str(entity["entity_version"]))
    except ModelportError as exc:
        log.write(f"FAILED: {exc.message}")
        raise DeploymentFailed(name, exc.message) from None
    ref = resolved.ref
    if ref.alias:
        log.write(f"Alias @{ref.alias} of '{ref.name}' points at version {ref.version}.")
    log.write(f"Model files: {resolved.artifact_uri}")
    flavors = resolved.flavors
    log.write(f"Flavors: {', '.join(sorted(flavors)) or 'none'}")
    if PYFUNC not in flavors:
        message = (
            f"Model '{ref.name}' version {ref.version} has no python_function flavor "
            f"(flavors: {', '.join(sorted(flavors)) or 'none'}); modelport serves models through "
            "MLflow's pyfunc loader. Log it with an MLflow flavor that includes pyfunc."
        )
        log.write(f"FAILED: {message}")
        raise DeploymentFailed(name, message)
    py = flavors[PYFUNC].get("python_version") or "unknown"
    log.write(f"pyfunc loader module {flavors[PYFUNC].get('loader_module', '?')}, logged with Python {py}.")
    log.write("Checks passed.")
    return {**entity, "entity_name": entity["entity_name"], "entity_version": ref.version}
