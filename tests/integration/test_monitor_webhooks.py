"""The monitors' webhook sender against a loopback receiver: retries on server errors, none on
client errors, and a deadline that a slow or dead receiver cannot stretch."""

from __future__ import annotations

import time

from modelport.monitoring.webhooks import Post, deliver
from tests.support.webhooks import webhook_receiver


def test_webhooks_retry_server_errors_and_stop_on_client_errors() -> None:
    with webhook_receiver() as hook:
        hook.answers = [503, 200]
        first = deliver([Post(f"{hook.url}/a", {"X-Token": "t"}, {"n": 1})])[0]
        assert (first.delivered, first.attempts, first.status_code) == (True, 2, 200)
        hook.answers = [404]
        second = deliver([Post(f"{hook.url}/a", {}, {"n": 2})])[0]
        assert (second.delivered, second.attempts, second.status_code) == (False, 1, 404)
        assert [b["n"] for b in hook.posts("/a")] == [1, 1, 2]
        assert hook.received[0].headers["X-Token"] == "t"


def test_webhooks_never_take_longer_than_the_deadline() -> None:
    with webhook_receiver() as hook:
        hook.answers = [0, 0, 0]  # each answer takes 1 s
        began = time.monotonic()
        result = deliver([Post(hook.url, {}, {"n": 1})], deadline_s=0.5)[0]
        assert time.monotonic() - began < 0.9
        assert not result.delivered and result.error and "Timeout" in result.error
    dead = deliver([Post("http://127.0.0.1:9/none", {}, {})], deadline_s=1.0)[0]
    assert not dead.delivered and dead.attempts >= 2 and dead.error
