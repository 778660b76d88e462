"""What every external-model provider shares: the base class, its context, credentials.

A provider module (``entities/providers/<name>.py``) subclasses :class:`Provider` and turns
the unified ``llm/v1`` requests (``spec/llm.py``: OpenAI-shaped chat, completions and
embeddings bodies) into its own wire format and the answers back into the shapes that
``spec/llm.py`` builds. HTTP and the errors of providers are in ``http.py``.

Credentials are resolved per request (:func:`credential`): a ``{{secrets/scope/key}}``
reference is looked up through the :data:`SecretResolver` the server hands in, so a
rotated secret takes effect on the next request and no value is kept in the config.

Where a provider's API is can be changed for every endpoint by the server's settings
(``Settings.provider_base_urls``: the ``MODELPORT_<NAME>_BASE_URL`` variables), which reach
a provider through :meth:`ProviderContext.base_url`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import httpx

from modelport.errors import NotImplementedByServer
from modelport.spec.secrets import SecretResolver, parse_reference

__all__ = ["Provider", "ProviderContext", "SecretResolver", "credential"]


def credential(block: Mapping[str, Any], key: str, resolve: SecretResolver) -> str | None:
    """The value of credential ``key`` of a provider block: ``key`` (a secret reference) or
    ``key_plaintext`` (stored by the server as a secret reference too, or given inline)."""
    for name in (key, f"{key}_plaintext"):
        value = block.get(name)
        if value is None or value == "":
            continue
        ref = parse_reference(str(value))
        return str(value) if ref is None else resolve(*ref)
    return None


@dataclass(frozen=True)
class ProviderContext:
    """What a provider instance is built from (one per served entity of a config version)."""

    endpoint: str  # the endpoint name: the ``model`` field of every answer
    model: str  # the upstream model id, ``external_model.name``
    task: str
    config: Mapping[str, Any]  # the ``<provider>_config`` block as stored (references unresolved)
    resolve: SecretResolver
    http: httpx.AsyncClient  # shared and pooled by the server
    timeout: float
    #: Base URLs the server's settings set, by name (``openai``, ``entra``, ``anthropic``,
    #: ``cohere``, ``bedrock``, ``palm``, ``ai21``, ``vertex``); see :meth:`base_url`.
    base_urls: Mapping[str, str] = field(default_factory=dict)

    def base_url(self, name: str, default: str) -> str:
        """The base URL ``name`` the server set, else ``default``; without a trailing slash."""
        return (self.base_urls.get(name) or default).rstrip("/")


class Provider:
    """One external model behind one served entity. Subclasses override what they support."""

    #: The ``external_model.provider`` value this class serves.
    provider: ClassVar[str] = ""
    #: Tasks this provider can serve, and those of them it can stream.
    tasks: ClassVar[frozenset[str]] = frozenset()
    streaming: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, ctx: ProviderContext) -> None:
        self.ctx = ctx

    @classmethod
    def tasks_for(cls, config: Mapping[str, Any], model: str) -> frozenset[str]:
        """The tasks this provider serves for upstream ``model`` with ``config`` (its stored
        block): :attr:`tasks` unless what the provider can do depends on the model. No I/O;
        the control plane calls it to refuse a config before it is stored."""
        return cls.tasks

    def _unsupported(self, what: str) -> NotImplementedByServer:
        return NotImplementedByServer(
            f"Provider '{self.provider}' does not support {what} (served model '{self.ctx.model}')."
        )

    async def chat(self, body: dict[str, Any]) -> dict[str, Any]:
        raise self._unsupported("chat")

    def chat_stream(self, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        raise self._unsupported("streaming chat")

    async def completions(self, body: dict[str, Any]) -> dict[str, Any]:
        raise self._unsupported("completions")

    def completions_stream(self, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        raise self._unsupported("streaming completions")

    async def embeddings(self, body: dict[str, Any]) -> dict[str, Any]:
        raise self._unsupported("embeddings")
