"""Plain records the repositories return; no database handles leak out of ``store/``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class PrincipalRecord:
    id: int
    name: str
    kind: str  # user | service_principal | group
    display_name: str | None
    is_admin: bool
    active: bool
    created_ms: int
    groups: tuple[str, ...] = ()
    group_ids: tuple[int, ...] = ()


@dataclass(frozen=True)
class TokenRecord:
    id: str
    principal_id: int
    principal_name: str
    comment: str | None
    created_ms: int
    expiry_ms: int | None
    created_by: str | None


@dataclass(frozen=True)
class EndpointRecord:
    id: str
    name: str
    creator: str
    created_ms: int
    updated_ms: int
    config_update: str
    active_version: int | None = None
    pending_version: int | None = None
    description: str | None = None
    route_optimized: bool = False
    budget_policy_id: str | None = None
    task: str | None = None
    tags: list[dict[str, str]] = field(default_factory=list)
    ai_gateway: dict[str, Any] | None = None
    rate_limits: list[dict[str, Any]] | None = None
    email_notifications: dict[str, Any] | None = None
    telemetry_config: dict[str, Any] | None = None
    #: The rollout in progress as the query path needs it (``control/rollouts.py``), else None.
    rollout: dict[str, Any] | None = None


@dataclass(frozen=True)
class ConfigRecord:
    endpoint_id: str
    version: int
    body: dict[str, Any]
    status: str  # PENDING | ACTIVE | FAILED | CANCELED | SUPERSEDED
    creator: str
    created_ms: int
    message: str | None = None
    finished_ms: int | None = None
    #: The endpoint's ``ai_gateway`` in effect with this version: copied when the version is
    #: made, updated by ``PUT .../ai-gateway`` while the version serves or is pending.
    ai_gateway: dict[str, Any] | None = None


@dataclass(frozen=True)
class SecretScopeRecord:
    name: str
    creator: str
    created_ms: int


@dataclass(frozen=True)
class SecretRecord:
    """One secret. ``value`` is the encrypted token as stored; metadata listings leave it empty."""

    scope: str
    key: str
    last_updated_ms: int
    value: bytes = field(default=b"", repr=False)


@dataclass(frozen=True)
class SecretAclRecord:
    scope: str
    principal_id: int
    principal_name: str
    principal_kind: str
    permission: int  # 1 READ, 2 WRITE, 3 MANAGE
