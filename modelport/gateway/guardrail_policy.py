"""One side's guardrails (``ai_gateway.guardrails.input`` or ``.output``) turned into a policy.

:meth:`GuardrailPolicy.from_config` validates a side's settings once and caches the policy by
its settings, so an endpoint's topic embeddings are computed once; :func:`policies` gives both
sides. ``guardrails.py`` runs the checks of a policy.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from modelport.errors import InvalidParameterValue, ModelportError

__all__ = [
    "GUARDRAIL_ORDER",
    "PII_BEHAVIORS",
    "TOPIC_MIN_WORDS",
    "TOPIC_TEMPLATE",
    "TOPIC_THRESHOLD",
    "Embed",
    "GuardrailPolicy",
    "policies",
    "unit_rows",
]

#: ``embed(texts) -> one vector per text``; e.g. ``lambda t: engine.embed(t)`` returning ``.vectors``.
Embed = Callable[[list[str]], Awaitable[list[list[float]]]]

SAFETY = "safety"
INVALID_KEYWORDS = "invalid_keywords"
PII = "pii"
VALID_TOPICS = "valid_topics"
#: The order in which :func:`check` evaluates the guardrails.
GUARDRAIL_ORDER: tuple[str, ...] = (SAFETY, INVALID_KEYWORDS, PII, VALID_TOPICS)
PII_BEHAVIORS: tuple[str, ...] = ("BLOCK", "MASK", "NONE")

#: How a topic is embedded: as a question about it. Against the bare topic ("cooking"), every
#: question scores a little (off-topic ones up to 0.20, on-topic ones from 0.02: the ranges
#: overlap), as MiniLM puts questions near each other; the template widens the gap.
TOPIC_TEMPLATE = "a question about {topic}"
#: Cosine similarity (all-MiniLM-L6-v2) a text needs with its closest topic to be on topic.
#: Measured on 116 texts (questions and answers) against 5 topic lists (e.g. "cooking,
#: recipes", "customer support for our banking app, account and card questions", "travel,
#: hotels, flights"): on-topic texts scored -0.02 to 0.52 (median 0.30, 10th percentile
#: 0.15), off-topic ones -0.11 to 0.135 (median 0.02, 90th percentile 0.07); 0.10 classed
#: 113 of 116 right (bare topics without the template: 109 at best, at 0.14). A threshold of
#: 0.35 would have blocked 39 of the 58 on-topic texts.
TOPIC_THRESHOLD = 0.10
#: Texts with fewer words are not checked against the topics.
TOPIC_MIN_WORDS = 3

_POLICY_CACHE_MAX = 512


@dataclass(frozen=True, eq=False)
class GuardrailPolicy:
    """The guardrails of one side (``input`` or ``output``) of an endpoint."""

    side: str = "input"
    safety: bool = False
    pii_behavior: str = "NONE"
    invalid_keywords: tuple[str, ...] = ()
    valid_topics: tuple[str, ...] = ()
    topic_threshold: float = TOPIC_THRESHOLD
    _keywords_re: re.Pattern[str] | None = field(default=None, repr=False)
    _keyword_names: dict[str, str] = field(default_factory=dict, repr=False)
    # (embed function, unit topic vectors); replaced when a different function is used.
    _topic_cache: list[Any] = field(default_factory=list, repr=False)

    @classmethod
    def from_config(cls, params: Mapping[str, Any] | Any | None, *, side: str = "input") -> GuardrailPolicy:
        """The policy for ``guardrails.<side>`` (a dict, a ``GuardrailParameters`` or None).

        Equal configurations give the same (cached) policy object, so topic embeddings are
        computed once however often this is called.
        """
        if side not in ("input", "output"):
            raise InvalidParameterValue(f"A guardrail side is 'input' or 'output', not {side!r}.")
        if params is not None and not isinstance(params, Mapping):
            dump = getattr(params, "model_dump", None)
            if dump is None:
                raise InvalidParameterValue(f"'guardrails.{side}' must be an object.")
            params = dump(exclude_none=True, mode="json")
        key = side + json.dumps(params or {}, sort_keys=True, default=str)
        cached = _POLICIES.get(key)
        if cached is not None:
            return cached
        policy = cls._build(params or {}, side)
        if len(_POLICIES) >= _POLICY_CACHE_MAX:
            _POLICIES.pop(next(iter(_POLICIES)))
        _POLICIES[key] = policy
        return policy

    @classmethod
    def _build(cls, params: Mapping[str, Any], side: str) -> GuardrailPolicy:
        path = f"guardrails.{side}"
        safety = params.get("safety")
        if safety is not None and not isinstance(safety, bool):
            raise InvalidParameterValue(f"'{path}.safety' must be a boolean.")
        pii = params.get("pii")
        behavior = "NONE"
        if pii is not None:
            if not isinstance(pii, Mapping):
                raise InvalidParameterValue(f"'{path}.pii' must be an object.")
            behavior = pii.get("behavior") or "NONE"
            if behavior not in PII_BEHAVIORS:
                raise InvalidParameterValue(
                    f"'{path}.pii.behavior': {behavior!r} is not one of {', '.join(PII_BEHAVIORS)}."
                )
        keywords = _strings(params.get(INVALID_KEYWORDS), f"{path}.{INVALID_KEYWORDS}")
        topics = _strings(params.get(VALID_TOPICS), f"{path}.{VALID_TOPICS}")
        names = {" ".join(k.lower().split()): k for k in keywords}
        keywords_re = None
        if names:
            alternatives = sorted(names, key=len, reverse=True)
            body = "|".join(r"\s+".join(re.escape(w) for w in k.split()) for k in alternatives)
            keywords_re = re.compile(rf"(?<!\w)(?:{body})(?!\w)", re.IGNORECASE)
        return cls(
            side=side,
            safety=bool(safety),
            pii_behavior=behavior,
            invalid_keywords=tuple(keywords),
            valid_topics=tuple(topics),
            _keywords_re=keywords_re,
            _keyword_names=names,
        )

    @property
    def active(self) -> bool:
        """Whether any guardrail is on (when not, :func:`check` has nothing to do)."""
        return bool(self.safety or self.pii_behavior != "NONE" or self.invalid_keywords or self.valid_topics)

    @property
    def needs_embeddings(self) -> bool:
        """Whether :func:`check` needs an ``embed`` function (``valid_topics`` is set)."""
        return bool(self.valid_topics)

    async def topic_vectors(self, embed: Embed) -> np.ndarray:
        """The unit vectors of the topics, computed once per embedding function."""
        cache = self._topic_cache
        if cache and cache[0] == embed:
            return cache[1]
        phrases = [TOPIC_TEMPLATE.format(topic=t) for t in self.valid_topics]
        vectors = unit_rows(await embed(phrases), len(phrases))
        cache[:] = [embed, vectors]
        return vectors


_POLICIES: dict[str, GuardrailPolicy] = {}


def policies(guardrails: Mapping[str, Any] | Any | None) -> tuple[GuardrailPolicy, GuardrailPolicy]:
    """``(input policy, output policy)`` of an ``ai_gateway.guardrails`` block (None: both off)."""
    if guardrails is not None and not isinstance(guardrails, Mapping):
        dump = getattr(guardrails, "model_dump", None)
        if dump is None:
            raise InvalidParameterValue("'guardrails' must be an object.")
        guardrails = dump(exclude_none=True, mode="json")
    guardrails = guardrails or {}
    return (
        GuardrailPolicy.from_config(guardrails.get("input"), side="input"),
        GuardrailPolicy.from_config(guardrails.get("output"), side="output"),
    )


def _strings(value: Any, path: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidParameterValue(f"'{path}' must be a list of strings.")
    return [v.strip() for v in value if v.strip()]


def unit_rows(rows: Any, expected: int) -> np.ndarray:
    """The rows (a list of vectors, or an object with ``.vectors``) divided by their L2 norms."""
    rows = getattr(rows, "vectors", rows)
    try:
        matrix = np.asarray(rows, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ModelportError(f"The embedding function returned something that is not vectors: {exc}") from exc
    if matrix.ndim != 2 or matrix.shape[0] != expected:
        raise ModelportError(
            f"The embedding function returned an array of shape {matrix.shape} for {expected} texts."
        )
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.where(norms == 0, 1.0, norms)
