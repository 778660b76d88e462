"""The failed-authentication counter: fixed windows per address, bounded memory, IPv6 by /64."""

from __future__ import annotations

import asyncio
from typing import Any

from modelport.api.auth_throttle import AuthThrottle, FailureCounter, address_key


def test_the_limit_blocks_until_the_window_ends() -> None:
    counter = FailureCounter(limit=3, window=60)
    assert [counter.fail("10.0.0.1", t) for t in (0, 1, 2)] == [False, False, True]
    assert counter.blocked_for("10.0.0.1", 2) == 58
    assert counter.blocked_for("10.0.0.2", 2) is None  # another address
    assert counter.blocked_for("10.0.0.1", 59.5) == 0.5
    assert counter.blocked_for("10.0.0.1", 60) is None


def test_failures_below_the_limit_do_not_block_and_a_new_window_starts_afresh() -> None:
    counter = FailureCounter(limit=3, window=60)
    counter.fail("a", 0)
    counter.fail("a", 1)
    assert counter.blocked_for("a", 1) is None
    counter.fail("a", 61)  # the first window has ended: this one counts alone
    counter.fail("a", 62)
    assert counter.blocked_for("a", 62) is None
    counter.fail("a", 63)
    assert counter.blocked_for("a", 63) == 58


def test_the_map_stays_bounded_under_rotating_addresses() -> None:
    counter = FailureCounter(limit=5, window=60, max_addresses=100)
    for i in range(100_000):
        counter.fail(f"10.{i >> 16}.{(i >> 8) & 255}.{i & 255}", i / 1000)
    assert len(counter) == 100
    # the newest addresses are the ones kept
    assert counter._entries.keys() == {f"10.1.{(i >> 8) & 255}.{i & 255}" for i in range(99_900, 100_000)}


def test_expired_windows_are_dropped() -> None:
    counter = FailureCounter(limit=5, window=60)
    for i in range(50):
        counter.fail(f"10.0.0.{i}", i)
    counter.fail("10.0.1.1", 109)  # every window above has ended (the last at 49 + 60)
    assert len(counter) == 1


def test_ipv6_counts_by_its_64_prefix_and_ipv4_mapped_as_ipv4() -> None:
    assert address_key("2001:db8:1:2:aaaa::1") == address_key("2001:db8:1:2:bbbb::2") == "2001:db8:1:2::/64"
    assert address_key("2001:db8:1:3::1") != address_key("2001:db8:1:2::1")
    assert address_key("::ffff:10.0.0.1") == "10.0.0.1"
    assert address_key("10.0.0.1") == "10.0.0.1"
    assert address_key("testclient") == "testclient"


class _Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def _run(app: Any, path: str, client: str) -> tuple[int, dict[str, str]]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": path, "headers": [], "client": (client, 5000)}
    asyncio.run(app(scope, receive, send))
    start = sent[0]
    return start["status"], {k.decode(): v.decode() for k, v in start["headers"]}


def _answering(status_of_path: dict[str, int]) -> Any:
    async def handler(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": status_of_path[scope["path"]], "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    return handler


def test_the_wrapper_blocks_every_request_of_the_address_but_not_probes() -> None:
    clock = _Clock()
    app = AuthThrottle(_answering({"/bad": 401, "/good": 200, "/health": 200}), 2, 30, clock=clock)
    assert [_run(app, "/bad", "10.0.0.1")[0] for _ in range(2)] == [401, 401]
    status, headers = _run(app, "/good", "10.0.0.1")
    assert status == 429 and headers["retry-after"] == "30"
    assert _run(app, "/health", "10.0.0.1")[0] == 200
    assert _run(app, "/good", "10.0.0.2")[0] == 200
    clock.now = 30
    assert _run(app, "/good", "10.0.0.1")[0] == 200


def test_a_limit_of_zero_is_off() -> None:
    app = AuthThrottle(_answering({"/bad": 401}), 0, 30)
    assert {_run(app, "/bad", "10.0.0.1")[0] for _ in range(50)} == {401}
