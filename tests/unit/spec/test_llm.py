"""The llm/v1 wire schema (spec/llm.py): request checks and their messages, answer and chunk
builders, and reading the usage back."""

from __future__ import annotations

import base64
import struct
from typing import Any

import orjson
import pytest

from modelport.errors import BadGateway, InvalidParameterValue
from modelport.spec.llm import (
    CHAT,
    COMPLETIONS,
    EMBEDDINGS,
    TASKS,
    LlmRequest,
    Task,
    base64_embeddings,
    chat_chunk,
    chat_response,
    check_request,
    completion_chunk,
    completion_response,
    embeddings_response,
    inputs_of,
    messages_of,
    passthrough,
    prompts_of,
    usage,
    usage_of,
)

HI = [{"role": "user", "content": "hi"}]


def _refused(body: dict[str, Any], task: str, **kw: Any) -> str:
    with pytest.raises(InvalidParameterValue) as caught:
        check_request(body, task, **kw)
    return caught.value.message


# ---- tasks -------------------------------------------------------------------------------------------
def test_tasks_are_their_wire_names() -> None:
    assert (
        TASKS == (CHAT, COMPLETIONS, EMBEDDINGS) == ("llm/v1/chat", "llm/v1/completions", "llm/v1/embeddings")
    )
    assert f"{Task.CHAT}" == "llm/v1/chat" and orjson.dumps(Task.EMBEDDINGS) == b'"llm/v1/embeddings"'


# ---- check_request -------------------------------------------------------------------------------------
def test_a_body_without_its_tasks_field_names_what_it_has() -> None:
    assert _refused({"prompt": "hi", "dataframe_split": {}}, CHAT, endpoint="ep") == (
        "Endpoint 'ep' serves llm/v1/chat: the body needs 'messages' (a list of {role, content} messages); "
        "the body has 'prompt', 'dataframe_split'."
    )
    assert _refused({}, EMBEDDINGS) == (
        "An llm/v1/embeddings request needs 'input' (a string or a list of strings)."
    )


def test_stream_must_be_a_bool_and_embeddings_never_stream() -> None:
    assert _refused({"messages": HI, "stream": "yes"}, CHAT) == "'stream' must be true or false; got 'yes'."
    assert _refused({"input": "x", "stream": True}, EMBEDDINGS) == (
        "Embeddings cannot be streamed: leave out 'stream' or set it to false."
    )
    assert _refused({"messages": HI, "stream_options": "all"}, CHAT) == "'stream_options' must be an object."


def test_encoding_format_is_float_or_base64() -> None:
    assert _refused({"input": "x", "encoding_format": "int8"}, EMBEDDINGS) == (
        "'encoding_format' must be 'float' or 'base64'; got 'int8'."
    )
    assert check_request({"input": "x", "encoding_format": "base64"}, EMBEDDINGS).base64
    assert not check_request({"input": "x", "encoding_format": None}, EMBEDDINGS).base64


def test_what_a_request_asks_for() -> None:
    body = {"messages": HI, "stream": True, "stream_options": {"include_usage": True}}
    assert check_request(body, CHAT) == LlmRequest(CHAT, stream=True, include_usage=True)
    assert check_request({"prompt": "p", "stream": None}, COMPLETIONS) == LlmRequest(COMPLETIONS)


def test_the_input_field_is_only_checked_for_presence() -> None:
    # Its content is the field readers' business (providers and engines read it).
    assert check_request({"messages": [], "stream": False}, CHAT).task == CHAT


def test_check_request_never_changes_the_body() -> None:
    body = {"input": ["a"], "encoding_format": "base64", "stream_options": {"include_usage": True}}
    before = orjson.dumps(body)
    check_request(body, EMBEDDINGS)
    assert orjson.dumps(body) == before


# ---- field readers ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("messages", "message"),
    [
        ([], "A chat request needs 'messages': a non-empty list of {role, content}."),
        ("hi", "A chat request needs 'messages': a non-empty list of {role, content}."),
        ([{"content": "x"}], "messages[0] must be an object with 'role' and 'content'."),
        ([*HI, {"role": 3}], "messages[1] must be an object with 'role' and 'content'."),
    ],
)
def test_messages_must_be_objects_with_a_role(messages: Any, message: str) -> None:
    with pytest.raises(InvalidParameterValue) as caught:
        messages_of({"messages": messages})
    assert caught.value.message == message


