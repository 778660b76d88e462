"""The pieces modelport's own OpenAPI document is made of: one :class:`Operation` per route, the
JSON schemas the routes share, and helpers that turn the spec's pydantic models into schemas.

The table of operations is ``api/openapi_operations.py``; the document is assembled, checked
against the server's route table and served by ``api/openapi_document.py``. Not to be confused
with ``control/openapi.py``, the per-endpoint document of an endpoint's query routes (the UI's).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

__all__ = [
    "ERROR",
    "OBJECT",
    "Operation",
    "Param",
    "Schema",
    "array_of",
    "model_schema",
    "obj",
    "string",
]

Schema = dict[str, Any]

#: Every error the server sends: the Databricks error shape.
ERROR: Schema = {
    "type": "object",
    "required": ["error_code", "message"],
    "properties": {
        "error_code": {"type": "string", "examples": ["INVALID_PARAMETER_VALUE"]},
        "message": {"type": "string"},
    },
}
#: An answer or body with no fixed shape described here (a JSON object).
OBJECT: Schema = {"type": "object"}


def string(description: str = "", **extra: Any) -> Schema:
    out: Schema = {"type": "string", **extra}
    if description:
        out["description"] = description
    return out


def array_of(items: Schema, **extra: Any) -> Schema:
    return {"type": "array", "items": items, **extra}


def obj(properties: dict[str, Schema], required: tuple[str, ...] = (), **extra: Any) -> Schema:
    """A JSON object with these fields; unknown fields are ignored by the server, as Databricks does."""
    out: Schema = {"type": "object", "properties": properties, **extra}
    if required:
        out["required"] = list(required)
    return out


@dataclass(frozen=True)
class Param:
    """A query parameter (path parameters come from the route's path)."""

    name: str
    schema: Schema = field(default_factory=lambda: string())
    required: bool = False
    description: str = ""


@dataclass(frozen=True)
class Operation:
    """One method on one route, as the document describes it.

    ``body``: the JSON schema of the request body (a pydantic model of ``spec/`` or a schema),
    ``body_required``: whether an empty body is refused; ``path_params``: schemas of path
    parameters other than plain strings; ``response``: the schema of the success answer;
    ``access``: who may call it, in words (documentation; ``tests/security`` checks it);
    ``links``: OpenAPI links from the success answer to other operations (``{name:
    (operation_id, {parameter: runtime expression})}``), which stateful fuzzing follows;
    ``fields``: schemas that replace top-level body fields of ``body`` (a name's pattern that
    the spec's model checks in code).
    """

    method: str
    path: str
    summary: str
    tag: str
    access: str
    body: type[BaseModel] | Schema | None = None
    body_required: bool = True
    required: tuple[str, ...] = ()
    query: tuple[Param, ...] = ()
    path_params: dict[str, Schema] = field(default_factory=dict)
    response: Schema = field(default_factory=lambda: dict(OBJECT))
    status: int = 200
    media_type: str = "application/json"
    public: bool = False
    links: dict[str, tuple[str, dict[str, str]]] = field(default_factory=dict)
    fields: dict[str, Schema] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str]:
        return (self.method, self.path)

    @property
    def operation_id(self) -> str:
        words = re.sub(r"[^A-Za-z0-9]+", "_", self.path.replace("{", "by_").replace("}", "")).strip("_")
        index = "_index" if len(self.path) > 1 and self.path.endswith("/") else ""  # /mlflow/ beside /mlflow
        return f"{self.method.lower()}_{words}{index}"


def model_schema(
    model: type[BaseModel],
    components: dict[str, Schema],
    required: tuple[str, ...] = (),
    fields: dict[str, Schema] | None = None,
) -> Schema:
    """``model``'s JSON schema with its nested models moved to ``components`` (referenced as
    ``#/components/schemas/Name``), plus ``required``: the fields the server refuses to go
    without (the spec's models leave every field optional and check them in code)."""
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, sub in schema.pop("$defs", {}).items():
        components.setdefault(name, sub)
    if fields:
        schema["properties"] = {**schema.get("properties", {}), **fields}
    if required or fields:
        if required:
            schema["required"] = sorted(set(schema.get("required", [])) | set(required))
        components[model.__name__] = schema
    else:
        components.setdefault(model.__name__, schema)
    return {"$ref": f"#/components/schemas/{model.__name__}"}
