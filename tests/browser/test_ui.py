"""The serving console and playground in a real browser (chromium), against a real server.

The tests run in file order on one page and build on each other: log in, create one endpoint of
each kind through the form, query them from the playground, edit traffic, watch the charts,
read logs and an inference-table row. Each page is screenshotted at 1280 and 390 px.
"""

from __future__ import annotations

import json
import re
import threading
import time
from typing import Any

import httpx
import numpy as np
import pytest

from tests.browser.conftest import CATALOG_MODEL, MODEL, assert_accessible, screenshot, wait_until
from tests.serverproc import ADMIN_TOKEN

pytestmark = pytest.mark.slow

EXTERNAL = "ui-external"
FOUNDATION = "ui-smollm"
REGISTERED = "ui-iris"
SCOPE = "ui-tests"
CATALOG = "ui-catalog"
CACHED = "ui-cached"
SYSTEM = "modelport-smollm2-135m-instruct"
COLUMNS = ["f0", "f1", "f2", "f3"]
READY = "h1 .badge[data-state=ready]"


def wait_ready(page: Any, name: str, timeout_s: float = 120) -> None:
    page.wait_for_url(re.compile(rf"#/endpoints/{name}$"))
    page.wait_for_selector(READY, timeout=timeout_s * 1000)


MLFLOW = "/api/2.0/mlflow"


def example_rows() -> list[list[float]]:
    """The input example ``log_sklearn_model`` saves with each model: its first two rows."""
    return [[float(v) for v in row] for row in np.random.default_rng(0).random((40, 4))[:2]]


def principals(page: Any) -> list[str]:
    page.wait_for_selector("#permissions tbody tr")
    return [row.locator("td").first.inner_text() for row in page.locator("#permissions tbody tr").all()]


def config_version(api: httpx.Client, name: str) -> int:
    return int(api.get(f"/api/2.0/serving-endpoints/{name}").json()["config"]["config_version"])


def test_login_with_token(page: Any, ui_server: Any) -> None:
    page.goto("/")
    page.wait_for_url(re.compile(r"/ui/#/login$"))
    assert not page.locator("#nav").is_visible()  # no navigation before logging in
    page.fill("#token", "dapi-wrong")
    page.click("button[type=submit]")
    # the API's own message
    assert page.locator(".error").inner_text() == "Invalid access token."
    assert_accessible(page)
    screenshot(page, "login")
    page.fill("#token", ADMIN_TOKEN)
    page.keyboard.press("Enter")
    page.wait_for_selector("#endpoints tr[data-endpoint='modelport-smollm2-135m-instruct']")
    # signed in with a session cookie the page's scripts cannot read, not a stored token
    cookies = {c["name"]: c for c in page.context.cookies()}
    session = cookies["modelport_session"]
    assert session["httpOnly"] and session["sameSite"] == "Strict" and session["value"] != ADMIN_TOKEN
    assert not cookies["modelport_csrf"]["httpOnly"]
    assert "modelport_session" not in page.evaluate("document.cookie")
    assert page.evaluate("Object.keys(localStorage).length") == 0


def test_keyboard_skip_link_and_nav(page: Any) -> None:
    page.goto("/ui/#/endpoints")
    page.reload()  # focus starts at the top of the document
    page.wait_for_selector("#endpoints tbody tr")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.keyboard.press("Tab")  # the brand link, then the nav links: real links, in order
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Endpoints"
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"#/create$"))
    page.wait_for_selector("#create-name:focus")


def test_refused_token_goes_back_to_login(page: Any) -> None:
    page.goto("/ui/#/endpoints")
    page.wait_for_selector("#endpoints tbody tr")
    page.click("#logout")  # signing out deletes the session's token: the old cookie is refused
    page.wait_for_url(re.compile(r"#/login$"))
    assert "modelport_session" not in {c["name"] for c in page.context.cookies()}
    stale = [("modelport_session", "dapi-revoked"), ("modelport_csrf", "0" * 40)]  # an ended session
    host = re.sub(r"^https?://([^:/]+).*$", r"\1", page.url)
    page.context.add_cookies([{"name": k, "value": v, "domain": host, "path": "/"} for k, v in stale])
    page.goto("/ui/#/playground")
    page.reload()  # a fresh page load with the stale cookies (goto to a fragment does not reload)
    page.wait_for_url(re.compile(r"#/login$"))
    assert "Invalid access token." in page.locator(".error").inner_text()
    page.fill("#token", ADMIN_TOKEN)
    page.click("button[type=submit]")
    page.wait_for_selector("#endpoints tbody tr")


