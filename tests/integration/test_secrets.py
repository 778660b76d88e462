"""Secrets through the official databricks-sdk (``WorkspaceClient().secrets``), their ACLs,
secret references in endpoint configs, and the secret-leak test.

The leak test drives the control plane with secret values in every place a client may
put one (inline ``*_plaintext`` credentials, references, config updates, error paths),
then scans every response body it saw and every file under the server's data directory
for the values and their base64: there must be no hit. Queries to external models are
exercised by :func:`exercise_query_paths`, which grows with the data plane.
"""

from __future__ import annotations

import base64
import contextlib
import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import (
    DatabricksError,
    InvalidParameterValue,
    PermissionDenied,
    ResourceAlreadyExists,
    ResourceDoesNotExist,
)
from databricks.sdk.service.workspace import AclItem, AclPermission, ScopeBackendType

from tests.serverproc import ADMIN_TOKEN, ServerProcess, free_port
from tests.support.endpoints import wait_settled
from tests.support.names import unique
from tests.support.principals import create_user, obo_token
from tests.support.stores import STORES, server_on_each_store, stored_bytes

API = "/api/2.0/serving-endpoints"
SECRETS = "/api/2.0/secrets"


@pytest.fixture(scope="module", params=STORES)
def server(request: pytest.FixtureRequest) -> ServerProcess:
    """Every test here runs on the SQLite and on the PostgreSQL session server."""
    return server_on_each_store(request)


@pytest.fixture(scope="module")
def w(server: ServerProcess) -> WorkspaceClient:
    return WorkspaceClient(host=server.url, token=ADMIN_TOKEN)


@pytest.fixture
def scope(w: WorkspaceClient) -> Iterator[str]:
    """A fresh scope made by the admin, deleted afterwards."""
    name = unique("sc")
    w.secrets.create_scope(scope=name)
    yield name
    with contextlib.suppress(ResourceDoesNotExist):
        w.secrets.delete_scope(name)


@pytest.fixture
def alice(server: ServerProcess, http: httpx.Client) -> tuple[str, WorkspaceClient]:
    """A fresh non-admin user and an SDK client with her token."""
    name = f"{unique('alice')}@example.com"
    create_user(http, name)
    token = obo_token(http, user_name=name)["token_value"]
    return name, WorkspaceClient(host=server.url, token=token)


def b64(value: bytes) -> str:
    return base64.b64encode(value).decode("ascii")


def openai_entity(openai_config: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "name": "chat",
        "external_model": {
            "provider": "openai",
            "name": "gpt-4o-mini",
            "task": "llm/v1/chat",
            "openai_config": openai_config,
        },
        **extra,
    }


# ---- the secrets API with the official SDK ------------------------------------------------------
def test_scope_secret_and_acl_round_trip_with_the_sdk(w: WorkspaceClient, http: httpx.Client) -> None:
    name = unique("sdk")
    reader = f"{unique('reader')}@example.com"
    create_user(http, reader)
    started = int(time.time() * 1000)

    w.secrets.create_scope(scope=name)
    assert any(
        s.name == name and s.backend_type == ScopeBackendType.DATABRICKS for s in w.secrets.list_scopes()
    )
    w.secrets.put_secret(name, "api", string_value="hello")
    w.secrets.put_secret(name, "blob", bytes_value=b64(bytes(range(8))))

    listed = sorted(w.secrets.list_secrets(name), key=lambda s: s.key or "")
    assert [s.key for s in listed] == ["api", "blob"]
    assert all(started - 1000 <= (s.last_updated_timestamp or 0) <= time.time() * 1000 + 1000 for s in listed)
    got = w.secrets.get_secret(name, "api")
    assert (got.key, base64.b64decode(got.value or "")) == ("api", b"hello")
    assert base64.b64decode(w.secrets.get_secret(name, "blob").value or "") == bytes(range(8))
    w.secrets.put_secret(name, "api", string_value="hello again")
    assert base64.b64decode(w.secrets.get_secret(name, "api").value or "") == b"hello again"

    assert list(w.secrets.list_acls(name)) == [AclItem(principal="admin", permission=AclPermission.MANAGE)]
    w.secrets.put_acl(name, reader, AclPermission.READ)
    assert w.secrets.get_acl(name, reader) == AclItem(principal=reader, permission=AclPermission.READ)
    w.secrets.put_acl(name, reader, AclPermission.WRITE)
    assert {(a.principal, a.permission) for a in w.secrets.list_acls(name)} == {
        ("admin", AclPermission.MANAGE),
        (reader, AclPermission.WRITE),
    }
    w.secrets.delete_acl(name, reader)
    with pytest.raises(ResourceDoesNotExist, match=f"No ACL for principal '{reader}'"):
        w.secrets.get_acl(name, reader)

    w.secrets.delete_secret(name, "api")
    assert [s.key for s in w.secrets.list_secrets(name)] == ["blob"]
    with pytest.raises(ResourceDoesNotExist, match="Secret 'api' does not exist"):
        w.secrets.delete_secret(name, "api")
    w.secrets.delete_scope(name)
    assert name not in [s.name for s in w.secrets.list_scopes()]
    with pytest.raises(ResourceDoesNotExist, match=f"Scope {name} does not exist"):
        w.secrets.delete_scope(name)


