"""The endpoint page's safe-rollout cards (``ui/static/rollouts.js``, issue 21) in chromium on the
browser suite's server (after the other browser tests, or alone: it signs in when it has to):
the config history with a diff and a rollback, the event log, the shadow comparison with a
replay, and a rollout paused, resumed and canceled from the page.

One endpoint of the suite's scikit-learn model: version 1 serves ``iris-a``, version 2 splits
``iris-a``/``iris-b`` 50/50 (both version 1 of the model, so their answers agree), with an
inference table. Each step is checked through the API as well as on the page.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import numpy as np
import pytest

from tests.browser.conftest import MODEL, SCREENSHOTS, WIDTHS, assert_accessible, screenshot, wait_until
from tests.serverproc import ADMIN_TOKEN
from tests.support.endpoints import wait_settled
from tests.support.names import unique
from tests.support.principals import create_user, obo_token

pytestmark = pytest.mark.slow

ENDPOINT = "ui-ro"
URL = f"/api/2.0/serving-endpoints/{ENDPOINT}"
MP_URL = f"/api/2.0/modelport/serving-endpoints/{ENDPOINT}"
PAGE = f"/ui/#/endpoints/{ENDPOINT}"
COLUMNS = ["f0", "f1", "f2", "f3"]


def entity(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "entity_name": MODEL,
        "entity_version": "1",
        "workload_size": "Small",
        "scale_to_zero_enabled": False,
    }


def routes(**traffic: int) -> dict[str, Any]:
    return {
        "routes": [
            {"served_entity_name": k.replace("_", "-"), "traffic_percentage": v} for k, v in traffic.items()
        ]
    }


def config_version(api: httpx.Client) -> int:
    return int(api.get(URL).json()["config"]["config_version"])


def update(api: httpx.Client, config: dict[str, Any]) -> dict[str, Any]:
    """PUT ``config`` and wait until the update settled; the endpoint after it."""
    r = api.put(f"{URL}/config", json=config)
    assert r.status_code == 200, r.text
    done = wait_settled(api, ENDPOINT, timeout=180)
    assert done["state"]["config_update"] == "NOT_UPDATING", done
    return done


def query(api: httpx.Client, n: int) -> None:
    """``n`` queries of one row each, four at a time."""
    rows = np.random.default_rng(1).random((n, 4)).tolist()

    def one(row: list[float]) -> None:
        r = api.post(
            f"/serving-endpoints/{ENDPOINT}/invocations",
            json={"dataframe_split": {"columns": COLUMNS, "data": [row]}},
        )
        assert r.status_code == 200, r.text

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(one, rows))


def sign_in(page: Any, path: str) -> None:
    """Open ``path`` signed in as the admin (signing in first when the page is not)."""
    page.goto(path)
    page.wait_for_selector("main h1")
    if page.url.endswith("#/login"):
        page.fill("#token", ADMIN_TOKEN)
        page.keyboard.press("Enter")
        page.wait_for_url(re.compile(r"#/endpoints$"))
        page.goto(path)


def screenshots(page: Any, name: str, card: str) -> None:
    """The whole page (``screenshot``: nothing wider than the window) and the card ``card``
    alone, ``screenshots/<name>-<width>.png`` and ``<name>-card-<width>.png``, at each width."""
    screenshot(page, name)
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 900})
        page.wait_for_timeout(150)
        page.locator(card).screenshot(path=str(SCREENSHOTS / f"{name}-card-{width}.png"))
    page.set_viewport_size({"width": WIDTHS[0], "height": 900})


@pytest.fixture(scope="module")
def endpoint(api: httpx.Client, registered_model: Any) -> Iterator[str]:
    if registered_model.proc.returncode is None:
        registered_model.wait()
    body = {
        "name": ENDPOINT,
        "config": {"served_entities": [entity("iris-a")]},
        "ai_gateway": {
            "inference_table_config": {
                "catalog_name": "main",
                "schema_name": "ui_ro",
                "table_name_prefix": "ui_ro",
                "enabled": True,
            }
        },
    }
    r = api.post("/api/2.0/serving-endpoints", json=body)
    assert r.status_code == 200, r.text
    assert wait_settled(api, ENDPOINT, timeout=180)["state"]["config_update"] == "NOT_UPDATING"
    update(
        api,
        {
            "served_entities": [entity("iris-a"), entity("iris-b")],
            "traffic_config": routes(iris_a=50, iris_b=50),
        },
    )
    assert config_version(api) == 2
    yield ENDPOINT
    api.delete(URL)


@pytest.fixture(scope="module")
def earlier_csp_violations(csp_violations: list[str]) -> int:
    """How many violations the suite saw before this module (``test_ui.py`` provokes one)."""
    return len(csp_violations)


def test_history_lists_both_versions_and_diffs_one(
    page: Any, endpoint: str, earlier_csp_violations: int
) -> None:
    sign_in(page, PAGE)
    serving = page.locator("#ro-versions tr[data-version='2']")
    serving.wait_for()
    assert serving.get_attribute("data-serving") == "true"
    assert serving.locator("[data-serving-badge]").inner_text() == "Serving"
    assert "iris-b: ui-iris-model v1" in serving.locator("td[data-label='Served entities']").inner_text()
    assert "iris-a 50% · iris-b 50%" in serving.locator("td[data-label=Traffic]").inner_text()
    first = page.locator("#ro-versions tr[data-version='1']")
    assert first.get_attribute("data-serving") == "false"
    assert re.search(r"\d", first.locator("td[data-label=Created]").inner_text())
    # newest first
    order = page.evaluate(
        "[...document.querySelectorAll('#ro-versions tbody tr')].map((tr) => tr.dataset.version)"
    )
    assert order == ["2", "1"], order
    # keyboard: the version's button opens its config and the diff against the serving version
    page.focus("[data-open-version='1']")
    page.keyboard.press("Enter")
    page.wait_for_selector("#ro-diff tr[data-path]")
    changes = page.evaluate(
        "Object.fromEntries([...document.querySelectorAll('#ro-diff tr[data-path]')]"
        ".map((tr) => [tr.dataset.path, tr.dataset.change]))"
    )
    assert changes["served_entities.iris-b"] == "removed", changes
    assert changes["traffic_config.iris-a"] == "changed", changes
    assert changes["traffic_config.iris-b"] == "removed", changes
    assert "served_entities.iris-a" not in changes, changes  # the same entity in both
    assert page.evaluate("document.activeElement.id") == "ro-version-title"
    assert page.locator("#ro-rollback").is_visible()
    assert page.locator("#ro-rollback").inner_text() == "Roll back to this version"
    assert_accessible(page)
    screenshots(page, "endpoint-history", "#ro-history")


def test_rollback_confirms_and_shows_errors_beside_the_button(
    page: Any, api: httpx.Client, endpoint: str
) -> None:
    page.once("dialog", lambda dialog: dialog.dismiss())
    page.click("#ro-rollback")
    page.wait_for_timeout(300)
    assert config_version(api) == 2  # dismissed: nothing sent
    assert page.locator("#ro-rollback-done").count() == 0

    def conflict(route: Any) -> None:
        route.fulfill(
            status=409,
            json={"error_code": "RESOURCE_CONFLICT", "message": "An update of ui-ro is in progress."},
        )

    pattern = f"**{URL}/config-versions/1/rollback"
    page.route(pattern, conflict)
    try:
        page.once("dialog", lambda dialog: dialog.accept())
        page.click("#ro-rollback")
        error = page.locator("#ro-rollback-error .error")
        error.wait_for()
        assert error.inner_text() == "An update of ui-ro is in progress."
    finally:
        page.unroute(pattern)


def test_rollback_from_the_page_makes_version_3(page: Any, api: httpx.Client, endpoint: str) -> None:
    messages: list[str] = []

    def accept(dialog: Any) -> None:
        messages.append(dialog.message)
        dialog.accept()

    page.once("dialog", accept)
    page.fill("#ro-rollback-reason", "back to one entity")
    page.click("#ro-rollback")
    done = page.locator("#ro-rollback-done")
    done.wait_for()
    assert "version 1" in messages[0], messages
    assert done.get_attribute("data-new-version") == "3"
    restored = page.locator("#ro-restored").inner_text().split(", ")
    assert {"served_entities", "traffic_config"} <= set(restored), restored
    settled = wait_settled(api, ENDPOINT, timeout=180)
    assert settled["config"]["config_version"] == 3
    assert [e["name"] for e in settled["config"]["served_entities"]] == ["iris-a"]
    versions = api.get(f"{URL}/config-versions").json()["config_versions"]
    assert [v["config_version"] for v in versions] == [3, 2, 1]
    assert versions[0]["rolled_back_from"] == 1
    # the page follows: version 3 serves, and it says it is a rollback to version 1
    page.wait_for_selector("#ro-versions tr[data-version='3'][data-serving='true']", timeout=60_000)
    assert "rollback to version 1" in page.locator("#ro-versions tr[data-version='3']").inner_text()
    assert page.locator("#ro-versions tr[data-version='2']").get_attribute("data-serving") == "false"


SHOWN_EVENTS = (
    "[...document.querySelectorAll('#ro-event-list tr[data-event]')].map((tr) => Number(tr.dataset.event))"
)


def events_from(api: httpx.Client, newest: int) -> list[int]:
    """The ids of the endpoint's events from ``newest`` down (these no longer change)."""
    listed = api.get(f"{URL}/events", params={"max_results": 1000}).json()["events"]
    return [e["id"] for e in listed if e["id"] <= newest]


