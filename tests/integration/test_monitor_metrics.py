"""The routes the web UI's monitor pages read (``api/control/monitor_metrics.py``) on the session
server: a TimeSeries monitor of a plain Delta table (two 1-day windows, ``x`` moved in the
second), its metrics as series, filtered by column, slice and drift type, the monitors list with
the drifted columns, and who may read them (403 without SELECT on the metrics table, 404 for a
table without a monitor)."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pyarrow as pa
import pytest
from deltalake import write_deltalake

from modelport.tables.names import table_uri
from tests.serverproc import ADMIN_TOKEN, ServerProcess
from tests.support.names import unique
from tests.support.principals import create_user, obo_token

TABLE = "main.mm.readings"
DRIFT = "main.mm_out.readings_drift_metrics"
PROFILE = "main.mm_out.readings_profile_metrics"
MONITOR = f"/api/2.1/unity-catalog/tables/{TABLE}/monitor"
METRICS = "/api/2.0/modelport/monitors/metrics"
N = 300


def _rows(answer: dict[str, Any]) -> list[dict[str, Any]]:
    return [dict(zip(answer["columns"], row, strict=True)) for row in answer["rows"]]


@pytest.fixture(scope="module")
def days(server: ServerProcess) -> Iterator[list[dt.datetime]]:
    """The table, its monitor and one successful refresh; the starts of the two days."""
    http = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=60)
    today = dt.datetime.now(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    starts = [today - dt.timedelta(days=2), today - dt.timedelta(days=1)]
    rng = np.random.default_rng(11)
    parts = []
    for k, start in enumerate(starts):
        parts.append(
            pa.table(
                {
                    "ts": [start + dt.timedelta(seconds=60 * i) for i in range(N)],
                    "x": rng.random(N) + 3.0 * k,
                    "y": rng.random(N),
                    "site": ["a" if i % 3 else "b" for i in range(N)],
                }
            )
        )
    write_deltalake(
        table_uri(str(server.data_dir / "tables"), "main", "mm", "readings"), pa.concat_tables(parts)
    )
    body = {
        "output_schema_name": "main.mm_out",
        "assets_dir": "/Workspace/Users/admin/monitors",
        "time_series": {"timestamp_col": "ts", "granularities": ["1 day"]},
        "slicing_exprs": ["site"],
    }
    r = http.post(MONITOR, json=body)
    assert r.status_code == 200, r.text
    refresh = http.post(f"{MONITOR}/refreshes").json()
    deadline = time.monotonic() + 60
    while (got := http.get(f"{MONITOR}/refreshes/{refresh['refresh_id']}").json())["state"] in (
        "PENDING",
        "RUNNING",
    ):
        assert time.monotonic() < deadline, got
        time.sleep(0.2)
    assert got["state"] == "SUCCESS", got
    yield starts
    http.delete(MONITOR)
    http.close()


def test_drift_and_profile_series(http: httpx.Client, days: list[dt.datetime]) -> None:
    r = http.get(METRICS, params={"table_name": TABLE, "kind": "drift"})
    assert r.status_code == 200, r.text
    drift = r.json()
    assert (drift["metrics_table"], drift["granularity"], drift["granularities"]) == (
        DRIFT,
        "1 day",
        ["1 day"],
    )
    assert drift["slices"] == [{"slice_key": "site", "slice_value": v} for v in ("a", "b")]
    assert not drift["truncated"]
    latest = {row["column_name"]: row for row in _rows(drift) if row["model_id"] is None}
    second = int(days[1].timestamp() * 1000)
    assert {row["window_start_ms"] for row in latest.values()} == {second}
    assert latest["x"]["js_distance"] > 0.5 and latest["x"]["ks_pvalue"] < 1e-6, latest["x"]
    assert latest["y"]["js_distance"] < 0.1 and latest["y"]["ks_pvalue"] > 0.05, latest["y"]
    # one column, one slice: that slice's rows only, fewer records than the whole table
    profile = http.get(
        METRICS,
        params={
            "table_name": TABLE,
            "kind": "profile",
            "column_name": "x",
            "slice_key": "site",
            "slice_value": "b",
        },
    ).json()
    rows = _rows(profile)
    assert [row["column_name"] for row in rows] == ["x", "x"]
    assert [row["window_start_ms"] for row in rows] == [int(d.timestamp() * 1000) for d in days]
    assert all(row["count"] == N // 3 for row in rows), rows
    assert rows[1]["avg"] > rows[0]["avg"] + 2.5
    # no baseline table: no BASELINE rows
    baseline = http.get(METRICS, params={"table_name": TABLE, "drift_type": "BASELINE"}).json()
    assert baseline["rows"] == []


def test_the_list_names_the_drifted_columns(http: httpx.Client, days: list[dt.datetime]) -> None:
    listed = {m["table_name"]: m for m in http.get("/api/2.0/modelport/monitors").json()["monitors"]}
    mine = listed[TABLE]
    assert mine["latest_refresh"]["state"] == "SUCCESS"
    assert mine["drift"] == {
        "window_start_ms": int(days[1].timestamp() * 1000),
        "granularity": "1 day",
        "drifted_columns": ["x"],
    }


@pytest.mark.parametrize(
    ("params", "status", "fragment"),
    [
        ({"kind": "drift"}, 400, "table_name"),
        ({"table_name": TABLE, "kind": "both"}, 400, "kind"),
        ({"table_name": TABLE, "drift_type": "LATEST"}, 400, "drift_type"),
        ({"table_name": TABLE, "granularity": "7 minutes"}, 400, "7 minutes"),
        ({"table_name": TABLE, "slice_key": "site"}, 400, "slice_value"),
        ({"table_name": "main.mm.nothing"}, 404, "main.mm.nothing"),
    ],
)
def test_bad_requests(
    http: httpx.Client, days: list[dt.datetime], params: dict[str, str], status: int, fragment: str
) -> None:
    r = http.get(METRICS, params=params)
    assert r.status_code == status, r.text
    assert fragment in r.json()["message"]


def test_reading_metrics_needs_select_on_both_tables(
    server: ServerProcess, http: httpx.Client, days: list[dt.datetime]
) -> None:
    user = unique("mm-reader")
    create_user(http, user)
    token = obo_token(http, user_name=user)["token_value"]
    grant = {"access_control_list": [{"user_name": user, "permission_level": "SELECT"}]}
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"}) as mine:
        denied = mine.get(METRICS, params={"table_name": TABLE})
        assert denied.status_code == 403 and TABLE in denied.json()["message"], denied.text
        assert TABLE not in {
            m["table_name"] for m in mine.get("/api/2.0/modelport/monitors").json()["monitors"]
        }
        assert http.patch(f"/api/2.0/permissions/tables/{TABLE}", json=grant).status_code == 200
        denied = mine.get(METRICS, params={"table_name": TABLE, "kind": "profile"})
        assert denied.status_code == 403 and PROFILE in denied.json()["message"], denied.text
        listed = {m["table_name"]: m for m in mine.get("/api/2.0/modelport/monitors").json()["monitors"]}
        assert listed[TABLE]["drift"] is None
        assert http.patch(f"/api/2.0/permissions/tables/{PROFILE}", json=grant).status_code == 200
        allowed = mine.get(METRICS, params={"table_name": TABLE, "kind": "profile"})
        assert allowed.status_code == 200 and allowed.json()["rows"], allowed.text
        # the drift table is still out of reach
        assert mine.get(METRICS, params={"table_name": TABLE, "kind": "drift"}).status_code == 403
