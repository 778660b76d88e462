"""The endpoint OpenAPI document built from MLmodel dicts and saved input examples.

The MLmodel dicts and example files are what MLflow 3.17 writes for a scikit-learn model
logged with ``input_example=<DataFrame>`` (columns f0..f3), a numpy example, and a pyfunc
logged with ``input_example=(DataFrame, params)``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from modelport.control.openapi import (
    MAX_EXAMPLE_BYTES,
    ModelInputs,
    endpoint_openapi,
    model_inputs,
    request_schema,
    served_model_inputs,
)
from modelport.entities.registry import ModelVersionRef, ResolvedModel
from modelport.entities.registry_handle import RegistryHandle
from modelport.errors import ResourceDoesNotExist
from modelport.store.records import ConfigRecord, EndpointRecord

COLUMNS = ["f0", "f1", "f2", "f3"]
SIGNATURE = {
    "inputs": json.dumps([{"type": "double", "name": c, "required": True} for c in COLUMNS]),
    "outputs": '[{"type": "long", "required": true}]',
    "params": None,
}
DATAFRAME_MLMODEL: dict[str, Any] = {
    "flavors": {"python_function": {"loader_module": "mlflow.sklearn"}},
    "saved_input_example_info": {
        "artifact_path": "input_example.json",
        "pandas_orient": "split",
        "serving_input_path": "serving_input_example.json",
        "type": "dataframe",
    },
    "signature": SIGNATURE,
}
ROWS = [[0.63, 0.26, 0.04, 0.01], [0.81, 0.91, 0.6, 0.72]]
SERVING_EXAMPLE = {"dataframe_split": {"columns": COLUMNS, "data": ROWS}}


def model_folder(tmp_path: Path, files: dict[str, Any]) -> Path:
    folder = tmp_path / "model"
    folder.mkdir()
    for name, content in files.items():
        (folder / name).write_text(content if isinstance(content, str) else json.dumps(content))
    return folder


def test_the_serving_input_example_is_the_request_example(tmp_path: Path) -> None:
    folder = model_folder(
        tmp_path,
        {
            "serving_input_example.json": SERVING_EXAMPLE,
            "input_example.json": {"columns": COLUMNS, "data": ROWS},
        },
    )

    found = model_inputs(DATAFRAME_MLMODEL, folder, "Model 'fd' version 2.")

    assert found.example == SERVING_EXAMPLE
    assert found.inputs == [{"type": "double", "name": c, "required": True} for c in COLUMNS]
    assert found.about == "Model 'fd' version 2. Example from serving_input_example.json."


def test_an_older_model_gets_its_example_from_input_example_json_with_params(tmp_path: Path) -> None:
    mlmodel = {
        "saved_input_example_info": {
            "artifact_path": "input_example.json",
            "pandas_orient": "split",
            "params": "true",
            "type": "dataframe",
        },
        "signature": {
            "inputs": '[{"type": "string", "name": "a", "required": true}]',
            "params": '[{"name": "temperature", "default": 0.5, "shape": null, "type": "double"}]',
        },
    }
    saved = {"inputs": {"columns": ["a"], "data": [["x"]]}, "params": {"temperature": 0.5}}
    folder = model_folder(tmp_path, {"input_example.json": saved})

    found = model_inputs(mlmodel, folder)

    assert found.example == {
        "dataframe_split": {"columns": ["a"], "data": [["x"]]},
        "params": {"temperature": 0.5},
    }
    assert found.params == [{"name": "temperature", "default": 0.5, "shape": None, "type": "double"}]


def test_a_records_example_and_a_numpy_example(tmp_path: Path) -> None:
    records = [{"a": 1}]
    folder = model_folder(tmp_path, {"input_example.json": records})
    info = {"type": "dataframe", "pandas_orient": "records"}
    assert model_inputs({"saved_input_example_info": info}, folder).example == {"dataframe_records": records}

    (folder / "input_example.json").write_text(json.dumps(ROWS))
    numpy = {"saved_input_example_info": {"type": "ndarray"}}
    assert model_inputs(numpy, folder).example == {"inputs": ROWS}


def test_a_model_without_signature_or_example_says_so(tmp_path: Path) -> None:
    found = model_inputs({"flavors": {}}, model_folder(tmp_path, {}), "Model 'm' version 1.")

    assert found == ModelInputs(
        about="Model 'm' version 1. The model has no signature. The model has no input example."
    )


def test_files_elsewhere_or_too_large_leave_the_example_out(tmp_path: Path) -> None:
    remote = model_inputs(DATAFRAME_MLMODEL, None)
    assert remote.example is None and remote.inputs is not None
    assert "not on this server" in remote.about

    big = {"dataframe_split": {"columns": ["a"], "data": [["x" * 1000]] * (MAX_EXAMPLE_BYTES // 1000)}}
    found = model_inputs(DATAFRAME_MLMODEL, model_folder(tmp_path, {"serving_input_example.json": big}))
    assert found.example is None
    assert f"more than {MAX_EXAMPLE_BYTES}" in found.about


def test_request_schema_names_the_signature_columns_and_params() -> None:
    inputs = [
        {"type": "double", "name": "f0", "required": True},
        {"type": "long", "name": "n", "required": False},
        {"type": "array", "items": {"type": "string"}, "name": "tags", "required": True},
    ]
    params = [{"name": "temperature", "default": 0.5, "shape": None, "type": "double"}]

    schema = request_schema(inputs, params)

    record = schema["properties"]["dataframe_records"]["items"]
    assert record == {
        "type": "object",
        "properties": {
            "f0": {"type": "number", "format": "double"},
            "n": {"type": "integer", "format": "int64"},
            "tags": {"type": "array", "items": {"type": "string"}},
        },
        "required": ["f0", "tags"],
    }
    assert schema["properties"]["dataframe_split"]["properties"]["columns"]["items"]["enum"] == [
        "f0",
        "n",
        "tags",
    ]
    assert schema["properties"]["params"]["properties"] == {
        "temperature": {"type": "number", "format": "double", "default": 0.5}
    }


def test_request_schema_of_a_tensor_model() -> None:
    inputs = [{"type": "tensor", "tensor-spec": {"dtype": "float64", "shape": [-1, 4]}}]

    schema = request_schema(inputs, None)

    tensor = {"type": "array", "items": {"type": "array", "items": {"type": "number"}}}
    assert schema["properties"]["inputs"] == tensor
    assert schema["properties"]["dataframe_records"] == {"type": "array", "items": {"type": "object"}}


def endpoint(task: str | None = None) -> EndpointRecord:
    return EndpointRecord(
        id="e1",
        name="fraud",
        creator="admin",
        created_ms=1,
        updated_ms=1,
        config_update="NOT_UPDATING",
        task=task,
    )


def config(entities: list[dict[str, Any]], routes: list[dict[str, Any]] | None = None) -> ConfigRecord:
    body = {"served_entities": entities, "traffic_config": {"routes": routes or []}}
    return ConfigRecord("e1", 3, body, "ACTIVE", "admin", 1)


def test_each_route_carries_its_models_schema_and_example_and_the_endpoint_its_main_ones() -> None:
    other = {"dataframe_records": [{"x": 1}]}
    models = {
        "a": ModelInputs(
            inputs=json.loads(SIGNATURE["inputs"]), example=SERVING_EXAMPLE, about="Model 'fd' version 2."
        ),
        "b": ModelInputs(example=other, about="Model 'fd' version 1. The model has no signature."),
    }
    cfg = config(
        [{"name": "a", "entity_name": "main.default.fd"}, {"name": "b", "entity_name": "main.default.fd"}],
        [
            {"served_entity_name": "a", "traffic_percentage": 30},
            {"served_entity_name": "b", "traffic_percentage": 70},
        ],
    )

    doc = endpoint_openapi(endpoint(), cfg, "http://h", models)

    main = doc["paths"]["/serving-endpoints/fraud/invocations"]["post"]
    assert main["requestBody"]["content"]["application/json"]["example"] == other  # b has 70%
    assert main["description"] == "Model 'fd' version 1. The model has no signature."
    direct = doc["paths"]["/serving-endpoints/fraud/served-models/a/invocations"]["post"]
    media = direct["requestBody"]["content"]["application/json"]
    assert media["example"] == SERVING_EXAMPLE
    assert list(media["schema"]["properties"]["dataframe_records"]["items"]["properties"]) == COLUMNS
    assert "x-modelport-task" not in doc


def test_a_system_model_endpoint_gets_its_task_and_a_chat_example() -> None:
    cfg = config([{"name": "smol", "entity_name": "system.ai.smollm2-135m-instruct", "entity_version": "1"}])

    doc = endpoint_openapi(endpoint(), cfg, "http://h")

    assert doc["x-modelport-task"] == "llm/v1/chat"
    media = doc["paths"]["/serving-endpoints/fraud/invocations"]["post"]["requestBody"]["content"][
        "application/json"
    ]
    assert media["schema"]["required"] == ["messages"]
    assert media["example"] == {"messages": [{"role": "user", "content": "Hello!"}], "max_tokens": 64}


class FakeRegistry:
    """Resolves 'main.default.fd' (any form) to model 'fd'; its files are in ``folder``."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.asked: list[tuple[str, str]] = []

    def resolve(self, entity_name: str, entity_version: str) -> ResolvedModel:
        self.asked.append((entity_name, entity_version))
        if entity_name.rsplit(".", 1)[-1] != "fd":
            raise ResourceDoesNotExist(f"Registered model '{entity_name}' does not exist.")
        ref = ModelVersionRef("fd", "2", alias="champion" if entity_version == "@champion" else None)
        return ResolvedModel(ref, "mlflow-artifacts:/1/models/m-1/artifacts", DATAFRAME_MLMODEL)

    def local_path(self, artifact_uri: str) -> Path:
        return self.folder