def test_secrets_api_errors_have_databricks_codes(w: WorkspaceClient, http: httpx.Client, scope: str) -> None:
    cases: list[tuple[Callable[[], Any], type[DatabricksError], str]] = [
        (lambda: w.secrets.create_scope(scope=scope), ResourceAlreadyExists, f"Scope {scope} already exists"),
        (lambda: w.secrets.create_scope(scope="no spaces"), InvalidParameterValue, "'no spaces'"),
        (lambda: w.secrets.get_secret(scope, "nope"), ResourceDoesNotExist, "Secret 'nope' does not exist"),
        (
            lambda: w.secrets.list_secrets("ghost-scope"),
            ResourceDoesNotExist,
            "Scope ghost-scope does not exist",
        ),
        (
            lambda: w.secrets.put_secret("ghost-scope", "k", string_value="v"),
            ResourceDoesNotExist,
            "ghost-scope",
        ),
        (lambda: w.secrets.put_secret(scope, "k"), InvalidParameterValue, "exactly one of"),
        (
            lambda: w.secrets.put_secret(scope, "bad/key", string_value="v"),
            InvalidParameterValue,
            "'bad/key'",
        ),
        (
            lambda: w.secrets.put_acl(scope, "nobody@example.com", AclPermission.READ),
            InvalidParameterValue,
            "'nobody@example.com'",
        ),
    ]
    for call, cls, fragment in cases:
        with pytest.raises(cls) as info:
            call()
        assert type(info.value) is cls, f"{type(info.value).__name__}: {info.value}"
        assert fragment in str(info.value)
    raw = http.post(f"{SECRETS}/acls/put", json={"scope": scope, "principal": "admin", "permission": "OWN"})
    assert raw.status_code == 400 and raw.json()["error_code"] == "INVALID_PARAMETER_VALUE", raw.text


# ---- permissions with a second, non-admin user -------------------------------------------------
def test_scope_acls_decide_what_a_user_may_do(
    w: WorkspaceClient, scope: str, alice: tuple[str, WorkspaceClient]
) -> None:
    name, aw = alice
    w.secrets.put_secret(scope, "k", string_value="admin-value")

    assert scope in [s.name for s in aw.secrets.list_scopes()]  # names are listed, as Databricks does
    for denied in (
        lambda: aw.secrets.list_secrets(scope),
        lambda: aw.secrets.get_secret(scope, "k"),
        lambda: aw.secrets.put_secret(scope, "k2", string_value="x"),
        lambda: aw.secrets.list_acls(scope),
        lambda: aw.secrets.delete_scope(scope),
    ):
        with pytest.raises(PermissionDenied, match=f"'{name}' does not have"):
            denied()

    w.secrets.put_acl(scope, name, AclPermission.READ)
    assert [s.key for s in aw.secrets.list_secrets(scope)] == ["k"]
    assert base64.b64decode(aw.secrets.get_secret(scope, "k").value or "") == b"admin-value"
    with pytest.raises(PermissionDenied, match=r"WRITE permission .* \(has READ\)"):
        aw.secrets.put_secret(scope, "k2", string_value="x")

    w.secrets.put_acl(scope, name, AclPermission.WRITE)
    aw.secrets.put_secret(scope, "k2", string_value="x")
    aw.secrets.delete_secret(scope, "k2")
    with pytest.raises(PermissionDenied, match="MANAGE"):
        aw.secrets.put_acl(scope, name, AclPermission.MANAGE)

    own = unique("alice-own")
    aw.secrets.create_scope(scope=own)
    assert list(aw.secrets.list_acls(own)) == [AclItem(principal=name, permission=AclPermission.MANAGE)]
    aw.secrets.put_secret(own, "mine", string_value="hers")
    assert base64.b64decode(w.secrets.get_secret(own, "mine").value or "") == b"hers"  # admins read all
    with pytest.raises(InvalidParameterValue, match="reserved"):
        aw.secrets.create_scope(scope="modelport-endpoint-0123")
    aw.secrets.delete_scope(own)


