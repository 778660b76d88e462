"""The endpoint page's events timeline (``ui/static/events.js``) in chromium: an endpoint on the
OpenAI fake with a rate limit of 2 calls a minute per user and an input keyword guardrail; the
admin's refused calls and a blocked request become one burst line each (the server writes a
burst 3 s after its last refusal: the suite server's setting), beside the config events, grouped by day, with
category icons and badges; the category filter, the breakdown opened with the keyboard, the
merging of overlapping bursts of several processes, 390 px, no page errors."""

from __future__ import annotations

import json
import re
import time
from typing import Any

import httpx
import pytest

from tests.browser.conftest import SCREENSHOTS, WIDTHS, assert_accessible, screenshot, wait_until
from tests.console.conftest import sign_in
from tests.support.endpoints import wait_settled
from tests.support.names import unique
from tests.support.providers import custom_chat_entity

pytestmark = pytest.mark.slow

API = "/api/2.0/serving-endpoints"
ROWS = "#ro-event-list tr[data-event]"


MERGE = """async () => {
  const m = await import('/ui/events.js');
  const burst = (id, kind, first, last, count, who, process) => {
    const reason = kind === 'RATE_LIMITED' ? 'user limit 5 calls/min' : 'input pii';
    const details = { count, first, last, quiet_seconds: 30, process, others: 0, by_principal: who };
    details[kind === 'RATE_LIMITED' ? 'by_limit' : 'by_guardrail'] = [{ name: reason, count }];
    return { id, kind, timestamp: last + 30000, message: '', details };
  };
  const t = Date.UTC(2026, 0, 5, 12, 0, 0);
  const events = [
    burst(9, 'RATE_LIMITED', t + 10000, t + 50000, 30, [{ name: 'alice', count: 30 }], 'a:1'),
    burst(8, 'RATE_LIMITED', t, t + 40000, 12,
      [{ name: 'alice', count: 10 }, { name: 'bob', count: 2 }], 'b:2'),
    { id: 7, kind: 'AI_GATEWAY_UPDATED', timestamp: t - 1000, message: 'gateway', details: null },
    burst(6, 'RATE_LIMITED', t - 400000, t - 300000, 4, [{ name: 'carol', count: 4 }], 'a:1'),
    burst(5, 'GUARDRAIL_BLOCKED', t - 500000, t - 490000, 1, [{ name: 'carol', count: 1 }], 'a:1'),
  ];
  const text = (e) => m.burstText(e).replace(/between .* and .* \\(/, 'between T1 and T2 (');
  return m.mergeBursts(events).map((e) => e.burst
    ? [e.id, e.burst.count, e.burst.ids, e.burst.processes.size, text(e)]
    : [e.id, null, null, null, e.message]);
}"""


def query(api: httpx.Client, name: str, text: str = "hello") -> int:
    body = {"messages": [{"role": "user", "content": text}]}
    return api.post(f"/serving-endpoints/{name}/invocations", json=body).status_code


def shown(page: Any) -> list[list[str]]:
    return list(
        page.evaluate(
            f"[...document.querySelectorAll('{ROWS}')].map((tr) => [tr.dataset.kind, tr.dataset.category])"
        )
    )


