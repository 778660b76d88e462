"""api/errors.py: the metadata store unreachable is a 503 with Retry-After, other errors are not."""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError, InterfaceError, OperationalError

from modelport.api.errors import translated
from modelport.errors import TemporarilyUnavailable


def test_connection_errors_of_the_store_become_503_with_retry_after() -> None:
    for exc in (
        OperationalError("SELECT 1", {}, Exception("connection refused")),
        InterfaceError("SELECT 1", {}, Exception("connection already closed")),
    ):
        out = translated(exc)
        assert isinstance(out, TemporarilyUnavailable)
        assert (out.status, out.error_code, out.retry_after) == (503, "TEMPORARILY_UNAVAILABLE", 5)
        assert "connection" not in out.message  # the driver's text stays in the log


def test_an_error_raised_from_a_store_error_is_translated_too() -> None:
    try:
        try:
            raise OperationalError("SELECT 1", {}, Exception("gone"))
        except OperationalError as inner:
            raise RuntimeError("wrapped") from inner
    except RuntimeError as exc:
        assert isinstance(translated(exc), TemporarilyUnavailable)


def test_other_errors_are_left_alone() -> None:
    integrity = IntegrityError("INSERT", {}, Exception("duplicate key"))
    assert translated(integrity) is integrity
    bug = ValueError("a bug")
    assert translated(bug) is bug
