"""The usage dashboard's route on a real server: usage rows made by real queries of two users, a
service principal and the admin to external-model endpoints (the loopback OpenAI fake counts the
tokens), each grouping of ``GET /api/2.0/modelport/usage?group_by=...`` checked against a SQL
query of the same table through ``POST /api/2.0/modelport/tables/query``; filters, the 400s, a
non-admin's own rows only, CSV that round-trips, and the original ``by=`` answer unchanged."""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from modelport.tables.usage_report import METRICS
from tests.fakes.openai_server import API_KEY, FakeOpenAI
from tests.serverproc import ADMIN_TOKEN, ServerProcess
from tests.support.endpoints import wait_settled
from tests.support.principals import create_user, obo_token

SCIM = "/api/2.0/preview/scim/v2"
USAGE = "/api/2.0/modelport/usage"
TABLE = "system.serving.endpoint_usage"
# the metrics as SQL over the table, as the report defines them
METRIC_SQL = """count(*) AS requests,
    coalesce(sum(input_token_count), 0) AS input_tokens,
    coalesce(sum(output_token_count), 0) AS output_tokens,
    coalesce(sum(input_token_count), 0) + coalesce(sum(output_token_count), 0) AS total_tokens,
    count(*) FILTER (WHERE status_code >= 400) AS errors,
    count(*) FILTER (WHERE tokens_estimated) AS estimated,
    round(quantile_cont(latency_ms, 0.5), 1) AS latency_p50_ms,
    round(avg(latency_ms), 1) AS latency_avg_ms,
    max(latency_ms) AS latency_max_ms"""


@dataclass
class World:
    server: ServerProcess
    admin: httpx.Client
    alice: httpx.Client
    bob: httpx.Client
    sp: httpx.Client
    sp_name: str
    sent: dict[str, int]  # requests sent by each requester


def _client(server: ServerProcess, token: str) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=60)


def _endpoint(admin: httpx.Client, fake: FakeOpenAI, name: str, entity: str) -> str:
    config = {"custom_provider_url": f"{fake.url}/v1", "bearer_token_auth": {"token_plaintext": API_KEY}}
    body = {
        "name": name,
        "config": {
            "served_entities": [
                {
                    "name": entity,
                    "external_model": {
                        "provider": "custom",
                        "name": "m",
                        "task": "llm/v1/chat",
                        "custom_provider_config": config,
                    },
                }
            ]
        },
        "ai_gateway": {"usage_tracking_config": {"enabled": True}},
    }
    r = admin.post("/api/2.0/serving-endpoints", json=body)
    assert r.status_code == 200, r.text
    wait_settled(admin, name, timeout=60)
    return str(r.json()["id"])