def test_events_show_the_updates_and_the_rollback(page: Any, api: httpx.Client, endpoint: str) -> None:
    events = page.locator("#ro-event-list")
    events.locator("tr[data-kind='CONFIG_ROLLBACK']").wait_for(timeout=30_000)
    # two AI-gateway changes (events too) make sure there is more than one page (15) of events
    gateway = api.get(URL).json()["ai_gateway"]
    for enabled in (True, False):
        body = {**gateway, "usage_tracking_config": {"enabled": enabled}}
        assert api.put(f"{URL}/ai-gateway", json=body).status_code == 200
    wait_until(
        page, "document.querySelectorAll('#ro-event-list tr[data-kind=AI_GATEWAY_UPDATED]').length === 2"
    )
    rollback = events.locator("tr[data-kind='CONFIG_ROLLBACK']").first
    assert rollback.locator("[data-kind-badge]").inner_text() == "CONFIG_ROLLBACK"
    assert rollback.locator("td[data-label=Version]").inner_text() == "3"
    assert "to_version: 1" in rollback.locator("td[data-label=Message]").inner_text()
    # the newest page (15), newest first, as the API lists them
    shown = page.evaluate(SHOWN_EVENTS)
    assert shown == events_from(api, shown[0])[: len(shown)], shown
    older = page.locator("#ro-events-older")
    assert len(shown) == 15 and older.is_visible(), shown
    older.click()
    wait_until(page, "document.querySelectorAll('#ro-event-list tr[data-event]').length > 15")
    both = page.evaluate(SHOWN_EVENTS)
    assert both == events_from(api, both[0])[: len(both)], both
    # the kind filter asks the server for one kind: the three updates, newest first
    page.select_option("#ro-events-kind", "CONFIG_UPDATE_STARTED")
    wait_until(
        page,
        "document.querySelector('#ro-events-status').textContent.includes('of kind CONFIG_UPDATE_STARTED')",
    )
    versions = page.evaluate(
        "[...document.querySelectorAll('#ro-event-list tr[data-event]')]"
        ".map((tr) => [tr.dataset.kind, tr.querySelector('td[data-label=Version]').innerText])"
    )
    assert versions == [["CONFIG_UPDATE_STARTED", v] for v in ("3", "2", "1")], versions
    assert not older.is_visible()
    page.select_option("#ro-events-kind", "")
    page.locator("#ro-event-list tr[data-kind='CONFIG_ROLLBACK']").wait_for()
    assert_accessible(page)
    screenshots(page, "endpoint-events", "#ro-events")


