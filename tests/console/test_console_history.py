"""The endpoint page's "Metrics history" card (``ui/static/history.js``) in chromium: an endpoint
on the OpenAI fake gets queries from the test; the card's charts and its table count exactly
those, the range buttons (1 h, 24 h, 7 d, 14 d: keyboard, ``aria-pressed``) change the range
and the step, the served-entity picker filters, 390 px, no page errors; and the history is still
there after the server restarts (last: the package's server is restarted)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.browser.conftest import assert_accessible, card_screenshot, screenshot, wait_until
from tests.console.conftest import sign_in
from tests.serverproc import ServerProcess
from tests.support.endpoints import wait_settled
from tests.support.names import unique
from tests.support.providers import custom_chat_entity

pytestmark = pytest.mark.slow

API = "/api/2.0/serving-endpoints"
CARD = "#endpoint-history"
SENT = 6


def counted(api: httpx.Client, name: str, **params: Any) -> int:
    r = api.get(f"{API}/{name}/metrics/history", params=params)
    assert r.status_code == 200, r.text
    return sum(p["requests"] for p in r.json()["points"])


@pytest.fixture(scope="module")
def endpoint(api: httpx.Client, fake_openai: Any) -> Iterator[str]:
    """An endpoint with ``SENT`` answered queries, counted by the history (written by the server
    every 10 s: its default)."""
    name = unique("ui-history")
    body = {"name": name, "config": {"served_entities": [custom_chat_entity(fake_openai.url)]}}
    r = api.post(API, json=body)
    assert r.status_code == 200, r.text
    wait_settled(api, name, timeout=60)
    for i in range(SENT):
        q = {"messages": [{"role": "user", "content": f"hello {i}"}]}
        answer = api.post(f"/serving-endpoints/{name}/invocations", json=q)
        assert answer.status_code == 200, answer.text
    deadline = time.monotonic() + 40
    while counted(api, name) < SENT and time.monotonic() < deadline:
        time.sleep(0.5)
    assert counted(api, name) == SENT
    yield name
    api.delete(f"{API}/{name}")


def card(page: Any, key: str) -> str:
    return str(page.evaluate(f"document.querySelector('{CARD}').dataset.{key} || ''"))


def test_the_card_charts_the_queries_sent_over_each_range(
    page: Any, endpoint: str, page_errors: list[str], csp_violations: list[str]
) -> None:
    sign_in(page, f"/ui/#/endpoints/{endpoint}")
    page.wait_for_selector(f"{CARD} h2")
    wait_until(page, f"document.querySelector('{CARD}').dataset.requests === '{SENT}'")
    assert card(page, "range") == "1h" and card(page, "step") == "60"
    assert page.locator("#history-rps").get_attribute("data-total") == str(SENT)
    assert page.locator("#history-rps").get_attribute("data-points") in ("60", "61")
    assert page.locator("#history-errors").get_attribute("data-total") == "0"
    # a line with a vertex per minute in the chart of requests
    line = "document.querySelector('#history-rps svg polyline').getAttribute('points')"
    vertices = page.evaluate(f"{line}.split(' ').length")
    assert vertices >= 60
    summary = page.locator("#history-summary").inner_text()
    assert f"{SENT} requests" in summary and "by minute" in summary
    # the table alternative, opened with the keyboard
    page.focus("#history-table summary")
    page.keyboard.press("Enter")
    page.wait_for_selector("#history-table table")
    cells = page.evaluate(
        "[...document.querySelectorAll('#history-table tbody td[data-label=Requests]')]"
        ".map((td) => +td.textContent)"
    )
    assert sum(cells) == SENT and all(c > 0 for c in cells)
    assert_accessible(page)
    screenshot(page, "console-history")
    card_screenshot(page, CARD, "console-history-card")
    # the range buttons, by keyboard: one pressed at a time; longer ranges, larger steps
    for key, step in (("24h", "300"), ("7d", "3600"), ("14d", "3600"), ("1h", "60")):
        page.focus(f"{CARD} button[data-range='{key}']")
        page.keyboard.press("Enter")
        wait_until(page, f"document.querySelector('{CARD}').dataset.range === '{key}'")
        wait_until(page, f"document.querySelector('{CARD}').dataset.step === '{step}'")
        pressed = page.evaluate(
            f"[...document.querySelectorAll('{CARD} button[data-range]')]"
            ".filter((b) => b.getAttribute('aria-pressed') === 'true').map((b) => b.dataset.range)"
        )
        assert pressed == [key]
        assert card(page, "requests") == str(SENT)
    # one served entity, then one that has none of these queries
    page.select_option("#history-entity", "gpt")
    wait_until(page, f"document.querySelector('{CARD}').dataset.requests === '{SENT}'")
    assert page.locator("label[for=history-entity]").inner_text() == "Served entity"
    assert page_errors == [] and csp_violations == []


def test_the_history_survives_a_restart_of_the_server(
    page: Any, api: httpx.Client, endpoint: str, ui_server: ServerProcess, page_errors: list[str]
) -> None:
    """Last in the module: the package's server is stopped and started again (same port, same
    data folder); the history is read back from the store."""
    ui_server.stop()
    ui_server.start(timeout=240)
    wait_settled(api, endpoint, timeout=120)
    assert counted(api, endpoint) == SENT
    sign_in(page, f"/ui/#/endpoints/{endpoint}")
    page.wait_for_selector(f"{CARD} h2")
    wait_until(page, f"document.querySelector('{CARD}').dataset.requests === '{SENT}'")
    page.focus(f"{CARD} button[data-range='7d']")
    page.keyboard.press("Space")
    wait_until(page, f"document.querySelector('{CARD}').dataset.step === '3600'")
    assert card(page, "requests") == str(SENT)
    assert page_errors == []