def test_served_model_inputs_resolve_each_custom_entity_through_the_registry(tmp_path: Path) -> None:
    registry = FakeRegistry(model_folder(tmp_path, {"serving_input_example.json": SERVING_EXAMPLE}))
    handle = RegistryHandle()
    handle.set(registry)  # type: ignore[arg-type]
    cfg = config(
        [
            {"name": "a", "entity_name": "main.default.fd", "entity_version": "@champion"},
            {"name": "gone", "entity_name": "main.default.gone", "entity_version": "1"},
            {"name": "chat", "external_model": {"provider": "openai", "name": "gpt", "task": "llm/v1/chat"}},
        ]
    )

    found = served_model_inputs(handle, cfg)

    assert set(found) == {"a", "gone"}
    assert found["a"].example == SERVING_EXAMPLE
    assert found["a"].model == {"name": "fd", "version": "2"}
    assert found["a"].about == "Model 'fd' version 2 (@champion). Example from serving_input_example.json."
    assert found["gone"].example is None
    assert found["gone"].about == (
        "Model 'main.default.gone' version 1 could not be read: "
        "Registered model 'main.default.gone' does not exist."
    )
    assert registry.asked == [("main.default.fd", "@champion"), ("main.default.gone", "1")]


def test_served_model_inputs_do_not_wait_for_a_registry_still_loading() -> None:
    handle = RegistryHandle(wait_seconds=30)
    cfg = config([{"name": "a", "entity_name": "main.default.fd", "entity_version": "1"}])

    found = served_model_inputs(handle, cfg)

    assert found["a"].example is None
    assert "registry is still starting" in found["a"].about


def test_a_signature_that_is_not_json_counts_as_none(tmp_path: Path) -> None:
    found = model_inputs({"signature": {"inputs": "[{not json"}}, model_folder(tmp_path, {}))

    assert found.inputs is None
    assert found.about == "The model has no signature. The model has no input example."
