"""A deployment backend that checks entities without running them.

It resolves each registered model version (aliases included), reads its MLmodel file
and checks that MLflow's pyfunc loader can serve it; external models are accepted as
validated. Everything it does goes to the entity's build log. The replica runtime
builds on this: it runs these same checks before it starts processes.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from modelport.entities.registry_handle import RegistryHandle
from modelport.errors import ModelportError
from modelport.runtime.base import DeploymentFailed
from modelport.runtime.logs import BuildLog
from modelport.store.records import EndpointRecord

if TYPE_CHECKING:
    from modelport.entities.registry import ModelRegistry

__all__ = ["PreflightBackend", "check_entity"]

PYFUNC = "python_function"


def check_entity(registry: ModelRegistry, entity: dict[str, Any], log: BuildLog) -> dict[str, Any]:
    """Resolve and check one entity (blocking); return it as it will be deployed."""
    name = entity["name"]
    ext = entity.get("external_model")
    if ext is not None:
        log.write(
            f"External model '{ext['name']}' at provider '{ext['provider']}' for task {ext['task']}: "
            "configuration validated."
        )
        return entity
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


class PreflightBackend:
    """Implements :class:`modelport.runtime.base.DeploymentBackend` with checks only."""

    def __init__(self, registry: RegistryHandle) -> None:
        self._registry = registry

    async def deploy(
        self,
        endpoint: EndpointRecord,
        version: int,
        entities: list[dict[str, Any]],
        logs: dict[str, BuildLog],
    ) -> list[dict[str, Any]]:
        out = []
        for entity in entities:
            registry = await asyncio.to_thread(self._registry.get)
            out.append(await asyncio.to_thread(check_entity, registry, entity, logs[entity["name"]]))
        return out

    async def restore(
        self,
        endpoint: EndpointRecord,
        version: int,
        entities: list[dict[str, Any]],
        logs: dict[str, BuildLog],
    ) -> None:
        return None

    async def abort(self, endpoint_id: str, version: int) -> None:
        return None

    async def retire(self, endpoint_id: str, serving_version: int) -> None:
        return None

    async def remove(self, endpoint_id: str) -> None:
        return None
