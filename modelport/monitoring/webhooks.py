"""POSTing a monitor's notifications (alert changes, failed refreshes) to webhooks.

Each notification is a JSON POST tried at most :data:`TRIES` times: again after a connection
error, a timeout, a 429 or a 5xx answer, waiting :data:`BACKOFF` seconds, then twice that; any
other non-2xx answer is final. All the notifications of one refresh are sent at once (a few
threads) and share one deadline of :data:`DEADLINE` seconds, so a slow or dead receiver holds a
refresh up for that long at most. Blocking: call from a thread. Nothing raises: each
notification's outcome says whether it was delivered, after how many tries, and why not.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

__all__ = ["BACKOFF", "DEADLINE", "TRIES", "Delivery", "Post", "deliver"]

TRIES = 3
BACKOFF = 0.25
#: Seconds all the notifications of one refresh may take together.
DEADLINE = 5.0
#: Seconds one try may take at most.
_TRY_TIMEOUT = 2.0
_USER_AGENT = "modelport-monitor-webhook/1"


@dataclass(frozen=True)
class Post:
    """One notification: where to, with which headers, what body (JSON)."""

    url: str
    headers: Mapping[str, str]
    body: Mapping[str, Any]


@dataclass(frozen=True)
class Delivery:
    """What became of one :class:`Post`."""

    delivered: bool
    attempts: int
    status_code: int | None = None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "delivered": self.delivered,
            "attempts": self.attempts,
            "status_code": self.status_code,
            "error": self.error,
        }


def _send(client: httpx.Client, post: Post, deadline: float) -> Delivery:
    content = orjson.dumps(post.body)
    headers = {"Content-Type": "application/json", "User-Agent": _USER_AGENT, **post.headers}
    error, status, attempts = "no time was left to send it", None, 0
    for attempt in range(TRIES):
        left = deadline - time.monotonic()
        if left <= 0.05:
            break
        attempts = attempt + 1
        try:
            answer = client.post(post.url, content=content, headers=headers, timeout=min(_TRY_TIMEOUT, left))
        except httpx.HTTPError as exc:
            status, error = None, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        else:
            status = answer.status_code
            if 200 <= status < 300:
                return Delivery(True, attempts, status)
            error = f"the webhook answered HTTP {status}"
            if status != 429 and status < 500:
                break
        pause = BACKOFF * (2**attempt)
        if attempt + 1 < TRIES and time.monotonic() + pause < deadline:
            time.sleep(pause)
    return Delivery(False, attempts, status, error)


def deliver(posts: Sequence[Post], deadline_s: float = DEADLINE) -> list[Delivery]:
    """Send ``posts`` (see the module docstring); their outcomes in the same order."""
    if not posts:
        return []
    deadline = time.monotonic() + deadline_s
    with (
        httpx.Client(follow_redirects=False, trust_env=False) as client,
        ThreadPoolExecutor(max_workers=min(8, len(posts)), thread_name_prefix="monitor-webhook") as pool,
    ):
        return list(pool.map(lambda p: _send(client, p, deadline), posts))
