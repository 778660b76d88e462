"""Waiting for endpoint updates, and endpoints kept across the tests of a module.

:func:`wait_settled` is the one wait for a config update in the real-server tests: it polls
through the SDK's :meth:`~modelport.client.sdk.ModelportClient.wait_for_update` (fast, with
``poll``), and hands back the settled endpoint whatever the outcome, so that a test can assert
on ``UPDATE_FAILED`` as well as on ``NOT_UPDATING``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from modelport.client.sdk import ModelportClient
from modelport.errors import InvalidState
from tests.serverproc import ADMIN_TOKEN, ServerProcess

__all__ = ["KEPT_ENDPOINTS", "kept_endpoint", "wait_settled"]

#: Endpoints owned by module- or session-scoped fixtures (see :func:`kept_endpoint`): the
#: integration suite's ``_clean_endpoints`` leaves them alone, and their fixture deletes them.
KEPT_ENDPOINTS: set[str] = set()


def wait_settled(
    where: httpx.Client | str,
    name: str,
    *,
    token: str = ADMIN_TOKEN,
    timeout: float = 120.0,
    poll: float = 0.05,
) -> dict[str, Any]:
    """Poll endpoint ``name`` until its config update is no longer in progress; return it.

    ``where`` is an ``httpx.Client`` (its base URL and bearer token are used) or a base URL
    (with ``token``). A failed or cancelled update is returned, not raised: the caller
    asserts on ``state.config_update``. After ``timeout`` seconds :class:`TimeoutError`.
    The default deadline leaves room for a deployment that starts replicas while other test
    workers load the machine (a custom model took over 30 s with ``make test``'s three workers
    and other test runs on two cores); a test of how fast an update settles passes its own.
    """
    if isinstance(where, httpx.Client):
        token = where.headers["Authorization"].removeprefix("Bearer ")
        where = str(where.base_url)
    last: dict[str, Any] = {}

    def keep(endpoint: dict[str, Any], _elapsed: float) -> None:
        last["endpoint"] = endpoint

    with ModelportClient(where, token) as sdk:
        try:
            return sdk.wait_for_update(name, timeout=timeout, poll=poll, on_poll=keep)
        except InvalidState:  # UPDATE_FAILED or UPDATE_CANCELED: settled all the same
            return dict(last["endpoint"])


@contextmanager
def kept_endpoint(server: ServerProcess, name: str, entities: list[dict[str, Any]]) -> Iterator[str]:
    """Create endpoint ``name``, wait until it serves, keep it across tests, delete it at exit.

    For module-scoped fixtures: each endpoint starts real replica processes, so a module
    that queries one model many times shares one endpoint instead of making one per test.
    """
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=60) as client:
        body = {"name": name, "config": {"served_entities": entities}}
        created = client.post("/api/2.0/serving-endpoints", json=body)
        assert created.status_code == 200, created.text
        KEPT_ENDPOINTS.add(name)
        try:
            got = wait_settled(client, name, timeout=180, poll=0.2)
            assert got["state"]["config_update"] == "NOT_UPDATING", got
            yield name
        finally:
            KEPT_ENDPOINTS.discard(name)
            client.delete(f"/api/2.0/serving-endpoints/{name}")
