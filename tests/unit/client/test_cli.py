"""The ``modelport`` CLI through typer's CliRunner; the SDK talks to a MockTransport.

Commands get their client from the click context object, so ``invoke(..., obj=factory)``
points them at the fake server without patching anything.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import os
import re
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import typer
from typer.testing import CliRunner

from modelport.client.cli.main import app
from modelport.client.sdk import ModelportClient
from modelport.config import SETTINGS, Settings
from modelport.tables.spool import Spool

MakeEndpoint = Callable[..., dict[str, Any]]
runner = CliRunner()
ENV_VARS = {spec.name: spec.env_var for spec in SETTINGS}

LIST_BODY = {
    "endpoints": [
        {
            "name": "chat",
            "creator": "alice@example.com",
            "last_updated_timestamp": 1779139587000,
            "state": {"ready": "READY", "config_update": "NOT_UPDATING"},
            "config": {"served_entities": [{"name": "gpt-4o"}, {"name": "claude"}]},
        },
        {
            "name": "fraud-model",
            "creator": "bob",
            "last_updated_timestamp": 1779139600000,
            "state": {"ready": "NOT_READY", "config_update": "IN_PROGRESS"},
        },
    ]
}


def invoke(server: Any, *args: str, input: str | None = None) -> Any:
    return runner.invoke(app, list(args), obj=server.factory(), input=input)


def flat(text: str) -> str:
    """Help text with its line wrapping undone (rich also wraps after a hyphen)."""
    return re.sub(r"(?<=\w-) (?=\w)", "", " ".join(text.split()))


# ---- endpoints --------------------------------------------------------------------------
def test_endpoints_list_prints_an_aligned_table(server: Any) -> None:
    server.on("GET", "/api/2.0/serving-endpoints", (200, LIST_BODY))

    result = invoke(server, "endpoints", "list")

    assert result.exit_code == 0
    assert result.stdout == (
        "NAME         STATE                  ENTITIES       CREATOR            UPDATED\n"
        "chat         READY/NOT_UPDATING     gpt-4o,claude  alice@example.com  2026-05-18T21:26:27Z\n"
        "fraud-model  NOT_READY/IN_PROGRESS  -              bob                2026-05-18T21:26:40Z\n"
    )


def test_endpoints_list_json_prints_the_server_objects(server: Any) -> None:
    server.on("GET", "/api/2.0/serving-endpoints", (200, LIST_BODY))

    result = invoke(server, "endpoints", "list", "--output", "json")

    assert result.exit_code == 0
    assert json.loads(result.stdout) == LIST_BODY["endpoints"]


def test_host_and_token_options_reach_the_request(server: Any) -> None:
    server.on("GET", "/api/2.0/serving-endpoints", (200, {"endpoints": []}))

    result = invoke(server, "endpoints", "list", "--host", "http://other:9999", "--token", "dapi-cli")

    assert result.exit_code == 0
    assert str(server.requests[0].url) == "http://other:9999/api/2.0/serving-endpoints"
    assert server.requests[0].headers["authorization"] == "Bearer dapi-cli"


def test_server_error_prints_code_and_message_and_exits_1(server: Any) -> None:
    body = {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "Endpoint with name 'nope' does not exist."}
    server.on("GET", "/api/2.0/serving-endpoints/nope", (404, body))

    result = invoke(server, "endpoints", "get", "nope")

    assert result.exit_code == 1
    assert result.stderr == "Error: RESOURCE_DOES_NOT_EXIST: Endpoint with name 'nope' does not exist.\n"
    assert result.stdout == ""
    assert "Traceback" not in result.output


def test_missing_token_is_reported_without_a_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MODELPORT_TOKEN", raising=False)

    result = runner.invoke(app, ["endpoints", "list"])

    assert result.exit_code == 1
    assert result.stderr.startswith(
        "Error: UNAUTHENTICATED: no API token given: set MODELPORT_TOKEN or pass --token"
    )


def test_get_prints_fields_and_config_tables(server: Any, make_endpoint: MakeEndpoint) -> None:
    endpoint = make_endpoint(
        task="llm/v1/chat",
        config={
            "config_version": 2,
            "served_entities": [
                {
                    "name": "gpt-4o",
                    "external_model": {"provider": "openai", "name": "gpt-4o"},
                    "state": {"deployment": "DEPLOYMENT_READY", "deployment_state_message": ""},
                },
                {
                    "name": "model-3",
                    "entity_name": "main.default.model",
                    "entity_version": "3",
                    "state": {"deployment": "DEPLOYMENT_READY", "deployment_state_message": "Ready"},
                },
            ],
            "traffic_config": {
                "routes": [
                    {"served_entity_name": "gpt-4o", "traffic_percentage": 80},
                    {"served_entity_name": "model-3", "traffic_percentage": 20},
                ]
            },
        },
    )
    server.on("GET", "/api/2.0/serving-endpoints/my-endpoint", (200, endpoint))

    result = invoke(server, "endpoints", "get", "my-endpoint")

    assert result.exit_code == 0
    assert result.stdout == (
        "NAME     my-endpoint\n"
        "ID       e3c1a2b3\n"
        "STATE    READY/NOT_UPDATING\n"
        "TASK     llm/v1/chat\n"
        "CREATOR  admin\n"
        "CREATED  2026-11-21T20:33:25Z\n"
        "UPDATED  2026-11-21T20:34:25Z\n"
        "TAGS     team=ml\n"
        "\n"
        "CONFIG (version 2)\n"
        "SERVED ENTITY  SOURCE              VERSION  TRAFFIC  DEPLOYMENT        MESSAGE\n"
        "gpt-4o         openai:gpt-4o       -        80%      DEPLOYMENT_READY\n"
        "model-3        main.default.model  3        20%      DEPLOYMENT_READY  Ready\n"
    )


def test_create_with_wait_shows_progress_and_prints_the_settled_endpoint(
    server: Any, make_endpoint: MakeEndpoint, tmp_path: Path
) -> None:
    request = {
        "name": "my-endpoint",
        "config": {"served_entities": [{"entity_name": "m", "entity_version": "1"}]},
    }
    spec = tmp_path / "endpoint.json"
    spec.write_text(json.dumps(request))
    server.on(
        "POST", "/api/2.0/serving-endpoints", (200, make_endpoint(update="IN_PROGRESS", ready="NOT_READY"))
    )
    server.on(
        "GET",
        "/api/2.0/serving-endpoints/my-endpoint",
        (200, make_endpoint(update="IN_PROGRESS", ready="NOT_READY")),
        (200, make_endpoint()),
    )

    result = invoke(server, "endpoints", "create", "-f", str(spec), "--wait", "-o", "json")

    assert result.exit_code == 0, result.output
    assert server.body(0) == request
    assert json.loads(result.stdout)["state"] == {"ready": "READY", "config_update": "NOT_UPDATING"}
    assert result.stderr.splitlines() == [
        "waiting for my-endpoint: IN_PROGRESS (0s)",
        "waiting for my-endpoint: NOT_UPDATING (0s)",
    ]


def test_create_with_wait_exits_1_with_the_failure_message(
    server: Any, make_endpoint: MakeEndpoint, tmp_path: Path
) -> None:
    spec = tmp_path / "endpoint.json"
    spec.write_text('{"name": "my-endpoint"}')
    failed = make_endpoint(
        update="UPDATE_FAILED",
        pending_config={
            "served_entities": [
                {
                    "name": "m-1",
                    "state": {"deployment": "DEPLOYMENT_FAILED", "deployment_state_message": "OOM"},
                }
            ]
        },
    )
    server.on("POST", "/api/2.0/serving-endpoints", (200, make_endpoint(update="IN_PROGRESS")))
    server.on("GET", "/api/2.0/serving-endpoints/my-endpoint", (200, failed))

    result = invoke(server, "endpoints", "create", "--file", str(spec), "--wait")

    assert result.exit_code == 1
    assert result.stderr.splitlines()[-1] == (
        "Error: INVALID_STATE: config update of endpoint 'my-endpoint' failed: m-1: OOM"
    )


def test_update_config_reads_yaml_from_stdin(server: Any, make_endpoint: MakeEndpoint) -> None:
    server.on(
        "PUT", "/api/2.0/serving-endpoints/my-endpoint/config", (200, make_endpoint(update="IN_PROGRESS"))
    )
    yaml_text = "served_entities:\n  - entity_name: m\n    entity_version: '2'\n    workload_size: Small\n"

    result = invoke(
        server, "endpoints", "update-config", "my-endpoint", "-f", "-", "-o", "json", input=yaml_text
    )

    assert result.exit_code == 0, result.output
    assert server.body() == {
        "served_entities": [{"entity_name": "m", "entity_version": "2", "workload_size": "Small"}]
    }


def test_unreadable_request_file_is_a_clean_error(server: Any, tmp_path: Path) -> None:
    missing = tmp_path / "missing.json"

    result = invoke(server, "endpoints", "create", "-f", str(missing))

    assert result.exit_code == 1
    assert result.stderr == (
        f"Error: INVALID_PARAMETER_VALUE: cannot read {missing}: No such file or directory\n"
    )
    assert server.requests == []


def test_query_posts_the_json_option_to_one_served_entity(server: Any) -> None:
    server.on("POST", "/serving-endpoints/chat/served-models/gpt-4o/invocations", (200, {"choices": []}))

    result = invoke(server, "endpoints", "query", "chat", "--json", '{"messages": []}', "--served", "gpt-4o")

    assert result.exit_code == 0
    assert server.body() == {"messages": []}
    assert json.loads(result.stdout) == {"choices": []}


def test_query_needs_exactly_one_request_source(server: Any) -> None:
    result = invoke(server, "endpoints", "query", "chat")

    assert result.exit_code == 1
    assert result.stderr == (
        "Error: INVALID_PARAMETER_VALUE: give the request with exactly one of -f FILE or --json TEXT\n"
    )


def test_query_rejects_a_json_option_that_is_neither_an_object_nor_records(server: Any) -> None:
    result = invoke(server, "endpoints", "query", "chat", "--json", "[1, 2]")

    assert result.exit_code == 1
    assert result.stderr == (
        "Error: INVALID_PARAMETER_VALUE: --json: expected a JSON object or a list of records (objects), "
        "got a list holding int\n"
    )
    assert server.requests == []


def test_query_sends_a_file_of_records_as_dataframe_records(server: Any, tmp_path: Path) -> None:
    server.on("POST", "/serving-endpoints/iris/invocations", (200, {"predictions": [0, 1]}))
    records = tmp_path / "records.json"
    records.write_text('[{"a": 1}, {"a": 2}]')

    result = invoke(server, "endpoints", "query", "iris", "-f", str(records))

    assert result.exit_code == 0, result.output
    assert server.body() == {"dataframe_records": [{"a": 1}, {"a": 2}]}
    assert json.loads(result.stdout) == {"predictions": [0, 1]}


def test_query_sends_json_records_and_keeps_objects_as_they_are(server: Any) -> None:
    server.on("POST", "/serving-endpoints/iris/invocations", (200, {"predictions": [0]}))

    invoke(server, "endpoints", "query", "iris", "--json", '[{"a": 1}]')
    assert server.body() == {"dataframe_records": [{"a": 1}]}
    invoke(server, "endpoints", "query", "iris", "--json", '{"inputs": [[1, 2]]}')
    assert server.body() == {"inputs": [[1, 2]]}


def test_query_reads_yaml_records_from_stdin(server: Any) -> None:
    server.on("POST", "/serving-endpoints/iris/invocations", (200, {"predictions": [0]}))

    result = invoke(server, "endpoints", "query", "iris", "-f", "-", input="- a: 1\n- a: 2\n")

    assert result.exit_code == 0, result.output
    assert server.body() == {"dataframe_records": [{"a": 1}, {"a": 2}]}


def test_create_still_refuses_a_list(server: Any, tmp_path: Path) -> None:
    spec = tmp_path / "list.json"
    spec.write_text('[{"name": "e"}]')

    result = invoke(server, "endpoints", "create", "-f", str(spec))

    assert result.exit_code == 1
    assert result.stderr == f"Error: INVALID_PARAMETER_VALUE: {spec}: expected a JSON object, got list\n"


def test_delete_confirms_in_table_mode(server: Any) -> None:
    server.on("DELETE", "/api/2.0/serving-endpoints/old", (200, {}))

    result = invoke(server, "endpoints", "delete", "old")

    assert (result.exit_code, result.stdout) == (0, "Deleted endpoint old.\n")


def test_cancel_update_posts_an_empty_body(server: Any, make_endpoint: MakeEndpoint) -> None:
    server.on("POST", "/api/2.0/serving-endpoints/e/cancel-update", (200, make_endpoint(name="e")))

    result = invoke(server, "endpoints", "cancel-update", "e", "-o", "json")

    assert result.exit_code == 0
    assert server.body() == {}
    assert json.loads(result.stdout)["name"] == "e"


def test_logs_print_the_text(server: Any) -> None:
    server.on(
        "GET", "/api/2.0/serving-endpoints/e/served-models/m-1/logs", (200, {"logs": "line 1\nline 2\n"})
    )

    result = invoke(server, "endpoints", "logs", "e", "m-1")

    assert (result.exit_code, result.stdout) == (0, "line 1\nline 2\n")


def test_permissions_look_up_the_id_and_print_a_table(server: Any, make_endpoint: MakeEndpoint) -> None:
    server.on("GET", "/api/2.0/serving-endpoints/e", (200, make_endpoint(name="e")))
    acl = {
        "object_id": "/serving-endpoints/e3c1a2b3",
        "access_control_list": [
            {
                "user_name": "alice",
                "all_permissions": [{"permission_level": "CAN_MANAGE", "inherited": False}],
            },
            {
                "group_name": "admins",
                "all_permissions": [{"permission_level": "CAN_MANAGE", "inherited": True}],
            },
            {"service_principal_name": "sp-1", "all_permissions": [{"permission_level": "CAN_QUERY"}]},
        ],
    }
    server.on("GET", "/api/2.0/permissions/serving-endpoints/e3c1a2b3", (200, acl))

    result = invoke(server, "endpoints", "permissions", "e")

    assert result.exit_code == 0
    assert result.stdout == (
        "PRINCIPAL  TYPE               PERMISSION\n"
        "alice      user               CAN_MANAGE\n"
        "admins     group              CAN_MANAGE (inherited)\n"
        "sp-1       service_principal  CAN_QUERY\n"
    )


# ---- root options and error reporting -----------------------------------------------------
def test_version_prints_the_package_version() -> None:
    result = runner.invoke(app, ["--version"])

    assert (result.exit_code, result.stdout) == (0, f"modelport {importlib.metadata.version('modelport')}\n")


def test_root_output_option_applies_to_the_command(server: Any) -> None:
    server.on("GET", "/api/2.0/serving-endpoints", (200, LIST_BODY))

    result = invoke(server, "-o", "json", "endpoints", "list")

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == LIST_BODY["endpoints"]


def test_the_command_output_option_wins_over_the_root_one(server: Any) -> None:
    server.on("GET", "/api/2.0/token/list", (200, {"token_infos": []}))

    as_table = invoke(server, "--output", "JSON", "tokens", "list", "-o", "table")
    as_json = invoke(server, "--output", "table", "tokens", "list", "-o", "json")

    assert as_table.stdout == "TOKEN_ID  COMMENT  CREATED  EXPIRES\n"
    assert as_json.stdout == "[]\n"


def test_an_invalid_host_url_is_a_parameter_error(server: Any) -> None:
    result = invoke(server, "endpoints", "list", "--host", "http://[::1")

    assert result.exit_code == 1
    assert result.stderr.startswith("Error: INVALID_PARAMETER_VALUE: invalid server URL: ")
    assert len(result.stderr.splitlines()) == 1


def test_an_http_failure_the_sdk_does_not_translate_is_one_line() -> None:
    def broken(request: httpx.Request) -> httpx.Response:
        raise httpx.DecodingError("bad gzip", request=request)

    client = ModelportClient("http://modelport.test", "t", transport=httpx.MockTransport(broken))
    result = runner.invoke(app, ["endpoints", "list"], obj=lambda host, token: client)

    assert result.exit_code == 1
    assert result.stderr == (
        "Error: TEMPORARILY_UNAVAILABLE: the request to the server failed: DecodingError: bad gzip\n"
    )


def test_any_other_exception_is_one_line_without_a_traceback() -> None:
    def factory(host: str | None, token: str | None) -> ModelportClient:
        raise PermissionError(13, "Permission denied", "/home/me/.netrc")

    result = runner.invoke(app, ["tokens", "list"], obj=factory)

    assert result.exit_code == 1
    assert result.stderr == (
        "Error: INTERNAL_ERROR: PermissionError: [Errno 13] Permission denied: '/home/me/.netrc'\n"
    )
    assert result.exception is not None and not isinstance(result.exception, PermissionError)


def test_a_closed_stdout_ends_the_command_quietly() -> None:
    def factory(host: str | None, token: str | None) -> ModelportClient:
        raise BrokenPipeError(32, "Broken pipe")

    result = runner.invoke(app, ["tokens", "list"], obj=factory)

    assert (result.exit_code, result.stderr) == (1, "")


def test_usage_errors_are_still_the_parsers(server: Any) -> None:
    result = invoke(server, "users", "create")

    assert result.exit_code == 2
    assert "Missing argument 'NAME'" in result.stderr


# ---- tokens -----------------------------------------------------------------------------
def test_tokens_create_for_a_service_principal(server: Any) -> None:
    created = {
        "token_value": "dapi-new",
        "token_info": {"token_id": "tok-9", "comment": "ci", "expiry_time": 1779143187000},
    }
    server.on("POST", "/api/2.0/token-management/on-behalf-of/tokens", (200, created))

    result = invoke(
        server,
        "tokens",
        "create",
        "--for-service-principal",
        "sp-app-1",
        "--lifetime-seconds",
        "3600",
        "--comment",
        "ci",
    )

    assert result.exit_code == 0
    assert server.body() == {"lifetime_seconds": 3600, "comment": "ci", "application_id": "sp-app-1"}
    assert result.stdout == (
        "TOKEN_ID  tok-9\nTOKEN     dapi-new\nCOMMENT   ci\nEXPIRES   2026-05-18T22:26:27Z\n"
    )
    assert result.stderr == "Store the token now: it cannot be shown again.\n"


def test_tokens_create_refuses_two_principals(server: Any) -> None:
    result = invoke(server, "tokens", "create", "--for-user", "bob", "--for-service-principal", "sp")

    assert result.exit_code == 1
    assert result.stderr == (
        "Error: INVALID_PARAMETER_VALUE: give at most one of --for-user and --for-service-principal\n"
    )
    assert server.requests == []


def test_tokens_list_table(server: Any) -> None:
    infos = [
        {"token_id": "tok-1", "comment": "laptop", "creation_time": 1779139587000, "expiry_time": -1},
        {"token_id": "tok-2", "creation_time": 1779139587000, "expiry_time": 1779143187000},
    ]
    server.on("GET", "/api/2.0/token/list", (200, {"token_infos": infos}))

    result = invoke(server, "tokens", "list")

    assert result.stdout == (
        "TOKEN_ID  COMMENT  CREATED               EXPIRES\n"
        "tok-1     laptop   2026-05-18T21:26:27Z  never\n"
        "tok-2     -        2026-05-18T21:26:27Z  2026-05-18T22:26:27Z\n"
    )


def test_tokens_delete(server: Any) -> None:
    server.on("POST", "/api/2.0/token/delete", (200, {}))

    result = invoke(server, "tokens", "delete", "tok-1")

    assert (result.exit_code, result.stdout) == (0, "Deleted token tok-1.\n")
    assert server.body() == {"token_id": "tok-1"}


# ---- help and serve ---------------------------------------------------------------------
def _walk(command: Any, path: str = "modelport") -> list[tuple[str, Any]]:
    found = [(path, command)]
    for name, sub in getattr(command, "commands", {}).items():
        found.extend(_walk(sub, f"{path} {name}"))
    return found


def test_every_command_and_option_has_help_text() -> None:
    commands = _walk(typer.main.get_command(app))

    assert {path for path, _ in commands} >= {
        "modelport endpoints list",
        "modelport endpoints create",
        "modelport tokens create",
        "modelport serve",
    }
    for path, command in commands:
        assert command.help, path
        for param in command.params:
            if param.param_type_name == "option":
                assert param.help, f"{path} {param.opts}"


def test_every_client_command_takes_host_token_and_output() -> None:
    for path, command in _walk(typer.main.get_command(app)):
        # serve and migrate work on this machine's files, not through a server.
        if getattr(command, "commands", None) or path in ("modelport serve", "modelport migrate"):
            continue
        options = {opt for param in command.params for opt in param.opts}
        assert {"--host", "--token", "--output"} <= options, path


def test_serve_help_lists_every_setting_flag_with_its_help() -> None:
    result = runner.invoke(app, ["serve", "--help"])

    assert result.exit_code == 0
    text = flat(result.stdout)
    for spec in SETTINGS:
        if spec.flag:
            assert spec.cli_flag in text
            assert flat(f"{spec.help} [env: {spec.env_var}]") in text
        else:
            assert spec.cli_flag not in text
    assert "--demo / --no-demo" in text


@pytest.fixture
def fake_server_module(monkeypatch: pytest.MonkeyPatch) -> list[Settings]:
    """Stand-in for modelport.api.server, recording what ``run`` was given."""
    for spec in SETTINGS:
        monkeypatch.delenv(spec.env_var, raising=False)
    started: list[Settings] = []
    module = types.ModuleType("modelport.api.server")
    module.run = lambda settings, on_started=None: started.append(settings)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "modelport.api.server", module)
    return started


def test_serve_passes_flags_over_env_over_defaults(
    fake_server_module: list[Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV_VARS["port"], "9100")
    monkeypatch.setenv(ENV_VARS["log_level"], "debug")

    result = runner.invoke(app, ["serve", "--port", "9200", "--demo", "--data-dir", "/srv/mp"])

    assert result.exit_code == 0, result.output
    [settings] = fake_server_module
    assert (settings.port, settings.demo, settings.data_dir) == (9200, True, "/srv/mp")
    assert settings.log_level == "debug"
    assert settings.host == "127.0.0.1"


def test_serve_reports_a_bad_environment_value(
    fake_server_module: list[Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV_VARS["port"], "eighty")

    result = runner.invoke(app, ["serve"])

    assert result.exit_code == 1
    assert result.stderr.startswith(
        "Error: INVALID_PARAMETER_VALUE: invalid setting: invalid literal for int()"
    )
    assert fake_server_module == []


def test_serve_reports_a_busy_data_directory_in_one_line(
    fake_server_module: list[Settings], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The real server module this time: the check runs before uvicorn is started.
    monkeypatch.delitem(sys.modules, "modelport.api.server")
    holder = Spool(tmp_path / "spool")
    holder.open()
    try:
        result = runner.invoke(app, ["serve", "--data-dir", str(tmp_path)])
    finally:
        holder.close()

    assert result.exit_code == 1
    assert result.stderr == (
        f"Error: RESOURCE_CONFLICT: the data directory {tmp_path.resolve()} is in use by another "
        f"modelport server (pid {os.getpid()}); stop it or use another --data-dir.\n"
    )
    assert result.stdout == ""


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["endpoints"],
        ["tokens"],
        ["secrets"],
        ["users"],
        ["groups"],
        ["service-principals"],
        ["serve"],
        ["tables"],
        ["features"],
        ["features", "functions"],
        ["monitors"],
        ["usage"],
        ["batch"],
        ["batch", "run"],
    ],
    ids=[
        "root",
        "endpoints",
        "tokens",
        "secrets",
        "users",
        "groups",
        "service-principals",
        "serve",
        "tables",
        "features",
        "features-functions",
        "monitors",
        "usage",
        "batch",
        "batch-run",
    ],
)
def test_docs_embed_the_current_help_output(args: list[str]) -> None:
    docs = (Path(__file__).parents[3] / "docs" / "cli.md").read_text(encoding="utf-8")

    result = runner.invoke(app, [*args, "--help"], prog_name="modelport")

    assert result.exit_code == 0
    assert flat(result.stdout) in flat(docs), (
        f"docs/cli.md is out of date: paste the output of `modelport {' '.join(args)} --help`"
    )


def test_importing_the_cli_does_not_import_the_server(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(sys.modules):
        if name.startswith(("modelport.client", "modelport.api")):
            monkeypatch.delitem(sys.modules, name)

    importlib.import_module("modelport.client.cli.main")

    assert [name for name in sys.modules if name.startswith("modelport.api")] == []
