"""My tokens (#/tokens) in chromium: a token generated on the page works with the databricks-sdk
until it is revoked on the page; lifetimes (preset and custom) reach the server; the value is
shown once; the server's refusal is shown beside the form; admins also see every principal's
tokens, other users only their own."""

from __future__ import annotations

import re
import time
from typing import Any

import httpx
import pytest

from tests.browser.conftest import assert_accessible, screenshot
from tests.console.conftest import sign_in
from tests.console.manage import accept_next_dialog, sign_in_as, sign_out_to_admin
from tests.serverproc import ServerProcess
from tests.support.names import unique
from tests.support.principals import create_user, obo_token

pytestmark = pytest.mark.slow


def _sdk_lists_endpoints(url: str, token: str) -> list[str]:
    from databricks.sdk import WorkspaceClient

    ws = WorkspaceClient(host=url, token=token, auth_type="pat")
    return [e.name for e in ws.serving_endpoints.list() if e.name]


def _refused(url: str, token: str) -> bool:
    from databricks.sdk.errors import PermissionDenied, Unauthenticated

    try:
        _sdk_lists_endpoints(url, token)
    except (Unauthenticated, PermissionDenied):
        return True
    return False


def _token(api: httpx.Client, token_id: str) -> dict[str, Any] | None:
    infos = api.get("/api/2.0/token-management/tokens").json()["token_infos"]
    return next((t for t in infos if t["token_id"] == token_id), None)


def test_a_token_made_on_the_page_works_with_the_sdk_until_revoked_there(
    page: Any, api: httpx.Client, ui_server: ServerProcess, page_errors: list[str], csp_violations: list[str]
) -> None:
    errors_before, csp_before = len(page_errors), len(csp_violations)
    sign_in(page, "/ui/#/tokens")
    page.wait_for_selector("#tokens")
    comment = unique("ui-sdk-token")
    # keyboard only: the comment, the lifetime (1 day) and Enter submits the form
    page.focus("#token-comment")
    page.keyboard.type(comment)
    page.select_option("#token-lifetime", "86400")
    page.focus("#token-comment")
    page.keyboard.press("Enter")
    page.wait_for_selector("#new-token-value")
    value = page.input_value("#new-token-value")
    assert re.fullmatch(r"dapi[0-9a-f]{32}", value), value
    assert "not shown again" in page.inner_text("#token-warning")
    assert page.evaluate("document.activeElement.id") == "new-token-title"
    row = page.locator("#tokens tbody tr", has_text=comment)
    row.wait_for()
    token_id = row.get_attribute("data-token-id")
    assert token_id
    stored = _token(api, token_id)
    assert stored is not None and stored["comment"] == comment and stored["owner_name"] == "admin"
    assert stored["expiry_time"] - stored["creation_time"] == 86_400_000
    assert row.locator("[data-expiry=expires]").inner_text().endswith(("(in 23 hours)", "(in 1 day)"))
    assert_accessible(page)

    # the SDK works with the value read from the page
    listed = sorted(e["name"] for e in api.get("/api/2.0/serving-endpoints").json().get("endpoints", []))
    assert sorted(_sdk_lists_endpoints(ui_server.url, value)) == listed

    # shown once: dismissed, it is nowhere on the page, nor after a reload
    page.click("#token-done")
    assert page.locator("#new-token-value").count() == 0
    assert value not in page.content()
    page.reload()
    page.wait_for_selector(f"#tokens tr[data-token-id='{token_id}']")
    assert value not in page.content()
    screenshot(page, "ui-tokens")

    # revoked on the page (after a confirmation): the SDK is refused
    seen: list[str] = []
    accept_next_dialog(page, seen)
    page.click(f"#tokens [data-revoke='{token_id}']")
    page.wait_for_selector(f"#tokens tr[data-token-id='{token_id}']", state="detached")
    assert seen and comment in seen[0]
    assert _token(api, token_id) is None
    deadline = time.monotonic() + 15
    while not _refused(ui_server.url, value):
        assert time.monotonic() < deadline, "the revoked token still works"
        time.sleep(0.5)
    # dismissing the confirmation keeps the token
    other = api.post("/api/2.0/token/create", json={"comment": unique("ui-kept")}).json()["token_info"]
    page.reload()
    page.once("dialog", lambda d: d.dismiss())
    page.click(f"#tokens [data-revoke='{other['token_id']}']")
    page.wait_for_timeout(300)
    assert _token(api, other["token_id"]) is not None
    assert page_errors[errors_before:] == []
    assert csp_violations[csp_before:] == []


