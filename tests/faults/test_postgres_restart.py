"""PostgreSQL restarted under load: the control plane answers 503 while it is away and recovers
without a server restart; the data plane keeps answering from memory, known tokens included."""

from __future__ import annotations

import threading
import time
from collections import Counter

import httpx

from tests.fakes.openai_server import FakeOpenAI
from tests.faults.conftest import API, HEADERS, PrivatePostgres, create, query
from tests.serverproc import ServerProcess
from tests.support.names import unique
from tests.support.providers import custom_chat_entity

#: Longer than the authentication cache's 5 s TTL (gateway/auth.py): known tokens outlive it.
AWAY_SECONDS = 6.5


def _load(url: str, name: str, stop: threading.Event, seen: list[tuple[float, int, str]]) -> None:
    with httpx.Client(base_url=url, headers=HEADERS, timeout=10) as client:
        while not stop.is_set():
            try:
                r = query(client, name)
                seen.append((time.monotonic(), r.status_code, r.text[:200]))
            except httpx.HTTPError as exc:
                seen.append((time.monotonic(), 0, repr(exc)))


def test_control_plane_503_while_postgres_is_away_and_data_plane_serves(
    http: httpx.Client, fault_server: ServerProcess, private_pg: PrivatePostgres, fake: FakeOpenAI
) -> None:
    name = unique("pg-load")
    create(http, name, [custom_chat_entity(fake.url)])
    assert query(http, name).status_code == 200
    away = False
    stop = threading.Event()
    seen: list[tuple[float, int, str]] = []
    loader = threading.Thread(target=_load, args=(fault_server.url, name, stop, seen))
    loader.start()
    try:
        time.sleep(0.5)
        private_pg.stop("fast")
        away = True
        stopped = time.monotonic()
        # Control plane: a read and a write, each 503 TEMPORARILY_UNAVAILABLE with Retry-After.
        listing = http.get(API)
        assert listing.status_code == 503, listing.text
        assert listing.json()["error_code"] == "TEMPORARILY_UNAVAILABLE"
        assert int(listing.headers["Retry-After"]) > 0
        assert "Traceback" not in listing.text
        made = http.post(
            API,
            json={"name": unique("pg-new"), "config": {"served_entities": [custom_chat_entity(fake.url)]}},
        )
        assert made.status_code == 503, made.text
        assert made.json()["error_code"] == "TEMPORARILY_UNAVAILABLE"
        # A token never seen cannot be checked: 503, not 401.
        with httpx.Client(
            base_url=fault_server.url, headers={"Authorization": "Bearer dapi-nobody"}
        ) as other:
            stranger = query(other, name)
        assert stranger.status_code == 503, stranger.text
        assert stranger.json()["error_code"] == "TEMPORARILY_UNAVAILABLE"
        time.sleep(max(0.0, AWAY_SECONDS - (time.monotonic() - stopped)))
        during = [s for s in seen if stopped < s[0]]
        private_pg.start()
        away = False
        restarted = time.monotonic()
        # The control plane recovers by itself (pool_pre_ping replaces the dead connections).
        recovered = None
        while time.monotonic() - restarted < 15:
            if http.get(API).status_code == 200:
                recovered = time.monotonic() - restarted
                break
            time.sleep(0.1)
        assert recovered is not None, "the control plane did not recover within 15 s"
        time.sleep(0.5)
    finally:
        stop.set()
        loader.join()
        if away:  # the test failed while PostgreSQL was stopped: leave it running for the others
            private_pg.start()
    assert during, "no query was answered while PostgreSQL was away"
    statuses = Counter(status for _, status, _ in seen)
    assert statuses == Counter({200: len(seen)}), [s for s in seen if s[1] != 200][:5]
    # Past the auth cache's TTL, the admin token still works (the stale entry is served).
    assert max(t for t, _, _ in during) - stopped > 5.0
    created = create(http, unique("pg-after"), [custom_chat_entity(fake.url)])
    assert created["state"]["ready"] == "READY"
    print(
        f"PostgreSQL away {restarted - stopped:.1f} s: {len(during)} queries answered 200 meanwhile; "
        f"control plane back {recovered:.2f} s after the start"
    )
