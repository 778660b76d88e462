"""The AI gateway form (``ui/static/gateway_form.js``, issue 23 item 5) in chromium against the
console package's server: a rate limit and a keyword guardrail set through the form are exactly
the ``ai_gateway`` the API then shows; the guardrail blocks a request typed into the playground,
which shows the refusal; a value the page refuses (a negative TTL) and one the server refuses (a
table prefix with a space) are each shown beside their field; a field the form does not show
(``inference_table_config.record_raw_request``) survives a save.

One external-model chat endpoint (OpenAI provider, the loopback ``fake_openai``) under a name of
its own; the tests run in file order and build on each other."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.browser.conftest import assert_accessible, card_screenshot, screenshot, wait_until
from tests.console.conftest import sign_in
from tests.support.names import unique

pytestmark = pytest.mark.slow

NAME = unique("ui-gw-form")
URL = f"/api/2.0/serving-endpoints/{NAME}"
PAGE = f"/ui/#/endpoints/{NAME}"
KEYWORD = "project falcon"


def gateway(api: httpx.Client) -> dict[str, Any]:
    return dict(api.get(URL).json().get("ai_gateway") or {})


def wait_gateway(api: httpx.Client, expected: dict[str, Any], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while (got := gateway(api)) != expected:
        assert time.monotonic() < deadline, got
        time.sleep(0.1)


@pytest.fixture(scope="module")
def earlier_errors(page_errors: list[str]) -> int:
    """How many script errors the package's page had before this module (others share it)."""
    return len(page_errors)


def open_page(page: Any) -> None:
    """The endpoint page, drawn afresh (the page may be open already, with older settings)."""
    sign_in(page, PAGE)
    page.reload()
    page.wait_for_selector("#gateway-form #save-gateway")


@pytest.fixture(scope="module")
def endpoint(api: httpx.Client, fake_openai: Any) -> Iterator[str]:
    from tests.fakes.openai_server import API_KEY

    entity = {
        "name": "fake",
        "external_model": {
            "provider": "openai",
            "name": "gpt-fake",
            "task": "llm/v1/chat",
            "openai_config": {
                "openai_api_key_plaintext": API_KEY,
                "openai_api_base": f"{fake_openai.url}/v1",
            },
        },
    }
    r = api.post("/api/2.0/serving-endpoints", json={"name": NAME, "config": {"served_entities": [entity]}})
    assert r.status_code == 200, r.text
    deadline = time.monotonic() + 60
    while api.get(URL).json()["state"]["ready"] != "READY":
        assert time.monotonic() < deadline, api.get(URL).json()
        time.sleep(0.2)
    yield NAME
    api.delete(URL)


def test_a_rate_limit_and_a_keyword_guardrail_set_through_the_form(
    page: Any, api: httpx.Client, endpoint: str, earlier_errors: int
) -> None:
    assert gateway(api) == {}
    open_page(page)
    assert page.locator("#gw-no-limits").is_visible()
    # keyboard: Enter on "Add a rate limit" adds a row and moves the focus to its key
    page.focus("#gw-rl-add")
    page.keyboard.press("Enter")
    row = page.locator("[data-rate-limit='0']")
    row.wait_for()
    assert page.evaluate("document.activeElement.dataset.field") == "key"
    assert row.locator("legend").inner_text() == "Rate limit 1"
    principal = row.locator("[data-field=principal]")
    assert not principal.is_visible()  # the endpoint key names nobody
    row.locator("[data-field=key]").select_option("user")
    assert principal.is_visible()
    row.locator("[data-field=metric]").select_option("calls")
    row.locator("[data-field=amount]").fill("120")
    # a second row, removed again: the first keeps its values
    page.click("#gw-rl-add")
    page.locator("[data-rate-limit='1'] [data-field=amount]").fill("7")
    page.click("[data-rate-limit='1'] button.danger")
    assert page.locator("[data-rate-limit]").count() == 1
    page.fill("#gw-input-keywords", KEYWORD)
    assert_accessible(page)
    page.click("#save-gateway")
    expected = {
        "rate_limits": [{"calls": 120, "renewal_period": "minute", "key": "user"}],
        "guardrails": {"input": {"invalid_keywords": [KEYWORD]}},
    }
    wait_gateway(api, expected)
    # the page redraws from the stored settings: the summary and the form show them
    summary = "(document.querySelector('#gateway-summary') || {textContent: ''}).textContent"
    wait_until(page, f"{summary}.includes('120 calls/minute per user')")
    page.wait_for_selector("[data-rate-limit='0']")
    assert page.locator("[data-rate-limit='0'] [data-field=amount]").input_value() == "120"
    assert page.locator("[data-rate-limit='0'] [data-field=key]").input_value() == "user"
    assert page.locator("#gw-input-keywords").input_value() == KEYWORD
    assert page.locator("#gw-input-pii").input_value() == ""
    assert_accessible(page)
    screenshot(page, "ui-gateway-form")
    card_screenshot(page, "#gateway-form", "ui-gateway-form-card")


