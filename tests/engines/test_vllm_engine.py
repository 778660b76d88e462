"""The vLLM engine (``modelport/entities/foundation/vllm_engine.py``).

vLLM needs a GPU, so most tests run the engine against a fake server: this very file,
run as a script (``python test_vllm_engine.py --port N ...``), is a small threaded HTTP
server that speaks vLLM's OpenAI-compatible streaming wire format (chunked ``data:`` SSE
lines, a role chunk first for chat, ``finish_reason`` values, a last usage chunk with
``choices: []``, ``data: [DONE]``, vLLM's error bodies). The engine launches it through
its ``command`` override, so the real subprocess management is exercised: the watchdog,
the health wait, output capture, SIGTERM/SIGKILL, and the HTTP client. The fake records
the requests it got and the streams whose client went away (``GET /_state``).

What the fake answers depends on the prompt (the last message's content, or ``prompt``):
``slow`` streams a token every 20 ms until the client disconnects, ``bad request``
answers 400, ``midstream error`` sends an error event after one token; anything else is
``Hello, world! How are you?`` in 8 tokens per choice, cut at ``max_tokens``.

The last test serves a real model with real vLLM; it runs only where ``vllm`` is on PATH,
``nvidia-smi -L`` succeeds and ``MODELPORT_VLLM_TEST_MODEL`` names a local model folder.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelport.entities.foundation.engine import (
    Event,
    Finished,
    GenerationRequest,
    Sampling,
    TextDelta,
    Usage,
)
from modelport.entities.foundation.vllm_engine import VllmEngine, VllmStartError
from modelport.errors import BadRequest, InvalidParameterValue, ModelportError, TemporarilyUnavailable
from modelport.spec.llm import CHAT

FAKE = str(Path(__file__).resolve())
FAKE_CONTEXT = 2048
REPLY = ["Hello", ",", " world", "!", " How", " are", " you", "?"]


# ---- the fake vLLM server (run as a script) ---------------------------------------------------------
class _State:
    def __init__(self, name: str) -> None:
        self.name = name
        self.lock = threading.Lock()
        self.requests: list[dict[str, Any]] = []
        self.disconnects = 0


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    state: _State

    def log_message(self, format: str, *args: Any) -> None:  # keep the output short
        pass

    def _json(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path == "/health":
            self.send_response(200)
            self.send_header("content-length", "0")
            self.end_headers()
        elif self.path == "/v1/models":
            model = {
                "id": self.state.name,
                "object": "model",
                "owned_by": "vllm",
                "max_model_len": FAKE_CONTEXT,
            }
            self._json(200, {"object": "list", "data": [model]})
        elif self.path == "/_state":
            with self.state.lock:
                self._json(200, {"requests": self.state.requests, "disconnects": self.state.disconnects})
        else:
            self._json(404, {"detail": "Not Found"})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("content-length", "0"))))
        with self.state.lock:
            self.state.requests.append({"path": self.path, "body": body})
        chat = self.path == "/v1/chat/completions"
        if not chat and self.path != "/v1/completions":
            self._json(404, {"detail": "Not Found"})
            return
        prompt = body["messages"][-1]["content"] if chat else body["prompt"]
        if "bad request" in prompt:
            self._json(
                400,
                {
                    "object": "error",
                    "message": "This model's maximum context length is 2048 tokens. However, you "
                    "requested 5000 tokens (4000 in the messages, 1000 in the completion).",
                    "type": "BadRequestError",
                    "param": None,
                    "code": 400,
                },
            )
            return
        self.send_response(200)
        self.send_header("content-type", "text/event-stream; charset=utf-8")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        try:
            self._stream(body, chat, prompt)
        except (BrokenPipeError, ConnectionResetError):
            with self.state.lock:
                self.state.disconnects += 1
            self.close_connection = True

    def _event(self, payload: Any) -> None:
        data = b"data: " + (payload if isinstance(payload, bytes) else json.dumps(payload).encode()) + b"\n\n"
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _chunk(self, chat: bool, index: int, text: str, finish: str | None) -> dict[str, Any]:
        if chat:
            choice: dict[str, Any] = {"index": index, "delta": {"content": text}, "logprobs": None}
        else:
            choice = {"index": index, "text": text, "logprobs": None, "stop_reason": None}
        choice["finish_reason"] = finish
        obj = "chat.completion.chunk" if chat else "text_completion"
        return {"id": "cmpl-fake", "object": obj, "created": 1, "model": self.state.name, "choices": [choice]}

    def _stream(self, body: dict[str, Any], chat: bool, prompt: str) -> None:
        n = int(body.get("n") or 1)
        if chat:
            for i in range(n):
                first = self._chunk(chat, i, "", None)
                first["choices"][0]["delta"] = {"role": "assistant", "content": ""}
                self._event(first)
        if "slow" in prompt:
            while True:  # until the client goes away (a write fails)
                self._event(self._chunk(chat, 0, " tick", None))
                time.sleep(0.02)
        if "midstream error" in prompt:
            self._event(self._chunk(chat, 0, "Hel", None))
            error = {
                "message": "The engine hit a snag.",
                "type": "InternalServerError",
                "param": None,
                "code": 500,
            }
            self._event({"error": error})
            self._event(b"[DONE]")
            self.wfile.write(b"0\r\n\r\n")
            return
        budget = int(body["max_tokens"])
        count = min(budget, len(REPLY))
        for t in range(count):
            for i in range(n):
                last = t == count - 1
                # Choice 0 gets its finish_reason with its last token, the others in a chunk
                # of their own with empty text (vLLM does both).
                finish = ("length" if budget < len(REPLY) else "stop") if last and i == 0 else None
                self._event(self._chunk(chat, i, REPLY[t], finish))
        for i in range(1, n):
            self._event(self._chunk(chat, i, "", "length" if budget < len(REPLY) else "stop"))
        prompt_tokens = len(prompt.split())
        usage = {
            "prompt_tokens": prompt_tokens,
            "total_tokens": prompt_tokens + n * count,
            "completion_tokens": n * count,
        }
        self._event(
            {
                "id": "cmpl-fake",
                "object": "chat.completion.chunk",
                "created": 1,
                "model": self.state.name,
                "choices": [],
                "usage": usage,
            }
        )
        self._event(b"[DONE]")
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


def _fake_main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--served-model-name", default="fake")
    parser.add_argument("--fail", action="store_true", help="print an error and exit 3 before serving")
    parser.add_argument("--start-delay", type=float, default=0.0)
    parser.add_argument("--ignore-sigterm", action="store_true")
    args = parser.parse_args()
    print(f"INFO: fake vLLM server process [{os.getpid()}] starting", flush=True)
    if args.ignore_sigterm:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if args.fail:
        time.sleep(0.2)
        print(
            "ERROR: torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB", file=sys.stderr
        )
        sys.exit(3)
    time.sleep(args.start_delay)
    _Handler.state = _State(args.served_model_name)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), _Handler)
    server.daemon_threads = True
    print(f"INFO: Uvicorn running on http://127.0.0.1:{args.port}", flush=True)
    server.serve_forever()


# ---- helpers ------------------------------------------------------------------------------------------
def fake_command(*extra: str) -> list[str]:
    return [sys.executable, FAKE, "--port", "{port}", "--served-model-name", "{name}", *extra]


def chat(content: str, n: int = 1, **sampling: Any) -> GenerationRequest:
    sampling.setdefault("max_tokens", 32)
    return GenerationRequest(Sampling(**sampling), messages=[{"role": "user", "content": content}], n=n)


def complete(prompt: str, **sampling: Any) -> GenerationRequest:
    sampling.setdefault("max_tokens", 32)
    return GenerationRequest(Sampling(**sampling), prompt=prompt)


async def collect(engine: VllmEngine, request: GenerationRequest) -> list[Event]:
    return [event async for event in engine.generate(request)]


def texts(events: list[Event]) -> dict[int, str]:
    out: dict[int, str] = {}
    for e in events:
        if isinstance(e, TextDelta):
            out[e.index] = out.get(e.index, "") + e.text
    return out


def fake_state(engine: VllmEngine) -> dict[str, Any]:
    return httpx.get(f"{engine.base_url}/_state", timeout=5, trust_env=False).json()


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone for our purposes.
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.fixture(scope="module")
def runner() -> Iterator[asyncio.Runner]:
    with asyncio.Runner() as r:
        yield r


@pytest.fixture(scope="module")
def engine(runner: asyncio.Runner) -> Iterator[VllmEngine]:
    lines: list[str] = []
    eng = VllmEngine("/models/fake-model", name="fake-llm", command=fake_command(), output=lines.append)
    runner.run(eng.start())
    eng.lines = lines  # type: ignore[attr-defined]
    yield eng
    runner.run(eng.aclose())


# ---- tests against the fake server ----------------------------------------------------------------------
def test_start_waits_for_health_and_reads_the_context_length(engine: VllmEngine) -> None:
    assert engine.info.engine == "vllm"
    assert engine.info.task == CHAT
    assert engine.info.model == "fake-llm"
    assert engine.info.context_length == FAKE_CONTEXT
    assert engine.stats()["running"] is True
    assert any("Uvicorn running on" in line for line in engine.lines)  # type: ignore[attr-defined]


def test_chat_stream_becomes_events_and_the_request_carries_the_sampling(
    engine: VllmEngine, runner: asyncio.Runner
) -> None:
    request = chat("Say hello", n=2, temperature=0.7, top_p=0.9, top_k=40, seed=7, stop=("\n\n", "END"))
    events = runner.run(collect(engine, request))
    assert texts(events) == {0: "Hello, world! How are you?", 1: "Hello, world! How are you?"}
    finished = [e for e in events if isinstance(e, Finished)]
    assert sorted((f.index, f.reason) for f in finished) == [(0, "stop"), (1, "stop")]
    assert events[-1] == Usage(prompt_tokens=2, completion_tokens=16)
    assert sum(isinstance(e, Usage) for e in events) == 1
    # Each choice's Finished comes after all of its text.
    for f in finished:
        pos = events.index(f)
        assert not any(isinstance(e, TextDelta) and e.index == f.index for e in events[pos:])

    sent = fake_state(engine)["requests"][-1]
    assert sent["path"] == "/v1/chat/completions"
    assert sent["body"] == {
        "model": "fake-llm",
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_tokens": 32,
        "temperature": 0.7,
        "top_p": 0.9,
        "n": 2,
        "top_k": 40,
        "seed": 7,
        "stop": ["\n\n", "END"],
        "messages": [{"role": "user", "content": "Say hello"}],
    }


def test_completions_prompt_cut_at_max_tokens_ends_with_length(
    engine: VllmEngine, runner: asyncio.Runner
) -> None:
    events = runner.run(collect(engine, complete("Once upon a time", max_tokens=3, temperature=0.0)))
    assert texts(events) == {0: "Hello, world"}
    assert [e for e in events if isinstance(e, Finished)] == [Finished(0, "length")]
    assert events[-1] == Usage(prompt_tokens=4, completion_tokens=3)
    sent = fake_state(engine)["requests"][-1]
    assert sent["path"] == "/v1/completions"
    assert sent["body"]["prompt"] == "Once upon a time"
    assert sent["body"]["temperature"] == 0.0
    for absent in ("top_k", "seed", "stop", "response_format", "messages"):
        assert absent not in sent["body"]


def test_json_schema_becomes_response_format() -> None:
    eng = VllmEngine("/m", name="x", command=fake_command(), output=None)  # not started
    _, body = eng.request_body(chat("json please", json_schema={}))
    assert body["response_format"] == {"type": "json_object"}
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    _, body = eng.request_body(chat("json please", json_schema=schema))
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "answer", "schema": schema},
    }


def test_vllm_error_answer_is_a_bad_request_with_its_message(
    engine: VllmEngine, runner: asyncio.Runner
) -> None:
    with pytest.raises(BadRequest, match="maximum context length is 2048 tokens"):
        runner.run(collect(engine, chat("bad request " * 10)))
    assert engine.stats()["in_flight"] == 0


def test_error_event_in_the_stream_raises(engine: VllmEngine, runner: asyncio.Runner) -> None:
    async def scenario() -> list[Event]:
        seen: list[Event] = []
        with pytest.raises(ModelportError, match="The engine hit a snag"):
            async for event in engine.generate(chat("midstream error")):
                seen.append(event)
        return seen

    assert runner.run(scenario()) == [TextDelta(0, "Hel")]


def test_closing_the_iterator_closes_the_upstream_stream(engine: VllmEngine, runner: asyncio.Runner) -> None:
    before = fake_state(engine)["disconnects"]

    async def scenario() -> None:
        stream = engine.generate(chat("slow please"))
        got = 0
        async for event in stream:
            if isinstance(event, TextDelta):
                got += 1
                if got == 3:
                    break
        assert engine.stats()["in_flight"] == 1
        await stream.aclose()
        assert engine.stats()["in_flight"] == 0

    runner.run(scenario())
    deadline = time.monotonic() + 5
    while fake_state(engine)["disconnects"] == before:
        assert time.monotonic() < deadline, "the fake server never saw the client go away"
        time.sleep(0.02)


def test_concurrent_requests_all_complete_and_feed_the_throughput(
    engine: VllmEngine, runner: asyncio.Runner
) -> None:
    async def scenario() -> list[list[Event]]:
        return await asyncio.gather(*(collect(engine, chat(f"hello {i}")) for i in range(8)))

    answers = runner.run(scenario())
    assert all(texts(a) == {0: "Hello, world! How are you?"} for a in answers)
    stats = engine.stats()
    assert stats["in_flight"] == 0
    assert stats["completion_tokens"] >= 8 * len(REPLY)
    assert stats["tokens_per_second"] > 0


def test_exit_during_start_raises_with_the_output() -> None:
    eng = VllmEngine("/m", name="x", command=fake_command("--fail"), output=None)
    with pytest.raises(VllmStartError) as err:
        asyncio.run(eng.start())
    message = str(err.value)
    assert "exited with status 3 before it was ready" in message
    assert "CUDA out of memory" in message
    assert not alive(eng.pid or 0)


def test_not_ready_in_time_raises_and_stops_the_process() -> None:
    eng = VllmEngine(
        "/m", name="x", command=fake_command("--start-delay", "60"), startup_timeout=1.0, output=None
    )
    started = time.monotonic()
    with pytest.raises(VllmStartError, match=r"not ready within 1s"):
        asyncio.run(eng.start())
    assert time.monotonic() - started < 15
    assert not alive(eng.pid or 0)


def test_aclose_kills_a_server_that_ignores_sigterm_and_fails_new_requests() -> None:
    async def scenario() -> VllmEngine:
        eng = VllmEngine(
            "/m", name="x", command=fake_command("--ignore-sigterm"), terminate_timeout=0.5, output=None
        )
        await eng.start()
        assert (await collect(eng, chat("hi")))[-1] == Usage(1, len(REPLY))
        started = time.monotonic()
        await eng.aclose()
        assert time.monotonic() - started < 5
        with pytest.raises(TemporarilyUnavailable):
            await collect(eng, chat("hi"))
        return eng

    eng = asyncio.run(scenario())
    assert not alive(eng.pid or 0)
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{eng.base_url}/health", timeout=2, trust_env=False)


def test_a_request_in_flight_when_the_engine_closes_ends_with_an_error() -> None:
    async def scenario() -> None:
        eng = VllmEngine("/m", name="x", command=fake_command(), output=None)
        await eng.start()
        stream = eng.generate(chat("slow"))
        await anext(stream)
        closer = asyncio.create_task(eng.aclose())
        with pytest.raises(TemporarilyUnavailable):
            async for _ in stream:
                pass
        await closer

    asyncio.run(scenario())


def test_the_server_stops_when_the_replica_process_dies(tmp_path: Path) -> None:
    """The watchdog takes the server down when its parent is SIGKILLed (no aclose)."""
    script = tmp_path / "replica.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import asyncio, sys, time
            from modelport.entities.foundation.vllm_engine import VllmEngine
            eng = VllmEngine("/m", name="x", command={fake_command()!r}, output=None)
            asyncio.run(eng.start())
            print(eng.base_url, flush=True)
            time.sleep(120)
            """
        )
    )
    with subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True) as replica:
        try:
            assert replica.stdout is not None
            base_url = replica.stdout.readline().strip()
            assert base_url.startswith("http://127.0.0.1:")
            assert httpx.get(f"{base_url}/health", timeout=5, trust_env=False).status_code == 200
        finally:
            replica.kill()
    deadline = time.monotonic() + 10
    while True:
        try:
            httpx.get(f"{base_url}/health", timeout=1, trust_env=False)
        except (httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError):
            break  # refused, or reset by a server going down while it answered
        assert time.monotonic() < deadline, "the server outlived its replica"
        time.sleep(0.1)


