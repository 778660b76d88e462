"""modelport's own OpenAPI document against the server's route table, both ways."""

from __future__ import annotations

from typing import Any

import pytest

from modelport.api.app import ModelportApp
from modelport.api.data.router import PATHS, match
from modelport.api.openapi_document import build_document, mismatches, route_table
from modelport.api.openapi_operations import OPERATIONS
from modelport.api.openapi_schemas import Operation
from modelport.config import Settings


@pytest.fixture(scope="module")
def table() -> list[tuple[str, str]]:
    return route_table(ModelportApp(Settings()).api.routes)


@pytest.fixture(scope="module")
def document(table: list[tuple[str, str]]) -> dict[str, Any]:
    return build_document(table)


def test_every_route_has_a_description_and_every_description_a_route(table: list[tuple[str, str]]) -> None:
    undocumented, unrouted = mismatches(table)
    assert undocumented == [], "routes missing from api/openapi_operations.py"
    assert unrouted == [], "described in api/openapi_operations.py but not served"


def test_a_new_route_without_a_description_is_found(table: list[tuple[str, str]]) -> None:
    undocumented, _ = mismatches([*table, ("POST", "/api/2.0/new")])
    assert ("POST", "/api/2.0/new") in undocumented
    _, unrouted = mismatches(table, [*OPERATIONS, Operation("GET", "/gone", "x", "system", "public")])
    assert ("GET", "/gone") in unrouted


def test_the_route_table_holds_the_control_and_data_plane(table: list[tuple[str, str]]) -> None:
    assert ("GET", "/api/2.0/serving-endpoints/{name}") in table
    assert ("GET", "/api/2.0/preview/scim/v2/{kind}/{id}") in table  # the convertor is dropped
    assert ("POST", "/serving-endpoints/chat/completions") in table
    assert ("GET", "/api/2.0/modelport/openapi.json") in table
    assert not [r for r in table if r[0] == "HEAD"]


def test_each_data_plane_template_is_a_path_the_router_answers() -> None:
    for template in PATHS:
        assert match(template.replace("{name}", "ep").replace("{served}", "m")) is not None, template


def test_operations_are_unique_with_unique_ids() -> None:
    assert len({op.key for op in OPERATIONS}) == len(OPERATIONS)
    assert len({op.operation_id for op in OPERATIONS}) == len(OPERATIONS)


def test_document_describes_bodies_parameters_and_errors(document: dict[str, Any]) -> None:
    assert document["openapi"] == "3.1.0"
    create = document["paths"]["/api/2.0/serving-endpoints"]["post"]
    ref = create["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    schema = document["components"]["schemas"][ref.rsplit("/", 1)[1]]
    assert schema["required"] == ["name"]
    assert {"name", "config", "ai_gateway", "tags"} <= set(schema["properties"])
    get_secret = document["paths"]["/api/2.0/secrets/get"]["get"]
    assert [(p["name"], p["in"], p["required"]) for p in get_secret["parameters"]] == [
        ("scope", "query", True),
        ("key", "query", True),
    ]
    get_endpoint = document["paths"]["/api/2.0/serving-endpoints/{name}"]["get"]
    assert get_endpoint["parameters"][0]["in"] == "path"
    assert document["components"]["schemas"]["Error"]["required"] == ["error_code", "message"]
    assert get_endpoint["responses"]["4XX"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Error"
    }
    assert document["paths"]["/health"]["get"]["security"] == []
    assert "security" not in get_endpoint  # the document's default: a bearer token


def test_every_reference_resolves(document: dict[str, Any]) -> None:
    refs: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str):
                refs.append(node["$ref"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(document)
    names = set(document["components"]["schemas"])
    assert refs
    assert [r for r in refs if r.rsplit("/", 1)[1] not in names] == []


def test_links_name_existing_operations(document: dict[str, Any]) -> None:
    ids = {op["operationId"] for item in document["paths"].values() for op in item.values()}
    targets = [
        link["operationId"]
        for item in document["paths"].values()
        for op in item.values()
        for response in op["responses"].values()
        for link in response.get("links", {}).values()
    ]
    assert targets
    assert set(targets) <= ids