def _ask(client: httpx.Client, endpoint: str, words: int, expect: int = 200) -> None:
    text = " ".join(["word"] * words)
    r = client.post(
        f"/serving-endpoints/{endpoint}/invocations", json={"messages": [{"role": "user", "content": text}]}
    )
    assert r.status_code == expect, r.text


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    fake = FakeOpenAI().start()
    server = ServerProcess(tmp_path_factory.mktemp("usage-dash")).start_until("/health")
    clients: list[httpx.Client] = []
    try:
        admin = _client(server, ADMIN_TOKEN)
        clients.append(admin)
        users = {}
        for name in ("alice", "bob"):
            create_user(admin, name)
            users[name] = _client(server, obo_token(admin, user_name=name)["token_value"])
        r = admin.post(f"{SCIM}/ServicePrincipals", json={"displayName": "usage-robot"})
        assert r.status_code == 201, r.text
        sp_name = str(r.json()["applicationId"])
        sp = _client(server, obo_token(admin, application_id=sp_name)["token_value"])
        clients += [*users.values(), sp]
        ids = {u["userName"]: u["id"] for u in admin.get(f"{SCIM}/Users").json()["Resources"]}
        sp_id = next(
            s["id"]
            for s in admin.get(f"{SCIM}/ServicePrincipals").json()["Resources"]
            if s["applicationId"] == sp_name
        )
        # alice is in both groups, the service principal in "robots", bob in neither (every user and
        # service principal is in "users", the admin in "admins")
        r = admin.post(
            f"{SCIM}/Groups", json={"displayName": "analysts", "members": [{"value": ids["alice"]}]}
        )
        assert r.status_code == 201, r.text
        members = [{"value": ids["alice"]}, {"value": sp_id}]
        r = admin.post(f"{SCIM}/Groups", json={"displayName": "robots", "members": members})
        assert r.status_code == 201, r.text
        ids_ep = {n: _endpoint(admin, fake, n, e) for n, e in (("ud-chat", "gpt-a"), ("ud-tools", "gpt-b"))}
        grants = [{"user_name": n, "permission_level": "CAN_QUERY"} for n in ("alice", "bob")]
        grants.append({"service_principal_name": sp_name, "permission_level": "CAN_QUERY"})
        for endpoint_id in ids_ep.values():
            r = admin.patch(
                f"/api/2.0/permissions/serving-endpoints/{endpoint_id}", json={"access_control_list": grants}
            )
            assert r.status_code == 200, r.text
        sent = {"alice": 0, "bob": 0, sp_name: 0, "admin": 0}
        for who, client, plan in (
            ("alice", users["alice"], [("ud-chat", 3), ("ud-chat", 5), ("ud-tools", 2)]),
            ("bob", users["bob"], [("ud-chat", 7), ("ud-tools", 1), ("ud-tools", 4), ("ud-tools", 9)]),
            (sp_name, sp, [("ud-tools", 6)]),
            ("admin", admin, [("ud-chat", 2)]),
        ):
            for endpoint, words in plan:
                _ask(client, endpoint, words)
                sent[who] += 1
        # an error row: the provider refuses bob's next request
        fake.faults.fail(400, "bad request from the fake", times=1)
        _ask(users["bob"], "ud-chat", 3, expect=400)
        sent["bob"] += 1
        yield World(server, admin, users["alice"], users["bob"], sp, sp_name, sent)
    finally:
        for c in clients:
            c.close()
        server.stop()
        fake.stop()


def _sql(client: httpx.Client, sql: str) -> list[dict[str, Any]]:
    r = client.post("/api/2.0/modelport/tables/query", json={"sql": sql})
    assert r.status_code == 200, r.text
    body = r.json()
    return [dict(zip(body["columns"], row, strict=True)) for row in body["rows"]]


def _report(client: httpx.Client, **params: str) -> dict[str, Any]:
    r = client.get(USAGE, params=params)
    assert r.status_code == 200, r.text
    return dict(r.json())


def _keyed(rows: list[dict[str, Any]], keys: list[str]) -> dict[tuple[Any, ...], dict[str, Any]]:
    return {tuple(row[k] for k in keys): {m: row[m] for m in METRICS} for row in rows}


def _groups_sql(world: World) -> str:
    """Who is in which group, as SQL (what the test set up through SCIM)."""
    pairs = [("alice", "analysts"), ("alice", "robots"), (world.sp_name, "robots"), ("admin", "admins")]
    pairs += [(name, "users") for name in world.sent]  # every user and service principal
    values = ", ".join(f"('{n}', '{g}')" for n, g in pairs)
    return f"(SELECT * FROM (VALUES {values}) AS g(name, group_name))"


def _expected(world: World, keys: list[str], where: str = "") -> dict[tuple[Any, ...], dict[str, Any]]:
    exprs = {
        "endpoint": "endpoint_name",
        "user": "coalesce(requester, '')",
        "group": "g.group_name",
        "principal_type": f"CASE WHEN requester = '{world.sp_name}' THEN 'service_principal' "
        "WHEN requester IN ('alice', 'bob', 'admin') THEN 'user' ELSE 'unknown' END",
        "served_entity": "coalesce(served_entity_name, '')",
        "day": "strftime(date, '%Y-%m-%d')",
        "hour": "strftime(date_trunc('hour', request_time), '%Y-%m-%dT%H:00:00+00:00')",
    }
    select = ", ".join(f'{exprs[k]} AS "{k}"' for k in keys)
    join = f" LEFT JOIN {_groups_sql(world)} g ON g.name = requester" if "group" in keys else ""
    sql = f"SELECT {select}, {METRIC_SQL} FROM {TABLE}{join} {where} GROUP BY ALL"
    return _keyed(_sql(world.admin, sql), keys)


