"""A loopback webhook receiver for tests: a tiny ``http.server`` on a thread that records every
POST (path, headers, JSON body) and answers with the codes it is told to, in order (200 after
them; 0 means "answer 200 after a second", a slow receiver)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson

__all__ = ["Received", "WebhookReceiver", "webhook_receiver"]


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class WebhookReceiver:
    url: str
    answers: list[int] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)

    def posts(self, path: str) -> list[Any]:
        """The bodies POSTed to ``path``, oldest first."""
        return [r.body for r in self.received if r.path == path]


@contextmanager
def webhook_receiver() -> Iterator[WebhookReceiver]:
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with lock:
                receiver.received.append(Received(self.path, dict(self.headers), orjson.loads(raw)))
                code = receiver.answers.pop(0) if receiver.answers else 200
            if code == 0:
                time.sleep(1.0)
                code = 200
            self.send_response(code)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads, server.block_on_close = True, False  # a slow answer does not hold the end
    receiver = WebhookReceiver(f"http://127.0.0.1:{server.server_address[1]}")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
