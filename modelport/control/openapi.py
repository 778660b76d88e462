"""The OpenAPI document of one endpoint's query API (``GET .../openapi``).

For a custom-model endpoint the request schema comes from each served model's MLflow
signature and the request ``example`` from the input example MLflow saved beside the
MLmodel file (``serving_input_example.json``, else ``input_example.json``). The server
resolves the entity name (``name``, ``models:/name``, ``catalog.schema.name``, versions
or ``@alias``) with the registry, so the web UI builds its playground form and snippets
from this document and never resolves names itself. What could not be read (no registry
yet, a model that is gone, files in a remote artifact store) is said in the operation's
``description``; the document is still served, with the generic schema.

Extensions: ``x-modelport-task`` (root) is the endpoint's task when it has one
(``llm/v1/chat``, ...); ``x-modelport-model`` (operation) names the registered model
version the entity resolved to; ``x-modelport-outputs`` (operation) is its signature's outputs
(what ``ai_query`` types its answer by).
"""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelport.entities.foundation.catalog import system_model
from modelport.errors import ModelportError
from modelport.spec.endpoint import runs_in_gateway
from modelport.store.records import ConfigRecord, EndpointRecord

if TYPE_CHECKING:
    from modelport.entities.registry import ModelRegistry
    from modelport.entities.registry_handle import RegistryHandle

__all__ = ["ModelInputs", "endpoint_openapi", "model_inputs", "request_schema", "served_model_inputs"]

#: Input examples larger than this are not put in the document (images, long texts).
MAX_EXAMPLE_BYTES = 256 * 1024