def test_default_command_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(InvalidParameterValue, match="vLLM is not installed"):
        VllmEngine("/models/qwen")
    monkeypatch.setattr(shutil, "which", lambda name: f"/opt/venv/bin/{name}")
    eng = VllmEngine(
        "/models/qwen",
        name="qwen",
        port=8123,
        context_length=4096,
        gpu_memory_utilization=0.8,
        parallel=16,
        threads=4,
        extra_args=["--enforce-eager"],
    )
    assert eng.command == [
        "/opt/venv/bin/vllm", "serve", "/models/qwen", "--host", "127.0.0.1", "--port", "8123",
        "--served-model-name", "qwen", "--max-model-len", "4096", "--gpu-memory-utilization", "0.8",
        "--max-num-seqs", "16", "--enforce-eager",
    ]  # fmt: skip
    assert eng.info.context_length == 4096


# ---- real vLLM --------------------------------------------------------------------------------------------
def _gpu_visible() -> bool:
    if shutil.which("nvidia-smi") is None:
        return False
    try:
        return (
            subprocess.run(["nvidia-smi", "-L"], capture_output=True, timeout=20, check=False).returncode == 0
        )
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("vllm") is None, reason="vllm is not installed")
@pytest.mark.skipif(
    not os.environ.get("MODELPORT_VLLM_TEST_MODEL"), reason="MODELPORT_VLLM_TEST_MODEL is not set"
)
@pytest.mark.timeout(900)
def test_real_vllm_serves_a_small_model() -> None:
    if not _gpu_visible():
        pytest.skip("no GPU visible (nvidia-smi -L failed)")
    model = os.environ["MODELPORT_VLLM_TEST_MODEL"]

    async def scenario() -> None:
        eng = await VllmEngine.load(model, name="test-model", max_model_len=1024, gpu_memory_utilization=0.5)
        try:
            assert eng.info.context_length == 1024
            events = await collect(eng, chat("Count from 1 to 5.", max_tokens=24, temperature=0.0))
            assert texts(events).get(0)
            assert isinstance(events[-1], Usage) and events[-1].completion_tokens > 0
            events = await collect(eng, complete("The capital of France is", max_tokens=4, temperature=0.0))
            assert [e for e in events if isinstance(e, Finished)] == [Finished(0, "length")]
            assert events[-1] == Usage(events[-1].prompt_tokens, 4)
            stream = eng.generate(chat("Write a long story.", max_tokens=512))
            await anext(stream)
            await stream.aclose()
            assert eng.stats()["in_flight"] == 0
            assert eng.stats()["tokens_per_second"] > 0
        finally:
            await eng.aclose()

    asyncio.run(scenario())


if __name__ == "__main__":
    _fake_main()
