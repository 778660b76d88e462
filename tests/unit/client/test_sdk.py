"""ModelportClient against a scripted MockTransport: paths, bodies, headers, errors, waiting."""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import Any

import httpx
import pytest

import modelport.client
from modelport import errors
from modelport.client.sdk import ModelportClient

MakeEndpoint = Callable[..., dict[str, Any]]


def test_package_exports_are_complete() -> None:
    public = {
        name
        for name, value in vars(modelport.client).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType) and name != "annotations"
    }
    assert sorted(public) == sorted(modelport.client.__all__) == ["DEFAULT_HOST", "ModelportClient"]


def test_requests_carry_the_bearer_token_and_json_accept(server: Any) -> None:
    server.on("GET", "/api/2.0/serving-endpoints", (200, {"endpoints": [{"name": "a"}, {"name": "b"}]}))

    with server.client(token="dapi-secret") as client:
        endpoints = client.list_endpoints()

    assert endpoints == [{"name": "a"}, {"name": "b"}]
    request = server.requests[0]
    assert request.headers["authorization"] == "Bearer dapi-secret"
    assert request.headers["accept"] == "application/json"
    assert str(request.url) == "http://modelport.test/api/2.0/serving-endpoints"


def test_list_endpoints_accepts_an_empty_body(server: Any) -> None:
    server.on("GET", "/api/2.0/serving-endpoints", (200, {}))
    assert server.client().list_endpoints() == []


