"""The feature-table pages and the endpoint page's features, in chromium on the browser suite's
server (after ``test_ui.py``, or alone: it signs in when it has to).

A feature table made through the API, unpublished; the page lists it with its keys, publishes it
from the keyboard, and looks a row up by key (and a key without a row). A model that looks its
features up in that table, registered while those tests run, is served: its endpoint page lists
the features; once the table is dropped, the page names the problem.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.browser.conftest import ROOT, assert_accessible, screenshot, wait_until
from tests.serverproc import ADMIN_TOKEN, ServerProcess
from tests.support.feature_models import create_user_features
from tests.support.names import unique
from tests.support.principals import create_user, obo_token

pytestmark = pytest.mark.slow

TABLE = "main.ui_features.users"
MODEL = "ui-fraud-features"
ENDPOINT = "ui-features"
FT = "/api/2.0/feature-engineering/tables"


class _FeatureModel:
    """Registers the feature-aware model in a subprocess (mlflow's import is slow) while the
    feature-table tests run."""

    def __init__(self, url: str) -> None:
        code = (
            "import sys; from tests.support.feature_models import log_feature_model as log\n"
            "print(log(*sys.argv[1:]))"
        )
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code, url, ADMIN_TOKEN, TABLE, MODEL],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )

    def version(self, timeout: float = 120) -> str:
        out, _ = self.proc.communicate(timeout=timeout)
        text = out.decode(errors="replace")
        assert self.proc.returncode == 0, text[-3000:]
        return text.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def feature_model(ui_server: ServerProcess) -> Iterator[_FeatureModel]:
    """The table (created unpublished) and the model's registration, started at once."""
    create_user_features(ui_server.url, ADMIN_TOKEN, TABLE, publish=None)
    job = _FeatureModel(ui_server.url)
    yield job
    if job.proc.poll() is None:
        job.proc.kill()
        job.proc.wait()
    if job.proc.stdout is not None:
        job.proc.stdout.close()


@pytest.fixture(scope="module")
def earlier_csp_violations(csp_violations: list[str]) -> int:
    """How many violations the suite saw before this module (``test_ui.py`` provokes one)."""
    return len(csp_violations)


def sign_in(page: Any, path: str) -> None:
    """Open ``path`` signed in as the admin (signing in first when the page is not)."""
    page.goto(path)
    page.wait_for_selector("main h1")
    if page.url.endswith("#/login"):
        page.fill("#token", ADMIN_TOKEN)
        page.keyboard.press("Enter")
        page.wait_for_url(re.compile(r"#/endpoints$"))
        page.goto(path)


def test_feature_tables_page_lists_keys_and_publish_state(
    page: Any, feature_model: _FeatureModel, earlier_csp_violations: int
) -> None:
    sign_in(page, "/ui/#/features")
    row = page.locator(f"#feature-tables tr[data-table='{TABLE}']")
    row.wait_for()
    # The router marks the link after the hash changes (it checks the session first).
    page.wait_for_selector("nav a[data-nav=features][aria-current=page]")
    assert row.locator("td[data-label=Keys]").inner_text() == "user_id"
    assert row.locator("td[data-label=Columns]").inner_text() == "3"
    assert row.locator("[data-online]").inner_text() == "Not published"
    assert "Per-user payment behaviour" in row.inner_text()
    page.fill("#ft-search", "no-such-table")
    wait_until(page, "document.querySelectorAll('#feature-tables tbody tr').length === 0")
    page.fill("#ft-search", "avg_amount")  # a column's name finds its table
    row.wait_for()
    assert_accessible(page)


def test_publish_from_the_keyboard_then_look_rows_up(page: Any) -> None:
    page.click(f"#feature-tables a:has-text('{TABLE}')")
    page.wait_for_url(re.compile(rf"#/features/{re.escape(TABLE)}$"))
    assert page.locator("h1 [data-online]").inner_text() == "Not published"
    columns = page.locator("#ft-columns tbody tr").all()
    assert [row.locator("td").all_inner_texts()[:3] for row in columns] == [
        ["user_id", "int64 (not null)", "primary key"],
        ["avg_amount", "double", "feature"],
        ["txn_count", "int64", "feature"],
    ]
    page.focus("#ft-publish-mode")
    page.select_option("#ft-publish-mode", "continuous")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "ft-publish"
    page.keyboard.press("Enter")
    page.wait_for_selector("h1 [data-online=ready]")
    assert page.locator("#ft-mode").inner_text() == "continuous"
    assert page.locator("#ft-rows").inner_text() == "3"
    online = api_state(page)
    assert (online["mode"], online["rows"]) == ("continuous", 3)

    page.fill("#ft-key-user_id", "2")
    page.keyboard.press("Enter")  # submits the lookup form
    page.wait_for_selector("#ft-row")
    values = dict(row.locator("td").all_inner_texts() for row in page.locator("#ft-row tbody tr").all())
    assert values == {"avg_amount": "300", "txn_count": "31"}
    page.fill("#ft-key-user_id", "99")
    page.click("#ft-lookup-submit")
    assert page.locator("#ft-no-row").inner_text() == "No row for this key."
    page.fill("#ft-key-user_id", "two")
    page.click("#ft-lookup-submit")
    assert "user_id is a whole number" in page.locator("#ft-lookup-result .error").inner_text()
    page.fill("#ft-key-user_id", "3")
    page.click("#ft-lookup-submit")
    page.wait_for_selector("#ft-row")
    assert_accessible(page)
    screenshot(page, "feature-table")
    page.click("text=← Feature tables")
    page.wait_for_selector(f"#feature-tables tr[data-table='{TABLE}'] [data-online=ready]")
    screenshot(page, "feature-tables")


def test_publish_is_offered_to_those_who_hold_manage(page: Any, api: httpx.Client) -> None:
    """A reader (SELECT) sees the table and looks rows up, without a Publish button; MANAGE
    brings the button."""
    user = create_user(api, unique("ui-reader"))["userName"]
    token = obo_token(api, user_name=user)["token_value"]

    def grant(level: str) -> None:
        body = {"access_control_list": [{"user_name": user, "permission_level": level}]}
        assert api.put(f"/api/2.0/permissions/tables/{TABLE}", json=body).status_code == 200

    grant("SELECT")
    page.click("#logout")
    page.wait_for_url(re.compile(r"#/login$"))
    page.fill("#token", token)
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"#/endpoints$"))
    page.goto(f"/ui/#/features/{TABLE}")
    page.wait_for_selector("#ft-lookup-form")
    assert page.locator("#ft-publish").count() == 0
    assert "Publishing needs MANAGE on the table." in page.locator("#ft-online").inner_text()
    grant("MANAGE")
    page.reload()
    page.wait_for_selector("#ft-publish")
    page.click("#logout")
    page.wait_for_url(re.compile(r"#/login$"))
    sign_in(page, f"/ui/#/features/{TABLE}")


