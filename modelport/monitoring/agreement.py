"""Whether two answers to one request agree, and the measures a comparison report is made of.

Two answers of one request (the live one and a candidate's: a shadow copy, a replay, a canary's
incumbent copy) are decoded JSON bodies:

- a custom model's ``{"predictions": ...}``, whose predictions are scalars, lists (a column or
  rows) or dicts (columns or a row): compared element-wise (:func:`agree`); labels (ints,
  strings, bools) exactly, floats within a relative ``tolerance`` (1e-6 by default);
- an LLM's answer (chat ``choices[].message.content``, completions ``choices[].text``): the text,
  compared exactly by :func:`agree`; :func:`similarity` measures how close two texts are (the
  cosine of their embeddings when an embedding function is given, else the Jaccard index of
  their token sets) and :func:`answer_length` how long an answer is (characters);
- anything else (an embeddings answer, another JSON shape): compared element-wise as a whole.

:func:`answer_kind` says which of ``labels``, ``numbers`` or ``text`` an answer is, so a report
knows which measures apply; :func:`numbers` flattens an answer's numeric values for
:func:`pearson`. Pure functions: no I/O.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from typing import Any, Literal

__all__ = [
    "DEFAULT_TOLERANCE",
    "AnswerKind",
    "Embed",
    "agree",
    "answer_kind",
    "answer_length",
    "answer_text",
    "cosine",
    "jaccard",
    "numbers",
    "pearson",
    "similarity",
]

#: Relative tolerance within which two floats agree.
DEFAULT_TOLERANCE = 1e-6
#: Below this absolute difference two floats agree whatever their size (zero against 1e-15).
_ABSOLUTE_FLOOR = 1e-12

AnswerKind = Literal["labels", "numbers", "text"]
#: Texts to vectors (the system embeddings endpoint, called from a thread).
Embed = Callable[[list[str]], list[list[float]]]

_TOKEN = re.compile(r"\w+", re.UNICODE)


def answer_text(body: Any) -> str | None:
    """The text of an LLM answer (its choices' texts, joined), None when ``body`` is not one."""
    if not isinstance(body, dict):
        return None
    choices = body.get("choices")
    if not isinstance(choices, list) or not choices:
        return None
    texts: list[str] = []
    for choice in choices:
        if not isinstance(choice, dict):
            return None
        message = choice.get("message")
        if isinstance(message, dict) and isinstance(message.get("content"), str):
            texts.append(message["content"])
        elif isinstance(choice.get("text"), str):
            texts.append(choice["text"])
        else:
            return None
    return "\n".join(texts)


def _payload(body: Any) -> Any:
    """What a custom model's answer holds: its ``predictions`` (or ``outputs``), else the body."""
    if isinstance(body, dict):
        for key in ("predictions", "outputs"):
            if key in body:
                return body[key]
    return body


def _float_agrees(x: float, y: float, tolerance: float) -> bool:
    if math.isnan(x) or math.isnan(y):
        return math.isnan(x) and math.isnan(y)
    return math.isclose(x, y, rel_tol=tolerance, abs_tol=_ABSOLUTE_FLOOR)


def _same(a: Any, b: Any, tolerance: float) -> bool:
    """Element-wise equality: labels exact, floats within ``tolerance`` (relative)."""
    if isinstance(a, bool) or isinstance(b, bool) or a is None or b is None:
        return a is b or (a == b and type(a) is type(b))
    if isinstance(a, int | float) and isinstance(b, int | float):
        if isinstance(a, int) and isinstance(b, int):
            return a == b
        return _float_agrees(float(a), float(b), tolerance)
    if isinstance(a, str) or isinstance(b, str):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k], tolerance) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y, tolerance) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def agree(a: Any, b: Any, tolerance: float = DEFAULT_TOLERANCE) -> bool:
    """Whether two decoded answers of one request agree: LLM answers when their texts are equal;
    other answers when their predictions are equal element-wise (labels exactly, floats within
    the relative ``tolerance``). A missing answer (None: an error) agrees with nothing."""
    if a is None or b is None:
        return False
    text_a, text_b = answer_text(a), answer_text(b)
    if text_a is not None or text_b is not None:
        return text_a == text_b
    return _same(_payload(a), _payload(b), tolerance)


