"""``ai_query``'s vectorized functions on a DuckDB connection, with an in-process fake of the
data plane's ``call`` (``batch/ai_query.py``)."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

import duckdb
import orjson
import pyarrow as pa
import pytest

from modelport.batch import ai_query
from modelport.batch.ai_query import CUSTOM_PARAMETERS_REFUSED, EndpointInfo, Endpoints, prepare
from modelport.errors import InvalidParameterValue, ModelportError, PermissionDenied, RequestLimitExceeded

INFOS = {
    "model": EndpointInfo("custom", "BIGINT", ("f0",)),
    "chat": EndpointInfo("chat"),
    "embed": EndpointInfo("embeddings"),
}


class FakePlane:
    """Answers like the endpoints would; records every body sent."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []
        self.busy = 0  # 429s still to send
        self.in_flight = 0
        self.most_in_flight = 0

    async def call(self, endpoint: str, body: bytes) -> bytes:
        data = orjson.loads(body)
        self.sent.append((endpoint, data))
        if endpoint == "secret":
            raise PermissionDenied("'bob' does not have CAN_QUERY permission on serving endpoint 'secret'.")
        if self.busy:
            self.busy -= 1
            raise RequestLimitExceeded("slow down", retry_after=0)
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        await asyncio.sleep(0.001)
        self.in_flight -= 1
        if endpoint == "model":
            split = data["dataframe_split"]
            rows = [dict(zip(split["columns"], r, strict=True)) for r in split["data"]]
            if any(r.get("f0") == -1 for r in rows):
                raise InvalidParameterValue("f0 must not be -1")
            return orjson.dumps({"predictions": [int(r["f0"] > 0.5) for r in rows]})
        if endpoint == "embed":
            return orjson.dumps(
                {"data": [{"index": i, "embedding": [len(t), 1.0]} for i, t in enumerate(data["input"])]}
            )
        text = data["messages"][0]["content"]
        if endpoint == "labeller":  # answers as a chatty model would
            said = " Positive." if "good" in text else "spam" if "buy" in text else "I am not sure"
            return orjson.dumps({"choices": [{"message": {"content": said}}]})
        if text == "boom":
            raise ModelportError("upstream exploded")
        return orjson.dumps({"choices": [{"message": {"content": text.upper()}}]})

    def endpoints(self) -> Endpoints:
        def describe(name: str) -> EndpointInfo:
            return INFOS.get(name, EndpointInfo("chat"))

        def run(coro: Coroutine[Any, Any, Any]) -> Any:
            return asyncio.run(coro)

        return Endpoints(self.call, describe, run)


@pytest.fixture
def plane() -> FakePlane:
    return FakePlane()


def run(
    plane: FakePlane, sql: str, functions: str | None = None, similarity: str | None = None
) -> list[tuple[Any, ...]]:
    con = duckdb.connect()
    text, statement = prepare(con, sql, plane.endpoints(), functions, similarity)
    try:
        return con.sql(text).fetchall()
    except duckdb.Error:
        if statement.failure is not None:
            raise statement.failure from None
        raise


def test_custom_model_rows_batched_with_struct_and_signature_type(
    plane: FakePlane, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ai_query, "BATCH_ROWS", 100)
    rows = run(
        plane,
        "SELECT ai_query('model', named_struct('f0', i / 1000.0, 'f1', 1)) AS p"
        " FROM range(1000) r(i) ORDER BY i",
    )
    assert [r[0] for r in rows] == [int(i / 1000 > 0.5) for i in range(1000)]
    assert isinstance(rows[0][0], int)
    assert len(plane.sent) == 10  # 100 rows a request
    assert plane.sent[0][1]["dataframe_split"]["columns"] == ["f0", "f1"]
    assert plane.sent[0][1]["usage_context"] == {"source": "ai_query"}


def test_scalar_request_sent_as_the_signature_column_and_null_is_null(plane: FakePlane) -> None:
    rows = run(plane, "SELECT ai_query('model', x, returnType => 'STRING') FROM (VALUES (0.9), (NULL)) v(x)")
    assert rows == [("1",), (None,)]
    assert plane.sent[0][1]["dataframe_split"] == {"columns": ["f0"], "data": [[0.9]]}


def test_fail_on_error_false_isolates_the_failing_row(plane: FakePlane) -> None:
    rows = run(
        plane,
        "SELECT ai_query('model', named_struct('f0', x), failOnError => false)"
        " FROM (VALUES (0.9), (-1), (0.1)) v(x)",
    )
    assert rows[0][0] == {"result": 1, "errorMessage": None}
    assert rows[1][0] == {"result": None, "errorMessage": "f0 must not be -1"}
    assert rows[2][0] == {"result": 0, "errorMessage": None}


def test_fail_on_error_true_raises_the_endpoint_error(plane: FakePlane) -> None:
    with pytest.raises(InvalidParameterValue, match="f0 must not be -1"):
        run(plane, "SELECT ai_query('model', named_struct('f0', x)) FROM (VALUES (-1)) v(x)")


def test_permission_denied_fails_the_query_even_without_fail_on_error(plane: FakePlane) -> None:
    with pytest.raises(PermissionDenied):
        run(plane, "SELECT ai_query('secret', 'hi', failOnError => false)")


def test_chat_one_request_per_row_concurrently_with_parameters(plane: FakePlane) -> None:
    rows = run(
        plane,
        "SELECT ai_query(endpoint => 'chat', request => 'p' || i::VARCHAR,"
        " modelParameters => named_struct('max_tokens', 5)) FROM range(200) r(i) ORDER BY i",
    )
    assert [r[0] for r in rows] == [f"P{i}" for i in range(200)]
    assert all(body["max_tokens"] == 5 for _, body in plane.sent)
    assert 1 < plane.most_in_flight <= ai_query.CONCURRENCY


