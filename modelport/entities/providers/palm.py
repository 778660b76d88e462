"""PaLM (``palm``, block ``palm_config``), served by its successor, the Gemini API.

Google shut the PaLM API down; its key (``palm_api_key``) is a Google AI Studio API key,
which the Gemini API at ``generativelanguage.googleapis.com`` takes as ``x-goog-api-key``.
``external_model.name`` must therefore be a Gemini model (``gemini-2.0-flash``,
``text-embedding-004``); PaLM model ids such as ``chat-bison-001`` are answered 400 by Google.

=====================  =================================================================
task                   Gemini API call (``{base}/v1beta/models/{model}``)
=====================  =================================================================
``llm/v1/chat``        ``:generateContent``; streaming ``:streamGenerateContent?alt=sse``
``llm/v1/completions`` the same, with each prompt as the only user message
``llm/v1/embeddings``  ``:batchEmbedContents`` (at most 100 texts a call; Google reports
                       no token counts, so usage is 0)
=====================  =================================================================

``base`` is ``https://generativelanguage.googleapis.com``, or the server's ``palm_base_url`` setting.
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

import httpx

from modelport.entities.providers.base import ProviderContext, credential
from modelport.entities.providers.gemini import GeminiChat
from modelport.entities.providers.http import json_of, send
from modelport.errors import BadGateway, BadRequest, PermissionDenied
from modelport.spec.llm import CHAT, COMPLETIONS, EMBEDDINGS, embeddings_response, inputs_of

__all__ = ["PalmProvider", "embed_to_gemini_api"]

NAME = "palm"
DEFAULT_BASE = "https://generativelanguage.googleapis.com"
EMBED_BATCH = 100


def embed_to_gemini_api(body: dict[str, Any], model: str, texts: list[str]) -> dict[str, Any]:
    """The ``:batchEmbedContents`` body; ``extra_params`` (``task_type``, ``title``...) go
    into every request, ``dimensions`` becomes ``outputDimensionality``."""
    extra: dict[str, Any] = {}
    for key, value in (body.get("extra_params") or {}).items():
        head, *rest = key.split("_")
        extra[head + "".join(w[:1].upper() + w[1:] for w in rest)] = value
    if body.get("dimensions") is not None:
        extra["outputDimensionality"] = body["dimensions"]
    return {"requests": [{"model": model, "content": {"parts": [{"text": t}]}, **extra} for t in texts]}


class PalmProvider(GeminiChat):
    """Gemini models through the Gemini API (Google AI Studio key)."""

    provider: ClassVar[str] = NAME
    service: ClassVar[str] = "the Gemini API"
    tasks: ClassVar[frozenset[str]] = frozenset({CHAT, COMPLETIONS, EMBEDDINGS})
    streaming: ClassVar[frozenset[str]] = frozenset({CHAT, COMPLETIONS})

    def __init__(self, ctx: ProviderContext) -> None:
        super().__init__(ctx)
        base = ctx.base_url("palm", DEFAULT_BASE)
        self.model = ctx.model if ctx.model.startswith(("models/", "tunedModels/")) else f"models/{ctx.model}"
        self.url = f"{base}/v1beta/{self.model}"

    def _headers(self) -> dict[str, str]:
        key = credential(self.ctx.config, "palm_api_key", self.ctx.resolve)
        if not key:
            raise PermissionDenied("The endpoint's palm_config has no palm_api_key.")
        return {"x-goog-api-key": key, "accept": "application/json"}

    async def _post(self, url: str, payload: dict[str, Any], *, stream: bool = False) -> httpx.Response:
        headers = {**self._headers(), **({"accept": "text/event-stream"} if stream else {})}
        try:
            return await send(self.ctx, NAME, "POST", url, headers=headers, json=payload, stream=stream)
        except BadRequest as exc:
            # Google answers a wrong API key with 400 INVALID_ARGUMENT (reason API_KEY_INVALID).
            if "API key not valid" in str(exc):
                raise PermissionDenied(f"{exc} (check the palm_api_key configured on the endpoint)") from None
            raise

    async def embeddings(self, body: dict[str, Any]) -> dict[str, Any]:
        texts = inputs_of(body)
        batches = [texts[i : i + EMBED_BATCH] for i in range(0, len(texts), EMBED_BATCH)]
        answers = await asyncio.gather(*(self._embed(body, batch) for batch in batches))
        return embeddings_response(self.ctx.endpoint, [v for batch in answers for v in batch], 0)

    async def _embed(self, body: dict[str, Any], texts: list[str]) -> list[list[float]]:
        payload = embed_to_gemini_api(body, self.model, texts)
        answer = json_of(NAME, await self._post(f"{self.url}:batchEmbedContents", payload))
        embeddings = answer.get("embeddings")
        if not isinstance(embeddings, list) or len(embeddings) != len(texts):
            raise BadGateway(
                f"Provider '{NAME}' answered :batchEmbedContents without one embedding per text."
            )
        return [e.get("values") or [] for e in embeddings]
