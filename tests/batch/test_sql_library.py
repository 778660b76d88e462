"""``modelport.sql`` when the server does not answer: a readable error (a 503, which ``ai_query``
tries again), not an exception group from deep inside the HTTP client."""

from __future__ import annotations

import socket

import duckdb
import pytest

import modelport.sql
from modelport.errors import TemporarilyUnavailable
from modelport.sql import _Remote


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nothing listens once the socket is closed


def test_a_request_to_a_server_that_is_gone_is_a_503_naming_it() -> None:
    host = f"http://127.0.0.1:{_closed_port()}"
    remote = _Remote(host, "token", timeout=5)
    with pytest.raises(TemporarilyUnavailable, match=f"No answer from {host} for endpoint 'm'"):
        remote.run(remote.call("m", b"{}"))


def test_a_query_on_a_server_that_is_gone_names_it() -> None:
    host = f"http://127.0.0.1:{_closed_port()}"
    con = duckdb.connect()
    modelport.sql.register(con, host=host, token="token")
    with pytest.raises(TemporarilyUnavailable, match=f"No answer from {host} about endpoint 'm'"):
        modelport.sql.query(con, "SELECT ai_query('m', 'hi')")
