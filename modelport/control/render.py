"""Stored endpoints → the JSON shapes of compat-api.md §A.3 (ServingEndpointDetailed and friends).

Credentials inside external-model blocks never leave the server: every ``*_plaintext``
value is replaced by a mask here, the one place that renders configs. A config written
back with the mask keeps its stored credential (``spec.secrets.keep_masked``).

A served feature spec shows as its ``entity_name`` (no version): the copy of the spec its config
keeps (``feature_spec``) is left out, as it is the feature-specs API's to show.

One field is modelport's own: ``modelport_system: true`` marks a system endpoint
(``control/system_endpoints.py``), whose config, permissions and existence users cannot
change; clients that follow Databricks' shapes drop it, the web UI hides those controls.
"""

from __future__ import annotations

import copy
from typing import Any

from modelport.control.endpoint_state import endpoint_state
from modelport.control.system_endpoints import is_system
from modelport.entities.agents import AGENT_TASK_KEY
from modelport.spec.endpoint import FEATURE_SPEC_KEY
from modelport.spec.permissions import PermissionLevel
from modelport.spec.secrets import MASK
from modelport.store.records import ConfigRecord, EndpointRecord

__all__ = ["MASK", "mask_credentials", "render_detailed", "render_summary"]

_ENTITY_ONLY_KEYS = ("state",)


def _mask(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: (MASK if k.endswith("_plaintext") and v is not None else _mask(v)) for k, v in value.items()
        }
    if isinstance(value, list):
        return [_mask(v) for v in value]
    return value


def mask_credentials(value: Any) -> Any:
    """A copy of ``value`` (any JSON) with every ``*_plaintext`` value masked, for error messages."""
    return _mask(copy.deepcopy(value))


def _entity(entity: dict[str, Any], cfg: ConfigRecord) -> dict[str, Any]:
    out = _mask(copy.deepcopy({k: v for k, v in entity.items() if k != FEATURE_SPEC_KEY}))
    out.setdefault("creator", cfg.creator)
    out.setdefault("creation_timestamp", cfg.created_ms)
    out.setdefault("state", {"deployment": "DEPLOYMENT_CREATING", "deployment_state_message": "Creating"})
    return dict(out)


def _agent_task(active: ConfigRecord | None) -> str | None:
    """An agent endpoint's task: that of the serving config's agents (``entities/agents.py``),
    when they all serve one."""
    if active is None:
        return None
    tasks = {e.get(AGENT_TASK_KEY) for e in active.body["served_entities"]}
    return str(next(iter(tasks))) if len(tasks) == 1 and None not in tasks else None


def _served_model(entity: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in entity.items() if k not in ("entity_name", "entity_version")}
    out["model_name"] = entity.get("entity_name")
    out["model_version"] = entity.get("entity_version")
    return out


def _config(cfg: ConfigRecord, *, pending: bool) -> dict[str, Any]:
    entities = [_entity(e, cfg) for e in cfg.body["served_entities"]]
    out: dict[str, Any] = {
        "config_version": cfg.version,
        "served_entities": entities,
        "traffic_config": copy.deepcopy(cfg.body["traffic_config"]),
    }
    for block in ("shadow", "rollout"):  # modelport's extension blocks (spec/extensions.py)
        if cfg.body.get(block) is not None:
            out[block] = copy.deepcopy(cfg.body[block])
    if cfg.body.get("legacy_served_models"):
        out["served_models"] = [_served_model(e) for e in entities if "external_model" not in e]
    if cfg.body.get("auto_capture_config") is not None:
        capture = dict(cfg.body["auto_capture_config"])
        if capture.get("enabled"):
            table = (
                f"{capture['catalog_name']}.{capture['schema_name']}.{capture['table_name_prefix']}_payload"
            )
            capture["state"] = {"payload_table": {"name": table, "status": "ACTIVE"}}
        out["auto_capture_config"] = capture
    if pending:
        out["start_time"] = cfg.created_ms
    return out


def render_detailed(
    endpoint: EndpointRecord,
    active: ConfigRecord | None,
    pending: ConfigRecord | None,
    level: PermissionLevel | None,
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": endpoint.name,
        "id": endpoint.id,
        "creator": endpoint.creator,
        "creation_timestamp": endpoint.created_ms,
        "last_updated_timestamp": endpoint.updated_ms,
        "state": endpoint_state(endpoint),
        "tags": copy.deepcopy(endpoint.tags),
        "route_optimized": endpoint.route_optimized,
    }
    if level is not None:
        out["permission_level"] = level.name
    if is_system(endpoint):
        out["modelport_system"] = True
    if active is not None:
        out["config"] = _config(active, pending=False)
    if pending is not None:
        out["pending_config"] = _config(pending, pending=True)
    optional = {
        "task": endpoint.task or _agent_task(active),
        "ai_gateway": endpoint.ai_gateway,
        "rate_limits": endpoint.rate_limits,
        "description": endpoint.description,
        "budget_policy_id": endpoint.budget_policy_id,
        "email_notifications": endpoint.email_notifications,
        "telemetry_config": endpoint.telemetry_config,
    }
    out.update({k: copy.deepcopy(v) for k, v in optional.items() if v is not None})
    return out


def render_summary(
    endpoint: EndpointRecord, active: ConfigRecord | None, pending: ConfigRecord | None
) -> dict[str, Any]:
    """One item of the list response: the fields of ``ServingEndpoint`` only."""
    out: dict[str, Any] = {
        "name": endpoint.name,
        "id": endpoint.id,
        "creator": endpoint.creator,
        "creation_timestamp": endpoint.created_ms,
        "last_updated_timestamp": endpoint.updated_ms,
        "state": endpoint_state(endpoint),
        "tags": copy.deepcopy(endpoint.tags),
    }
    shown = active or pending
    if shown is not None:
        entities = []
        for e in shown.body["served_entities"]:
            item = {k: e[k] for k in ("name", "entity_name", "entity_version") if k in e}
            if "external_model" in e:
                item["external_model"] = _mask(copy.deepcopy(e["external_model"]))
            if "foundation_model" in e:
                item["foundation_model"] = copy.deepcopy(e["foundation_model"])
            entities.append(item)
        out["config"] = {"served_entities": entities}
        if shown.body.get("legacy_served_models"):
            out["config"]["served_models"] = [
                {
                    "name": e["name"],
                    "model_name": e.get("entity_name"),
                    "model_version": e.get("entity_version"),
                }
                for e in entities
                if "external_model" not in e
            ]
    for key in ("task", "ai_gateway", "description", "budget_policy_id", "telemetry_config"):
        value = getattr(endpoint, key) if key != "task" else endpoint.task or _agent_task(active)
        if value is not None:
            out[key] = copy.deepcopy(value)
    return out
