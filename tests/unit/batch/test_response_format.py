"""``responseFormat``, ``ai_extract`` and the JSON-schema-constrained task functions
(``batch/response_format.py`` through ``batch/ai_query.py``), with an in-process fake of the data
plane's ``call`` that honours, ignores or refuses ``response_format`` as real endpoints do."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Coroutine
from typing import Any

import duckdb
import orjson
import pytest

from modelport.batch import response_format
from modelport.batch.ai_query import CUSTOM_RESPONSE_FORMAT_REFUSED, EndpointInfo, Endpoints, prepare
from modelport.errors import InvalidParameterValue

INFOS = {"model": EndpointInfo("custom", "BIGINT", ("f0",)), "embed": EndpointInfo("embeddings")}


class Plane:
    """``strict`` follows the JSON schema it is sent, ``loose`` ignores it (free text),
    ``refuser`` answers 400 to any ``response_format`` but text (as the Anthropic provider does)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []

    async def call(self, endpoint: str, body: bytes) -> bytes:
        data = orjson.loads(body)
        self.sent.append((endpoint, data))
        text = data["messages"][0]["content"]
        fmt = data.get("response_format")
        if endpoint == "refuser" and fmt and fmt["type"] != "text":
            raise InvalidParameterValue(
                "'response_format' other than text is not supported by Anthropic models."
            )
        if endpoint == "strict" and fmt and fmt["type"] == "json_schema":
            answer = json.dumps(_follow(fmt["json_schema"]["schema"], text))
        elif endpoint == "strict" and fmt and fmt["type"] == "json_object":
            answer = json.dumps({"text": text})
        elif "sentiment" in text:
            answer = "Negative." if "awful" in text else "Positive!"
        elif "Extract" in text:
            answer = 'Sure! ```json\n{"Person": "Ada", "place": null}\n```'
        else:
            answer = "I think it is ham"
        return orjson.dumps({"choices": [{"message": {"content": answer}}]})

    def endpoints(self) -> Endpoints:
        def run(coro: Coroutine[Any, Any, Any]) -> Any:
            return asyncio.run(coro)

        return Endpoints(self.call, lambda name: INFOS.get(name, EndpointInfo("chat")), run)


def _follow(schema: dict[str, Any], text: str, key: str = "") -> Any:
    """What a schema-following model might answer: enum labels picked from the text."""
    if "enum" in schema:
        return next((v for v in schema["enum"] if v in text.split("\n\n")[-1]), schema["enum"][-1])
    kind = schema["type"]
    if kind == "object":
        return {k: _follow(v, text, k) for k, v in schema["properties"].items()}
    if kind == "array":
        return [_follow(schema["items"], text)]
    if kind == ["string", "null"]:
        return "Ada" if key.lower() == "person" and "Ada" in text else None
    return {"string": "s", "integer": 7, "number": 1.5, "boolean": True}[kind]


@pytest.fixture
def plane() -> Plane:
    return Plane()


def run(plane: Plane, sql: str, functions: str | None = None) -> list[tuple[Any, ...]]:
    con = duckdb.connect()
    text, statement = prepare(con, sql, plane.endpoints(), functions)
    try:
        return con.sql(text).fetchall()
    except duckdb.Error:
        if statement.failure is not None:
            raise statement.failure from None
        raise


def test_parse_the_four_forms() -> None:
    assert response_format.parse("text").value == {"type": "text"}
    assert response_format.parse('{"type":"json_object"}').value == {"type": "json_object"}
    given = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}
    assert response_format.parse(json.dumps(given)).value == given
    bare = response_format.parse('{"type": "object", "properties": {"a": {"type": "string"}}}')
    assert bare.value["json_schema"]["schema"]["properties"] == {"a": {"type": "string"}}
    ddl = response_format.parse("STRUCT<person: STRUCT<name: STRING, age: INT, tags: ARRAY<STRING>>>")
    assert ddl.unwrap == "person"
    schema = ddl.value["json_schema"]["schema"]
    assert schema["required"] == ["person"]
    assert schema["properties"]["person"] == {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "age": {"type": "integer"},
            "tags": {"type": "array", "items": {"type": "string"}},
        },
        "required": ["name", "age", "tags"],
        "additionalProperties": False,
    }


@pytest.mark.parametrize(
    ("value", "match"),
    [
        ("STRUCT<a: STRING, b: STRING>", "exactly one top-level field"),
        ('{"type": "json_schema"}', "needs"),
        ("[1]", "must be 'text'"),
        ("{nope", "not valid JSON"),
    ],
)
def test_parse_refuses_malformed_forms(value: str, match: str) -> None:
    with pytest.raises(InvalidParameterValue, match=match):
        response_format.parse(value)