def test_create_external_model_with_secret_picker(page: Any, api: httpx.Client, fake_openai: Any) -> None:
    from tests.fakes.openai_server import API_KEY

    assert api.post("/api/2.0/secrets/scopes/create", json={"scope": SCOPE}).status_code == 200
    put = api.post(
        "/api/2.0/secrets/put", json={"scope": SCOPE, "key": "fake-openai", "string_value": API_KEY}
    )
    assert put.status_code == 200
    page.click("nav >> text=Create")
    page.fill("#create-name", EXTERNAL)
    page.check("#kind-external")
    page.select_option("#create-provider", "custom")
    page.select_option("#create-task", "llm/v1/chat")
    page.fill("#create-external-name", "gpt-fake")
    page.fill("#create-entity-name", "fake-a")
    page.fill("[id='ext-custom_provider_url']", f"{fake_openai.url}/v1")
    page.select_option("#cred-scope-bearer_token_auth-token", SCOPE)
    page.wait_for_selector("#cred-key-bearer_token_auth-token option[value='fake-openai']", state="attached")
    page.select_option("#cred-key-bearer_token_auth-token", "fake-openai")
    assert_accessible(page)
    screenshot(page, "create")
    page.click("#create-submit")
    wait_ready(page, EXTERNAL)
    got = api.get(f"/api/2.0/serving-endpoints/{EXTERNAL}").json()
    block = got["config"]["served_entities"][0]["external_model"]["custom_provider_config"]
    assert block["bearer_token_auth"]["token"] == f"{{{{secrets/{SCOPE}/fake-openai}}}}"


def test_create_foundation_model(page: Any) -> None:
    page.goto("/ui/#/create")
    page.fill("#create-name", FOUNDATION)
    page.check("#kind-foundation")
    page.select_option("#create-foundation", "system.ai.smollm2-135m-instruct")
    page.click("#create-submit")
    wait_ready(page, FOUNDATION)
    assert "system.ai.smollm2-135m-instruct" in page.locator("#served-entities").inner_text() or (
        "SmolLM2" in page.locator("#served-entities").inner_text()
    )


def test_create_registered_model_with_version_picker(page: Any, registered_model: Any) -> None:
    registered_model.wait()
    page.goto("/ui/#/create")
    page.fill("#create-name", REGISTERED)
    page.check("#kind-registered")
    page.wait_for_selector(f"#create-model option[value='{MODEL}']", state="attached")
    page.select_option("#create-model", MODEL)
    page.wait_for_selector("#create-version option[value='1']", state="attached")
    page.select_option("#create-version", "1")
    page.fill("#create-entity-name", "iris-a")
    page.check("#create-inference")  # inference table main.serving.ui_iris_payload
    page.click("#create-submit")
    wait_ready(page, REGISTERED)


def test_create_form_shows_api_error(page: Any) -> None:
    page.goto("/ui/#/create")
    page.fill("#create-name", REGISTERED)  # exists already
    page.check("#kind-foundation")
    page.click("#create-submit")
    error = page.locator("#create-form .error")
    error.wait_for()
    assert "already exists" in error.inner_text()


def test_endpoints_list_filter_and_search(page: Any) -> None:
    page.goto("/ui/#/endpoints")
    page.wait_for_selector(f"#endpoints tr[data-endpoint='{REGISTERED}']")
    row = page.locator(f"#endpoints tr[data-endpoint='{REGISTERED}']")
    assert "Ready" in row.inner_text() and "iris-a 100%" in row.inner_text()
    assert_accessible(page)
    screenshot(page, "endpoints")
    page.fill("#ep-search", "ui-")
    wait_until(page, "document.querySelectorAll('#endpoints tbody tr').length === 3")
    page.fill("#ep-search", "")
    page.select_option("#ep-state", "failed")
    wait_until(page, "document.querySelectorAll('#endpoints tbody tr').length === 0")
    page.select_option("#ep-state", "ready")
    wait_until(page, "document.querySelectorAll('#endpoints tbody tr').length === 5")
    page.select_option("#ep-state", "")


