"""Rate limits of the AI gateway with the in-process counters: keys, overrides, groups, tokens, windows."""

from __future__ import annotations

import logging
from collections.abc import Coroutine, Sequence
from typing import Any, TypeVar

import pytest

from modelport.errors import RequestLimitExceeded, TemporarilyUnavailable
from modelport.gateway.ratelimit import (
    WINDOW_SECONDS,
    Admission,
    CounterBackendError,
    LocalCounters,
    RateLimiter,
    endpoint_limits,
)
from modelport.spec.identity import Caller

T = TypeVar("T")

T0 = 29_000_000 * WINDOW_SECONDS  # the start of a window
NOW = T0 + 37.0


def sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that never suspends (the local counters never do) without an event loop."""
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]
    coro.close()
    raise AssertionError("the coroutine suspended")


def user(name: str, *groups: str) -> Caller:
    return Caller(id=1, name=name, kind="user", groups=("users", *groups), principal_ids=frozenset())


def sp(name: str, *groups: str) -> Caller:
    return Caller(id=2, name=name, kind="service_principal", groups=groups, principal_ids=frozenset())


ALICE = user("alice@example.com", "eng")
BOB = user("bob@example.com", "eng")
CAROL = user("carol@example.com", "sales")
DAVE = user("dave@example.com")
BOT = sp("8f2c-app-id")


def lim(key: str, calls: int | None = None, tokens: int | None = None, principal: str | None = None) -> dict:
    out: dict[str, Any] = {"renewal_period": "minute", "key": key}
    if calls is not None:
        out["calls"] = calls
    if tokens is not None:
        out["tokens"] = tokens
    if principal is not None:
        out["principal"] = principal
    return out


def admit(
    limiter: RateLimiter, limits: Sequence[dict], caller: Caller, now: float = NOW, endpoint: str = "chat"
) -> Admission:
    return sync(limiter.admit(endpoint, limits, caller, now=now))


def admitted(limiter: RateLimiter, limits: Sequence[dict], caller: Caller, now: float = NOW) -> int:
    """How many queries in a row ``caller`` gets (stops at the first refusal, at most 100)."""
    for n in range(100):
        try:
            admit(limiter, limits, caller, now)
        except RequestLimitExceeded:
            return n
    return 100


def refusal(
    limiter: RateLimiter, limits: Sequence[dict], caller: Caller, now: float = NOW
) -> RequestLimitExceeded:
    with pytest.raises(RequestLimitExceeded) as info:
        admit(limiter, limits, caller, now)
    return info.value


def test_no_limits_admit_everything() -> None:
    limiter = RateLimiter()
    for _ in range(3):
        got = admit(limiter, [], ALICE)
        assert got == Admission("chat") and got.checked
    sync(limiter.add_tokens(got, 1000))


def test_endpoint_key_is_one_counter_for_everyone() -> None:
    limiter, limits = RateLimiter(), [lim("endpoint", calls=3)]
    for caller in (ALICE, BOB, BOT):
        admit(limiter, limits, caller)
    err = refusal(limiter, limits, CAROL)
    assert err.status == 429 and err.error_code == "REQUEST_LIMIT_EXCEEDED"
    assert err.retry_after == 23
    assert err.message == (
        "Rate limit exceeded for endpoint 'chat': 3 calls per minute for the endpoint (key endpoint). "
        "Retry after 23 s."
    )
    # Another endpoint has counters of its own.
    admit(limiter, limits, CAROL, endpoint="other")


def test_user_key_counts_each_user() -> None:
    limiter, limits = RateLimiter(), [lim("user", calls=2)]
    assert admitted(limiter, limits, ALICE) == 2
    assert admitted(limiter, limits, BOB) == 2
    err = refusal(limiter, limits, ALICE)
    assert err.message == (
        "Rate limit exceeded for endpoint 'chat': 2 calls per minute for user 'alice@example.com' "
        "(key user). Retry after 23 s."
    )


@pytest.mark.parametrize("override", [5, 1])
def test_user_override_replaces_the_generic_limit_looser_or_stricter(override: int) -> None:
    limiter = RateLimiter()
    limits = [lim("user", calls=2), lim("user", calls=override, principal=ALICE.name)]
    assert admitted(limiter, limits, ALICE) == override
    assert admitted(limiter, limits, BOB) == 2


def test_an_override_replaces_only_the_measures_it_sets() -> None:
    limiter = RateLimiter()
    limits = [lim("user", calls=2, tokens=100), lim("user", calls=5, principal=ALICE.name)]
    first = admit(limiter, limits, ALICE)
    sync(limiter.add_tokens(first, 100, now=NOW))
    err = refusal(limiter, limits, ALICE)
    assert "100 tokens per minute for user 'alice@example.com' (key user)" in err.message


def test_service_principals_generic_user_limit_sp_limit_and_overrides() -> None:
    assert admitted(RateLimiter(), [lim("user", calls=2)], BOT) == 2
    limits = [lim("user", calls=2), lim("service_principal", calls=4)]
    assert admitted(RateLimiter(), limits, BOT) == 4
    assert admitted(RateLimiter(), limits, ALICE) == 2  # the SP limit is not for users
    with_override = [*limits, lim("service_principal", calls=1, principal=BOT.name)]
    limiter = RateLimiter()
    assert admitted(limiter, with_override, BOT) == 1
    assert admitted(limiter, with_override, sp("other-app")) == 4
    assert (
        "for service principal '8f2c-app-id' (key service_principal)"
        in refusal(limiter, with_override, BOT).message
    )
    # A ``user`` override naming the application id applies to the SP too.
    assert admitted(RateLimiter(), [*limits, lim("user", calls=7, principal=BOT.name)], BOT) == 7


def test_group_limit_with_principal_is_shared_by_its_members_only() -> None:
    limiter, limits = RateLimiter(), [lim("user_group", calls=3, principal="eng")]
    assert admitted(limiter, limits, ALICE) == 3
    assert admitted(limiter, limits, BOB) == 0  # same group, same counter
    assert admitted(limiter, limits, CAROL) == 100  # not in the group: no limit
    err = refusal(limiter, limits, BOB)
    assert "3 calls per minute for group 'eng' (key user_group)" in err.message


def test_generic_group_limit_applies_to_each_group_separately_and_overrides_replace_it() -> None:
    limiter, limits = RateLimiter(), [lim("user_group", calls=4)]
    # ALICE is in users and eng: two counters of 4; CAROL in users and sales.
    assert admitted(limiter, limits, ALICE) == 4
    assert admitted(limiter, limits, CAROL) == 0  # the 'users' group is full
    limiter = RateLimiter()
    limits = [lim("user_group", calls=4), lim("user_group", calls=10, principal="users")]
    assert admitted(limiter, limits, ALICE) == 4  # eng: 4
    assert admitted(limiter, limits, CAROL) == 4  # sales: 4; users: 8 of 10
    assert admitted(limiter, limits, DAVE) == 2  # users: 10 of 10


def test_strictest_applicable_limit_wins_and_is_named() -> None:
    limiter = RateLimiter()
    limits = [lim("endpoint", calls=100), lim("user", calls=2), lim("user_group", calls=5, principal="eng")]
    assert admitted(limiter, limits, ALICE) == 2
    assert "2 calls per minute for user 'alice@example.com'" in refusal(limiter, limits, ALICE).message
    assert admitted(limiter, limits, BOB) == 2
    assert admitted(limiter, limits, user("erin@example.com", "eng")) == 1  # the group: 5
    # Several exhausted at once: the smallest one is named.
    limiter = RateLimiter()
    limits = [lim("endpoint", calls=1), lim("user", calls=1)]
    admit(limiter, limits, ALICE)
    assert "1 calls per minute for the endpoint" in refusal(limiter, limits, ALICE).message
    limits = [lim("endpoint", calls=3), lim("user", calls=1)]
    limiter = RateLimiter()
    admit(limiter, limits, ALICE)
    admit(limiter, limits, BOB)
    admit(limiter, limits, CAROL)
    assert "1 calls per minute for user 'alice@example.com'" in refusal(limiter, limits, ALICE).message


def test_a_refused_request_increments_nothing() -> None:
    counters = LocalCounters()
    limiter = RateLimiter(counters)
    limits = [lim("endpoint", calls=3), lim("user", calls=1), lim("user_group", calls=10, principal="eng")]
    window = int(NOW // WINDOW_SECONDS)
    admit(limiter, limits, ALICE)
    for _ in range(5):
        refusal(limiter, limits, ALICE)
    assert counters.count(window, "{chat}:c:e") == 1
    assert counters.count(window, "{chat}:c:g:eng") == 1
    assert counters.count(window, "{chat}:c:u:alice@example.com") == 1
    admit(limiter, limits, BOB)
    admit(limiter, limits, CAROL)
    assert "3 calls per minute for the endpoint" in refusal(limiter, limits, DAVE).message


def test_token_limits_check_before_and_count_after_the_answer() -> None:
    counters = LocalCounters()
    limiter = RateLimiter(counters)
    limits = [lim("user", tokens=100)]
    window = int(NOW // WINDOW_SECONDS)
    first = admit(limiter, limits, ALICE)
    second = admit(limiter, limits, ALICE)  # tokens are counted only after answers
    assert counters.count(window, "{chat}:t:u:alice@example.com") == 0
    sync(limiter.add_tokens(first, 60, now=NOW))
    admit(limiter, limits, ALICE)  # 60 < 100
    sync(limiter.add_tokens(second, 50, now=NOW))  # 110: one answer may overshoot
    err = refusal(limiter, limits, ALICE)
    assert err.message == (
        "Rate limit exceeded for endpoint 'chat': 100 tokens per minute for user 'alice@example.com' "
        "(key user). Retry after 23 s."
    )
    admit(limiter, limits, BOB)
    assert admit(limiter, limits, ALICE, now=T0 + WINDOW_SECONDS)  # the next window


def test_add_tokens_credits_every_applicable_token_counter() -> None:
    counters = LocalCounters()
    limiter = RateLimiter(counters)
    limits = [
        lim("endpoint", calls=50, tokens=1000),
        lim("user", tokens=500),
        lim("user_group", tokens=700, principal="eng"),
    ]
    window = int(NOW // WINDOW_SECONDS)
    adm = admit(limiter, limits, ALICE)
    assert sorted(adm.token_keys) == [
        "{chat}:t:e",
        "{chat}:t:g:eng",
        "{chat}:t:u:alice@example.com",
    ]
    sync(limiter.add_tokens(adm, 120, now=NOW))
    for key in adm.token_keys:
        assert counters.count(window, key) == 120
    assert counters.count(window, "{chat}:c:e") == 1
    sync(limiter.add_tokens(adm, 0, now=NOW))
    assert counters.count(window, "{chat}:t:e") == 120
    # An answer that ends in the next window is counted there.
    sync(limiter.add_tokens(adm, 30, now=T0 + WINDOW_SECONDS + 1))
    assert counters.count(window + 1, "{chat}:t:e") == 30


def test_a_tokens_only_limit_does_not_count_calls() -> None:
    limiter = RateLimiter()
    assert admitted(limiter, [lim("endpoint", tokens=1)], ALICE) == 100


def test_zero_means_no_queries() -> None:
    assert admitted(RateLimiter(), [lim("user", calls=0)], ALICE) == 0
    assert admitted(RateLimiter(), [lim("user", tokens=0)], ALICE) == 0


def test_windows_renew_on_the_minute() -> None:
    limiter, limits = RateLimiter(), [lim("user", calls=2)]
    assert admitted(limiter, limits, ALICE, now=T0 + 10) == 2
    late = refusal(limiter, limits, ALICE, now=T0 + 59.5)
    assert late.retry_after == 1 and late.message.endswith("Retry after 1 s.")
    assert refusal(limiter, limits, ALICE, now=T0 + 59.9999).retry_after == 1
    assert refusal(limiter, limits, ALICE, now=T0).retry_after == 60
    assert admitted(limiter, limits, ALICE, now=T0 + 60) == 2
    assert admitted(limiter, limits, ALICE, now=T0 + 125) == 2


def test_local_counters_prune_old_windows() -> None:
    counters = LocalCounters()
    limiter = RateLimiter(counters)
    for minute in range(10):
        admit(limiter, [lim("user", calls=5)], ALICE, now=T0 + 60 * minute + 1)
    assert len(counters._windows) <= 2


def test_legacy_rate_limits_apply_with_the_ai_gateway_ones() -> None:
    ai_gateway = {"rate_limits": [lim("endpoint", calls=10), lim("user", tokens=1000)]}
    legacy = [{"calls": 3, "renewal_period": "minute", "key": "endpoint"}]
    limits = endpoint_limits(ai_gateway, legacy)
    assert len(limits) == 3
    limiter = RateLimiter()
    assert admitted(limiter, limits, ALICE) == 3
    assert endpoint_limits(None, None) == []
    assert admitted(RateLimiter(), endpoint_limits(None, [{"calls": 1, "key": "user"}]), ALICE) == 1


def test_parsed_limits_are_cached_by_fingerprint() -> None:
    limiter = RateLimiter()
    limits = [lim("user", calls=2)]
    admit(limiter, limits, ALICE)
    parsed = limiter._parsed["chat"][1]
    admit(limiter, [lim("user", calls=2)], ALICE)  # equal config: reused
    assert limiter._parsed["chat"][1] is parsed
    # A new config takes effect at once; the counts of the window carry over.
    assert admitted(limiter, [lim("user", calls=5)], ALICE) == 3
    assert limiter._parsed["chat"][1] is not parsed
    # A caller-given fingerprint (e.g. the endpoint's updated_ms) skips computing one.
    sync(limiter.admit("fp", limits, ALICE, now=NOW, fingerprint=1))
    parsed = limiter._parsed["fp"][1]
    sync(limiter.admit("fp", limits, ALICE, now=NOW, fingerprint=1))
    assert limiter._parsed["fp"][1] is parsed
    limiter.forget("fp")
    assert "fp" not in limiter._parsed


class BrokenCounters(LocalCounters):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    async def check_and_add(self, *args: Any) -> int:
        self.calls += 1
        raise CounterBackendError("Redis: ConnectionError: refused")

    async def add(self, *args: Any) -> None:
        self.calls += 1
        raise CounterBackendError("Redis: ConnectionError: refused")


def test_fail_open_admits_logs_once_and_counts(caplog: pytest.LogCaptureFixture) -> None:
    backend = BrokenCounters()
    limiter = RateLimiter(backend, retry_interval=60)
    limits = [lim("user", calls=1, tokens=1)]
    with caplog.at_level(logging.WARNING, logger="modelport.gateway"):
        got = [admit(limiter, limits, ALICE) for _ in range(5)]
        sync(limiter.add_tokens(got[0], 10))
    assert all(not a.checked for a in got)
    assert limiter.unchecked_admits == 5
    assert backend.calls == 1  # the others did not wait for the backend
    assert limiter.backend_errors == 1
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "admitting requests" in warnings[0].getMessage()


def test_fail_open_retries_the_backend_after_the_interval() -> None:
    backend = BrokenCounters()
    limiter = RateLimiter(backend, retry_interval=0)
    for _ in range(3):
        admit(limiter, [lim("user", calls=1)], ALICE)
    assert backend.calls == 3 and limiter.backend_errors == 3
    limiter.backend = LocalCounters()
    assert admitted(limiter, [lim("user", calls=1)], ALICE) == 1
    assert not limiter._down


def test_fail_closed_refuses_with_503() -> None:
    limiter = RateLimiter(BrokenCounters(), fail_open=False)
    with pytest.raises(TemporarilyUnavailable) as info:
        admit(limiter, [lim("user", calls=1)], ALICE)
    assert info.value.status == 503 and info.value.retry_after == 1
    assert "cannot be checked" in info.value.message
    assert limiter.unchecked_admits == 0
