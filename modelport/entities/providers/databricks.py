"""Another serving endpoint as the provider (``provider: databricks-model-serving``).

``databricks_model_serving_config.databricks_workspace_url`` is a Databricks workspace or
another modelport server; the query goes to
``POST {databricks_workspace_url}/serving-endpoints/{external_model.name}/invocations`` with
``databricks_api_token`` as the bearer token. Both ends speak the unified schema, so the
body passes through (our own fields dropped) and so do the answers and the SSE chunks,
with ``model`` set to this endpoint's name.

An endpoint can point at itself, directly or round a ring of endpoints; each hop adds one
to ``usage_context.modelport_hops`` (a string, as Databricks' ``usage_context`` values are),
and a query that has made :data:`MAX_HOPS` hops is refused instead of going round forever.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

import httpx

from modelport.entities.providers.base import Provider, ProviderContext, credential
from modelport.entities.providers.http import json_of, send
from modelport.entities.providers.openai import adopt_choices, chunks_of, vectors_of
from modelport.errors import InvalidState
from modelport.spec.llm import (
    CHAT,
    COMPLETIONS,
    EMBEDDINGS,
    embeddings_response,
    inputs_of,
    messages_of,
    passthrough,
    prompts_of,
)

__all__ = ["MAX_HOPS", "DatabricksProvider"]

_EMBEDDINGS_DROP = frozenset({"encoding_format"})
MAX_HOPS = 8
HOPS = "modelport_hops"


def _forwarded(body: dict[str, Any], out: dict[str, Any]) -> dict[str, Any]:
    """``out`` with the caller's ``usage_context`` and one more hop in it."""
    context = body.get("usage_context")
    context = dict(context) if isinstance(context, dict) else {}
    try:
        hops = int(context.get(HOPS, 0))
    except (TypeError, ValueError):
        hops = 0
    if hops >= MAX_HOPS:
        raise InvalidState(
            f"The query went through {hops} databricks-model-serving endpoints; an endpoint "
            "probably points back at itself (check databricks_model_serving_config)."
        )
    context[HOPS] = str(hops + 1)
    out["usage_context"] = context
    return out


class DatabricksProvider(Provider):
    provider = "databricks-model-serving"
    tasks = frozenset({CHAT, COMPLETIONS, EMBEDDINGS})
    streaming = frozenset({CHAT, COMPLETIONS})

    def __init__(self, ctx: ProviderContext) -> None:
        super().__init__(ctx)
        workspace = str(ctx.config["databricks_workspace_url"]).rstrip("/")
        self.url = f"{workspace}/serving-endpoints/{urllib.parse.quote(ctx.model, safe='')}/invocations"
        if (
            ctx.config.get("databricks_api_token") is None
            and ctx.config.get("databricks_api_token_plaintext") is None
        ):
            raise InvalidState(
                "databricks_model_serving_config has no token: give databricks_api_token (a secret "
                "reference) or databricks_api_token_plaintext."
            )

    async def _post(self, body: dict[str, Any], *, stream: bool = False) -> httpx.Response:
        token = credential(self.ctx.config, "databricks_api_token", self.ctx.resolve) or ""
        headers = {"authorization": f"Bearer {token}"}
        if stream:
            headers["accept"] = "text/event-stream"
        return await send(
            self.ctx, self.provider, "POST", self.url, headers=headers, json=body, stream=stream
        )

    def _streamed(self, body: dict[str, Any]) -> dict[str, Any]:
        out = _forwarded(body, passthrough(body))
        out["stream"] = True
        if isinstance(body.get("stream_options"), dict):
            out["stream_options"] = body["stream_options"]
        return out

    async def _stream(self, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        response = await self._post(self._streamed(body), stream=True)
        async with aclosing(chunks_of(self.provider, self.ctx.endpoint, response)) as chunks:
            async for chunk in chunks:
                yield chunk

    async def chat(self, body: dict[str, Any]) -> dict[str, Any]:
        messages_of(body)
        response = await self._post(_forwarded(body, passthrough(body)))
        return adopt_choices(self.provider, self.ctx.endpoint, json_of(self.provider, response))

    def chat_stream(self, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        messages_of(body)
        return self._stream(body)

    async def completions(self, body: dict[str, Any]) -> dict[str, Any]:
        prompts_of(body)
        response = await self._post(_forwarded(body, passthrough(body)))
        return adopt_choices(self.provider, self.ctx.endpoint, json_of(self.provider, response))

    def completions_stream(self, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        prompts_of(body)
        return self._stream(body)

    async def embeddings(self, body: dict[str, Any]) -> dict[str, Any]:
        inputs_of(body)
        response = await self._post(_forwarded(body, passthrough(body, drop=_EMBEDDINGS_DROP)))
        vectors, tokens = vectors_of(self.provider, json_of(self.provider, response))
        return embeddings_response(self.ctx.endpoint, vectors, tokens)