def test_response_format_is_sent_and_the_ddl_wrapper_unwrapped(plane: Plane) -> None:
    ddl = "'STRUCT<person: STRUCT<name: STRING, age: INT>>'"
    typed = "returnType => 'STRUCT<name: STRING, age: INT>'"
    rows = run(
        plane,
        f"SELECT ai_query('strict', 'who', responseFormat => {ddl}),"
        f" ai_query('strict', 'who', responseFormat => {ddl}, {typed}),"
        " ai_query('strict', 'hi', responseFormat => '{\"type\":\"json_object\"}'),"
        " ai_query('strict', 'plain', responseFormat => 'text')",
    )
    ddl_text, ddl_typed, obj, text = rows[0]
    assert json.loads(ddl_text) == {"name": "s", "age": 7}  # a JSON STRING, the wrapper key gone
    assert ddl_typed == {"name": "s", "age": 7}  # typed by returnType
    assert json.loads(obj) == {"text": "hi"}
    assert text == "I think it is ham"
    formats = [body.get("response_format") for _, body in plane.sent]
    assert {"type": "json_object"} in formats and {"type": "text"} in formats
    assert all(body.get("usage_context") == {"source": "ai_query"} for _, body in plane.sent)


def test_response_format_refused_on_custom_and_embeddings_endpoints(plane: Plane) -> None:
    with pytest.raises(InvalidParameterValue) as info:
        run(plane, "SELECT ai_query('model', 1, responseFormat => 'text')")
    assert info.value.message == CUSTOM_RESPONSE_FORMAT_REFUSED and info.value.status == 400
    with pytest.raises(InvalidParameterValue, match="only for chat endpoints"):
        run(plane, "SELECT ai_query('embed', 'x', responseFormat => '{\"type\":\"json_object\"}')")
    assert plane.sent == []


def test_a_users_response_format_refused_by_the_endpoint_fails_the_query(plane: Plane) -> None:
    with pytest.raises(InvalidParameterValue, match="not supported by Anthropic"):
        run(plane, "SELECT ai_query('refuser', 'x', responseFormat => '{\"type\":\"json_object\"}')")


def test_label_functions_ask_for_an_enum_of_their_labels(plane: Plane) -> None:
    rows = run(
        plane,
        "SELECT ai_classify(x, array('spam', 'ham')), ai_analyze_sentiment(x)"
        " FROM (VALUES ('spam, so negative'), (NULL)) v(x)",
        functions="strict",
    )
    assert rows == [("spam", "negative"), (None, None)]
    schemas = [body["response_format"]["json_schema"]["schema"] for _, body in plane.sent]
    enums = sorted(s["properties"]["label"]["enum"] for s in schemas)
    assert enums == [["positive", "negative", "neutral", "mixed"], ["spam", "ham"]]


@pytest.mark.parametrize("endpoint", ["loose", "refuser"])
def test_label_functions_fall_back_to_the_free_text(plane: Plane, endpoint: str) -> None:
    rows = run(
        plane,
        "SELECT ai_analyze_sentiment(x) FROM (VALUES ('awful'), ('fine'), ('good')) v(x) ORDER BY x",
        functions=endpoint,
    )
    assert rows == [("negative",), ("positive",), ("positive",)]
    if endpoint == "refuser":  # refused once, then asked without response_format
        with_format = [b for _, b in plane.sent if "response_format" in b]
        assert len(with_format) >= 1 and len(plane.sent) == 3 + len(with_format)


def test_ai_extract_is_a_struct_of_strings_per_label(plane: Plane) -> None:
    sql = "SELECT ai_extract(x, array('Person', 'place')) AS e FROM (VALUES ('Ada went home'), (NULL)) v(x)"
    rows = run(plane, sql, functions="strict")
    assert rows == [({"Person": "Ada", "place": None},), (None,)]
    fmt = plane.sent[0][1]["response_format"]
    assert fmt["json_schema"]["schema"]["required"] == ["Person", "place"]
    con = duckdb.connect()
    text, _ = prepare(con, sql, plane.endpoints(), "strict")
    kind = con.sql(text).types[0]
    assert str(kind) == "STRUCT(Person VARCHAR, place VARCHAR)"


@pytest.mark.parametrize("endpoint", ["loose", "refuser"])
def test_ai_extract_reads_json_from_free_text(plane: Plane, endpoint: str) -> None:
    rows = run(plane, "SELECT ai_extract('Ada went home', array('person', 'place'))", functions=endpoint)
    assert rows == [({"person": "Ada", "place": None},)]  # keys matched ignoring case


def test_ai_extract_needs_labels(plane: Plane) -> None:
    with pytest.raises(InvalidParameterValue, match="non-empty array of strings"):
        run(plane, "SELECT ai_extract('x', array())", functions="strict")


def test_statements_one_after_another_on_one_connection(plane: Plane) -> None:
    con = duckdb.connect()
    answers = []
    for labels in ("array('spam', 'ham')", "array('ham', 'eggs')"):
        text, _ = prepare(con, f"SELECT ai_classify('ham and eggs', {labels})", plane.endpoints(), "strict")
        answers.append(con.sql(text).fetchall()[0])
    assert answers == [("ham",), ("ham",)]  # each statement its own functions