def test_playground_streams_a_chat_answer(page: Any) -> None:
    page.click("nav >> text=Playground")
    page.select_option("#pg-endpoint-0", EXTERNAL)
    page.fill("#pg-system", "Answer briefly.")
    page.fill("#pg-prompt", "hello there")
    page.click("#pg-send")
    answer = page.locator(f"#pg-answers [data-endpoint='{EXTERNAL}'] .msg.assistant").last
    page.wait_for_selector(f"#pg-answers [data-endpoint='{EXTERNAL}'] .msg.assistant[data-done=true]")
    assert "You said: hello there" in answer.locator(".content").inner_text()
    assert "completion tokens" in answer.locator(".stats").inner_text()


def test_playground_compares_two_endpoints(page: Any) -> None:
    page.click("#pg-clear")
    page.select_option("#pg-endpoint-0", EXTERNAL)
    page.select_option("#pg-endpoint-1", FOUNDATION)
    page.fill("#pg-max-tokens", "12")
    page.fill("#pg-temperature", "0")
    page.fill("#pg-prompt", "Name a colour.")
    page.locator("#pg-prompt").press("Control+Enter")
    for name in (EXTERNAL, FOUNDATION):
        page.wait_for_selector(
            f"#pg-answers [data-endpoint='{name}'] .msg.assistant[data-done=true]", timeout=120_000
        )
        answer = page.locator(f"#pg-answers [data-endpoint='{name}'] .msg.assistant").last
        assert answer.locator(".content").inner_text().strip()
        stats = answer.locator(".stats").inner_text()
        assert re.search(r"\d+\.\d\d s total", stats) and "completion tokens" in stats, stats
    assert_accessible(page)
    screenshot(page, "playground")


def test_playground_custom_model_form_from_signature(page: Any) -> None:
    page.focus("#tab-chat")
    page.keyboard.press("ArrowRight")  # tabs follow the arrow keys
    assert page.get_attribute("#tab-custom", "aria-selected") == "true"
    page.select_option("#pg-custom-endpoint", REGISTERED)
    page.wait_for_selector("#col-f3")
    for column, value in {"f0": "0.9", "f1": "0.1", "f2": "0.2", "f3": "0.3"}.items():
        page.fill(f"#col-{column}", value)
    page.click("#pg-predict")
    cell = page.locator("#predictions-table td.prediction").first
    cell.wait_for()
    assert cell.inner_text() == "1"
    assert_accessible(page)
    screenshot(page, "playground-custom")


def test_edit_traffic_validates_then_updates(page: Any, api: httpx.Client) -> None:
    page.goto(f"/ui/#/endpoints/{REGISTERED}")
    page.wait_for_selector(READY)
    version = config_version(api, REGISTERED)
    page.click("#config-editor summary")
    editor = page.locator("#config-editor textarea")
    entity = {"entity_version": "1", "workload_size": "Small", "scale_to_zero_enabled": False}

    def config(a: int, b: int) -> str:
        return json.dumps(
            {
                "served_entities": [
                    {"name": "iris-a", "entity_name": MODEL, **entity},
                    {"name": "iris-b", "entity_name": MODEL, **entity},
                ],
                "traffic_config": {
                    "routes": [
                        {"served_entity_name": "iris-a", "traffic_percentage": a},
                        {"served_entity_name": "iris-b", "traffic_percentage": b},
                    ]
                },
            }
        )

    editor.fill(config(50, 50).replace('"entity_version": "1"', '"entity_version": "99"', 1))
    page.click("#save-config")  # valid here, refused by the server: its message is shown
    alert = page.locator("#config-editor ~ [aria-live] .error")
    alert.wait_for()
    assert "99" in alert.inner_text() and MODEL in alert.inner_text(), alert.inner_text()
    editor.fill(config(60, 50))
    page.click("#save-config")
    assert "Traffic must add up to 100% (now 110%)" in page.locator("[role=alert]").inner_text()
    assert config_version(api, REGISTERED) == version  # nothing was sent
    editor.fill(config(50, 50))
    page.click("#save-config")
    wait_until(page, "document.querySelectorAll('#served-entities tbody tr').length === 2", timeout=120_000)
    page.wait_for_selector(READY, timeout=120_000)
    assert config_version(api, REGISTERED) == version + 1
    page.fill("[data-entity='iris-a']", "70")
    page.fill("[data-entity='iris-b']", "20")
    page.click("#save-traffic")
    assert "now 90%" in page.locator("[role=alert]").inner_text()
    page.fill("[data-entity='iris-b']", "30")
    page.click("#save-traffic")
    deadline = time.monotonic() + 120
    while config_version(api, REGISTERED) != version + 2:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    page.wait_for_selector(READY, timeout=120_000)
    routes = api.get(f"/api/2.0/serving-endpoints/{REGISTERED}").json()["config"]["traffic_config"]["routes"]
    assert {r["served_entity_name"]: r["traffic_percentage"] for r in routes} == {"iris-a": 70, "iris-b": 30}


