"""``ai_query``'s ``responseFormat`` as the OpenAI ``response_format`` of a chat request, the JSON
schemas of the task functions that answer a label or a struct, and the reading of their answers.

``responseFormat`` takes what Databricks takes (research §1.1):

- ``'text'``: ``{"type": "text"}``;
- ``'{"type":"json_object"}'`` (or any OpenAI ``response_format`` object as JSON text, such as
  ``{"type": "json_schema", "json_schema": {"name": ..., "schema": {...}}}``): sent as it is;
- a bare JSON schema (``'{"type":"object","properties":{...}}'``): sent as ``json_schema``;
- a Spark DDL ``STRUCT<field: TYPE>`` with exactly one top-level field: the field's type as a
  JSON schema wrapped in an object ``{field: ...}``; the answer is unwrapped (the value of
  ``field``), as Databricks discards that wrapper key.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlglot
from sqlglot import exp

from modelport.errors import InvalidParameterValue

__all__ = ["ResponseFormat", "classify_format", "extract_format", "json_object", "parse"]

_STRINGS = {
    exp.DataType.Type.TEXT,
    exp.DataType.Type.VARCHAR,
    exp.DataType.Type.CHAR,
    exp.DataType.Type.DATE,
    exp.DataType.Type.TIMESTAMP,
}
_INTEGERS = {
    exp.DataType.Type.TINYINT,
    exp.DataType.Type.SMALLINT,
    exp.DataType.Type.INT,
    exp.DataType.Type.BIGINT,
}
_NUMBERS = {exp.DataType.Type.FLOAT, exp.DataType.Type.DOUBLE, exp.DataType.Type.DECIMAL}


@dataclass(frozen=True)
class ResponseFormat:
    #: The OpenAI ``response_format`` as JSON text (hashable, so calls can be told apart).
    json: str
    #: The DDL form's one top-level field: the answer is that field's value.
    unwrap: str | None = None

    @property
    def value(self) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads(self.json)
        return loaded

    @property
    def is_json(self) -> bool:
        return self.value.get("type") != "text"


def _schema(node: exp.DataType) -> dict[str, Any]:
    """A Spark type as a JSON schema (structs: every field required, no other field)."""
    kind = node.this
    if kind in _STRINGS:
        return {"type": "string"}
    if kind in _INTEGERS:
        return {"type": "integer"}
    if kind in _NUMBERS:
        return {"type": "number"}
    if kind == exp.DataType.Type.BOOLEAN:
        return {"type": "boolean"}
    if kind == exp.DataType.Type.ARRAY and node.expressions:
        return {"type": "array", "items": _schema(node.expressions[0])}
    if kind == exp.DataType.Type.STRUCT:
        fields = {c.name: _schema(c.args["kind"]) for c in node.expressions}
        return {
            "type": "object",
            "properties": fields,
            "required": list(fields),
            "additionalProperties": False,
        }
    raise InvalidParameterValue(f"ai_query: responseFormat cannot express the type {node.sql('databricks')}.")


def _named(name: str, schema: dict[str, Any]) -> str:
    return json.dumps(
        {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": True}}
    )


def parse(value: Any) -> ResponseFormat:
    """``responseFormat``'s constant as the OpenAI ``response_format`` to send."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidParameterValue("ai_query: responseFormat must be a non-empty string.")
    text = value.strip()
    if text.lower() == "text":
        return ResponseFormat(json.dumps({"type": "text"}))
    if text.startswith("{"):
        try:
            given = json.loads(text)
        except ValueError as exc:
            raise InvalidParameterValue(f"ai_query: responseFormat is not valid JSON: {exc}") from None
        if not isinstance(given, dict):
            raise InvalidParameterValue("ai_query: responseFormat must be a JSON object.")
        kind = given.get("type")
        if kind in ("text", "json_object"):
            return ResponseFormat(json.dumps({"type": kind}))
        if kind == "json_schema":
            block = given.get("json_schema")
            if not isinstance(block, dict) or not isinstance(block.get("schema"), dict):
                raise InvalidParameterValue(
                    'ai_query: a responseFormat of type json_schema needs "json_schema": '
                    '{"name": ..., "schema": {...}}.'
                )
            return ResponseFormat(json.dumps({"type": "json_schema", "json_schema": block}))
        return ResponseFormat(_named("response", given))  # a bare JSON schema
    if text.upper().startswith("STRUCT"):
        try:
            node = exp.DataType.build(text, dialect="databricks")
        except (sqlglot.errors.ParseError, ValueError) as exc:
            raise InvalidParameterValue(f"ai_query: responseFormat {text!r} is not a type: {exc}") from None
        if node.this != exp.DataType.Type.STRUCT or len(node.expressions) != 1:
            raise InvalidParameterValue(
                "ai_query: a responseFormat STRUCT must have exactly one top-level field; "
                f"got {node.sql('databricks')}."
            )
        field = node.expressions[0].name
        return ResponseFormat(_named(field, _schema(node)), unwrap=field)
    raise InvalidParameterValue(
        "ai_query: responseFormat must be 'text', a JSON object such as "
        '\'{"type":"json_object"}\', a JSON schema, or a STRUCT<field: TYPE> with one field; '
        f"got {text!r}."
    )


def classify_format(labels: Sequence[str]) -> ResponseFormat:
    """An answer ``{"label": one of labels}`` (``ai_classify``, ``ai_analyze_sentiment``)."""
    schema = {
        "type": "object",
        "properties": {"label": {"type": "string", "enum": list(labels)}},
        "required": ["label"],
        "additionalProperties": False,
    }
    return ResponseFormat(_named("classification", schema))


def extract_format(labels: Sequence[str]) -> ResponseFormat:
    """An answer with one string-or-null field per label (``ai_extract``)."""
    schema = {
        "type": "object",
        "properties": {label: {"type": ["string", "null"]} for label in labels},
        "required": list(labels),
        "additionalProperties": False,
    }
    return ResponseFormat(_named("extraction", schema))


def json_object(text: Any) -> dict[str, Any] | None:
    """The JSON object a model answered: the whole text, else its outermost ``{...}`` (models
    that ignore ``response_format`` tend to wrap it in prose or a code fence); None if none."""
    if not isinstance(text, str):
        return text if isinstance(text, dict) else None
    for candidate in (text.strip(), text[text.find("{") : text.rfind("}") + 1]):
        try:
            found = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(found, dict):
            return found
    return None
