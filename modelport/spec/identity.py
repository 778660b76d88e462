"""Who calls: the caller of a request (and the agent it acts through), built-in groups, and the
API-token format. No I/O."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from modelport.errors import InvalidParameterValue, PermissionDenied

__all__ = ["ADMINS_GROUP", "USERS_GROUP", "AgentGrant", "Caller", "hash_token", "new_token_value"]

ADMINS_GROUP = "admins"
USERS_GROUP = "users"
TOKEN_PREFIX = "dapi"


def new_token_value() -> str:
    """A fresh token in the Databricks personal-access-token shape (``dapi`` + 32 hex)."""
    return TOKEN_PREFIX + secrets.token_hex(16)


def hash_token(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


@dataclass(frozen=True)
class AgentGrant:
    """What an agent token (``gateway/agent_tokens.py``) lets an agent's code do on behalf of
    its principal: the query it is part of and the endpoints it may call."""

    #: The agent endpoints above this call, outermost first; the last one made the call.
    chain: tuple[str, ...]
    #: How deep the call is: 1 for a tool call of an agent queried by a client.
    depth: int
    #: The request id of the agent endpoint's query that made this call.
    parent_request_id: str
    #: The endpoints it may call (``agent_config.allowed_endpoints``); None: any the principal may query.
    allowed: frozenset[str] | None
    #: When the token expires (epoch ms).
    expiry_ms: int

    @property
    def endpoint(self) -> str:
        """The agent endpoint whose code makes the call."""
        return self.chain[-1]

    @property
    def usage_context(self) -> dict[str, str]:
        """What the usage row of the call says of the agent (``usage_context``)."""
        return {"parent_request_id": self.parent_request_id, "agent_endpoint": self.endpoint}

    def admit(self, endpoint: str) -> None:
        """Raise unless the agent may call ``endpoint``: never an endpoint of its own chain
        (400: it would call itself, maybe forever), only an allowed one (403)."""
        if endpoint in self.chain:
            raise InvalidParameterValue(
                f"Agent endpoint '{self.endpoint}' calls itself: endpoint '{endpoint}' is already in "
                f"its chain of calls ({' -> '.join(self.chain)})."
            )
        if self.allowed is not None and endpoint not in self.allowed:
            listed = ", ".join(sorted(self.allowed)) or "none"
            raise PermissionDenied(
                f"Agent endpoint '{self.endpoint}' may not call endpoint '{endpoint}': its "
                f"agent_config.allowed_endpoints are {listed}."
            )


@dataclass(frozen=True)
class Caller:
    """Who sent a request: the principal, its groups, and whether it is an admin."""

    id: int
    name: str
    kind: str
    groups: tuple[str, ...]
    principal_ids: frozenset[int]
    token_id: str | None = None
    #: Set when the principal calls through an agent (an agent token): what the agent may do.
    agent: AgentGrant | None = None

    @property
    def is_admin(self) -> bool:
        return ADMINS_GROUP in self.groups
