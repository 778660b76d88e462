"""A provider that accepts the connection and never answers: the external endpoint answers 504
DEADLINE_EXCEEDED after ``--external-timeout``, and with fallbacks the next served entity answers."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.fakes.openai_server import FakeOpenAI
from tests.faults.conftest import create, query
from tests.support.names import unique
from tests.support.providers import custom_chat_entity


class SilentServer:
    """Accepts TCP connections on 127.0.0.1 and holds them open without reading or answering."""

    def __init__(self) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self._sock.settimeout(0.2)
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._sock.getsockname()[1]}"

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            self._held.append(conn)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        for conn in self._held:
            conn.close()
        self._sock.close()


@pytest.fixture(scope="module")
def silent() -> Iterator[SilentServer]:
    server = SilentServer()
    yield server
    server.close()


def test_a_silent_provider_times_out_with_504(http: httpx.Client, silent: SilentServer) -> None:
    name = unique("silent")
    create(http, name, [custom_chat_entity(silent.url)])
    started = time.monotonic()
    r = query(http, name)
    took = time.monotonic() - started
    assert r.status_code == 504, r.text
    assert r.json()["error_code"] == "DEADLINE_EXCEEDED"
    assert 0.9 < took < 5, took  # --external-timeout 1
    print(f"silent provider: {r.status_code} {r.json()['error_code']} after {took:.2f} s")


def test_a_silent_provider_falls_back_to_the_next_entity(
    http: httpx.Client, silent: SilentServer, fake: FakeOpenAI
) -> None:
    name = unique("silent-fallback")
    routes = {
        "routes": [
            {"served_entity_name": "primary", "traffic_percentage": 100},
            {"served_entity_name": "backup", "traffic_percentage": 0},
        ]
    }
    create(
        http,
        name,
        [custom_chat_entity(silent.url, "primary"), custom_chat_entity(fake.url, "backup")],
        config={"traffic_config": routes},
        ai_gateway={"fallback_config": {"enabled": True}},
    )
    started = time.monotonic()
    r = query(http, name)
    took = time.monotonic() - started
    assert r.status_code == 200, r.text
    assert r.headers["served-model-name"] == "backup"
    assert took < 5, took
    print(f"silent provider with fallback: 200 from 'backup' after {took:.2f} s")