def test_prompts_and_inputs_are_a_string_or_a_non_empty_list_of_strings() -> None:
    assert prompts_of({"prompt": "p"}) == ["p"] and inputs_of({"input": ["a", "b"]}) == ["a", "b"]
    with pytest.raises(InvalidParameterValue) as caught:
        prompts_of({"prompt": []})
    assert (
        caught.value.message
        == "A completions request needs 'prompt': a string or a non-empty list of strings."
    )
    with pytest.raises(InvalidParameterValue) as caught:
        inputs_of({"input": ["a", 1]})
    assert (
        caught.value.message
        == "An embeddings request needs 'input': a string or a non-empty list of strings."
    )


def test_passthrough_drops_our_fields_and_merges_extra_params() -> None:
    body = {
        "model": "ep",
        "stream": True,
        "stream_options": {},
        "client_request_id": "r",
        "usage_context": {},
        "messages": HI,
        "encoding_format": "base64",
        "extra_params": {"top_k": 3},
    }
    assert passthrough(body, drop=frozenset({"encoding_format"})) == {"messages": HI, "top_k": 3}


# ---- builders ------------------------------------------------------------------------------------
def test_chat_response_indexes_choices_and_mirrors_the_finish_reason() -> None:
    answer = chat_response(
        "ep", [{"message": {"role": "assistant", "content": "x"}, "finish_reason": "stop"}], usage(2, 3)
    )
    assert answer["object"] == "chat.completion" and answer["id"].startswith("chatcmpl-")
    assert answer["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "x"},
            "finish_reason": "stop",
            "finishReason": "stop",
        }
    ]
    assert answer["usage"] == {"prompt_tokens": 2, "completion_tokens": 3, "total_tokens": 5}


def test_completion_response_and_chunks() -> None:
    answer = completion_response("ep", [("a", "length"), ("b", None)], usage(1, None), id_="cmpl-1")
    assert [(c["index"], c["text"], c["finishReason"]) for c in answer["choices"]] == [
        (0, "a", "length"),
        (1, "b", None),
    ]
    assert completion_chunk("c", "ep", 7, "t", index=2) == {
        "id": "c",
        "object": "text_completion",
        "created": 7,
        "model": "ep",
        "choices": [{"index": 2, "text": "t", "logprobs": None, "finish_reason": None}],
    }
    assert chat_chunk("c", "ep", 7, {}, "stop", usage(1, 1))["usage"]["total_tokens"] == 2


def test_embeddings_response_and_base64() -> None:
    answer = embeddings_response("ep", [[0.5, -1.25], [2.0]], 4)
    assert answer["usage"] == {"prompt_tokens": 4, "total_tokens": 4}
    encoded = base64_embeddings(answer)
    assert encoded is answer
    assert [d["embedding"] for d in answer["data"]] == [
        base64.b64encode(struct.pack("<2f", 0.5, -1.25)).decode(),
        "AAAAQA==",
    ]
    with pytest.raises(BadGateway, match="no embeddings"):
        embeddings_response("ep", [], 0)


# ---- usage_of --------------------------------------------------------------------------------------
def test_usage_of_an_answer_a_chunk_and_their_bytes() -> None:
    answer = chat_response("ep", [], usage(3, 4))
    assert usage_of(answer) == (3, 4, 7)
    assert usage_of(orjson.dumps(answer)) == (3, 4, 7)
    assert usage_of(chat_chunk("c", "ep", 1, {}, "stop", usage(1, 2))) == (1, 2, 3)
    assert usage_of(embeddings_response("ep", [[1.0]], 5)) == (5, 0, 5)


def test_usage_of_what_has_none() -> None:
    assert usage_of(chat_chunk("c", "ep", 1, {"content": "x"})) is None
    assert usage_of({"usage": None}) is None and usage_of({"usage": {}}) is None
    assert usage_of(b'{"predictions": [1, 2]}') is None
    assert usage_of(b'"usage" but not JSON') is None and usage_of(None) is None


def test_usage_of_fills_in_what_is_missing() -> None:
    assert usage_of({"usage": {"total_tokens": 9}}) == (0, 0, 9)
    assert usage_of({"usage": {"prompt_tokens": 2, "completion_tokens": None}}) == (2, 0, 2)
    assert usage_of({"usage": {"prompt_tokens": "many"}}) == (0, 0, 0)