_ERROR = {"type": "object", "properties": {"error_code": {"type": "string"}, "message": {"type": "string"}}}
_ONE_OF = "Exactly one of dataframe_split, dataframe_records, instances or inputs."
_CUSTOM_REQUEST: dict[str, Any] = {
    "type": "object",
    "description": _ONE_OF,
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
_TEXTS = {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}
_TASK_REQUESTS: dict[str, dict[str, Any]] = {
    "llm/v1/chat": {
        "type": "object",
        "required": ["messages"],
        "properties": {"messages": _MESSAGES, **_SAMPLING},
    },
    "llm/v1/completions": {
        "type": "object",
        "required": ["prompt"],
        "properties": {"prompt": _TEXTS, **_SAMPLING},
    },
    "llm/v1/embeddings": {"type": "object", "required": ["input"], "properties": {"input": _TEXTS}},
}
_TASK_EXAMPLES: dict[str, dict[str, Any]] = {
    "llm/v1/chat": {"messages": [{"role": "user", "content": "Hello!"}], "max_tokens": 64},
    "llm/v1/completions": {"prompt": "Hello!", "max_tokens": 64},
    "llm/v1/embeddings": {"input": ["Hello!"]},
}

# MLflow's column and tensor types → JSON Schema (with OpenAPI's number formats).
_SCALARS: dict[str, dict[str, Any]] = {
    "boolean": {"type": "boolean"},
    "integer": {"type": "integer", "format": "int32"},
    "long": {"type": "integer", "format": "int64"},
    "float": {"type": "number", "format": "float"},
    "double": {"type": "number", "format": "double"},
    "string": {"type": "string"},
    "binary": {"type": "string", "contentEncoding": "base64"},
    "datetime": {"type": "string", "format": "date-time"},
    "any": {},
}


@dataclasses.dataclass(frozen=True)
class ModelInputs:
    """What one served model's files say about its input.

    ``inputs`` and ``params`` are the signature's JSON lists (None without a signature);
    ``example`` is a request body (None without a usable input example); ``about`` says
    which model version this is and what could not be read, in sentences.
    """

    inputs: list[dict[str, Any]] | None = None
    params: list[dict[str, Any]] | None = None
    example: dict[str, Any] | None = None
    about: str = ""
    model: dict[str, str] | None = None
    #: The signature's outputs (JSON list), None without them.
    outputs: list[dict[str, Any]] | None = None


def _signature_part(mlmodel: Mapping[str, Any], key: str) -> list[dict[str, Any]] | None:
    raw = (mlmodel.get("signature") or {}).get(key)
    if not raw:
        return None
    try:
        value = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:  # a hand-edited MLmodel: no signature rather than no document
        return None
    return [dict(v) for v in value] if isinstance(value, list) else None


def _read_json(path: Path) -> Any:
    size = path.stat().st_size
    if size > MAX_EXAMPLE_BYTES:
        raise ValueError(f"{path.name} is {size} bytes, more than {MAX_EXAMPLE_BYTES} to show here")
    return json.loads(path.read_text())


def _example_body(info: Mapping[str, Any], folder: Path) -> tuple[dict[str, Any] | None, str]:
    """The request body of the saved input example, and the file it came from."""
    serving = folder / str(info.get("serving_input_path") or "serving_input_example.json")
    if serving.is_file():
        body = _read_json(serving)
        return (body, serving.name) if isinstance(body, dict) else (None, "")
    saved = folder / str(info.get("artifact_path") or "input_example.json")
    if not saved.is_file():
        return None, ""
    example = _read_json(saved)
    params = None
    if str(info.get("params", "")).lower() == "true" and isinstance(example, dict):
        example, params = example.get("inputs"), example.get("params")  # saved as {inputs, params}
    kind = info.get("type")
    body: dict[str, Any]
    if kind == "dataframe":
        orient = info.get("pandas_orient", "split")
        body = {"dataframe_records" if orient == "records" else "dataframe_split": example}
    elif kind == "ndarray" and isinstance(example, dict) and ({"inputs", "instances"} & set(example)):
        body = dict(example)  # already in TF-serving form
    elif kind in ("ndarray", "json_object"):
        body = {"inputs": example}
    else:
        return None, ""  # sparse matrices and formats MLflow adds later: no example rather than a wrong one
    if params:
        body["params"] = params
    return body, saved.name


def model_inputs(mlmodel: Mapping[str, Any], folder: Path | None, about: str = "") -> ModelInputs:
    """Signature and input example of a model whose MLmodel is ``mlmodel`` and whose files
    are in ``folder`` (None: not on this machine). Reads at most the example files."""
    notes = [about] if about else []
    inputs, params = _signature_part(mlmodel, "inputs"), _signature_part(mlmodel, "params")
    if inputs is None:
        notes.append("The model has no signature.")
    example: dict[str, Any] | None = None
    if folder is None:
        notes.append("Its files are not on this server, so its input example was not read.")
    else:
        try:
            example, source = _example_body(mlmodel.get("saved_input_example_info") or {}, folder)
        except (OSError, ValueError) as exc:  # unreadable or too large: the document still serves
            notes.append(f"Its input example was not read: {exc}.")
        else:
            notes.append(f"Example from {source}." if example else "The model has no input example.")
    outputs = _signature_part(mlmodel, "outputs")
    return ModelInputs(inputs=inputs, params=params, example=example, about=" ".join(notes), outputs=outputs)


def read_model_inputs(registry: ModelRegistry, entity: Mapping[str, Any]) -> ModelInputs:
    """Resolve one served entity in the registry and read its inputs (blocking)."""
    wanted = f"'{entity['entity_name']}' version {entity['entity_version']}"
    try:
        resolved = registry.resolve(str(entity["entity_name"]), str(entity["entity_version"]))
    except ModelportError as exc:
        return ModelInputs(about=f"Model {wanted} could not be read: {exc.message}")
    ref = resolved.ref
    about = f"Model '{ref.name}' version {ref.version}" + (f" (@{ref.alias})" if ref.alias else "") + "."
    found = model_inputs(resolved.mlmodel, registry.local_path(resolved.artifact_uri), about)
    return dataclasses.replace(found, model={"name": ref.name, "version": ref.version})


def _custom(entity: Mapping[str, Any]) -> bool:
    return (
        not runs_in_gateway(entity)
        and "foundation_model" not in entity
        and system_model(str(entity.get("entity_name", ""))) is None
    )


def served_model_inputs(registry: RegistryHandle, config: ConfigRecord | None) -> dict[str, ModelInputs]:
    """Inputs of each custom-model served entity of ``config``, by served entity name
    (blocking; never waits for a registry that is still loading)."""
    entities = [e for e in (config.body["served_entities"] if config else []) if _custom(e)]
    if not entities:
        return {}
    if not registry.loaded:
        note = ModelInputs(
            about="The model registry is still starting: the model's signature and example are left out."
        )
        return {e["name"]: note for e in entities}
    loaded = registry.get()
    return {e["name"]: read_model_inputs(loaded, e) for e in entities}


# ---- schemas ----------------------------------------------------------------------------------
def _dtype_schema(dtype: str) -> dict[str, Any]:
    """A numpy dtype name (``float64``, ``int32``, ``bool``, ``str``, ...) as JSON Schema."""
    if dtype.startswith("float"):
        return {"type": "number"}
    if "int" in dtype:
        return {"type": "integer"}
    if dtype == "bool":
        return {"type": "boolean"}
    if dtype in ("str", "object"):
        return {"type": "string"}
    return {}


def _type_schema(spec: Mapping[str, Any]) -> dict[str, Any]:
    kind = spec.get("type")
    if kind == "array":
        return {"type": "array", "items": _type_schema(spec.get("items") or {})}
    if kind == "object":
        props = spec.get("properties") or {}
        out: dict[str, Any] = {"type": "object", "properties": {k: _type_schema(v) for k, v in props.items()}}
        required = [k for k, v in props.items() if v.get("required", True)]
        return {**out, "required": required} if required else out
    if kind == "map":
        return {"type": "object", "additionalProperties": _type_schema(spec.get("values") or {})}
    if kind == "tensor":
        tensor = spec.get("tensor-spec") or {}
        inner = _dtype_schema(str(tensor.get("dtype", "")))
        for _ in tensor.get("shape") or []:
            inner = {"type": "array", "items": inner}
        return inner
    return dict(_SCALARS.get(str(kind), {}))


def request_schema(
    inputs: list[dict[str, Any]] | None, params: list[dict[str, Any]] | None
) -> dict[str, Any]:
    """The request body schema for a model with signature ``inputs`` / ``params``."""
    schema = copy.deepcopy(_CUSTOM_REQUEST)
    props = schema["properties"]
    if params:
        props["params"] = {
            "type": "object",
            "properties": {
                str(p["name"]): {
                    **(
                        _type_schema({"type": p.get("type")})
                        if not p.get("shape")
                        else {"type": "array", "items": _type_schema({"type": p.get("type")})}
                    ),
                    **({"default": p["default"]} if p.get("default") is not None else {}),
                }
                for p in params
                if p.get("name")
            },
        }
    if not inputs:
        return schema
    if all(spec.get("type") == "tensor" for spec in inputs):
        named = all(spec.get("name") for spec in inputs)
        tensors = (
            {"type": "object", "properties": {str(s["name"]): _type_schema(s) for s in inputs}}
            if named and len(inputs) > 1
            else _type_schema(inputs[0])
        )
        props["inputs"] = tensors
        props["instances"] = tensors if tensors.get("type") == "array" else {"type": "array"}
        schema["description"] = f"{_ONE_OF} The model takes tensors (inputs or instances)."
        return schema
    if not all(spec.get("name") for spec in inputs):
        return schema  # unnamed columns: positions only, nothing to name in a record
    record: dict[str, Any] = {
        "type": "object",
        "properties": {str(s["name"]): _type_schema(s) for s in inputs},
    }
    required = [str(s["name"]) for s in inputs if s.get("required", True)]
    if required:
        record["required"] = required
    names = [str(s["name"]) for s in inputs]
    props["dataframe_records"] = {"type": "array", "items": record}
    props["dataframe_split"]["properties"]["columns"] = {
        "type": "array",
        "items": {"type": "string", "enum": names},
    }
    props["instances"] = {"type": "array", "items": record}
    schema["description"] = f"{_ONE_OF} Columns of the model signature: {', '.join(names)}."
    return schema


# ---- the document -----------------------------------------------------------------------------
def _operation(
    summary: str, request: dict[str, Any], example: dict[str, Any] | None, inputs: ModelInputs | None
) -> dict[str, Any]:
    media: dict[str, Any] = {"schema": request}
    if example is not None:
        media["example"] = example
    op: dict[str, Any] = {"summary": summary}
    if inputs is not None and inputs.about:
        op["description"] = inputs.about
    if inputs is not None and inputs.model:
        op["x-modelport-model"] = inputs.model
    if inputs is not None and inputs.outputs:
        op["x-modelport-outputs"] = inputs.outputs
    op.update(
        {
            "requestBody": {"required": True, "content": {"application/json": media}},
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
    )
    return op


def _task(endpoint: EndpointRecord, config: ConfigRecord | None) -> str | None:
    if endpoint.task:
        return endpoint.task
    models = [
        system_model(str(e.get("entity_name", "")))
        for e in (config.body["served_entities"] if config else [])
    ]
    tasks = {m.task for m in models if m is not None}
    return tasks.pop() if len(tasks) == 1 and all(models) else None


def _main_entity(config: ConfigRecord | None) -> str | None:
    """The served entity with the largest traffic share (the first on a tie)."""
    if config is None or not config.body["served_entities"]:
        return None
    routes = (config.body.get("traffic_config") or {}).get("routes") or []
    if not routes:
        return str(config.body["served_entities"][0]["name"])
    return str(max(routes, key=lambda r: r.get("traffic_percentage", 0))["served_entity_name"])


def endpoint_openapi(
    endpoint: EndpointRecord,
    config: ConfigRecord | None,
    server_url: str,
    models: Mapping[str, ModelInputs] | None = None,
) -> dict[str, Any]:
    """The document; ``models`` holds :func:`served_model_inputs` for custom-model entities.
    The endpoint's own route uses the model of the entity with the most traffic."""
    models = models or {}
    task = _task(endpoint, config)

    def operation(summary: str, entity: str | None) -> dict[str, Any]:
        if task in _TASK_REQUESTS:
            return _operation(summary, _TASK_REQUESTS[task], _TASK_EXAMPLES[task], None)
        found = models.get(entity or "")
        if found is None:
            return _operation(summary, _CUSTOM_REQUEST, None, None)
        return _operation(summary, request_schema(found.inputs, found.params), found.example, found)

    paths: dict[str, Any] = {
        f"/serving-endpoints/{endpoint.name}/invocations": {
            "post": operation(f"Query endpoint {endpoint.name}", _main_entity(config))
        },
    }
    for entity in config.body["served_entities"] if config else []:
        paths[f"/serving-endpoints/{endpoint.name}/served-models/{entity['name']}/invocations"] = {
            "post": operation(f"Query served entity {entity['name']} directly", entity["name"])
        }
    doc: dict[str, Any] = {
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
    if task:
        doc["x-modelport-task"] = task
    return doc
