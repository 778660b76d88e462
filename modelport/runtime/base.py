"""The interface between the reconciler (``control/``) and whatever runs served entities.

The reconciler owns desired state and the update state machine; a backend owns processes
and sockets. A backend is told to bring up a config version beside the one serving, to
abort one that is being brought up, to retire versions that no longer serve, and to
remove an endpoint. The custom-model runtime (replicas) implements this same protocol.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from modelport.runtime.logs import BuildLog
from modelport.store.records import EndpointRecord

if TYPE_CHECKING:
    from modelport.runtime.replica_set import ReplicaSet

__all__ = ["DeploymentBackend", "DeploymentFailed"]


class DeploymentFailed(Exception):
    """A served entity could not be brought up; ``message`` is shown to the user."""

    def __init__(self, entity_name: str, message: str) -> None:
        super().__init__(f"{entity_name}: {message}")
        self.entity_name = entity_name
        self.message = message


class DeploymentBackend(Protocol):
    async def deploy(
        self,
        endpoint: EndpointRecord,
        version: int,
        entities: list[dict[str, Any]],
        logs: dict[str, BuildLog],
    ) -> list[dict[str, Any]]:
        """Bring up every entity of config ``version``; return them as deployed.

        Must leave whatever serves now untouched. Raises :class:`DeploymentFailed` naming
        the entity that failed; may be cancelled (``asyncio.CancelledError``) at any await,
        after which :meth:`abort` is called.
        """
        ...

    async def restore(
        self,
        endpoint: EndpointRecord,
        version: int,
        entities: list[dict[str, Any]],
        logs: dict[str, BuildLog],
    ) -> None:
        """Bring back what serves config ``version`` after a server restart (no state change)."""
        ...

    async def abort(self, endpoint_id: str, version: int) -> None:
        """Tear down what :meth:`deploy` started for ``version`` (after failure or cancel)."""
        ...

    async def retire(self, endpoint_id: str, serving_version: int) -> None:
        """Stop every version of the endpoint older than ``serving_version`` (a newer one may
        be coming up: an update sent while this one switched)."""
        ...

    async def remove(self, endpoint_id: str) -> None:
        """Stop everything the endpoint runs (it is being deleted)."""
        ...

    async def remove_all(self) -> None:
        """Stop everything (this process stopped leading); the backend stays usable."""
        ...

    def endpoint_ids(self) -> list[str]:
        """The endpoints something runs for."""
        ...

    def replica_set(self, endpoint_id: str, version: int, entity: str) -> ReplicaSet | None:
        """The replicas of one served entity in one config version, if they run here."""
        ...
