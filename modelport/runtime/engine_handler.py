"""A replica's handler for a foundation model: one LLM or embedding engine.

Started as::

    python -m modelport.runtime.worker --socket PATH --kind engine --engine llama.cpp
        --engine-path FILE --task llm/v1/chat --model-name NAME [--engine-options JSON]

PREDICT answers a chat, completions or embeddings body with one answer; STREAM answers a
chat or completions body with OpenAI chunk objects. Every request runs in its own task
(``runtime/replica_server.py``), so the engine batches what is in flight; a cancelled
request (CANCEL: its client went away) closes the engine's iterator, which frees its
sequence at once. PONG carries the engine's counters, ``tokens_per_second`` among them
(the server uses it for provisioned throughput).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from collections.abc import AsyncGenerator, Iterator
from typing import Any

import orjson

from modelport.entities.foundation import answers
from modelport.entities.foundation.catalog import EngineSpec
from modelport.entities.foundation.engine import EmbeddingEngine, Engine, GenerationEngine
from modelport.entities.foundation.loader import ENGINES, load_engine
from modelport.entities.foundation.requests import Parsed, parse
from modelport.errors import ModelportError
from modelport.runtime.replica_server import Handler
from modelport.spec.llm import json_object

__all__ = ["EngineHandler"]


class EngineHandler(Handler):
    def __init__(self, engine: Engine, model_name: str, path: str = "") -> None:
        self.engine = engine
        self.model_name = model_name
        #: Requests abandoned before their answer was complete (CANCEL, or the server gone).
        self.cancelled = 0
        info = engine.info
        self.what = f"{info.engine} ({info.task}, {path})"

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        group = parser.add_argument_group("foundation model (--kind engine)")
        group.add_argument("--engine", required=True, choices=ENGINES)
        group.add_argument("--engine-path", required=True, help="The model file or folder the engine loads.")
        group.add_argument("--task", required=True, help="What the model serves (llm/v1/chat, ...).")
        group.add_argument("--model-name", required=True, help="What answers carry as 'model'.")
        group.add_argument("--engine-options", default="{}", help="JSON object of engine options.")

    @classmethod
    async def load(cls, args: argparse.Namespace) -> EngineHandler:
        spec = EngineSpec(args.engine, args.task, args.engine_path, orjson.loads(args.engine_options))
        return cls(await load_engine(spec, args.model_name), args.model_name, args.engine_path)

    def details(self) -> str:
        settings = orjson.dumps(self.engine.info.extra).decode()
        return f"; settings {settings}; stats {orjson.dumps(self.engine.stats()).decode()}"

    async def predict(self, payload: bytes) -> bytes:
        parsed = self._parse(payload)
        engine = self.engine
        with self._engine_errors():
            if isinstance(engine, EmbeddingEngine):
                return orjson.dumps(await answers.embed(engine, parsed, self.model_name))
            return orjson.dumps(await answers.answer(self._generating(), parsed, self.model_name))

    async def stream(self, payload: bytes) -> AsyncGenerator[bytes, None]:
        parsed = self._parse(payload)
        if isinstance(self.engine, EmbeddingEngine):
            raise ModelportError('Embeddings are answered whole: send the request without "stream": true.')
        generated = answers.chunks(self._generating(), parsed, self.model_name)
        with self._engine_errors():
            async with contextlib.aclosing(generated) as chunks:
                async for chunk in chunks:
                    yield orjson.dumps(chunk)

    def stats(self) -> dict[str, Any]:
        info = self.engine.info
        return {"cancelled": self.cancelled, "engine": info.engine, "task": info.task, **self.engine.stats()}

    async def aclose(self) -> None:
        await self.engine.aclose()

    def _parse(self, payload: bytes) -> Parsed:
        return parse(json_object(payload), self.engine.info.task)

    def _generating(self) -> GenerationEngine:
        if not isinstance(self.engine, GenerationEngine):
            raise ModelportError(f"Engine {self.engine.info.engine} cannot answer this request.")
        return self.engine

    @contextlib.contextmanager
    def _engine_errors(self) -> Iterator[None]:
        try:
            yield
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        except ModelportError:
            raise
        except Exception as exc:
            raise ModelportError(f"The engine failed: {type(exc).__name__}: {exc}") from exc
