"""The llama.cpp engine on a real model (SmolLM2-135M-Instruct, Q4_1), batched decoding included.

One engine (4 sequence slots) serves the whole module; each test drives it from its own
``asyncio.run``. Greedy answers are compared with answers to the same request run alone,
never with answers produced inside a different batch (llama.cpp's numerics may differ with
the batch's shape).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from modelport.entities.foundation.engine import (
    Event,
    Finished,
    GenerationRequest,
    Sampling,
    TextDelta,
    Usage,
)
from modelport.entities.foundation.llamacpp import LlamaCppEngine, _TextStream
from modelport.errors import BadRequest, InvalidParameterValue, TemporarilyUnavailable

PARALLEL = 4
SMOLLM2_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
COUNTING = "1, 2, 3, 4, 5, 6, 7, 8,"  # greedy: the model counts on and on
PERSON_SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string", "maxLength": 30}, "age": {"type": "integer"}},
    "required": ["name", "age"],
}


@pytest.fixture(scope="module")
def engine(smollm2_path: Path) -> Iterator[LlamaCppEngine]:
    eng = LlamaCppEngine(smollm2_path, name="smollm2", parallel=PARALLEL)
    yield eng
    asyncio.run(eng.aclose())


@dataclass
class Answer:
    texts: dict[int, str] = field(default_factory=dict)
    reasons: dict[int, str] = field(default_factory=dict)
    usage: Usage | None = None
    events: list[Event] = field(default_factory=list)

    @property
    def text(self) -> str:
        return self.texts.get(0, "")


async def collect(engine: LlamaCppEngine, request: GenerationRequest) -> Answer:
    answer = Answer()
    async for event in engine.generate(request):
        assert answer.usage is None, "Usage must be the last event"
        answer.events.append(event)
        if isinstance(event, TextDelta):
            answer.texts[event.index] = answer.texts.get(event.index, "") + event.text
        elif isinstance(event, Finished):
            assert event.index not in answer.reasons
            answer.reasons[event.index] = event.reason
        else:
            answer.usage = event
    assert answer.usage is not None
    return answer


def run(engine: LlamaCppEngine, request: GenerationRequest) -> Answer:
    return asyncio.run(collect(engine, request))


def chat(content: str, n: int = 1, **sampling: Any) -> GenerationRequest:
    sampling.setdefault("max_tokens", 48)
    sampling.setdefault("temperature", 0.0)
    return GenerationRequest(Sampling(**sampling), messages=[{"role": "user", "content": content}], n=n)


def complete(prompt: str, **sampling: Any) -> GenerationRequest:
    sampling.setdefault("temperature", 0.0)
    return GenerationRequest(Sampling(**sampling), prompt=prompt)


# ------------------------------------------------------------------ text stream (no model)


def test_text_stream_holds_back_what_may_start_a_stop_sequence() -> None:
    stream = _TextStream(["END"])
    assert stream.feed(b"abc E") == ("abc ", False)
    assert stream.feed(b"N") == ("", False)  # "EN" may still become "END"
    assert stream.feed(b"x") == ("ENx", False)  # it did not
    assert stream.feed(b" yE") == (" y", False)
    assert stream.feed(b"ND and more") == ("", True)  # cut: the stop and what follows
    assert stream.flush() == ""


def test_text_stream_flushes_an_unfinished_stop_prefix_at_the_end() -> None:
    stream = _TextStream(["\n\n", "###"])
    assert stream.feed(b"a\n") == ("a", False)
    assert stream.feed(b"#") == ("\n", False)
    assert stream.flush() == "#"


def test_text_stream_cuts_at_the_earliest_stop_sequence() -> None:
    stream = _TextStream(["world", "lo w"])
    assert stream.feed(b"hello world") == ("hel", True)


def test_text_stream_joins_characters_split_across_tokens() -> None:
    data = "café 😀".encode()
    stream = _TextStream([])
    out = "".join(stream.feed(data[i : i + 1])[0] for i in range(len(data)))
    assert out == "café 😀"
    # A stop sequence made of a multi-byte character is matched once the character is whole.
    stream = _TextStream(["😀"])
    assert stream.feed(b"ok " + "😀".encode()[:2]) == ("ok ", False)
    assert stream.feed("😀".encode()[2:] + b" tail") == ("", True)


# ------------------------------------------------------------------ the engine


def test_info_and_stats(engine: LlamaCppEngine) -> None:
    assert engine.info.engine == "llama.cpp"
    assert engine.info.model == "smollm2"
    assert engine.info.context_length == 2048
    assert engine.info.extra["parallel"] == PARALLEL
    assert engine.info.extra["threads"] >= 1
    stats = engine.stats()
    assert stats["engine"] == "llama.cpp"
    assert stats["tokens_per_second"] > 0  # measured by the warm-up at load
    assert {"active", "waiting", "tokens_generated"} <= stats.keys()


def test_chat_answer_and_usage(engine: LlamaCppEngine) -> None:
    answer = run(engine, chat("What is 2+2?", max_tokens=64))
    assert answer.text.strip()
    assert answer.reasons == {0: "stop"}
    assert isinstance(answer.events[-1], Usage) and isinstance(answer.events[-2], Finished)
    # The prompt is the model's own (ChatML) template with its default system message.
    rendered = (
        f"<|im_start|>system\n{SMOLLM2_SYSTEM}<|im_end|>\n"
        "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n"
    )
    assert engine.render_chat([{"role": "user", "content": "What is 2+2?"}]) == rendered
    assert answer.usage == Usage(
        prompt_tokens=len(engine.tokenize(rendered)),
        completion_tokens=len(engine.tokenize(answer.text, add_bos=False)),
    )
    assert 0 < answer.usage.completion_tokens < 64


def test_max_tokens_ends_with_length_after_exactly_max_tokens(engine: LlamaCppEngine) -> None:
    answer = run(engine, complete(COUNTING, max_tokens=7))
    assert answer.reasons == {0: "length"}
    assert answer.usage is not None and answer.usage.completion_tokens == 7
    assert answer.usage.prompt_tokens == len(engine.tokenize(COUNTING))
    assert answer.text.startswith(" 9, 10")


def test_greedy_is_deterministic(engine: LlamaCppEngine) -> None:
    first = run(engine, chat("Name three colors.", max_tokens=32))
    second = run(engine, chat("Name three colors.", max_tokens=32))
    assert first.text and first.text == second.text


def test_seed_makes_sampling_reproducible(engine: LlamaCppEngine) -> None:
    def sample(seed: int) -> str:
        return run(
            engine, chat("Write a sentence about the sea.", temperature=1.0, seed=seed, max_tokens=24)
        ).text

    first = sample(1234)
    assert first and sample(1234) == first
    assert any(sample(seed) != first for seed in (1, 2))


def test_stop_sequence_cuts_the_answer(engine: LlamaCppEngine) -> None:
    full = run(engine, complete(COUNTING, max_tokens=24)).text
    assert ", 13," in full
    answer = run(engine, complete(COUNTING, max_tokens=24, stop=(", 13,",)))
    assert answer.reasons == {0: "stop"}
    assert answer.text == full[: full.index(", 13,")]
    # No delta ever carried part of the stop sequence that was later cut.
    assert "".join(e.text for e in answer.events if isinstance(e, TextDelta)) == answer.text
    # A stop sequence that never matches leaves the answer whole (what was held back is sent).
    assert run(engine, complete(COUNTING, max_tokens=24, stop=(", 99",))).text == full


def test_n_choices_are_separate_sequences(engine: LlamaCppEngine) -> None:
    content = "Write a sentence about cats."
    answer = run(engine, chat(content, n=2, temperature=1.0, seed=7, max_tokens=24))
    assert set(answer.texts) == {0, 1} and all(answer.texts.values())
    assert set(answer.reasons) == {0, 1}
    assert answer.texts[0] != answer.texts[1]  # seeds 7 and 8
    assert engine.stats()["max_batch_sequences"] >= 2
    assert answer.usage is not None
    # The prompt counts once; the completion counts both choices.
    prompt = engine.tokenize(engine.render_chat([{"role": "user", "content": content}]))
    assert answer.usage.prompt_tokens == len(prompt)
    both = sum(len(engine.tokenize(t, add_bos=False)) for t in answer.texts.values())
    assert abs(answer.usage.completion_tokens - both) <= 2  # sampled text may retokenize differently


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_json_schema_answers_parse(engine: LlamaCppEngine, temperature: float) -> None:
    for seed in (1, 2):
        request = chat(
            "Describe a person as JSON with a name and an age.",
            temperature=temperature,
            seed=seed,
            max_tokens=96,
            json_schema=PERSON_SCHEMA,
        )
        answer = run(engine, request)
        assert answer.reasons == {0: "stop"}, answer.text
        value = json.loads(answer.text)
        assert isinstance(value["name"], str) and isinstance(value["age"], int)


def test_json_object_answers_parse(engine: LlamaCppEngine) -> None:
    answer = run(engine, chat("Reply in JSON: what is the capital of France?", json_schema={}, max_tokens=64))
    assert answer.reasons == {0: "stop"}, answer.text
    assert isinstance(json.loads(answer.text), dict)


def test_bad_json_schema_is_rejected(engine: LlamaCppEngine) -> None:
    with pytest.raises(InvalidParameterValue, match="JSON schema"):
        run(engine, chat("hi", json_schema={"type": "no-such-type"}))


def test_multibyte_characters_come_out_whole(engine: LlamaCppEngine) -> None:
    assert len(engine.tokenize("😀", add_bos=False)) > 1  # an emoji spans several tokens
    answer = run(engine, chat("Write the French word for coffee and a heart emoji.", max_tokens=24))
    assert any(ord(ch) > 0xFFFF for ch in answer.text), answer.text  # emojis came out
    assert "\ufffd" not in answer.text
    assert answer.text.encode("utf-8").decode("utf-8") == answer.text
    assert all("\ufffd" not in e.text for e in answer.events if isinstance(e, TextDelta))


def test_concurrent_requests_are_decoded_together(engine: LlamaCppEngine) -> None:
    requests = [chat(f"Tell me a fact about the number {i}.", max_tokens=32) for i in range(PARALLEL)]

    async def all_at_once() -> list[Answer]:
        return await asyncio.gather(*(collect(engine, r) for r in requests))

    answers = asyncio.run(all_at_once())
    assert all(a.text and a.usage is not None and a.reasons for a in answers)
    stats = engine.stats()
    assert stats["max_batch_sequences"] == PARALLEL  # all four in one llama_decode
    assert stats["active"] == 0 and stats["waiting"] == 0


def test_closing_the_iterator_frees_the_slot_for_a_waiting_request(engine: LlamaCppEngine) -> None:
    async def scenario() -> None:
        long_runs: list[AsyncIterator[Event]] = []
        for _ in range(PARALLEL):  # fill every slot with a generation of 1000 tokens
            stream = engine.generate(complete(COUNTING, max_tokens=1000))
            assert isinstance(await anext(stream), TextDelta)
            long_runs.append(stream)
        first = long_runs[0]
        assert isinstance(await anext(first), TextDelta)  # two deltas read from the first one
        assert engine.stats()["active"] == PARALLEL

        waiting = asyncio.create_task(collect(engine, chat("Hi!", max_tokens=8)))
        for _ in range(500):
            await asyncio.sleep(0.01)
            if engine.stats()["waiting"] == 1:
                break
        assert engine.stats()["waiting"] == 1 and not waiting.done()

        # A waiting request whose consumer is cancelled leaves the queue at once.
        impatient = asyncio.create_task(collect(engine, chat("Hello?", max_tokens=8)))
        for _ in range(500):
            await asyncio.sleep(0.01)
            if engine.stats()["waiting"] == 2:
                break
        assert engine.stats()["waiting"] == 2
        impatient.cancel()
        with pytest.raises(asyncio.CancelledError):
            await impatient
        assert engine.stats()["waiting"] == 1

        started = time.monotonic()
        await first.aclose()  # the client went away
        answer = await asyncio.wait_for(waiting, timeout=20)
        assert answer.usage is not None and answer.reasons
        assert time.monotonic() - started < 20
        for stream in long_runs[1:]:
            await stream.aclose()
        assert engine.stats()["active"] == 0  # freed before aclose() returned
        assert engine.stats()["waiting"] == 0

    asyncio.run(scenario())
    # The engine is still fine afterwards.
    assert run(engine, complete(COUNTING, max_tokens=3)).usage == Usage(
        prompt_tokens=len(engine.tokenize(COUNTING)), completion_tokens=3
    )


def test_prompt_longer_than_the_context_is_a_bad_request(engine: LlamaCppEngine) -> None:
    prompt = "hello " * 3000
    n = len(engine.tokenize(prompt))
    with pytest.raises(BadRequest) as err:
        run(engine, complete(prompt, max_tokens=4))
    assert str(n) in err.value.message and "2048" in err.value.message
    assert engine.stats()["active"] == 0


def test_answer_stops_with_length_when_the_context_is_full(smollm2_path: Path) -> None:
    small = LlamaCppEngine(smollm2_path, parallel=1, context_length=64, warmup=False)
    try:
        prompt_tokens = len(small.tokenize(COUNTING))
        answer = run(small, complete(COUNTING, max_tokens=500))
        assert answer.reasons == {0: "length"}
        assert answer.usage == Usage(prompt_tokens, 64 - prompt_tokens + 1)
    finally:
        asyncio.run(small.aclose())


def test_long_prompts_are_read_in_chunks_between_decode_steps(smollm2_path: Path) -> None:
    small = LlamaCppEngine(
        smollm2_path, parallel=2, context_length=256, n_batch=32, prefill_chunk=8, warmup=False
    )
    prompt = "The history of the old city is long and full of stories. " * 8
    n_prompt = len(small.tokenize(prompt))
    assert n_prompt > 64  # more than two full batches

    async def scenario() -> tuple[Answer, Answer]:
        counting = small.generate(complete(COUNTING, max_tokens=100))
        assert isinstance(await anext(counting), TextDelta)  # decoding when the long prompt comes
        calls = small.stats()["decode_calls"]
        reader = await collect(small, complete(prompt, max_tokens=4))
        # 8 prompt tokens a turn while the other sequence decodes: one turn per chunk at least.
        assert small.stats()["decode_calls"] - calls >= n_prompt // 8
        rest = Answer()
        async for event in counting:
            if isinstance(event, Usage):
                rest.usage = event
        return reader, rest

    try:
        reader, rest = asyncio.run(scenario())
        assert reader.usage == Usage(n_prompt, 4)
        assert rest.usage == Usage(len(small.tokenize(COUNTING)), 100)
        assert small.stats()["max_batch_sequences"] == 2
    finally:
        asyncio.run(small.aclose())


def test_aclose_ends_requests_in_flight(smollm2_path: Path) -> None:
    small = LlamaCppEngine(smollm2_path, parallel=1, context_length=256, warmup=False)

    async def scenario() -> None:
        running = small.generate(complete(COUNTING, max_tokens=200))
        queued = small.generate(complete(COUNTING, max_tokens=200))
        assert isinstance(await anext(running), TextDelta)
        queued_first = asyncio.create_task(anext(queued))
        await asyncio.sleep(0.05)
        await small.aclose()
        with pytest.raises(TemporarilyUnavailable):
            while True:
                await anext(running)
        with pytest.raises(TemporarilyUnavailable):
            await queued_first
        with pytest.raises(TemporarilyUnavailable):
            await anext(small.generate(complete(COUNTING, max_tokens=2)))

    asyncio.run(scenario())
