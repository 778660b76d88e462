"""modelport's extension blocks of an endpoint's settings: their fields and their validation.

- ``ai_gateway.response_cache``: answers served again for repeated queries (exact or semantic
  matches), per user or per endpoint, for a TTL (``gateway/caching.py``, ``docs/cache.md``);
- ``config.shadow``: a served entity that gets a copy of a share of the endpoint's queries, whose
  answers are recorded (``shadow_of`` in the inference table) and never returned
  (``gateway/shadow.py``, ``docs/rollouts.md``);
- ``config.rollout``: how a config update moves traffic to a candidate step by step, and the
  limits that roll it back (``control/rollouts.py``, ``docs/rollouts.md``).

The AI-gateway settings are versioned with the config: each config version keeps the
``ai_gateway`` in effect with it (``store/``), so a rollback can restore both.

:func:`normalize_shadow` and :func:`normalize_rollout` turn a request's block into the canonical
stored form (kept in the config body under ``shadow`` and ``rollout``), or raise a 400 naming the
field.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from modelport.errors import InvalidParameterValue

__all__ = [
    "SHADOW_ENTITY_KEY",
    "ResponseCacheConfig",
    "RolloutPolicy",
    "ShadowConfig",
    "normalize_rollout",
    "normalize_shadow",
    "runtime_entities",
]

#: Set (True) on the shadow's entity in the copy of a config the runtime is given, never stored:
#: its replicas run at a lower CPU priority, so copies yield to live queries on a busy machine.
SHADOW_ENTITY_KEY = "modelport_shadow"

#: Defaults of a rollout policy's optional fields.
DEFAULT_STEP_SECONDS = 300
#: How often a running step is evaluated (a breach rolls back at the next evaluation).
DEFAULT_EVALUATION_SECONDS = 10


class _Block(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ResponseCacheConfig(BaseModel):
    """``ai_gateway.response_cache``."""

    model_config = ConfigDict(extra="ignore")

    enabled: bool | None = None
    ttl_seconds: int | None = None
    #: ``user``: one caller's answers are served to that caller only; ``endpoint``: to every caller.
    scope: Literal["user", "endpoint"] | None = None
    #: Cosine similarity above which a chat or completions query matches a cached one (None: exact only).
    semantic_similarity: float | None = None
    max_entry_bytes: int | None = None
    cache_non_deterministic: bool | None = None


class ShadowConfig(_Block):
    """``config.shadow``: the entity that receives a copy of ``percentage`` % of the queries."""

    served_entity_name: str | None = None
    percentage: float | None = None
    enabled: bool | None = None


class RolloutPolicy(_Block):
    """``config.rollout``: traffic steps (percent) and the limits a candidate must keep."""

    #: The served entity the steps move traffic to (default: the one entity whose traffic the
    #: update raises).
    candidate: str | None = None
    steps: list[float] | None = None
    step_seconds: int | None = None
    evaluation_seconds: int | None = None
    max_error_rate: float | None = None
    max_p99_ms: float | None = None
    min_agreement: float | None = None
    min_requests_per_step: int | None = None
    #: Each decision is also POSTed here as JSON (``monitoring/webhooks.py``).
    webhook_url: str | None = None
    enabled: bool | None = None


def _bad(path: str, problem: str) -> InvalidParameterValue:
    return InvalidParameterValue(f"Invalid value for '{path}': {problem}")


def _parse(model: type[_Block], block: Any, path: str) -> _Block:
    if not isinstance(block, dict):
        raise _bad(path, "must be an object.")
    try:
        return model.model_validate(block)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        if first["type"] == "extra_forbidden":
            fields = ", ".join(model.model_fields)
            raise _bad(f"{path}.{where}", f"unknown field (fields: {fields}).") from None
        raise _bad(f"{path}.{where}", str(first["msg"])) from None


def _off(block: Any) -> bool:
    return block is None or block == {} or (isinstance(block, dict) and block.get("enabled") is False)


def normalize_shadow(block: Any, names: list[str], traffic: dict[str, Any]) -> dict[str, Any] | None:
    """``config.shadow`` in its stored form: ``{"served_entity_name", "percentage"}``, or None.

    The shadow must be a served entity of the config that takes no live traffic (0 % or no route),
    so its replicas run and only copies reach it."""
    if _off(block):
        return None
    path = "config.shadow"
    shadow = _parse(ShadowConfig, block, path)
    assert isinstance(shadow, ShadowConfig)
    name = shadow.served_entity_name
    if not name:
        raise InvalidParameterValue(f"Missing required field '{path}.served_entity_name'.")
    if name not in names:
        raise _bad(
            f"{path}.served_entity_name",
            f"'{name}' is not a served entity of this config (served entities: {', '.join(names)}).",
        )
    live = {r["served_entity_name"]: r["traffic_percentage"] for r in traffic["routes"]}
    if live.get(name, 0) > 0:
        raise _bad(
            f"{path}.served_entity_name",
            f"'{name}' takes {live[name]}% of the live traffic; a shadow takes none: set its "
            "traffic_percentage to 0.",
        )
    if shadow.percentage is None:
        raise InvalidParameterValue(f"Missing required field '{path}.percentage'.")
    if not 0 < shadow.percentage <= 100:
        raise _bad(f"{path}.percentage", f"{shadow.percentage} is not above 0 and at most 100.")
    return {"served_entity_name": name, "percentage": float(shadow.percentage)}


def _rate(value: float | None, path: str) -> float | None:
    if value is not None and not 0 <= value <= 1:
        raise _bad(path, f"{value} is not between 0 and 1 (a fraction: 0.01 is 1%).")
    return value


def normalize_rollout(block: Any, names: list[str], traffic: dict[str, Any]) -> dict[str, Any] | None:
    """``config.rollout`` in its stored form (every field present; limits not given are None), or None.

    ``steps`` rise strictly, each above 0 and at most 100, and end at 100 (appended when missing);
    ``candidate``, when given, names a served entity of the config. Whether the update has an
    incumbent to move traffic from is the control plane's check (it knows the serving config)."""
    if _off(block):
        return None
    path = "config.rollout"
    policy = _parse(RolloutPolicy, block, path)
    assert isinstance(policy, RolloutPolicy)
    steps = list(policy.steps or [])
    if not steps:
        raise InvalidParameterValue(
            f"Missing required field '{path}.steps': the candidate's traffic percentages in order, "
            "such as [5, 25, 50, 100]."
        )
    for i, step in enumerate(steps):
        if not 0 < step <= 100:
            raise _bad(f"{path}.steps[{i}]", f"{step} is not above 0 and at most 100.")
        if i and step <= steps[i - 1]:
            raise _bad(f"{path}.steps", "percentages must rise from one step to the next.")
    if steps[-1] != 100:
        steps.append(100.0)
    if policy.candidate is not None and policy.candidate not in names:
        raise _bad(
            f"{path}.candidate",
            f"'{policy.candidate}' is not a served entity of this config "
            f"(served entities: {', '.join(names)}).",
        )
    step_seconds = policy.step_seconds if policy.step_seconds is not None else DEFAULT_STEP_SECONDS
    if step_seconds < 1:
        raise _bad(f"{path}.step_seconds", f"{step_seconds} is below 1.")
    evaluation = policy.evaluation_seconds
    if evaluation is None:
        evaluation = min(step_seconds, DEFAULT_EVALUATION_SECONDS)
    if not 1 <= evaluation <= step_seconds:
        raise _bad(
            f"{path}.evaluation_seconds", f"{evaluation} is not between 1 and step_seconds ({step_seconds})."
        )
    if policy.max_p99_ms is not None and policy.max_p99_ms <= 0:
        raise _bad(f"{path}.max_p99_ms", f"{policy.max_p99_ms} is not above 0.")
    minimum = policy.min_requests_per_step if policy.min_requests_per_step is not None else 0
    if minimum < 0:
        raise _bad(f"{path}.min_requests_per_step", f"{minimum} is negative.")
    hook = policy.webhook_url
    if hook is not None and not hook.startswith(("http://", "https://")):
        raise _bad(f"{path}.webhook_url", f"'{hook}' is not an http(s) URL.")
    return {
        "candidate": policy.candidate,
        "steps": [float(s) for s in steps],
        "step_seconds": step_seconds,
        "evaluation_seconds": evaluation,
        "max_error_rate": _rate(policy.max_error_rate, f"{path}.max_error_rate"),
        "max_p99_ms": policy.max_p99_ms,
        "min_agreement": _rate(policy.min_agreement, f"{path}.min_agreement"),
        "min_requests_per_step": minimum,
        "webhook_url": hook,
    }


def runtime_entities(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The served entities of a stored config as the runtime gets them: the shadow's marked with
    :data:`SHADOW_ENTITY_KEY` (a copy of it; the others as stored)."""
    shadow = (body.get("shadow") or {}).get("served_entity_name")
    return [{**e, SHADOW_ENTITY_KEY: True} if e["name"] == shadow else e for e in body["served_entities"]]
