"""One query as it goes through the gateway: the request, what was decided, the answer.

An :class:`Exchange` is made by the API for each query and handed to every step of the
pipeline (``gateway/pipeline.py``). It parses the request body at most once (and only when a
step needs its fields: a custom model's body goes to the replica as the bytes received), and
an :class:`Answer` decodes its body at most once (guardrails, token counting and the usage
record share one decode).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from modelport.gateway.routing import Route
from modelport.log_format import request_id_var
from modelport.spec.identity import Caller
from modelport.spec.llm import json_object, usage_of

__all__ = ["Answer", "Chunks", "Exchange", "Tokens"]

#: ``(prompt_tokens, completion_tokens, total_tokens)`` of an answer, when it says.
Tokens = tuple[int, int, int] | None


class Chunks(Protocol):
    """A streamed answer: iterate it, then always ``aclose`` it (that releases the replica's or
    the provider's stream, even when it was left half-way or never iterated). Chunks are
    dicts (a provider's) or JSON bytes (a replica's, sent as they are)."""

    def __aiter__(self) -> AsyncIterator[Any]: ...

    async def __anext__(self) -> Any: ...

    async def aclose(self) -> None: ...


@dataclass
class Answer:
    """A JSON ``body``, or for a streamed answer ``stream``: chunks to send as server-sent events,
    the first of which has arrived. Whoever takes a ``stream`` must ``aclose`` it."""

    body: bytes
    served: str
    stream: Chunks | None = None
    _data: Any = field(default=None, repr=False)

    @classmethod
    def of(cls, data: dict[str, Any], served: str) -> Answer:
        """An answer built here (a provider's dict): encoded once, its dict kept."""
        return cls(orjson.dumps(data), served, None, data)

    @property
    def data(self) -> Any:
        """The body decoded (once); None when it is not JSON."""
        if self._data is None and self.stream is None:
            try:
                self._data = orjson.loads(self.body)
            except orjson.JSONDecodeError:
                self._data = False
        return self._data if self._data is not False else None

    def replaced(self, data: dict[str, Any]) -> Answer:
        """The same answer with a new body (a guardrail masked it)."""
        return Answer(orjson.dumps(data), self.served, None, data)

    @property
    def tokens(self) -> Tokens:
        """The answer's ``usage``; the body is decoded for it only when it mentions ``usage`` at all
        (a custom model's predictions are never decoded for it)."""
        if self.stream is not None or (self._data is None and b'"usage"' not in self.body):
            return None
        return usage_of(self.data)


@dataclass
class Exchange:
    """One query: who asks what of which endpoint, and what the pipeline decided on the way."""

    caller: Caller
    endpoint: str
    #: The request body as the client sent it.
    body: bytes
    #: ``/served-models/{served}/invocations``: this entity, no traffic split, no fallback.
    served: str | None = None
    #: The OpenAI-compatible route's task (``llm/v1/chat``, ...), None for ``/invocations``.
    task: str | None = None
    request_id: str = field(default_factory=lambda: request_id_var.get() or uuid.uuid4().hex)
    started: float = field(default_factory=time.perf_counter)
    timestamp_ms: int = field(default_factory=lambda: int(time.time() * 1000))
    route: Route | None = None
    #: The request as the served model receives it (input guardrails may have masked it).
    sent: bytes = b""
    #: The request as a feature-aware model's raw model received it (the looked-up features
    #: in it), when the endpoint records queries; the inference table's ``request`` then.
    model_input: bytes | None = None
    #: ``model_input`` was cut to the inference table's limit (by the replica).
    model_input_truncated: bool = False
    #: With fallbacks: every served entity tried, with its status (the last one answered).
    chain: list[dict[str, Any]] = field(default_factory=list)
    #: Every guardrail decision taken on the request and on the answer.
    decisions: list[dict[str, Any]] = field(default_factory=list)
    #: The response cache's verdict (``hit``, ``miss``, ``bypass``); None when the endpoint has none.
    cache: str | None = None
    #: The served entity asked last: the one that answered or failed (None when none was: a
    #: refusal by the rate limits or a guardrail). Observers and error records read it.
    entity: str | None = None
    #: A shadow copy (``gateway/shadow.py``): the request id of the live query it copies.
    shadow_of: str | None = None
    #: A replay (``control/replays.py``): the request id of the logged query it sends again.
    replay_of: str | None = None
    #: A replay: the replay's id (``request_metadata["replay_id"]`` of its inference rows).
    replay_id: str | None = None
    #: An agent's answer: the MLflow trace of the request as JSON (``Trace.to_json()``), from the
    #: replica's trailer (set by ``gateway/served.py``; a stream's once its last chunk is read).
    #: The inference row's ``trace`` (``gateway/recording.py``) and the MLflow tracking store
    #: (``gateway/agent_traces.py``) get it.
    trace: bytes | None = None
    _data: dict[str, Any] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not self.sent:
            self.sent = self.body

    @property
    def data(self) -> dict[str, Any]:
        """The request body as a JSON object, parsed once (a 400 when it is not one)."""
        if self._data is None:
            self._data = json_object(self.body)
        return self._data

    @property
    def parsed(self) -> bool:
        return self._data is not None

    def replace_request(self, data: dict[str, Any]) -> None:
        """The request a guardrail masked: what the served model receives from now on."""
        self._data = data
        self.sent = orjson.dumps(data)
