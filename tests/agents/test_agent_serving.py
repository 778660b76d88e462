"""Agents served as endpoints (``tests/agents/world.py``): a ``ResponsesAgent``, a ``ChatAgent``
and a ``ChatModel`` queried through ``/invocations`` (plain and streamed), the OpenAI Responses
route with the official ``openai`` client, and ``databricks-sdk``; a client that goes away
mid-stream stops the agent's generator; the endpoints show their agent task; bad bodies are
400s naming the field; a user without permission gets 403."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.agents.world import CHAT, CHAT_MODEL_ENDPOINT, LLM, RESPONSES, World
from tests.serverproc import ADMIN_TOKEN

pytestmark = pytest.mark.timeout(300)


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


def sse_data(text: str) -> list[Any]:
    """The ``data:`` payloads of a server-sent events body (``[DONE]`` as the string)."""
    out: list[Any] = []
    for line in text.splitlines():
        if line.startswith("data: "):
            data = line[len("data: ") :]
            out.append(data if data == "[DONE]" else orjson.loads(data))
    return out


def openai_client(world: World, token: str = ADMIN_TOKEN) -> Any:
    import openai

    return openai.OpenAI(base_url=f"{world.url}/serving-endpoints", api_key=token, max_retries=0)


def wait_marker(path: Path, timeout: float = 15.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text():
            return path.read_text()
        time.sleep(0.05)
    raise AssertionError(f"the agent did not write {path.name} within {timeout} s")


# ---- /invocations ------------------------------------------------------------------------------
def test_a_responses_agent_answers_invocations_with_its_output_items(world: World) -> None:
    r = world.invoke(RESPONSES, {"input": user("hello world")})
    assert r.status_code == 200, r.text
    assert r.headers["served-model-name"] == "agent"
    answer = r.json()
    assert answer["object"] == "response"
    [item] = answer["output"]
    assert item["type"] == "message" and item["role"] == "assistant"
    assert item["content"][0] == {"type": "output_text", "text": "echo: hello world", "annotations": []}
    assert answer["custom_outputs"] == {"inputs": 1}


def test_the_agent_context_reaches_the_tool_which_calls_another_endpoint(world: World) -> None:
    r = world.invoke(RESPONSES, {"input": user("ping"), "custom_inputs": {"use_tool": True}})
    assert r.status_code == 200, r.text
    assert r.json()["output"][0]["content"][0]["text"] == "echo: ping | tool: You said: ping"


def test_a_responses_agent_streams_its_events_on_invocations(world: World) -> None:
    r = world.invoke(RESPONSES, {"input": user("one two three"), "stream": True})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/event-stream")
    events = sse_data(r.text)
    assert events[-1] == "[DONE]"
    deltas = [e for e in events[:-1] if e["type"] == "response.output_text.delta"]
    assert "".join(e["delta"] for e in deltas) == "echo: one two three"
    assert len(deltas) == 4  # one per word
    done = events[-2]
    assert done["type"] == "response.output_item.done"
    assert done["item"]["content"][0]["text"] == "echo: one two three"


def test_a_chat_agent_answers_invocations_with_messages(world: World) -> None:
    r = world.invoke(CHAT, {"messages": user("hi there"), "custom_inputs": {"x": 1}})
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["messages"] == [{"role": "assistant", "content": "echo: hi there", "id": "msg-1"}]
    assert answer["custom_outputs"] == {"inputs": 1}


def test_a_chat_agent_streams_its_chunks_on_invocations(world: World) -> None:
    r = world.invoke(CHAT, {"messages": user("a b"), "stream": True})
    assert r.status_code == 200, r.text
    events = sse_data(r.text)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert all(set(c) == {"delta"} for c in chunks)
    assert "".join(c["delta"]["content"] for c in chunks) == "echo: a b"


def test_a_chat_model_answers_chat_completions_bodies(world: World) -> None:
    r = world.invoke(CHAT_MODEL_ENDPOINT, {"messages": user("old style"), "temperature": 0.1})
    assert r.status_code == 200, r.text
    [choice] = r.json()["choices"]
    assert choice["message"] == {"role": "assistant", "content": "echo: old style"}
    assert choice["finish_reason"] == "stop"
    r = world.invoke(
        CHAT_MODEL_ENDPOINT, {"messages": user("with tool"), "custom_inputs": {"use_tool": True}}
    )
    assert r.json()["choices"][0]["message"]["content"] == "echo: with tool | tool: You said: with tool"


def test_a_chat_model_streams_chat_completion_chunks(world: World) -> None:
    r = world.invoke(CHAT_MODEL_ENDPOINT, {"messages": user("x y"), "stream": True})
    assert r.status_code == 200, r.text
    events = sse_data(r.text)
    assert events[-1] == "[DONE]"
    assert all(e["object"] == "chat.completion.chunk" for e in events[:-1])
    assert "".join(e["choices"][0]["delta"]["content"] for e in events[:-1]) == "echo: x y"


def test_requests_to_one_agent_replica_run_at_once(world: World) -> None:
    from concurrent.futures import ThreadPoolExecutor

    # Each stream sleeps 0.4 s before each of its 6 events (2.4 s); one after the other: 4.8 s.
    body = {"input": user("a b c d e"), "stream": True, "custom_inputs": {"sleep_ms": 400}}
    started = time.monotonic()
    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(lambda _: world.invoke(RESPONSES, body), range(2)))
    elapsed = time.monotonic() - started
    assert [a.status_code for a in answers] == [200, 200]
    assert elapsed < 4.0, f"two streams took {elapsed:.2f} s: the agent ran them one after the other"


# ---- the Responses route with the official openai client ---------------------------------------
def test_the_openai_client_creates_a_response_from_a_string_input(world: World) -> None:
    response = openai_client(world).responses.create(model=RESPONSES, input="hello agent")
    assert response.object == "response"
    assert response.status == "completed"
    assert response.model == RESPONSES
    assert response.id.startswith("resp_")
    assert response.output_text == "echo: hello agent"
    message = response.output[0]
    assert message.type == "message" and message.role == "assistant"


def test_the_openai_client_sends_items_and_instructions(world: World) -> None:
    items = [
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "echo: first"},
        {"role": "user", "content": [{"type": "input_text", "text": "second"}]},
    ]
    response = openai_client(world).responses.create(
        model=RESPONSES, input=items, instructions="Be brief.", extra_body={"custom_inputs": {"k": "v"}}
    )
    assert response.output_text == "echo: second"
    # The system message from the instructions comes first: four input items.
    assert response.model_extra is not None and response.model_extra["custom_outputs"] == {"inputs": 4}


def test_the_openai_client_streams_the_responses_event_sequence(world: World) -> None:
    with openai_client(world).responses.create(model=RESPONSES, input="stream me", stream=True) as stream:
        events = list(stream)
    types = [e.type for e in events]
    assert types[:2] == ["response.created", "response.in_progress"]
    assert types[2:4] == ["response.output_item.added", "response.content_part.added"]
    assert types[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert "".join(deltas) == "echo: stream me"
    completed = events[-1].response
    assert completed.status == "completed" and completed.output_text == "echo: stream me"


def test_the_openai_stream_helper_builds_the_final_response(world: World) -> None:
    with openai_client(world).responses.stream(model=RESPONSES, input="helper") as stream:
        text = "".join(e.delta for e in stream if e.type == "response.output_text.delta")
        final = stream.get_final_response()
    assert text == "echo: helper"
    assert final.output_text == "echo: helper" and final.status == "completed"


# ---- databricks-sdk ----------------------------------------------------------------------------
def test_databricks_sdk_queries_both_agents(world: World) -> None:
    from databricks.sdk import WorkspaceClient
    from databricks.sdk.service.serving import ChatMessage, ChatMessageRole

    ws = WorkspaceClient(host=world.url, token=ADMIN_TOKEN)
    # The SDK's QueryEndpointResponse has no field for an agent's output: the query succeeds and
    # names the entity that answered; the answer itself is read through the SDK's OpenAI client
    # and its raw HTTP call.
    got = ws.serving_endpoints.query(RESPONSES, input=user("from the sdk"))
    assert got.served_model_name == "agent"
    got = ws.serving_endpoints.query(
        CHAT, messages=[ChatMessage(role=ChatMessageRole.USER, content="sdk chat")]
    )
    assert got.served_model_name == "agent"
    raw = ws.api_client.do(
        "POST", f"/serving-endpoints/{CHAT}/invocations", body={"messages": user("sdk chat")}
    )
    assert isinstance(raw, dict) and raw["messages"][0]["content"] == "echo: sdk chat"
    response = ws.serving_endpoints.get_open_ai_client().responses.create(model=RESPONSES, input="via sdk")
    assert response.output_text == "echo: via sdk"


# ---- a client that goes away -------------------------------------------------------------------
def test_a_client_leaving_mid_stream_closes_the_agents_generator(world: World) -> None:
    marker = world.marker("responses-closed")
    body = {
        "input": user("w1 w2 w3 w4 w5 w6 w7 w8 w9 w10 w11 w12"),
        "stream": True,
        "custom_inputs": {"sleep_ms": 400, "marker": str(marker)},
    }
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    with (
        httpx.Client(base_url=world.url, headers=headers, timeout=30) as client,
        client.stream("POST", f"/serving-endpoints/{RESPONSES}/invocations", json=body) as r,
    ):
        assert r.status_code == 200
        lines = r.iter_lines()
        first = next(line for line in lines if line.startswith("data: "))
        assert orjson.loads(first[6:])["delta"] == "echo:"
    # The stream's 13 events take over 5 s; the agent stops at its next event instead.
    assert wait_marker(marker, timeout=5.0) == "closed"


def test_a_chat_agent_stream_closed_early_closes_its_generator(world: World) -> None:
    marker = world.marker("chat-closed")
    body = {
        "messages": user("a b c d e f g h i j"),
        "stream": True,
        "custom_inputs": {"sleep_ms": 400, "marker": str(marker)},
    }
    with world.admin.stream("POST", f"/serving-endpoints/{CHAT}/invocations", json=body) as r:
        assert r.status_code == 200
        next(line for line in r.iter_lines() if line.startswith("data: "))
    assert wait_marker(marker, timeout=5.0) == "closed"


def test_an_openai_stream_closed_early_closes_the_agents_generator(world: World) -> None:
    marker = world.marker("openai-closed")
    with openai_client(world).responses.create(
        model=RESPONSES,
        input="a b c d e f g h i j",
        stream=True,
        extra_body={"custom_inputs": {"sleep_ms": 400, "marker": str(marker)}},
    ) as stream:
        assert next(iter(stream)).type == "response.created"
    assert wait_marker(marker, timeout=5.0) == "closed"


def test_a_stream_read_to_its_end_finishes_the_generator(world: World) -> None:
    marker = world.marker("finished")
    with openai_client(world).responses.create(
        model=RESPONSES,
        input="to the end",
        stream=True,
        extra_body={"custom_inputs": {"marker": str(marker)}},
    ) as stream:
        assert list(stream)[-1].type == "response.completed"
    assert wait_marker(marker) == "finished"


# ---- the endpoints' task -----------------------------------------------------------------------
def test_the_endpoints_show_their_agent_task(world: World) -> None:
    for name, task in (
        (RESPONSES, "agent/v1/responses"),
        (CHAT, "agent/v2/chat"),
        (CHAT_MODEL_ENDPOINT, "agent/v1/chat"),
    ):
        got = world.admin.get(f"/api/2.0/serving-endpoints/{name}").json()
        assert got["task"] == task
        assert got["config"]["served_entities"][0]["agent_task"] == task
    listed = {e["name"]: e for e in world.admin.get("/api/2.0/serving-endpoints").json()["endpoints"]}
    assert listed[RESPONSES]["task"] == "agent/v1/responses"
    assert listed[LLM]["task"] == "llm/v1/chat"


# ---- refusals ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "body", "says"),
    [
        (RESPONSES, {"messages": user("x")}, "needs 'input'"),
        (CHAT, {"input": user("x")}, "needs 'messages'"),
        (RESPONSES, {"input": []}, "'input' must be a non-empty list"),
        (RESPONSES, {"input": user("x"), "stream": "yes"}, "'stream' must be true or false"),
        (RESPONSES, {"input": user("x"), "custom_inputs": [1]}, "'custom_inputs' must be an object"),
        (RESPONSES, {"input": [{"role": "user"}]}, "'input[0].content'"),
        (CHAT, {"messages": [{"role": "user"}]}, "'messages[0]'"),
        (CHAT_MODEL_ENDPOINT, {"input": user("x")}, "needs 'messages'"),
        (CHAT_MODEL_ENDPOINT, {"messages": user("x"), "temperature": "hot"}, "temperature"),
        (RESPONSES, {"input": user("x"), "context": {"conversation_id": 3}}, "'context.conversation_id'"),
    ],
)
def test_bad_agent_bodies_are_400_naming_the_field(
    world: World, name: str, body: dict[str, Any], says: str
) -> None:
    r = world.invoke(name, body)
    assert r.status_code == 400, r.text
    assert r.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert says in r.json()["message"]


def test_the_responses_route_refuses_what_is_not_a_responses_agent(world: World) -> None:
    url = "/serving-endpoints/responses"
    r = world.admin.post(url, json={"model": CHAT, "input": "x"})
    assert r.status_code == 400 and "agent/v2/chat" in r.json()["message"], r.text
    r = world.admin.post(url, json={"model": LLM, "input": "x"})
    assert r.status_code == 400 and "serves llm/v1/chat" in r.json()["message"], r.text
    r = world.admin.post(url, json={"input": "x"})
    assert r.status_code == 400 and "'model'" in r.json()["message"]
    r = world.admin.post(url, json={"model": RESPONSES, "input": 3})
    assert r.status_code == 400 and "'input'" in r.json()["message"]
    r = world.admin.post(url, json={"model": RESPONSES, "input": "x", "previous_response_id": "resp_1"})
    assert r.status_code == 400 and "previous_response_id" in r.json()["message"]
    r = world.admin.post(url, json={"model": "ag-missing", "input": "x"})
    assert r.status_code == 404
    r = world.admin.post(
        "/serving-endpoints/chat/completions", json={"model": RESPONSES, "messages": user("x")}
    )
    assert r.status_code == 400 and f"/serving-endpoints/{RESPONSES}/invocations" in r.json()["message"]


def test_a_user_without_permission_gets_403(world: World) -> None:
    r = world.invoke(RESPONSES, {"input": user("x")}, client=world.alice)
    assert r.status_code == 403, r.text
    r = world.alice.post("/serving-endpoints/responses", json={"model": RESPONSES, "input": "x"})
    assert r.status_code == 403, r.text
    import openai

    with pytest.raises(openai.PermissionDeniedError):
        openai_client(world, world.alice_token).responses.create(model=RESPONSES, input="x")