def _same(
    got: dict[tuple[Any, ...], dict[str, Any]], expected: dict[tuple[Any, ...], dict[str, Any]]
) -> None:
    assert sorted(got, key=repr) == sorted(expected, key=repr)
    for key, metrics in expected.items():
        for name, value in metrics.items():
            assert got[key][name] == pytest.approx(value), (key, name)


def test_the_table_holds_what_was_sent(world: World) -> None:
    rows = _sql(
        world.admin, f"SELECT requester, count(*) AS n, sum(input_token_count) AS t FROM {TABLE} GROUP BY 1"
    )
    assert {r["requester"]: r["n"] for r in rows} == world.sent
    # the fake counted the tokens: every successful request has input tokens
    assert all(r["t"] > 0 for r in rows)


@pytest.mark.parametrize(
    "keys",
    [
        ["endpoint"],
        ["user"],
        ["group"],
        ["principal_type"],
        ["served_entity"],
        ["day"],
        ["hour"],
        ["endpoint", "day"],
        ["user", "served_entity"],
        ["group", "principal_type", "endpoint"],
    ],
)
def test_each_grouping_matches_sql_over_the_same_table(world: World, keys: list[str]) -> None:
    answer = _report(world.admin, group_by=",".join(keys))
    assert answer["group_by"] == keys
    assert answer["columns"] == [*keys, *METRICS]
    assert answer["scope"] == "all" and answer["truncated"] is False
    _same(_keyed(answer["rows"], keys), _expected(world, keys))
    totals = _sql(world.admin, f"SELECT {METRIC_SQL} FROM {TABLE}")[0]
    _same({(): answer["totals"]}, {(): totals})
    assert answer["totals"]["requests"] == sum(world.sent.values())


def test_groups_count_a_request_in_each_group_of_its_requester(world: World) -> None:
    rows = {r["group"]: r["requests"] for r in _report(world.admin, group_by="group")["rows"]}
    sent = world.sent
    assert rows == {
        "admins": sent["admin"],
        "analysts": sent["alice"],
        "robots": sent["alice"] + sent[world.sp_name],
        "users": sum(sent.values()),
    }
    types = {
        r["principal_type"]: r["requests"] for r in _report(world.admin, group_by="principal_type")["rows"]
    }
    assert types == {
        "service_principal": sent[world.sp_name],
        "user": sent["alice"] + sent["bob"] + sent["admin"],
    }


def test_filters_and_series(world: World) -> None:
    answer = _report(world.admin, group_by="user", endpoint="ud-tools", served_entity="gpt-b", series="day")
    _same(
        _keyed(answer["rows"], ["user"]),
        _expected(world, ["user"], "WHERE endpoint_name = 'ud-tools' AND served_entity_name = 'gpt-b'"),
    )
    assert sum(r["requests"] for r in answer["series"]) == answer["totals"]["requests"] == 5
    assert answer["series_by"] == "day"
    robots = _report(world.admin, group_by="user", group="robots")
    assert {r["user"]: r["requests"] for r in robots["rows"]} == {
        "alice": world.sent["alice"],
        world.sp_name: world.sent[world.sp_name],
    }
    bob = _report(world.admin, group_by="endpoint", user="bob")
    assert {r["endpoint"]: (r["requests"], r["errors"]) for r in bob["rows"]} == {
        "ud-chat": (2, 1),
        "ud-tools": (3, 0),
    }
    today = dt.datetime.now(dt.UTC).date()
    tomorrow = today + dt.timedelta(days=1)
    assert _report(world.admin, group_by="day", since=tomorrow.isoformat())["rows"] == []
    until_today = _report(world.admin, group_by="day", since=today.isoformat(), until=today.isoformat())
    assert [r["day"] for r in until_today["rows"]] == [today.isoformat()]
    assert (
        _report(world.admin, group_by="day", until=(today - dt.timedelta(days=1)).isoformat())["rows"] == []
    )