def test_the_guardrail_blocks_a_request_in_the_playground(
    page: Any, api: httpx.Client, endpoint: str
) -> None:
    prompt = "Tell me what you know about Project Falcon, please."
    direct = api.post(
        "/serving-endpoints/chat/completions",
        json={"model": NAME, "messages": [{"role": "user", "content": prompt}]},
    )
    assert direct.status_code == 400, direct.text
    refusal = direct.json()["message"]
    assert "blocked by the input guardrail" in refusal, refusal
    sign_in(page, "/ui/#/playground")
    page.wait_for_selector(f"#pg-endpoint-0 option[value='{NAME}']", state="attached")
    page.select_option("#pg-endpoint-0", NAME)
    page.fill("#pg-prompt", prompt)
    page.click("#pg-send")
    answer = page.locator(f"#pg-answers [data-endpoint='{NAME}'] .msg.assistant").last
    page.wait_for_selector(
        f"#pg-answers [data-endpoint='{NAME}'] .msg.assistant[data-done=error]", timeout=30_000
    )
    assert refusal in answer.inner_text(), answer.inner_text()
    # without the keyword the same endpoint answers
    page.fill("#pg-prompt", "Tell me about birds.")
    page.click("#pg-send")
    answers = f"#pg-answers [data-endpoint='{NAME}'] .msg.assistant"
    wait_until(page, f"[...document.querySelectorAll({answers!r})].pop().dataset.done === 'true'")


def test_invalid_values_are_shown_beside_their_field(page: Any, api: httpx.Client, endpoint: str) -> None:
    before = gateway(api)
    open_page(page)
    # the page's own check: a negative TTL is not sent
    page.check("#gw-cache-enabled")
    page.fill("#gw-cache-ttl", "-5")
    page.click("#save-gateway")
    ttl = page.locator("#gw-cache-ttl")
    wait_until(page, "document.querySelector('#gw-cache-ttl').getAttribute('aria-invalid') === 'true'")
    note = page.locator(f"#{ttl.get_attribute('aria-describedby').split()[-1]}")
    assert note.inner_text() == "The TTL must be at least 1."
    assert page.evaluate("document.activeElement.id") == "gw-cache-ttl"
    assert gateway(api) == before
    # the server's check: a table prefix with a space; its 400 message goes beside the prefix
    page.fill("#gw-cache-ttl", "60")
    page.check("#gw-it-enabled")
    page.fill("#gw-it-catalog", "main")
    page.fill("#gw-it-schema", "ui_forms")
    page.fill("#gw-it-prefix", "bad prefix")
    body = {
        **before,
        "response_cache": {"enabled": True, "ttl_seconds": 60},
        "inference_table_config": {
            "catalog_name": "main",
            "schema_name": "ui_forms",
            "table_name_prefix": "bad prefix",
            "enabled": True,
        },
    }
    server = api.put(f"{URL}/ai-gateway", json=body)
    assert server.status_code == 400, server.text
    message = server.json()["message"]
    assert message.startswith("Invalid value for 'inference_table_config.table_name_prefix'"), message
    page.click("#save-gateway")
    wait_until(page, "document.querySelector('#gw-it-prefix').getAttribute('aria-invalid') === 'true'")
    assert ttl.get_attribute("aria-invalid") is None  # the earlier mark is gone
    prefix = page.locator("#gw-it-prefix")
    ids = prefix.get_attribute("aria-describedby").split()
    assert page.locator(f"#{ids[-1]}").inner_text() == message
    assert ids[0].startswith("hint")  # the field's hint stays described too
    assert page.evaluate("document.activeElement.id") == "gw-it-prefix"
    assert gateway(api) == before
    assert_accessible(page)
    # corrected, it saves and the mark goes
    page.fill("#gw-it-prefix", "gw_form")
    page.click("#save-gateway")
    wait_gateway(
        api,
        {
            **before,
            "response_cache": {
                "enabled": True,
                "ttl_seconds": 60,
                "scope": "user",
                "max_entry_bytes": 1048576,
                "cache_non_deterministic": False,
            },
            "inference_table_config": {
                "catalog_name": "main",
                "schema_name": "ui_forms",
                "table_name_prefix": "gw_form",
                "enabled": True,
            },
        },
    )
    page.wait_for_selector("#response-cache")
    assert page.locator("[aria-invalid=true]").count() == 0


def test_fields_the_form_does_not_show_survive_a_save(page: Any, api: httpx.Client, endpoint: str) -> None:
    stored = gateway(api)
    stored["inference_table_config"]["record_raw_request"] = True
    assert api.put(f"{URL}/ai-gateway", json=stored).status_code == 200
    assert gateway(api) == stored
    open_page(page)
    # the advanced view shows the whole object, the field the form does not show included
    page.click("#gateway-json summary")
    shown = json.loads(page.locator("#gateway-json-text").input_value())
    assert shown == stored
    assert_accessible(page)
    page.click("#gateway-json summary")
    page.fill("[data-rate-limit='0'] [data-field=amount]", "90")
    page.select_option("#gw-input-pii", "MASK")
    page.click("#save-gateway")
    expected = json.loads(json.dumps(stored))
    expected["rate_limits"][0]["calls"] = 90
    expected["guardrails"]["input"]["pii"] = {"behavior": "MASK"}
    wait_gateway(api, expected)
    assert gateway(api)["inference_table_config"]["record_raw_request"] is True
    # the advanced view saves what it holds as written (once the page redrew from the new settings)
    wait_until(page, "document.querySelector('#gateway-summary').textContent.includes('pii')")
    page.click("#gateway-json summary")
    text = page.locator("#gateway-json-text")
    edited = json.loads(text.input_value())
    assert edited == expected
    edited["fallback_config"] = {"enabled": True}
    text.fill(json.dumps(edited))
    page.click("#save-gateway-json")
    wait_gateway(api, edited)
    page.wait_for_selector("#gw-fallback:checked")


def test_no_page_errors(page_errors: list[str], earlier_errors: int) -> None:
    assert page_errors[earlier_errors:] == []
