"""The inputs with which the fuzzer (or reading the patterns while fuzzing) made the server fail,
each now a 400 with ``error_code`` and ``message`` (each of these was a 500 with a traceback in
the server's log, or, for the names, a 200)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.support.names import unique

SE = "/api/2.0/serving-endpoints"
SCIM = "/api/2.0/preview/scim/v2"


def _acl(level: Any) -> dict[str, Any]:
    return {"access_control_list": [{"user_name": "admin", "permission_level": level}]}


@pytest.fixture(scope="module")
def endpoint_id(admin: httpx.Client) -> str:
    resp = admin.post(SE, json={"name": unique("fz-found")})
    assert resp.status_code == 200, resp.text
    return str(resp.json()["id"])


def cases(endpoint_id: str) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        ("POST", f"{SCIM}/Users", {"userName": ["a"]}),
        ("POST", f"{SCIM}/Users", {"userName": unique("fz-user"), "displayName": {"x": 1}}),
        ("POST", f"{SCIM}/ServicePrincipals", {"applicationId": 7}),
        ("PATCH", f"{SCIM}/Groups/users", {"Operations": [[]]}),
        ("PATCH", f"{SCIM}/Groups/users", {"Operations": "add"}),
        ("PUT", "/api/2.0/permissions/experiments/0", _acl({})),
        ("PATCH", "/api/2.0/permissions/experiments/0", _acl([])),
        ("PATCH", f"/api/2.0/permissions/serving-endpoints/{endpoint_id}", _acl({})),
        ("POST", SE, {"name": "fz-newline\n"}),
        ("POST", "/api/2.0/secrets/scopes/create", {"scope": "fz-newline\n"}),
    ]


def test_each_input_that_failed_is_a_400(admin: httpx.Client, endpoint_id: str) -> None:
    wrong = []
    for method, path, body in cases(endpoint_id):
        resp = admin.request(method, path, json=body)
        if resp.status_code != 400 or not {"error_code", "message"} <= set(resp.json()):
            wrong.append(f"{method} {path} {body}: {resp.status_code} {resp.text[:200]}")
    assert wrong == [], "\n".join(wrong)


def test_a_create_on_the_me_path_is_a_405_not_a_create(admin: httpx.Client) -> None:
    resp = admin.post(f"{SCIM}/Me", json={"userName": unique("fz-me")})
    assert resp.status_code == 405, resp.text
    assert resp.json()["error_code"] == "METHOD_NOT_ALLOWED"
    assert "GET" in resp.headers["allow"]
    assert admin.get(f"{SCIM}/Nobody").status_code == 404