def _leaves(value: Any, out: list[Any]) -> None:
    if isinstance(value, dict):
        for v in value.values():
            _leaves(v, out)
    elif isinstance(value, list):
        for v in value:
            _leaves(v, out)
    else:
        out.append(value)


def answer_kind(body: Any) -> AnswerKind:
    """``text`` for an LLM answer; ``numbers`` when the answer holds a float (scores,
    regressions, embeddings, a class beside its score); ``labels`` otherwise (ints, strings,
    bools: classes)."""
    if answer_text(body) is not None:
        return "text"
    leaves: list[Any] = []
    _leaves(_payload(body), leaves)
    # a label beside scores (a class and its probability) is numbers: the scores correlate
    return "numbers" if any(isinstance(v, float) for v in leaves) else "labels"


def numbers(body: Any) -> list[float]:
    """The numeric values of an answer (bools and texts left out), flattened in order: what
    :func:`pearson` pairs between two answers of one request."""
    leaves: list[Any] = []
    _leaves(_payload(body), leaves)
    return [float(v) for v in leaves if isinstance(v, int | float) and not isinstance(v, bool)]


def pearson(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """Pearson's correlation of paired values; None with fewer than two pairs, NaNs aside, or
    when a side does not vary (undefined)."""
    pairs = [(x, y) for x, y in zip(xs, ys, strict=True) if not (math.isnan(x) or math.isnan(y))]
    n = len(pairs)
    if n < 2:
        return None
    mean_x = math.fsum(x for x, _ in pairs) / n
    mean_y = math.fsum(y for _, y in pairs) / n
    sxx = math.fsum((x - mean_x) ** 2 for x, _ in pairs)
    syy = math.fsum((y - mean_y) ** 2 for _, y in pairs)
    if sxx == 0 or syy == 0:
        return None
    sxy = math.fsum((x - mean_x) * (y - mean_y) for x, y in pairs)
    return max(-1.0, min(1.0, sxy / math.sqrt(sxx * syy)))


def _tokens(text: str) -> set[str]:
    return {t.lower() for t in _TOKEN.findall(text)}


def jaccard(a: str, b: str) -> float:
    """The Jaccard index of two texts' token sets (lower-cased words); 1.0 for two empty texts."""
    ta, tb = _tokens(a), _tokens(b)
    if not ta and not tb:
        return 1.0
    return len(ta & tb) / len(ta | tb)


def cosine(u: Sequence[float], v: Sequence[float]) -> float:
    """The cosine of two vectors (0.0 when one is zero)."""
    dot = math.fsum(x * y for x, y in zip(u, v, strict=True))
    norm = math.sqrt(math.fsum(x * x for x in u)) * math.sqrt(math.fsum(y * y for y in v))
    return dot / norm if norm else 0.0


def similarity(
    pairs: Sequence[tuple[str, str]], embed: Embed | None = None
) -> tuple[float | None, Literal["embedding", "jaccard"]]:
    """The mean similarity of paired texts and how it was measured: ``embedding`` (the cosine of
    the texts' embeddings, when ``embed`` is given and answers) or ``jaccard`` (token sets).
    None for no pairs. An embedding function that raises falls back to Jaccard."""
    if not pairs:
        return None, "embedding" if embed is not None else "jaccard"
    if embed is not None:
        try:
            vectors = embed([t for pair in pairs for t in pair])
        except Exception:  # no embedding model here: token sets instead
            vectors = None
        if vectors is not None and len(vectors) == 2 * len(pairs):
            scores = [cosine(vectors[2 * i], vectors[2 * i + 1]) for i in range(len(pairs))]
            return math.fsum(scores) / len(scores), "embedding"
    scores = [jaccard(a, b) for a, b in pairs]
    return math.fsum(scores) / len(scores), "jaccard"


def answer_length(body: Any) -> int | None:
    """The length of an LLM answer's text in characters (None when ``body`` is not one)."""
    text = answer_text(body)
    return None if text is None else len(text)
