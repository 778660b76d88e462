"""The shadow and rollout form (``ui/static/extension_form.js``, issue 23 item 5) in the endpoint
page's configuration card, in chromium against the console package's server: a shadow set
through the form, checked with ``?dry_run=true`` (the page shows the changes the server answers,
nothing is written), then applied; then a rollout policy the same way, which starts a rollout.
A value the page refuses and one the server refuses are each shown beside their field.

One endpoint of two external chat models on the loopback ``fake_openai`` (``fake-a`` serving,
``fake-b`` at 0%), under a name of its own; the tests run in file order."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.browser.conftest import assert_accessible, card_screenshot, screenshot, wait_until
from tests.console.conftest import sign_in
from tests.support.endpoints import wait_settled
from tests.support.names import unique

pytestmark = pytest.mark.slow

NAME = unique("ui-ro-form")
URL = f"/api/2.0/serving-endpoints/{NAME}"
PAGE = f"/ui/#/endpoints/{NAME}"


def version(api: httpx.Client) -> int:
    return int(api.get(URL).json()["config"]["config_version"])


def marked(page: Any, selector: str) -> str:
    """The message beside the invalid field ``selector`` (its last aria-describedby)."""
    wait_until(page, f"document.querySelector({selector!r}).getAttribute('aria-invalid') === 'true'")
    ids = page.locator(selector).get_attribute("aria-describedby").split()
    return str(page.locator(f"#{ids[-1]}").inner_text())


@pytest.fixture(scope="module")
def earlier_errors(page_errors: list[str]) -> int:
    return len(page_errors)


@pytest.fixture(scope="module")
def endpoint(api: httpx.Client, fake_openai: Any) -> Iterator[str]:
    from tests.fakes.openai_server import API_KEY

    def entity(name: str) -> dict[str, Any]:
        return {
            "name": name,
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

    config = {
        "served_entities": [entity("fake-a"), entity("fake-b")],
        "traffic_config": {
            "routes": [
                {"served_entity_name": "fake-a", "traffic_percentage": 100},
                {"served_entity_name": "fake-b", "traffic_percentage": 0},
            ]
        },
    }
    r = api.post("/api/2.0/serving-endpoints", json={"name": NAME, "config": config})
    assert r.status_code == 200, r.text
    assert wait_settled(api, NAME, timeout=120)["state"]["config_update"] == "NOT_UPDATING"
    yield NAME
    if api.get(f"{URL}/rollouts/current").status_code == 200:
        api.post(f"{URL}/rollouts/current/cancel", json={})
    api.delete(URL)


def test_a_shadow_checked_then_applied(
    page: Any, api: httpx.Client, endpoint: str, earlier_errors: int
) -> None:
    before = version(api)
    sign_in(page, PAGE)
    page.wait_for_selector("#extension-form #check-config")
    # the shadow's choices: the served entities with 0% of the traffic
    options = page.locator("#shadow-entity option").all_inner_texts()
    assert options == ["fake-b"], options
    page.check("#shadow-enabled")
    page.fill("#shadow-percentage", "0")
    page.click("#check-config")
    assert marked(page, "#shadow-percentage") == "The share must be above 0."
    page.fill("#shadow-percentage", "50")
    page.locator("#shadow-percentage").press("Enter")  # Enter checks (a dry run), never applies
    page.wait_for_selector("#config-diff")
    assert page.locator("[aria-invalid=true]").count() == 0
    rows = page.locator("#config-diff tbody tr")
    assert rows.count() == 1
    assert rows.first.get_attribute("data-path") == "shadow"
    assert rows.first.get_attribute("data-change") == "added"
    assert '"served_entity_name": "fake-b"' in rows.first.locator("td[data-label=After]").inner_text()
    assert f"config version {before + 1}" in page.locator("#config-diff h4").inner_text()
    assert version(api) == before and "shadow" not in api.get(URL).json()["config"]  # a dry run
    page.click("#apply-config")
    deadline = time.monotonic() + 60
    while version(api) != before + 1:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    done = wait_settled(api, NAME, timeout=120)
    assert done["state"]["config_update"] == "NOT_UPDATING", done
    assert done["config"]["shadow"] == {"served_entity_name": "fake-b", "percentage": 50.0}
    # the page redraws from the new version: the form shows the shadow
    wait_until(
        page, f"document.querySelector('#cfg-title + div p.muted').textContent.includes('{before + 1}')"
    )
    page.wait_for_selector("#shadow-enabled:checked")
    assert page.locator("#shadow-entity").input_value() == "fake-b"
    assert page.locator("#shadow-percentage").input_value() == "50"


def test_a_rollout_policy_checked_then_applied(page: Any, api: httpx.Client, endpoint: str) -> None:
    before = version(api)
    page.wait_for_selector("#extension-form #check-config")
    # the candidate takes the traffic: fake-b 100% in the traffic column
    page.fill("[data-entity='fake-a']", "0")
    page.fill("[data-entity='fake-b']", "100")
    # the shadow still names fake-b, which now takes traffic: the server says so beside it
    page.click("#check-config")
    server = marked(page, "#shadow-entity")
    assert server.startswith("Invalid value for 'config.shadow.served_entity_name': 'fake-b' takes 100%"), (
        server
    )
    page.uncheck("#shadow-enabled")
    page.check("#rollout-enabled")
    page.select_option("#rollout-candidate", "fake-b")
    page.fill("#rollout-steps", "10, 50")
    page.fill("#rollout-step-seconds", "600")
    page.fill("#rollout-evaluation-seconds", "5")
    page.fill("#rollout-max-error-rate", "2")
    page.fill("#rollout-min-requests-per-step", "0")
    page.click("#check-config")
    assert marked(page, "#rollout-max-error-rate") == "The error rate must be at most 1."
    assert page.locator("#shadow-entity").get_attribute("aria-invalid") is None
    page.fill("#rollout-max-error-rate", "0.5")
    page.click("#check-config")
    page.wait_for_selector("#config-diff")
    changes = {
        row.get_attribute("data-path"): row.get_attribute("data-change")
        for row in page.locator("#config-diff tbody tr").all()
    }
    assert changes == {
        "traffic_config.fake-a": "changed",
        "traffic_config.fake-b": "changed",
        "shadow": "removed",
        "rollout": "added",
    }, changes
    plan = page.locator("#config-diff-plan").inner_text()
    assert "fake-b takes 10% → 50% → 100% of the traffic from fake-a" in plan, plan
    assert "first step: fake-b 10%, fake-a 90%." in plan.replace(".0%", "%"), plan
    assert version(api) == before
    assert_accessible(page)
    screenshot(page, "ui-rollout-form")
    card_screenshot(page, "#extension-form", "ui-rollout-form-card")
    page.click("#apply-config")
    deadline = time.monotonic() + 60
    while api.get(f"{URL}/rollouts/current").status_code != 200:
        assert time.monotonic() < deadline, api.get(URL).json()
        time.sleep(0.2)
    current = api.get(f"{URL}/rollouts/current").json()
    assert current["candidate"] == "fake-b" and current["state"] in ("WAITING", "RUNNING"), current
    detail = api.get(URL).json()
    config = detail.get("pending_config") or detail["config"]
    if "rollout" not in config:
        config = detail["config"]
    assert config["rollout"] == {
        "candidate": "fake-b",
        "steps": [10.0, 50.0, 100.0],
        "step_seconds": 600,
        "evaluation_seconds": 5,
        "max_error_rate": 0.5,
        "max_p99_ms": None,
        "min_agreement": None,
        "min_requests_per_step": 0,
        "webhook_url": None,
    }
    assert "shadow" not in config


def test_no_page_errors(page_errors: list[str], earlier_errors: int) -> None:
    assert page_errors[earlier_errors:] == []
