"""Any OpenAI-compatible server (``provider: custom``): vLLM, TGI, Ollama, LiteLLM, ...

``custom_provider_config.custom_provider_url`` is the API's base URL (``http://host:8000/v1``):
``/chat/completions``, ``/completions`` and ``/embeddings`` are appended. A URL that already
ends with one of those paths is taken as the base URL plus that path. Authentication is
optional: ``api_key_auth`` (``{key, value}``: the header ``key: value``) or
``bearer_token_auth`` (``{token}``: ``Authorization: Bearer <token>``).
"""

from __future__ import annotations

from modelport.entities.providers.base import ProviderContext, credential
from modelport.entities.providers.openai import OPENAI_PATHS, OpenAIWire

__all__ = ["CustomProvider", "base_url_of"]


def base_url_of(url: str) -> str:
    """The API base of ``custom_provider_url`` (a trailing operation path removed)."""
    url = url.rstrip("/")
    for path in sorted(OPENAI_PATHS.values(), key=len, reverse=True):
        if url.endswith(path):
            return url[: -len(path)]
    return url


class CustomProvider(OpenAIWire):
    provider = "custom"
    # Some OpenAI-compatible servers reject stream_options: pass on only what the caller sent.
    always_ask_usage = False

    def __init__(self, ctx: ProviderContext) -> None:
        super().__init__(ctx)
        base = base_url_of(str(ctx.config["custom_provider_url"]))
        self.urls = {task: base + path for task, path in OPENAI_PATHS.items()}
        self._api_key = ctx.config.get("api_key_auth")
        self._bearer = ctx.config.get("bearer_token_auth")

    async def headers(self) -> dict[str, str]:
        if isinstance(self._api_key, dict):
            value = credential(self._api_key, "value", self.ctx.resolve) or ""
            return {str(self._api_key["key"]): value}
        if isinstance(self._bearer, dict):
            token = credential(self._bearer, "token", self.ctx.resolve) or ""
            return {"authorization": f"Bearer {token}"}
        return {}
