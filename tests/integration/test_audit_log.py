"""The audit log ``system.access.audit`` on the real server: control-plane writes and refusals
(401, 403, on the control plane, the data plane and the MLflow registry) are recorded with who,
what, from where, the request id and the outcome; no secret or token value reaches any column;
only admins read it; rows recorded before a ``kill -9`` are replayed from the spool.

One server for the module (its own data directory: the last test kills it).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fakes.openai_server import API_KEY, FakeOpenAI
from tests.serverproc import ADMIN_TOKEN, ServerProcess
from tests.support.principals import create_user, obo_token
from tests.support.providers import create_external

AUDIT = "system.access.audit"
SECRET_VALUE = "audit-secret-value-0f9e8d7c"
BYTES_SECRET = b"audit-bytes-secret-1a2b3c"
INLINE_KEY = "sk-audit-inline-key-5e6f7a8b"
BOB = "audit-bob@example.com"


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAI]:
    openai = FakeOpenAI().start()
    yield openai
    openai.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, fake: FakeOpenAI) -> Iterator[ServerProcess]:
    proc = ServerProcess(
        tmp_path_factory.mktemp("audit-data"), env={"MODELPORT_OPENAI_BASE_URL": f"{fake.url}/v1"}
    ).start()
    yield proc
    proc.kill()


@pytest.fixture(scope="module")
def admin(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=60
    ) as client:
        yield client


@pytest.fixture(scope="module")
def bob(server: ServerProcess, admin: httpx.Client) -> Iterator[httpx.Client]:
    """A user with no permission on anything."""
    create_user(admin, BOB)
    token = obo_token(admin, user_name=BOB)["token_value"]
    with httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=60
    ) as client:
        yield client


@pytest.fixture(scope="module")
def written(server: ServerProcess, admin: httpx.Client, bob: httpx.Client) -> dict[str, Any]:
    """Control-plane writes, each with its own request id; returns the ids and the values made."""
    made: dict[str, Any] = {"ids": {}}

    def call(
        what: str, method: str, path: str, body: Any = None, client: httpx.Client = admin
    ) -> httpx.Response:
        rid = f"audit-{what}-{uuid.uuid4().hex[:8]}"
        answer = client.request(method, path, json=body, headers={"x-request-id": rid})
        assert answer.headers["x-request-id"] == rid
        made["ids"][what] = rid
        return answer

    chat = {"provider": "openai", "name": "gpt-4o-mini", "task": "llm/v1/chat"}
    ext = {**chat, "openai_config": {"openai_api_key_plaintext": INLINE_KEY}}
    body = {"name": "audited", "config": {"served_entities": [{"name": "audited-e", "external_model": ext}]}}
    assert call("create", "POST", "/api/2.0/serving-endpoints", body).status_code == 200
    endpoint_id = admin.get("/api/2.0/serving-endpoints/audited").json()["id"]
    acl = {"access_control_list": [{"user_name": BOB, "permission_level": "CAN_VIEW"}]}
    assert (
        call("permissions", "PUT", f"/api/2.0/permissions/serving-endpoints/{endpoint_id}", acl).status_code
        == 200
    )
    assert call("scope", "POST", "/api/2.0/secrets/scopes/create", {"scope": "audited"}).status_code == 200
    put = {"scope": "audited", "key": "api", "string_value": SECRET_VALUE}
    assert call("put", "POST", "/api/2.0/secrets/put", put).status_code == 200
    put_bytes = {"scope": "audited", "key": "blob", "bytes_value": _b64(BYTES_SECRET)}
    assert call("put-bytes", "POST", "/api/2.0/secrets/put", put_bytes).status_code == 200
    assert call("read", "GET", "/api/2.0/secrets/get?scope=audited&key=api").status_code == 200
    token = call("token", "POST", "/api/2.0/token/create", {"comment": "audited", "lifetime_seconds": 600})
    assert token.status_code == 200
    made["token_value"] = token.json()["token_value"]
    # A query answered 200: the data plane's successes are not audited.
    create_external(admin, "audited-query", {**chat, "openai_config": {"openai_api_key_plaintext": API_KEY}})
    ok = call(
        "query",
        "POST",
        "/serving-endpoints/audited-query/invocations",
        {"messages": [{"role": "user", "content": "hi"}]},
    )
    assert ok.status_code == 200, ok.text

    # Refusals: a user without permission (control plane, secrets, data plane), a bad token.
    assert (
        call("denied-delete", "DELETE", "/api/2.0/serving-endpoints/audited", client=bob).status_code == 403
    )
    denied_put = {"scope": "audited", "key": "api", "string_value": "bob-overwrite-value"}
    assert call("denied-put", "POST", "/api/2.0/secrets/put", denied_put, client=bob).status_code == 403
    query = call(
        "denied-query",
        "POST",
        "/serving-endpoints/audited/invocations",
        {"messages": [{"role": "user", "content": "hi"}]},
        client=bob,
    )
    assert query.status_code == 403, query.text
    with httpx.Client(
        base_url=server.url, headers={"Authorization": "Bearer dapi-not-a-real-token-77"}
    ) as bad:
        assert call("bad-token", "GET", "/api/2.0/serving-endpoints", client=bad).status_code == 401
    return made


def _b64(value: bytes) -> str:
    import base64

    return base64.b64encode(value).decode("ascii")


def audit_rows(admin: httpx.Client) -> list[dict[str, Any]]:
    answer = admin.post("/api/2.0/modelport/tables/query", json={"sql": f"SELECT * FROM {AUDIT}"})
    assert answer.status_code == 200, answer.text
    data = answer.json()
    return [dict(zip(data["columns"], row, strict=True)) for row in data["rows"]]


def by_request(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {row["request_id"]: row for row in rows}


def test_control_plane_writes_are_recorded(admin: httpx.Client, written: dict[str, Any]) -> None:
    rows = by_request(audit_rows(admin))
    expected = {
        "create": ("serving", "createEndpoint", {"name": "audited"}),
        "permissions": ("permissions", "writePermissions", {}),
        "scope": ("secrets", "createScope", {"scope": "audited"}),
        "put": ("secrets", "putSecret", {"scope": "audited", "key": "api"}),
        "token": ("tokens", "createToken", {}),
        "read": ("secrets", "getSecret", {"scope": "audited", "key": "api"}),  # a secret read, too
    }
    for what, (service, action, params) in expected.items():
        row = rows.get(written["ids"][what])
        assert row is not None, f"no audit row for {what}"
        assert (row["service_name"], row["action_name"]) == (service, action), row
        assert row["user_identity"]["email"] == "admin"
        assert row["source_ip_address"] == "127.0.0.1"
        assert row["response"]["status_code"] == 200 and row["response"]["error_code"] is None
        assert row["user_agent"].startswith("python-httpx/")
        assert row["event_time"] and row["event_date"] and row["event_id"]
        assert params.items() <= (row["request_params"] or {}).items(), row["request_params"]
    grants = json.loads(rows[written["ids"]["permissions"]]["request_params"]["access_control_list"])
    assert grants == [{"user_name": BOB, "permission_level": "CAN_VIEW"}]
    assert len({row["event_id"] for row in rows.values()}) == len(rows)
    assert written["ids"]["query"] not in rows, "an answered query was audited"


def test_refusals_are_recorded_as_denied(admin: httpx.Client, written: dict[str, Any]) -> None:
    rows = by_request(audit_rows(admin))
    expected = {
        "denied-delete": (403, "serving", "deleteEndpoint", BOB),
        "denied-put": (403, "secrets", "putSecret", BOB),
        "denied-query": (403, "serving", "query", BOB),
        "bad-token": (401, "serving", "listEndpoints", None),
    }
    for what, (status, service, action, who) in expected.items():
        row = rows.get(written["ids"][what])
        assert row is not None, f"no audit row for {what}"
        assert row["response"]["status_code"] == status, row
        assert row["response"]["error_code"] in ("PERMISSION_DENIED", "UNAUTHENTICATED"), row
        assert (row["service_name"], row["action_name"]) == (service, action), row
        assert (row["user_identity"] or {}).get("email") == who, row
    assert rows[written["ids"]["denied-query"]]["request_params"] == {"name": "audited"}
    assert rows[written["ids"]["denied-query"]]["response"]["error_message"] is None  # data plane: no message
    assert BOB in rows[written["ids"]["denied-put"]]["response"]["error_message"]


def test_the_registry_refusal_of_a_model_delete_is_recorded(
    admin: httpx.Client, bob: httpx.Client, written: dict[str, Any]
) -> None:
    name = f"audited-model-{uuid.uuid4().hex[:6]}"
    assert admin.post("/api/2.0/mlflow/registered-models/create", json={"name": name}).status_code == 200
    rid = f"audit-mlflow-{uuid.uuid4().hex[:8]}"
    refused = bob.request(
        "DELETE",
        "/api/2.0/mlflow/registered-models/delete",
        json={"name": name},
        headers={"x-request-id": rid},
    )
    assert refused.status_code == 403, refused.text
    row = by_request(audit_rows(admin))[rid]
    assert (row["service_name"], row["action_name"]) == ("mlflow", "registeredModelsDelete")
    assert row["user_identity"]["email"] == BOB and row["response"]["status_code"] == 403
    assert row["request_params"] == {"name": name}


def test_no_secret_or_token_value_is_recorded(admin: httpx.Client, written: dict[str, Any]) -> None:
    text = json.dumps(audit_rows(admin), default=str)
    needles = [
        SECRET_VALUE,
        _b64(SECRET_VALUE.encode()),
        _b64(BYTES_SECRET),
        INLINE_KEY,
        API_KEY,
        "bob-overwrite-value",
        written["token_value"],
        ADMIN_TOKEN,
        "dapi-not-a-real-token-77",
    ]
    assert [n for n in needles if n in text] == []


def test_only_admins_read_the_audit_log(bob: httpx.Client, written: dict[str, Any]) -> None:
    answer = bob.post("/api/2.0/modelport/tables/query", json={"sql": f"SELECT count(*) FROM {AUDIT}"})
    assert answer.status_code == 403 and answer.json()["error_code"] == "PERMISSION_DENIED", answer.text


def test_rows_recorded_before_a_kill_9_are_replayed(server: ServerProcess, admin: httpx.Client) -> None:
    rid = f"audit-kill-{uuid.uuid4().hex[:8]}"
    answer = admin.post(
        "/api/2.0/secrets/scopes/create", json={"scope": "audited-kill"}, headers={"x-request-id": rid}
    )
    assert answer.status_code == 200
    server.kill()  # SIGKILL at once: the flusher (every 2 s) has not written the row
    server.start()
    row = by_request(audit_rows(admin))[rid]
    assert row["action_name"] == "createScope" and row["request_params"] == {"scope": "audited-kill"}


def test_the_audit_table_is_where_the_docs_say(server: ServerProcess) -> None:
    assert (Path(server.data_dir) / "tables" / "system" / "access" / "audit" / "_delta_log").is_dir()
