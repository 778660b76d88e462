"""Who may make an agent act as a service principal: the store-side check of a served entity's
``agent_config.run_as`` (its shape is checked in ``spec/validation.py``).

An agent whose ``run_as`` names a service principal calls other endpoints as that principal
(``gateway/agent_tokens.py``), whoever queries it. Whoever writes the serving config chooses
the code that then runs with that principal's identity, so the rule is the one for tokens made
on behalf of someone else (``control/identity.py`` ``create_token_for``): only an admin, or the
service principal itself, may write a config whose agent runs as a service principal, on
create, update and rollback alike (a non-admin manager of such an endpoint asks an admin, or
sets ``run_as`` back to ``caller``). The principal must exist, be a service principal and be
active when the config is written; a principal removed later makes the agent's tool calls
fail with 401 (the token's principal is looked up on each use).
"""

from __future__ import annotations

from typing import Any

from modelport.errors import InvalidParameterValue, PermissionDenied
from modelport.spec.endpoint import RUN_AS_CALLER
from modelport.spec.identity import Caller
from modelport.store import Database

__all__ = ["check_run_as"]


def check_run_as(db: Database, caller: Caller | None, body: dict[str, Any]) -> None:
    """Raise unless every ``agent_config.run_as`` of config ``body`` (its stored form) names an
    active service principal that ``caller`` may act as (None: the server itself, as in an
    automatic rollback: existence only). Blocking: reads the store."""
    for i, entity in enumerate(body.get("served_entities") or []):
        config = entity.get("agent_config") or {}
        run_as = config.get("run_as", RUN_AS_CALLER)
        if run_as == RUN_AS_CALLER:
            continue
        path = f"config.served_entities[{i}].agent_config.run_as"
        record = db.principals.get(run_as)
        if record is None or record.kind != "service_principal":
            raise InvalidParameterValue(
                f"Invalid value for '{path}': '{run_as}' is not a service principal (give "
                f"'{RUN_AS_CALLER}' or a service principal's applicationId)."
            )
        if not record.active:
            raise InvalidParameterValue(
                f"Invalid value for '{path}': service principal '{run_as}' is deactivated."
            )
        if caller is not None and not caller.is_admin and caller.name != run_as:
            raise PermissionDenied(
                f"'{caller.name}' may not set '{path}' to service principal '{run_as}': only an "
                "admin or that service principal may make an agent act as it."
            )