def test_update_progress_and_cancel(page: Any, api: httpx.Client) -> None:
    """An update in progress (the server's answer held at IN_PROGRESS: real updates of this
    model finish within the 2 s poll) shows its entities, and Cancel sends cancel-update."""
    detail = api.get(f"/api/2.0/serving-endpoints/{REGISTERED}").json()
    pending = {
        **detail["config"],
        "config_version": detail["config"]["config_version"] + 1,
        "served_entities": [
            {
                **e,
                "state": {
                    "deployment": "DEPLOYMENT_CREATING",
                    "deployment_state_message": "Starting 1 replica(s)",
                },
            }
            for e in detail["config"]["served_entities"]
        ],
    }
    updating = {
        **detail,
        "state": {**detail["state"], "config_update": "IN_PROGRESS"},
        "pending_config": pending,
    }
    cancels: list[str] = []

    def fake_detail(route: Any) -> None:
        route.fulfill(json=updating if not cancels else detail)

    def fake_cancel(route: Any) -> None:
        cancels.append(route.request.method)
        route.fulfill(json={})

    page.route(f"**/api/2.0/serving-endpoints/{REGISTERED}", fake_detail)
    page.route(f"**/api/2.0/serving-endpoints/{REGISTERED}/cancel-update", fake_cancel)
    try:
        page.wait_for_selector("h1 .badge[data-state=updating]")
        notice = page.locator("#update-progress")
        assert "Starting 1 replica(s)" in notice.inner_text()
        assert page.locator("#save-traffic").is_disabled()
        page.click("#cancel-update")
        page.wait_for_selector(READY)
        assert cancels == ["POST"]
    finally:
        page.unroute(f"**/api/2.0/serving-endpoints/{REGISTERED}")
        page.unroute(f"**/api/2.0/serving-endpoints/{REGISTERED}/cancel-update")


def test_charts_move_after_a_burst(page: Any, ui_server: Any) -> None:
    page.wait_for_selector("#chart-rps[data-points]")

    def burst() -> None:
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        with httpx.Client(base_url=ui_server.url, headers=headers, timeout=30) as client:
            for i in range(60):
                body = {"dataframe_records": [{"f0": i / 60, "f1": 0.1, "f2": 0.2, "f3": 0.3}]}
                client.post(f"/serving-endpoints/{REGISTERED}/invocations", json=body)
            client.post(
                f"/serving-endpoints/{REGISTERED}/invocations", json={"dataframe_records": [{"f0": "x"}]}
            )

    thread = threading.Thread(target=burst)
    thread.start()
    wait_until(page, "Number(document.querySelector('#chart-rps').dataset.max) > 0", timeout=20_000)
    wait_until(page, "Number(document.querySelector('#chart-errors').dataset.max) > 0", timeout=20_000)
    thread.join()
    latency = page.locator("#chart-latency [data-chart-value]").inner_text()
    assert re.search(r"\d ms / .*\d ms", latency), latency
    assert page.locator("#chart-replicas [data-chart-value]").inner_text() == "2"
    assert page.locator("#chart-rps polyline").count() == 1


