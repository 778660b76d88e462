"""``GET /api/2.0/serving-endpoints/{name}/openapi`` of custom-model endpoints: the server
resolves the entity name (``catalog.schema.name``, ``@alias``) and puts the model's
signature and saved input example in the document, for the web UI and any client."""

from __future__ import annotations

from typing import Any

import httpx
import numpy as np

from tests.integration.conftest import log_sklearn_model
from tests.serverproc import ADMIN_TOKEN, ServerProcess
from tests.support.endpoints import wait_settled

API = "/api/2.0/serving-endpoints"
COLUMNS = ["f0", "f1", "f2", "f3"]


def example_rows() -> list[list[float]]:
    """The first two rows ``log_sklearn_model`` logs as its input example."""
    return [[float(v) for v in row] for row in np.random.default_rng(0).random((40, 4))[:2]]


def openapi(http: httpx.Client, name: str, entity_name: str, version: str) -> dict[str, Any]:
    entity = {"name": "m", "entity_name": entity_name, "entity_version": version, "workload_size": "Small"}
    created = http.post(API, json={"name": name, "config": {"served_entities": [entity]}})
    assert created.status_code == 200, created.text
    got = http.get(f"{API}/{name}/openapi")
    assert got.status_code == 200, got.text
    return dict(got.json())


def request_of(doc: dict[str, Any], path: str) -> tuple[dict[str, Any], dict[str, Any]]:
    op = doc["paths"][path]["post"]
    return op, op["requestBody"]["content"]["application/json"]


def test_a_catalog_schema_name_entity_gets_the_models_example_and_columns(
    http: httpx.Client, iris_model: str
) -> None:
    doc = openapi(http, "openapi-catalog", f"main.default.{iris_model}", "@champion")

    expected = {"dataframe_split": {"columns": COLUMNS, "data": example_rows()}}
    for path in (
        "/serving-endpoints/openapi-catalog/invocations",
        "/serving-endpoints/openapi-catalog/served-models/m/invocations",
    ):
        op, media = request_of(doc, path)
        assert media["example"] == expected
        record = media["schema"]["properties"]["dataframe_records"]["items"]
        assert list(record["properties"]) == COLUMNS
        assert record["properties"]["f0"] == {"type": "number", "format": "double"}
        assert op["x-modelport-model"] == {"name": iris_model, "version": "2"}
        assert op["description"] == (
            f"Model '{iris_model}' version 2 (@champion). Example from serving_input_example.json."
        )


def test_the_example_is_a_body_the_endpoint_answers(http: httpx.Client, iris_model: str) -> None:
    """What the document offers is what the endpoint takes (the UI sends it as it is)."""
    doc = openapi(http, "openapi-query", f"models:/main.default.{iris_model}", "1")
    _, media = request_of(doc, "/serving-endpoints/openapi-query/invocations")
    body = media["example"]
    wait_settled(http, "openapi-query", timeout=120)

    answer = http.post("/serving-endpoints/openapi-query/invocations", json=body, timeout=120)

    assert answer.status_code == 200, answer.text
    assert answer.json() == {"predictions": [1, 1]}  # label: f0 > 0.5, and both rows have f0 > 0.6


def test_a_model_without_signature_or_example_says_so(http: httpx.Client, no_pyfunc_model: str) -> None:
    doc = openapi(http, "openapi-bare", f"main.default.{no_pyfunc_model}", "1")

    op, media = request_of(doc, "/serving-endpoints/openapi-bare/invocations")
    assert "example" not in media
    assert op["description"] == (
        f"Model '{no_pyfunc_model}' version 1. The model has no signature. The model has no input example."
    )
    assert media["schema"]["properties"]["dataframe_records"] == {
        "type": "array",
        "items": {"type": "object"},
    }


def test_a_model_registered_under_its_three_part_name(http: httpx.Client, server: ServerProcess) -> None:
    version = log_sklearn_model(server.url, ADMIN_TOKEN, "main.default.openapi_dotted")

    doc = openapi(http, "openapi-dotted", "main.default.openapi_dotted", version)

    op, media = request_of(doc, "/serving-endpoints/openapi-dotted/invocations")
    assert op["x-modelport-model"] == {"name": "main.default.openapi_dotted", "version": version}
    assert media["example"]["dataframe_split"]["columns"] == COLUMNS
