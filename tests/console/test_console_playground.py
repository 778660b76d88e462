"""The playground's Completions and Embeddings modes, chat tools, "View code" and the
conversations kept in the browser (issue 23, part 6), in chromium against a real server.

Embeddings come from the system all-MiniLM-L6-v2 endpoint (a real ONNX model): the page's
dimension and cosine-similarity matrix are checked against vectors the test asks the API for.
Completions and tool calls go to the loopback OpenAI fake through external-model endpoints
(the fake calls the first tool it is given, and answers "You said: ..." with tool_choice none).
The code the page shows is run as it is shown (curl in bash, Python in a subprocess), with only
DATABRICKS_TOKEN set in its environment. The tests run in file order and build on each other.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest

from tests.browser.conftest import ROOT, assert_accessible, screenshot
from tests.console.conftest import sign_in
from tests.fakes.openai_server import API_KEY
from tests.serverproc import ADMIN_TOKEN
from tests.support.endpoints import wait_settled
from tests.support.names import unique

pytestmark = pytest.mark.slow

EMBED = "modelport-all-minilm-l6-v2"
TEXTS = ["The cat sat on the mat.", "A kitten is resting on a rug.", "Stock markets fell sharply today."]
COMPLETE = unique("pg-complete")
CHAT = unique("pg-chat")
STORE = "modelport.playground"
PARAMS = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


@pytest.fixture(scope="module", autouse=True)
def _cleanup(api: httpx.Client) -> Iterator[None]:
    yield
    for name in (COMPLETE, CHAT):
        api.delete(f"/api/2.0/serving-endpoints/{name}")


@pytest.fixture(scope="module")
def _errors_before(page_errors: list[str], csp_violations: list[str]) -> tuple[int, int]:
    """How many page errors and CSP refusals other modules left (the lists are the package's)."""
    return len(page_errors), len(csp_violations)


def _external(api: httpx.Client, name: str, task: str, url: str) -> None:
    config = {"custom_provider_url": f"{url}/v1", "bearer_token_auth": {"token_plaintext": API_KEY}}
    ext = {"provider": "custom", "name": "m", "task": task, "custom_provider_config": config}
    body = {"name": name, "config": {"served_entities": [{"name": f"{name}-e", "external_model": ext}]}}
    created = api.post("/api/2.0/serving-endpoints", json=body)
    assert created.status_code == 200, created.text
    assert wait_settled(api, name)["state"]["config_update"] == "NOT_UPDATING"


def _reopen_playground(page: Any, wait_for: str) -> None:
    """Open the playground afresh (it lists the endpoints when it opens), until `wait_for` is there."""
    sign_in(page, "/ui/#/endpoints")
    page.wait_for_selector("#endpoints tbody tr")
    page.goto("/ui/#/playground")
    page.wait_for_selector(wait_for, state="attached")


def _focus_order(page: Any, start: str, presses: int) -> list[str]:
    page.focus(start)
    seen = []
    for _ in range(presses):
        page.keyboard.press("Tab")
        seen.append(
            page.evaluate("document.activeElement.id || document.activeElement.dataset.snippet || ''")
        )
    return seen


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def _snippet(page: Any, prefix: str, label: str) -> str:
    page.click(f"#{prefix}-code [data-snippet='{label}']")
    assert page.get_attribute(f"#{prefix}-code [data-snippet='{label}']", "aria-selected") == "true"
    return str(page.locator(f"#{prefix}-code-text").inner_text())


def _run(cmd: list[str]) -> str:
    """Run a shown snippet with only the token in its environment (no other credentials)."""
    env = {
        "PATH": os.environ["PATH"],
        "HOME": os.environ.get("HOME", "/tmp"),
        "DATABRICKS_TOKEN": ADMIN_TOKEN,
    }
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return done.stdout


def test_embeddings_dimension_and_similarity(
    page: Any, api: httpx.Client, page_errors: list[str], _errors_before: tuple[int, int]
) -> None:
    assert wait_settled(api, EMBED, timeout=180)["state"]["ready"] == "READY"
    # the API's own vectors (the first query also starts the model: a while on a busy machine)
    answer = api.post(f"/serving-endpoints/{EMBED}/invocations", json={"input": TEXTS}, timeout=300)
    assert answer.status_code == 200, answer.text
    sign_in(page, "/ui/#/playground")
    page.click("#tab-embeddings")
    assert page.get_attribute("#tab-embeddings", "aria-selected") == "true"
    assert page.locator("#em-form").is_visible() and not page.locator("#pg-form").is_visible()
    page.select_option("#em-endpoint", EMBED)
    page.fill("#em-inputs", "\n".join(TEXTS) + "\n\n")  # blank lines are not inputs
    # the keyboard goes through the form in reading order
    assert _focus_order(page, "#em-endpoint", 3) == ["em-inputs", "em-send", "em-view-code"]
    page.click("#em-send")
    page.wait_for_selector("#em-similarity", timeout=120_000)

    dims = page.locator("#em-vectors .em-dim").all_inner_texts()
    assert dims == ["384", "384", "384"]
    assert page.locator("#em-vectors td[data-label=Text]").all_inner_texts() == TEXTS

    vectors = [np.array(d["embedding"]) for d in sorted(answer.json()["data"], key=lambda d: d["index"])]
    assert [len(v) for v in vectors] == [384, 384, 384]
    for i, v in enumerate(vectors):  # the first values shown are the API's
        shown = page.locator(f"#em-vectors tr[data-index='{i}'] .em-first").inner_text()
        firsts = [float(x) for x in re.findall(r"-?\d+\.\d+", shown)]
        assert len(firsts) == 5 and np.allclose(firsts, v[:5], atol=2e-4), (shown, v[:5])
    for i in range(3):
        for j in range(3):
            cell = page.locator(f"#em-similarity td[data-i='{i}'][data-j='{j}']")
            want = _cosine(vectors[i], vectors[j])
            assert abs(float(cell.get_attribute("data-value")) - want) < 1e-4
            assert abs(float(cell.inner_text()) - want) <= 0.0006, (i, j, cell.inner_text(), want)
    sims = {(i, j): _cosine(vectors[i], vectors[j]) for i in range(3) for j in range(3)}
    assert page.locator("#em-similarity td[data-i='1'][data-j='1']").inner_text() == "1.000"
    assert sims[0, 1] > sims[0, 2] + 0.2  # the two sentences about a cat are the close pair
    assert_accessible(page)
    screenshot(page, "ui-playground-embeddings")
    assert page_errors[_errors_before[0] :] == []


def test_completion_streams(page: Any, api: httpx.Client, fake_openai: Any) -> None:
    _external(api, COMPLETE, "llm/v1/completions", fake_openai.url)
    _reopen_playground(page, f"#cp-endpoint option[value='{COMPLETE}']")
    page.click("#tab-completions")
    page.select_option("#cp-endpoint", COMPLETE)
    page.fill("#cp-prompt", "the quick brown fox jumps")
    page.fill("#cp-max-tokens", "3")
    page.fill("#cp-temperature", "0.2")
    page.locator("#cp-prompt").press("Control+Enter")
    page.wait_for_selector("#cp-output .answer[data-done]")
    box = page.locator("#cp-output .answer")
    assert box.get_attribute("data-done") == "true", box.inner_text()
    assert box.get_attribute("data-streamed") == "true"
    assert box.locator(".content").inner_text() == "Completed: the quick"  # 3 tokens
    stats = box.locator(".stats").inner_text()
    assert "finish: length" in stats and "3 completion tokens" in stats, stats
    sent = fake_openai.last("/v1/completions").json()
    assert sent["prompt"] == "the quick brown fox jumps" and sent["stream"] is True
    assert sent["max_tokens"] == 3 and sent["temperature"] == 0.2
    assert_accessible(page)


def test_chat_tool_definition_and_tool_call(page: Any, api: httpx.Client, fake_openai: Any) -> None:
    _external(api, CHAT, "llm/v1/chat", fake_openai.url)
    _reopen_playground(page, f"#pg-endpoint-0 option[value='{CHAT}']")
    page.click("#tab-chat")
    page.select_option("#pg-endpoint-0", CHAT)
    for i in (1, 2):
        page.select_option(f"#pg-endpoint-{i}", "")
    page.click("#pg-tools-box summary")
    page.click("#pg-add-tool")
    assert page.evaluate("document.activeElement.id") == "pg-tool-1-name"
    assert page.input_value("#pg-tool-1-name") == "get_weather"
    # the parameters are checked as JSON while they are typed, the error beside the field
    page.fill("#pg-tool-1-parameters", '{"type": "object", "properties": {')
    error = page.locator("#pg-tool-1-parameters-error")
    assert error.is_visible() and error.inner_text().startswith("Not valid JSON")
    assert page.get_attribute("#pg-tool-1-parameters", "aria-invalid") == "true"
    page.fill("#pg-prompt", "weather in Paris")
    page.click("#pg-send")
    assert "Tool 1: Not valid JSON" in page.locator("#pg-form .error").inner_text()
    assert page.evaluate("document.activeElement.id") == "pg-tool-1-parameters"
    assert page.locator("#pg-answers .msg").count() == 0  # nothing was sent
    page.fill("#pg-tool-1-parameters", json.dumps(PARAMS))
    assert not error.is_visible()
    page.fill("#pg-tool-1-description", "The weather in a city")
    page.select_option("#pg-tool-choice", "function:get_weather")
    page.click("#pg-send")

    column = page.locator(f"#pg-answers [data-endpoint='{CHAT}']")
    column.locator(".msg.assistant[data-done=true]").wait_for()
    call = column.locator("li.tool-call")
    assert call.count() == 1 and call.locator(".tool-call-name").inner_text() == "get_weather"
    assert json.loads(call.locator(".tool-call-arguments").inner_text()) == {"text": "weather in Paris"}
    assert column.locator(".msg.assistant").get_attribute("data-tool-calls") == "1"
    sent = fake_openai.last("/v1/chat/completions").json()
    assert sent["tools"] == [
        {
            "type": "function",
            "function": {"name": "get_weather", "description": "The weather in a city", "parameters": PARAMS},
        }
    ]
    assert sent["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    call_id = call.get_attribute("data-tool-call")
    assert call_id and call_id.startswith("call_")

    # answer the call with a tool message and go on, this time without tools
    page.select_option("#pg-tool-choice", "none")
    page.fill(f"#pg-tool-result-{call_id}", '{"temperature": 21}')
    column.locator("button.tool-send").click()
    column.locator(".msg.assistant[data-done=true] >> nth=1").wait_for()
    assert column.locator(".msg.tool").inner_text() == 'Tool result (get_weather): {"temperature": 21}'
    assert column.locator(".msg.assistant .content").nth(1).inner_text() == "You said: weather in Paris"
    sent = fake_openai.last("/v1/chat/completions").json()
    assert [m["role"] for m in sent["messages"]] == ["user", "assistant", "tool"]
    assert sent["messages"][1]["tool_calls"][0]["id"] == call_id
    assert sent["messages"][2] == {"role": "tool", "tool_call_id": call_id, "content": '{"temperature": 21}'}
    assert sent["tool_choice"] == "none"
    assert_accessible(page)


def test_view_code_runs_as_shown(page: Any) -> None:
    # the chat so far (tools, the tool call and its answer) plus a new message, as code
    page.fill("#pg-prompt", "and tomorrow?")
    page.click("#pg-view-code")
    assert page.get_attribute("#pg-view-code", "aria-expanded") == "true"
    curl = _snippet(page, "pg", "curl")
    assert "$DATABRICKS_TOKEN" in curl and ADMIN_TOKEN not in curl
    session = next(c["value"] for c in page.context.cookies() if c["name"] == "modelport_session")
    for label in ("curl", "databricks-sdk", "openai", "mlflow.deployments"):
        code = _snippet(page, "pg", label)
        assert session not in code and ADMIN_TOKEN not in code
    answer = json.loads(_run(["bash", "-c", curl]))
    assert answer["choices"][0]["message"]["content"] == "You said: and tomorrow?"  # tool_choice none
    openai_code = _snippet(page, "pg", "openai")
    assert "client.chat.completions.create(" in openai_code and '"tool_call_id"' in openai_code
    answer = json.loads(_run([sys.executable, "-c", openai_code]))
    assert answer["object"] == "chat.completion"
    assert answer["choices"][0]["message"]["content"] == "You said: and tomorrow?"
    # the SDK's query() takes no tools: the snippet sends the body through its API client
    assert "w.api_client.do(" in _snippet(page, "pg", "databricks-sdk")
    _snippet(page, "pg", "openai")
    screenshot(page, "ui-playground-code")

    # embeddings: the same inputs as the page, the same vectors
    page.click("#tab-embeddings")
    page.click("#em-view-code")
    curl = _snippet(page, "em", "curl")
    from_curl = json.loads(_run(["bash", "-c", curl]))
    openai_code = _snippet(page, "em", "openai")
    assert "client.embeddings.create(" in openai_code
    from_openai = json.loads(_run([sys.executable, "-c", openai_code]))
    sdk_code = _snippet(page, "em", "databricks-sdk")
    assert "w.serving_endpoints.query(" in sdk_code
    for got in (from_curl, from_openai):
        vectors = [d["embedding"] for d in sorted(got["data"], key=lambda d: d["index"])]
        assert [len(v) for v in vectors] == [384, 384, 384]
    a, b = np.array(from_curl["data"][0]["embedding"]), np.array(from_openai["data"][0]["embedding"])
    assert _cosine(a, b) > 0.9999
    # the copy button puts the shown code on the clipboard
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.click("#em-code-copy")
    assert page.evaluate("navigator.clipboard.readText()") == sdk_code  # the language shown
    # the keyboard reaches the code: View code, then the language tabs
    assert _focus_order(page, "#em-view-code", 1) == ["curl"]
    assert_accessible(page)


def test_conversation_survives_a_reload_and_goes_with_log_out(
    page: Any, page_errors: list[str], csp_violations: list[str], _errors_before: tuple[int, int]
) -> None:
    errors_before, errors_before_csp = _errors_before
    page.reload()
    page.wait_for_selector("#tab-embeddings[aria-selected=true]")  # the mode is kept
    assert page.input_value("#em-inputs") == "\n".join(TEXTS) + "\n\n"  # as typed
    page.click("#tab-chat")
    assert page.input_value("#pg-endpoint-0") == CHAT
    column = page.locator(f"#pg-answers [data-endpoint='{CHAT}']")
    column.wait_for()
    assert column.locator(".msg.user").all_inner_texts() == ["You: weather in Paris"]
    assert column.locator(".msg.assistant[data-restored]").count() == 2
    assert column.locator(".tool-call-name").inner_text() == "get_weather"
    assert column.locator(".msg.assistant .content").nth(1).inner_text() == "You said: weather in Paris"
    assert column.locator(".msg.tool").count() == 1
    assert page.input_value("#pg-tool-1-parameters") == json.dumps(PARAMS)
    assert page.input_value("#pg-tool-choice") == "none"
    kept = json.loads(page.evaluate(f"localStorage.getItem('{STORE}')"))
    assert kept["mode"] == "chat" and ADMIN_TOKEN not in json.dumps(kept)

    page.click("#logout")
    page.wait_for_url(re.compile(r"#/login$"))
    assert page.evaluate(f"localStorage.getItem('{STORE}')") is None
    page.fill("#token", ADMIN_TOKEN)
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"#/endpoints$"))
    page.goto("/ui/#/playground")
    page.wait_for_selector("#tab-chat[aria-selected=true]")
    assert page.locator("#pg-answers .msg").count() == 0
    assert page.locator("#pg-tools .tool").count() == 0
    assert page.evaluate("Object.keys(localStorage).length") == 0  # nothing until the user acts

    # a new conversation, kept, then cleared with "New conversation" (and not back after a reload)
    page.select_option("#pg-endpoint-0", CHAT)
    page.fill("#pg-prompt", "hello again")
    page.click("#pg-send")
    column.locator(".msg.assistant[data-done=true]").wait_for()
    assert column.locator(".msg.assistant .content").inner_text() == "You said: hello again"
    assert CHAT in json.loads(page.evaluate(f"localStorage.getItem('{STORE}')"))["conversations"]
    page.click("#pg-clear")
    assert column.locator(".msg").count() == 0
    assert json.loads(page.evaluate(f"localStorage.getItem('{STORE}')"))["conversations"] == {}
    page.reload()
    page.wait_for_selector("#tab-chat[aria-selected=true]")
    assert page.input_value("#pg-endpoint-0") == CHAT
    assert page.locator("#pg-answers .msg").count() == 0
    assert page_errors[errors_before:] == [] and csp_violations[errors_before_csp:] == []