def test_logs_and_openapi_and_snippets(page: Any) -> None:
    page.select_option("#logs-entity", "iris-b")
    page.click("#show-logs")
    wait_until(page, "document.querySelector('#logs-output').textContent.includes('modelport-worker')")
    page.click("#show-build-logs")
    wait_until(page, "document.querySelector('#logs-output').textContent.includes('Config version')")
    page.click("#show-openapi")
    wait_until(page, "document.querySelector('#openapi-output').textContent.includes('openapi')")
    page.click("[data-snippet='Python (databricks-sdk)']")
    snippet = page.locator("#snippet").inner_text()
    assert f'name="{REGISTERED}"' in snippet, snippet
    # the model's input example, as DataframeSplitInput, and the README's variables
    assert f"DataframeSplitInput(columns={json.dumps(COLUMNS)}, data=" in snippet, snippet
    assert (
        'WorkspaceClient(host=os.environ["MODELPORT_HOST"], token=os.environ["MODELPORT_TOKEN"])' in snippet
    )
    assert_accessible(page)
    screenshot(page, "endpoint")


def test_permissions_grant(page: Any) -> None:
    section = page.locator("section[aria-labelledby=perm-title]")
    section.locator("select").first.select_option("group_name")
    section.locator("input[type=text]").fill("users")
    section.locator("select").nth(1).select_option("CAN_QUERY")
    page.click("#grant")
    wait_until(page, "document.querySelector('#permissions').textContent.includes('users')")


def test_inference_table_row(page: Any) -> None:
    page.click("nav >> text=Inference tables")
    page.select_option("#tables-endpoint", REGISTERED)
    deadline = time.monotonic() + 30
    while page.locator("#inference-rows tbody tr").count() == 0:
        assert time.monotonic() < deadline, "no inference rows after 30 s"
        page.wait_for_timeout(500)
        page.click("#tables-run")
        wait_until(page, "!document.querySelector('#tables-form p').textContent.startsWith('Querying')")
    page.select_option("#tables-status", "error")
    page.click("#tables-run")
    wait_until(page, "!document.querySelector('#tables-form p').textContent.startsWith('Querying')")
    assert page.locator("#inference-rows tbody tr").count() >= 1
    assert "400" in page.locator("#inference-rows tbody tr").first.inner_text()
    page.select_option("#tables-status", "ok")
    page.click("#tables-run")
    # The rows of the "ok" query, not the error rows still shown until it answers (under load the
    # "Querying" line may not have appeared yet when the wait above is first checked).
    wait_until(
        page,
        "(() => { const cells = [...document.querySelectorAll("
        "'#inference-rows tbody td[data-label=\"Status\"]')]; "
        "return cells.length > 0 && cells.every((td) => td.textContent.trim().startsWith('2')); })()",
    )
    page.locator("#inference-rows tbody tr button").first.click()
    assert "dataframe_records" in page.locator("#row-request").inner_text()
    assert "predictions" in page.locator("#row-response").inner_text()
    assert_accessible(page)
    screenshot(page, "inference-table")


def test_audit_log(page: Any, ui_server: Any) -> None:
    refused = httpx.get(
        f"{ui_server.url}/api/2.0/serving-endpoints", headers={"Authorization": "Bearer dapi-wrong"}
    )
    assert refused.status_code == 401
    page.click("nav >> text=Audit log")
    wait_until(page, "document.querySelectorAll('#audit-rows tbody tr').length > 0")
    assert "createEndpoint" in page.locator("#audit-rows tbody").inner_text()
    page.select_option("#audit-outcome", "denied")
    page.click("#audit-run")
    wait_until(page, "!document.querySelector('#audit-form p').textContent.startsWith('Querying')")
    first = page.locator("#audit-rows tbody tr").first
    assert "401" in first.inner_text() and "(not signed in)" in first.inner_text()
    first.locator("button").click()
    assert "Invalid access token" in page.locator("#audit-message").inner_text()
    assert_accessible(page)
    screenshot(page, "audit-log")


