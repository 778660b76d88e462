"""The sentence-transformers embedding engine: any local sentence-transformers model, on torch.

The general engine for embedding models the ONNX engine (``onnx_embeddings.py``) does not
cover. It runs the model's own pipeline (``modules.json``: Transformer, Pooling, and
Normalize only where the model has one; the model's default prompt, if its config names
one) through ``SentenceTransformer.encode``, so the vectors are exactly the ones
sentence-transformers gives. torch and sentence-transformers are imported in the
constructor, not at module import, so this module imports cheaply where torch is absent.

Folders it loads (always from disk, ``local_files_only``):

- a sentence-transformers folder (``modules.json``, ``config.json``, weights, tokenizer),
  as written by ``SentenceTransformer.save``;
- an MLflow model of the ``sentence_transformers`` flavour (``mlflow.sentence_transformers
  .save_model`` / ``log_model``): a folder with an ``MLmodel`` file whose model sits in the
  data folder named by the pyfunc flavour (``model.sentence_transformer``). ``code_paths``
  of that model are not put on ``sys.path``; a model with custom code needs
  ``trust_remote_code=True`` (MLflow's own loader always passes it; here it is opt-in).

Batches: the texts are sorted by length and handed to ``encode`` at most ``batch_size``
(64) at a time with ``output_value=None``, which returns each text's attention mask with
its vector: ``prompt_tokens`` is the sum of the masks (real tokens after truncation at
the model's ``max_seq_length``, special tokens and a default prompt included), counted
from the one tokenization ``encode`` does. One worker thread per engine runs ``encode``
(concurrent requests queue; torch already uses ``threads`` cores per call). ``threads``
(``torch.set_num_threads``; process-wide, fine with one engine per replica) defaults to
half the cores, at least 1 (the server's ``embed_threads`` setting).

For all-MiniLM-L6-v2 on this machine (2 busy cores) it embedded 42-45 texts/s one at a
time and 55-91 texts/s in batches of 8 to 64; the ONNX engine is 1.3-4x faster on the same
model (numbers in ``onnx_embeddings.py``), so this engine is for the models that engine
cannot load.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from modelport.entities.foundation.engine import EmbeddingEngine, Embeddings, EngineInfo, default_threads
from modelport.entities.foundation.onnx_embeddings import DEFAULT_BATCH_SIZE, check_texts
from modelport.errors import InvalidParameterValue
from modelport.spec.llm import EMBEDDINGS

__all__ = ["MLFLOW_DATA_PATH", "SentenceTransformersEngine", "resolve_model_dir"]

#: Where ``mlflow.sentence_transformers`` puts the model inside an MLflow model folder.
MLFLOW_DATA_PATH = "model.sentence_transformer"


def resolve_model_dir(path: str | os.PathLike[str]) -> Path:
    """The sentence-transformers folder of ``path``: ``path`` itself, or for an MLflow model
    of the ``sentence_transformers`` flavour the data folder its ``MLmodel`` names."""
    folder = Path(path)
    if not folder.is_dir():
        raise InvalidParameterValue(f"The model folder {str(folder)!r} does not exist.")
    mlmodel = folder / "MLmodel"
    if not mlmodel.is_file():
        return folder
    import yaml

    try:
        meta = yaml.safe_load(mlmodel.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise InvalidParameterValue(f"Could not read {str(mlmodel)!r}: {exc}") from None
    flavors = meta.get("flavors") or {}
    if "sentence_transformers" not in flavors:
        raise InvalidParameterValue(
            f"The MLflow model at {str(folder)!r} has no sentence_transformers flavour "
            f"(flavours: {', '.join(sorted(flavors)) or 'none'})."
        )
    data = (flavors.get("python_function") or {}).get("data") or MLFLOW_DATA_PATH
    inner = folder / str(data)
    if not inner.is_dir():
        raise InvalidParameterValue(f"The MLflow model at {str(folder)!r} lacks its model folder {data!r}.")
    return inner


class SentenceTransformersEngine(EmbeddingEngine):
    """A local sentence-transformers model (or MLflow ``sentence_transformers`` model).

    The constructor loads the model and runs a warm-up text (seconds: call :meth:`load`
    from a coroutine). ``name`` (what answers carry as ``model``) defaults to the
    folder's name; for an MLflow model, the MLflow model folder's name.
    """

    def __init__(
        self,
        model_dir: str | os.PathLike[str],
        *,
        name: str | None = None,
        threads: int | None = None,
        device: str = "cpu",
        batch_size: int = DEFAULT_BATCH_SIZE,
        trust_remote_code: bool = False,
    ) -> None:
        if batch_size < 1:
            raise InvalidParameterValue(f"batch_size must be at least 1; got {batch_size}.")
        folder = resolve_model_dir(model_dir)
        import torch
        from sentence_transformers import SentenceTransformer

        self._threads = threads if threads is not None and threads >= 1 else default_threads()
        if device == "cpu":
            torch.set_num_threads(self._threads)
        self._torch = torch
        self._batch_size = batch_size
        try:
            self._model = SentenceTransformer(
                str(folder), device=device, local_files_only=True, trust_remote_code=trust_remote_code
            )
        except (OSError, ValueError) as exc:
            raise InvalidParameterValue(
                f"sentence-transformers could not load {str(folder)!r}: {exc}"
            ) from None
        self._model.eval()
        modules = [type(m).__name__ for m in self._model.children()]
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="st-embed")
        self._closed = False
        self._texts = 0
        self._tokens = 0
        self._busy_s = 0.0
        dims = len(self._embed_sync([""])[0][0])  # warm-up; also tells the dimension
        self._texts = self._tokens = 0
        self._busy_s = 0.0
        default_name = Path(model_dir).name
        self.info = EngineInfo(
            engine="sentence-transformers",
            task=EMBEDDINGS,
            model=name or default_name,
            context_length=int(self._model.max_seq_length or 0),
            dimensions=dims,
            extra={
                "modules": modules,
                "normalize": "Normalize" in modules,
                "threads": self._threads,
                "device": device,
                "batch_size": batch_size,
            },
        )

    @classmethod
    async def load(cls, model_dir: str | os.PathLike[str], **kwargs: Any) -> SentenceTransformersEngine:
        """The constructor, run in a thread so that the event loop keeps going."""
        return await asyncio.to_thread(cls, model_dir, **kwargs)

    def stats(self) -> dict[str, Any]:
        return {
            "tokens_per_second": self._tokens / self._busy_s if self._busy_s > 0 else 0.0,
            "texts": self._texts,
            "tokens": self._tokens,
        }

    async def embed(self, texts: Sequence[str]) -> Embeddings:
        items = check_texts(texts)
        if self._closed:
            raise RuntimeError("The embedding engine is closed.")
        loop = asyncio.get_running_loop()
        vectors, tokens = await loop.run_in_executor(self._executor, self._embed_sync, items)
        return Embeddings(vectors=vectors, prompt_tokens=tokens)

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        await asyncio.to_thread(self._executor.shutdown, wait=True, cancel_futures=True)
        self._model = None  # type: ignore[assignment]

    def _embed_sync(self, texts: list[str]) -> tuple[list[list[float]], int]:
        started = time.perf_counter()
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out: list[list[float]] = [[] for _ in texts]
        tokens = 0
        with self._torch.inference_mode():
            for start in range(0, len(order), self._batch_size):
                chunk = order[start : start + self._batch_size]
                features = self._model.encode(
                    [texts[i] for i in chunk],
                    batch_size=len(chunk),
                    output_value=None,
                    convert_to_numpy=False,
                    show_progress_bar=False,
                )
                for i, item in zip(chunk, features, strict=True):
                    out[i] = item["sentence_embedding"].float().cpu().tolist()
                    tokens += int(item["attention_mask"].sum())
        self._texts += len(texts)
        self._tokens += tokens
        self._busy_s += time.perf_counter() - started
        return out, tokens
