"""Rate limits with the counters in the real Redis: the rules, the Lua script, exactness across processes."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import redis

from modelport.errors import RequestLimitExceeded, TemporarilyUnavailable
from modelport.gateway.ratelimit import (
    _CHECK_AND_ADD_LUA,
    WINDOW_SECONDS,
    RateLimiter,
    RedisCounters,
)
from modelport.spec.identity import Caller

ROOT = Path(__file__).resolve().parents[2]
T0 = (int(time.time()) // WINDOW_SECONDS) * WINDOW_SECONDS
NOW = T0 + 37.0
WINDOW = int(NOW // WINDOW_SECONDS)


def user(name: str, *groups: str) -> Caller:
    return Caller(id=1, name=name, kind="user", groups=("users", *groups), principal_ids=frozenset())


ALICE = user("alice@example.com", "eng")
BOB = user("bob@example.com", "eng")
CAROL = user("carol@example.com", "sales")
BOT = Caller(id=2, name="8f2c-app-id", kind="service_principal", groups=(), principal_ids=frozenset())


def lim(key: str, **fields: Any) -> dict[str, Any]:
    return {"renewal_period": "minute", "key": key, **fields}


def with_limiter(
    url: str, prefix: str, body: Callable[[RateLimiter, RedisCounters], Awaitable[None]], **kwargs: Any
) -> None:
    async def main() -> None:
        # A generous socket timeout: these tests check exact counting, and a Redis call that
        # times out on a loaded machine fails open (admits unchecked), which is tested apart.
        counters = RedisCounters(url, prefix=prefix, socket_timeout=5.0)
        limiter = RateLimiter(counters, **kwargs)
        try:
            await body(limiter, counters)
        finally:
            await limiter.aclose()

    asyncio.run(main())


async def admitted(limiter: RateLimiter, limits: list[dict], caller: Caller, now: float = NOW) -> int:
    for n in range(50):
        try:
            await limiter.admit("chat", limits, caller, now=now)
        except RequestLimitExceeded:
            return n
    return 50


def sync_client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=5, decode_responses=True)


def test_keys_overrides_groups_and_strictest_wins(redis_url: str, redis_prefix: str) -> None:
    async def body(limiter: RateLimiter, _: RedisCounters) -> None:
        assert await admitted(limiter, [lim("endpoint", calls=3)], BOT) == 3
        per_user = [lim("user", calls=2), lim("user", calls=4, principal=ALICE.name)]
        assert await admitted(limiter, per_user, ALICE) == 4
        assert await admitted(limiter, per_user, BOB) == 2
        assert await admitted(limiter, per_user, BOT) == 2
        limiter.forget("chat")
        groups = [lim("user_group", calls=3, principal="eng"), lim("endpoint", calls=100)]
        await limiter.admit("g", groups, ALICE, now=NOW)
        await limiter.admit("g", groups, BOB, now=NOW)
        await limiter.admit("g", groups, ALICE, now=NOW)
        with pytest.raises(RequestLimitExceeded) as info:
            await limiter.admit("g", groups, BOB, now=NOW)
        assert info.value.retry_after == 23
        assert info.value.message == (
            "Rate limit exceeded for endpoint 'g': 3 calls per minute for group 'eng' (key user_group). "
            "Retry after 23 s."
        )
        for _ in range(5):
            await limiter.admit("g", groups, CAROL, now=NOW)

    with_limiter(redis_url, redis_prefix, body)


def test_refusal_increments_nothing_and_keys_expire(redis_url: str, redis_prefix: str) -> None:
    limits = [lim("endpoint", calls=3), lim("user", calls=1)]

    async def body(limiter: RateLimiter, _: RedisCounters) -> None:
        await limiter.admit("chat", limits, ALICE, now=NOW)
        for _ in range(4):
            with pytest.raises(RequestLimitExceeded, match="1 calls per minute for user 'alice"):
                await limiter.admit("chat", limits, ALICE, now=NOW)
        await limiter.admit("chat", limits, BOB, now=NOW)
        await limiter.admit("chat", limits, CAROL, now=NOW)
        with pytest.raises(RequestLimitExceeded, match="3 calls per minute for the endpoint"):
            await limiter.admit("chat", limits, BOT, now=NOW)

    with_limiter(redis_url, redis_prefix, body)
    client = sync_client(redis_url)
    try:
        head = f"{redis_prefix}{WINDOW}:{{chat}}:c:"
        assert client.get(head + "e") == "3"
        assert client.get(head + "u:alice@example.com") == "1"
        assert client.get(head + "s:8f2c-app-id") is None
        assert 0 < client.ttl(head + "e") <= 2 * WINDOW_SECONDS
    finally:
        client.close()


def test_token_limits_and_window_renewal(redis_url: str, redis_prefix: str) -> None:
    limits = [lim("user", tokens=100), lim("endpoint", calls=1000, tokens=1000)]

    async def body(limiter: RateLimiter, _: RedisCounters) -> None:
        first = await limiter.admit("chat", limits, ALICE, now=NOW)
        await limiter.admit("chat", limits, ALICE, now=NOW)
        await limiter.add_tokens(first, 60, now=NOW)
        await limiter.admit("chat", limits, ALICE, now=NOW)
        await limiter.add_tokens(first, 40, now=NOW)
        with pytest.raises(RequestLimitExceeded, match="100 tokens per minute for user") as info:
            await limiter.admit("chat", limits, ALICE, now=T0 + 59.5)
        assert info.value.retry_after == 1
        await limiter.admit("chat", limits, BOB, now=NOW)
        await limiter.admit("chat", limits, ALICE, now=T0 + WINDOW_SECONDS)

    with_limiter(redis_url, redis_prefix, body)
    client = sync_client(redis_url)
    try:
        assert client.get(f"{redis_prefix}{WINDOW}:{{chat}}:t:e") == "100"
        assert client.get(f"{redis_prefix}{WINDOW}:{{chat}}:c:e") == "4"
    finally:
        client.close()


def test_reloads_the_script_after_noscript(redis_url: str, redis_prefix: str) -> None:
    async def body(limiter: RateLimiter, counters: RedisCounters) -> None:
        await limiter.admit("chat", [lim("user", calls=2)], ALICE, now=NOW)
        counters._shas[_CHECK_AND_ADD_LUA] = "0" * 40  # as if Redis had restarted
        await limiter.admit("chat", [lim("user", calls=2)], ALICE, now=NOW)
        assert counters._shas[_CHECK_AND_ADD_LUA] != "0" * 40
        assert await admitted(limiter, [lim("user", calls=2)], ALICE) == 0
        assert limiter.backend_errors == 0

    with_limiter(redis_url, redis_prefix, body)


def test_concurrent_admissions_in_one_process_are_exact(redis_url: str, redis_prefix: str) -> None:
    limits = [lim("endpoint", calls=10), lim("user", calls=1000)]

    async def body(limiter: RateLimiter, _: RedisCounters) -> None:
        async def one(i: int) -> bool:
            try:
                await limiter.admit("chat", limits, user(f"u{i % 4}"), now=NOW)
            except RequestLimitExceeded:
                return False
            return True

        results = await asyncio.gather(*(one(i) for i in range(64)))
        assert limiter.unchecked_admits == 0
        assert sum(results) == 10

    with_limiter(redis_url, redis_prefix, body)


def test_unreachable_redis_fails_open_or_closed(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        limiter = RateLimiter(RedisCounters("redis://127.0.0.1:1/0", socket_timeout=0.5))
        with caplog.at_level(logging.WARNING, logger="modelport.gateway"):
            got = await limiter.admit("chat", [lim("user", calls=0)], ALICE, now=NOW)
        assert not got.checked and limiter.unchecked_admits == 1 and limiter.backend_errors == 1
        assert "Rate-limit counters unreachable (Redis: ConnectionError" in caplog.text
        await limiter.aclose()
        closed = RateLimiter(RedisCounters("redis://127.0.0.1:1/0", socket_timeout=0.5), fail_open=False)
        with pytest.raises(TemporarilyUnavailable):
            await closed.admit("chat", [lim("user", calls=5)], ALICE, now=NOW)
        await closed.aclose()

    asyncio.run(main())


# One worker process: its own RedisCounters; says "ready", waits for "go", tries ATTEMPTS admissions
# (32 at a time over one pool) and prints how many were admitted.
WORKER = textwrap.dedent(
    """
    import asyncio, json, sys
    from modelport.errors import RequestLimitExceeded
    from modelport.gateway.ratelimit import RateLimiter, RedisCounters
    from modelport.spec.identity import Caller

    url, prefix, now, attempts, me = sys.argv[1:6]
    now, attempts = float(now), int(attempts)
    limits = [{"renewal_period": "minute", "key": "endpoint", "calls": 50}]

    async def main():
        limiter = RateLimiter(RedisCounters(url, prefix=prefix, max_connections=32), fail_open=False)
        sem = asyncio.Semaphore(32)
        async def one(i):
            caller = Caller(id=i, name=f"{me}-{i % 7}", kind="user", groups=(), principal_ids=frozenset())
            async with sem:
                try:
                    await limiter.admit("shared", limits, caller, now=now)
                except RequestLimitExceeded:
                    return 0
                return 1
        await limiter.admit("warm-up", limits, Caller(0, me, "user", (), frozenset()), now=now)
        print("ready", flush=True)
        sys.stdin.readline()
        admitted = sum(await asyncio.gather(*(one(i) for i in range(attempts))))
        print(json.dumps({"admitted": admitted}), flush=True)
        await limiter.aclose()

    asyncio.run(main())
    """
)


def test_exact_across_two_processes(redis_url: str, redis_prefix: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, redis_url, redis_prefix, str(NOW), "200", f"p{n}"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env=env,
        )
        for n in range(2)
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        counts = []
        for proc in procs:
            out, _ = proc.communicate(timeout=60)
            assert proc.returncode == 0
            counts.append(json.loads(out.strip().splitlines()[-1])["admitted"])
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    print("admitted per process:", counts)
    assert sum(counts) == 50, counts
    client = sync_client(redis_url)
    try:
        assert client.get(f"{redis_prefix}{WINDOW}:{{shared}}:c:e") == "50"
    finally:
        client.close()