def test_host_and_token_default_to_the_environment(server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELPORT_HOST", "http://10.1.2.3:9000/")
    monkeypatch.setenv("MODELPORT_TOKEN", "from-env")
    server.on("GET", "/api/2.0/preview/scim/v2/Me", (200, {"userName": "alice"}))

    client = ModelportClient(transport=server.transport)

    assert client.me() == {"userName": "alice"}
    assert str(server.requests[0].url) == "http://10.1.2.3:9000/api/2.0/preview/scim/v2/Me"
    assert server.requests[0].headers["authorization"] == "Bearer from-env"


def test_host_defaults_to_localhost_8080(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MODELPORT_HOST", raising=False)
    assert ModelportClient(token="t").host == "http://127.0.0.1:8080"


def test_bare_host_port_means_plain_http() -> None:
    assert ModelportClient("models.internal:8080", "t").host == "http://models.internal:8080"


def test_missing_token_raises_unauthenticated_naming_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MODELPORT_TOKEN", raising=False)

    with pytest.raises(errors.Unauthenticated) as caught:
        ModelportClient("http://modelport.test")

    assert "set MODELPORT_TOKEN or pass --token" in caught.value.message


@pytest.mark.parametrize(
    ("status", "error_code", "expected"),
    [
        (404, "RESOURCE_DOES_NOT_EXIST", errors.ResourceDoesNotExist),
        (409, "RESOURCE_CONFLICT", errors.ResourceConflict),
        (409, "RESOURCE_ALREADY_EXISTS", errors.ResourceAlreadyExists),
        (401, "UNAUTHENTICATED", errors.Unauthenticated),
        (403, "PERMISSION_DENIED", errors.PermissionDenied),
        (400, "INVALID_PARAMETER_VALUE", errors.InvalidParameterValue),
        (400, "INVALID_STATE", errors.InvalidState),
        (503, "TEMPORARILY_UNAVAILABLE", errors.TemporarilyUnavailable),
    ],
)
def test_error_bodies_become_the_matching_error_class(
    server: Any, status: int, error_code: str, expected: type[errors.ModelportError]
) -> None:
    server.on("GET", "/api/2.0/serving-endpoints/x", (status, {"error_code": error_code, "message": "why"}))

    with pytest.raises(errors.ModelportError) as caught:
        server.client().get_endpoint("x")

    assert type(caught.value) is expected
    assert caught.value.error_code == error_code
    assert caught.value.message == "why"


def test_error_without_a_json_body_is_classed_by_status(server: Any) -> None:
    server.on("DELETE", "/api/2.0/serving-endpoints/x", (404, "no such thing"))

    with pytest.raises(errors.NotFound) as caught:
        server.client().delete_endpoint("x")

    assert type(caught.value) is errors.NotFound
    assert caught.value.message == "no such thing"


def test_retry_after_header_is_kept_on_the_error(server: Any) -> None:
    body = {"error_code": "REQUEST_LIMIT_EXCEEDED", "message": "slow down"}
    server.on("POST", "/serving-endpoints/chat/invocations", (429, body, {"Retry-After": "7"}))

    with pytest.raises(errors.RequestLimitExceeded) as caught:
        server.client().query("chat", {"messages": []})

    assert caught.value.retry_after == 7


def test_refused_connection_raises_temporarily_unavailable_naming_the_host() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("Connection refused", request=request)

    client = ModelportClient("http://10.9.9.9:8080", "t", transport=httpx.MockTransport(refuse))

    with pytest.raises(errors.TemporarilyUnavailable) as caught:
        client.list_endpoints()

    assert caught.value.message == (
        "cannot reach modelport server at http://10.9.9.9:8080: Connection refused"
    )


def test_timeout_raises_deadline_exceeded() -> None:
    def stall(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    client = ModelportClient("http://modelport.test", "t", transport=httpx.MockTransport(stall))

    with pytest.raises(errors.DeadlineExceeded, match=r"request to http://modelport\.test timed out"):
        client.get_endpoint("x")


def test_success_with_a_body_that_is_not_json_is_an_internal_error(server: Any) -> None:
    server.on("GET", "/api/2.0/serving-endpoints/x", (200, "<html>proxy</html>"))

    with pytest.raises(errors.ModelportError, match="body that is not JSON"):
        server.client().get_endpoint("x")


def test_names_are_percent_encoded_into_one_path_segment(server: Any) -> None:
    server.on("GET", "/api/2.0/permissions/serving-endpoints/a%2F..%2Fb", (200, {"object_id": "x"}))

    assert server.client().get_permissions("a/../b") == {"object_id": "x"}
    assert server.calls() == [("GET", "/api/2.0/permissions/serving-endpoints/a%2F..%2Fb")]


@pytest.mark.parametrize(
    ("call", "method", "path", "body"),
    [
        (lambda c: c.create_endpoint({"name": "e"}), "POST", "/api/2.0/serving-endpoints", {"name": "e"}),
        (
            lambda c: c.update_config("e", {"served_entities": []}),
            "PUT",
            "/api/2.0/serving-endpoints/e/config",
            {"served_entities": []},
        ),
        (lambda c: c.cancel_update("e"), "POST", "/api/2.0/serving-endpoints/e/cancel-update", {}),
        (
            lambda c: c.put_rate_limits("e", [{"calls": 5, "renewal_period": "minute"}]),
            "PUT",
            "/api/2.0/serving-endpoints/e/rate-limits",
            {"rate_limits": [{"calls": 5, "renewal_period": "minute"}]},
        ),
        (
            lambda c: c.put_ai_gateway("e", {"usage_tracking_config": {"enabled": True}}),
            "PUT",
            "/api/2.0/serving-endpoints/e/ai-gateway",
            {"usage_tracking_config": {"enabled": True}},
        ),
        (
            lambda c: c.patch_tags("e", add=[{"key": "k", "value": "v"}], delete=["old"]),
            "PATCH",
            "/api/2.0/serving-endpoints/e/tags",
            {"add_tags": [{"key": "k", "value": "v"}], "delete_tags": ["old"]},
        ),
        (
            lambda c: c.set_permissions("id1", [{"user_name": "bob", "permission_level": "CAN_QUERY"}]),
            "PUT",
            "/api/2.0/permissions/serving-endpoints/id1",
            {"access_control_list": [{"user_name": "bob", "permission_level": "CAN_QUERY"}]},
        ),
        (
            lambda c: c.update_permissions("id1", [{"group_name": "g", "permission_level": "CAN_VIEW"}]),
            "PATCH",
            "/api/2.0/permissions/serving-endpoints/id1",
            {"access_control_list": [{"group_name": "g", "permission_level": "CAN_VIEW"}]},
        ),
        (
            lambda c: c.query("e", {"inputs": [1]}, served="m-1"),
            "POST",
            "/serving-endpoints/e/served-models/m-1/invocations",
            {"inputs": [1]},
        ),
        (
            lambda c: c.create_token(3600, "ci"),
            "POST",
            "/api/2.0/token/create",
            {"lifetime_seconds": 3600, "comment": "ci"},
        ),
        (lambda c: c.create_token(), "POST", "/api/2.0/token/create", {}),
        (lambda c: c.delete_token("tok-1"), "POST", "/api/2.0/token/delete", {"token_id": "tok-1"}),
        (
            lambda c: c.create_token_for("sp-app-1", "service_principal", 60, None),
            "POST",
            "/api/2.0/token-management/on-behalf-of/tokens",
            {"lifetime_seconds": 60, "application_id": "sp-app-1"},
        ),
        (
            lambda c: c.create_token_for("bob", "user", None, "for bob"),
            "POST",
            "/api/2.0/token-management/on-behalf-of/tokens",
            {"comment": "for bob", "user_name": "bob"},
        ),
        (
            lambda c: c.create_user("carol", admin=True),
            "POST",
            "/api/2.0/preview/scim/v2/Users",
            {"userName": "carol", "modelport_admin": True},
        ),
        (
            lambda c: c.create_service_principal("sp-app-2"),
            "POST",
            "/api/2.0/preview/scim/v2/ServicePrincipals",
            {"applicationId": "sp-app-2", "displayName": "sp-app-2"},
        ),
        (
            lambda c: c.create_group("team", ["carol", "sp-app-2"]),
            "POST",
            "/api/2.0/preview/scim/v2/Groups",
            {"displayName": "team", "members": [{"value": "carol"}, {"value": "sp-app-2"}]},
        ),
        (
            lambda c: c.add_group_member("12", "carol"),
            "PATCH",
            "/api/2.0/preview/scim/v2/Groups/12",
            {
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [{"op": "add", "path": "members", "value": [{"value": "carol"}]}],
            },
        ),
        (
            lambda c: c.remove_group_member("12", "7"),
            "PATCH",
            "/api/2.0/preview/scim/v2/Groups/12",
            {
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [{"op": "remove", "path": 'members[value eq "7"]'}],
            },
        ),
    ],
)
def test_each_method_sends_its_documented_request(
    server: Any, call: Callable[[ModelportClient], Any], method: str, path: str, body: Any
) -> None:
    server.on(method, path, (200, {"ok": True}))

    assert call(server.client()) == {"ok": True}

    assert server.calls() == [(method, path)]
    assert server.body() == body


def test_principal_lists_are_the_scim_resources(server: Any) -> None:
    for resource in ("Users", "ServicePrincipals", "Groups"):
        listing = {"totalResults": 1, "Resources": [{"id": "3", "kind": resource}]}
        server.on("GET", f"/api/2.0/preview/scim/v2/{resource}", (200, listing))
    client = server.client()

    assert client.list_users() == [{"id": "3", "kind": "Users"}]
    assert client.list_service_principals() == [{"id": "3", "kind": "ServicePrincipals"}]
    assert client.list_groups() == [{"id": "3", "kind": "Groups"}]


@pytest.mark.parametrize(
    ("call", "path"),
    [
        (lambda c: c.delete_user("3"), "/api/2.0/preview/scim/v2/Users/3"),
        (lambda c: c.delete_service_principal("4"), "/api/2.0/preview/scim/v2/ServicePrincipals/4"),
        (lambda c: c.delete_group("a/b"), "/api/2.0/preview/scim/v2/Groups/a%2Fb"),
    ],
)
def test_principal_deletes_take_an_id_and_accept_no_content(
    server: Any, call: Callable[[ModelportClient], Any], path: str
) -> None:
    server.on("DELETE", path, (204, ""))

    assert call(server.client()) == {}
    assert server.calls() == [("DELETE", path)]


@pytest.mark.parametrize(
    ("call", "path", "key", "value"),
    [
        (lambda c: c.logs("e", "m-1"), "/api/2.0/serving-endpoints/e/served-models/m-1/logs", "logs", "l1\n"),
        (
            lambda c: c.build_logs("e", "m-1"),
            "/api/2.0/serving-endpoints/e/served-models/m-1/build-logs",
            "logs",
            "built\n",
        ),
        (lambda c: c.list_tokens(), "/api/2.0/token/list", "token_infos", [{"token_id": "t1"}]),
        (
            lambda c: c.get_permission_levels("id1"),
            "/api/2.0/permissions/serving-endpoints/id1/permissionLevels",
            "permission_levels",
            [{"permission_level": "CAN_QUERY", "description": "Can query"}],
        ),
    ],
)
def test_wrapped_results_are_unwrapped(
    server: Any, call: Callable[[ModelportClient], Any], path: str, key: str, value: Any
) -> None:
    server.on("GET", path, (200, {key: value}))
    assert call(server.client()) == value


def test_metrics_are_read_as_text_with_accept_text_plain(server: Any) -> None:
    text = "# TYPE requests_total counter\nrequests_total 3\n"
    server.on("GET", "/api/2.0/serving-endpoints/e/metrics", (200, text))

    assert server.client().metrics("e") == text
    assert server.requests[0].headers["accept"] == "text/plain"


def test_openapi_document_is_parsed(server: Any) -> None:
    server.on("GET", "/api/2.0/serving-endpoints/e/openapi", (200, '{"openapi": "3.1.0"}'))
    assert server.client().openapi("e") == {"openapi": "3.1.0"}


def test_wait_for_update_polls_until_not_updating(server: Any, make_endpoint: MakeEndpoint) -> None:
    server.on(
        "GET",
        "/api/2.0/serving-endpoints/my-endpoint",
        (200, make_endpoint(update="IN_PROGRESS", ready="NOT_READY")),
        (200, make_endpoint(update="IN_PROGRESS", ready="NOT_READY")),
        (200, make_endpoint(update="NOT_UPDATING", ready="READY")),
    )
    seen: list[str] = []

    endpoint = server.client().wait_for_update(
        "my-endpoint", poll=0, on_poll=lambda ep, _elapsed: seen.append(ep["state"]["config_update"])
    )

    assert endpoint["state"] == {"ready": "READY", "config_update": "NOT_UPDATING"}
    assert seen == ["IN_PROGRESS", "IN_PROGRESS", "NOT_UPDATING"]
    assert len(server.requests) == 3


def test_wait_for_update_raises_invalid_state_with_the_entity_message(
    server: Any, make_endpoint: MakeEndpoint
) -> None:
    failed = make_endpoint(
        update="UPDATE_FAILED",
        pending_config={
            "served_entities": [
                {
                    "name": "ok-1",
                    "state": {"deployment": "DEPLOYMENT_READY", "deployment_state_message": "Ready"},
                },
                {
                    "name": "bad-2",
                    "state": {
                        "deployment": "DEPLOYMENT_FAILED",
                        "deployment_state_message": "model failed to load: no module 'foo'",
                    },
                },
            ]
        },
    )
    server.on("GET", "/api/2.0/serving-endpoints/my-endpoint", (200, failed))

    with pytest.raises(errors.InvalidState) as caught:
        server.client().wait_for_update("my-endpoint", poll=0)

    assert caught.value.message == (
        "config update of endpoint 'my-endpoint' failed: bad-2: model failed to load: no module 'foo'"
    )


def test_wait_for_update_reports_a_cancelled_update(server: Any, make_endpoint: MakeEndpoint) -> None:
    server.on("GET", "/api/2.0/serving-endpoints/my-endpoint", (200, make_endpoint(update="UPDATE_CANCELED")))

    with pytest.raises(errors.InvalidState) as caught:
        server.client().wait_for_update("my-endpoint", poll=0)

    assert caught.value.message == "config update of endpoint 'my-endpoint' was cancelled"


def test_wait_for_update_times_out(server: Any, make_endpoint: MakeEndpoint) -> None:
    server.on("GET", "/api/2.0/serving-endpoints/my-endpoint", (200, make_endpoint(update="IN_PROGRESS")))

    with pytest.raises(TimeoutError, match=r"still has config_update=IN_PROGRESS after 0\.05s"):
        server.client().wait_for_update("my-endpoint", timeout=0.05, poll=0.01)


def test_close_closes_the_connection_pool(server: Any) -> None:
    client = server.client()
    with client:
        pass
    with pytest.raises(RuntimeError):
        client.list_endpoints()