def test_shadow_comparison_and_replay(page: Any, api: httpx.Client, endpoint: str) -> None:
    update(
        api,
        {
            "served_entities": [entity("iris-a"), entity("iris-b")],
            "traffic_config": routes(iris_a=100, iris_b=0),
            "shadow": {"served_entity_name": "iris-b", "percentage": 100},
        },
    )
    query(api, 24)
    deadline = time.monotonic() + 60
    while True:
        got = api.get(f"{MP_URL}/compare", params={"candidate": "iris-b", "source": "shadow"})
        assert got.status_code == 200, got.text
        if got.json()["pairs"] > 0:
            break
        assert time.monotonic() < deadline, got.json()
        time.sleep(1)
    # the serving config has a shadow: the card compares it without being asked
    page.wait_for_selector("#ro-compare:not([hidden])", timeout=30_000)
    assert page.locator("#ro-cmp-candidate").input_value() == "iris-b"
    page.click("#ro-cmp-refresh")
    wait_until(page, "Number((document.querySelector('#ro-cmp-report') || {dataset: {}}).dataset.pairs) > 0")
    report = page.locator("#ro-cmp-report")
    assert report.locator("dd[data-fact=Agreement]").inner_text() == "100.0%"  # one model behind both
    assert report.locator("tr[data-metric=requests] td").count() == 2
    page.select_option("#ro-cmp-window", "86400000")
    wait_until(page, "document.querySelector('#ro-cmp-status').textContent.includes('last 24 hours')")
    # a replay of logged traffic to iris-b: its progress, then its report
    page.select_option("#ro-replay-candidate", "iris-b")
    page.fill("#ro-replay-limit", "8")
    page.fill("#ro-replay-rate", "20")
    page.click("#ro-replay-start")
    state = page.locator("[data-replay-state]")
    state.wait_for()
    deadline = time.monotonic() + 60
    while state.get_attribute("data-replay-state") in ("PENDING", "QUEUED", "RUNNING"):
        assert time.monotonic() < deadline, page.locator("#ro-replay-progress").inner_text()
        page.wait_for_timeout(300)
    assert state.get_attribute("data-replay-state") == "SUCCEEDED", page.locator(
        "#ro-replay-progress"
    ).inner_text()
    assert "8 of 8 sent" in page.locator("#ro-replay-progress").inner_text()
    page.locator("#ro-replay-report").wait_for()
    assert int(page.locator("#ro-replay-report").get_attribute("data-pairs")) == 8
    # the comparison's other source: that replay
    page.select_option("#ro-cmp-source", "replay")
    wait_until(page, "document.querySelector('#ro-cmp-status').textContent.includes('replay ')")
    assert page.locator("#ro-cmp-report").get_attribute("data-pairs") == "8"
    assert page.locator("#ro-cmp-report dd[data-fact=Source]").inner_text() == "replay"
    assert_accessible(page)
    screenshots(page, "endpoint-comparison", "#ro-compare")


