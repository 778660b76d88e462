"""Error frames: what a replica raised comes back on the server as the same error."""

from __future__ import annotations

import orjson
import pytest

from modelport import errors
from modelport.errors import ModelportError
from modelport.runtime import protocol

ALL = [ModelportError, *errors._all_subclasses(ModelportError)]


def decode(frame: bytes) -> tuple[int, int, bytes]:
    length, request_id, kind = protocol.HEADER.unpack(frame[: protocol.HEADER.size])
    payload = frame[protocol.HEADER.size :]
    assert len(payload) == length
    return request_id, kind, payload


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
def test_every_error_comes_back_as_its_class_with_retry_after(cls: type[ModelportError]) -> None:
    request_id, kind, payload = decode(protocol.error_frame(7, cls("it failed", retry_after=4)))
    assert request_id == 7
    assert kind == (protocol.CLIENT_ERROR if cls.status < 500 else protocol.SERVER_ERROR)
    back = protocol.error_of(kind, payload)
    assert type(back) is cls
    assert (back.message, back.status, back.retry_after) == ("it failed", cls.status, 4)


def test_the_payload_is_the_databricks_body_plus_status_and_retry_after() -> None:
    error = errors.TemporarilyUnavailable("The replica is stopping; retry the request.", retry_after=1)
    _, kind, payload = decode(protocol.error_frame(1, error))
    assert kind == protocol.SERVER_ERROR
    assert orjson.loads(payload) == {
        "error_code": "TEMPORARILY_UNAVAILABLE",
        "message": "The replica is stopping; retry the request.",
        "status": 503,
        "retry_after": 1,
    }


def test_no_retry_after_is_left_out_and_comes_back_none() -> None:
    _, kind, payload = decode(protocol.error_frame(1, errors.InvalidParameterValue("bad column")))
    assert "retry_after" not in orjson.loads(payload)
    assert protocol.error_of(kind, payload).retry_after is None


def test_an_unknown_error_code_is_rebuilt_by_its_status() -> None:
    payload = orjson.dumps({"error_code": "SOMETHING_NEW", "message": "m", "status": 503, "retry_after": 2})
    back = protocol.error_of(protocol.SERVER_ERROR, payload)
    assert type(back) is errors.TemporarilyUnavailable
    assert back.retry_after == 2


def test_a_payload_without_status_falls_back_on_the_frame_kind() -> None:
    back = protocol.error_of(protocol.CLIENT_ERROR, b'{"error_code": "NEW", "message": "m"}')
    assert (type(back), back.message) == (errors.BadRequest, "m")
    assert type(protocol.error_of(protocol.SERVER_ERROR, b'{"message": "m"}')) is ModelportError


def test_a_frame_that_is_no_error_or_unreadable_is_a_500_saying_so() -> None:
    unexpected = protocol.error_of(protocol.OK, b"{}")
    assert type(unexpected) is ModelportError
    assert "unexpected frame (kind 10)" in unexpected.message
    unreadable = protocol.error_of(protocol.SERVER_ERROR, b"not json")
    assert type(unreadable) is ModelportError
    assert "unreadable error" in unreadable.message


# ---- the answer trailer (a feature-aware model's lookups) ----------------------------------------


def test_an_answer_without_trailer_is_a_plain_ok() -> None:
    request_id, kind, payload = decode(protocol.ok_frame(3, b'{"predictions":[1]}'))
    assert (request_id, kind, payload) == (3, protocol.OK, b'{"predictions":[1]}')
    assert protocol.answer_of(kind, payload) == (b'{"predictions":[1]}', None)


def test_a_trailer_comes_back_with_its_counts_and_request_beside_the_body() -> None:
    rows = b'{"dataframe_records":[{"user_id":3,"avg":4.5},{"user_id":9,"avg":null}]}'
    trailer = protocol.Trailer({"main.s.users": 1}, rows)
    request_id, kind, payload = decode(protocol.ok_frame(5, b'{"predictions":[0,1]}', trailer))
    assert (request_id, kind) == (5, protocol.OK_TRAILER)
    body, back = protocol.answer_of(kind, payload)
    assert body == b'{"predictions":[0,1]}'
    assert back == protocol.Trailer({"main.s.users": 1}, rows, False)


def test_a_trailer_with_counts_only_has_no_request_and_keeps_the_cut_flag() -> None:
    _, kind, payload = decode(protocol.ok_frame(1, b"{}", protocol.Trailer({"t": 2, "u": 1})))
    assert protocol.answer_of(kind, payload) == (b"{}", protocol.Trailer({"t": 2, "u": 1}, None, False))
    cut = protocol.Trailer({}, b'{"dataframe_records":[{"a":', request_truncated=True)
    _, kind, payload = decode(protocol.ok_frame(1, b"{}", cut))
    assert protocol.answer_of(kind, payload)[1] == cut


def test_an_unreadable_trailer_is_a_500_and_an_error_answer_is_raised() -> None:
    for payload in (
        b"\x00\x00",
        b"\x00\x00\x00\x02\x00\x00\x00\x09{}[1, 2]",
        b"\x00\x00\x00\x00\x00\x00\x00\x02{}",
    ):
        with pytest.raises(ModelportError, match="unreadable trailer") as caught:
            protocol.answer_of(protocol.OK_TRAILER, payload)
        assert type(caught.value) is ModelportError
    _, kind, payload = decode(protocol.error_frame(1, errors.InvalidParameterValue("bad key")))
    with pytest.raises(errors.InvalidParameterValue, match="bad key"):
        protocol.answer_of(kind, payload)
