"""``modelport secrets ...`` through typer's CliRunner against the scripted fake server."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from modelport.client.cli.main import app

runner = CliRunner()


def invoke(server: Any, *args: str, input: str | bytes | None = None) -> Any:
    return runner.invoke(app, list(args), obj=server.factory(), input=input)


def test_create_scope_posts_the_databricks_body(server: Any) -> None:
    server.on("POST", "/api/2.0/secrets/scopes/create", (200, {}))

    result = invoke(server, "secrets", "create-scope", "llm", "--initial-manage-principal", "users")

    assert (result.exit_code, result.stdout) == (0, "Created secret scope llm.\n")
    assert server.body() == {"scope": "llm", "initial_manage_principal": "users"}


def test_put_secret_reads_stdin_byte_for_byte(server: Any) -> None:
    server.on("POST", "/api/2.0/secrets/put", (200, {}))

    result = invoke(server, "secrets", "put-secret", "llm", "openai", input=b"sk-abc\n")

    assert result.exit_code == 0, result.output
    assert server.body() == {
        "scope": "llm",
        "key": "openai",
        "bytes_value": base64.b64encode(b"sk-abc\n").decode(),
    }


def test_put_secret_from_an_option_or_a_file(server: Any, tmp_path: Path) -> None:
    server.on("POST", "/api/2.0/secrets/put", (200, {}))
    path = tmp_path / "key.bin"
    path.write_bytes(b"\x00\x01")

    invoke(server, "secrets", "put-secret", "llm", "a", "--string-value", "text")
    assert server.body() == {"scope": "llm", "key": "a", "string_value": "text"}
    invoke(server, "secrets", "put-secret", "llm", "b", "--value-file", str(path))
    assert server.body()["bytes_value"] == "AAE="

    both = invoke(
        server, "secrets", "put-secret", "llm", "c", "--string-value", "x", "--value-file", str(path)
    )
    assert both.exit_code == 1
    assert "at most one of --string-value and --value-file" in both.stderr


def test_list_secrets_shows_keys_and_times_only(server: Any) -> None:
    listing = {"secrets": [{"key": "openai", "last_updated_timestamp": 1779139587000}]}
    server.on("GET", "/api/2.0/secrets/list", (200, listing))

    result = invoke(server, "secrets", "list-secrets", "llm")

    assert result.stdout == "KEY     LAST_UPDATED\nopenai  2026-05-18T21:26:27Z\n"
    assert server.calls() == [("GET", "/api/2.0/secrets/list?scope=llm")]


def test_get_secret_prints_the_decoded_value_and_a_newline(server: Any) -> None:
    server.on("GET", "/api/2.0/secrets/get", (200, {"key": "k", "value": base64.b64encode(b"v").decode()}))

    result = invoke(server, "secrets", "get-secret", "my scope", "k")

    assert result.stdout == "v\n"
    assert server.calls() == [("GET", "/api/2.0/secrets/get?scope=my+scope&key=k")]


def test_get_secret_raw_writes_the_exact_bytes(server: Any) -> None:
    blob = b"\x00\xffkey\n"
    server.on("GET", "/api/2.0/secrets/get", (200, {"key": "k", "value": base64.b64encode(blob).decode()}))

    result = invoke(server, "secrets", "get-secret", "s", "k", "--raw")

    assert (result.exit_code, result.stdout_bytes) == (0, blob)


def test_acls_table_and_put(server: Any) -> None:
    items = {
        "items": [{"principal": "admin", "permission": "MANAGE"}, {"principal": "ds", "permission": "READ"}]
    }
    server.on("GET", "/api/2.0/secrets/acls/list", (200, items))
    server.on("POST", "/api/2.0/secrets/acls/put", (200, {}))

    listed = invoke(server, "secrets", "list-acls", "llm")
    granted = invoke(server, "secrets", "put-acl", "llm", "ds", "read")

    assert listed.stdout == "PRINCIPAL  PERMISSION\nadmin      MANAGE\nds         READ\n"
    assert granted.stdout == "Granted READ on scope llm to ds.\n"
    assert server.body() == {"scope": "llm", "principal": "ds", "permission": "READ"}


def test_a_permission_error_is_printed_with_its_code(server: Any) -> None:
    body = {"error_code": "PERMISSION_DENIED", "message": "'bob' does not have READ permission"}
    server.on("GET", "/api/2.0/secrets/list", (403, body))

    result = invoke(server, "secrets", "list-secrets", "llm")

    assert result.exit_code == 1
    assert result.stderr == "Error: PERMISSION_DENIED: 'bob' does not have READ permission\n"
