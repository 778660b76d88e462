"""Feature tables on the real server: made, written (merge and overwrite), read, listed and
dropped through REST; published to the embedded online store and looked up by key (latest and
point in time); a continuous publish seen by lookups within 5 s and stopped by a snapshot; the
tables' privileges (SELECT reads, lookups and SQL; MODIFY writes; MANAGE publishes and drops);
the CLI. A replica reading the store (``MODELPORT_ONLINE_STORE``) is test_feature_serving.py's.

Everything runs on the session's server; each test makes its own tables (unique schemas) and
users, so nothing needs resetting.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pyarrow as pa
import pytest

from tests.serverproc import ADMIN_TOKEN, ServerProcess
from tests.support.names import unique
from tests.support.principals import create_user, obo_token

FT = "/api/2.0/feature-engineering/tables"
PERMS = "/api/2.0/permissions/tables"
ARROW = "application/vnd.apache.arrow.stream"
COLUMNS = [
    {"name": "customer_id", "type": "int64"},
    {"name": "spend", "type": "double"},
    {"name": "segment", "type": "string"},
]


@dataclass
class User:
    name: str
    http: httpx.Client


def _table_name(table: str = "customers") -> str:
    return f"main.ft_{uuid.uuid4().hex[:10]}.{table}"


def _ipc(rows: dict[str, list[Any]], schema: pa.Schema | None = None) -> bytes:
    table = pa.table(rows, schema=schema)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue().to_pybytes())


def _rows(resp: httpx.Response) -> list[dict[str, Any]]:
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith(ARROW)
    with pa.ipc.open_stream(pa.py_buffer(resp.content)) as reader:
        return sorted(reader.read_all().to_pylist(), key=lambda r: r["customer_id"])


def _write(
    client: httpx.Client, name: str, rows: dict[str, list[Any]], mode: str = "merge"
) -> httpx.Response:
    return client.post(
        f"{FT}/{name}/write", params={"mode": mode}, content=_ipc(rows), headers={"content-type": ARROW}
    )


def _ok(resp: httpx.Response) -> dict[str, Any]:
    assert resp.status_code == 200, (
        f"{resp.request.method} {resp.request.url}: {resp.status_code} {resp.text}"
    )
    return dict(resp.json())


def _error(resp: httpx.Response, status: int, code: str) -> str:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert body["error_code"] == code, body
    return str(body["message"])


@pytest.fixture
def user_factory(server: ServerProcess, http: httpx.Client) -> Iterator[Any]:
    """Makes non-admin users with their own clients (closed after the test)."""
    clients: list[httpx.Client] = []

    def make(prefix: str) -> User:
        name = create_user(http, unique(prefix))["userName"]
        token = obo_token(http, user_name=name)["token_value"]
        client = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=60)
        clients.append(client)
        return User(name, client)

    yield make
    for client in clients:
        client.close()


def _create(client: httpx.Client, name: str, **extra: Any) -> dict[str, Any]:
    body = {"name": name, "primary_keys": ["customer_id"], "columns": COLUMNS, **extra}
    return _ok(client.post(FT, json=body))


def test_a_user_creates_writes_reads_lists_and_drops_a_feature_table(
    user_factory: Any, http: httpx.Client, server: ServerProcess
) -> None:
    owner: User = user_factory("ft-owner")
    other: User = user_factory("ft-other")
    name = _table_name()

    created = _create(owner.http, name.upper(), description="Spend per customer")
    assert created["name"] == name  # names are lower-cased
    assert created["primary_keys"] == ["customer_id"]
    assert created["timestamp_keys"] == []
    assert created["description"] == "Spend per customer"
    assert [(c["name"], c["type"]) for c in created["columns"]] == [
        ("customer_id", "int64"),
        ("spend", "double"),
        ("segment", "string"),
    ]
    assert created["online"] is None
    assert (server.data_dir / "tables" / "main" / name.split(".")[1] / "customers" / "_delta_log").is_dir()

    first = _ok(
        _write(
            owner.http,
            name,
            {"customer_id": [1, 2, 3], "spend": [10.0, 20.0, 30.0], "segment": ["a", "b", "c"]},
        )
    )
    merged = _ok(
        _write(owner.http, name, {"customer_id": [2, 4], "spend": [25.0, 40.0], "segment": ["b2", "d"]})
    )
    assert merged["version"] == first["version"] + 1
    assert merged["updated_ms"] >= first["updated_ms"]
    assert _rows(owner.http.get(f"{FT}/{name}/data")) == [
        {"customer_id": 1, "spend": 10.0, "segment": "a"},
        {"customer_id": 2, "spend": 25.0, "segment": "b2"},
        {"customer_id": 3, "spend": 30.0, "segment": "c"},
        {"customer_id": 4, "spend": 40.0, "segment": "d"},
    ]
    # an earlier version, and the first rows only
    assert [
        r["spend"] for r in _rows(owner.http.get(f"{FT}/{name}/data", params={"version": first["version"]}))
    ] == [
        10.0,
        20.0,
        30.0,
    ]
    assert len(_rows(owner.http.get(f"{FT}/{name}/data", params={"limit": 2}))) == 2

    got = _ok(owner.http.get(f"{FT}/{name}"))
    assert (got["version"], got["online"]) == (merged["version"], None)
    assert name in [t["name"] for t in _ok(owner.http.get(FT))["tables"]]
    assert name not in [t["name"] for t in _ok(other.http.get(FT))["tables"]]
    assert name in [t["name"] for t in _ok(http.get(FT))["tables"]]  # the admin sees every table
    # SQL over the feature table: the creator holds MANAGE, which includes SELECT
    answer = _ok(
        owner.http.post(
            "/api/2.0/modelport/tables/query", json={"sql": f"SELECT sum(spend) AS s FROM {name}"}
        )
    )
    assert answer["rows"] == [[105.0]]

    # overwrite replaces every row
    _ok(_write(owner.http, name, {"customer_id": [7], "spend": [7.5], "segment": ["z"]}, mode="overwrite"))
    assert _rows(owner.http.get(f"{FT}/{name}/data")) == [{"customer_id": 7, "spend": 7.5, "segment": "z"}]

    _error(other.http.delete(f"{FT}/{name}"), 403, "PERMISSION_DENIED")
    assert _ok(owner.http.delete(f"{FT}/{name}")) == {}
    _error(http.get(f"{FT}/{name}"), 404, "RESOURCE_DOES_NOT_EXIST")
    assert not (server.data_dir / "tables" / "main" / name.split(".")[1] / "customers").exists()
    # the creator's MANAGE went with the table
    _error(owner.http.get(f"{FT}/{name}"), 403, "PERMISSION_DENIED")
    assert name not in [t["name"] for t in _ok(http.get(FT))["tables"]]


def test_bad_creates_and_writes_are_refused_naming_what_is_wrong(http: httpx.Client) -> None:
    name = _table_name()
    bad_type = {
        "name": name,
        "primary_keys": ["customer_id"],
        "columns": [*COLUMNS, {"name": "when", "type": "time64"}],
    }
    assert "'when'" in _error(http.post(FT, json=bad_type), 400, "INVALID_PARAMETER_VALUE")
    no_key = {"name": name, "primary_keys": ["id"], "columns": COLUMNS}
    assert "'id'" in _error(http.post(FT, json=no_key), 400, "INVALID_PARAMETER_VALUE")
    system = {"name": "system.serving.features", "primary_keys": ["customer_id"], "columns": COLUMNS}
    assert "system" in _error(http.post(FT, json=system), 400, "INVALID_PARAMETER_VALUE")

    _create(http, name)
    _error(
        http.post(FT, json={"name": name, "primary_keys": ["customer_id"], "columns": COLUMNS}),
        409,
        "RESOURCE_ALREADY_EXISTS",
    )
    not_arrow = http.post(
        f"{FT}/{name}/write", content=b"customer_id,spend\n1,2\n", headers={"content-type": ARROW}
    )
    assert "Arrow IPC" in _error(not_arrow, 400, "MALFORMED_REQUEST")
    unknown = _write(http, name, {"customer_id": [1], "colour": ["red"]})
    assert "colour" in _error(unknown, 400, "INVALID_PARAMETER_VALUE")
    null_key = _write(http, name, {"customer_id": [1, None], "spend": [1.0, 2.0]})
    assert "customer_id" in _error(null_key, 400, "INVALID_PARAMETER_VALUE")
    assert _rows(http.get(f"{FT}/{name}/data")) == []  # nothing was written
    # a table that is not a feature table
    _error(http.get(f"{FT}/system.serving.endpoint_usage"), 404, "RESOURCE_DOES_NOT_EXIST")


def test_publish_and_look_up_by_key(http: httpx.Client, server: ServerProcess) -> None:
    name = _table_name()
    _create(http, name)
    message = _error(
        http.post(f"{FT}/{name}/lookup", json={"keys": [{"customer_id": 1}]}), 503, "TEMPORARILY_UNAVAILABLE"
    )
    assert name in message and "not published" in message
    written = _ok(
        _write(
            http, name, {"customer_id": [1, 2, 3], "spend": [10.0, 20.0, 30.0], "segment": ["a", None, "c"]}
        )
    )

    state = _ok(http.post(f"{FT}/{name}/publish", json={"mode": "snapshot"}))
    assert (state["name"], state["mode"], state["rows"], state["status"]) == (name, "snapshot", 3, "ONLINE")
    assert state["published_version"] == written["version"]
    assert (server.data_dir / "online" / "features.sqlite").is_file()
    assert _ok(http.get(f"{FT}/{name}"))["online"]["published_version"] == written["version"]

    keys = [{"customer_id": 3}, {"customer_id": 99}, {"customer_id": 2}, {"customer_id": 1}]
    assert _ok(http.post(f"{FT}/{name}/lookup", json={"keys": keys}))["rows"] == [
        {"spend": 30.0, "segment": "c"},
        None,
        {"spend": 20.0, "segment": None},
        {"spend": 10.0, "segment": "a"},
    ]
    only = _ok(http.post(f"{FT}/{name}/lookup", json={"keys": [{"customer_id": 1}], "features": ["segment"]}))
    assert only["rows"] == [{"segment": "a"}]

    assert "customer_id" in _error(
        http.post(f"{FT}/{name}/lookup", json={"keys": [{"id": 1}]}), 400, "INVALID_PARAMETER_VALUE"
    )
    assert "null" in _error(
        http.post(f"{FT}/{name}/lookup", json={"keys": [{"customer_id": None}]}),
        400,
        "INVALID_PARAMETER_VALUE",
    )
    missing = _error(
        http.post(f"{FT}/{name}/lookup", json={"keys": [{"customer_id": 1}], "features": ["age"]}),
        503,
        "TEMPORARILY_UNAVAILABLE",
    )
    assert name in missing and "age" in missing
    assert "mode" in _error(
        http.post(f"{FT}/{name}/publish", json={"mode": "sometimes"}), 400, "INVALID_PARAMETER_VALUE"
    )

    # dropping the table takes its online copy too
    _ok(http.delete(f"{FT}/{name}"))
    _error(
        http.post(f"{FT}/{name}/lookup", json={"keys": [{"customer_id": 1}]}), 404, "RESOURCE_DOES_NOT_EXIST"
    )


def test_a_timestamp_key_looks_rows_up_as_of_a_time(http: httpx.Client) -> None:
    name = _table_name("spend_history")
    columns = [
        {"name": "customer_id", "type": "int64"},
        {"name": "ts", "type": "timestamp[us, tz=UTC]"},
        {"name": "spend", "type": "double"},
    ]
    created = _ok(
        http.post(
            FT,
            json={
                "name": name,
                "primary_keys": ["customer_id"],
                "timestamp_keys": ["ts"],
                "columns": columns,
            },
        )
    )
    assert created["timestamp_keys"] == ["ts"]
    schema = pa.schema(
        [("customer_id", pa.int64()), ("ts", pa.timestamp("ms", tz="UTC")), ("spend", pa.float64())]
    )
    rows = {"customer_id": [1, 1, 2], "ts": [1_000, 2_000, 1_500], "spend": [1.0, 2.0, 5.0]}
    resp = http.post(f"{FT}/{name}/write", content=_ipc(rows, schema), headers={"content-type": ARROW})
    _ok(resp)
    _ok(http.post(f"{FT}/{name}/publish", json={"mode": "triggered"}))

    keys = [
        {"customer_id": 1},  # the latest
        {"customer_id": 1, "ts": 1_500},  # as of 1.5 s: the row of 1 s
        {"customer_id": 1, "ts": "1970-01-01T00:00:02Z"},  # ISO 8601
        {"customer_id": 1, "ts": 500},  # before any row
        {"customer_id": 2, "ts": 1_999},
    ]
    answer = _ok(http.post(f"{FT}/{name}/lookup", json={"keys": keys, "features": ["spend"]}))
    assert answer["rows"] == [{"spend": 2.0}, {"spend": 1.0}, {"spend": 2.0}, None, {"spend": 5.0}]
    # a lookback window: a row older than 400 ms before the time is not used
    windowed = _ok(
        http.post(
            f"{FT}/{name}/lookup",
            json={"keys": [{"customer_id": 2, "ts": 1_999}], "features": ["spend"], "lookback_ms": 400},
        )
    )
    assert windowed["rows"] == [None]


def _lookup_spend(client: httpx.Client, name: str, customer_id: int) -> float | None:
    rows = _ok(
        client.post(
            f"{FT}/{name}/lookup", json={"keys": [{"customer_id": customer_id}], "features": ["spend"]}
        )
    )["rows"]
    return None if rows[0] is None else float(rows[0]["spend"])


def test_a_continuous_publish_follows_new_versions_until_published_again(http: httpx.Client) -> None:
    name = _table_name()
    _create(http, name)
    _ok(_write(http, name, {"customer_id": [1], "spend": [1.0], "segment": ["a"]}))
    assert _ok(http.post(f"{FT}/{name}/publish", json={"mode": "continuous"}))["mode"] == "continuous"
    assert _lookup_spend(http, name, 1) == 1.0

    written = _ok(_write(http, name, {"customer_id": [1, 2], "spend": [2.0, 3.0], "segment": ["a", "b"]}))
    started = time.monotonic()
    while _lookup_spend(http, name, 1) != 2.0:
        assert time.monotonic() - started < 5.0, "a continuous publish was not seen within 5 s"
        time.sleep(0.1)
    assert _lookup_spend(http, name, 2) == 3.0
    assert _ok(http.get(f"{FT}/{name}"))["online"]["published_version"] == written["version"]

    # publishing as a snapshot stops following: a later write stays offline
    assert _ok(http.post(f"{FT}/{name}/publish", json={"mode": "snapshot"}))["mode"] == "snapshot"
    _ok(_write(http, name, {"customer_id": [1], "spend": [9.0], "segment": ["a"]}))
    time.sleep(2.5)  # more than two rounds of the follower (one a second)
    assert _lookup_spend(http, name, 1) == 2.0


def test_table_privileges_govern_feature_tables(user_factory: Any, http: httpx.Client) -> None:
    owner: User = user_factory("ft-owner")
    reader: User = user_factory("ft-reader")
    name = _table_name()
    _create(owner.http, name)
    _ok(_write(owner.http, name, {"customer_id": [1], "spend": [1.0], "segment": ["a"]}))
    _ok(owner.http.post(f"{FT}/{name}/publish", json={}))  # snapshot by default
    lookup = {"keys": [{"customer_id": 1}]}
    sql = {"sql": f"SELECT count(*) FROM {name}"}

    # no privilege: nothing, and the answer does not say whether the table exists
    for resp in (
        reader.http.get(f"{FT}/{name}"),
        reader.http.get(f"{FT}/{name}/data"),
        reader.http.post(f"{FT}/{name}/lookup", json=lookup),
        reader.http.post("/api/2.0/modelport/tables/query", json=sql),
        _write(reader.http, name, {"customer_id": [2], "spend": [2.0]}),
        reader.http.post(f"{FT}/{name}/publish", json={"mode": "snapshot"}),
    ):
        assert name in _error(resp, 403, "PERMISSION_DENIED")
    assert "main.nothing.here" in _error(reader.http.get(f"{FT}/main.nothing.here"), 403, "PERMISSION_DENIED")

    # SELECT reads, looks up and queries; writing needs MODIFY, publishing MANAGE
    grant = {"access_control_list": [{"user_name": reader.name, "permission_level": "SELECT"}]}
    _ok(owner.http.patch(f"{PERMS}/{name}", json=grant))
    assert _ok(reader.http.get(f"{FT}/{name}"))["name"] == name
    assert name in [t["name"] for t in _ok(reader.http.get(FT))["tables"]]
    assert _rows(reader.http.get(f"{FT}/{name}/data")) == [{"customer_id": 1, "spend": 1.0, "segment": "a"}]
    assert _ok(reader.http.post(f"{FT}/{name}/lookup", json=lookup))["rows"] == [
        {"spend": 1.0, "segment": "a"}
    ]
    assert _ok(reader.http.post("/api/2.0/modelport/tables/query", json=sql))["rows"] == [[1]]
    assert "MODIFY" in _error(
        _write(reader.http, name, {"customer_id": [2], "spend": [2.0]}), 403, "PERMISSION_DENIED"
    )
    _error(reader.http.post(f"{FT}/{name}/publish", json={"mode": "snapshot"}), 403, "PERMISSION_DENIED")
    _error(reader.http.delete(f"{FT}/{name}"), 403, "PERMISSION_DENIED")

    grant["access_control_list"][0]["permission_level"] = "MODIFY"
    _ok(owner.http.patch(f"{PERMS}/{name}", json=grant))
    assert _ok(_write(reader.http, name, {"customer_id": [2], "spend": [2.0]}))["version"] == 2
    assert "MANAGE" in _error(
        reader.http.post(f"{FT}/{name}/publish", json={"mode": "snapshot"}), 403, "PERMISSION_DENIED"
    )
    _ok(owner.http.delete(f"{FT}/{name}"))


def test_the_cli_lists_shows_publishes_looks_up_reads_and_drops(
    http: httpx.Client, server: ServerProcess
) -> None:
    from typer.testing import CliRunner

    from modelport.client.cli.main import app

    name = _table_name()
    _create(http, name, description="Spend per customer")
    _ok(_write(http, name, {"customer_id": [1, 2], "spend": [10.0, 20.0], "segment": ["a", "b"]}))
    runner = CliRunner()

    def cli(*args: str, code: int = 0) -> str:
        result = runner.invoke(
            app, [*args, "--host", server.url, "--token", ADMIN_TOKEN], prog_name="modelport"
        )
        assert result.exit_code == code, result.output
        return "\n".join(" ".join(line.split()) for line in result.output.splitlines())

    [listed] = [line.split(" ") for line in cli("features", "list").splitlines() if line.startswith(name)]
    assert (listed[:4], listed[-1]) == ([name, "customer_id", "-", "1"], "-")  # UPDATED between
    assert cli("features", "publish", name, "--mode", "continuous") == (
        f"Published feature table {name} (continuous): version 1, 2 rows."
    )
    shown = cli("features", "get", name)
    assert "Description Spend per customer" in shown and "Online continuous @ v1" in shown
    assert "spend double yes" in shown and "customer_id int64 no" in shown
    assert cli("features", "lookup", name, "--key", "customer_id=2").splitlines()[1:] == [
        "spend 20.0",
        "segment b",
    ]
    assert json.loads(cli("features", "lookup", name, "-k", "customer_id=9", "-o", "json")) == {
        "rows": [None]
    }
    assert cli("features", "read", name, "--limit", "5").splitlines() == [
        "CUSTOMER_ID SPEND SEGMENT",
        "1 10.0 a",
        "2 20.0 b",
    ]
    assert cli("features", "drop", name) == f"Dropped feature table {name}."
    assert "Error: RESOURCE_DOES_NOT_EXIST" in cli("features", "get", name, code=1)