def test_endpoint_references_must_exist_and_be_readable(
    w: WorkspaceClient, scope: str, alice: tuple[str, WorkspaceClient], server: ServerProcess
) -> None:
    name, aw = alice
    w.secrets.put_secret(scope, "openai", string_value="sk-for-references")
    ref = f"{{{{secrets/{scope}/openai}}}}"
    with httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {aw.config.token}"}, timeout=30
    ) as client:
        body = {
            "name": unique("ref"),
            "config": {"served_entities": [openai_entity({"openai_api_key": ref})]},
        }
        denied = client.post(API, json=body)
        assert denied.status_code == 403, denied.text
        assert denied.json()["error_code"] == "PERMISSION_DENIED"
        assert f"READ permission on secret scope '{scope}'" in denied.json()["message"]
        assert ref in denied.json()["message"]

        missing = {
            **body,
            "config": {"served_entities": [openai_entity({"openai_api_key": "{{secrets/none/k}}"})]},
        }
        resp = client.post(API, json=missing)
        assert resp.status_code == 400 and resp.json()["error_code"] == "INVALID_PARAMETER_VALUE", resp.text
        assert "{{secrets/none/k}} does not exist" in resp.json()["message"]
        assert "openai_config.openai_api_key" in resp.json()["message"]

        env_ref = {"TOKEN": f"{{{{secrets/{scope}/absent}}}}"}
        with_env = {**body, "config": {"served_entities": [openai_entity({}, environment_vars=env_ref)]}}
        w.secrets.put_acl(scope, name, AclPermission.READ)
        resp = client.post(API, json=with_env)
        assert resp.status_code == 400, resp.text
        assert f"scope '{scope}' has no key 'absent'" in resp.json()["message"]

        created = client.post(API, json=body)
        assert created.status_code == 200, created.text
        block = wait_settled(client, body["name"])["config"]["served_entities"][0]["external_model"]
        assert block["openai_config"] == {"openai_api_key": ref}


def test_inline_credentials_live_in_a_scope_only_admins_read(
    w: WorkspaceClient, alice: tuple[str, WorkspaceClient], server: ServerProcess
) -> None:
    _, aw = alice
    endpoint = unique("inline")
    with httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {aw.config.token}"}, timeout=30
    ) as client:
        entity = openai_entity({"openai_api_key_plaintext": "sk-inline-credential"})
        created = client.post(API, json={"name": endpoint, "config": {"served_entities": [entity]}})
        assert created.status_code == 200, created.text
        server_scope = f"modelport-endpoint-{created.json()['id']}"
        shown = wait_settled(client, endpoint)["config"]["served_entities"][0]["external_model"]
        assert shown["openai_config"] == {"openai_api_key_plaintext": "[REDACTED]"}

        with pytest.raises(PermissionDenied):
            aw.secrets.list_secrets(server_scope)
        [stored] = w.secrets.list_secrets(server_scope)
        assert (stored.key or "").startswith("chat.openai_api_key.")

        assert client.delete(f"{API}/{endpoint}").status_code == 200
    assert server_scope not in [s.name for s in w.secrets.list_scopes()]


# ---- environment_vars references reach the replica ----------------------------------------------
PROBE = """
import os

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel


class Probe(PythonModel):
    def predict(self, context, model_input, params=None):
        return pd.DataFrame([{"probe_var": os.environ.get("PROBE_VAR", "")}] * len(model_input))


mlflow.models.set_model(Probe())
"""


