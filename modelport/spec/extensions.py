"""modelport's extension blocks of an endpoint's settings, declared before the features that use them.

Each block has its place and its fields here, so that the feature that implements it fills a
named place instead of inventing one, and so that a client that sends one today gets a clear
refusal instead of a setting that is silently ignored (:func:`refuse_unavailable`):

- ``ai_gateway.response_cache``: answers served again for repeated queries (exact or semantic
  matches), per user or per endpoint, for a TTL (``gateway/caching.py``, ``docs/cache.md``);
- ``config.shadow``: a served entity that gets a copy of a share of the endpoint's queries, whose
  answers are recorded (``shadow_of`` in the inference table) and never returned;
- ``config.rollout``: how a config update moves traffic to a candidate step by step, and the
  limits that roll it back.

The AI-gateway settings are versioned with the config: each config version keeps the
``ai_gateway`` in effect with it (``store/``), so a rollback can restore both.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from modelport.errors import InvalidParameterValue

__all__ = ["ResponseCacheConfig", "RolloutPolicy", "ShadowConfig", "refuse_unavailable"]


class _Block(BaseModel):
    model_config = ConfigDict(extra="ignore")


class ResponseCacheConfig(_Block):
    """``ai_gateway.response_cache``."""

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


class RolloutPolicy(_Block):
    """``config.rollout``: traffic steps (percent) and the limits a candidate must keep."""

    steps: list[float] | None = None
    step_seconds: int | None = None
    max_error_rate: float | None = None
    max_p99_ms: float | None = None
    min_agreement: float | None = None
    min_requests_per_step: int | None = None


#: Block path -> its model, for the blocks this server does not act on yet.
UNAVAILABLE: dict[str, type[_Block]] = {
    "config.shadow": ShadowConfig,
    "config.rollout": RolloutPolicy,
}


def refuse_unavailable(path: str, block: Any) -> None:
    """Refuse a block this server cannot act on yet (400 naming it), rather than ignore it.

    ``{"enabled": false}`` and an absent block are accepted: they ask for nothing.
    """
    if block is None or block == {} or (isinstance(block, dict) and block.get("enabled") is False):
        return
    raise InvalidParameterValue(f"'{path}' is not available on this server yet; remove it from the request.")
