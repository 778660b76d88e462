"""api/audit.py: which requests are audited, and that a row holds identifiers, never values."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import orjson
import pytest

from modelport.api.audit import audit_record, audited, request_params
from modelport.api.middleware import Observed
from modelport.errors import TemporarilyUnavailable
from modelport.spec.identity import Caller


def put_secret() -> None:  # stands for the Starlette endpoint a route resolved to
    pass


def scope(method: str, path: str, **extra: Any) -> dict[str, Any]:
    return {
        "type": "http",
        "method": method,
        "path": path,
        "headers": [
            (b"user-agent", b"databricks-sdk-py/0.40"),
            (b"authorization", b"Bearer dapi-secret-token"),
        ],
        "query_string": b"",
        "client": ("10.1.2.3", 5555),
        **extra,
    }


@pytest.mark.parametrize(
    ("method", "path", "status", "expected"),
    [
        ("POST", "/api/2.0/serving-endpoints", 200, True),
        ("PUT", "/api/2.0/permissions/serving-endpoints/abc", 200, True),
        ("DELETE", "/api/2.0/mlflow/registered-models/delete", 200, True),
        ("POST", "/api/2.0/secrets/put", 400, True),
        ("GET", "/api/2.0/serving-endpoints", 200, False),
        ("GET", "/api/2.0/serving-endpoints", 401, True),
        ("GET", "/api/2.0/secrets/get", 403, True),
        ("GET", "/api/2.0/secrets/get", 200, True),
        ("GET", "/api/2.0/secrets/list", 200, False),
        ("POST", "/serving-endpoints/chat/invocations", 200, False),
        ("POST", "/serving-endpoints/chat/invocations", 429, False),
        ("POST", "/serving-endpoints/chat/invocations", 403, True),
        ("POST", "/serving-endpoints/chat/completions", 401, True),
        ("POST", "/api/2.0/mlflow/runs/search", 200, False),
        ("POST", "/api/2.0/modelport/tables/query", 200, False),
        ("POST", "/api/2.0/modelport/tables/query", 403, True),
    ],
)
def test_writes_outside_the_data_plane_and_every_refusal_are_audited(
    method: str, path: str, status: int, expected: bool
) -> None:
    assert audited(method, path, status) is expected


def test_only_identifiers_are_kept_from_a_body() -> None:
    body = orjson.dumps(
        {
            "scope": "team",
            "key": "openai",
            "string_value": "sk-never-recorded",
            "bytes_value": "c2stbmV2ZXI=",
            "token_value": "dapi-never",
            "config": {"served_entities": [{"openai_api_key_plaintext": "sk-never"}]},
            "access_control_list": [
                {"user_name": "bob", "permission_level": "CAN_QUERY", "extra": "dropped"}
            ],
        }
    )
    params = request_params(scope("POST", "/api/2.0/secrets/put"), body)
    assert params == {
        "scope": "team",
        "key": "openai",
        "access_control_list": '[{"user_name":"bob","permission_level":"CAN_QUERY"}]',
    }


def test_a_query_body_is_never_read() -> None:
    params = request_params(
        scope("POST", "/serving-endpoints/chat/served-models/a/invocations", query_string=b"key=x"),
        b'{"name": "not-read"}',
    )
    assert params == {"name": "chat", "served_model_name": "a"}


def test_a_row_says_who_what_where_and_the_outcome() -> None:
    caller = Caller(
        id=7, name="bob@example.com", kind="user", groups=("users",), principal_ids=frozenset({7})
    )
    request = scope("POST", "/api/2.0/secrets/put", endpoint=put_secret, **{"modelport.caller": caller})
    answer = orjson.dumps({"error_code": "PERMISSION_DENIED", "message": "'bob@example.com' may not"})
    row = audit_record(request, "rid-1", 403, b'{"scope": "team", "string_value": "v"}', answer, "123")
    assert (row.service_name, row.action_name, row.request_id) == ("secrets", "putSecret", "rid-1")
    assert row.user_identity == {"email": "bob@example.com"}
    assert (row.source_ip_address, row.user_agent, row.workspace_id) == (
        "10.1.2.3",
        "databricks-sdk-py/0.40",
        "123",
    )
    assert row.response == {
        "status_code": 403,
        "error_code": "PERMISSION_DENIED",
        "error_message": "'bob@example.com' may not",
    }
    assert row.request_params == {"scope": "team"}
    assert "dapi-secret-token" not in orjson.dumps(row).decode()


def test_data_plane_refusals_keep_the_code_not_the_message() -> None:
    answer = orjson.dumps(
        {"error_code": "PERMISSION_DENIED", "message": "Incorrect API key provided: sk-***abcd"}
    )
    row = audit_record(scope("POST", "/serving-endpoints/chat/invocations"), "r", 403, None, answer)
    assert row.response["error_code"] == "PERMISSION_DENIED" and row.response["error_message"] is None
    assert (row.service_name, row.action_name, row.user_identity) == ("serving", "query", None)


@pytest.mark.parametrize(
    ("method", "path", "action", "service"),
    [
        ("POST", "/api/2.0/mlflow/registered-models/delete", "registeredModelsDelete", "mlflow"),
        ("POST", "/ajax-api/2.0/mlflow/model-versions/create", "modelVersionsCreate", "mlflow"),
        ("PUT", "/api/2.0/mlflow-artifacts/artifacts/1/x/model.pkl", "uploadArtifact", "mlflow"),
        ("POST", "/api/2.0/token/create", "postUnmatched", "tokens"),
        ("POST", "/api/2.1/unity-catalog/permissions/table/a.b.c", "postUnmatched", "unityCatalog"),
    ],
)
def test_action_and_service_names(method: str, path: str, action: str, service: str) -> None:
    row = audit_record(scope(method, path), "r", 200, None, None)
    assert (row.action_name, row.service_name) == (action, service)


# ---- the middleware ---------------------------------------------------------------------------
class Tables:
    """Stands for the TableWriter: records what it is given, in order with what was sent."""

    def __init__(self, events: list[Any], full: bool = False) -> None:
        self.events, self.full = events, full

    def record_audit(self, record: Any) -> None:
        self.events.append(record)

    def check_room(self) -> None:
        if self.full:
            raise TemporarilyUnavailable("The tables' spool is full.")


def served(method: str, path: str, status: int, *, full: bool = False) -> tuple[list[Any], bool]:
    """Run one request through Observed; return what was recorded and sent (in order), and
    whether the handler ran."""
    events: list[Any] = []
    ran = False
    services = SimpleNamespace(tables=Tables(events, full), workspace_id="1")

    async def handler(scope: dict[str, Any], receive: Any, send: Any) -> None:
        nonlocal ran
        ran = True
        assert (await receive())["body"] == b'{"scope": "s", "string_value": "v"}'
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b'{"error_code": "X", "message": "m"}'})

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b'{"scope": "s", "string_value": "v"}'}

    async def send(message: dict[str, Any]) -> None:
        events.append(message["type"])

    request = scope(method, path)
    request["headers"] = [*request["headers"], (b"content-type", b"application/json")]
    asyncio.run(Observed(handler, lambda: None, lambda: services)(request, receive, send))  # type: ignore[arg-type,return-value]
    return events, ran


def test_the_middleware_records_a_write_before_the_answer_ends() -> None:
    events, _ = served("POST", "/api/2.0/secrets/put", 400)
    assert [e if isinstance(e, str) else "row" for e in events] == [
        "http.response.start",
        "row",
        "http.response.body",
    ]
    row = events[1]
    assert row.request_params == {"scope": "s"} and row.response["error_code"] == "X"


def test_the_middleware_leaves_reads_and_answered_queries_alone() -> None:
    assert served("GET", "/api/2.0/secrets/list", 200)[0] == ["http.response.start", "http.response.body"]
    assert served("POST", "/serving-endpoints/a/invocations", 200)[0] == [
        "http.response.start",
        "http.response.body",
    ]
    assert len(served("POST", "/serving-endpoints/a/invocations", 403)[0]) == 3


def test_a_write_is_refused_when_its_row_could_not_be_kept() -> None:
    events, ran = served("POST", "/api/2.0/secrets/put", 200, full=True)
    assert not ran
    assert events[0] == "http.response.start" and events[1].response["status_code"] == 503
    assert events[1].response["error_code"] == "TEMPORARILY_UNAVAILABLE"