@pytest.fixture(scope="module")
def env_probe_model(server: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> str:
    import mlflow
    import pandas as pd

    os.environ["MLFLOW_TRACKING_TOKEN"] = ADMIN_TOKEN
    mlflow.set_tracking_uri(server.url)
    code = tmp_path_factory.mktemp("secret-probe") / "probe.py"
    code.write_text(PROBE)
    with mlflow.start_run():
        mlflow.pyfunc.log_model(
            name="model",
            python_model=str(code),
            registered_model_name="secret-env-probe",
            input_example=pd.DataFrame({"x": [1.0]}),
        )
    return "secret-env-probe"


def test_environment_var_references_are_resolved_for_replicas_only(
    w: WorkspaceClient, http: httpx.Client, scope: str, env_probe_model: str
) -> None:
    w.secrets.put_secret(scope, "probe", string_value="value-from-the-secret")
    ref = f"{{{{secrets/{scope}/probe}}}}"
    entity = {"name": "probe", "entity_name": env_probe_model, "entity_version": "1"}
    created = http.post(
        API,
        json={
            "name": "sec-env",
            "config": {"served_entities": [{**entity, "environment_vars": {"PROBE_VAR": ref}}]},
        },
    )
    assert created.status_code == 200, created.text
    got = wait_settled(http, "sec-env", timeout=120)
    assert got["state"]["config_update"] == "NOT_UPDATING", got
    assert got["config"]["served_entities"][0]["environment_vars"] == {"PROBE_VAR": ref}

    answer = http.post(
        "/serving-endpoints/sec-env/invocations",
        json={"dataframe_split": {"columns": ["x"], "data": [[1.0]]}},
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["predictions"] == [{"probe_var": "value-from-the-secret"}]


# ---- the secret-leak test ------------------------------------------------------------------------
class Recorder:
    """Keeps every response body (and header block) a test receives, for the final scan."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, bytes]] = []

    def __call__(self, resp: httpx.Response) -> httpx.Response:
        head = "\n".join(f"{k}: {v}" for k, v in resp.headers.items()).encode()
        self.seen.append((f"{resp.request.method} {resp.request.url.path}", head + b"\n\n" + resp.content))
        return resp


def leak_needles(values: list[str]) -> list[bytes]:
    """What must never appear: each value and its base64 (standard and url-safe)."""
    out = []
    for value in values:
        raw = value.encode()
        out += [raw, base64.b64encode(raw), base64.urlsafe_b64encode(raw)]
    return out


def scan_data_dir(root: Path, needles: list[bytes]) -> list[str]:
    """``path: needle`` for every regular file under ``root`` that holds a needle."""
    hits = []
    for path in sorted(root.rglob("*")):
        if path.is_symlink() or not path.is_file():
            continue
        try:
            data = path.read_bytes()
        except OSError:
            continue
        hits += [f"{path}: {n[:12]!r}..." for n in needles if n in data]
    return hits


def exercise_query_paths(client: httpx.Client, record: Recorder, endpoints: list[str]) -> None:
    """Queries to the external-model endpoints, recorded for the scan. Their providers point
    at closed local ports, so each query fails upstream: the error paths of the data plane
    (provider errors, timeouts) must not echo a credential either. Add query shapes here
    (completions, embeddings, streaming, the OpenAI-compatible routes) as the data plane
    serves them; statuses are not checked here."""
    chat = {"messages": [{"role": "user", "content": "hello"}], "max_tokens": 5}
    for name in endpoints:
        for path, body in (
            (f"/serving-endpoints/{name}/invocations", chat),
            (f"/serving-endpoints/{name}/invocations", {**chat, "stream": True}),
            (f"/serving-endpoints/{name}/served-models/chat/invocations", chat),
        ):
            with contextlib.suppress(httpx.TimeoutException):
                record(client.post(path, json=body, timeout=20))


def test_no_response_log_or_file_contains_a_secret_value(
    server: ServerProcess, http: httpx.Client, w: WorkspaceClient, scope: str
) -> None:
    tag = uuid.uuid4().hex
    plain, rotated, referenced, custom = (
        f"sk-leak-{kind}-{tag}" for kind in ("plain", "rotated", "ref", "custom")
    )
    needles = leak_needles([plain, rotated, referenced, custom])
    record = Recorder()
    closed = f"http://127.0.0.1:{free_port()}"
    ref = f"{{{{secrets/{scope}/openai}}}}"
    a, b, c = unique("leak-a"), unique("leak-b"), unique("leak-c")

    def post(path: str, body: Any) -> httpx.Response:
        return record(http.post(path, json=body))

    # Secrets and endpoints that hold them: inline, by reference, in a custom provider's auth.
    assert (
        post(f"{SECRETS}/put", {"scope": scope, "key": "openai", "string_value": referenced}).status_code
        == 200
    )
    inline = openai_entity({"openai_api_key_plaintext": plain, "openai_api_base": f"{closed}/v1"})
    by_ref = openai_entity(
        {"openai_api_key": ref, "openai_api_base": f"{closed}/v1"}, environment_vars={"KEY": ref}
    )
    custom_entity = {
        "name": "chat",
        "external_model": {
            "provider": "custom",
            "name": "my-model",
            "task": "llm/v1/chat",
            "custom_provider_config": {
                "custom_provider_url": f"{closed}/v1/chat",
                "api_key_auth": {"key": "X-Api-Key", "value_plaintext": custom},
            },
        },
    }
    for name, entity in ((a, inline), (b, by_ref), (c, custom_entity)):
        created = post(API, {"name": name, "config": {"served_entities": [entity]}})
        assert created.status_code == 200, created.text
        assert wait_settled(http, name)["state"]["config_update"] == "NOT_UPDATING"

    # Everything a client may read back.
    for name in (a, b, c):
        got = record(http.get(f"{API}/{name}"))
        record(http.get(f"/api/2.0/permissions/serving-endpoints/{got.json()['id']}"))
        for suffix in ("served-models/chat/logs", "served-models/chat/build-logs", "metrics", "openapi"):
            record(http.get(f"{API}/{name}/{suffix}"))
    record(http.get(API))
    record(http.get(f"{SECRETS}/list", params={"scope": scope}))
    record(http.get(f"{SECRETS}/scopes/list"))

    # A config update with a new inline key (the old one serves until it is replaced).
    rotated_entity = openai_entity({"openai_api_key_plaintext": rotated, "openai_api_base": f"{closed}/v1"})
    updated = record(http.put(f"{API}/{a}/config", json={"served_entities": [rotated_entity]}))
    assert updated.status_code == 200, updated.text
    wait_settled(http, a)
    record(http.get(f"{API}/{a}"))

    # Error paths that echo parts of their input.
    bad_requests: list[tuple[str, str, Any]] = [
        ("POST", API, {"name": "bad name!", "config": {"served_entities": [inline]}}),
        ("POST", API, {"name": a, "config": {"served_entities": [inline]}}),
        (
            "POST",
            API,
            {"name": unique("x"), "config": {"served_entities": [openai_entity({"openai_api_key": plain})]}},
        ),
        (
            "POST",
            API,
            {
                "name": unique("x"),
                "config": {
                    "served_entities": [
                        openai_entity({"openai_api_key": ref, "openai_api_key_plaintext": plain})
                    ]
                },
            },
        ),
        (
            "POST",
            API,
            {"name": unique("x"), "config": {"served_entities": {"openai_api_key_plaintext": plain}}},
        ),
        ("POST", API, {"name": unique("x"), "config": {"served_entities": [openai_entity(plain)]}}),  # type: ignore[arg-type]
        (
            "POST",
            API,
            {"name": unique("x"), "config": {"served_entities": [{**inline, "workload_size": plain}]}},
        ),
        (
            "POST",
            API,
            {
                "name": unique("x"),
                "config": {"served_entities": [{**inline, "environment_vars": {"K": "{{secrets/no/pe}}"}}]},
            },
        ),
        (
            "PUT",
            f"{API}/{a}/config",
            {"served_entities": [inline], "traffic_config": {"routes": [{"x": plain}]}},
        ),
        (
            "PUT",
            f"{API}/{a}/config",
            {
                "served_entities": [
                    {**inline, "external_model": {**inline["external_model"], "provider": "skynet"}}
                ]
            },
        ),
        ("PUT", f"{API}/ghost-endpoint/config", {"served_entities": [inline]}),
        ("POST", f"{SECRETS}/put", {"scope": scope, "key": "bad key", "string_value": plain}),
        ("POST", f"{SECRETS}/put", {"scope": "ghost-scope", "key": "k", "string_value": plain}),
        ("POST", f"{SECRETS}/put", {"scope": scope, "key": "k", "bytes_value": plain + "!"}),
        (
            "POST",
            f"{SECRETS}/put",
            {"scope": scope, "key": "k", "string_value": plain, "bytes_value": "eA=="},
        ),
        ("POST", f"{SECRETS}/put", {"scope": scope, "key": "k", "string_value": plain * 5000}),
    ]
    for method, path, body in bad_requests:
        resp = record(http.request(method, path, json=body))
        assert 400 <= resp.status_code < 500, f"{method} {path}: {resp.status_code} {resp.text[:300]}"
    truncated = b'{"scope": "' + scope.encode() + b'", "key": "k", "string_value": "' + plain.encode()
    resp = record(
        http.post(f"{SECRETS}/put", content=truncated, headers={"Content-Type": "application/json"})
    )
    assert resp.status_code == 400

    exercise_query_paths(http, record, [a, b, c])

    assert record(http.delete(f"{API}/{c}")).status_code == 200
    assert record(http.get(f"{API}/{c}")).status_code == 404

    # The scan: responses, then every file of the data directory (database, WAL, logs).
    response_hits = [f"{where}: {n[:12]!r}..." for where, data in record.seen for n in needles if n in data]
    assert response_hits == []
    assert len(record.seen) > 40
    assert scan_data_dir(server.data_dir, needles) == []
    stored = stored_bytes(server)  # the PostgreSQL store lives outside the data directory
    assert [n[:12] for n in needles if n in stored] == []
