"""The Jobs page (OpenAI-Batch bulk jobs) and the SQL box of the inference-tables page, in chromium
on the browser suite's server (after ``test_ui.py``, or alone: it signs in when it has to).

Jobs made through the API against an external chat endpoint on the OpenAI fake: the page lists
one with its counts, owner and result files (read through the session cookie), opens it, and
cancels a slow one with its button. The SQL box runs ``ai_query`` over that endpoint and shows
the rows, and shows the message of a statement that fails.
"""

from __future__ import annotations

import re
import time
from typing import Any

import httpx
import orjson
import pytest

from tests.browser.conftest import assert_accessible, screenshot, wait_until
from tests.fakes.openai_server import API_KEY
from tests.serverproc import ADMIN_TOKEN
from tests.support.providers import create_external

pytestmark = pytest.mark.slow

CHAT = "ui-batch-chat"
BATCHES = "/serving-endpoints/batches"
DONE = ("completed", "failed", "cancelled", "expired")


@pytest.fixture(scope="module")
def earlier_csp_violations(csp_violations: list[str]) -> int:
    """How many violations the suite saw before this module (``test_ui.py`` provokes one)."""
    return len(csp_violations)


@pytest.fixture(scope="module")
def chat(api: httpx.Client, fake_openai: Any) -> str:
    """An external chat endpoint (OpenAI provider) answered by the loopback OpenAI fake."""
    ext = {
        "provider": "openai",
        "name": "gpt-4o-mini",
        "task": "llm/v1/chat",
        "openai_config": {"openai_api_key_plaintext": API_KEY, "openai_api_base": f"{fake_openai.url}/v1"},
    }
    create_external(api, CHAT, ext)
    return CHAT


def sign_in(page: Any, path: str) -> None:
    """Open ``path`` signed in as the admin (signing in first when the page is not)."""
    page.goto(path)
    page.wait_for_selector("main h1")
    if page.url.endswith("#/login"):
        page.fill("#token", ADMIN_TOKEN)
        page.keyboard.press("Enter")
        page.wait_for_url(re.compile(r"#/endpoints$"))
        page.goto(path)


