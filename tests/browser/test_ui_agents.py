"""The playground's agent tab and image attachments (``ui/static/agents.js``, issue 22) in
chromium on the browser suite's server (after the other browser tests, or alone: it signs in
when it has to).

- ``ui-ag-llm``: an external chat endpoint (provider ``openai``) in front of the suite's OpenAI
  fake, which answers ``"You said: <last user text>"``;
- ``ui-agent``: the agents package's deterministic ``ResponsesAgent``
  (``tests/agents/world.py``'s ``RESPONSES_AGENT``), here with its tool on by default (it asks
  ``ui-ag-llm``) and a pause before each streamed word, served with an inference table.

- ``ui-chat-agent``: the agents package's ``ChatAgent`` (``CHAT_AGENT``), no inference table.

The agent is chatted with from the playground's Agents tab: the request goes to
``/serving-endpoints/responses`` streamed, the answer appears word by word, and its trace (from
the inference table's ``trace`` column) opens as a span tree. The endpoint page's openai snippet
uses the Responses route; the ChatAgent is asked through ``/invocations`` with ``messages``.
Then an image attached in the Chat tab reaches the fake as an ``image_url`` part holding the
file's data URL.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.agents.world import CHAT_AGENT, RESPONSES_AGENT
from tests.browser.conftest import ROOT, assert_accessible, screenshot, wait_until
from tests.browser.test_ui_rollouts import sign_in
from tests.fakes.openai_server import API_KEY, image_urls
from tests.serverproc import ADMIN_TOKEN
from tests.support.endpoints import wait_settled

pytestmark = pytest.mark.slow

AGENT = "ui-agent"
AGENT_MODEL = "ui-agent-model"
CHAT_AGENT_ENDPOINT = "ui-chat-agent"
CHAT_AGENT_MODEL = "ui-chat-agent-model"
LLM = "ui-ag-llm"
TABLE = "main.ui_ag.ui_agent_payload"
#: Each streamed word waits this long, so the page shows a part of the answer before the end.
PAUSE_MS = 400
#: The streamed agent's defaults: its tool on, a pause before each event.
DEFAULTS = f'custom = {{"use_tool": True, "sleep_ms": {PAUSE_MS}, **(request.custom_inputs or {{}})}}'


def agent_code() -> str:
    code = RESPONSES_AGENT.replace("__LLM__", LLM)
    plain = "custom = request.custom_inputs or {}"
    assert code.count(plain) == 2, "the agents package's agent changed"
    # predict_stream only: MLflow calls predict as it logs the agent, where the tool cannot run
    head, _, tail = code.rpartition(plain)
    return head + DEFAULTS + tail


def png(width: int = 48, height: int = 32) -> bytes:
    """A small red PNG."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return len(data).to_bytes(4, "big") + body + zlib.crc32(body).to_bytes(4, "big")

    rows = b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(height))
    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 2, 0, 0, 0])
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


LOG_AGENT = """
import os, sys
import mlflow
os.environ["MLFLOW_TRACKING_TOKEN"] = sys.argv[2]
mlflow.set_tracking_uri(sys.argv[1])
with mlflow.start_run():
    info = mlflow.pyfunc.log_model(name="agent", python_model=sys.argv[3], registered_model_name=sys.argv[4],
                                   pip_requirements=["mlflow"])
print(info.registered_model_version)
"""


def create(api: httpx.Client, body: dict[str, Any]) -> None:
    r = api.post("/api/2.0/serving-endpoints", json=body)
    assert r.status_code == 200, r.text


@pytest.fixture(scope="module")
def llm(api: httpx.Client, fake_openai: Any) -> Iterator[str]:
    """``ui-ag-llm``, ready."""
    openai = {"openai_api_key_plaintext": API_KEY, "openai_api_base": f"{fake_openai.url}/v1"}
    external = {"provider": "openai", "name": "gpt-fake", "task": "llm/v1/chat", "openai_config": openai}
    create(api, {"name": LLM, "config": {"served_entities": [{"name": "gpt", "external_model": external}]}})
    assert wait_settled(api, LLM, timeout=60, poll=0.2)["state"]["ready"] == "READY"
    yield LLM
    api.delete(f"/api/2.0/serving-endpoints/{LLM}")