def test_a_non_admin_sees_only_their_own_rows(world: World) -> None:
    answer = _report(world.alice, group_by="user,endpoint")
    assert answer["scope"] == "own"
    assert {r["user"] for r in answer["rows"]} == {"alice"}
    _same(
        _keyed(answer["rows"], ["user", "endpoint"]),
        _expected(world, ["user", "endpoint"], "WHERE requester = 'alice'"),
    )
    assert answer["totals"]["requests"] == world.sent["alice"]
    # asking for someone else's rows finds none
    assert _report(world.alice, group_by="user", user="bob")["rows"] == []
    # groups: alice's own requests, counted in her two groups
    groups = {r["group"]: r["requests"] for r in _report(world.alice, group_by="group")["rows"]}
    assert groups == {g: world.sent["alice"] for g in ("analysts", "robots", "users")}
    # the service principal reads its own, by its application id
    sp = _report(world.sp, group_by="principal_type")
    assert sp["rows"][0]["principal_type"] == "service_principal" and len(sp["rows"]) == 1
    # and SQL over the table says the same for alice
    own = _sql(world.alice, f"SELECT count(*) AS n FROM {TABLE}")
    assert own == [{"n": world.sent["alice"]}]


def test_csv_round_trips(world: World) -> None:
    r = world.admin.get(USAGE, params={"group_by": "endpoint,user", "format": "csv"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/csv")
    assert r.headers["content-disposition"] == 'attachment; filename="usage-endpoint-user.csv"'
    lines = list(csv.DictReader(io.StringIO(r.text)))
    assert r.text.splitlines()[0] == "endpoint,user," + ",".join(METRICS)
    json_rows = _report(world.admin, group_by="endpoint,user")["rows"]
    assert len(lines) == len(json_rows) > 3
    for line, row in zip(lines, json_rows, strict=True):
        assert (line["endpoint"], line["user"]) == (row["endpoint"], row["user"])
        for m in METRICS:
            assert float(line[m]) == pytest.approx(float(row[m]))
    # alice's CSV has her rows only
    mine = list(
        csv.DictReader(io.StringIO(world.alice.get(USAGE, params={"group_by": "user", "format": "csv"}).text))
    )
    assert [(x["user"], int(x["requests"])) for x in mine] == [("alice", world.sent["alice"])]


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        ({"group_by": "endpoint,model"}, "Unknown group_by key 'model'"),
        ({"group_by": "day,day"}, "repeats"),
        ({"group_by": "day", "by": "user"}, "not both"),
        ({"group_by": "day", "colour": "red"}, "Unknown parameter 'colour'"),
        ({"group_by": "day", "since": "last week"}, "'since' must be an ISO 8601 date"),
        ({"group_by": "day", "until": "2026-13-01"}, "'until' must be an ISO 8601 date"),
        ({"group_by": "day", "since": "2026-03-02", "until": "2026-03-01"}, "must be after"),
        ({"group_by": "day", "format": "xml"}, "'format' must be json or csv"),
        ({"group_by": "day", "series": "week"}, "'series' must be day or hour"),
        ({"by": "model"}, "Unknown group_by key 'model'"),
    ],
)
def test_bad_parameters_are_400(world: World, params: dict[str, str], needle: str) -> None:
    r = world.admin.get(USAGE, params=params)
    assert r.status_code == 400, r.text
    assert r.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert needle in r.json()["message"]


def test_the_original_by_answer_is_unchanged(world: World) -> None:
    body = _report(world.admin, by="endpoint")
    assert set(body) == {"by", "rows"} and body["by"] == "endpoint"
    rows = {r["endpoint"]: r for r in body["rows"]}
    assert set(rows["ud-chat"]) == {
        "endpoint",
        "requests",
        "input_tokens",
        "output_tokens",
        "total_tokens",
        "errors",
        "estimated",
    }
    expected = _expected(world, ["endpoint"])
    for (name,), metrics in expected.items():
        assert rows[name]["requests"] == metrics["requests"]
        assert rows[name]["input_tokens"] == metrics["input_tokens"]
    day = _report(world.alice, by="day", since="2020-01-01")
    assert set(day) == {"by", "rows"} and sum(r["requests"] for r in day["rows"]) == world.sent["alice"]
