"""The Responses route's conversions (``api/data/responses.py``): an OpenAI Responses request to
an agent's body, an agent's answer to the OpenAI ``Response``, and an agent's stream events to
the Responses event sequence, checked against the official ``openai`` package's types."""

from __future__ import annotations

from typing import Any

import openai.types.responses as types
import pytest
from pydantic import TypeAdapter

from modelport.api.data.responses import ResponsesEvents, agent_request, response_object
from modelport.errors import InvalidParameterValue, MalformedRequest, PermissionDenied

EVENT = TypeAdapter(types.ResponseStreamEvent)


def text_item(text: str, item_id: str = "msg-1") -> dict[str, Any]:
    """An output item as ``ResponsesAgent.create_text_output_item`` makes it."""
    return {
        "type": "message",
        "id": item_id,
        "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    }


def test_a_string_input_is_one_user_message_and_instructions_a_system_one() -> None:
    model, body = agent_request({"model": "ag", "input": "hi", "instructions": "Be brief.", "stream": True})
    assert model == "ag"
    assert body == {
        "input": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}],
        "stream": True,
    }


def test_the_fields_the_agent_knows_pass_and_others_are_dropped() -> None:
    data = {
        "model": "ag",
        "input": [{"role": "user", "content": [{"type": "input_text", "text": "x"}]}],
        "custom_inputs": {"k": 1},
        "context": {"conversation_id": "c"},
        "temperature": 0.2,
        "metadata": {"a": "b"},
        "stream": False,
        "service_tier": "auto",  # OpenAI's, not the agent's
    }
    _, body = agent_request(data)
    assert body == {
        "input": data["input"],
        "custom_inputs": {"k": 1},
        "context": {"conversation_id": "c"},
        "temperature": 0.2,
        "metadata": {"a": "b"},
    }


@pytest.mark.parametrize(
    ("data", "error", "says"),
    [
        ([1], MalformedRequest, "JSON object"),
        ({"input": "x"}, InvalidParameterValue, "'model'"),
        ({"model": "ag"}, InvalidParameterValue, "'input' is required"),
        ({"model": "ag", "input": []}, InvalidParameterValue, "'input' is required"),
        ({"model": "ag", "input": ["x"]}, InvalidParameterValue, "'input[0]' must be an object"),
        ({"model": "ag", "input": "x", "instructions": 1}, InvalidParameterValue, "'instructions'"),
        ({"model": "ag", "input": "x", "stream": "y"}, InvalidParameterValue, "'stream'"),
        ({"model": "ag", "input": "x", "metadata": {"a": 1}}, InvalidParameterValue, "'metadata'"),
        (
            {"model": "ag", "input": "x", "previous_response_id": "r"},
            InvalidParameterValue,
            "previous_response_id",
        ),
    ],
)
def test_a_bad_request_is_a_400_naming_the_field(data: Any, error: type[Exception], says: str) -> None:
    with pytest.raises(error) as caught:
        agent_request(data)
    assert says in str(caught.value)


def test_an_agents_answer_is_an_openai_response() -> None:
    answer = {"object": "response", "output": [text_item("hello")], "custom_outputs": {"n": 1}}
    out = response_object(answer, response_id="resp_1", model="ag", created_at=1700000000, request={})
    response = types.Response.model_validate(out)
    assert response.output_text == "hello"
    assert response.status == "completed" and response.id == "resp_1" and response.model == "ag"
    assert out["output"][0]["status"] == "completed"
    assert out["custom_outputs"] == {"n": 1}
    assert "usage" not in out
    usage = {
        "input_tokens": 3,
        "output_tokens": 1,
        "total_tokens": 4,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens_details": {"reasoning_tokens": 0},
    }
    with_usage = response_object(
        {**answer, "usage": usage}, response_id="r", model="ag", created_at=1, request={}
    )
    assert with_usage["usage"] == usage  # the agent's, as it gave it


def agent_stream() -> list[dict[str, Any]]:
    """What the test ``ResponsesAgent`` streams: a delta per word, then the whole item."""
    return [
        {"type": "response.output_text.delta", "item_id": "msg-1", "delta": "echo:"},
        {"type": "response.output_text.delta", "item_id": "msg-1", "delta": " hi"},
        {"type": "response.output_item.done", "item": text_item("echo: hi")},
    ]


def events_of(agent_events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    events = ResponsesEvents(response_id="resp_1", model="ag", created_at=1700000000, request={})
    out = events.start()
    for event in agent_events:
        out += events.feed(event)
    return out + events.finish()


def test_a_text_stream_becomes_the_responses_event_sequence() -> None:
    events = events_of(agent_stream())
    assert [e["type"] for e in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    parsed = [EVENT.validate_python(e) for e in events]  # each one as the openai client parses it
    completed = parsed[-1]
    assert isinstance(completed, types.ResponseCompletedEvent)
    assert completed.response.output_text == "echo: hi"
    assert parsed[6].text == "echo: hi"  # type: ignore[union-attr]


def test_items_without_deltas_are_announced_and_open_items_closed_at_the_end() -> None:
    call = {"type": "function_call", "id": "fc-1", "call_id": "c1", "name": "lookup", "arguments": "{}"}
    events = events_of(
        [
            {"type": "response.output_item.done", "item": call},
            {"type": "response.output_text.delta", "item_id": "msg-2", "delta": "partial"},
        ]
    )
    kinds = [e["type"] for e in events]
    assert kinds[2:4] == ["response.output_item.added", "response.output_item.done"]
    assert kinds[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    for event in events:
        EVENT.validate_python(event)
    final = EVENT.validate_python(events[-1])
    assert [i.type for i in final.response.output] == ["function_call", "message"]  # type: ignore[union-attr]
    assert final.response.output_text == "partial"  # type: ignore[union-attr]


def test_custom_outputs_of_any_event_reach_the_completed_response() -> None:
    stream = agent_stream()
    stream[-1]["custom_outputs"] = {"steps": 2}
    assert events_of(stream)[-1]["response"]["custom_outputs"] == {"steps": 2}


def test_a_failure_mid_stream_is_an_error_event_the_client_raises() -> None:
    events = ResponsesEvents(response_id="r", model="ag", created_at=1, request={})
    events.start()
    error = events.error(PermissionDenied("no access to 'x'"))
    parsed = EVENT.validate_python(error)
    assert isinstance(parsed, types.ResponseErrorEvent)
    assert parsed.code == "PERMISSION_DENIED" and parsed.sequence_number == 2
    assert error["error"]["message"] == "no access to 'x'"  # what openai's Stream raises APIError with
