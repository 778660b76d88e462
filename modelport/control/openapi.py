"""The OpenAPI document of one endpoint's query API (``GET .../openapi``)."""

from __future__ import annotations

from typing import Any

from modelport.store.records import ConfigRecord, EndpointRecord

__all__ = ["endpoint_openapi"]

_ERROR = {"type": "object", "properties": {"error_code": {"type": "string"}, "message": {"type": "string"}}}
_CUSTOM_REQUEST = {
    "type": "object",
    "description": "Exactly one of dataframe_split, dataframe_records, instances or inputs.",
    "properties": {
        "dataframe_split": {
            "type": "object",
            "properties": {
                "columns": {"type": "array", "items": {}},
                "data": {"type": "array", "items": {"type": "array"}},
                "index": {"type": "array", "items": {"type": "integer"}},
            },
        },
        "dataframe_records": {"type": "array", "items": {"type": "object"}},
        "instances": {"type": "array", "items": {}},
        "inputs": {},
        "params": {"type": "object"},
        "client_request_id": {"type": "string"},
    },
}
_MESSAGES = {
    "type": "array",
    "items": {
        "type": "object",
        "required": ["role", "content"],
        "properties": {
            "role": {"type": "string", "enum": ["system", "user", "assistant", "tool"]},
            "content": {"type": "string"},
        },
    },
}
_SAMPLING = {
    "max_tokens": {"type": "integer"},
    "temperature": {"type": "number", "minimum": 0, "maximum": 2},
    "n": {"type": "integer", "minimum": 1, "maximum": 5},
    "stop": {"type": "array", "items": {"type": "string"}},
    "stream": {"type": "boolean"},
}
_TASK_REQUESTS: dict[str, dict[str, Any]] = {
    "llm/v1/chat": {
        "type": "object",
        "required": ["messages"],
        "properties": {"messages": _MESSAGES, **_SAMPLING},
    },
    "llm/v1/completions": {
        "type": "object",
        "required": ["prompt"],
        "properties": {
            "prompt": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
            **_SAMPLING,
        },
    },
    "llm/v1/embeddings": {
        "type": "object",
        "required": ["input"],
        "properties": {
            "input": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}
        },
    },
}


def _operation(summary: str, request: dict[str, Any]) -> dict[str, Any]:
    return {
        "summary": summary,
        "requestBody": {"required": True, "content": {"application/json": {"schema": request}}},
        "responses": {
            "200": {
                "description": "Prediction",
                "content": {"application/json": {"schema": {"type": "object"}}},
            },
            "400": {"description": "Bad input", "content": {"application/json": {"schema": _ERROR}}},
            "429": {
                "description": "Rate limit exceeded",
                "content": {"application/json": {"schema": _ERROR}},
            },
        },
    }


def endpoint_openapi(
    endpoint: EndpointRecord, config: ConfigRecord | None, server_url: str
) -> dict[str, Any]:
    request = _TASK_REQUESTS.get(endpoint.task or "", _CUSTOM_REQUEST)
    paths: dict[str, Any] = {
        f"/serving-endpoints/{endpoint.name}/invocations": {
            "post": _operation(f"Query endpoint {endpoint.name}", request)
        },
    }
    for entity in config.body["served_entities"] if config else []:
        paths[f"/serving-endpoints/{endpoint.name}/served-models/{entity['name']}/invocations"] = {
            "post": _operation(f"Query served entity {entity['name']} directly", request)
        }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": endpoint.name,
            "version": str(config.version if config else 0),
            "description": f"Query API of serving endpoint '{endpoint.name}'.",
        },
        "servers": [{"url": server_url}],
        "security": [{"bearerAuth": []}],
        "components": {"securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}}},
        "paths": paths,
    }