def api_state(page: Any) -> dict[str, Any]:
    """The table's online state as the API gives it (through the page's session)."""
    answer = page.request.get(f"{FT}/{TABLE}")
    assert answer.ok, answer.text()
    return dict(answer.json()["online"])


def test_endpoint_page_lists_the_features_its_model_looks_up(
    page: Any, api: httpx.Client, feature_model: _FeatureModel
) -> None:
    version = feature_model.version()
    entity = {"name": "fraud", "entity_name": MODEL, "entity_version": version}
    created = api.post(
        "/api/2.0/serving-endpoints", json={"name": ENDPOINT, "config": {"served_entities": [entity]}}
    )
    assert created.status_code == 200, created.text
    page.goto(f"/ui/#/endpoints/{ENDPOINT}")
    section = page.locator("#endpoint-features")
    section.wait_for()  # shown once the first answer lists a feature
    features = section.locator("table[data-features=fraud] tbody tr").all()
    assert [row.locator("td").all_inner_texts() for row in features] == [
        ["avg_amount", TABLE, "avg_amount", "user_id", "double", "50.0", "OK"],
        ["txn_count", TABLE, "txn_count", "user_id", "bigint", "0", "OK"],
    ]
    assert section.locator("[data-problems]").count() == 0
    assert section.locator(f"a[href='#/features/{TABLE}']").count() == 2
    page.wait_for_selector("h1 .badge[data-state=ready]", timeout=120_000)
    assert_accessible(page)
    screenshot(page, "endpoint-features")


def test_endpoint_page_shows_a_dropped_table(page: Any, api: httpx.Client) -> None:
    dropped = api.delete(f"{FT}/{TABLE}")
    assert dropped.status_code == 200, dropped.text
    problems = page.locator("#endpoint-features [data-problems=fraud]")
    problems.wait_for(timeout=15_000)  # the section polls every 5 s
    assert problems.get_attribute("role") == "alert"
    assert f"Feature table '{TABLE}' does not exist" in problems.inner_text()
    failing = page.locator("#endpoint-features table[data-features=fraud] .badge.state-failed")
    assert failing.all_inner_texts() == ["Failing", "Failing"]
    screenshot(page, "endpoint-features-problem")
    page.goto("/ui/#/features")
    page.wait_for_selector("#ft-empty, #feature-tables")
    assert page.locator(f"tr[data-table='{TABLE}']").count() == 0


def test_no_script_errors_or_refusals_on_the_feature_pages(
    page_errors: list[str], csp_violations: list[str], earlier_csp_violations: int
) -> None:
    assert page_errors == []
    assert csp_violations[earlier_csp_violations:] == []