def test_rollout_card_pauses_resumes_and_cancels(page: Any, api: httpx.Client, endpoint: str) -> None:
    before = config_version(api)
    traffic = api.get(URL).json()["config"]["traffic_config"]["routes"]
    policy = {"steps": [5, 50, 100], "step_seconds": 600, "evaluation_seconds": 2, "max_error_rate": 0.5}
    r = api.put(
        f"{URL}/config",
        json={
            "served_entities": [entity("iris-a"), entity("iris-b")],
            "traffic_config": routes(iris_a=50, iris_b=50),
            "rollout": policy,
        },
    )
    assert r.status_code == 200, r.text
    wait_settled(api, ENDPOINT, timeout=180)
    state = page.locator("#ro-state")
    page.wait_for_selector("#ro-state[data-state=RUNNING]", timeout=60_000)
    step = page.locator("#ro-step").inner_text()
    assert "Step 1 of 3: candidate at 5%" in step, step
    assert re.search(r"\d+ min \d\d s left in this step", step), step
    assert "iris-b" in page.locator("#ro-rollout").inner_text()
    query(api, 8)
    page.wait_for_selector("#ro-verdict", timeout=30_000)
    assert page.locator("#ro-verdict").get_attribute("data-verdict") in ("HOLD", "ADVANCE")
    assert_accessible(page)
    screenshots(page, "endpoint-rollout", "#ro-rollout")
    # the card redraws at each evaluation (every 2 s here): the focused button keeps the focus
    page.focus("#ro-pause")
    evaluated = page.locator("#ro-evaluation h3").inner_text()
    wait_until(
        page, f"document.querySelector('#ro-evaluation h3').innerText !== {evaluated!r}", timeout=20_000
    )
    assert page.evaluate("document.activeElement.id") == "ro-pause"
    page.keyboard.press("Enter")
    page.wait_for_selector("#ro-state[data-state=PAUSED]")
    assert api.get(f"{URL}/rollouts/current").json()["state"] == "PAUSED"
    assert "paused" in page.locator("#ro-step-left").inner_text()
    page.focus("#ro-resume")
    page.keyboard.press("Enter")
    page.wait_for_selector("#ro-state[data-state=RUNNING]")
    assert api.get(f"{URL}/rollouts/current").json()["state"] == "RUNNING"
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#ro-cancel")
    wait_until(page, "!['RUNNING', 'PAUSED'].includes(document.querySelector('#ro-state').dataset.state)")
    assert state.get_attribute("data-state") == api.get(f"{URL}/rollouts/current").json()["state"]
    assert page.locator("#ro-cancel").count() == 0
    # cancel rolls back: a new version equal to the one before the rollout
    deadline = time.monotonic() + 120
    while config_version(api) != before + 2:
        assert time.monotonic() < deadline, api.get(URL).json()
        time.sleep(0.3)
    settled = wait_settled(api, ENDPOINT, timeout=180)
    assert settled["config"]["traffic_config"]["routes"] == traffic
    page.wait_for_selector("#ro-event-list tr[data-kind='ROLLOUT_CANCELED']", timeout=30_000)


