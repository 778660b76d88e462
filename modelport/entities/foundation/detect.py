"""Which engine serves a registered model, read from its files (no model is loaded here).

=====================================================  =============================  ===========
the model version holds                                 engine                         task
=====================================================  =============================  ===========
a ``.gguf`` file among its artifacts (any flavour)      llama.cpp                      chat
``sentence_transformers`` flavour                       sentence-transformers          embeddings
``transformers`` flavour, text generation               vLLM (a GPU and ``vllm``)      chat
anything else with ``python_function``                  the custom-model worker        -
=====================================================  =============================  ===========

``metadata.task`` in the MLmodel file (``llm/v1/chat``, ``llm/v1/completions``,
``llm/v1/embeddings``) overrides the task. ``environment_vars`` of the served entity may
tune the engine: ``MODELPORT_LLM_PARALLEL`` (sequences decoded together, default 4),
``MODELPORT_LLM_CONTEXT`` (tokens per sequence), ``MODELPORT_LLM_THREADS``.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from modelport.entities.foundation.catalog import EngineSpec
from modelport.entities.providers.base import CHAT, COMPLETIONS, EMBEDDINGS
from modelport.errors import InvalidParameterValue

__all__ = ["detect", "engine_options"]

_TASKS = (CHAT, COMPLETIONS, EMBEDDINGS)
_TEXT_GENERATION = {"text-generation", "text2text-generation", "llm/v1/chat", "llm/v1/completions"}
_EMBEDDING = {"feature-extraction", "sentence-similarity", "llm/v1/embeddings"}


def engine_options(env: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for var, key in (
        ("MODELPORT_LLM_PARALLEL", "parallel"),
        ("MODELPORT_LLM_CONTEXT", "context_length"),
        ("MODELPORT_LLM_THREADS", "threads"),
    ):
        value = env.get(var)
        if value is None:
            continue
        if not value.isdigit() or int(value) < 1:
            raise InvalidParameterValue(f"environment_vars.{var} must be a positive integer; got {value!r}.")
        out[key] = int(value)
    return out


def _gguf_files(model_dir: Path) -> list[Path]:
    return sorted(p for p in model_dir.rglob("*.gguf") if p.is_file())


def detect(model_dir: Path, env: Mapping[str, str] | None = None) -> EngineSpec | None:
    """The engine for the MLflow model in ``model_dir``, or None for a custom model."""
    mlmodel = yaml.safe_load((model_dir / "MLmodel").read_text()) or {}
    flavors: dict[str, Any] = mlmodel.get("flavors") or {}
    task = (mlmodel.get("metadata") or {}).get("task")
    if task is not None and task not in _TASKS:
        task = None
    options = engine_options(env or {})
    ggufs = _gguf_files(model_dir)
    if ggufs:
        # Several files (e.g. quantisations): the smallest loads fastest; name one in metadata to choose.
        chosen = (mlmodel.get("metadata") or {}).get("gguf")
        path = next((p for p in ggufs if p.name == chosen), min(ggufs, key=lambda p: p.stat().st_size))
        return EngineSpec("llama.cpp", task or CHAT, str(path), options)
    st = flavors.get("sentence_transformers")
    if st is not None:
        return EngineSpec("sentence-transformers", EMBEDDINGS, str(model_dir), options)
    tf = flavors.get("transformers")
    if tf is not None:
        hf_task = str(tf.get("task") or "")
        if hf_task in _EMBEDDING or task == EMBEDDINGS:
            return EngineSpec("sentence-transformers", EMBEDDINGS, str(model_dir / "model"), options)
        if hf_task in _TEXT_GENERATION or task in (CHAT, COMPLETIONS):
            return EngineSpec("vllm", task or CHAT, str(model_dir / "model"), options)
    return None


def vllm_available() -> bool:
    return shutil.which("vllm") is not None
