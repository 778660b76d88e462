"""OpenAI and Azure OpenAI (``provider: openai``), and the OpenAI wire shared with ``custom``.

The unified ``llm/v1`` schema *is* OpenAI's, so a request goes upstream nearly as it came
(our own fields dropped, ``model`` set to the upstream id) and an answer comes back with
``model`` set to the endpoint name and ``finishReason`` mirrored for databricks-sdk.

``openai_config`` (compat-api.md §A.2):

- OpenAI: ``openai_api_key`` as a bearer token, ``openai_organization`` as the
  ``OpenAI-Organization`` header, base URL ``openai_api_base`` (default
  ``https://api.openai.com/v1``; the server's ``openai_base_url`` setting changes the default);
- Azure OpenAI (``openai_api_type`` ``azure`` or ``azuread``):
  ``{openai_api_base}/openai/deployments/{openai_deployment_name}/<op>?api-version={openai_api_version}``,
  with the key in an ``api-key`` header (``azure``) or as a bearer token (``azuread``, where
  the key is a Microsoft Entra ID token);
- Microsoft Entra client credentials (``microsoft_entra_tenant_id``, ``_client_id``,
  ``_client_secret``): a token from ``https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token``
  (the ``entra_base_url`` setting changes the host), kept until shortly before it expires.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import urllib.parse
from collections.abc import AsyncIterator, Mapping
from contextlib import aclosing
from typing import Any

import httpx
import orjson

from modelport.entities.providers.base import Provider, ProviderContext, credential
from modelport.entities.providers.http import (
    iter_sse,
    json_of,
    provider_error,
    send,
    translate_transport_errors,
)
from modelport.errors import BadGateway, InvalidState, PermissionDenied
from modelport.spec.llm import (
    CHAT,
    COMPLETIONS,
    EMBEDDINGS,
    embeddings_response,
    inputs_of,
    messages_of,
    passthrough,
    prompts_of,
    usage,
    usage_of,
)

__all__ = ["OPENAI_PATHS", "OpenAIProvider", "OpenAIWire", "adopt_choices", "chunks_of", "vectors_of"]

OPENAI_BASE_URL = "https://api.openai.com/v1"
ENTRA_BASE_URL = "https://login.microsoftonline.com"
ENTRA_SCOPE = "https://cognitiveservices.azure.com/.default"
OPENAI_PATHS = {CHAT: "/chat/completions", COMPLETIONS: "/completions", EMBEDDINGS: "/embeddings"}
#: The caller's encoding choice is the gateway's business: upstream always answers floats.
_EMBEDDINGS_DROP = frozenset({"encoding_format"})


# ---- answers: OpenAI shape in, OpenAI shape out (pure) ------------------------------------------
def adopt_choices(provider: str, endpoint: str, data: Any) -> dict[str, Any]:
    """An upstream chat or completions answer as ours: ``model`` is the endpoint, every
    choice has ``finishReason`` too, ``usage`` is always there."""
    if not isinstance(data, dict) or not isinstance(data.get("choices"), list):
        raise BadGateway(f"Provider '{provider}' answered without 'choices': {str(data)[:200]}")
    data["model"] = endpoint
    for choice in data["choices"]:
        if isinstance(choice, dict):
            choice["finishReason"] = choice.get("finish_reason")
    if not isinstance(data.get("usage"), dict):
        data["usage"] = usage(0, 0)
    return data


def vectors_of(provider: str, data: Any) -> tuple[list[list[float]], int | None]:
    """The vectors of an OpenAI embeddings answer in input order, and its prompt tokens."""
    items = data.get("data") if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise BadGateway(f"Provider '{provider}' answered without 'data': {str(data)[:200]}")
    try:
        ordered = sorted(items, key=lambda d: int(d.get("index", 0)))
        vectors = [d["embedding"] for d in ordered]
    except (AttributeError, KeyError, TypeError, ValueError):
        raise BadGateway(f"Provider '{provider}' answered embeddings in an unknown shape.") from None
    if any(not isinstance(v, list) for v in vectors):
        raise BadGateway(f"Provider '{provider}' answered embeddings that are not lists of floats.")
    used = usage_of(data)
    return vectors, None if used is None else used[0]


async def chunks_of(provider: str, endpoint: str, response: httpx.Response) -> AsyncIterator[dict[str, Any]]:
    """The chunks of an OpenAI-style stream (``data: <json>`` events up to ``[DONE]``) with
    ``model`` set to the endpoint; an ``error`` event raises :class:`BadGateway`."""
    async with aclosing(iter_sse(response)) as events:
        async for _event, data in events:
            if data == "[DONE]":
                return
            try:
                chunk = orjson.loads(data)
            except orjson.JSONDecodeError:
                raise BadGateway(
                    f"Provider '{provider}' streamed something that is not JSON: {data[:200]!r}"
                ) from None
            if not isinstance(chunk, dict):
                raise BadGateway(
                    f"Provider '{provider}' streamed a chunk that is not an object: {data[:200]!r}"
                )
            error = chunk.get("error")
            if error:
                message = error.get("message") if isinstance(error, dict) else error
                raise BadGateway(f"Provider '{provider}' failed while streaming: {message}")
            chunk["model"] = endpoint
            yield chunk


# ---- the OpenAI wire --------------------------------------------------------------------------------
class OpenAIWire(Provider):
    """Chat, completions and embeddings against an OpenAI-compatible API.

    Subclasses set :attr:`urls` (one per task) in ``__init__`` and implement :meth:`headers`.
    """

    tasks = frozenset({CHAT, COMPLETIONS, EMBEDDINGS})
    streaming = frozenset({CHAT, COMPLETIONS})
    #: Whether the body names the model (Azure deployments are named by the URL instead).
    sends_model = True
    #: Ask for the usage chunk on every stream (else only when the caller asked for it).
    always_ask_usage = True

    def __init__(self, ctx: ProviderContext) -> None:
        super().__init__(ctx)
        self.urls: dict[str, str] = {}

    async def headers(self) -> dict[str, str]:
        raise NotImplementedError

    def _body(
        self, body: dict[str, Any], *, stream: bool = False, drop: frozenset[str] = frozenset()
    ) -> dict[str, Any]:
        out = passthrough(body, drop=drop)
        if self.sends_model:
            out["model"] = self.ctx.model
        if stream:
            out["stream"] = True
            options = body.get("stream_options")
            if self.always_ask_usage:
                out["stream_options"] = {"include_usage": True}
            elif isinstance(options, dict):
                out["stream_options"] = options
        return out

    async def _post(self, task: str, body: dict[str, Any], *, stream: bool = False) -> httpx.Response:
        return await send(
            self.ctx,
            self.provider,
            "POST",
            self.urls[task],
            headers=await self.headers(),
            json=body,
            stream=stream,
        )

    async def chat(self, body: dict[str, Any]) -> dict[str, Any]:
        messages_of(body)
        response = await self._post(CHAT, self._body(body))
        return adopt_choices(self.provider, self.ctx.endpoint, json_of(self.provider, response))

    async def chat_stream(self, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        messages_of(body)
        response = await self._post(CHAT, self._body(body, stream=True), stream=True)
        async with aclosing(chunks_of(self.provider, self.ctx.endpoint, response)) as chunks:
            async for chunk in chunks:
                yield chunk

    async def completions(self, body: dict[str, Any]) -> dict[str, Any]:
        prompts_of(body)
        response = await self._post(COMPLETIONS, self._body(body))
        return adopt_choices(self.provider, self.ctx.endpoint, json_of(self.provider, response))

    async def completions_stream(self, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        prompts_of(body)
        response = await self._post(COMPLETIONS, self._body(body, stream=True), stream=True)
        async with aclosing(chunks_of(self.provider, self.ctx.endpoint, response)) as chunks:
            async for chunk in chunks:
                yield chunk

    async def embeddings(self, body: dict[str, Any]) -> dict[str, Any]:
        inputs_of(body)
        response = await self._post(EMBEDDINGS, self._body(body, drop=_EMBEDDINGS_DROP))
        vectors, tokens = vectors_of(self.provider, json_of(self.provider, response))
        return embeddings_response(self.ctx.endpoint, vectors, tokens)


# ---- Microsoft Entra client credentials -----------------------------------------------------------------
class EntraTokens:
    """Access tokens by (tenant, client, secret digest), kept until a minute before they expire;
    one request at a time per key, so a burst of queries asks Entra once."""

    def __init__(self) -> None:
        self._tokens: dict[tuple[str, ...], tuple[str, float]] = {}
        self._locks: dict[tuple[str, ...], asyncio.Lock] = {}

    async def get(self, ctx: ProviderContext, base: str, tenant: str, client_id: str, secret: str) -> str:
        key = (base, tenant, client_id, hashlib.sha256(secret.encode()).hexdigest())
        hit = self._tokens.get(key)
        if hit is not None and hit[1] > time.monotonic():
            return hit[0]
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            hit = self._tokens.get(key)
            if hit is not None and hit[1] > time.monotonic():
                return hit[0]
            token, lifetime = await self._request(ctx, base, tenant, client_id, secret)
            self._tokens[key] = (token, time.monotonic() + max(lifetime - 60, lifetime / 2))
            return token

    @staticmethod
    async def _request(
        ctx: ProviderContext, base: str, tenant: str, client_id: str, secret: str
    ) -> tuple[str, float]:
        url = f"{base}/{urllib.parse.quote(tenant, safe='')}/oauth2/v2.0/token"
        form = urllib.parse.urlencode(
            {
                "grant_type": "client_credentials",
                "client_id": client_id,
                "client_secret": secret,
                "scope": ENTRA_SCOPE,
            }
        ).encode()
        request = ctx.http.build_request(
            "POST",
            url,
            content=form,
            headers={"content-type": "application/x-www-form-urlencoded"},
            timeout=ctx.timeout,
        )
        host = request.url.host
        with translate_transport_errors(
            f"Microsoft Entra did not answer within {ctx.timeout:g}s ({host}).",
            f"Could not reach Microsoft Entra at {host}",
        ):
            response = await ctx.http.send(request)
        if response.status_code in (400, 401, 403):
            try:
                data = orjson.loads(response.content)
                detail = data.get("error_description") or data.get("error") or response.text
            except (orjson.JSONDecodeError, AttributeError):
                detail = response.text[:300]
            raise PermissionDenied(
                f"Microsoft Entra refused a token to client '{client_id}' of tenant '{tenant}' "
                f"(check the endpoint's microsoft_entra_* settings): {detail}"
            )
        if response.status_code >= 400:
            raise provider_error("openai", response.status_code, response.content, response.headers)
        data = json_of("openai", response)
        token = data.get("access_token") if isinstance(data, dict) else None
        if not token:
            raise BadGateway("Microsoft Entra answered without an access_token.")
        try:
            lifetime = float(data.get("expires_in", 3600))
        except (TypeError, ValueError):
            lifetime = 3600.0
        return str(token), lifetime


ENTRA_TOKENS = EntraTokens()


# ---- the provider ---------------------------------------------------------------------------------------
def _required(config: Mapping[str, Any], key: str, why: str) -> str:
    value = config.get(key)
    if not value:
        raise InvalidState(f"openai_config.{key} is missing: {why}.")
    return str(value)


class OpenAIProvider(OpenAIWire):
    """OpenAI, Azure OpenAI with a key or an Entra ID token, or Entra client credentials."""

    provider = "openai"

    def __init__(self, ctx: ProviderContext) -> None:
        super().__init__(ctx)
        config = ctx.config
        api_type = str(config.get("openai_api_type") or "openai").lower()
        if api_type not in ("openai", "azure", "azuread"):
            raise InvalidState(
                f"openai_config.openai_api_type '{config.get('openai_api_type')}' is not one of "
                "openai, azure, azuread."
            )
        self.api_type = api_type
        self.entra = config.get("microsoft_entra_tenant_id") is not None
        if self.entra:
            self.tenant = _required(config, "microsoft_entra_tenant_id", "Entra client credentials need it")
            self.client_id = _required(
                config, "microsoft_entra_client_id", "Entra client credentials need it"
            )
            self.entra_base = ctx.base_url("entra", ENTRA_BASE_URL)
            if credential(config, "microsoft_entra_client_secret", _no_resolve) is None:
                raise InvalidState("openai_config.microsoft_entra_client_secret is missing.")
        elif credential(config, "openai_api_key", _no_resolve) is None:
            raise InvalidState(
                "openai_config has no credentials: give openai_api_key (a secret reference), "
                "openai_api_key_plaintext, or the microsoft_entra_* client credentials."
            )
        if api_type in ("azure", "azuread") or self.entra:
            why = "Azure OpenAI needs it"
            base = _required(config, "openai_api_base", why).rstrip("/")
            deployment = urllib.parse.quote(_required(config, "openai_deployment_name", why), safe="")
            version = urllib.parse.quote(_required(config, "openai_api_version", why), safe="")
            self.sends_model = False
            self.urls = {
                task: f"{base}/openai/deployments/{deployment}{path}?api-version={version}"
                for task, path in OPENAI_PATHS.items()
            }
        else:
            base = str(config.get("openai_api_base") or ctx.base_url("openai", OPENAI_BASE_URL))
            self.urls = {task: base.rstrip("/") + path for task, path in OPENAI_PATHS.items()}
        organization = config.get("openai_organization")
        self._static = {"openai-organization": str(organization)} if organization and not self.entra else {}

    async def headers(self) -> dict[str, str]:
        config = self.ctx.config
        if self.entra:
            secret = credential(config, "microsoft_entra_client_secret", self.ctx.resolve) or ""
            token = await ENTRA_TOKENS.get(self.ctx, self.entra_base, self.tenant, self.client_id, secret)
            return {"authorization": f"Bearer {token}"}
        key = credential(config, "openai_api_key", self.ctx.resolve) or ""
        if self.api_type == "azure":
            return {"api-key": key}
        return {"authorization": f"Bearer {key}", **self._static}


def _no_resolve(scope: str, key: str) -> str:
    """For checking that a credential is configured without resolving it yet."""
    return f"{{{{secrets/{scope}/{key}}}}}"
