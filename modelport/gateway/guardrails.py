"""AI-gateway guardrails (Databricks ``ai_gateway.guardrails``) applied to request and answer texts.

The control plane stores ``guardrails: {input: GP, output: GP}`` with
``GP = {safety: bool, pii: {behavior: BLOCK | MASK | NONE}, invalid_keywords: [str],
valid_topics: [str]}`` (``spec/endpoint.py``, checked by ``spec/validation.py``). The data
plane turns each side into a :class:`GuardrailPolicy` (:meth:`GuardrailPolicy.from_config`,
or :func:`policies` for both sides), takes the texts of a body with :func:`input_texts` or
:func:`output_texts`, runs :func:`check` and, when it blocks, answers 400 with
:attr:`GuardrailOutcome.message` (:meth:`GuardrailOutcome.error`); when PII was masked, it
sends ``slots.replace(outcome.texts)`` on instead of the original body. :func:`check_body`
does the three steps at once. :attr:`GuardrailOutcome.decisions` is the JSON-able record
of every guardrail evaluated, for the inference table.

Guardrails run in this order and the first that blocks ends the check:

1. ``safety`` (:mod:`modelport.gateway.safety`): a local rule-based classifier of clearly
   unsafe text (its docstring says exactly what it catches and what it cannot);
2. ``invalid_keywords``: case-insensitive whole-word or whole-phrase match (``"secret
   project"`` matches ``"Secret  Project!"`` but not ``"secretive"``);
3. ``pii`` (:mod:`modelport.gateway.pii`): ``BLOCK`` blocks a text with PII, ``MASK``
   replaces each finding with a placeholder (``[EMAIL]``...), ``NONE`` skips the check;
4. ``valid_topics``: each checked text is embedded (all-MiniLM-L6-v2, through the ``embed``
   callable the caller passes) and compared by cosine similarity with every topic, each
   embedded as :data:`TOPIC_TEMPLATE` (topic embeddings are computed once per policy and
   embedding function); a text is on topic if its best similarity reaches
   :data:`TOPIC_THRESHOLD`, and every checked text must be.
   Texts of system and tool messages (the application's own instructions and data; known
   when :func:`check` gets ``roles``, as :func:`check_body` passes them) are not checked,
   nor texts of fewer than :data:`TOPIC_MIN_WORDS` words (follow-ups like
   "yes, please" carry no topic). Without ``embed``, a policy with topics raises
   :class:`~modelport.errors.ModelportError`.

Texts of each body shape (:class:`TextSlots`):

- chat requests: ``messages[*].content`` (a string or the ``text`` of text parts) of every
  message except the assistant's (user, system, developer, tool); chat answers:
  ``choices[*].message.content``;
- completions: ``prompt`` (a string or a list of strings); answers: ``choices[*].text``;
- embeddings: ``input`` (a string or a list of strings); answers have no text;
- custom (classic MLflow) models: every string value, at any depth, of
  ``dataframe_records``, ``dataframe_split.data``, ``instances`` and ``inputs`` (dict keys
  and ``dataframe_split.columns`` are names, not texts); answers: every string in
  ``predictions``.

Streams: :func:`chunk_text` gives the text of one chat or completions chunk. Output
guardrails need the whole answer, so on a stream they are applied by buffering: the
integrator collects the chunks (or a window of them), checks the joined text and only
then releases them; a masked answer cannot be un-sent, so MASK on a stream means
buffering the whole answer.

The topic threshold was measured with the bundled all-MiniLM-L6-v2 (fp32 ONNX export; the
int8 file gives the same numbers within 0.01): see :data:`TOPIC_THRESHOLD`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from modelport.errors import BadRequest, ModelportError
from modelport.gateway import pii as pii_mod
from modelport.gateway import safety as safety_mod
from modelport.gateway.guardrail_policy import (
    GUARDRAIL_ORDER,
    INVALID_KEYWORDS,
    PII,
    PII_BEHAVIORS,
    SAFETY,
    TOPIC_MIN_WORDS,
    TOPIC_TEMPLATE,
    TOPIC_THRESHOLD,
    VALID_TOPICS,
    Embed,
    GuardrailPolicy,
    policies,
    unit_rows,
)
from modelport.gateway.guardrail_texts import TextSlots, chunk_text, input_texts, output_texts

__all__ = [
    "GUARDRAIL_ORDER",
    "PII_BEHAVIORS",
    "TOPIC_MIN_WORDS",
    "TOPIC_TEMPLATE",
    "TOPIC_THRESHOLD",
    "Embed",
    "GuardrailOutcome",
    "GuardrailPolicy",
    "TextSlots",
    "check",
    "check_body",
    "chunk_text",
    "input_texts",
    "output_texts",
    "policies",
]


_SAFETY_LABELS = {
    safety_mod.CHILD_SEXUAL_EXPLOITATION: "sexual content involving minors",
    safety_mod.SELF_HARM: "self-harm",
    safety_mod.WEAPONS: "weapons or explosives",
    safety_mod.VIOLENT_CRIMES: "violent crime",
    safety_mod.HATE: "hate speech",
    safety_mod.CRIMINAL_PLANNING: "criminal planning",
    safety_mod.MALWARE: "malware",
}
_TOPIC_EXEMPT_ROLES = frozenset({"system", "developer", "tool", "function"})


# --------------------------------------------------------------------------- outcome
@dataclass
class GuardrailOutcome:
    """What :func:`check` decided.

    ``blocked`` names the guardrail that blocked (``"safety"``, ``"invalid_keywords"``,
    ``"pii"``, ``"valid_topics"``) or is None; ``message`` says why, without the offending
    value; ``texts`` are the texts to send on (masked where PII was masked); ``decisions``
    has one JSON-able record per guardrail evaluated: ``{"name", "result" (allowed |
    blocked | masked), "kinds", "counts"}`` plus, for ``valid_topics``, ``"similarity"``
    (the lowest best-topic similarity of the checked texts), ``"topic"`` and
    ``"threshold"``.
    """

    blocked: str | None
    message: str
    texts: list[str]
    decisions: list[dict[str, Any]]
    side: str = "input"

    @property
    def allowed(self) -> bool:
        return self.blocked is None

    @property
    def masked(self) -> bool:
        """Whether some text was changed (PII masked): send ``slots.replace(texts)`` on."""
        return any(d["result"] == "masked" for d in self.decisions)

    def error(self) -> BadRequest:
        """The 400 error to answer with when ``blocked``."""
        return BadRequest(self.message)

    def raise_if_blocked(self) -> None:
        if self.blocked is not None:
            raise self.error()


def _blocked_message(side: str, name: str, why: str) -> str:
    subject = "request" if side == "input" else "response"
    return f"The {subject} was blocked by the {side} guardrail '{name}': {why}."


def _join(phrases: list[str]) -> str:
    if len(phrases) <= 1:
        return "".join(phrases)
    return ", ".join(phrases[:-1]) + " and " + phrases[-1]


# --------------------------------------------------------------------------- check
async def check(
    texts: Sequence[str],
    policy: GuardrailPolicy,
    *,
    embed: Embed | None = None,
    roles: Sequence[str | None] | None = None,
) -> GuardrailOutcome:
    """Run the guardrails of ``policy`` over ``texts`` (order: module docstring).

    ``roles`` (parallel to ``texts``, e.g. :attr:`TextSlots.roles`) exempts system and tool
    texts from ``valid_topics``. ``embed`` is needed when the policy has ``valid_topics``.
    """
    current = list(texts)
    decisions: list[dict[str, Any]] = []
    side = policy.side
    if roles is not None and len(roles) != len(current):
        raise ModelportError(f"check() got {len(current)} texts but {len(roles)} roles.")

    if policy.safety:
        counts: dict[str, int] = {}
        first: str | None = None
        for text in current:
            verdict = safety_mod.classify(text)
            if verdict.unsafe and verdict.category is not None:
                counts[verdict.category] = counts.get(verdict.category, 0) + 1
                first = first or verdict.category
        decisions.append(_decision(SAFETY, "blocked" if first else "allowed", counts))
        if first is not None:
            why = f"it was classified as unsafe ({_SAFETY_LABELS.get(first, first)})"
            return GuardrailOutcome(SAFETY, _blocked_message(side, SAFETY, why), current, decisions, side)

    if policy._keywords_re is not None:
        counts = {}
        for text in current:
            for m in policy._keywords_re.finditer(text):
                name = policy._keyword_names.get(" ".join(m.group().lower().split()), m.group())
                counts[name] = counts.get(name, 0) + 1
        decisions.append(_decision(INVALID_KEYWORDS, "blocked" if counts else "allowed", counts))
        if counts:
            why = "it contains an invalid keyword"
            return GuardrailOutcome(
                INVALID_KEYWORDS, _blocked_message(side, INVALID_KEYWORDS, why), current, decisions, side
            )

    if policy.pii_behavior != "NONE":
        counts = {}
        masked: list[str] = []
        for text in current:
            if policy.pii_behavior == "MASK":
                new_text, findings = pii_mod.mask_pii(text)
                masked.append(new_text)
            else:
                findings = pii_mod.find_pii(text)
            for f in findings:
                counts[f.kind] = counts.get(f.kind, 0) + 1
        if not counts:
            decisions.append(_decision(PII, "allowed", counts))
        elif policy.pii_behavior == "MASK":
            decisions.append(_decision(PII, "masked", counts))
            current = masked
        else:
            decisions.append(_decision(PII, "blocked", counts))
            why = "it contains " + _join([pii_mod.DESCRIPTIONS[k] for k in counts])
            return GuardrailOutcome(PII, _blocked_message(side, PII, why), current, decisions, side)

    if policy.valid_topics:
        decision = await _check_topics(current, roles, policy, embed)
        decisions.append(decision)
        if decision["result"] == "blocked":
            why = "it is not about one of the allowed topics"
            return GuardrailOutcome(
                VALID_TOPICS, _blocked_message(side, VALID_TOPICS, why), current, decisions, side
            )

    return GuardrailOutcome(None, "", current, decisions, side)


def _decision(name: str, result: str, counts: dict[str, int]) -> dict[str, Any]:
    return {"name": name, "result": result, "kinds": list(counts), "counts": dict(counts)}


async def _check_topics(
    texts: list[str], roles: Sequence[str | None] | None, policy: GuardrailPolicy, embed: Embed | None
) -> dict[str, Any]:
    if embed is None:
        raise ModelportError(
            f"The {policy.side} guardrail 'valid_topics' needs the embedding model (all-MiniLM-L6-v2) "
            "to compare texts with the allowed topics, and this server has none loaded."
        )
    checked = [
        text
        for i, text in enumerate(texts)
        if (roles is None or roles[i] not in _TOPIC_EXEMPT_ROLES) and len(text.split()) >= TOPIC_MIN_WORDS
    ]
    decision: dict[str, Any] = {
        "name": VALID_TOPICS,
        "result": "allowed",
        "kinds": [],
        "counts": {},
        "checked": len(checked),
        "threshold": policy.topic_threshold,
    }
    if not checked:
        return decision
    topics = await policy.topic_vectors(embed)
    vectors = unit_rows(await embed(checked), len(checked))
    sims = vectors @ topics.T  # cosine similarity, texts x topics
    best = sims.max(axis=1)
    worst = int(best.argmin())
    decision["similarity"] = round(float(best[worst]), 4)
    decision["topic"] = policy.valid_topics[int(sims[worst].argmax())]
    off = int((best < policy.topic_threshold).sum())
    if off:
        decision["result"] = "blocked"
        decision["kinds"] = ["off_topic"]
        decision["counts"] = {"off_topic": off}
    return decision


async def check_body(
    body: Any, policy: GuardrailPolicy, *, embed: Embed | None = None
) -> tuple[Any, GuardrailOutcome]:
    """Check the texts of ``body`` (a request for an input policy, an answer for an output one).

    Returns the body to use (a masked copy when PII was masked, else ``body`` itself) and the
    outcome; the caller raises :meth:`GuardrailOutcome.error` when it blocked.
    """
    slots = input_texts(body) if policy.side == "input" else output_texts(body)
    outcome = await check(slots.texts, policy, embed=embed, roles=slots.roles)
    if outcome.masked and outcome.blocked is None:
        return slots.replace(outcome.texts), outcome
    return body, outcome