def test_chat_failures_per_row(plane: FakePlane) -> None:
    rows = run(plane, "SELECT ai_query('chat', x, failOnError => false) FROM (VALUES ('a'), ('boom')) v(x)")
    assert rows == [
        ({"result": "A", "errorMessage": None},),
        ({"result": None, "errorMessage": "upstream exploded"},),
    ]


def test_rate_limited_requests_are_retried(plane: FakePlane) -> None:
    plane.busy = 3
    assert run(plane, "SELECT ai_query('chat', 'hello')") == [("HELLO",)]
    assert len(plane.sent) == 4


def test_embeddings_batched_into_float_lists(plane: FakePlane) -> None:
    rows = run(plane, "SELECT ai_query('embed', x) FROM (VALUES ('ab'), ('abc')) v(x)")
    assert rows == [([2.0, 1.0],), ([3.0, 1.0],)]
    assert [body["input"] for _, body in plane.sent] == [["ab", "abc"]]


def test_model_parameters_refused_on_custom_models(plane: FakePlane) -> None:
    with pytest.raises(InvalidParameterValue) as info:
        run(plane, "SELECT ai_query('model', 1, modelParameters => named_struct('max_tokens', 5))")
    assert info.value.message == CUSTOM_PARAMETERS_REFUSED
    assert info.value.error_code == "INVALID_PARAMETER_VALUE"
    assert plane.sent == []


def test_task_functions_parse_labels_and_keep_nulls(plane: FakePlane) -> None:
    rows = run(
        plane,
        "SELECT ai_analyze_sentiment(x), ai_classify(x, array('spam', 'ham'))"
        " FROM (VALUES ('good day'), ('buy now'), ('meh'), (NULL)) v(x)",
        functions="labeller",
    )
    assert rows == [("positive", None), (None, "spam"), (None, None), (None, None)]
    prompts = [body["messages"][0]["content"] for _, body in plane.sent]
    assert len(prompts) == 6  # NULL text: no request
    assert any(
        p.startswith("Classify the following text as exactly one of these labels: spam, ham.")
        for p in prompts
    )


def test_task_functions_prompt_the_configured_endpoint(plane: FakePlane) -> None:
    rows = run(
        plane,
        "SELECT ai_summarize('a b c', 2), ai_translate('hi', 'French'), ai_fix_grammar('me go'),"
        " ai_mask('call 555', array('phone')), ai_gen('poem')",
        functions="chat",
    )
    summary, translation, fixed, masked, poem = rows[0]
    assert (
        summary == "SUMMARIZE THE FOLLOWING TEXT IN AT MOST 2 WORDS. ANSWER WITH THE SUMMARY ONLY.\n\nA B C"
    )
    assert translation.startswith("TRANSLATE THE FOLLOWING TEXT TO FRENCH.") and translation.endswith("HI")
    assert fixed.endswith("ME GO") and "[MASKED]: PHONE" in masked and poem == "POEM"
    assert {endpoint for endpoint, _ in plane.sent} == {"chat"}


def test_task_functions_are_left_alone_without_an_endpoint(plane: FakePlane) -> None:
    with pytest.raises(duckdb.CatalogException, match="ai_summarize"):
        run(plane, "SELECT ai_summarize('text')")


def test_ai_similarity_is_the_cosine_of_the_embeddings(plane: FakePlane) -> None:
    rows = run(
        plane,
        "SELECT ai_similarity(a, b) FROM (VALUES ('ab', 'cd'), ('ab', 'abcd'), ('ab', NULL)) v(a, b)",
        similarity="embed",
    )
    assert rows[0][0] == pytest.approx(1.0)
    assert rows[1][0] == pytest.approx(9 / (5**0.5 * 17**0.5))
    assert rows[2][0] is None
    assert {endpoint for endpoint, _ in plane.sent} == {"embed"}


def test_vectors_of_several_threads_keep_their_rows_nulls_and_errors(plane: FakePlane) -> None:
    """DuckDB's threads hand the function 2048 rows each; their vectors may share a request (up
    to ``BATCH_ROWS`` rows), and each row's answer, NULL or error must come back to its row."""
    n = 12_000
    xs = [None if i % 997 == 0 else (-1.0 if i == 5000 else (i % 100) / 100) for i in range(n)]
    table = pa.Table.from_batches(pa.table({"i": list(range(n)), "x": xs}).to_batches(max_chunksize=2048))
    con = duckdb.connect()
    con.execute("SET threads = 2")
    con.register("t", table)
    request = "CASE WHEN x IS NOT NULL THEN named_struct('f0', x) END"  # NULL where x is
    sql = f"SELECT i, ai_query('model', {request}, failOnError => false) FROM t"
    text, _ = prepare(con, sql, plane.endpoints())
    got = dict(con.sql(text).fetchall())
    for i, x in enumerate(xs):
        if x is None:
            assert got[i] is None  # NULL in, NULL out
        elif i == 5000:
            assert got[i] == {"result": None, "errorMessage": "f0 must not be -1"}
        else:
            assert got[i] == {"result": int(x > 0.5), "errorMessage": None}
    sizes = [len(body["dataframe_split"]["data"]) for _, body in plane.sent]
    assert max(sizes) <= ai_query.BATCH_ROWS
    assert sum(sizes) >= n - len([x for x in xs if x is None])  # every row sent
