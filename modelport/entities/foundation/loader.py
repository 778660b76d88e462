"""Load the engine an :class:`~.catalog.EngineSpec` names (inside the replica process).

Engine modules are imported here, lazily: a replica pays only for its own engine, and a
server without the ``llm`` extra never imports llama.cpp or onnxruntime.
"""

from __future__ import annotations

import asyncio
from typing import Any

from modelport.entities.foundation.catalog import EngineSpec
from modelport.entities.foundation.engine import Engine
from modelport.errors import InvalidParameterValue

__all__ = ["ENGINES", "load_engine"]

ENGINES = ("llama.cpp", "onnxruntime", "sentence-transformers", "vllm")


def _load(spec: EngineSpec, name: str) -> Engine:
    opts: dict[str, Any] = dict(spec.options)
    if spec.engine == "llama.cpp":
        from modelport.entities.foundation.llamacpp import LlamaCppEngine

        return LlamaCppEngine(spec.path, name=name, **opts)
    if spec.engine == "onnxruntime":
        from modelport.entities.foundation.onnx_embeddings import OnnxEmbeddingEngine

        return OnnxEmbeddingEngine(spec.path, name=name, threads=opts.get("threads"))
    if spec.engine == "sentence-transformers":
        from modelport.entities.foundation.st_embeddings import SentenceTransformersEngine

        return SentenceTransformersEngine(spec.path, name=name, threads=opts.get("threads"))
    if spec.engine == "vllm":
        from modelport.entities.foundation.vllm_engine import VllmEngine

        return VllmEngine(spec.path, name=name, task=spec.task, **opts)
    raise InvalidParameterValue(f"Unknown engine {spec.engine!r}; engines: {', '.join(ENGINES)}.")


async def load_engine(spec: EngineSpec, name: str) -> Engine:
    """The engine, loaded off the event loop (the vLLM engine starts its server in ``start``)."""
    engine = await asyncio.to_thread(_load, spec, name)
    start = getattr(engine, "start", None)
    if start is not None:
        await start()
    return engine
