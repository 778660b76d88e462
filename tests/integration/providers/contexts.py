"""Drive a :class:`Provider` directly: a fresh ``httpx.AsyncClient``, a dict-backed resolver,
and the server's provider base URLs from :data:`BASE_URLS` (a test points a provider at its
fake with ``monkeypatch.setitem(BASE_URLS, "<name>", fake.url)``)."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Mapping
from typing import Any

import httpx

from modelport.entities.providers.base import Provider, ProviderContext
from modelport.errors import ResourceDoesNotExist
from modelport.spec.secrets import SecretResolver

ENDPOINT = "my-endpoint"
#: What ``Settings.provider_base_urls`` would hold: provider name -> base URL.
BASE_URLS: dict[str, str] = {}


def resolver(secrets: Mapping[tuple[str, str], str]) -> SecretResolver:
    """Looks ``(scope, key)`` up in ``secrets`` at call time (so a test can rotate a value)."""

    def resolve(scope: str, key: str) -> str:
        try:
            return secrets[(scope, key)]
        except KeyError:
            raise ResourceDoesNotExist(f"Secret '{key}' does not exist in scope '{scope}'.") from None

    return resolve


def ask(
    cls: type[Provider],
    method: str,
    body: dict[str, Any],
    *,
    model: str,
    task: str,
    config: Mapping[str, Any],
    secrets: Mapping[tuple[str, str], str] | None = None,
    timeout: float = 5.0,
) -> Any:
    """``cls(ctx).<method>(body)`` in a new event loop: the answer, or the list of chunks of a
    stream. Raises what the provider raises."""

    async def go() -> Any:
        async with httpx.AsyncClient() as http:
            ctx = ProviderContext(
                endpoint=ENDPOINT,
                model=model,
                task=task,
                config=config,
                resolve=resolver(secrets or {}),
                http=http,
                timeout=timeout,
                base_urls=dict(BASE_URLS),
            )
            result = getattr(cls(ctx), method)(body)
            if inspect.isawaitable(result):
                return await result
            return [chunk async for chunk in result]

    return asyncio.run(go())
