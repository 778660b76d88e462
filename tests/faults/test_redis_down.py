"""Redis down under rate limits: queries keep being answered (fail open), /metrics and the log say
so; once Redis is back the limits are exact again."""

from __future__ import annotations

import time

import httpx

from tests.fakes.openai_server import FakeOpenAI
from tests.faults.conftest import PrivateRedis, create, metric, query
from tests.serverproc import ServerProcess
from tests.support.names import unique
from tests.support.providers import custom_chat_entity

LIMIT = 3


def in_one_window(seconds: float) -> None:
    """Wait for the next minute when fewer than ``seconds`` are left in this one (rate-limit
    windows are epoch-aligned minutes: a burst across :00 would see its counters reset)."""
    left = 60 - time.time() % 60
    if left < seconds:
        time.sleep(left + 0.1)


def logged(server: ServerProcess, text: str, timeout: float = 5.0) -> bool:
    """Whether ``text`` shows in the server's log within ``timeout`` (log lines are written by a
    thread in batches, a little after the request that logged them)."""
    deadline = time.monotonic() + timeout
    while text not in server.log_path.read_text():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def burst(http: httpx.Client, name: str, n: int) -> list[int]:
    return [query(http, name).status_code for _ in range(n)]


def test_rate_limits_fail_open_while_redis_is_down_and_are_exact_after(
    http: httpx.Client, fault_server: ServerProcess, private_redis: PrivateRedis, fake: FakeOpenAI
) -> None:
    name = unique("rl")
    create(
        http,
        name,
        [custom_chat_entity(fake.url)],
        ai_gateway={"rate_limits": [{"calls": LIMIT, "renewal_period": "minute"}]},
    )
    in_one_window(5)  # each burst within one window; a restarted Redis starts from zero anyway
    assert burst(http, name, LIMIT + 1) == [200] * LIMIT + [429]
    unchecked = metric(http, "modelport_ratelimit_unchecked_admits_total")
    private_redis.kill()
    killed = time.monotonic()
    try:
        # Fail open: every query answered, none refused, each counted as unchecked.
        down = burst(http, name, 2 * LIMIT)
        took = time.monotonic() - killed
        assert down == [200] * (2 * LIMIT)
        assert metric(http, "modelport_ratelimit_unchecked_admits_total") - unchecked == 2 * LIMIT
        assert metric(http, "modelport_ratelimit_backend_errors_total") >= 1
        assert logged(fault_server, "Rate-limit counters unreachable")
    finally:
        private_redis.start()
    # Back: a fresh Redis has no counters, so the window starts again from zero, exactly.
    time.sleep(1.1)  # the limiter skips Redis for 1 s after a failure (retry_interval)
    in_one_window(5)
    assert burst(http, name, LIMIT + 1) == [200] * LIMIT + [429]
    assert logged(fault_server, "Rate-limit counters reachable again")
    print(
        f"Redis down: {2 * LIMIT} queries answered 200 unchecked in {took:.2f} s; exact again after restart"
    )
