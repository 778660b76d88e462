"""The usage dashboard (#/usage) in chromium: usage rows this module made by real queries (the
admin and a user, to two external-model endpoints on the OpenAI fake), the page's totals, chart
and table checked against a SQL query of the same table, the CSV export, keyboard use, 390 px,
and a non-admin's view (their own requests, and the note saying so)."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelport.tables.usage_report import METRICS
from tests.browser.conftest import assert_accessible, screenshot, wait_until
from tests.console.conftest import sign_in
from tests.serverproc import ServerProcess
from tests.support.endpoints import wait_settled
from tests.support.names import unique
from tests.support.principals import create_user, obo_token
from tests.support.providers import custom_chat_entity

pytestmark = pytest.mark.slow

TABLE = "system.serving.endpoint_usage"
#: The page's draw count (usage.js sets it on its view each time it has drawn an answer).
READY = "document.querySelector('main .view').dataset.ready"
TOTALS = """Object.fromEntries([...document.querySelectorAll('#usage-totals [data-metric]')]
  .map((d) => [d.dataset.metric, d.querySelector('dd').textContent]))"""


@dataclass
class World:
    endpoints: list[str]
    user: str
    token: str
    sent: dict[tuple[str, str], int]  # (endpoint, requester) -> requests


def _sql(api: httpx.Client, sql: str) -> list[dict[str, Any]]:
    r = api.post("/api/2.0/modelport/tables/query", json={"sql": sql})
    assert r.status_code == 200, r.text
    body = r.json()
    return [dict(zip(body["columns"], row, strict=True)) for row in body["rows"]]


@pytest.fixture(scope="module")
def world(api: httpx.Client, ui_server: ServerProcess, fake_openai: Any) -> Iterator[World]:
    endpoints = [unique("ui-usage-a"), unique("ui-usage-b")]
    user = unique("usage-user")
    create_user(api, user)
    token = obo_token(api, user_name=user)["token_value"]
    for name in endpoints:
        body = {
            "name": name,
            "config": {"served_entities": [custom_chat_entity(fake_openai.url)]},
            "ai_gateway": {"usage_tracking_config": {"enabled": True}},
        }
        r = api.post("/api/2.0/serving-endpoints", json=body)
        assert r.status_code == 200, r.text
        wait_settled(api, name, timeout=60)
        acl = [{"user_name": user, "permission_level": "CAN_QUERY"}]
        r = api.patch(
            f"/api/2.0/permissions/serving-endpoints/{r.json()['id']}", json={"access_control_list": acl}
        )
        assert r.status_code == 200, r.text
    sent: dict[tuple[str, str], int] = {}
    with httpx.Client(
        base_url=ui_server.url, headers={"Authorization": f"Bearer {token}"}, timeout=60
    ) as mine:
        for endpoint, client, who, words in (
            (endpoints[0], api, "admin", [2, 3, 4]),
            (endpoints[0], mine, user, [5, 6]),
            (endpoints[1], mine, user, [1, 2, 3, 4]),
            (endpoints[1], api, "admin", [7]),
        ):
            for n in words:
                msg = {"messages": [{"role": "user", "content": " ".join(["w"] * n)}]}
                r = client.post(f"/serving-endpoints/{endpoint}/invocations", json=msg)
                assert r.status_code == 200, r.text
                sent[(endpoint, who)] = sent.get((endpoint, who), 0) + 1
    yield World(endpoints, user, token, sent)


def _expected_by_user(api: httpx.Client, endpoint: str) -> dict[str, dict[str, Any]]:
    rows = _sql(
        api,
        "SELECT requester, count(*) AS requests, sum(input_token_count) AS input_tokens, "
        "sum(output_token_count) AS output_tokens, count(*) FILTER (WHERE status_code >= 400) AS errors, "
        f"max(latency_ms) AS latency_max_ms FROM {TABLE} WHERE endpoint_name = '{endpoint}' GROUP BY 1",
    )
    return {r["requester"]: r for r in rows}


def _table(page: Any) -> list[dict[str, str]]:
    return page.evaluate(
        """() => [...document.querySelectorAll('#usage-rows tbody tr')].map((tr) =>
             Object.fromEntries([...tr.cells].map((td) =>
               [td.dataset.key || td.dataset.metric, td.textContent])))"""
    )


def _num(text: str) -> int:
    return int(text.replace(",", ""))


def _open(page: Any) -> None:
    """The usage page, its filters as a fresh page has them (the page may be open already: the
    same address does not draw it again)."""
    sign_in(page, "/ui/#/usage")
    wait_until(page, f"!!{READY}")
    for field in ("#usage-endpoint", "#usage-user", "#usage-group", "#usage-entity"):
        page.fill(field, "")
    page.select_option("#usage-range", "7")
    page.select_option("#usage-group-by", "endpoint")
    page.select_option("#usage-then-by", "")


def _show(page: Any) -> None:
    before = page.evaluate(
        "document.querySelector('main .view') && document.querySelector('main .view').dataset.ready"
    )
    page.click("#usage-run")
    wait_until(
        page,
        f"({READY} || '') !== {before!r} && !!{READY}",
    )


def test_dashboard_matches_sql(
    page: Any, api: httpx.Client, world: World, page_errors: list[str], csp_violations: list[str]
) -> None:
    _open(page)
    assert page.locator("nav a[data-nav='usage']").get_attribute("aria-current") == "page"
    assert page.locator("#usage-scope").is_hidden()  # the admin sees everyone's
    endpoint = world.endpoints[0]
    page.fill("#usage-endpoint", endpoint)
    page.select_option("#usage-group-by", "user")
    _show(page)
    expected = _expected_by_user(api, endpoint)
    assert set(expected) == {"admin", world.user}
    shown = {row["user"]: row for row in _table(page)}
    assert set(shown) == set(expected)
    for who, want in expected.items():
        got = shown[who]
        assert _num(got["requests"]) == want["requests"] == world.sent[(endpoint, who)]
        assert _num(got["input_tokens"]) == want["input_tokens"]
        assert _num(got["output_tokens"]) == want["output_tokens"]
        assert _num(got["errors"]) == want["errors"]
        assert _num(got["latency_max_ms"]) == want["latency_max_ms"]
    totals = page.evaluate(TOTALS)
    assert _num(totals["requests"]) == sum(r["requests"] for r in expected.values())
    assert _num(totals["input_tokens"]) == sum(r["input_tokens"] for r in expected.values())
    # one bar a day holding the same total (the requests were all made today)
    bars = page.evaluate(
        "[...document.querySelectorAll('#usage-chart rect.usage-bar')].map((r) => r.dataset.day)"
    )
    days = _sql(
        api,
        f"SELECT DISTINCT strftime(date, '%Y-%m-%d') AS d FROM {TABLE} WHERE endpoint_name = '{endpoint}'",
    )
    assert bars == [d["d"] for d in days]
    label = page.locator("#usage-chart svg").get_attribute("aria-label")
    assert f"{_num(totals['requests'])} requests" in label
    assert_accessible(page)
    screenshot(page, "ui-usage")
    assert page_errors == [] and csp_violations == []


def test_group_by_two_keys_with_the_keyboard(page: Any, api: httpx.Client, world: World) -> None:
    _open(page)
    page.focus("#usage-group-by")
    page.select_option("#usage-group-by", "endpoint")
    page.select_option("#usage-then-by", "user")
    page.focus("#usage-user")
    page.keyboard.type(world.user)
    before = page.evaluate(READY)
    page.keyboard.press("Enter")  # submits the form
    wait_until(page, f"{READY} !== {before!r}")
    rows = {(r["endpoint"], r["user"]): _num(r["requests"]) for r in _table(page)}
    want = {(e, w): n for (e, w), n in world.sent.items() if w == world.user}
    sql = _sql(
        api,
        f"SELECT endpoint_name, requester, count(*) AS n FROM {TABLE} "
        f"WHERE requester = '{world.user}' GROUP BY ALL",
    )
    assert rows == want == {(r["endpoint_name"], r["requester"]): r["n"] for r in sql}
    header = page.evaluate(
        "[...document.querySelectorAll('#usage-rows thead th')].map((th) => th.textContent)"
    )
    assert header[:3] == ["Endpoint", "User", "Requests"]


def test_csv_export(page: Any, api: httpx.Client, world: World) -> None:
    _open(page)
    page.fill("#usage-endpoint", world.endpoints[1])
    page.select_option("#usage-group-by", "user")
    page.select_option("#usage-then-by", "")
    _show(page)
    href = page.get_attribute("#usage-csv", "href")
    assert "format=csv" in href and "group_by=user" in href
    with page.expect_download() as info:
        page.click("#usage-csv")
    download = info.value
    assert download.suggested_filename == "usage-user.csv"
    text = Path(download.path()).read_text(encoding="utf-8")
    lines = list(csv.DictReader(io.StringIO(text)))
    assert text.splitlines()[0] == "user," + ",".join(METRICS)
    expected = _expected_by_user(api, world.endpoints[1])
    assert {x["user"]: int(x["requests"]) for x in lines} == {k: v["requests"] for k, v in expected.items()}
    assert {x["user"]: int(x["input_tokens"]) for x in lines} == {
        k: v["input_tokens"] for k, v in expected.items()
    }


def test_a_non_admin_sees_their_own_usage(page: Any, ui_server: ServerProcess, world: World) -> None:
    context = page.context.browser.new_context(viewport={"width": 390, "height": 900}, base_url=ui_server.url)
    try:
        mine = context.new_page()
        errors: list[str] = []
        mine.on("pageerror", lambda exc: errors.append(str(exc)))
        mine.goto("/ui/#/login")
        mine.fill("#token", world.token)
        mine.keyboard.press("Enter")
        mine.wait_for_url(re.compile(r"#/endpoints$"))
        mine.goto("/ui/#/usage")
        wait_until(mine, "!!(document.querySelector('main .view') || {dataset: {}}).dataset.ready")
        assert mine.locator("#usage-scope").is_visible()
        assert "your own usage" in mine.locator("#usage-scope").inner_text()
        mine.select_option("#usage-group-by", "user")
        before = mine.evaluate(READY)
        mine.click("#usage-run")
        wait_until(mine, f"{READY} !== {before!r}")
        users = {r["user"]: _num(r["requests"]) for r in _table(mine)}
        assert users == {world.user: sum(n for (_, w), n in world.sent.items() if w == world.user)}
        overflow = mine.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0
        assert errors == []
    finally:
        context.close()