def test_a_viewer_sees_the_history_and_events_without_the_controls(
    page: Any, api: httpx.Client, endpoint: str, page_errors: list[str]
) -> None:
    """A user with CAN_VIEW on the endpoint reads every card but gets no rollback, rollout or
    replay controls (the routes would refuse them: CAN_MANAGE)."""
    user = unique("ro-viewer")
    create_user(api, user)
    token = obo_token(api, user_name=user)["token_value"]
    endpoint_id = api.get(URL).json()["id"]
    grant = {"access_control_list": [{"user_name": user, "permission_level": "CAN_VIEW"}]}
    assert api.patch(f"/api/2.0/permissions/serving-endpoints/{endpoint_id}", json=grant).status_code == 200
    context = page.context.browser.new_context(
        viewport={"width": WIDTHS[1], "height": 900}, base_url=page.url.split("/ui/")[0]
    )
    viewer = context.new_page()
    viewer.on("pageerror", lambda exc: page_errors.append(str(exc)))
    try:
        viewer.goto("/ui/#/login")
        viewer.fill("#token", token)
        viewer.keyboard.press("Enter")
        viewer.wait_for_url(re.compile(r"#/endpoints$"))
        viewer.goto(PAGE)
        viewer.locator("#ro-versions tr[data-version='1']").wait_for()
        viewer.locator("#ro-event-list tr[data-kind='CONFIG_ROLLBACK']").wait_for()
        viewer.locator("[data-open-version='1']").click()
        viewer.wait_for_selector("#ro-diff")
        assert viewer.locator("#ro-rollback").count() == 0
        if api.get(f"{URL}/rollouts/current").status_code == 200:  # after the rollout test
            viewer.wait_for_selector("#ro-state")
            assert viewer.locator("#ro-rollout button").count() == 0
        assert viewer.locator("#ro-replay-form").count() == 0
        assert "needs CAN_MANAGE" in viewer.locator("#ro-replay").inner_text()
        assert_accessible(viewer)
    finally:
        context.close()


def test_no_script_errors_or_policy_violations(
    page_errors: list[str], csp_violations: list[str], earlier_csp_violations: int
) -> None:
    assert page_errors == []
    assert csp_violations[earlier_csp_violations:] == []
