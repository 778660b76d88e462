"""Which engine serves a registered model, from its files (entities/foundation/detect.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelport.entities.foundation.detect import detect, engine_options
from modelport.errors import InvalidParameterValue


def _model(tmp_path: Path, mlmodel: str, files: dict[str, bytes] | None = None) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "MLmodel").write_text(mlmodel)
    for name, data in (files or {}).items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return tmp_path


PYFUNC = "flavors:\n  python_function:\n    loader_module: mlflow.pyfunc.model\n"


def test_a_gguf_artifact_means_llama_cpp(tmp_path: Path) -> None:
    model = _model(tmp_path, PYFUNC, {"artifacts/big.gguf": b"x" * 10, "artifacts/small.gguf": b"x"})
    spec = detect(model, {"MODELPORT_LLM_PARALLEL": "2"})
    assert spec is not None
    assert (spec.engine, spec.task, Path(spec.path).name, spec.options) == (
        "llama.cpp",
        "llm/v1/chat",
        "small.gguf",
        {"parallel": 2},
    )


def test_metadata_chooses_the_file_and_the_task(tmp_path: Path) -> None:
    text = PYFUNC + "metadata:\n  task: llm/v1/completions\n  gguf: big.gguf\n"
    model = _model(tmp_path, text, {"a/big.gguf": b"x" * 10, "a/small.gguf": b"x"})
    spec = detect(model)
    assert spec is not None and Path(spec.path).name == "big.gguf" and spec.task == "llm/v1/completions"


def test_flavours(tmp_path: Path) -> None:
    st = _model(tmp_path / "st", PYFUNC + "  sentence_transformers:\n    sentence_transformers_version: 3\n")
    assert detect(st).engine == "sentence-transformers"  # type: ignore[union-attr]
    tf = _model(tmp_path / "tf", PYFUNC + "  transformers:\n    task: text-generation\n")
    spec = detect(tf)
    assert spec is not None and (spec.engine, spec.path) == ("vllm", str(tmp_path / "tf" / "model"))
    plain = _model(tmp_path / "plain", PYFUNC + "  sklearn:\n    pickled_model: model.pkl\n")
    assert detect(plain) is None


def test_engine_options_must_be_positive_integers() -> None:
    assert engine_options({"MODELPORT_LLM_THREADS": "2", "OTHER": "x"}) == {"threads": 2}
    with pytest.raises(InvalidParameterValue, match="MODELPORT_LLM_CONTEXT must be a positive integer"):
        engine_options({"MODELPORT_LLM_CONTEXT": "lots"})
