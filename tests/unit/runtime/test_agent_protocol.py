"""The agent additions to the replica protocol (``runtime/protocol.py``): the agent context sent
with AGENT_PREDICT / AGENT_STREAM, and the trace in OK_TRAILER and in a stream's END."""

from __future__ import annotations

import pytest

from modelport.errors import ModelportError
from modelport.runtime import protocol
from modelport.runtime.protocol import AgentContext, Trailer

CONTEXT = AgentContext("http://127.0.0.1:8080", "agent-token-secret", 2, "req-1", "ag-responses")


def frame_of(frame: bytes) -> tuple[int, int, bytes]:
    length, request_id, kind = protocol.HEADER.unpack_from(frame)
    payload = frame[protocol.HEADER.size :]
    assert len(payload) == length
    return request_id, kind, payload


def test_the_context_and_body_travel_in_one_payload() -> None:
    body = b'{"input": [{"role": "user", "content": "hi"}]}'
    assert protocol.unwrap_agent(protocol.agent_payload(CONTEXT, body)) == (CONTEXT, body)
    assert protocol.unwrap_agent(protocol.agent_payload(None, body)) == (None, body)


def test_the_token_is_never_in_the_contexts_repr() -> None:
    assert "agent-token-secret" not in repr(CONTEXT)
    assert "ag-responses" in repr(CONTEXT)


@pytest.mark.parametrize(
    "payload",
    [b"", b"\x00\x00", b"\x00\x00\x00\x09{}", b"\x00\x00\x00\x02{}", b'\x00\x00\x00\x08{"a": 1}'],
)
def test_an_unreadable_agent_payload_is_a_value_error(payload: bytes) -> None:
    with pytest.raises(ValueError):
        protocol.unwrap_agent(payload)


def test_a_trace_travels_after_the_request_in_the_trailer() -> None:
    trailer = Trailer({"t": 1}, b'{"dataframe_records": []}', True, b'{"info": {}, "data": {"spans": []}}')
    request_id, kind, payload = frame_of(protocol.ok_frame(7, b'{"output": []}', trailer))
    assert (request_id, kind) == (7, protocol.OK_TRAILER)
    assert protocol.answer_of(kind, payload) == (b'{"output": []}', trailer)
    alone = Trailer(trace=b'{"x": 1}')
    assert protocol.answer_of(*frame_of(protocol.ok_frame(1, b"{}", alone))[1:]) == (b"{}", alone)


def test_a_trailer_without_a_trace_reads_as_before() -> None:
    trailer = Trailer({}, b"req")
    assert protocol.answer_of(*frame_of(protocol.ok_frame(1, b"{}", trailer))[1:]) == (b"{}", trailer)


def test_a_streams_end_may_carry_the_trailer() -> None:
    _, kind, payload = frame_of(protocol.end_frame(3))
    assert (kind, payload, protocol.end_trailer(payload)) == (protocol.END, b"", None)
    trailer = Trailer(trace=b'{"spans": 2}')
    _, kind, payload = frame_of(protocol.end_frame(3, trailer))
    assert kind == protocol.END and protocol.end_trailer(payload) == trailer


def test_a_trace_length_beyond_the_payload_is_an_unreadable_trailer() -> None:
    payload = frame_of(protocol.ok_frame(1, b"{}", Trailer(trace=b"abc")))[2]
    broken = payload.replace(b'"trace_length":3', b'"trace_length":9')
    with pytest.raises(ModelportError, match="unreadable trailer"):
        protocol.answer_of(protocol.OK_TRAILER, broken)


def test_the_protocol_version_says_agents_are_understood() -> None:
    assert protocol.VERSION >= 3
    assert {protocol.AGENT_PREDICT, protocol.AGENT_STREAM}.isdisjoint(protocol.FINAL)
