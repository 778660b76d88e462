"""An endpoint's config versions as the history routes show them, the changes between two
configs, and the body a rollback records.

Every config version stays in the store (``endpoint_configs``: body, status, creator, times,
message, and the ``ai_gateway`` in effect with it). This module holds pure functions over those
records:

- :func:`version_summary` / :func:`version_detail`: one version for
  ``GET .../config-versions`` and ``GET .../config-versions/{N}`` (credentials masked as
  ``GET`` endpoint masks them, ``control/render.py``);
- :func:`page_of`: newest first, ``max_results`` at a time, with an opaque ``page_token``;
- :func:`diff` and :func:`diff_ai_gateway`: what a change does, one entry per changed field,
  served entities and traffic routes keyed by served entity name;
- :func:`dry_run_report`: what ``?dry_run=true`` answers;
- :func:`restored_body`: version N's body as a rollback records it again (without its
  ``rollout`` block and the states a deployment wrote), marked ``"rolled_back_from": N``.
"""

from __future__ import annotations

import base64
import binascii
import copy
import json
from typing import Any

from modelport.control.render import MASK, mask_credentials, render_detailed
from modelport.entities.agents import AGENT_TASK_KEY
from modelport.errors import InvalidParameterValue
from modelport.spec.endpoint import FEATURE_SPEC_KEY
from modelport.store.records import ConfigRecord, EndpointRecord

__all__ = [
    "DEFAULT_MAX_RESULTS",
    "MAX_RESULTS_LIMIT",
    "ROLLED_BACK_FROM",
    "diff",
    "diff_ai_gateway",
    "dry_run_report",
    "page_of",
    "parse_max_results",
    "restored_body",
    "restored_parts",
    "version_detail",
    "version_summary",
]

DEFAULT_MAX_RESULTS = 50
MAX_RESULTS_LIMIT = 500
#: How a credential field's name ends (its value is masked wherever it is shown).
PLAINTEXT_SUFFIX = "_plaintext"
#: Key of a rollback's config body that names the version it restored.
ROLLED_BACK_FROM = "rolled_back_from"

#: Entity fields a deployment writes (not part of the config a user gives): left out of diffs
#: and of a restored body. A served feature spec's copy (FEATURE_SPEC_KEY) is left out of diffs
#: only, as GET leaves it out (it is the feature-specs API's to show).
_DEPLOYED_KEYS = ("state", "foundation_model", AGENT_TASK_KEY)
_NOT_DIFFED_ENTITY_KEYS = (*_DEPLOYED_KEYS, FEATURE_SPEC_KEY)
#: Top-level body keys that are not config a change is made of.
_NOT_DIFFED_KEYS = (ROLLED_BACK_FROM, "legacy_served_models")


# ---- rendering -------------------------------------------------------------------------------
def _entity_summary(entity: dict[str, Any]) -> dict[str, Any]:
    out = {k: entity[k] for k in ("name", "entity_name", "entity_version") if k in entity}
    external = entity.get("external_model")
    if isinstance(external, dict):
        out["external_model"] = {"provider": external.get("provider"), "name": external.get("name")}
    return out


def version_summary(cfg: ConfigRecord) -> dict[str, Any]:
    """One item of ``GET .../config-versions``: who made the version, when, its status (ACTIVE:
    the version that serves), what it serves and how traffic is split."""
    body = cfg.body
    return {
        "config_version": cfg.version,
        "status": cfg.status,
        "creator": cfg.creator,
        "creation_timestamp": cfg.created_ms,
        "finished_timestamp": cfg.finished_ms,
        "message": cfg.message,
        "served_entities": [_entity_summary(e) for e in body.get("served_entities") or []],
        "traffic_config": copy.deepcopy(body.get("traffic_config")),
        "shadow": copy.deepcopy(body.get("shadow")),
        "rollout": copy.deepcopy(body.get("rollout")),
        ROLLED_BACK_FROM: body.get(ROLLED_BACK_FROM),
    }


def version_detail(endpoint: EndpointRecord, cfg: ConfigRecord) -> dict[str, Any]:
    """``GET .../config-versions/{N}``: the summary's fields, the config as ``GET`` endpoint
    renders a config (credentials masked) and the AI-gateway settings recorded with it."""
    out = version_summary(cfg)
    for key in ("served_entities", "traffic_config", "shadow", "rollout"):
        out.pop(key)
    config = render_detailed(endpoint, cfg, None, None)["config"]
    for key in ("shadow", "rollout"):
        if cfg.body.get(key) is not None:
            config.setdefault(key, copy.deepcopy(cfg.body[key]))
    out["config"] = config
    out["ai_gateway"] = mask_credentials(cfg.ai_gateway)
    return out


# ---- paging ----------------------------------------------------------------------------------
def parse_max_results(raw: str | int | None) -> int:
    """``max_results`` as given (None: the default), between 1 and :data:`MAX_RESULTS_LIMIT`."""
    if raw is None or raw == "":
        return DEFAULT_MAX_RESULTS
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise InvalidParameterValue(f"Invalid value for 'max_results': '{raw}' is not an integer.") from None
    if not 1 <= value <= MAX_RESULTS_LIMIT:
        raise InvalidParameterValue(
            f"Invalid value for 'max_results': {value} is not between 1 and {MAX_RESULTS_LIMIT}."
        )
    return value


def _token(before: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"before": before}).encode()).decode().rstrip("=")


def _before(token: str) -> int:
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        before = data["before"]
        if isinstance(before, bool) or not isinstance(before, int):
            raise TypeError
    except (binascii.Error, ValueError, TypeError, KeyError, UnicodeDecodeError):
        raise InvalidParameterValue(
            "Invalid value for 'page_token': not a token this route returned (pass next_page_token as is)."
        ) from None
    return before


