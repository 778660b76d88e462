"""What the canary tests share (``test_canary.py``, ``test_rollout_restart.py``): a rollout update,
live load in the background, and waits on a rollout's state."""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

from tests.rollouts.world import World, entity


def rollout_update(
    world: World, name: str, *, candidate: int = 3, incumbent: int = 1, **policy: Any
) -> httpx.Response:
    """PUT a config of [incumbent, candidate] whose traffic is all the candidate's, with ``policy``
    as its ``rollout`` block (steps [25, 50, 100] and 2 s steps unless given)."""
    rollout = {
        "steps": [25, 50, 100],
        "step_seconds": 2,
        "evaluation_seconds": 1,
        "max_error_rate": 0.05,
        "min_requests_per_step": 20,
        **policy,
    }
    config = {
        "served_entities": [entity(incumbent), entity(candidate)],
        "traffic_config": {
            "routes": [
                {"served_entity_name": f"v{candidate}", "traffic_percentage": 100},
                {"served_entity_name": f"v{incumbent}", "traffic_percentage": 0},
            ]
        },
        "rollout": rollout,
    }
    return world.admin.put(f"/api/2.0/serving-endpoints/{name}/config", json=config)


def current(world: World, name: str) -> dict[str, Any]:
    r = world.admin.get(f"/api/2.0/serving-endpoints/{name}/rollouts/current")
    assert r.status_code == 200, r.text
    return dict(r.json())


def wait_state(world: World, name: str, *states: str, timeout: float = 60.0, **fields: Any) -> dict[str, Any]:
    """The endpoint's current rollout once its state is one of ``states`` (and ``fields`` match)."""
    deadline = time.monotonic() + timeout
    rollout: dict[str, Any] = {}
    while time.monotonic() < deadline:
        rollout = current(world, name)
        if rollout["state"] in states and all(rollout.get(k) == v for k, v in fields.items()):
            return rollout
        time.sleep(0.2)
    raise AssertionError(f"rollout of {name} not {states} {fields} after {timeout} s: {rollout}")


def events(world: World, name: str, prefix: str = "ROLLOUT_") -> list[dict[str, Any]]:
    """The endpoint's events whose kind starts with ``prefix``, oldest first."""
    r = world.admin.get(f"/api/2.0/serving-endpoints/{name}/events", params={"max_results": 1000})
    assert r.status_code == 200, r.text
    return [e for e in reversed(r.json()["events"]) if e["kind"].startswith(prefix)]


@dataclass
class Sent:
    at: float  # time.time()
    x: float
    status: int
    served: str | None


@dataclass
class Load:
    """Live queries to one endpoint from ``threads`` threads until :meth:`stop`; each one recorded."""

    world: World
    name: str
    threads: int = 3
    pause: float = 0.01
    sent: list[Sent] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _workers: list[threading.Thread] = field(default_factory=list)

    def __enter__(self) -> Load:
        for i in range(self.threads):
            worker = threading.Thread(target=self._run, args=(random.Random(i),), daemon=True)
            worker.start()
            self._workers.append(worker)
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def _run(self, rng: random.Random) -> None:
        while not self._stop.is_set():
            x = rng.random()
            try:
                r = self.world.query(self.name, x)
                self.sent.append(Sent(time.time(), x, r.status_code, r.headers.get("served-model-name")))
            except httpx.HTTPError:
                self.sent.append(Sent(time.time(), x, 599, None))
            time.sleep(self.pause)

    def stop(self) -> None:
        self._stop.set()
        for worker in self._workers:
            worker.join(timeout=30)

    def between(self, start_ms: int, end_ms: int) -> list[Sent]:
        return [s for s in self.sent if start_ms / 1000 <= s.at < end_ms / 1000]


@contextmanager
def webhook() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A webhook receiver on 127.0.0.1: its URL and the JSON bodies POSTed to it, in order."""
    received: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            received.append(json.loads(self.rfile.read(length)))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *_args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", received
    finally:
        server.shutdown()
        server.server_close()
