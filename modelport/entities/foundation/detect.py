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
``llm/v1/embeddings``) overrides the task.

The engine's options come from the server's settings (:class:`EngineDefaults`: sequences
decoded together, tokens per sequence, threads), and ``environment_vars`` of the served
entity override them for that entity (:func:`engine_options`): ``MODELPORT_LLM_PARALLEL``,
``MODELPORT_LLM_CONTEXT``, ``MODELPORT_LLM_THREADS``. The replica gets the result in its
engine spec; no engine reads the environment.
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from modelport.entities.foundation.catalog import EngineSpec
from modelport.entities.foundation.llamacpp import DEFAULT_CONTEXT_LENGTH, DEFAULT_PARALLEL
from modelport.errors import InvalidParameterValue
from modelport.spec.llm import CHAT, COMPLETIONS, EMBEDDINGS

__all__ = ["EngineDefaults", "detect", "engine_options"]

_TASKS = (CHAT, COMPLETIONS, EMBEDDINGS)
_TEXT_GENERATION = {"text-generation", "text2text-generation", "llm/v1/chat", "llm/v1/completions"}
_EMBEDDING = {"feature-extraction", "sentence-similarity", "llm/v1/embeddings"}


@dataclass(frozen=True)
class EngineDefaults:
    """The server's engine settings (``Settings.llm_parallel``, ``llm_context``,
    ``llm_threads``, ``embed_threads``): what an engine gets where its served entity's
    ``environment_vars`` say nothing. Threads 0: half the cores the replica may run on."""

    llm_parallel: int = DEFAULT_PARALLEL
    llm_context: int = DEFAULT_CONTEXT_LENGTH
    llm_threads: int = 0
    embed_threads: int = 0

    def options_for(self, engine: str) -> dict[str, int]:
        """The options these defaults give ``engine``. vLLM gets none: its context and its
        sequences follow the GPU's memory unless the entity sets them."""
        if engine == "llama.cpp":
            out = {"parallel": self.llm_parallel, "context_length": self.llm_context}
            threads = self.llm_threads
        elif engine in ("onnxruntime", "sentence-transformers"):
            out, threads = {}, self.embed_threads
        else:
            return {}
        if threads > 0:
            out["threads"] = threads
        return out

    def apply(self, spec: EngineSpec) -> EngineSpec:
        """``spec`` with these defaults under its own options (which win)."""
        return dataclasses.replace(spec, options={**self.options_for(spec.engine), **spec.options})


def engine_options(env: Mapping[str, str]) -> dict[str, Any]:
    """The engine options a served entity's ``environment_vars`` set (each a positive integer)."""
    out: dict[str, Any] = {}
    for var, key in (
        ("MODELPORT_LLM_PARALLEL", "parallel"),
        ("MODELPORT_LLM_CONTEXT", "context_length"),
        ("MODELPORT_LLM_THREADS", "threads"),
    ):
        value = env.get(var)
        if value is None:
            continue
        if not value.isdecimal() or int(value) < 1:
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
