"""A handle on the model registry while it loads, free of MLflow imports."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import TYPE_CHECKING

from modelport.errors import TemporarilyUnavailable

if TYPE_CHECKING:
    from modelport.entities.registry import ModelRegistry

__all__ = ["RegistryHandle"]


class RegistryHandle:
    """A registry that is still being loaded (importing MLflow takes seconds).

    The server starts answering before MLflow is imported; anything that needs the
    registry waits here, from a thread or from the event loop.
    """

    def __init__(self, wait_seconds: float = 120.0) -> None:
        self._ready = threading.Event()
        self._registry: ModelRegistry | None = None
        self._error: str | None = None
        self._wait = wait_seconds

    def set(self, registry: ModelRegistry | None, error: str | None = None) -> None:
        self._registry, self._error = registry, error
        self._ready.set()

    @property
    def loaded(self) -> bool:
        return self._ready.is_set() and self._registry is not None

    def get(self) -> ModelRegistry:
        """The registry; blocks while it loads (call from a thread, never from the event loop)."""
        if not self._ready.wait(self._wait):
            raise TemporarilyUnavailable(
                "The model registry is still starting; retry in a few seconds.", retry_after=2
            )
        return self._loaded()

    async def get_async(self, poll: float = 0.1) -> ModelRegistry:
        """The registry, awaited on the event loop without holding a worker thread while it loads."""
        deadline = time.monotonic() + self._wait
        while not self._ready.is_set():
            if time.monotonic() >= deadline:
                raise TemporarilyUnavailable(
                    "The model registry is still starting; retry in a few seconds.", retry_after=2
                )
            await asyncio.sleep(poll)
        return self._loaded()

    def _loaded(self) -> ModelRegistry:
        if self._registry is None:
            raise TemporarilyUnavailable(f"The model registry failed to start: {self._error}", retry_after=5)
        return self._registry