def test_catalog_schema_name_model_in_snippets_and_playground(page: Any, api: httpx.Client) -> None:
    """A model registered as 'ui_fraud_detector' and served as 'main.default.ui_fraud_detector'
    (the README's naming): the server resolves the name, the page shows its input example."""
    entity = {"name": "fraud", "entity_name": f"main.default.{CATALOG_MODEL}", "entity_version": "1"}
    created = api.post(
        "/api/2.0/serving-endpoints", json={"name": CATALOG, "config": {"served_entities": [entity]}}
    )
    assert created.status_code == 200, created.text
    page.goto(f"/ui/#/endpoints/{CATALOG}")
    page.wait_for_selector(READY, timeout=120_000)
    page.wait_for_selector("#snippet")
    curl = page.locator("#snippet").inner_text()
    body = json.dumps(
        {"dataframe_split": {"columns": COLUMNS, "data": example_rows()}}, separators=(",", ":")
    )
    assert f"-d '{body}'" in curl, curl
    assert 'curl -s -H "Authorization: Bearer $MODELPORT_TOKEN"' in curl, curl
    assert f"$MODELPORT_HOST/serving-endpoints/{CATALOG}/invocations" in curl, curl
    assert "DATABRICKS_TOKEN" not in curl

    page.click("nav >> text=Playground")
    page.click("#tab-custom")
    page.select_option("#pg-custom-endpoint", CATALOG)
    page.wait_for_selector("#col-f3")
    about = page.locator("#pg-custom-about").inner_text()
    assert about.startswith(f"Model '{CATALOG_MODEL}' version 1."), about
    assert page.locator("label[for='col-f0']").inner_text() == "f0 (double)"
    first = example_rows()[0]
    assert [page.input_value(f"#col-{c}") for c in COLUMNS] == [str(v) for v in first]
    page.click("#pg-predict")
    page.locator("#predictions-table td.prediction").first.wait_for()
    row = page.locator("#predictions-table tbody tr").first.locator("td").all_inner_texts()
    assert row == [*(str(v) for v in first), "1"]  # the label is f0 > 0.5
    assert page.locator("#pg-custom-form .error, #pg-predictions .error").count() == 0


def test_system_endpoint_offers_only_what_it_allows(page: Any) -> None:
    page.goto(f"/ui/#/endpoints/{SYSTEM}")
    notice = page.locator("#system-endpoint")
    notice.wait_for()
    assert "managed by modelport" in notice.inner_text()
    assert sorted(principals(page)) == ["admins group", "users group"]  # admins once, not twice
    buttons = ("Save traffic", "Validate and update", "Check (dry run)", "Apply", "Grant", f"Delete {SYSTEM}")
    for name in (*buttons, "Cancel update"):
        assert page.get_by_role("button", name=name).count() == 0, name
    assert page.get_by_text("Edit the whole config").count() == 0
    assert page.get_by_role("heading", name="Delete").count() == 0
    # its AI gateway may change: the form and its advanced JSON view
    assert page.get_by_role("button", name="Save AI gateway").count() == 1
    assert page.get_by_text("Advanced: JSON").count() == 1
    assert_accessible(page)
    screenshot(page, "system-endpoint")


def test_permissions_list_each_principal_once(page: Any, api: httpx.Client) -> None:
    endpoint_id = api.get(f"/api/2.0/serving-endpoints/{CATALOG}").json()["id"]
    grant = {"access_control_list": [{"group_name": "admins", "permission_level": "CAN_MANAGE"}]}
    assert api.patch(f"/api/2.0/permissions/serving-endpoints/{endpoint_id}", json=grant).status_code == 200
    page.goto(f"/ui/#/endpoints/{CATALOG}")
    listed = principals(page)
    assert len(listed) == len(set(listed)) == 2 and "admins group" in listed, listed
    admins = page.locator("#permissions tbody tr", has_text="admins group").locator("td").nth(1)
    assert admins.inner_text() == "CAN_MANAGE, CAN_MANAGE (inherited)"
    assert page.get_by_role("button", name="Grant").count() == 1  # not a system endpoint


def test_mlflow_ui_rides_on_the_session(page: Any, api: httpx.Client) -> None:
    """MLflow's own UI under /mlflow/: the run links MLflow prints (<server>/#/experiments/...)
    open it, signed-out visits go through sign-in and come back, the registry lists the model."""
    versions = api.get(f"{MLFLOW}/model-versions/search", params={"filter": f"name='{MODEL}'"}).json()
    run_id = versions["model_versions"][0]["run_id"]
    run = api.get(f"{MLFLOW}/runs/get", params={"run_id": run_id}).json()["run"]
    link = f"/#/experiments/{run['info']['experiment_id']}/runs/{run_id}"
    page.goto(link)  # what MLflow printed as "View run ... at: <tracking URI>/#/..."
    page.wait_for_url(re.compile(rf"/mlflow/#/experiments/\d+/runs/{run_id}"))
    page.wait_for_selector(f"text={run['info']['run_name']}")
    page.goto("/ui/#/endpoints")
    page.wait_for_selector("#endpoints tbody tr")
    page.click("#logout")
    page.wait_for_url(re.compile(r"#/login$"))
    page.goto("/mlflow/#/models")  # signed out: to sign-in, then back to the same MLflow page
    page.wait_for_url(re.compile(r"/ui/\?next=/mlflow/#/login$"))
    page.fill("#token", ADMIN_TOKEN)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"/mlflow/#/models"))
    page.wait_for_selector(f"a:has-text('{MODEL}')")
    page.goto("/ui/#/endpoints")
    page.wait_for_selector("#endpoints tbody tr")


