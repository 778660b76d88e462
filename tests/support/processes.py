"""Reaching one process of a server that runs several (``--workers N``, or several servers on
one store): a keep-alive connection stays with the process that accepted it, and the status
route (admins) says which process that is."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx

from tests.serverproc import ADMIN_TOKEN, ServerProcess

__all__ = ["STATUS", "admin_client", "live_processes", "pinned", "status"]

STATUS = "/api/2.0/modelport/status"


def admin_client(server: ServerProcess) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=60)


def status(server: ServerProcess, tries: int = 10) -> dict[str, Any]:
    """The status route's answer from whichever process takes the connection. A connection the
    kernel queued on a process that was just killed is reset: those are tried again."""
    for attempt in range(tries):
        try:
            with admin_client(server) as http:
                r = http.get(STATUS)
            assert r.status_code == 200, r.text
            return dict(r.json())
        except httpx.TransportError:
            if attempt == tries - 1:
                raise
            time.sleep(0.1)
    raise AssertionError("unreachable")


def live_processes(server: ServerProcess) -> list[dict[str, Any]]:
    return [p for p in status(server)["processes"] if p["live"]]


@contextlib.contextmanager
def pinned(
    server: ServerProcess, want: str | Callable[[dict[str, Any]], bool], tries: int = 200
) -> Iterator[httpx.Client]:
    """An admin connection to the process of ``server`` whose status ``process`` block satisfies
    ``want`` (a role name, ``server`` or ``worker``, or a predicate)."""
    check = (lambda p: p["role"] == want) if isinstance(want, str) else want
    for _ in range(tries):
        client = admin_client(server)
        try:
            r = client.get(STATUS)
        except httpx.TransportError:  # reset: queued on a process that was just killed
            client.close()
            time.sleep(0.05)
            continue
        if r.status_code == 200 and check(r.json()["process"]):
            try:
                yield client
            finally:
                client.close()
            return
        client.close()
    raise AssertionError(f"no connection of {server.url} reached the process wanted in {tries} tries")