def serve_agent(api: httpx.Client, url: str, code: Path, model: str, body: dict[str, Any]) -> None:
    """Log the agent ``code`` as version 1 of ``model`` (in a subprocess, which keeps mlflow's
    tracking URI and token out of this test process), create the endpoint ``body`` serving it
    and wait until it is ready."""
    logged = subprocess.run(
        [sys.executable, "-c", LOG_AGENT, url, ADMIN_TOKEN, str(code), model],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert logged.returncode == 0, (logged.stdout + logged.stderr)[-3000:]
    entity = {"name": "agent", "entity_name": model, "entity_version": "1", "workload_size": "Small"}
    create(api, {**body, "config": {"served_entities": [entity]}})
    got = wait_settled(api, body["name"], timeout=240, poll=0.2)
    assert got["state"]["ready"] == "READY", got


@pytest.fixture(scope="module")
def agent(
    api: httpx.Client, ui_server: Any, llm: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """``ui-agent``, ready, with an inference table."""
    code = tmp_path_factory.mktemp("ui-agent") / "agent.py"
    code.write_text(agent_code())
    table = {"catalog_name": "main", "schema_name": "ui_ag", "table_name_prefix": "ui_agent", "enabled": True}
    serve_agent(
        api,
        ui_server.url,
        code,
        AGENT_MODEL,
        {"name": AGENT, "ai_gateway": {"inference_table_config": table}},
    )
    assert api.get(f"/api/2.0/serving-endpoints/{AGENT}").json()["task"] == "agent/v1/responses"
    yield AGENT
    api.delete(f"/api/2.0/serving-endpoints/{AGENT}")


@pytest.fixture(scope="module")
def chat_agent(
    api: httpx.Client, ui_server: Any, llm: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """``ui-chat-agent`` (the agents package's ``ChatAgent``), ready, without an inference table."""
    code = tmp_path_factory.mktemp("ui-chat-agent") / "agent.py"
    code.write_text(CHAT_AGENT.replace("__LLM__", LLM))
    serve_agent(api, ui_server.url, code, CHAT_AGENT_MODEL, {"name": CHAT_AGENT_ENDPOINT})
    assert api.get(f"/api/2.0/serving-endpoints/{CHAT_AGENT_ENDPOINT}").json()["task"] == "agent/v2/chat"
    yield CHAT_AGENT_ENDPOINT
    api.delete(f"/api/2.0/serving-endpoints/{CHAT_AGENT_ENDPOINT}")


@pytest.fixture
def requests_seen(page: Any) -> Iterator[list[Any]]:
    """The requests the page sends during one test (a listener removed after it)."""
    seen: list[Any] = []

    def record(request: Any) -> None:
        seen.append(request)

    page.on("request", record)
    yield seen
    page.remove_listener("request", record)


def requests_to(seen: list[Any], path: str) -> list[Any]:
    """The requests of ``seen`` whose URL ends with ``path``."""
    return [r for r in seen if r.url.endswith(path)]


@pytest.fixture(scope="module")
def earlier(page_errors: list[str], csp_violations: list[str]) -> tuple[int, int]:
    """How many script errors and policy refusals the suite saw before this module."""
    return len(page_errors), len(csp_violations)


def test_agent_answer_streams_in_the_agents_tab(
    page: Any, agent: str, fake_openai: Any, earlier: tuple[int, int], requests_seen: list[Any]
) -> None:
    sign_in(page, "/ui/#/playground")
    page.wait_for_selector("#tab-agents")
    # keyboard: the arrow keys move along the tabs (Chat, Custom models, Agents), round the ends
    page.focus("#tab-chat")
    page.keyboard.press("ArrowLeft")
    assert page.get_attribute("#tab-agents", "aria-selected") == "true"
    assert page.locator("#ag-form").is_visible() and not page.locator("#pg-form").is_visible()
    page.select_option("#ag-endpoint", AGENT)
    assert "Responses agent" in page.locator("#ag-about").inner_text()
    assert TABLE in page.locator("#ag-about").inner_text()
    page.fill("#ag-prompt", "hello agent")
    page.locator("#ag-prompt").press("Control+Enter")

    answer = page.locator("#ag-answers .msg.assistant").last
    expected = "echo: hello agent | tool: You said: hello agent"
    # streamed: a part of the answer shows before the whole of it (a pause before each word)
    seen: set[str] = set()
    deadline = time.monotonic() + 60
    while answer.get_attribute("data-done") is None:
        assert time.monotonic() < deadline, "no answer after 60 s"
        seen.add(answer.locator(".content").inner_text())
        page.wait_for_timeout(50)
    assert answer.get_attribute("data-done") == "true", answer.inner_text()
    assert answer.locator(".content").inner_text() == expected
    partial = {s for s in seen if s and s != expected}
    assert partial and all(expected.startswith(s) for s in partial), seen

    sent = requests_to(requests_seen, "/serving-endpoints/responses")
    assert len(sent) == 1
    body = json.loads(sent[0].post_data)
    assert body == {"model": AGENT, "input": [{"role": "user", "content": "hello agent"}], "stream": True}
    assert "text/event-stream" in sent[0].response().headers["content-type"]
    # the agent's tool asked the LLM endpoint
    assert fake_openai.last("/chat/completions").json()["messages"][-1]["content"] == "hello agent"
    assert answer.get_attribute("data-request-id")
    assert_accessible(page)


def test_second_turn_sends_the_conversation(page: Any, agent: str, requests_seen: list[Any]) -> None:
    page.fill("#ag-prompt", "and again")
    page.click("#ag-send")
    wait_until(
        page, "document.querySelectorAll('#ag-answers .msg.assistant[data-done]').length === 2", 60_000
    )
    assert page.locator("#ag-answers .msg.assistant").nth(1).get_attribute("data-done") == "true"
    sent = requests_to(requests_seen, "/serving-endpoints/responses")
    assert len(sent) == 1
    body = json.loads(sent[0].post_data)
    assert [m["role"] for m in body["input"]] == ["user", "assistant", "user"]
    assert body["input"][1]["content"] == "echo: hello agent | tool: You said: hello agent"
    assert page.locator("#ag-answers .msg.assistant .content").last.inner_text().startswith("echo: and again")


def test_trace_of_an_answer_as_a_span_tree(page: Any, api: httpx.Client, agent: str) -> None:
    first = page.locator("#ag-answers .msg.assistant").first
    request_id = first.get_attribute("data-request-id")
    toggle = first.locator("button.trace-toggle")
    assert toggle.get_attribute("aria-expanded") == "false"
    toggle.focus()
    page.keyboard.press("Enter")
    assert toggle.get_attribute("aria-expanded") == "true"
    box = first.locator(".trace")
    wait_until(page, "document.querySelector('#ag-answers .trace[data-loaded]') !== null", timeout=40_000)
    assert box.locator(".error").count() == 0, box.inner_text()
    assert f"Trace of request {request_id}" in box.inner_text()

    # the same trace as the inference table holds it
    rows = api.post(
        "/api/2.0/modelport/tables/query",
        json={"sql": f"SELECT trace FROM {TABLE} WHERE databricks_request_id = '{request_id}'"},
    ).json()["rows"]
    trace = json.loads(rows[0][0])
    names = [s["name"] for s in trace["data"]["spans"]]
    shown = [n.inner_text() for n in box.locator(".span-name").all()]
    assert sorted(shown) == sorted(names), (shown, names)
    # the replica's root span (named for the endpoint), the agent's predict_stream inside it,
    # and inside that the tool's call to the LLM endpoint (agent_tools)
    nested = " ".join(f"li.span[data-span='{name}']" for name in (AGENT, "predict_stream", f"query {LLM}"))
    assert box.locator(nested).count() == 1, shown
    stream_span = box.locator("li.span[data-span='predict_stream']").first
    assert stream_span.locator(":scope > .span-head .span-duration").inner_text().endswith("ms")
    # inputs and outputs are folded until opened (keyboard: the summary takes Enter)
    inputs = stream_span.locator(":scope > details.span-io").first
    assert inputs.get_attribute("open") is None
    inputs.locator("summary").focus()
    page.keyboard.press("Enter")
    assert inputs.get_attribute("open") is not None
    assert "hello agent" in inputs.locator("pre").inner_text()
    assert_accessible(page)
    screenshot(page, "playground-agent")

    toggle.click()
    assert box.is_hidden() and toggle.get_attribute("aria-expanded") == "false"


def test_endpoint_page_snippet_uses_the_responses_route(page: Any, agent: str) -> None:
    sign_in(page, f"/ui/#/endpoints/{agent}")
    page.wait_for_selector("#snippet")
    labels = page.evaluate("[...document.querySelectorAll('[data-snippet]')].map((b) => b.dataset.snippet)")
    assert "Python (openai)" in labels, (labels, page.locator("#snippet").inner_text())
    page.click("[data-snippet='Python (openai)']")
    snippet = page.locator("#snippet").inner_text()
    assert "client.responses.create(" in snippet, snippet
    assert f'model="{agent}"' in snippet and "input=[" in snippet, snippet


def test_chat_agent_through_invocations(page: Any, chat_agent: str, requests_seen: list[Any]) -> None:
    page.goto("/ui/#/endpoints")  # the playground again, listing the new endpoint
    sign_in(page, "/ui/#/playground")
    page.click("#tab-agents")
    page.select_option("#ag-endpoint", chat_agent)
    about = page.locator("#ag-about").inner_text()
    assert "ChatAgent" in about and "no inference table" in about
    page.fill("#ag-prompt", "hi there")
    page.click("#ag-send")
    page.wait_for_selector("#ag-answers .msg.assistant[data-done]", timeout=60_000)
    answer = page.locator("#ag-answers .msg.assistant").last
    assert answer.get_attribute("data-done") == "true", answer.inner_text()
    assert answer.locator(".content").inner_text() == "echo: hi there"
    sent = requests_to(requests_seen, f"/serving-endpoints/{chat_agent}/invocations")
    assert len(sent) == 1
    assert json.loads(sent[0].post_data) == {
        "messages": [{"role": "user", "content": "hi there"}],
        "stream": True,
    }
    assert "text/event-stream" in sent[0].response().headers["content-type"]
    # no inference table: the trace toggle says where the traces are instead
    answer.locator("button.trace-toggle").click()
    assert "has no inference table" in answer.locator(".trace").inner_text()
    assert "mlflow.search_traces()" in answer.locator(".trace").inner_text()


def test_image_attached_to_a_chat_message_reaches_the_provider(
    page: Any, llm: str, fake_openai: Any, earlier: tuple[int, int]
) -> None:
    sign_in(page, "/ui/#/playground")
    page.click("#tab-chat")
    page.wait_for_selector(f"#pg-endpoint-0 option[value='{LLM}']", state="attached")
    page.select_option("#pg-endpoint-0", LLM)
    for i in (1, 2):
        page.select_option(f"#pg-endpoint-{i}", "")
    # not an image: refused on the page, nothing attached
    page.set_input_files(
        "#pg-image", files=[{"name": "notes.txt", "mimeType": "text/plain", "buffer": b"hi"}]
    )
    assert "notes.txt is not a PNG, JPEG, WebP or GIF image." in page.locator(".attach .error").inner_text()
    assert page.locator("#pg-image-preview img").count() == 0

    image = png()
    page.set_input_files("#pg-image", files=[{"name": "red.png", "mimeType": "image/png", "buffer": image}])
    page.wait_for_selector("#pg-image-preview img")
    assert page.locator(".attach .error").count() == 0
    assert page.get_attribute("#pg-image-preview img", "alt") == "Attached image red.png"
    assert_accessible(page)
    screenshot(page, "playground-image")

    fake_openai.reset()
    page.fill("#pg-prompt", "what colour is this")
    page.click("#pg-send")
    page.wait_for_selector(f"#pg-answers [data-endpoint='{LLM}'] .msg.assistant[data-done]")
    answer = page.locator(f"#pg-answers [data-endpoint='{LLM}'] .msg.assistant").last
    assert answer.get_attribute("data-done") == "true", answer.inner_text()
    # the fake checks image parts as OpenAI does, and answers with a mark for each
    assert answer.locator(".content").inner_text() == "You said: what colour is this [image_url]"
    data_url = "data:image/png;base64," + base64.b64encode(image).decode()
    got = fake_openai.last("/chat/completions").json()
    assert image_urls(got) == [{"url": data_url}]
    assert got["messages"][-1] == {
        "role": "user",
        "content": [
            {"type": "text", "text": "what colour is this"},
            {"type": "image_url", "image_url": {"url": data_url}},
        ],
    }
    # the message shows its image; the attachment went with it
    assert page.locator(f"#pg-answers [data-endpoint='{LLM}'] .msg.user img.msg-thumb").count() == 1
    assert page.locator("#pg-image-preview img").count() == 0
    assert page.input_value("#pg-image") == ""


def test_no_script_errors_or_policy_refusals(
    page: Any, page_errors: list[str], csp_violations: list[str], earlier: tuple[int, int]
) -> None:
    assert page_errors[earlier[0] :] == []
    assert csp_violations[earlier[1] :] == []
