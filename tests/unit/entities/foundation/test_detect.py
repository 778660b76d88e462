"""Which engine serves a registered model, from its files (entities/foundation/detect.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelport.entities.foundation.catalog import EngineSpec
from modelport.entities.foundation.detect import EngineDefaults, detect, engine_options
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


def test_server_defaults_go_under_what_the_entity_set() -> None:
    defaults = EngineDefaults(llm_parallel=2, llm_context=1024, llm_threads=3, embed_threads=1)
    llama = defaults.apply(EngineSpec("llama.cpp", "llm/v1/chat", "m.gguf", {"parallel": 8}))
    assert llama.options == {"parallel": 8, "context_length": 1024, "threads": 3}
    onnx = defaults.apply(EngineSpec("onnxruntime", "llm/v1/embeddings", "m", {}))
    assert onnx.options == {"threads": 1}
    st = defaults.apply(EngineSpec("sentence-transformers", "llm/v1/embeddings", "m", {"threads": 5}))
    assert st.options == {"threads": 5}
    # vLLM sizes its context and sequences by the GPU's memory unless the entity says.
    assert defaults.apply(EngineSpec("vllm", "llm/v1/chat", "m", {})).options == {}


def test_zero_threads_leave_the_engine_its_own_default() -> None:
    assert EngineDefaults().options_for("llama.cpp") == {"parallel": 4, "context_length": 2048}
    assert EngineDefaults().options_for("onnxruntime") == {}