def page_of(
    configs: list[ConfigRecord], max_results: int, page_token: str | None
) -> tuple[list[ConfigRecord], str | None]:
    """Up to ``max_results`` of ``configs``, newest first, from where ``page_token`` left off;
    and the token of the next page (None: this is the last)."""
    newest = sorted(configs, key=lambda c: c.version, reverse=True)
    if page_token:
        before = _before(page_token)
        newest = [c for c in newest if c.version < before]
    page = newest[:max_results]
    more = len(newest) > max_results
    return page, (_token(page[-1].version) if more and page else None)


# ---- diffs -----------------------------------------------------------------------------------
def _masked(path: str, value: Any) -> Any:
    """``value`` (at ``path``) as GET would show it: a credential field's value masked, and every
    credential field inside it."""
    if value is not None and path.rsplit(".", 1)[-1].endswith(PLAINTEXT_SUFFIX):
        return MASK
    return mask_credentials(value)


def _change(path: str, before: Any, after: Any) -> dict[str, Any]:
    kind = "added" if before is None else "removed" if after is None else "changed"
    return {"path": path, "change": kind, "before": _masked(path, before), "after": _masked(path, after)}


def _diff_values(path: str, before: Any, after: Any) -> list[dict[str, Any]]:
    """Changes from ``before`` to ``after`` (either may be None: absent); objects field by field,
    anything else as one value."""
    if before == after:
        return []
    if isinstance(before, dict) and isinstance(after, dict):
        out: list[dict[str, Any]] = []
        for key in [*before, *(k for k in after if k not in before)]:
            out.extend(_diff_values(f"{path}.{key}", before.get(key), after.get(key)))
        return out
    return [_change(path, before, after)]


def _entities(body: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    return {
        str(e["name"]): {k: v for k, v in e.items() if k not in _NOT_DIFFED_ENTITY_KEYS}
        for e in (body or {}).get("served_entities") or []
    }


def _traffic(body: dict[str, Any] | None) -> dict[str, Any]:
    routes = ((body or {}).get("traffic_config") or {}).get("routes") or []
    return {
        str(r.get("served_entity_name") or r.get("served_model_name")): r.get("traffic_percentage")
        for r in routes
    }


def _keyed(path: str, before: dict[str, Any], after: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for name in [*after, *(n for n in before if n not in after)]:
        out.extend(_diff_values(f"{path}.{name}", before.get(name), after.get(name)))
    return out


def diff(before: dict[str, Any] | None, after: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The changes from config body ``before`` (None: no config) to ``after``, as
    ``{"path", "change": "added"|"removed"|"changed", "before", "after"}`` entries, credentials
    masked.

    A served entity added or removed is one entry (``served_entities.<name>``, the entity as
    value); a changed one gives an entry per changed field (``served_entities.<name>.<field>``,
    nested objects field by field, so a changed credential shows as a changed ``*_plaintext``
    field, masked on both sides). Traffic is one entry per route whose percentage changes
    (``traffic_config.<name>``); ``shadow``, ``rollout``, ``auto_capture_config`` and any other
    block field by field. What a deployment wrote (entity states) is not a change."""
    out = _keyed("served_entities", _entities(before), _entities(after))
    out.extend(_keyed("traffic_config", _traffic(before), _traffic(after)))
    skipped = {"served_entities", "traffic_config", *_NOT_DIFFED_KEYS}
    b, a = before or {}, after or {}
    for key in [*b, *(k for k in a if k not in b)]:
        if key not in skipped:
            out.extend(_diff_values(key, b.get(key), a.get(key)))
    return out


def diff_ai_gateway(before: dict[str, Any] | None, after: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The changes from AI-gateway settings ``before`` to ``after`` (paths ``ai_gateway.<field>...``)."""
    b = {k: v for k, v in (before or {}).items() if v is not None}
    a = {k: v for k, v in (after or {}).items() if v is not None}
    return _diff_values("ai_gateway", b or None, a or None) if b != a else []


def dry_run_report(
    *,
    current_version: int | None,
    next_version: int | None,
    changes: list[dict[str, Any]],
    resolved: dict[str, dict[str, Any]],
    plan: dict[str, Any] | None,
) -> dict[str, Any]:
    """What ``?dry_run=true`` answers once everything the real call checks has passed."""
    return {
        "dry_run": True,
        "valid": True,
        "config_version": current_version,
        "next_config_version": next_version,
        "diff": changes,
        "resolved": resolved,
        "rollout": copy.deepcopy(plan),
    }


# ---- rollback --------------------------------------------------------------------------------
def restored_body(cfg: ConfigRecord) -> dict[str, Any]:
    """Version ``cfg``'s body as a rollback records it: without its ``rollout`` block (the
    restore is one plain update) and without what its deployment wrote, with
    ``"rolled_back_from": cfg.version``. Registered-model versions stay as the version's
    deployment resolved them, so a rollback serves what served then, whatever an alias says now."""
    body = copy.deepcopy(cfg.body)
    body.pop("rollout", None)
    body["served_entities"] = [
        {k: v for k, v in e.items() if k not in _DEPLOYED_KEYS} for e in body["served_entities"]
    ]
    body[ROLLED_BACK_FROM] = cfg.version
    return body


def restored_parts(target: ConfigRecord, current: ConfigRecord | None) -> list[str]:
    """What a rollback to ``target`` sets again, for its answer: always the served entities, the
    traffic and the AI-gateway settings, and each extension block either version has."""
    parts = ["served_entities", "traffic_config"]
    current_body = current.body if current is not None else {}
    for key in ("shadow", "auto_capture_config"):
        if target.body.get(key) is not None or current_body.get(key) is not None:
            parts.append(key)
    parts.append("ai_gateway")
    return parts
