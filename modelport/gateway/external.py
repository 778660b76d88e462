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

import base64
import sys
from array import array
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping
from typing import Any, Protocol

import httpx

from modelport.entities.providers import PROVIDERS
from modelport.entities.providers.base import (
    CHAT,
    COMPLETIONS,
    EMBEDDINGS,
    SECRET_REF,
    Provider,
    ProviderContext,
    SecretResolver,
)
from modelport.errors import InvalidParameterValue, NotImplementedByServer
from modelport.gateway.transport import PooledTransport
from modelport.spec.endpoint import PROVIDER_CONFIG_KEY
from modelport.spec.endpoint import Provider as ProviderName

__all__ = ["AsyncSecretResolver", "ChunkStream", "Chunks", "ExternalPlane", "base64_embeddings"]

#: ``(scope, key) -> value`` without blocking the event loop.
AsyncSecretResolver = Callable[[str, str], Awaitable[str]]

#: What the body of each task must hold, and how to say so.
_NEEDS = {
    CHAT: ("messages", "a list of {role, content} messages"),
    COMPLETIONS: ("prompt", "a string or a list of strings"),
    EMBEDDINGS: ("input", "a string or a list of strings"),
}
_INPUT_FIELDS = ("messages", "prompt", "input", "dataframe_split", "dataframe_records", "instances", "inputs")


def _fits(task: str, body: Mapping[str, Any], endpoint: str) -> bool:
    """Raise :class:`InvalidParameterValue` unless ``body`` is a query for ``task``; return
    whether it asks for a stream."""
    field, shape = _NEEDS[task]
    if field not in body:
        present = [f for f in _INPUT_FIELDS if f in body]
        has = f"; the body has {', '.join(repr(f) for f in present)}" if present else ""
        raise InvalidParameterValue(
            f"Endpoint '{endpoint}' serves {task}: the body needs '{field}' ({shape}){has}."
        )
    stream = body.get("stream", False)
    if stream is None:
        stream = False
    if not isinstance(stream, bool):
        raise InvalidParameterValue(f"Invalid value for 'stream': {stream!r} is not true or false.")
    if stream and task == EMBEDDINGS:
        raise InvalidParameterValue("Embeddings cannot be streamed: leave out 'stream' or set it to false.")
    return stream


def _references(value: Any) -> Iterator[tuple[str, str]]:
    """``(scope, key)`` of every secret reference in a provider block."""
    if isinstance(value, Mapping):
        for item in value.values():
            yield from _references(item)
    elif isinstance(value, list):
        for item in value:
            yield from _references(item)
    elif isinstance(value, str):
        match = SECRET_REF.match(value)
        if match is not None:
            yield match.group(1), match.group(2)


def base64_embeddings(answer: dict[str, Any]) -> dict[str, Any]:
    """The embeddings answer with each vector as base64 of little-endian float32 (what the
    OpenAI API sends for ``encoding_format: "base64"``)."""
    for item in answer["data"]:
        packed = array("f", item["embedding"])
        if sys.byteorder == "big":
            packed.byteswap()
        item["embedding"] = base64.b64encode(packed.tobytes()).decode("ascii")
    return answer


class Chunks(Protocol):
    """A streamed answer: iterate it, then always ``aclose`` it (that releases the
    provider's connection, even when the stream was left half-way or never iterated)."""

    def __aiter__(self) -> Chunks: ...

    async def __anext__(self) -> dict[str, Any]: ...

    async def aclose(self) -> None: ...


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
    provider (connect, each read, each write).
    """

    def __init__(
        self,
        resolve: SecretResolver,
        *,
        timeout: float,
        resolve_async: AsyncSecretResolver | None = None,
        providers: Mapping[str, type[Provider]] | None = None,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self._resolve = resolve
        self._resolve_async = resolve_async
        # The latest value each reference resolved to (by a query of this plane); pruned by retain().
        self._values: dict[tuple[str, str], str] = {}
        self._refs: dict[Provider, tuple[tuple[str, str], ...]] = {}
        self._timeout = timeout
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
        )
        found = self._providers[key] = cls(ctx)
        self._refs[found] = tuple(dict.fromkeys(_references(ctx.config)))
        return found

    def _resolved(self, scope: str, key: str) -> str:
        value = self._values.get((scope, key))
        return value if value is not None else self._resolve(scope, key)

    async def _resolve_references(self, provider: Provider) -> None:
        assert self._resolve_async is not None
        refs = self._refs.get(provider)
        if refs is None:  # a provider this plane did not build
            refs = tuple(dict.fromkeys(_references(provider.ctx.config)))
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
        which has arrived. The caller closes the stream (``aclose``)."""
        ctx = provider.ctx
        stream = _fits(ctx.task, body, ctx.endpoint)
        if self._resolve_async is not None:
            await self._resolve_references(provider)
        if ctx.task == CHAT:
            if stream:
                return await self._stream(provider.chat_stream(body), body)
            return await provider.chat(body)
        if ctx.task == COMPLETIONS:
            if stream:
                return await self._stream(provider.completions_stream(body), body)
            return await provider.completions(body)
        encoding = body.pop("encoding_format", None)
        if encoding not in (None, "float", "base64"):
            raise InvalidParameterValue(
                f"Invalid value for 'encoding_format': {encoding!r} is not float or base64."
            )
        answer = await provider.embeddings(body)
        return base64_embeddings(answer) if encoding == "base64" else answer

    @staticmethod
    async def _stream(chunks: AsyncIterator[dict[str, Any]], body: Mapping[str, Any]) -> ChunkStream:
        options = body.get("stream_options")
        return await ChunkStream.start(
            chunks, isinstance(options, dict) and bool(options.get("include_usage"))
        )

    async def aclose(self) -> None:
        self._providers.clear()
        self._refs.clear()
        self._values.clear()
        await self._http.aclose()
