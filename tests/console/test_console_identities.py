"""Users, groups and service principals (#/admin) in chromium: what the page creates, adds,
removes and deletes is what the SCIM API then answers; the server's refusal is shown beside the
form; a user who is not an admin gets a clear message and no forms."""

from __future__ import annotations

import re
import time
from typing import Any

import httpx
import pytest

from tests.browser.conftest import assert_accessible, screenshot
from tests.console.conftest import sign_in
from tests.console.manage import accept_next_dialog, sign_in_as, sign_out_to_admin
from tests.support.names import unique
from tests.support.principals import create_user, obo_token

pytestmark = pytest.mark.slow

SCIM = "/api/2.0/preview/scim/v2"


def _get(api: httpx.Client, kind: str, name: str) -> dict[str, Any] | None:
    answer = api.get(f"{SCIM}/{kind}/{name}")
    if answer.status_code == 404:
        return None
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def test_create_a_user_and_a_group_and_add_the_user(
    page: Any, api: httpx.Client, page_errors: list[str], csp_violations: list[str]
) -> None:
    user = unique("ui-alice") + "@example.com"
    group = unique("ui-team")
    errors_before, csp_before = len(page_errors), len(csp_violations)
    sign_in(page, "/ui/#/admin")
    page.wait_for_selector("#users-table")
    assert page.get_attribute("#tab-users", "aria-selected") == "true"

    # a user, typed and submitted from the keyboard
    page.focus("#new-users-name")
    page.keyboard.type(user)
    page.keyboard.press("Tab")
    page.keyboard.type("Alice Example")
    page.keyboard.press("Enter")
    page.wait_for_selector(f"#users-table tr[data-principal='{user}']")
    made = _get(api, "Users", user)
    assert made is not None and made["displayName"] == "Alice Example" and made["active"] is True
    assert [g["display"] for g in made["groups"]] == ["users"]

    # the Groups tab through the arrow keys (WAI-ARIA tabs), then a group
    page.focus("#tab-users")
    page.keyboard.press("ArrowRight")
    assert page.get_attribute("#tab-groups", "aria-selected") == "true"
    page.wait_for_selector("#groups-table")
    page.fill("#new-groups-name", group)
    page.click("#create-groups")
    row = page.locator(f"#groups-table tr[data-principal='{group}']")
    row.wait_for()
    assert row.locator("td[data-label=Members]").inner_text() == "0"

    # add the user to it
    row.locator(f"[data-members='{group}']").click()
    page.wait_for_selector(f"#group-detail [data-group='{group}']")
    page.fill("#add-member-name", user)
    page.keyboard.press("Enter")
    page.wait_for_selector(f"#members-table tr[data-member='{user}']")
    found = _get(api, "Groups", group)
    assert found is not None and [m["display"] for m in found["members"]] == [user]
    assert sorted(g["display"] for g in _get(api, "Users", user)["groups"]) == sorted(["users", group])  # type: ignore[index]
    assert (
        page.locator(f"#groups-table tr[data-principal='{group}'] td[data-label=Members]").inner_text() == "1"
    )
    assert_accessible(page)

    # which groups the user is in, found through the search box
    page.click("#tab-users")
    page.fill("#identity-search", user)
    rows = page.locator("#users-table tbody tr")
    assert rows.count() == 1
    assert group in rows.locator("td[data-label=Groups]").inner_text()
    screenshot(page, "ui-identities")
    page.fill("#identity-search", "")

    # the server's refusal, beside the form: a second group of the same name
    page.click("#tab-groups")
    page.fill("#new-groups-name", group)
    page.click("#create-groups")
    error = page.locator("#create-groups-error .error")
    error.wait_for()
    again = api.post(f"{SCIM}/Groups", json={"displayName": group})
    assert again.status_code >= 400 and error.inner_text() == again.json()["message"]

    # remove the member, then delete the user (after a confirmation)
    page.locator(f"[data-members='{group}']").click()
    page.locator(f"#members-table [data-remove-member='{user}']").click()
    page.wait_for_selector(f"#members-table tr[data-member='{user}']", state="detached")
    assert _get(api, "Groups", group)["members"] == []  # type: ignore[index]
    page.click("#tab-users")
    seen: list[str] = []
    accept_next_dialog(page, seen)
    page.locator(f"#users-table [data-delete='{user}']").click()
    page.wait_for_selector(f"#users-table tr[data-principal='{user}']", state="detached")
    assert seen and user in seen[0]
    assert _get(api, "Users", user) is None
    assert page_errors[errors_before:] == []
    assert csp_violations[csp_before:] == []


