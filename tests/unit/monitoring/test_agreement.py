"""Agreement of two answers and the measures of a comparison report (``monitoring/agreement.py``)."""

from __future__ import annotations

import math

import pytest

from modelport.monitoring.agreement import (
    agree,
    answer_kind,
    answer_length,
    answer_text,
    cosine,
    jaccard,
    numbers,
    pearson,
    similarity,
)


def chat(text: str) -> dict:
    return {"choices": [{"index": 0, "message": {"role": "assistant", "content": text}}]}


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ({"predictions": [1, 0, 1]}, {"predictions": [1, 0, 1]}, True),
        ({"predictions": [1, 0, 1]}, {"predictions": [1, 1, 1]}, False),
        ({"predictions": [1, 0]}, {"predictions": [1, 0, 1]}, False),
        ({"predictions": ["cat"]}, {"predictions": ["dog"]}, False),
        ({"predictions": [True]}, {"predictions": [1]}, False),  # a bool is not the int 1
        ({"predictions": [0.1]}, {"predictions": [0.1 * (1 + 1e-9)]}, True),
        ({"predictions": [0.1]}, {"predictions": [0.1 * (1 + 1e-4)]}, False),
        ({"predictions": [0.0]}, {"predictions": [1e-15]}, True),
        ({"predictions": [math.nan]}, {"predictions": [math.nan]}, True),
        ({"predictions": [1]}, {"predictions": [1.0]}, True),  # an int and its float
        (
            {"predictions": [{"label": 1, "score": 0.7}]},
            {"predictions": [{"label": 1, "score": 0.7}]},
            True,
        ),
        (
            {"predictions": [{"label": 1, "score": 0.7}]},
            {"predictions": [{"label": 0, "score": 0.7}]},
            False,
        ),
        ({"predictions": {"label": [1, 0]}}, {"predictions": {"label": [1, 0]}}, True),
        ({"predictions": {"label": [1, 0]}}, {"predictions": {"class": [1, 0]}}, False),
        ({"predictions": 3}, {"predictions": 3}, True),
        (chat("Paris."), chat("Paris."), True),
        (chat("Paris."), chat("Paris"), False),
        (chat("Paris."), {"predictions": ["Paris."]}, False),
        (None, {"predictions": [1]}, False),
        (None, None, False),
    ],
)
def test_agree(a: object, b: object, expected: bool) -> None:
    assert agree(a, b) is expected
    assert agree(b, a) is expected


def test_tolerance_is_relative_and_settable() -> None:
    assert agree({"predictions": [1000.0]}, {"predictions": [1000.0005]})
    assert not agree({"predictions": [1000.0]}, {"predictions": [1000.01]})
    assert agree({"predictions": [1000.0]}, {"predictions": [1000.01]}, tolerance=1e-3)


def test_answer_kind() -> None:
    assert answer_kind({"predictions": [1, 0, 2]}) == "labels"
    assert answer_kind({"predictions": ["a", "b"]}) == "labels"
    assert answer_kind({"predictions": [0.25, 0.5]}) == "numbers"
    assert answer_kind({"predictions": [{"label": 1, "score": 0.3}]}) == "numbers"
    assert answer_kind({"predictions": []}) == "labels"
    assert answer_kind(chat("hello")) == "text"
    assert answer_kind({"choices": [{"text": "hi"}]}) == "text"


def test_answer_text_and_length() -> None:
    assert answer_text(chat("hello world")) == "hello world"
    assert answer_text({"choices": [{"text": "a"}, {"text": "b"}]}) == "a\nb"
    assert answer_text({"predictions": ["hello"]}) is None
    assert answer_text({"choices": [{"delta": {}}]}) is None
    assert answer_length(chat("four")) == 4
    assert answer_length({"predictions": [1]}) is None


def test_numbers_flatten_in_order() -> None:
    assert numbers({"predictions": [{"label": 1, "score": 0.5}, {"label": 0, "score": 0.25}]}) == [
        1.0,
        0.5,
        0.0,
        0.25,
    ]
    assert numbers({"predictions": [True, "x", 2]}) == [2.0]


def test_pearson() -> None:
    assert pearson([1, 2, 3], [2, 4, 6]) == pytest.approx(1.0)
    assert pearson([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert pearson([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8)
    assert pearson([1], [1]) is None
    assert pearson([1, 1, 1], [1, 2, 3]) is None  # undefined: one side does not vary
    assert pearson([1, 2, math.nan, 3], [1, 2, 5, 3]) == pytest.approx(1.0)


def test_jaccard_and_cosine() -> None:
    assert jaccard("The cat sat", "the CAT sat.") == 1.0
    assert jaccard("a b", "b c") == pytest.approx(1 / 3)
    assert jaccard("", "") == 1.0
    assert jaccard("a", "") == 0.0
    assert cosine([1, 0], [1, 0]) == pytest.approx(1.0)
    assert cosine([1, 0], [0, 1]) == pytest.approx(0.0)
    assert cosine([0, 0], [1, 0]) == 0.0


def test_similarity_embedding_then_jaccard_fallback() -> None:
    pairs = [("a b", "a b"), ("a b", "c d")]
    assert similarity(pairs) == (pytest.approx(0.5), "jaccard")

    def embed(texts: list[str]) -> list[list[float]]:
        return [[1.0, 0.0] if "a" in t else [0.0, 1.0] for t in texts]

    assert similarity(pairs, embed) == (pytest.approx(0.5), "embedding")
    assert similarity([("a", "a")], embed) == (pytest.approx(1.0), "embedding")

    def broken(texts: list[str]) -> list[list[float]]:
        raise RuntimeError("no embedding model")

    assert similarity(pairs, broken) == (pytest.approx(0.5), "jaccard")
    assert similarity([]) == (None, "jaccard")
