"""Registered models (#/registry) in chromium: the suite's ``ui-iris-model`` listed with its
version, aliases, who may read it, and the endpoint serving the version beside it (matched by
plain and by ``catalog.schema.name`` names); a grant made on the page is what the permissions API
answers; a user without a grant does not see the model, with one they do."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.browser.conftest import CATALOG_MODEL, MODEL, assert_accessible, screenshot
from tests.console.conftest import sign_in
from tests.console.manage import sign_in_as, sign_out_to_admin
from tests.support.names import unique
from tests.support.principals import create_user, obo_token

pytestmark = pytest.mark.slow

MLFLOW = "/api/2.0/mlflow"
PERMS = "/api/2.0/permissions/registered-models"


def _first_version(api: httpx.Client, name: str) -> str:
    answer = api.get(f"{MLFLOW}/model-versions/search", params={"filter": f"name='{name}'"})
    assert answer.status_code == 200, answer.text
    return str(min(int(v["version"]) for v in answer.json()["model_versions"]))


@pytest.fixture(scope="module")
def serving(api: httpx.Client, registered_model: Any) -> Iterator[tuple[str, str, str]]:
    """An endpoint serving the first version of each suite model (scale to zero: nothing needs to
    answer); ``(endpoint, iris version, fraud version)``."""
    if registered_model.proc.returncode is None:
        registered_model.wait()
    iris, fraud = _first_version(api, MODEL), _first_version(api, CATALOG_MODEL)
    name = unique("ui-models-ep")
    common = {"workload_size": "Small", "scale_to_zero_enabled": True}
    body = {
        "name": name,
        "config": {
            "served_entities": [
                {"name": "iris", "entity_name": MODEL, "entity_version": iris, **common},
                {
                    "name": "fraud",
                    "entity_name": f"main.default.{CATALOG_MODEL}",
                    "entity_version": fraud,
                    **common,
                },
            ],
            "traffic_config": {
                "routes": [
                    {"served_entity_name": "iris", "traffic_percentage": 50},
                    {"served_entity_name": "fraud", "traffic_percentage": 50},
                ]
            },
        },
    }
    created = api.post("/api/2.0/serving-endpoints", json=body)
    assert created.status_code == 200, created.text
    yield name, iris, fraud
    api.delete(f"/api/2.0/serving-endpoints/{name}")


def test_models_with_versions_aliases_and_the_endpoints_serving_them(
    page: Any,
    api: httpx.Client,
    serving: tuple[str, str, str],
    page_errors: list[str],
    csp_violations: list[str],
) -> None:
    endpoint, iris, _fraud = serving
    alias = api.post(
        f"{MLFLOW}/registered-models/alias", json={"name": MODEL, "alias": "champion", "version": iris}
    )
    assert alias.status_code == 200, alias.text
    errors_before, csp_before = len(page_errors), len(csp_violations)
    sign_in(page, "/ui/#/registry")
    row = page.locator(f"#models tr[data-model='{MODEL}']")
    row.wait_for()
    assert row.locator(f"td[data-label='Served by'] a[href='#/endpoints/{endpoint}']").count() == 1
    assert f"champion → v{iris}" in row.locator("td[data-label=Aliases]").inner_text()
    # the catalog name main.default.<model> is the same registered model
    fraud_row = page.locator(f"#models tr[data-model='{CATALOG_MODEL}']")
    assert fraud_row.locator(f"td[data-label='Served by'] [data-endpoint='{endpoint}']").count() == 1
    assert_accessible(page)
    screenshot(page, "ui-models")
    page.fill("#model-search", "iris")
    shown_models = page.locator("#models tbody tr").evaluate_all("rows => rows.map((r) => r.dataset.model)")
    assert shown_models == [MODEL]

    # the model's page: the version, its status and alias, the endpoint beside it
    row.locator("td[data-label=Model] a").click()
    version = page.locator(f"#versions tr[data-version='{iris}']")
    version.wait_for()
    assert page.locator("main h1").inner_text() == MODEL
    assert version.locator("[data-status]").get_attribute("data-status") == "READY"
    assert version.locator("[data-alias]").all_inner_texts() == ["@champion"]
    served = version.locator("td[data-label='Served by'] li")
    assert served.count() == 1
    assert served.get_attribute("data-endpoint") == endpoint
    assert served.inner_text() == f"{endpoint} (iris)"
    assert page.get_attribute("#model-mlflow-link", "href") == f"/mlflow/#/models/{MODEL}"
    versions = api.get(f"{MLFLOW}/model-versions/search", params={"filter": f"name='{MODEL}'"}).json()
    shown = page.locator("#versions tbody tr").evaluate_all("rows => rows.map((r) => r.dataset.version)")
    assert sorted(shown, key=int) == sorted((v["version"] for v in versions["model_versions"]), key=int)

    # who may read it, and a grant made here
    acl = api.get(f"{PERMS}/{MODEL}").json()["access_control_list"]
    assert page.locator("#model-acl tbody tr").count() == len(acl)
    user = create_user(api, unique("ui-model-reader") + "@example.com")["userName"]
    page.fill("#model-grant-who", user)
    page.select_option("#model-grant-level", "CAN_READ")
    page.click("#model-grant")
    page.wait_for_selector(f"#model-acl tr[data-principal='{user}']")
    granted = [
        a for a in api.get(f"{PERMS}/{MODEL}").json()["access_control_list"] if a.get("user_name") == user
    ]
    assert [p["permission_level"] for p in granted[0]["all_permissions"]] == ["CAN_READ"]
    assert user in page.inner_text("#model-readers")
    assert_accessible(page)
    screenshot(page, "ui-model")

    # the endpoint link leads to the endpoint's page
    served.locator("a").click()
    page.wait_for_url(f"**/ui/#/endpoints/{endpoint}")
    assert page_errors[errors_before:] == []
    assert csp_violations[csp_before:] == []


def test_a_user_sees_only_the_models_they_may_read(
    page: Any, api: httpx.Client, serving: tuple[str, str, str]
) -> None:
    user = create_user(api, unique("ui-model-user") + "@example.com")["userName"]
    token = obo_token(api, user_name=user)["token_value"]
    sign_in_as(page, token, "/ui/#/registry")
    page.wait_for_selector("#models")
    assert page.locator(f"#models tr[data-model='{MODEL}']").count() == 0
    grant = {"access_control_list": [{"user_name": user, "permission_level": "CAN_READ"}]}
    assert api.patch(f"{PERMS}/{CATALOG_MODEL}", json=grant).status_code == 200
    page.reload()
    row = page.locator(f"#models tr[data-model='{CATALOG_MODEL}']")
    row.wait_for()
    assert page.locator(f"#models tr[data-model='{MODEL}']").count() == 0
    # they may read the model but not see the endpoint: no endpoint is shown for it
    assert row.locator("td[data-label='Served by']").inner_text() == "none"
    row.locator("td[data-label=Model] a").click()
    page.wait_for_selector("#versions")
    # CAN_READ does not let them grant: the server's refusal beside the form
    page.fill("#model-grant-who", user)
    page.click("#model-grant")
    page.locator("#model-grant-error .error").wait_for()
    assert_accessible(page)
    screenshot(page, "ui-model-user")
    sign_out_to_admin(page, "/ui/#/registry")