def test_create_a_service_principal_in_a_group(page: Any, api: httpx.Client) -> None:
    name = unique("ui-robot")
    group = unique("ui-robots")
    assert api.post(f"{SCIM}/Groups", json={"displayName": group}).status_code == 201
    sign_in(page, "/ui/#/admin")
    page.click("#tab-sps")
    page.wait_for_selector("#sps-table")
    page.fill("#new-sps-display", name)
    page.fill("#new-sps-groups", group)
    page.click("#create-sps")
    row = page.locator("#sps-table tbody tr", has_text=name)
    row.wait_for()
    listed = [
        sp for sp in api.get(f"{SCIM}/ServicePrincipals").json()["Resources"] if sp["displayName"] == name
    ]
    assert len(listed) == 1
    application_id = listed[0]["applicationId"]
    assert len(application_id) == 36  # a generated UUID
    assert row.get_attribute("data-principal") == application_id
    assert group in [g["display"] for g in listed[0]["groups"]]
    assert group in row.locator("td[data-label=Groups]").inner_text()


def test_deactivate_then_activate_a_user(page: Any, api: httpx.Client, ui_server: Any) -> None:
    """Deactivate on the page: the user's token is refused (401) until Activate on the page."""
    user = create_user(api, unique("ui-paused") + "@example.com")["userName"]
    token = obo_token(api, user_name=user)["token_value"]
    headers = {"Authorization": f"Bearer {token}"}

    def me() -> httpx.Response:
        return httpx.get(f"{ui_server.url}{SCIM}/Me", headers=headers, timeout=30)

    def until(status: int) -> httpx.Response:
        deadline = time.monotonic() + 15  # the server caches a token's caller for a few seconds
        while (resp := me()).status_code != status and time.monotonic() < deadline:
            time.sleep(0.2)
        return resp

    assert me().status_code == 200
    sign_in(page, "/ui/#/endpoints")  # then a fresh #/admin: it lists the user made above
    page.goto("/ui/#/admin")
    page.click("#tab-users")
    page.wait_for_selector(f"#users-table tr[data-principal='{user}']")
    seen: list[str] = []
    accept_next_dialog(page, seen)
    page.locator(f"#users-table [data-active-toggle='{user}']").click()
    row = page.locator(f"#users-table tr[data-principal='{user}']")
    row.locator("td[data-label=Status]", has_text="Inactive").wait_for()
    assert seen and user in seen[0]
    assert _get(api, "Users", user)["active"] is False  # type: ignore[index]
    refused = until(401)
    assert refused.status_code == 401 and "deactivated" in refused.json()["message"]
    toggle = row.locator(f"[data-active-toggle='{user}']")
    assert toggle.inner_text() == "Activate"
    toggle.focus()
    page.keyboard.press("Enter")  # no confirmation to activate
    row.locator("td[data-label=Status] .badge", has_text=re.compile(r"^Active$")).wait_for()
    assert _get(api, "Users", user)["active"] is True  # type: ignore[index]
    assert until(200).json()["userName"] == user


def test_a_user_who_is_not_an_admin_is_told_so(page: Any, api: httpx.Client) -> None:
    user = create_user(api, unique("ui-plain") + "@example.com")["userName"]
    sign_in_as(page, obo_token(api, user_name=user)["token_value"], "/ui/#/admin")
    message = page.locator("#admin-only")
    message.wait_for()
    assert "Only admins" in message.inner_text() and user in message.inner_text()
    assert page.locator("form").count() == 0
    assert page.locator("#users-table").count() == 0
    assert_accessible(page)
    screenshot(page, "ui-identities-user")
    sign_out_to_admin(page, "/ui/#/admin")
    page.wait_for_selector("#users-table")
