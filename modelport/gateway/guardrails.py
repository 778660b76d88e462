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

import json
import re
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from modelport.errors import BadRequest, InvalidParameterValue, ModelportError
from modelport.gateway import pii as pii_mod
from modelport.gateway import safety as safety_mod

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
_POLICY_CACHE_MAX = 512


# --------------------------------------------------------------------------- policy
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
        vectors = _unit_rows(await embed(phrases), len(phrases))
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
    vectors = _unit_rows(await embed(checked), len(checked))
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


def _unit_rows(rows: Any, expected: int) -> np.ndarray:
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


# --------------------------------------------------------------------------- texts of bodies
Path = tuple[str | int, ...]


@dataclass
class TextSlots:
    """The texts of a body, where each came from, and the means to write replacements back.

    ``texts[i]`` sits at ``paths[i]`` (keys and indexes from the body's root) and belongs to
    a message of role ``roles[i]`` (None outside chat messages).
    """

    body: Any
    texts: list[str]
    paths: list[Path]
    roles: list[str | None]

    def __len__(self) -> int:
        return len(self.texts)

    def replace(self, new_texts: Sequence[str]) -> Any:
        """A copy of the body with ``new_texts`` in place of :attr:`texts` (the body is not changed).

        Only the containers on the way to a text are copied; the rest is shared.
        """
        if len(new_texts) != len(self.texts):
            raise ModelportError(f"replace() got {len(new_texts)} texts for {len(self.texts)} slots.")
        copies: dict[Path, Any] = {}

        def copy_of(path: Path) -> Any:
            if path in copies:
                return copies[path]
            node = copy_of(path[:-1])[path[-1]] if path else self.body
            node = dict(node) if isinstance(node, dict) else list(node)
            if path:
                copy_of(path[:-1])[path[-1]] = node
            copies[path] = node
            return node

        if not self.paths:
            return self.body
        for path, text in zip(self.paths, new_texts, strict=True):
            copy_of(path[:-1])[path[-1]] = text
        return copies[()]


def _content_slots(content: Any, base: Path) -> Iterator[tuple[Path, str]]:
    """The texts of a chat ``content``: the string, or the ``text`` of its text parts."""
    if isinstance(content, str):
        yield base, content
    elif isinstance(content, list):
        for j, part in enumerate(content):
            if isinstance(part, str):
                yield (*base, j), part
            elif (
                isinstance(part, dict)
                and isinstance(part.get("text"), str)
                and part.get("type", "text") in ("text", "input_text", "output_text")
            ):
                yield (*base, j, "text"), part["text"]


def _strings_in(value: Any, base: Path) -> Iterator[tuple[Path, str]]:
    """Every string value at any depth (not dict keys), depth first, in order."""
    stack: list[tuple[Path, Any]] = [(base, value)]
    while stack:
        path, node = stack.pop()
        if isinstance(node, str):
            yield path, node
        elif isinstance(node, dict):
            stack.extend(((*path, k), v) for k, v in reversed(list(node.items())))
        elif isinstance(node, list):
            stack.extend(((*path, i), v) for i, v in reversed(list(enumerate(node))))


def _string_or_list(value: Any, base: Path) -> Iterator[tuple[Path, str]]:
    if isinstance(value, str):
        yield base, value
    elif isinstance(value, list):
        for i, item in enumerate(value):
            if isinstance(item, str):
                yield (*base, i), item


def _slots(body: Any, found: Iterator[tuple[Path, str, str | None]]) -> TextSlots:
    texts: list[str] = []
    paths: list[Path] = []
    roles: list[str | None] = []
    for path, text, role in found:
        paths.append(path)
        texts.append(text)
        roles.append(role)
    return TextSlots(body, texts, paths, roles)


_CUSTOM_INPUT_KEYS = ("dataframe_records", "instances", "inputs")


def _input_slots(body: Any) -> Iterator[tuple[Path, str, str | None]]:
    if not isinstance(body, dict):
        return
    messages = body.get("messages")
    if isinstance(messages, list):
        for i, message in enumerate(messages):
            if not isinstance(message, dict):
                continue
            role = message.get("role")
            if role == "assistant":
                continue
            for path, text in _content_slots(message.get("content"), ("messages", i, "content")):
                yield path, text, role if isinstance(role, str) else None
        return
    if "prompt" in body:
        for path, text in _string_or_list(body["prompt"], ("prompt",)):
            yield path, text, None
        return
    if "input" in body:
        for path, text in _string_or_list(body["input"], ("input",)):
            yield path, text, None
        return
    for key in _CUSTOM_INPUT_KEYS:
        if key in body:
            for path, text in _strings_in(body[key], (key,)):
                yield path, text, None
    split = body.get("dataframe_split")
    if isinstance(split, dict) and "data" in split:
        for path, text in _strings_in(split["data"], ("dataframe_split", "data")):
            yield path, text, None


def _output_slots(body: Any) -> Iterator[tuple[Path, str, str | None]]:
    if isinstance(body, dict) and isinstance(body.get("choices"), list):
        for i, choice in enumerate(body["choices"]):
            if not isinstance(choice, dict):
                continue
            message = choice.get("message")
            if isinstance(message, dict):
                role = message.get("role", "assistant")
                for path, text in _content_slots(
                    message.get("content"), ("choices", i, "message", "content")
                ):
                    yield path, text, role if isinstance(role, str) else "assistant"
            elif isinstance(choice.get("text"), str):
                yield ("choices", i, "text"), choice["text"], None
        return
    if isinstance(body, dict) and "predictions" in body:
        for path, text in _strings_in(body["predictions"], ("predictions",)):
            yield path, text, None


def input_texts(body: Any) -> TextSlots:
    """The texts of a request body (chat, completions, embeddings or custom model)."""
    return _slots(body, _input_slots(body))


def output_texts(body: Any) -> TextSlots:
    """The texts of an answer body (chat, completions or custom model ``predictions``)."""
    return _slots(body, _output_slots(body))


def chunk_text(chunk: Any) -> str:
    """The text of one streamed chunk: ``choices[*].delta.content`` (chat) or ``choices[*].text``.

    Output guardrails on streams work on buffered text (module docstring).
    """
    if not isinstance(chunk, dict) or not isinstance(chunk.get("choices"), list):
        return ""
    parts: list[str] = []
    for choice in chunk["choices"]:
        if not isinstance(choice, dict):
            continue
        delta = choice.get("delta")
        if isinstance(delta, dict):
            parts.extend(text for _, text in _content_slots(delta.get("content"), ()))
        elif isinstance(choice.get("text"), str):
            parts.append(choice["text"])
    return "".join(parts)


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
