"""The llama.cpp generation engine: GGUF models, concurrent requests batched into one decode.

One engine holds one model and one llama.cpp context through ``llama-cpp-python``'s
low-level bindings (not its ``Llama`` class, which serves one sequence at a time, nor
llama.cpp's bundled server). The context has ``parallel`` sequence slots, each with its own
part of the KV cache (``n_seq_max = parallel``; the context holds ``parallel x
context_length`` tokens). Every choice of every request is one sequence: a request with
``n = 2`` takes two slots, seeded ``seed`` and ``seed + 1``.

A single scheduler thread owns the context; nothing else touches it. Each turn it

1. frees the slots of cancelled requests (their KV cells, ``llama_memory_seq_rm``),
2. admits waiting choices into free slots, oldest first (a FIFO: a request that finds all
   slots taken waits, and takes the first slot that frees up),
3. builds ONE batch: the last sampled token of every sequence that is generating, then
   prompt tokens of sequences still reading their prompt: as many as fit in ``n_batch``
   when no sequence is generating, else at most ``prefill_chunk`` (a long prompt is read
   over several turns, so that it does not stall the others: on the 2-core test machine a
   turn with 512 prompt tokens took about 5 s, 128 tokens about 1 s),
4. runs ``llama_decode`` once on it, and samples each sequence that produced logits with
   its own sampler chain (``llama_sampler_sample(chain, ctx, i)``, with ``i`` the row of its
   token in the batch): top-k, top-p, temperature and a seeded draw, or greedy at
   temperature 0, behind a GBNF grammar when the request asked for JSON,
5. turns the tokens into text and hands each request its events with
   ``loop.call_soon_threadsafe`` (into the request's ``asyncio.Queue``, one list per turn).

So four requests generating cost one ``llama_decode`` of four tokens per turn, not four
decodes: the weights are read once per turn for all sequences. How much that gains depends
on the hardware. On the 2-core test machine the 135M test model decodes compute-bound, and
four concurrent requests (64 tokens, greedy) gave 91 tokens/s in all against 73 for one
request with 1 thread, 127 against 88 with 2 threads; memory-bound decoding (bigger
models, more cores) gains more. The event loop's thread only renders and tokenizes
prompts and builds sampler chains (which read the vocabulary, never the context).

Text: token pieces are bytes; an incremental UTF-8 decoder holds back a character split
across tokens until it is whole. Stop sequences are matched on the decoded text; text that
could be the start of a stop sequence is held back until it is known not to be one, and a
match ends the choice with the stop sequence and what follows cut off. A choice ends with
``"stop"`` on an end-of-generation token (``llama_vocab_is_eog``: EOS, EOT, ``<|im_end|>``
...) or a stop sequence, and with ``"length"`` at ``max_tokens`` or when its part of the
KV cache is full.

Prompts: chat messages are rendered with the model's own chat template (GGUF metadata
``tokenizer.chat_template``, jinja2, ``add_generation_prompt=True``); completions prompts
are used as given. Both are tokenized with special tokens parsed (as llama.cpp's server
does) and get a BOS token when the model asks for one and the text does not already start
with it. A prompt that leaves no room for an answer is a :class:`~modelport.errors.BadRequest`
raised before anything is queued; so is a JSON schema that cannot be turned into a grammar.

Cancellation: closing a request's iterator marks it cancelled and wakes the scheduler,
which frees its slots at the start of its next turn; ``aclose()`` of the iterator waits for
that (the contract promises that the slots are free when it returns). Choices of the
request that were still waiting are dropped at once.

Throughput: ``stats()["tokens_per_second"]`` starts from a 16-token greedy warm-up run at
load (which also warms the caches) and then follows the turns that only decoded (no prompt
reading): tokens sampled per second of turn time, averaged over windows of half a second
and smoothed (EMA), so it is the aggregate rate at the current concurrency.
``stats()["max_batch_sequences"]`` is the most sequences one ``llama_decode`` has served.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import ctypes
import json
import logging
import os
import random
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelport.entities.foundation.engine import (
    EngineInfo,
    Event,
    Finished,
    GenerationEngine,
    GenerationRequest,
    Sampling,
    TextDelta,
    Usage,
    default_threads,
)
from modelport.errors import BadRequest, InvalidParameterValue, ModelportError, TemporarilyUnavailable
from modelport.spec.llm import CHAT

__all__ = [
    "DEFAULT_BATCH",
    "DEFAULT_CONTEXT_LENGTH",
    "DEFAULT_PARALLEL",
    "DEFAULT_PREFILL_CHUNK",
    "LlamaCppEngine",
]

log = logging.getLogger(__name__)

DEFAULT_PARALLEL = 4
#: Tokens per sequence (prompt and answer), capped at what the model was trained on.
DEFAULT_CONTEXT_LENGTH = 2048
DEFAULT_BATCH = 512
#: Prompt tokens read per turn while other sequences are generating.
DEFAULT_PREFILL_CHUNK = 128

_WARMUP_PROMPT = "The quick brown fox jumps over the lazy dog. Once upon a time,"
_WARMUP_TOKENS = 16
#: Seconds of decode-only turns behind one throughput sample, and the weight of a new sample.
_TPS_WINDOW_S = 0.5
_TPS_ALPHA = 0.3
#: How long closing a request's iterator waits for the scheduler to free its slots.
_RELEASE_TIMEOUT_S = 30.0
_GRAMMAR_CACHE = 64
#: Prompts longer than this (characters) are rendered and tokenized off the event loop.
_INLINE_PROMPT_CHARS = 16_384
_LOOSE_CHAR = r'char ::= [^"\\]'
_JSON_CHAR = r'char ::= [^"\\\x7F\x00-\x1F]'
_FALLBACK_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content']"
    " + '<|im_end|>\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}"
    "{% endif %}"
)

_backend_lock = threading.Lock()
_backend_ready = False


def _lib() -> Any:
    """The ``llama_cpp`` module, imported on first use (it is an optional dependency)."""
    global _backend_ready
    import llama_cpp

    with _backend_lock:
        if not _backend_ready:
            llama_cpp.llama_backend_init()
            _backend_ready = True
    return llama_cpp


class _TextStream:
    """Bytes of one choice in, text safe to send out: whole characters, no stop sequence."""

    def __init__(self, stops: Sequence[str]) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._stops = tuple(s for s in stops if s)
        self._held = ""

    def feed(self, data: bytes) -> tuple[str, bool]:
        """Text that can go out now, and whether a stop sequence ended the choice."""
        held = self._held + self._decoder.decode(data)
        if not self._stops:
            self._held = ""
            return held, False
        cut = -1
        for stop in self._stops:
            at = held.find(stop)
            if at >= 0 and (cut < 0 or at < cut):
                cut = at
        if cut >= 0:
            self._held = ""
            return held[:cut], True
        # Hold back the longest tail that a stop sequence starts with: the rest is final.
        keep = 0
        for stop in self._stops:
            for k in range(min(len(stop) - 1, len(held)), keep, -1):
                if held.endswith(stop[:k]):
                    keep = k
                    break
        self._held = held[len(held) - keep :]
        return held[: len(held) - keep], False

    def flush(self) -> str:
        """What was held back, when the choice ends otherwise (an unfinished character is dropped)."""
        held, self._held = self._held, ""
        return held


@dataclass(eq=False)
class _Request:
    """One ``generate`` call: its prompt, its queue, and what the scheduler counted for it."""

    prompt: list[int]
    max_tokens: int
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[list[Event] | BaseException]
    unfinished: int  # choices not finished yet (scheduler thread)
    completion_tokens: int = 0  # scheduler thread
    held: int = 0  # choices holding a slot (under the engine's lock)
    cancelled: bool = False  # set under the lock; read anywhere
    ended: bool = False  # Usage or an error was sent (under the lock)
    released: asyncio.Future[None] | None = None  # set when ``held`` drops to 0 after cancel


@dataclass(eq=False)
class _Choice:
    """One choice of a request: one sequence slot while it runs."""

    request: _Request
    index: int
    sampler: Any  # llama_sampler_p: a chain owned by this choice until it is freed
    text: _TextStream
    slot: int = -1
    n_past: int = 0  # tokens of this sequence in the KV cache
    next_token: int | None = None  # sampled, to be decoded next turn
    generated: int = 0


@dataclass
class _Counters:
    tokens_generated: int = 0
    tokens_per_second: float = 0.0
    max_batch_sequences: int = 0
    decode_calls: int = 0
    window_tokens: int = 0
    window_s: float = 0.0
    busy_s: float = 0.0
    errors: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


class LlamaCppEngine(GenerationEngine):
    """A GGUF model served by llama.cpp with ``parallel`` sequences decoded together.

    - ``model_path``: the GGUF file; ``name``: what ``info.model`` says (default: the file's stem).
    - ``parallel``: sequence slots (choices generated at once); more wait in a FIFO.
    - ``context_length``: tokens per sequence, prompt and answer (capped at the model's
      training context); the context holds ``parallel`` times as many.
    - ``threads``: llama.cpp threads for decoding and prompts (default :func:`default_threads`).
    - ``n_batch``: most tokens in one ``llama_decode``; ``prefill_chunk``: most prompt
      tokens per turn while other sequences are generating.
    - ``warmup``: decode 16 tokens at load (a first ``tokens_per_second``, warm caches).
    - ``verbose``: leave llama.cpp's log on (default: errors only).

    The constructor loads the model, creates the context, runs the warm-up and starts the
    scheduler thread. It blocks (about a second for the 135M test model, most of it for the
    context); :meth:`load` runs it off the event loop.
    """

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        *,
        name: str | None = None,
        parallel: int = DEFAULT_PARALLEL,
        context_length: int = DEFAULT_CONTEXT_LENGTH,
        threads: int | None = None,
        n_batch: int = DEFAULT_BATCH,
        prefill_chunk: int = DEFAULT_PREFILL_CHUNK,
        warmup: bool = True,
        verbose: bool = False,
    ) -> None:
        path = Path(model_path)
        if not path.is_file():
            raise InvalidParameterValue(f"The model file {str(path)!r} does not exist.")
        if parallel < 1 or context_length < 16 or n_batch < parallel:
            raise InvalidParameterValue(
                f"llama.cpp engine: parallel ({parallel}) must be at least 1, context_length "
                f"({context_length}) at least 16 and n_batch ({n_batch}) at least parallel."
            )
        if not verbose:
            logger = logging.getLogger("llama-cpp-python")
            if logger.level == logging.NOTSET:
                logger.setLevel(logging.ERROR)
        L = self._L = _lib()
        if parallel > L.llama_max_parallel_sequences():
            raise InvalidParameterValue(
                f"llama.cpp supports at most {L.llama_max_parallel_sequences()} parallel sequences; "
                f"got {parallel}."
            )
        self._threads = threads if threads is not None and threads >= 1 else default_threads()
        self._parallel = parallel

        self._model: Any = L.llama_model_load_from_file(str(path).encode(), L.llama_model_default_params())
        if not self._model:
            raise InvalidParameterValue(f"llama.cpp could not load {str(path)!r} (not a GGUF model?).")
        self._ctx: Any = None
        self._batch: Any = None
        try:
            self._vocab: Any = L.llama_model_get_vocab(self._model)
            n_ctx_train = int(L.llama_model_n_ctx_train(self._model))
            if n_ctx_train > 0:
                context_length = min(context_length, n_ctx_train)
            params = L.llama_context_default_params()
            params.n_ctx = context_length * parallel
            params.n_seq_max = parallel
            params.n_batch = n_batch
            params.n_ubatch = n_batch
            params.n_threads = self._threads
            params.n_threads_batch = self._threads
            params.kv_unified = False  # each sequence its own KV stream of context_length cells
            params.no_perf = True
            self._ctx = L.llama_init_from_model(self._model, params)
            if not self._ctx:
                raise InvalidParameterValue(
                    f"llama.cpp could not create a context of {parallel} x {context_length} tokens."
                )
            self._memory: Any = L.llama_get_memory(self._ctx)
            self._n_ctx_seq = min(context_length, int(L.llama_n_ctx_seq(self._ctx)))
            self._n_batch = int(L.llama_n_batch(self._ctx))
            self._prefill_chunk = max(1, min(prefill_chunk, self._n_batch))
            self._batch = L.llama_batch_init(self._n_batch, 0, 1)

            self._add_bos = bool(L.llama_vocab_get_add_bos(self._vocab))
            bos = int(L.llama_vocab_bos(self._vocab))
            eos = int(L.llama_vocab_eos(self._vocab))
            self._bos = bos
            self._bos_text = self._token_text(bos)
            self._eos_text = self._token_text(eos)
            self._chat = self._chat_formatter()
            self._pieces: dict[int, bytes] = {}
            self._piece_buf = ctypes.create_string_buffer(256)
            self._grammars: dict[str, str] = {}

            self.info = EngineInfo(
                engine="llama.cpp",
                task=CHAT,
                model=name or path.stem,
                context_length=self._n_ctx_seq,
                extra={
                    "parallel": parallel,
                    "threads": self._threads,
                    "n_batch": self._n_batch,
                    "prefill_chunk": self._prefill_chunk,
                },
            )
            self._counters = _Counters()
            if warmup:
                self._warmup()
        except BaseException:
            self._free_native()
            raise

        # Scheduler state: ``_cond`` guards ``_waiting``, ``_stopping`` and the requests'
        # cancel/held/ended fields; ``_active`` and ``_free`` belong to the scheduler thread.
        self._cond = threading.Condition()
        self._waiting: deque[_Choice] = deque()
        self._active: list[_Choice] = []
        self._free: list[int] = list(range(parallel - 1, -1, -1))  # pop() gives slot 0 first
        self._stopping = False
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="llamacpp-scheduler", daemon=True)
        self._thread.start()

    @classmethod
    async def load(cls, model_path: str | os.PathLike[str], **kwargs: Any) -> LlamaCppEngine:
        """The constructor, run in a thread so that the event loop keeps going."""
        return await asyncio.to_thread(cls, model_path, **kwargs)

    # ---------------------------------------------------------------- public API

    def stats(self) -> dict[str, Any]:
        c = self._counters
        with self._cond:
            waiting = len({id(choice.request) for choice in self._waiting})
        return {
            "engine": "llama.cpp",
            "active": len(self._active),
            "waiting": waiting,
            "tokens_generated": c.tokens_generated,
            "tokens_per_second": round(c.tokens_per_second, 2),
            "max_batch_sequences": c.max_batch_sequences,
            "decode_calls": c.decode_calls,
            "busy_seconds": round(c.busy_s, 3),
        }

    def render_chat(self, messages: Sequence[Mapping[str, Any]]) -> str:
        """The prompt text of chat ``messages``: the model's chat template, generation prompt added."""
        try:
            return str(self._chat(messages=[dict(m) for m in messages]).prompt)
        except ModelportError:
            raise
        except Exception as exc:  # jinja2 errors and the template's raise_exception (ValueError)
            raise BadRequest(f"The model's chat template cannot render these messages: {exc}") from exc

    def tokenize(self, text: str, *, add_bos: bool | None = None) -> list[int]:
        """Token ids of ``text`` (special tokens parsed); BOS first when the model asks for it
        (or ``add_bos`` says so) and the text does not start with it already."""
        L = self._L
        data = text.encode("utf-8")
        if add_bos is None:
            add_bos = self._add_bos and not (self._bos_text and text.startswith(self._bos_text))
        size = len(data) + 2
        arr = (L.llama_token * size)()
        n = L.llama_tokenize(self._vocab, data, len(data), arr, size, False, True)
        if n < 0:  # cannot happen (a token takes at least one byte), but the API allows it
            size = -n
            arr = (L.llama_token * size)()
            n = L.llama_tokenize(self._vocab, data, len(data), arr, size, False, True)
        tokens = list(arr[:n])
        if add_bos and self._bos >= 0:
            tokens.insert(0, self._bos)
        return tokens

    def prompt_tokens(self, request: GenerationRequest) -> list[int]:
        """What a request's sequences start from (raises BadRequest when it does not fit)."""
        if request.messages is not None:
            tokens = self.tokenize(self.render_chat(request.messages))
        else:
            tokens = self.tokenize(request.prompt or "")
        if not tokens:
            if self._bos < 0:
                raise BadRequest("The prompt is empty.")
            tokens = [self._bos]
        if len(tokens) >= self._n_ctx_seq:
            raise BadRequest(
                f"The prompt has {len(tokens)} tokens, but this model's context holds "
                f"{self._n_ctx_seq} tokens per request (prompt and answer)."
            )
        return tokens

    async def generate(self, request: GenerationRequest) -> AsyncIterator[Event]:
        if self._closed:
            raise TemporarilyUnavailable("The model is shutting down.", retry_after=1)
        if _text_size(request) > _INLINE_PROMPT_CHARS:  # rendering and tokenizing take a while
            prompt = await asyncio.to_thread(self.prompt_tokens, request)
        else:
            prompt = self.prompt_tokens(request)
        n = max(1, request.n)
        samplers: list[Any] = []
        try:
            for i in range(n):
                samplers.append(self._sampler(request.sampling, i))
        except BaseException:
            for sampler in samplers:
                self._L.llama_sampler_free(sampler)
            raise
        loop = asyncio.get_running_loop()
        req = _Request(
            prompt=prompt,
            max_tokens=request.sampling.max_tokens,
            loop=loop,
            queue=asyncio.Queue(),
            unfinished=n,
        )
        choices = [
            _Choice(request=req, index=i, sampler=s, text=_TextStream(request.sampling.stop))
            for i, s in enumerate(samplers)
        ]
        with self._cond:
            if self._stopping:
                for choice in choices:
                    self._L.llama_sampler_free(choice.sampler)
                raise TemporarilyUnavailable("The model is shutting down.", retry_after=1)
            self._waiting.extend(choices)
            self._cond.notify()

        done = False
        try:
            while True:
                item = await req.queue.get()
                if isinstance(item, BaseException):
                    done = True
                    raise item
                for event in item:
                    if isinstance(event, Usage):
                        done = True
                    yield event
                if done:
                    return
        finally:
            if not done:
                await self._cancel(req)

    async def aclose(self) -> None:
        """Stop the scheduler (requests in flight end with TemporarilyUnavailable), free the model."""
        if self._closed:
            return
        self._closed = True
        with self._cond:
            self._stopping = True
            self._cond.notify()
        await asyncio.to_thread(self._thread.join)
        self._free_native()

    # ---------------------------------------------------------------- request side

    def _sampler(self, sampling: Sampling, index: int) -> Any:
        """A sampler chain for choice ``index`` (grammar first, then the cuts and the draw)."""
        L = self._L
        grammar = self._grammar(sampling.json_schema) if sampling.json_schema is not None else None
        chain = L.llama_sampler_chain_init(L.llama_sampler_chain_default_params())
        if grammar is not None:
            g = L.llama_sampler_init_grammar(self._vocab, grammar.encode(), b"root")
            if not g:
                L.llama_sampler_free(chain)
                raise InvalidParameterValue(
                    "The JSON schema of 'response_format' gave a grammar llama.cpp rejects."
                )
            L.llama_sampler_chain_add(chain, g)
        if sampling.temperature <= 0.0:
            L.llama_sampler_chain_add(chain, L.llama_sampler_init_greedy())
            return chain
        if sampling.top_k > 0:
            L.llama_sampler_chain_add(chain, L.llama_sampler_init_top_k(sampling.top_k))
        if sampling.top_p < 1.0:
            L.llama_sampler_chain_add(chain, L.llama_sampler_init_top_p(sampling.top_p, 1))
        L.llama_sampler_chain_add(chain, L.llama_sampler_init_temp(sampling.temperature))
        seed = random.getrandbits(32) if sampling.seed is None else sampling.seed + index
        seed &= 0xFFFFFFFF
        if seed == L.LLAMA_DEFAULT_SEED:  # llama.cpp reads this one as "pick a random seed"
            seed -= 1
        L.llama_sampler_chain_add(chain, L.llama_sampler_init_dist(seed))
        return chain

    def _grammar(self, schema: Mapping[str, Any]) -> str:
        from llama_cpp import llama_grammar

        if not schema:
            return str(llama_grammar.JSON_GBNF)
        key = json.dumps(schema, sort_keys=True)
        grammar = self._grammars.get(key)
        if grammar is None:
            try:
                grammar = str(llama_grammar.json_schema_to_gbnf(key))
                # The converter's string characters admit raw control characters, which
                # json.loads rejects: exclude them as llama.cpp's own JSON grammar does.
                grammar = grammar.replace(_LOOSE_CHAR, _JSON_CHAR)
            except Exception as exc:
                raise InvalidParameterValue(
                    f"The JSON schema of 'response_format' cannot be turned into a grammar: {exc!r}"
                ) from exc
            if len(self._grammars) >= _GRAMMAR_CACHE:
                self._grammars.pop(next(iter(self._grammars)))
            self._grammars[key] = grammar
        return grammar

    async def _cancel(self, req: _Request) -> None:
        """The consumer went away: drop the request's waiting choices, free its slots."""
        with self._cond:
            if req.ended:
                return
            req.cancelled = True
            req.ended = True
            kept: deque[_Choice] = deque()
            for choice in self._waiting:
                if choice.request is req:
                    self._L.llama_sampler_free(choice.sampler)
                else:
                    kept.append(choice)
            self._waiting = kept
            if req.held == 0:
                return
            req.released = req.loop.create_future()
            self._cond.notify()
        try:
            await asyncio.wait_for(asyncio.shield(req.released), _RELEASE_TIMEOUT_S)
        except TimeoutError:
            log.warning("llama.cpp scheduler did not free a cancelled request's slots in time")

    # ---------------------------------------------------------------- scheduler thread

    def _run(self) -> None:
        try:
            while True:
                with self._cond:
                    while not self._stopping and not self._waiting and not self._active:
                        self._cond.wait()
                    if self._stopping:
                        return
                    self._reap()
                    self._admit()
                if not self._active:
                    continue
                try:
                    self._step()
                except Exception as exc:  # a bug or llama.cpp failure: fail what runs, keep serving
                    log.exception("llama.cpp scheduler turn failed")
                    self._counters.errors += 1
                    self._fail_active(ModelportError(f"The model failed while generating: {exc}"))
        except BaseException:
            log.exception("llama.cpp scheduler stopped")
            raise
        finally:
            self._shutdown()

    def _reap(self) -> None:
        """Free the slots of cancelled requests (under the lock)."""
        if any(c.request.cancelled for c in self._active):
            for choice in [c for c in self._active if c.request.cancelled]:
                self._release(choice)

    def _admit(self) -> None:
        """Move waiting choices into free slots, oldest first (under the lock)."""
        while self._free and self._waiting:
            choice = self._waiting.popleft()
            choice.slot = self._free.pop()
            choice.n_past = 0
            choice.request.held += 1
            self._active.append(choice)

    def _release(self, choice: _Choice) -> None:
        """Free a choice's slot, KV cells and sampler (the caller holds the lock)."""
        L = self._L
        self._active.remove(choice)
        L.llama_memory_seq_rm(self._memory, choice.slot, -1, -1)
        L.llama_sampler_free(choice.sampler)
        self._free.append(choice.slot)
        self._free.sort(reverse=True)
        req = choice.request
        req.held -= 1
        if req.held == 0 and req.released is not None:
            self._call(req, _set_released, req.released)

    def _step(self) -> None:
        L = self._L
        batch = self._batch
        batch.n_tokens = 0
        outputs: list[tuple[_Choice, int]] = []
        # Decoding sequences first, by slot (llama.cpp puts consecutive slots in one ubatch).
        decoding = sorted((c for c in self._active if c.next_token is not None), key=lambda c: c.slot)
        for choice in decoding:
            outputs.append((choice, batch.n_tokens))
            self._add(choice.next_token, choice.n_past, choice.slot, True)
        budget = self._n_batch - len(decoding)
        if decoding:
            budget = min(budget, self._prefill_chunk)
        reading: list[tuple[_Choice, int]] = []
        for choice in self._active:
            todo = len(choice.request.prompt) - choice.n_past
            if choice.next_token is not None or todo <= 0 or budget <= 0:
                continue
            take = min(todo, budget)
            prompt = choice.request.prompt
            for j in range(choice.n_past, choice.n_past + take):
                self._add(prompt[j], j, choice.slot, False)
            if take == todo:
                batch.logits[batch.n_tokens - 1] = True
                outputs.append((choice, batch.n_tokens - 1))
            reading.append((choice, take))
            budget -= take
        if batch.n_tokens == 0:
            return

        started = time.perf_counter()
        rc = L.llama_decode(self._ctx, batch)
        if rc != 0:
            raise RuntimeError(f"llama_decode returned {rc} for a batch of {batch.n_tokens} tokens")
        for choice in decoding:
            choice.n_past += 1
            choice.next_token = None
        for choice, take in reading:
            choice.n_past += take

        events: dict[_Request, list[Event]] = {}
        finished: list[_Choice] = []
        for choice, row in outputs:
            token = int(L.llama_sampler_sample(choice.sampler, self._ctx, row))
            if self._on_token(choice, token, events.setdefault(choice.request, [])):
                finished.append(choice)
        elapsed = time.perf_counter() - started

        if finished:
            with self._cond:
                for choice in finished:
                    self._release(choice)
                    if choice.request.unfinished == 0:
                        choice.request.ended = True
        for req, evs in events.items():
            if evs and not req.cancelled:
                self._call(req, req.queue.put_nowait, evs)

        c = self._counters
        c.decode_calls += 1
        c.busy_s += elapsed
        c.max_batch_sequences = max(c.max_batch_sequences, len(decoding) + len(reading))
        if decoding and not reading:
            c.window_tokens += len(decoding)
            c.window_s += elapsed
            if c.window_s >= _TPS_WINDOW_S:
                rate = c.window_tokens / c.window_s
                c.tokens_per_second = (
                    rate
                    if c.tokens_per_second <= 0
                    else (1 - _TPS_ALPHA) * c.tokens_per_second + _TPS_ALPHA * rate
                )
                c.window_tokens, c.window_s = 0, 0.0

    def _on_token(self, choice: _Choice, token: int, events: list[Event]) -> bool:
        """Account for a sampled token; True when the choice is finished."""
        req = choice.request
        reason: str | None = None
        if self._L.llama_vocab_is_eog(self._vocab, token):
            reason = "stop"
            text = choice.text.flush()
        else:
            choice.generated += 1
            req.completion_tokens += 1
            self._counters.tokens_generated += 1
            text, stopped = choice.text.feed(self._piece(token))
            if stopped:
                reason = "stop"
            elif choice.generated >= req.max_tokens or choice.n_past >= self._n_ctx_seq:
                reason = "length"
                text += choice.text.flush()
            else:
                choice.next_token = token
        if text:
            events.append(TextDelta(choice.index, text))
        if reason is None:
            return False
        events.append(Finished(choice.index, reason))
        req.unfinished -= 1
        if req.unfinished == 0:
            events.append(Usage(len(req.prompt), req.completion_tokens))
        return True

    def _add(self, token: int, pos: int, seq: int, logits: bool) -> None:
        batch = self._batch
        i = batch.n_tokens
        batch.token[i] = token
        batch.pos[i] = pos
        batch.n_seq_id[i] = 1
        batch.seq_id[i][0] = seq
        batch.logits[i] = logits
        batch.n_tokens = i + 1

    def _piece(self, token: int) -> bytes:
        piece = self._pieces.get(token)
        if piece is None:
            L, buf = self._L, self._piece_buf
            n = L.llama_token_to_piece(self._vocab, token, buf, len(buf), 0, False)
            if n < 0:
                buf = ctypes.create_string_buffer(-n)
                n = L.llama_token_to_piece(self._vocab, token, buf, len(buf), 0, False)
            piece = self._pieces[token] = buf.raw[:n]
        return piece

    def _fail_active(self, error: ModelportError) -> None:
        """End every running request with ``error`` and free its slots."""
        with self._cond:
            requests = {c.request for c in self._active}
            for choice in list(self._active):
                self._release(choice)
            for req in requests:
                self._end_with(req, error)
            with contextlib.suppress(Exception):
                self._L.llama_memory_clear(self._memory, True)

    def _shutdown(self) -> None:
        """Scheduler exit: end running and waiting requests with TemporarilyUnavailable."""
        error = TemporarilyUnavailable("The model was stopped while generating.", retry_after=1)
        with self._cond:
            self._stopping = True
            self._closed = True
            requests = {c.request for c in self._active} | {c.request for c in self._waiting}
            for choice in list(self._active):
                self._release(choice)
            for choice in self._waiting:
                self._L.llama_sampler_free(choice.sampler)
            self._waiting.clear()
            for req in requests:
                self._end_with(req, error)

    def _end_with(self, req: _Request, error: ModelportError) -> None:
        """Send ``error`` as the request's last item (the caller holds the lock)."""
        if req.ended:
            return
        req.ended = True
        self._call(req, req.queue.put_nowait, error)

    def _call(self, req: _Request, fn: Any, arg: Any) -> None:
        try:
            req.loop.call_soon_threadsafe(fn, arg)
        except RuntimeError:  # the request's event loop is closed: nobody is listening
            req.cancelled = True

    # ---------------------------------------------------------------- loading

    def _warmup(self) -> None:
        """Decode a few tokens greedily in slot 0: warms the caches, gives a first tokens/s."""
        L = self._L
        tokens = self.tokenize(_WARMUP_PROMPT)
        sampler = L.llama_sampler_chain_init(L.llama_sampler_chain_default_params())
        L.llama_sampler_chain_add(sampler, L.llama_sampler_init_greedy())
        try:
            batch = self._batch
            batch.n_tokens = 0
            for i, token in enumerate(tokens):
                self._add(token, i, 0, i == len(tokens) - 1)
            if L.llama_decode(self._ctx, batch) != 0:
                raise RuntimeError("llama.cpp could not decode the warm-up prompt")
            token = int(L.llama_sampler_sample(sampler, self._ctx, batch.n_tokens - 1))
            pos = len(tokens)
            started = time.perf_counter()
            for _ in range(_WARMUP_TOKENS):
                batch.n_tokens = 0
                self._add(token, pos, 0, True)
                if L.llama_decode(self._ctx, batch) != 0:
                    raise RuntimeError("llama.cpp could not decode during the warm-up")
                pos += 1
                token = int(L.llama_sampler_sample(sampler, self._ctx, 0))
            self._counters.tokens_per_second = _WARMUP_TOKENS / (time.perf_counter() - started)
        finally:
            L.llama_sampler_free(sampler)
            L.llama_memory_seq_rm(self._memory, 0, -1, -1)

    def _token_text(self, token: int) -> str:
        if token < 0:
            return ""
        raw = self._L.llama_vocab_get_text(self._vocab, token)
        return raw.decode("utf-8", errors="replace") if raw else ""

    def _chat_formatter(self) -> Any:
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        raw = self._L.llama_model_chat_template(self._model, None)
        template = raw.decode("utf-8", errors="replace") if raw else _FALLBACK_TEMPLATE
        if not raw:
            log.warning("The GGUF model has no chat template; chat uses ChatML")
        return Jinja2ChatFormatter(
            template=template, eos_token=self._eos_text, bos_token=self._bos_text, add_generation_prompt=True
        )

    def _free_native(self) -> None:
        L = self._L
        if self._batch is not None:
            L.llama_batch_free(self._batch)
            self._batch = None
        if self._ctx:
            L.llama_free(self._ctx)
            self._ctx = None
        if self._model:
            L.llama_model_free(self._model)
            self._model = None


def _text_size(request: GenerationRequest) -> int:
    if request.messages is None:
        return len(request.prompt or "")
    return sum(len(str(m.get("content") or "")) for m in request.messages)


def _set_released(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
