"""The Monitors pages and the endpoint page's monitor link, in chromium on the browser suite's
server (after the other browser tests, or alone: it signs in when it has to); and the metrics
route the pages read (``api/control/monitor_metrics.py``), with its privileges.

An endpoint (a chat model on the OpenAI fake: no replica) whose inference table gets three
1-hour windows written straight into its Delta files, as ``tests/integration/test_monitors.py``
does: the same distribution in the first two, ``f1`` moved up by 3 in the newest. Labels for
every record (served entity ``a`` answers right, ``b`` wrong), a slicing expression, and a
monitor refreshed through the API before the page opens.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np
import orjson
import pyarrow as pa
import pytest
from deltalake import write_deltalake

from modelport.tables.names import table_uri
from modelport.tables.records import INFERENCE_SCHEMA
from tests.browser.conftest import assert_accessible, screenshot, wait_until
from tests.serverproc import ADMIN_TOKEN, ServerProcess
from tests.support.endpoints import wait_settled
from tests.support.names import unique
from tests.support.principals import create_user, obo_token
from tests.support.providers import custom_chat_entity

pytestmark = pytest.mark.slow

ENDPOINT = "ui-mon"
TABLE = "main.ui_mon.ui_mon_payload"
LABELS = "main.ui_mon.labels"
OUTPUT = "main.ui_mon_metrics"
DRIFT = f"{OUTPUT}.ui_mon_payload_drift_metrics"
MONITOR = f"/api/2.1/unity-catalog/tables/{TABLE}/monitor"
METRICS = "/api/2.0/modelport/monitors/metrics"
FEATURES = ["f0", "f1", "f2", "f3"]
#: Records per window: enough that the unshifted columns stay under the drift thresholds.
N = 400


@dataclass
class World:
    hours: list[dt.datetime]  #: the starts of the three windows, oldest first


def _rows(start: dt.datetime, shift: float, seed: int, prefix: str) -> tuple[pa.Table, list[int]]:
    """``N`` inference-table rows over the hour from ``start`` (f1 + ``shift``) and their labels."""
    rng = np.random.default_rng(seed)
    x = rng.random((N, 4))
    x[:, 1] += shift
    rows: dict[str, list[Any]] = {f.name: [] for f in INFERENCE_SCHEMA}
    labels = []
    for i in range(N):
        moment = start + dt.timedelta(seconds=i * 3000 // N + 60)
        entity = "a" if i % 2 else "b"
        prediction = int(x[i, 0] > 0.5)
        labels.append(prediction if entity == "a" else 1 - prediction)
        values = {
            "client_request_id": f"{prefix}-{i}",
            "databricks_request_id": f"{prefix}-rid-{i}",
            "date": moment.date(),
            "timestamp_ms": int(moment.timestamp() * 1000),
            "status_code": 200,
            "execution_time_ms": 3,
            "request": orjson.dumps(
                {"dataframe_records": [dict(zip(FEATURES, map(float, x[i]), strict=True))]}
            ).decode(),
            "response": orjson.dumps({"predictions": [prediction]}).decode(),
            "served_entity_name": entity,
            "requester": "admin",
        }
        for name, column in rows.items():
            column.append(values.get(name))
    return pa.table(rows, schema=INFERENCE_SCHEMA), labels


def _wait_refresh(api: httpx.Client, refresh_id: int, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        got = api.get(f"{MONITOR}/refreshes/{refresh_id}").json()
        if got["state"] not in ("PENDING", "RUNNING"):
            return dict(got)
        assert time.monotonic() < deadline, got
        time.sleep(0.2)


@pytest.fixture(scope="module")
def world(ui_server: ServerProcess, api: httpx.Client, fake_openai: Any) -> Iterator[World]:
    body = {
        "name": ENDPOINT,
        "config": {"served_entities": [custom_chat_entity(fake_openai.url)]},
        "ai_gateway": {
            "inference_table_config": {
                "catalog_name": "main",
                "schema_name": "ui_mon",
                "table_name_prefix": "ui_mon",
                "enabled": True,
            }
        },
    }
    r = api.post("/api/2.0/serving-endpoints", json=body)
    assert r.status_code == 200, r.text
    wait_settled(api, ENDPOINT)
    root = str(ui_server.data_dir / "tables")
    now = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0)
    hours = [now - dt.timedelta(hours=k) for k in (3, 2, 1)]
    parts = [_rows(hour, 3.0 if k == 2 else 0.0, seed=k + 1, prefix=f"w{k}") for k, hour in enumerate(hours)]
    write_deltalake(
        table_uri(root, "main", "ui_mon", "ui_mon_payload"), pa.concat_tables([p[0] for p in parts])
    )
    keys = [f"w{k}-{i}" for k in range(3) for i in range(N)]
    write_deltalake(
        table_uri(root, "main", "ui_mon", "labels"),
        pa.table({"client_request_id": keys, "label": [v for p in parts for v in p[1]]}),
    )
    monitor = {
        "output_schema_name": OUTPUT,
        "assets_dir": "/Workspace/Users/admin/monitors",
        "inference_log": {
            "problem_type": "PROBLEM_TYPE_CLASSIFICATION",
            "timestamp_col": "timestamp",
            "granularities": ["1 hour", "1 day"],
            "prediction_col": "prediction",
            "model_id_col": "served_entity_name",
            "label_col": "label",
        },
        "labels": {"table_name": LABELS, "key_cols": ["client_request_id"]},
        "slicing_exprs": ["f2 > 0.5"],
        "alerts": [
            {
                "name": "input-drift",
                "table": "drift",
                "metric": "js_distance",
                "column_name": "*",
                "op": ">=",
                "threshold": 0.1,
                "drift_type": "CONSECUTIVE",
                "granularity": "1 hour",
            },
            {"name": "accuracy", "table": "profile", "metric": "accuracy_score", "op": "<", "threshold": 0.0},
        ],
    }
    r = api.post(MONITOR, json=monitor)
    assert r.status_code == 200, r.text
    r = api.post(f"{MONITOR}/refreshes")
    assert r.status_code == 200, r.text
    done = _wait_refresh(api, r.json()["refresh_id"])
    assert done["state"] == "SUCCESS", done
    yield World(hours)
    api.delete(MONITOR)
    api.delete(f"/api/2.0/serving-endpoints/{ENDPOINT}")


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


def _series(page: Any, where: str) -> dict[str, list[float]]:
    """Each line of the chart(s) under ``where``: its name -> its values (a path's ``data-values``),
    after checking that the path draws one point per value."""
    paths = page.evaluate(
        """(where) => [...document.querySelectorAll(`${where} path[data-series]`)].map((p) =>
             [p.dataset.series, p.dataset.values, (p.getAttribute('d').match(/[ML]/g) || []).length,
              Number(p.dataset.points)])""",
        where,
    )
    out = {}
    for name, values, drawn, points in paths:
        numbers = [float(v) for v in values.split(",")] if values else []
        assert drawn == points == len(numbers), (name, drawn, points, numbers)
        out[name] = numbers
    return out


def _days(world: World) -> int:
    return len({h.date() for h in world.hours})


def test_metrics_route_answers_series_and_needs_select(
    ui_server: ServerProcess, api: httpx.Client, world: World
) -> None:
    r = api.get(METRICS, params={"table_name": TABLE, "kind": "drift", "column_name": "f1"})
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["granularity"] == "1 hour" and got["granularities"] == ["1 hour", "1 day"]
    assert got["metrics_table"] == DRIFT
    assert got["slices"] == [
        {"slice_key": "f2 > 0.5", "slice_value": "false"},
        {"slice_key": "f2 > 0.5", "slice_value": "true"},
    ]
    assert set(got["model_ids"]) == {"a", "b"}
    rows = [dict(zip(got["columns"], row, strict=True)) for row in got["rows"]]
    whole = [r for r in rows if r["model_id"] is None]
    # two windows have one before them; the newest is where f1 moved
    assert [r["window_start_ms"] for r in whole] == [int(h.timestamp() * 1000) for h in world.hours[1:]]
    assert whole[0]["js_distance"] < 0.1 < 0.5 < whole[1]["js_distance"], whole
    assert {r["column_name"] for r in rows} == {"f1"}
    bad = api.get(METRICS, params={"table_name": TABLE, "kind": "nope"})
    assert bad.status_code == 400 and "kind" in bad.json()["message"]
    # A user with SELECT on the monitored table but not on the metrics tables: 403 naming it.
    user = unique("mon-reader")
    create_user(api, user)
    token = obo_token(api, user_name=user)["token_value"]
    with httpx.Client(base_url=ui_server.url, headers={"Authorization": f"Bearer {token}"}) as http:
        denied = http.get(METRICS, params={"table_name": TABLE})
        assert denied.status_code == 403, denied.text
        grant = {"access_control_list": [{"user_name": user, "permission_level": "SELECT"}]}
        assert api.patch(f"/api/2.0/permissions/tables/{TABLE}", json=grant).status_code == 200
        denied = http.get(METRICS, params={"table_name": TABLE})
        assert denied.status_code == 403 and DRIFT in denied.json()["message"], denied.text
        listed = {m["table_name"]: m for m in http.get("/api/2.0/modelport/monitors").json()["monitors"]}
        assert listed[TABLE]["drift"] is None  # no SELECT on the drift metrics table
        assert api.patch(f"/api/2.0/permissions/tables/{DRIFT}", json=grant).status_code == 200
        assert http.get(METRICS, params={"table_name": TABLE}).status_code == 200


def test_the_list_shows_status_refresh_and_drifted_columns(
    page: Any, world: World, earlier_csp_violations: int
) -> None:
    sign_in(page, "/ui/#/endpoints")
    page.click("nav >> text=Monitors")
    page.wait_for_url(re.compile(r"#/monitors$"))
    row = page.locator(f"#monitors tr[data-monitor='{TABLE}']")
    row.wait_for()
    assert row.locator("[data-status]").inner_text() == "Active"
    assert row.locator("[data-refresh-state]").inner_text() == "SUCCESS"
    assert row.locator("td[data-label='Drifted columns']").get_attribute("data-drifted") == "1"
    assert row.locator("td[data-label='Drifted columns']").inner_text().startswith("1: f1")
    assert_accessible(page)
    row.locator("a").click()
    page.wait_for_url(re.compile(r"#/monitors/"))


def test_the_monitor_page_charts_drift_profiles_and_quality(page: Any, world: World) -> None:
    page.wait_for_selector("#drift-latest")
    verdicts = page.evaluate(
        "Object.fromEntries([...document.querySelectorAll('#drift-latest tr[data-column]')]"
        ".map((tr) => [tr.dataset.column,"
        " [tr.dataset.drifted, tr.querySelector('td[data-label=Verdict]').innerText]]))"
    )
    assert {c for c in verdicts if c in FEATURES} == set(FEATURES), verdicts
    assert verdicts["f1"][0] == "true" and verdicts["f1"][1].startswith("Drifted"), verdicts
    for column in ("f0", "f2", "f3"):
        assert verdicts[column][0] == "false" and verdicts[column][1].startswith("No drift"), verdicts
    drift = _series(page, "#drift-charts")
    assert all(len(v) == 2 for v in drift.values()) and drift["f1"][1] > 0.5 > drift["f1"][0], drift
    assert page.locator("#drift-charts figure.drifted").count() == 1
    assert page.locator("#drift-charts figure[data-column=f1].drifted").count() == 1
    assert page.locator("#alerts tr[data-alert=input-drift] [data-alert-state]").inner_text() == "Triggered"
    page.select_option("#mon-column", "f1")
    page.select_option("#mon-profile-stat", "avg")
    profile = _series(page, "#profile-chart")
    assert set(profile) == {"All models", "a", "b"} and all(len(v) == 3 for v in profile.values()), profile
    assert profile["All models"][2] > profile["All models"][1] + 2.5, profile  # the shift by 3
    quality = _series(page, "#quality-chart")
    assert page.locator("#mon-quality-stat").input_value() == "accuracy_score"
    assert quality["a"] == [1.0, 1.0, 1.0] and quality["b"] == [0.0, 0.0, 0.0], quality
    # the statistic selector redraws the same windows with another statistic (p-values)
    page.select_option("#mon-drift-stat", "ks_pvalue")
    pvalues = _series(page, "#drift-charts")
    assert pvalues["f1"][1] < 1e-6 < pvalues["f0"][1], pvalues
    page.select_option("#mon-drift-stat", "js_distance")
    assert_accessible(page)


def test_granularity_and_slice_selectors_change_the_series(page: Any, world: World) -> None:
    page.select_option("#mon-profile-stat", "count")
    assert _series(page, "#profile-chart")["All models"] == [N, N, N]
    page.select_option("#mon-slice", label="f2 > 0.5 = true")
    wait_until(page, "document.querySelector('#monitor-status').textContent.includes('f2 > 0.5 = true')")
    sliced = _series(page, "#profile-chart")["All models"]
    assert len(sliced) == 3 and all(0 < c < N for c in sliced), sliced
    page.select_option("#mon-slice", label="Whole table")
    page.select_option("#mon-granularity", "1 day")
    wait_until(page, "document.querySelector('#monitor-status').textContent.includes('1 day, whole table')")
    daily = _series(page, "#profile-chart")["All models"]
    assert len(daily) == _days(world) and sum(daily) == 3 * N, daily
    page.select_option("#mon-granularity", "1 hour")
    wait_until(page, "document.querySelector('#monitor-status').textContent.includes('1 hour, whole table')")
    page.select_option("#mon-drift-type", "BASELINE")
    wait_until(page, "!!document.querySelector('#drift-empty')")  # no baseline table
    page.select_option("#mon-drift-type", "CONSECUTIVE")
    page.wait_for_selector("#drift-latest")


def test_refresh_now_runs_a_refresh(page: Any, world: World) -> None:
    page.focus("#monitor-refresh-now")
    page.keyboard.press("Enter")
    row = page.locator("#refreshes tr[data-refresh='2']")
    row.wait_for()
    deadline = time.monotonic() + 60
    while row.locator("[data-refresh-state]").inner_text() != "SUCCESS":
        assert time.monotonic() < deadline, row.inner_text()
        page.wait_for_timeout(300)
    assert row.locator("td[data-label=Trigger]").inner_text() == "MANUAL"
    page.wait_for_selector("#drift-latest tr[data-column=f1][data-drifted=true]")
    screenshot(page, "monitor")


def test_the_endpoint_page_links_to_its_monitor_and_shows_its_alerts(page: Any, world: World) -> None:
    page.goto(f"/ui/#/endpoints/{ENDPOINT}")
    link = page.locator("#endpoint-monitor .endpoint-monitor-link")
    link.wait_for()
    box = page.locator(f"#endpoint-monitor [data-monitor='{TABLE}']")
    summary = box.locator(".endpoint-monitor-summary").inner_text()
    assert "SUCCESS" in summary and "drifted columns in the newest 1 hour window: f1" in summary, summary
    assert "1 of 2 alert(s) triggered" in summary, summary
    assert box.locator("tr[data-alert=input-drift] [data-alert-state]").inner_text() == "Triggered"
    assert box.locator("tr[data-alert=accuracy] [data-alert-state]").inner_text() == "OK"
    assert "f1" in box.locator("tr[data-alert=input-drift] td[data-label='Breaching rows']").inner_text()
    assert_accessible(page)
    link.click()
    page.wait_for_url(re.compile(r"#/monitors/main\.ui_mon\.ui_mon_payload$"))
    page.wait_for_selector("#drift-latest")


def test_no_script_errors_or_policy_violations(
    page_errors: list[str], csp_violations: list[str], earlier_csp_violations: int
) -> None:
    assert page_errors == []
    assert csp_violations[earlier_csp_violations:] == []