def test_response_cache_setting_hit_rate_and_edit(page: Any, api: httpx.Client, fake_openai: Any) -> None:
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
    cache = {"enabled": True, "scope": "endpoint", "ttl_seconds": 600}
    body = {"name": CACHED, "config": {"served_entities": [entity]}, "ai_gateway": {"response_cache": cache}}
    assert api.post("/api/2.0/serving-endpoints", json=body).status_code == 200
    deadline = time.monotonic() + 60
    while api.get(f"/api/2.0/serving-endpoints/{CACHED}").json()["state"]["ready"] != "READY":
        assert time.monotonic() < deadline, "the cached endpoint is not ready after 60 s"
        time.sleep(0.2)
    chat = {"model": CACHED, "messages": [{"role": "user", "content": "hello"}]}

    def verdict(body: dict[str, Any]) -> str:
        answer = api.post("/serving-endpoints/chat/completions", json=body)
        assert answer.status_code == 200, answer.text
        return answer.headers["x-modelport-cache"]

    verdicts = [verdict({**chat, "temperature": 0}) for _ in range(4)]
    sampled = verdict(chat)  # no temperature: sampled, never cached
    assert (verdicts, sampled) == (["miss", "hit", "hit", "hit"], "bypass")

    page.goto(f"/ui/#/endpoints/{CACHED}")
    setting = page.locator("#response-cache")
    setting.wait_for()
    assert "shared by every caller, TTL 600 s, exact matches, answers up to 1 MiB" in setting.inner_text()
    # from the endpoint's metrics the charts poll: hits / (hits + misses), bypasses left out
    wait_until(page, "document.querySelector('#cache-hit-rate').textContent.startsWith('hit rate 75%')")
    assert page.locator("#cache-hit-rate").inner_text() == "hit rate 75% (3 hits, 1 miss, 1 not cacheable)"
    assert_accessible(page)
    screenshot(page, "endpoint-cache")

    # edited in the AI gateway form (gateway_form.js), which shows the stored cache settings
    assert page.locator("#gw-cache-enabled").is_checked()
    assert page.locator("#gw-cache-ttl").input_value() == "600"
    assert page.locator("#gw-cache-scope").input_value() == "endpoint"
    assert page.locator("#gw-cache-similarity").input_value() == ""  # exact matches only
    page.fill("#gw-cache-ttl", "60")
    page.select_option("#gw-cache-scope", "user")
    page.click("#save-gateway")
    wait_until(page, "document.querySelector('#response-cache').textContent.includes('per user, TTL 60 s')")
    stored = api.get(f"/api/2.0/serving-endpoints/{CACHED}").json()["ai_gateway"]["response_cache"]
    assert (stored["ttl_seconds"], stored["scope"]) == (60, "user")


def test_no_script_errors(page_errors: list[str]) -> None:
    assert page_errors == []


def test_no_content_security_policy_violations(csp_violations: list[str]) -> None:
    assert csp_violations == []


def test_the_content_security_policy_refuses_an_inline_script(page: Any, csp_violations: list[str]) -> None:
    # What an injected <script> (an endpoint name, a model's answer) would try; the check above
    # sees violations only because chromium logs this one.
    page.evaluate(
        "() => { const s = document.createElement('script'); s.textContent = 'window.injected = 1';"
        " document.body.append(s); }"
    )
    page.wait_for_timeout(200)
    assert page.evaluate("() => window.injected") is None
    assert any("script-src 'self'" in v for v in csp_violations), csp_violations
