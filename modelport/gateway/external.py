"""External models on the query path: one provider per served entity, one HTTP pool for all.

:class:`ExternalPlane` builds the :class:`~modelport.entities.providers.base.Provider` of an
external served entity the first time it is queried, keyed by (endpoint id, config
version, entity name), and keeps it until that config version stops serving
(:meth:`ExternalPlane.retain`). Every provider shares one pooled ``httpx.AsyncClient``
(HTTP/1.1 with keep-alive over :class:`~modelport.gateway.transport.PooledTransport`: one
TLS handshake per connection, not per query), closed by :meth:`ExternalPlane.aclose` at
shutdown.

:meth:`ExternalPlane.answer` checks that the body fits the entity's task, calls the
provider and returns either the answer (a dict in the unified shape) or, for
``"stream": true``, an async iterator of chunk dicts whose first chunk has already arrived,
so that every error before the first byte is an ordinary error response.

Providers look their credentials up synchronously (``base.credential``). So that a secret
read never blocks the event loop, the plane resolves the ``{{secrets/...}}`` references of
the entity's provider block with the asynchronous resolver first (from memory, or from the
store in a worker thread) and hands the provider those values.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from typing import Any

import httpx

from modelport.entities.providers import PROVIDERS
from modelport.entities.providers.base import Provider, ProviderContext
from modelport.errors import NotImplementedByServer
from modelport.gateway.transport import PooledTransport
from modelport.spec.endpoint import PROVIDER_CONFIG_KEY
from modelport.spec.endpoint import Provider as ProviderName
from modelport.spec.images import ImageLimits
from modelport.spec.llm import CHAT, COMPLETIONS, base64_embeddings, check_request
from modelport.spec.secrets import SecretResolver, references_of

__all__ = ["AsyncSecretResolver", "ChunkStream", "ExternalPlane"]

#: ``(scope, key) -> value`` without blocking the event loop.
AsyncSecretResolver = Callable[[str, str], Awaitable[str]]


def _references(config: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    """``(scope, key)`` of each secret reference in a provider block, once each, in order."""
    return tuple(dict.fromkeys((ref.scope, ref.key) for ref in references_of(config)))


class ChunkStream:
    """The provider's chunks as OpenAI's ``stream_options.include_usage`` promises them:
    when asked, the usage in one last chunk of its own (``choices: []``); when not, no
    usage-only chunk (clients that read ``choices[0]`` of every chunk stay happy).
    A usage a provider put on a content chunk stays there unless the caller asked for the
    usage chunk, which then carries it instead."""

    def __init__(
        self, source: AsyncIterator[dict[str, Any]], first: dict[str, Any] | None, include_usage: bool
    ) -> None:
        self._source = source
        self._first = first
        self._ended = first is None
        self._include = include_usage
        self._final: dict[str, Any] | None = None

    def __aiter__(self) -> ChunkStream:
        return self

    async def __anext__(self) -> dict[str, Any]:
        while True:
            if self._first is not None:
                chunk, self._first = self._first, None
            elif self._ended:
                final, self._final = self._final, None
                if final is not None and self._include:
                    return final
                raise StopAsyncIteration
            else:
                try:
                    chunk = await anext(self._source)
                except StopAsyncIteration:
                    self._ended = True
                    continue
            used = chunk.get("usage", False)
            if not chunk.get("choices"):
                if used:
                    self._final = chunk
                continue
            if used is None:
                del chunk["usage"]
            elif self._include and used:
                del chunk["usage"]
                self._final = {**chunk, "choices": [], "usage": used}
            return chunk

    async def aclose(self) -> None:
        self._ended, self._first, self._final = True, None, None
        aclose = getattr(self._source, "aclose", None)
        if aclose is not None:
            await aclose()

    @classmethod
    async def start(cls, source: AsyncIterator[dict[str, Any]], include_usage: bool) -> ChunkStream:
        """Wait for the first chunk, so that a failure before it is raised here."""
        try:
            first = await anext(source)
        except StopAsyncIteration:
            return cls(source, None, include_usage)
        except BaseException:
            aclose = getattr(source, "aclose", None)
            if aclose is not None:
                await aclose()
            raise
        return cls(source, first, include_usage)


class ExternalPlane:
    """The providers of this server's external served entities (see the module docstring).

    ``resolve`` looks secret references up (``{{secrets/scope/key}}``) at request time.
    With ``resolve_async`` too, every query first resolves its provider's references with it
    and the provider gets the values so found (``resolve``, which may block, only answers a
    reference that is not in the provider's block). ``timeout`` bounds each wait on a
    provider (connect, each read, each write). ``base_urls`` replace providers' default
    URLs (``Settings.provider_base_urls``; see ``ProviderContext.base_url``). ``images``
    bounds the image parts of chat queries (``Settings.max_image_bytes``,
    ``max_images_per_request``).
    """

    def __init__(
        self,
        resolve: SecretResolver,
        *,
        timeout: float,
        resolve_async: AsyncSecretResolver | None = None,
        providers: Mapping[str, type[Provider]] | None = None,
        http: httpx.AsyncClient | None = None,
        base_urls: Mapping[str, str] | None = None,
        images: ImageLimits | None = None,
    ) -> None:
        self._resolve = resolve
        self._images = images or ImageLimits()
        self._resolve_async = resolve_async
        # The latest value each reference resolved to (by a query of this plane); pruned by retain().
        self._values: dict[tuple[str, str], str] = {}
        self._refs: dict[Provider, tuple[tuple[str, str], ...]] = {}
        self._timeout = timeout
        self._base_urls = dict(base_urls or {})
        self._classes = PROVIDERS if providers is None else providers
        self._http = http or httpx.AsyncClient(
            transport=PooledTransport(max_idle_per_origin=256, keepalive_expiry=30.0),
            timeout=timeout,
            follow_redirects=False,
        )
        self._providers: dict[tuple[str, int, str], Provider] = {}

    def provider(self, endpoint_id: str, endpoint: str, version: int, entity: Mapping[str, Any]) -> Provider:
        """The provider of an external served entity of config ``version`` (built on first use)."""
        key = (endpoint_id, version, str(entity["name"]))
        found = self._providers.get(key)
        if found is not None:
            return found
        ext = entity["external_model"]
        name = str(ext["provider"])
        cls = self._classes.get(name)
        if cls is None:
            raise NotImplementedByServer(
                f"Provider '{name}' of served entity '{entity['name']}' is not available in this "
                f"modelport server yet (available: {', '.join(sorted(self._classes)) or 'none'})."
            )
        ctx = ProviderContext(
            endpoint=endpoint,
            model=str(ext["name"]),
            task=str(ext["task"]),
            config=ext.get(PROVIDER_CONFIG_KEY[ProviderName(name)]) or {},
            resolve=self._resolve if self._resolve_async is None else self._resolved,
            http=self._http,
            timeout=self._timeout,
            base_urls=self._base_urls,
        )
        found = self._providers[key] = cls(ctx)
        self._refs[found] = _references(ctx.config)
        return found

    def _resolved(self, scope: str, key: str) -> str:
        value = self._values.get((scope, key))
        return value if value is not None else self._resolve(scope, key)

    async def _resolve_references(self, provider: Provider) -> None:
        assert self._resolve_async is not None
        refs = self._refs.get(provider)
        if refs is None:  # a provider this plane did not build
            refs = _references(provider.ctx.config)
        for ref in refs:
            self._values[ref] = await self._resolve_async(*ref)

    def retain(self, serving: Iterable[tuple[str, int]]) -> None:
        """Forget the providers of config versions no longer in ``serving`` ((endpoint id, version))."""
        live = set(serving)
        for key in [k for k in self._providers if (k[0], k[1]) not in live]:
            self._refs.pop(self._providers.pop(key), None)
        used = {ref for refs in self._refs.values() for ref in refs}
        for ref in [r for r in self._values if r not in used]:
            del self._values[ref]

    async def answer(self, provider: Provider, body: dict[str, Any]) -> dict[str, Any] | ChunkStream:
        """The provider's answer to ``body``: a dict, or for a stream the chunks, the first of
        which has arrived. The caller closes the stream (``aclose``).

        ``body`` is left as it is (providers only read it): a fallback hands the same body to
        the next served entity when this one fails."""
        ctx = provider.ctx
        request = check_request(body, ctx.task, endpoint=ctx.endpoint, images=self._images)
        if self._resolve_async is not None:
            await self._resolve_references(provider)
        if ctx.task == CHAT:
            if request.stream:
                return await ChunkStream.start(provider.chat_stream(body), request.include_usage)
            return await provider.chat(body)
        if ctx.task == COMPLETIONS:
            if request.stream:
                return await ChunkStream.start(provider.completions_stream(body), request.include_usage)
            return await provider.completions(body)
        # The caller's encoding is applied here: providers are asked for floats.
        answer = await provider.embeddings({k: v for k, v in body.items() if k != "encoding_format"})
        return base64_embeddings(answer) if request.base64 else answer

    async def aclose(self) -> None:
        self._providers.clear()
        self._refs.clear()
        self._values.clear()
        await self._http.aclose()
