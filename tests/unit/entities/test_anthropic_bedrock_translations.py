"""The pure translators of the Anthropic provider and of Bedrock's model families."""

from __future__ import annotations

import pytest

from modelport.entities.providers.anthropic import MessagesStream, chat_answer, messages_request
from modelport.entities.providers.bedrock_formats import family_for
from modelport.errors import BadGateway, InvalidParameterValue

CALL = {"id": "toolu_1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}


def test_tool_results_of_one_turn_merge_into_one_user_turn() -> None:
    body = {
        "messages": [
            {"role": "user", "content": "go"},
            {"role": "assistant", "content": None, "tool_calls": [CALL, {**CALL, "id": "toolu_2"}]},
            {"role": "tool", "tool_call_id": "toolu_1", "content": "one"},
            {"role": "tool", "tool_call_id": "toolu_2", "content": "two"},
        ]
    }
    out = messages_request(body)
    assert out["max_tokens"] == 1024
    assert out["messages"][1] == {
        "role": "assistant",
        "content": [
            {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"a": 1}},
            {"type": "tool_use", "id": "toolu_2", "name": "f", "input": {"a": 1}},
        ],
    }
    assert [b["tool_use_id"] for b in out["messages"][2]["content"]] == ["toolu_1", "toolu_2"]
    assert len(out["messages"]) == 3


def test_invalid_tool_arguments_are_the_callers_mistake() -> None:
    bad = {**CALL, "function": {"name": "f", "arguments": "{not json"}}
    body = {"messages": [{"role": "user", "content": "go"}, {"role": "assistant", "tool_calls": [bad]}]}
    with pytest.raises(InvalidParameterValue, match="not valid JSON"):
        messages_request(body)


def test_answer_skips_thinking_and_counts_cached_input() -> None:
    data = {
        "content": [
            {"type": "thinking", "thinking": "hmm", "signature": "s"},
            {"type": "text", "text": "Hi"},
        ],
        "stop_reason": "refusal",
        "usage": {
            "input_tokens": 3,
            "cache_read_input_tokens": 10,
            "cache_creation_input_tokens": 2,
            "output_tokens": 1,
        },
    }
    choice, usage = chat_answer(data)
    assert choice == {"message": {"role": "assistant", "content": "Hi"}, "finish_reason": "content_filter"}
    assert usage == {"prompt_tokens": 15, "completion_tokens": 1, "total_tokens": 16}


def test_two_tool_blocks_stream_as_tool_calls_0_and_1() -> None:
    stream = MessagesStream("anthropic", "ep", created=1)
    events = [
        {"type": "message_start", "message": {"usage": {"input_tokens": 4, "output_tokens": 1}}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "x"}},
        {
            "type": "content_block_start",
            "index": 1,
            "content_block": {"type": "tool_use", "id": "a", "name": "f"},
        },
        {
            "type": "content_block_delta",
            "index": 1,
            "delta": {"type": "input_json_delta", "partial_json": "{}"},
        },
        {
            "type": "content_block_start",
            "index": 2,
            "content_block": {"type": "tool_use", "id": "b", "name": "g"},
        },
        {
            "type": "content_block_delta",
            "index": 2,
            "delta": {"type": "input_json_delta", "partial_json": "{}"},
        },
        {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 9}},
        {"type": "message_stop"},
    ]
    deltas = [c["choices"][0]["delta"] for e in events for c in stream.feed(e)]
    calls = [d["tool_calls"][0] for d in deltas if "tool_calls" in d]
    assert [(c["index"], c.get("id")) for c in calls] == [(0, "a"), (0, None), (1, "b"), (1, None)]
    [last] = stream.close()
    assert last["choices"][0]["finish_reason"] == "tool_calls"
    assert last["usage"] == {"prompt_tokens": 4, "completion_tokens": 9, "total_tokens": 13}


def test_a_stream_that_ends_before_the_finish_is_a_bad_gateway() -> None:
    stream = MessagesStream("anthropic", "ep")
    stream.feed({"type": "message_start", "message": {}})
    with pytest.raises(BadGateway, match="before the model finished"):
        stream.close()


def test_nova_merges_consecutive_turns_and_titan_writes_a_transcript() -> None:
    body = {
        "messages": [
            {"role": "user", "content": "a"},
            {"role": "user", "content": [{"type": "text", "text": "b"}]},
            {"role": "assistant", "content": "c"},
            {"role": "user", "content": "d"},
        ]
    }
    nova = family_for("amazon-bedrock", "amazon", "amazon.nova-micro-v1:0").chat_body(body)
    assert nova["messages"] == [
        {"role": "user", "content": [{"text": "a\nb"}]},
        {"role": "assistant", "content": [{"text": "c"}]},
        {"role": "user", "content": [{"text": "d"}]},
    ]
    titan = family_for("amazon-bedrock", "AMAZON", "amazon.titan-text-premier-v1:0").chat_body(body)
    assert titan == {"inputText": "User: a\nUser: b\nBot: c\nUser: d\nBot:"}


def test_command_r_history_and_last_user_message() -> None:
    family = family_for("amazon-bedrock", "cohere", "cohere.command-r-plus-v1:0")
    body = {
        "messages": [
            {"role": "user", "content": "a"},
            {"role": "assistant", "content": "b"},
            {"role": "user", "content": "c"},
        ]
    }
    assert family.chat_body(body) == {
        "message": "c",
        "chat_history": [{"role": "USER", "message": "a"}, {"role": "CHATBOT", "message": "b"}],
    }
    with pytest.raises(InvalidParameterValue, match="last message"):
        family.chat_body({"messages": body["messages"][:2]})


def test_family_streams_read_their_own_events() -> None:
    titan = family_for("amazon-bedrock", "amazon", "amazon.titan-text-lite-v1").stream("ep")
    titan.feed(
        {
            "outputText": "x",
            "completionReason": "CONTENT_FILTERED",
            "inputTextTokenCount": 2,
            "totalOutputTextTokenCount": 1,
        }
    )
    assert titan.close()[-1]["choices"][0]["finish_reason"] == "content_filter"

    command = family_for("amazon-bedrock", "cohere", "cohere.command-text-v14").stream("ep")
    chunks = command.feed({"text": "hi", "is_finished": False})
    chunks += command.feed({"is_finished": True, "finish_reason": "MAX_TOKENS"})
    assert [c["choices"][0]["delta"] for c in chunks] == [
        {"role": "assistant", "content": ""},
        {"content": "hi"},
    ]
    assert command.close()[-1]["choices"][0]["finish_reason"] == "length"

    jamba = family_for("amazon-bedrock", "ai21labs", "ai21.jamba-1-5-mini-v1:0").stream("ep")
    call = {"index": 0, "id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    chunks = jamba.feed({"choices": [{"index": 0, "delta": {"role": "assistant", "tool_calls": [call]}}]})
    assert chunks[-1]["choices"][0]["delta"] == {"tool_calls": [call]}


def test_unknown_bedrock_provider_is_refused() -> None:
    with pytest.raises(InvalidParameterValue, match="meta"):
        family_for("amazon-bedrock", "meta", "meta.llama3-8b-instruct-v1:0")
