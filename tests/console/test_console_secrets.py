"""Secret scopes (#/secrets) in chromium: a scope and a secret made on the page are stored (the
value read back through the API as the admin) while the page never shows a value; ACL changes
made on the page are what the API answers; deleting keys and scopes; a reader's view."""

from __future__ import annotations

import base64
import re
import uuid
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

S = "/api/2.0/secrets"


def _value(api: httpx.Client, scope: str, key: str) -> str:
    answer = api.get(f"{S}/get", params={"scope": scope, "key": key})
    assert answer.status_code == 200, answer.text
    return base64.b64decode(answer.json()["value"]).decode()


def _acl(api: httpx.Client, scope: str, principal: str) -> str | None:
    answer = api.get(f"{S}/acls/get", params={"scope": scope, "principal": principal})
    if answer.status_code == 404:
        return None
    assert answer.status_code == 200, answer.text
    return str(answer.json()["permission"])


def _inputs(page: Any) -> list[str]:
    return list(page.evaluate("[...document.querySelectorAll('input, textarea')].map((el) => el.value)"))


def test_scope_key_and_acl_made_on_the_page(
    page: Any, api: httpx.Client, page_errors: list[str], csp_violations: list[str]
) -> None:
    scope = unique("ui-scope")
    key = "openai_key"
    secret = f"sk-{uuid.uuid4().hex}"
    reader = create_user(api, unique("ui-secret-reader") + "@example.com")["userName"]
    errors_before, csp_before = len(page_errors), len(csp_violations)
    sign_in(page, "/ui/#/secrets")
    page.wait_for_selector("#scopes")

    # a scope, from the keyboard
    page.focus("#scope-name")
    page.keyboard.type(scope)
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(rf"#/secrets/{re.escape(scope)}$"))
    page.wait_for_selector(f"[data-scope-detail='{scope}']")
    assert scope in [s["name"] for s in api.get(f"{S}/scopes/list").json()["scopes"]]
    assert page.locator(f"#scopes tr[data-scope='{scope}']").count() == 1

    # a secret: the value goes in a password field, is stored, and is emptied at once
    assert page.get_attribute("#secret-value", "type") == "password"
    page.fill("#secret-key", key)
    page.fill("#secret-value", secret)
    page.keyboard.press("Enter")
    row = page.locator(f"#secret-keys tr[data-key='{key}']")
    row.wait_for()
    assert _value(api, scope, key) == secret
    assert page.input_value("#secret-value") == ""
    assert re.search(r"\d", row.locator("td[data-label='Last updated']").inner_text())
    assert secret not in page.content() and secret not in _inputs(page)
    page.reload()
    row.wait_for()
    assert secret not in page.content() and secret not in _inputs(page)
    assert_accessible(page)

    # ACLs: grant READ, change it to WRITE, a principal that does not exist, then remove
    page.fill("#acl-principal", reader)
    page.select_option("#acl-permission", "READ")
    page.click("#acl-put")
    page.wait_for_selector(f"#scope-acls tr[data-principal='{reader}'] [data-permission=READ]")
    assert _acl(api, scope, reader) == "READ"
    page.fill("#acl-principal", reader)
    page.select_option("#acl-permission", "WRITE")
    page.click("#acl-put")
    page.wait_for_selector(f"#scope-acls tr[data-principal='{reader}'] [data-permission=WRITE]")
    assert _acl(api, scope, reader) == "WRITE"
    screenshot(page, "ui-secrets")
    page.fill("#acl-principal", "nobody-" + uuid.uuid4().hex[:6])
    page.click("#acl-put")
    error = page.locator("#acl-put-error .error")
    error.wait_for()
    assert "no user, group or service principal named" in error.inner_text()
    seen: list[str] = []
    accept_next_dialog(page, seen)
    page.click(f"#scope-acls [data-delete-acl='{reader}']")
    page.wait_for_selector(f"#scope-acls tr[data-principal='{reader}']", state="detached")
    assert _acl(api, scope, reader) is None and reader in seen[0]

    # delete the key, then the scope
    accept_next_dialog(page)
    page.click(f"#secret-keys [data-delete-key='{key}']")
    row.wait_for(state="detached")
    assert api.get(f"{S}/list", params={"scope": scope}).json().get("secrets", []) == []
    accept_next_dialog(page)
    page.click(f"#scopes [data-delete-scope='{scope}']")
    page.wait_for_url(re.compile(r"#/secrets$"))
    page.wait_for_selector(f"#scopes tr[data-scope='{scope}']", state="detached")
    assert scope not in [s["name"] for s in api.get(f"{S}/scopes/list").json()["scopes"]]
    assert page_errors[errors_before:] == []
    assert csp_violations[csp_before:] == []


def test_a_reader_sees_key_names_but_not_the_acls(
    page: Any, api: httpx.Client, ui_server: ServerProcess
) -> None:
    scope = unique("ui-scope-read")
    secret = f"pw-{uuid.uuid4().hex}"
    user = create_user(api, unique("ui-scope-user") + "@example.com")["userName"]
    assert api.post(f"{S}/scopes/create", json={"scope": scope}).status_code == 200
    assert (
        api.post(f"{S}/put", json={"scope": scope, "key": "db_password", "string_value": secret}).status_code
        == 200
    )
    assert (
        api.post(f"{S}/acls/put", json={"scope": scope, "principal": user, "permission": "READ"}).status_code
        == 200
    )
    sign_in_as(page, obo_token(api, user_name=user)["token_value"], f"/ui/#/secrets/{scope}")
    page.wait_for_selector("#secret-keys tr[data-key=db_password]")
    error = page.locator("#acl-error .error")
    error.wait_for()
    refused = httpx.get(
        f"{ui_server.url}{S}/acls/list",
        params={"scope": scope},
        headers={"Authorization": f"Bearer {obo_token(api, user_name=user)['token_value']}"},
    )
    assert refused.status_code == 403 and error.inner_text() == refused.json()["message"]
    assert page.locator("#acl-form").is_hidden()
    assert secret not in page.content()
    # writing needs WRITE: the refusal is shown beside the form
    page.fill("#secret-key", "db_password")
    page.fill("#secret-value", "overwritten")
    page.click("#secret-put")
    page.locator("#secret-put-error .error").wait_for()
    assert _value(api, scope, "db_password") == secret
    assert_accessible(page)
    screenshot(page, "ui-secrets-reader")
    sign_out_to_admin(page, "/ui/#/secrets")