def test_custom_lifetime_and_the_servers_refusal_beside_the_form(page: Any, api: httpx.Client) -> None:
    sign_in(page, "/ui/#/tokens")
    page.wait_for_selector("#tokens")
    assert page.locator("#token-seconds").is_hidden()
    page.select_option("#token-lifetime", "custom")
    assert page.locator("#token-seconds").is_visible()
    comment = unique("ui-custom")
    page.fill("#token-comment", comment)
    page.fill("#token-seconds", "999999999999")
    page.click("#token-create")
    error = page.locator("#token-create-error .error")
    error.wait_for()
    # the API's own message, beside the form; nothing was created
    answer = api.post("/api/2.0/token/create", json={"lifetime_seconds": 999999999999})
    assert answer.status_code == 400
    assert error.inner_text() == answer.json()["message"]
    assert page.locator("#new-token-value").count() == 0
    page.fill("#token-seconds", "120")
    page.click("#token-create")
    page.wait_for_selector("#new-token-value")
    token_id = page.locator("#tokens tbody tr", has_text=comment).get_attribute("data-token-id")
    stored = _token(api, str(token_id))
    assert stored is not None and stored["expiry_time"] - stored["creation_time"] == 120_000
    assert page.locator("#token-create-error .error").count() == 0
    page.click("#token-done")
    # no expiry
    page.fill("#token-comment", comment + "-forever")
    page.select_option("#token-lifetime", "-1")
    page.click("#token-create")
    page.wait_for_selector("#new-token-value")
    forever = page.locator("#tokens tbody tr", has_text=comment + "-forever")
    assert forever.locator("[data-expiry=never]").inner_text() == "Never"
    assert _token(api, str(forever.get_attribute("data-token-id")))["expiry_time"] == -1  # type: ignore[index]
    page.click("#token-done")


def test_admins_see_every_token_other_users_only_theirs(
    page: Any, api: httpx.Client, ui_server: ServerProcess
) -> None:
    user = create_user(api, unique("ui-tokens-user") + "@example.com")["userName"]
    made = obo_token(api, user_name=user)
    theirs = made["token_info"]["token_id"]
    mine = api.post("/api/2.0/token/create", json={"comment": unique("ui-admin-own")}).json()["token_info"]
    sign_in_as(page, made["token_value"], "/ui/#/tokens")
    page.wait_for_selector(f"#tokens tr[data-token-id='{theirs}']")
    assert page.locator("#all-tokens-card").count() == 0
    assert page.locator(f"tr[data-token-id='{mine['token_id']}']").count() == 0
    ids = page.locator("#tokens tbody tr").evaluate_all("rows => rows.map((r) => r.dataset.tokenId)")
    listed = {
        t["token_id"]
        for t in httpx.get(
            f"{ui_server.url}/api/2.0/token/list", headers={"Authorization": f"Bearer {made['token_value']}"}
        ).json()["token_infos"]
    }
    assert set(ids) == listed  # their own token and the console session's, nothing else
    assert_accessible(page)
    screenshot(page, "ui-tokens-user")
    sign_out_to_admin(page, "/ui/#/tokens")
    row = page.locator(f"#all-tokens tr[data-token-id='{theirs}']")
    row.wait_for()
    assert row.locator("td[data-label=Owner]").inner_text() == user
    assert row.locator("td[data-label='Created by']").inner_text() == "admin"
    # an admin revokes another user's token from the management list
    accept_next_dialog(page)
    row.locator("button").click()
    row.wait_for(state="detached")
    refused = httpx.get(
        f"{ui_server.url}/api/2.0/serving-endpoints",
        headers={"Authorization": f"Bearer {made['token_value']}"},
    )
    assert refused.status_code == 401