def test_the_timeline_shows_refusal_bursts_beside_the_config_events(
    page: Any, api: httpx.Client, fake_openai: Any, page_errors: list[str]
) -> None:
    name = unique("ui-events")
    gateway = {
        "rate_limits": [{"key": "user", "calls": 2, "renewal_period": "minute"}],
        "guardrails": {"input": {"invalid_keywords": ["forbidden"]}},
    }
    body = {
        "name": name,
        "config": {"served_entities": [custom_chat_entity(fake_openai.url)]},
        "ai_gateway": gateway,
    }
    r = api.post(API, json=body)
    assert r.status_code == 200, r.text
    wait_settled(api, name, timeout=60)
    left = 60 - time.time() % 60
    if left < 15:  # the limit's window is the clock minute: keep the calls in one
        time.sleep(left + 0.1)
    # a blocked request (it counts against the limit: admitted first), then the limit's refusals
    assert query(api, name, "the forbidden word") == 400
    assert [query(api, name) for _ in range(6)] == [200, 429, 429, 429, 429, 429]
    refused_at = time.time()
    sign_in(page, f"/ui/#/endpoints/{name}")
    page.locator(f"{ROWS}[data-kind='CONFIG_UPDATE_SUCCEEDED']").wait_for()
    # the config events: their category, icon and badge, under the heading of today
    config = page.locator(f"{ROWS}[data-kind='CONFIG_UPDATE_STARTED']")
    assert config.get_attribute("data-category") == "config"
    assert config.locator("[data-kind-badge]").inner_text() == "CONFIG_UPDATE_STARTED"
    assert config.locator(".ev-cat").inner_text().lower() == "config"
    assert config.locator(".ev-icon").get_attribute("aria-hidden") == "true"
    days = page.evaluate(
        "[...document.querySelectorAll('#ro-event-list tr.ev-day th')].map((th) => th.innerText)"
    )
    assert len(days) == 1 and str(time.localtime().tm_year) in days[0], days
    # the burst is written once quiet for UI_SERVER_ENV's 3 s; the page refreshes itself every 5 s
    burst = page.locator(f"{ROWS}[data-kind='RATE_LIMITED']")
    burst.wait_for(timeout=75_000)
    assert time.time() - refused_at >= 2.5
    [event] = api.get(f"{API}/{name}/events", params={"kind": "RATE_LIMITED"}).json()["events"]
    count = event["details"]["count"]
    assert count == 5
    line = burst.locator(".ev-burst")
    assert line.get_attribute("data-burst-count") == str(count)
    text = line.inner_text()
    # "at T" when the burst fits in one second, else "between T1 and T2" (the browser's clock format)
    assert re.match(rf"{count} requests refused by user limit 2 calls/min (at|between) \d", text), text
    assert text.endswith(f"(admin {count})"), text
    assert burst.get_attribute("data-category") == "refusal"
    blocked = page.locator(f"{ROWS}[data-kind='GUARDRAIL_BLOCKED']")
    blocked.wait_for()
    # the API's events, newest first, one row each (the two bursts are of two kinds: not merged)
    listed = json.dumps([e["id"] for e in api.get(f"{API}/{name}/events").json()["events"]])
    page_ids = f"JSON.stringify([...document.querySelectorAll('{ROWS}')].map((tr) => +tr.dataset.event))"
    wait_until(page, f"{page_ids}.replaceAll(',', ', ') === {json.dumps(listed)}")
    assert (
        blocked.locator(".ev-burst")
        .inner_text()
        .startswith("1 request refused by the input invalid_keywords guardrail at ")
    )
    # the category filter asks the server for the refusal kinds only
    page.select_option("#ro-events-category", "refusal")
    wait_until(
        page, "document.querySelector('#ro-events-status').textContent.includes('in category Refusal')"
    )
    assert {c for _, c in shown(page)} == {"refusal"}
    kinds = page.evaluate("[...document.querySelectorAll('#ro-events-kind option')].map((o) => o.value)")
    assert kinds == ["", "RATE_LIMITED", "GUARDRAIL_BLOCKED"]
    # the breakdown opens with the keyboard
    summary = burst.locator("summary")
    summary.focus()
    page.keyboard.press("Enter")
    assert burst.locator("details").get_attribute("open") is not None
    breakdown = burst.locator("details").inner_text()
    assert f"admin: {count}" in breakdown and f"user limit 2 calls/min: {count}" in breakdown
    assert_accessible(page)
    screenshot(page, "console-events-refusals")
    # back to every category, from the keyboard: the config events are there again
    page.focus("#ro-events-category")
    page.select_option("#ro-events-category", "")
    wait_until(page, "!document.querySelector('#ro-events-status').textContent.includes('in category')")
    page.locator(f"{ROWS}[data-kind='CONFIG_UPDATE_SUCCEEDED']").wait_for()
    assert "config" in {c for _, c in shown(page)} and "refusal" in {c for _, c in shown(page)}
    page.locator("#ro-events").scroll_into_view_if_needed()
    screenshot(page, "console-events")
    for width in WIDTHS:  # the card alone (docs/images/ui-events.png)
        page.set_viewport_size({"width": width, "height": 900})
        page.wait_for_timeout(150)
        page.locator("#ro-events").screenshot(path=str(SCREENSHOTS / f"console-events-card-{width}.png"))
    page.set_viewport_size({"width": WIDTHS[0], "height": 900})
    assert page_errors == []


def test_bursts_of_several_processes_show_as_one_line(page: Any) -> None:
    """``mergeBursts``: adjacent bursts of one kind that overlap (two processes) or follow within
    the quiet period (a storm written every minute) are one line; others stay apart."""
    got = page.evaluate(MERGE)
    assert got == [
        [
            9,
            42,
            [9, 8],
            2,
            "42 requests refused by user limit 5 calls/min between T1 and T2 (alice 40, bob 2)",
        ],
        [7, None, None, None, "gateway"],
        [6, 4, [6], 1, "4 requests refused by user limit 5 calls/min between T1 and T2 (carol 4)"],
        [5, 1, [5], 1, "1 request refused by the input pii guardrail between T1 and T2 (carol 1)"],
    ]
