"""The engine contract: what a foundation-model replica runs, whatever the engine.

An engine lives inside one replica process (``runtime/engine_handler.py``) and is
driven from that process's asyncio loop; engines that compute in threads or subprocesses
hide that behind these coroutines. Two kinds:

- :class:`GenerationEngine` (chat and completions): :meth:`~GenerationEngine.generate`
  is an async iterator of :data:`Event`\\ s for one request: text deltas per choice, one
  :class:`Finished` per choice, and last one :class:`Usage`. Closing the iterator early
  (``aclose()``, which is what happens when the client goes away) cancels the request and
  frees what it held (its sequence slots, its KV cache) before ``aclose()`` returns.
  Concurrent requests are batched by the engine where it can.
- :class:`EmbeddingEngine`: :meth:`~EmbeddingEngine.embed` turns a list of texts into
  vectors and the number of tokens they held.

Requests reach engines already validated (``entities/foundation/requests.py``): the
engine may trust every field of :class:`Sampling`. What a request asks for that the model
cannot do (a prompt longer than the context) raises :class:`~modelport.errors.BadRequest`.
"""

from __future__ import annotations

import abc
import os
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "EmbeddingEngine",
    "Embeddings",
    "Engine",
    "EngineInfo",
    "Event",
    "Finished",
    "GenerationEngine",
    "GenerationRequest",
    "Sampling",
    "TextDelta",
    "Usage",
    "default_threads",
]


def default_threads() -> int:
    """Compute threads of an engine that was given none: half the CPUs this process may run
    on (at least 1). More threads than free cores make engines' spinning workers fight each
    other (one oversubscribed llama.cpp run here was 14 times slower), and the server's event
    loop needs a core too. The server's ``llm_threads`` and ``embed_threads`` settings and an
    entity's ``MODELPORT_LLM_THREADS`` reach engines as their ``threads`` option."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, cores // 2)


@dataclass(frozen=True)
class Sampling:
    """How to pick tokens. ``max_tokens`` is always set (the caller applies the default)."""

    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0  # 0: no top-k cut
    stop: tuple[str, ...] = ()
    seed: int | None = None
    #: Constrain the answer to JSON: ``{}`` for any JSON object (``response_format``
    #: ``json_object``), otherwise a JSON schema the answer must match (``json_schema``).
    json_schema: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class GenerationRequest:
    """One chat or completions request. Exactly one of ``messages`` / ``prompt`` is set.

    ``messages`` are OpenAI message dicts whose ``content`` is a string (the caller joins
    content parts); the engine renders them with the model's own chat template.
    """

    sampling: Sampling
    messages: Sequence[Mapping[str, Any]] | None = None
    prompt: str | None = None
    #: Number of choices, each generated as its own sequence (seeded ``seed + index``).
    n: int = 1


@dataclass(frozen=True)
class TextDelta:
    """New text of choice ``index``; stop sequences are never part of it."""

    index: int
    text: str


@dataclass(frozen=True)
class Finished:
    """Choice ``index`` ended: ``"stop"`` (end of text or a stop sequence) or ``"length"``
    (``max_tokens`` reached, or the context filled up)."""

    index: int
    reason: str


@dataclass(frozen=True)
class Usage:
    """Token counts of the whole request (all choices); the last event of every request."""

    prompt_tokens: int
    completion_tokens: int


Event = TextDelta | Finished | Usage


@dataclass(frozen=True)
class Embeddings:
    vectors: list[list[float]]
    prompt_tokens: int


@dataclass(frozen=True)
class EngineInfo:
    """What the worker reports about its engine (in PONG stats and the build log)."""

    engine: str  # "llama.cpp", "onnxruntime", "sentence-transformers", "vllm"
    task: str  # CHAT, COMPLETIONS or EMBEDDINGS (spec.llm); chat engines serve completions too
    model: str  # what answers carry as ``model``
    context_length: int = 0
    dimensions: int = 0  # embeddings
    extra: dict[str, Any] = field(default_factory=dict)


class Engine(abc.ABC):
    info: EngineInfo

    def stats(self) -> dict[str, Any]:
        """Counters for the worker's PONG (at least ``tokens_per_second``: measured decode
        throughput of this replica, 0.0 until measured)."""
        return {"tokens_per_second": 0.0}

    async def aclose(self) -> None:  # noqa: B027 (engines without threads have nothing to free)
        """Free the model (threads, subprocesses); requests in flight end with an error."""


class GenerationEngine(Engine):
    @abc.abstractmethod
    def generate(self, request: GenerationRequest) -> AsyncIterator[Event]:
        """Events of one request; closing the iterator early cancels it."""


class EmbeddingEngine(Engine):
    @abc.abstractmethod
    async def embed(self, texts: Sequence[str]) -> Embeddings:
        """One vector per text, in order."""