def _line(custom_id: str, text: str, model: str = CHAT) -> dict[str, Any]:
    body = {"model": model, "messages": [{"role": "user", "content": text}]}
    return {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions", "body": body}


def start_batch(api: httpx.Client, lines: list[dict[str, Any]]) -> dict[str, Any]:
    """Upload ``lines`` as a JSONL file and start a job on it (as the admin)."""
    content = b"".join(orjson.dumps(line) + b"\n" for line in lines)
    uploaded = api.post(
        "/serving-endpoints/files", files={"file": ("input.jsonl", content)}, data={"purpose": "batch"}
    )
    assert uploaded.status_code == 200, uploaded.text
    body = {
        "input_file_id": uploaded.json()["id"],
        "endpoint": "/v1/chat/completions",
        "completion_window": "24h",
    }
    created = api.post(BATCHES, json=body)
    assert created.status_code == 200, created.text
    return dict(created.json())


def wait_done(api: httpx.Client, batch_id: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        got = api.get(f"{BATCHES}/{batch_id}").json()
        if got["status"] in DONE:
            return dict(got)
        assert time.monotonic() < deadline, f"batch still {got['status']}"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def finished(api: httpx.Client, chat: str) -> dict[str, Any]:
    """A job of five lines answered and one for an endpoint that does not exist."""
    lines = [_line(f"q-{i}", f"question {i}") for i in range(5)]
    lines.append(_line("lost", "hello", model="no-such-endpoint"))
    done = wait_done(api, start_batch(api, lines)["id"])
    assert done["status"] == "completed", done
    assert done["request_counts"] == {"total": 6, "completed": 5, "failed": 1}
    return done


def test_jobs_page_lists_a_job_with_counts_owner_and_files(
    page: Any, finished: dict[str, Any], earlier_csp_violations: int
) -> None:
    sign_in(page, "/ui/#/endpoints")
    page.click("nav >> text=Jobs")
    page.wait_for_url(re.compile(r"#/jobs$"))
    # The router marks the link after the hash changes (it checks the session first).
    page.wait_for_selector("nav a[data-nav=jobs][aria-current=page]")
    row = page.locator(f"#jobs tr[data-batch='{finished['id']}']")
    row.wait_for()
    assert row.locator("[data-status]").inner_text() == "completed"
    assert row.locator("[data-counts]").get_attribute("data-counts") == "5/1/6"
    assert row.locator("td[data-label=Progress]").inner_text() == "6 of 6 · 1 failed"
    assert row.locator("td[data-label=Owner]").inner_text() == finished["owner"]
    assert row.locator("td[data-label=Endpoint]").inner_text() == "/v1/chat/completions"
    assert row.locator("[data-cancel]").count() == 0  # an ended job has no Cancel button
    # the result links download through the session cookie, as the page's fetches do
    output = page.request.get(row.locator("a[data-file=output]").get_attribute("href"))
    assert output.ok, output.text()
    answers = {line["custom_id"]: line for line in map(orjson.loads, output.body().splitlines())}
    assert sorted(answers) == [f"q-{i}" for i in range(5)]
    assert answers["q-3"]["response"]["body"]["choices"][0]["message"]["content"] == "You said: question 3"
    errors = page.request.get(row.locator("a[data-file=error]").get_attribute("href"))
    assert [orjson.loads(line)["custom_id"] for line in errors.body().splitlines()] == ["lost"]
    assert_accessible(page)


def test_a_job_page_shows_its_progress_and_files(page: Any, finished: dict[str, Any]) -> None:
    page.click(f"#jobs a:has-text('{finished['id']}')")
    page.wait_for_url(re.compile(rf"#/jobs/{finished['id']}$"))
    assert page.locator("h1 [data-status]").inner_text() == "completed"
    counts = {
        c: page.locator(f"#job-counts [data-count={c}]").inner_text()
        for c in ("total", "completed", "failed")
    }
    assert counts == {"total": "6", "completed": "5", "failed": "1"}
    assert page.locator("#job-owner").inner_text() == finished["owner"]
    files = page.locator("#job-files a")
    assert files.all_inner_texts() == ["Output", "Errors"]
    assert (
        files.first.get_attribute("href") == f"/serving-endpoints/files/{finished['output_file_id']}/content"
    )
    assert page.locator("#job-progress-title ~ .job-progress progress").get_attribute("value") == "6"
    assert_accessible(page)
    screenshot(page, "job")
    page.click("text=← Jobs")
    page.wait_for_url(re.compile(r"#/jobs$"))


def test_cancel_a_running_job_from_the_list(
    page: Any, api: httpx.Client, chat: str, fake_openai: Any
) -> None:
    fake_openai.faults.delay = 1.0
    try:
        running = start_batch(api, [_line(f"slow-{i}", f"slow {i}") for i in range(400)])
        button = page.locator(f"#jobs [data-cancel='{running['id']}']")
        button.wait_for(timeout=15_000)  # the list polls every 3 s
        button.click()
        page.wait_for_selector(
            f"#jobs tr[data-batch='{running['id']}'] [data-status=cancelled]", timeout=30_000
        )
    finally:
        fake_openai.faults.delay = 0
    done = api.get(f"{BATCHES}/{running['id']}").json()
    assert done["status"] == "cancelled" and done["request_counts"]["completed"] < 400
    row = page.locator(f"#jobs tr[data-batch='{running['id']}']")
    assert row.locator("[data-cancel]").count() == 0
    completed = done["request_counts"]["completed"]
    wait_until(
        page,
        f"document.querySelector(\"#jobs tr[data-batch='{running['id']}'] [data-counts]\")"
        f".dataset.counts === '{completed}/0/400'",
    )
    assert_accessible(page)
    screenshot(page, "jobs")


def run_sql(page: Any, sql: str) -> None:
    page.fill("#sql-text", sql)
    page.focus("#sql-text")
    page.keyboard.press("Control+Enter")
    wait_until(
        page,
        "!document.getElementById('sql-run').disabled"
        " && document.getElementById('sql-info').textContent !== 'Running…'",
    )


def test_sql_box_runs_ai_query_and_shows_the_rows(page: Any, chat: str) -> None:
    page.click("nav >> text=Inference tables")
    page.wait_for_selector("#sql-form")
    assert page.locator("#sql-text").input_value().startswith("SELECT ")
    run_sql(
        page,
        f"SELECT x, ai_query('{chat}', 'translate ' || x) AS answer\n"
        "FROM (VALUES ('one'), ('two'), ('three')) AS t(x) ORDER BY x",
    )
    assert page.locator("#sql-result .error").count() == 0, page.locator("#sql-result").inner_text()
    assert page.locator("#sql-rows thead th").all_inner_texts() == ["x", "answer"]
    rows = [r.locator("td").all_inner_texts() for r in page.locator("#sql-rows tbody tr").all()]
    assert rows == [
        ["one", "You said: translate one"],
        ["three", "You said: translate three"],
        ["two", "You said: translate two"],
    ]
    assert page.locator("#sql-info").inner_text().startswith("3 row(s)")
    assert_accessible(page)
    page.locator("#sql").scroll_into_view_if_needed()
    screenshot(page, "sql")


def test_sql_box_shows_the_error_of_a_bad_statement(page: Any) -> None:
    run_sql(page, "SELECT * FROM main.nowhere.no_such_table")
    error = page.locator("#sql-result .error")
    assert error.get_attribute("role") == "alert"
    assert "no_such_table" in error.inner_text()
    assert page.locator("#sql-rows").count() == 0
    assert page.locator("#sql-info").inner_text() == ""


def test_jobs_page_lists_a_table_job_with_its_rows_and_output(
    api: httpx.Client, chat: str, page: Any
) -> None:
    """A ``modelport batch run`` job (made through its API) in the Table jobs card."""
    content = b"".join(orjson.dumps({"text": f"row {i}"}) + b"\n" for i in range(3))
    uploaded = api.post(
        "/serving-endpoints/files", files={"file": ("rows.jsonl", content)}, data={"purpose": "user_data"}
    )
    assert uploaded.status_code == 200, uploaded.text
    body = {
        "endpoint": chat,
        "input": {"file_id": uploaded.json()["id"]},
        "output_table": "main.ui.table_job",
    }
    created = api.post("/api/2.0/modelport/batch/jobs", json=body)
    assert created.status_code == 200, created.text
    job_id = created.json()["id"]
    deadline = time.monotonic() + 60
    while api.get(f"/api/2.0/modelport/batch/jobs/{job_id}").json()["status"] != "completed":
        assert time.monotonic() < deadline, "the table job did not complete"
        time.sleep(0.2)
    sign_in(page, "/ui/#/jobs")
    row = page.locator(f"#table-jobs tr[data-table-job='{job_id}']")
    row.wait_for()
    assert row.locator("[data-status]").inner_text() == "completed"
    assert row.locator("td[data-label=Progress]").inner_text().startswith("3 of 3")
    assert row.locator("td[data-label='Output table']").inner_text() == "main.ui.table_job"
    assert row.locator("td[data-label=Input]").inner_text() == "rows.jsonl"
    assert row.locator("[data-cancel]").count() == 0


def test_no_script_errors_or_refusals_on_the_jobs_and_sql_pages(
    page_errors: list[str], csp_violations: list[str], earlier_csp_violations: int
) -> None:
    assert page_errors == []
    assert csp_violations[earlier_csp_violations:] == []
