"""The vLLM generation engine: ``vllm serve`` as a managed subprocess, spoken to over HTTP.

For GPUs. Each replica runs its own vLLM OpenAI-compatible server::

    vllm serve <model-dir> --host 127.0.0.1 --port <free port> --served-model-name <name>
               [--max-model-len N] [--gpu-memory-utilization F] [extra args]

and maps each :class:`~modelport.entities.foundation.engine.GenerationRequest` onto one
streamed request to it (``/v1/chat/completions`` for messages, ``/v1/completions`` for a
prompt; ``stream: true`` with ``stream_options.include_usage``). vLLM's continuous
batching does the concurrency: requests are simply sent as they come (one pooled
``httpx.AsyncClient``, no connection cap). Why a subprocess and not vLLM's Python API: the
server is vLLM's supported, stable interface (the ``LLM``/``AsyncLLMEngine`` classes change
between releases), it keeps CUDA and vLLM's worker processes out of the replica process,
and the OpenAI wire format is the one modelport speaks anyway.

Mapping: ``max_tokens``, ``temperature``, ``top_p``, ``top_k`` (sent only when > 0),
``seed``, ``stop`` (vLLM leaves stop strings out of the text), ``n`` (vLLM seeds the ``n``
choices itself from ``seed``: reproducible, though not the ``seed + index`` of the
llama.cpp engine) and ``json_schema`` (``{}`` -> ``response_format: {"type":
"json_object"}``, else ``{"type": "json_schema", "json_schema": {"name": "answer",
"schema": ...}}``). Each ``data:`` line of the SSE answer becomes events: the choices'
text (``delta.content`` / ``text``) as :class:`TextDelta`, a ``finish_reason`` as
:class:`Finished` (``"length"`` stays ``"length"``; ``"stop"``, ``"eos"`` and the rest are
``"stop"``; ``"abort"`` is an error), and the final usage chunk (``choices: []``) as the
closing :class:`Usage`. vLLM's error answers keep their message: 400/404/413/422 (a
prompt longer than ``--max-model-len``, a bad schema) are a
:class:`~modelport.errors.BadRequest`, 429/503 a
:class:`~modelport.errors.TemporarilyUnavailable`.

Cancellation: closing the event iterator leaves the ``async with client.stream(...)``
block, which closes the HTTP connection; vLLM notices the disconnect and aborts the
request, freeing its KV-cache blocks.

The subprocess: started in a session of its own (so vLLM's own worker processes are
signalled with it) under a small watchdog (:data:`_WATCHDOG`) that holds the read end of a
pipe from this process: if the replica dies without :meth:`VllmEngine.aclose` (SIGKILL,
OOM killer), the pipe closes and the watchdog takes the group down, so no orphaned vLLM
keeps the GPU's memory. Its output (stdout and stderr) is copied line by line to the
replica's stderr (which goes to the entity's runtime log), prefixed ``vllm|``, and the
last lines are kept for error messages. :meth:`VllmEngine.start` waits until ``GET
/health`` answers 200 (``startup_timeout``, default 600 s: weights download and CUDA
graph capture take minutes) and raises with the tail of the output if the process exits
first. :meth:`VllmEngine.aclose` sends SIGTERM to the group, then SIGKILL after
``terminate_timeout`` (10 s).

Throughput: ``stats()["tokens_per_second"]`` is completion tokens of finished requests
divided by the seconds during which at least one request was in flight (so it is the
aggregate rate at the concurrency seen, not a per-request rate).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
import orjson

from modelport.entities.foundation.engine import (
    EngineInfo,
    Event,
    Finished,
    GenerationEngine,
    GenerationRequest,
    Sampling,
    TextDelta,
    Usage,
)
from modelport.errors import (
    BadRequest,
    DeadlineExceeded,
    InvalidParameterValue,
    ModelportError,
    TemporarilyUnavailable,
)
from modelport.spec.llm import CHAT, COMPLETIONS

__all__ = ["VllmEngine", "VllmStartError", "free_port"]

log = logging.getLogger(__name__)

DEFAULT_STARTUP_TIMEOUT_S = 600.0
DEFAULT_REQUEST_TIMEOUT_S = 600.0
DEFAULT_TERMINATE_TIMEOUT_S = 10.0
_TAIL_LINES = 60
_HEALTH_INTERVAL_S = 0.25

#: Runs the server command as its child; when the read end of its stdin hits EOF (the
#: replica is gone, however it died), it takes the whole process group down. It shrugs
#: off SIGTERM itself (the group signal reaches the server directly) and exits with the
#: server's status.
_WATCHDOG = r"""
import os, signal, subprocess, sys, threading, time
signal.signal(signal.SIGTERM, lambda *_: None)  # a handler, not SIG_IGN: exec resets it
child = subprocess.Popen(sys.argv[2:], stdin=subprocess.DEVNULL)
grace = float(sys.argv[1])
def watch():
    try:
        while os.read(0, 4096):
            pass
    except OSError:
        pass
    if child.poll() is None:
        try:
            os.killpg(0, signal.SIGTERM)
        except OSError:
            pass
        end = time.monotonic() + grace
        while child.poll() is None and time.monotonic() < end:
            time.sleep(0.1)
        os.killpg(0, signal.SIGKILL)
threading.Thread(target=watch, daemon=True).start()
code = child.wait()
sys.exit(code if code >= 0 else 128 - code)
"""


#: Raised when the vLLM server did not come up (it exited, or it was not healthy in time): a plain
#: 500, since every subclass of ModelportError must carry an error code of its own.
VllmStartError = ModelportError


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (the server binds it right after)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _stderr_sink(line: str) -> None:
    try:
        sys.stderr.write(f"vllm| {line}\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


class VllmEngine(GenerationEngine):
    """A model served by a ``vllm serve`` subprocess of this replica.

    ``VllmEngine(model_dir, ...)`` only prepares; :meth:`start` (or ``await
    VllmEngine.load(model_dir, ...)``) launches the server and waits for it. ``command``
    replaces the whole command line (each item is ``str.format``-ed with ``host``,
    ``port``, ``model`` and ``name``), for other launchers and tests; ``extra_args`` are
    appended to the default one. ``name`` is the ``--served-model-name`` and what
    answers carry as ``model`` (default: the folder's name). ``context_length`` is an alias
    of ``max_model_len`` and ``parallel`` becomes ``--max-num-seqs`` (the options the
    loader passes every engine); ``threads`` is accepted and ignored. ``env`` is added to
    this process's environment for the server (e.g. ``CUDA_VISIBLE_DEVICES``). ``output``
    receives each line the server prints (default: this process's stderr, prefixed
    ``vllm|``; ``None`` drops them).
    """

    def __init__(
        self,
        model_dir: str | os.PathLike[str],
        *,
        name: str | None = None,
        task: str = CHAT,
        max_model_len: int | None = None,
        gpu_memory_utilization: float | None = None,
        context_length: int | None = None,
        parallel: int | None = None,
        threads: int | None = None,
        extra_args: Sequence[str] = (),
        command: Sequence[str] | None = None,
        host: str = "127.0.0.1",
        port: int | None = None,
        env: Mapping[str, str] | None = None,
        startup_timeout: float = DEFAULT_STARTUP_TIMEOUT_S,
        request_timeout: float = DEFAULT_REQUEST_TIMEOUT_S,
        terminate_timeout: float = DEFAULT_TERMINATE_TIMEOUT_S,
        output: Callable[[str], None] | None = _stderr_sink,
    ) -> None:
        # The engine options every foundation engine gets (detect.engine_options): the context
        # is vLLM's --max-model-len, the sequences decoded together its --max-num-seqs, and
        # CPU threads mean nothing to it.
        if max_model_len is None:
            max_model_len = context_length
        del threads
        if parallel is not None and parallel < 1:
            raise InvalidParameterValue(f"parallel must be positive; got {parallel}.")
        if task not in (CHAT, COMPLETIONS):
            raise InvalidParameterValue(f"The vLLM engine serves {CHAT} and {COMPLETIONS}; got {task!r}.")
        if max_model_len is not None and max_model_len < 1:
            raise InvalidParameterValue(f"max_model_len must be positive; got {max_model_len}.")
        if gpu_memory_utilization is not None and not 0.0 < gpu_memory_utilization <= 1.0:
            raise InvalidParameterValue(
                f"gpu_memory_utilization must be in (0, 1]; got {gpu_memory_utilization}."
            )
        self._model_dir = str(model_dir)
        self._name = name or Path(model_dir).name
        self._host = host
        self._port = port or free_port(host)
        values = {"host": host, "port": self._port, "model": self._model_dir, "name": self._name}
        if command is not None:
            self._command = [str(part).format(**values) for part in command]
        else:
            exe = shutil.which("vllm")
            if exe is None:
                raise InvalidParameterValue(
                    "vLLM is not installed in this environment (the 'vllm' command is missing): "
                    "install modelport[vllm] on a machine with a GPU."
                )
            self._command = [
                exe, "serve", self._model_dir,
                "--host", host, "--port", str(self._port),
                "--served-model-name", self._name,
            ]  # fmt: skip
            if max_model_len is not None:
                self._command += ["--max-model-len", str(max_model_len)]
            if gpu_memory_utilization is not None:
                self._command += ["--gpu-memory-utilization", str(gpu_memory_utilization)]
            if parallel is not None:
                self._command += ["--max-num-seqs", str(parallel)]
            self._command += [str(a) for a in extra_args]
        self._env = dict(env or {})
        self._startup_timeout = startup_timeout
        self._request_timeout = request_timeout
        self._terminate_timeout = terminate_timeout
        self._output = output
        self.base_url = f"http://{host}:{self._port}"
        self.info = EngineInfo(
            engine="vllm",
            task=task,
            model=self._name,
            context_length=max_model_len or 0,
            extra={"port": self._port, "model_dir": self._model_dir},
        )
        self._proc: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None
        self._tail: deque[str] = deque(maxlen=_TAIL_LINES)
        self._client: httpx.AsyncClient | None = None
        self._closed = False
        # Throughput: completion tokens over the seconds with at least one request in flight.
        self._in_flight = 0
        self._busy_since = 0.0
        self._busy_s = 0.0
        self._tokens = 0
        self._requests = 0

    @classmethod
    async def load(cls, model_dir: str | os.PathLike[str], **kwargs: Any) -> VllmEngine:
        """A started engine (:meth:`start` done)."""
        engine = cls(model_dir, **kwargs)
        await engine.start()
        return engine

    @property
    def command(self) -> list[str]:
        return list(self._command)

    @property
    def pid(self) -> int | None:
        """The process id of the watchdog (the leader of the server's process group)."""
        return self._proc.pid if self._proc is not None else None

    # ---------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        """Launch the server and wait until ``GET /health`` answers 200."""
        if self._proc is not None:
            raise RuntimeError("The vLLM engine was already started.")
        started = time.monotonic()
        log.info("Starting vLLM: %s", " ".join(self._command))
        self._proc = subprocess.Popen(
            [sys.executable, "-c", _WATCHDOG, str(self._terminate_timeout), *self._command],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env={**os.environ, **self._env},
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read_output, name="vllm-output", daemon=True)
        self._reader.start()
        self._client = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=httpx.Timeout(self._request_timeout, connect=10.0),
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=64),
            trust_env=False,  # never through an HTTP proxy: the server is on loopback
        )
        try:
            await self._wait_healthy(started)
            await self._read_models()
        except BaseException:
            await self._shutdown()
            raise
        log.info("vLLM is ready on %s after %.1fs", self.base_url, time.monotonic() - started)

    async def _wait_healthy(self, started: float) -> None:
        assert self._proc is not None and self._client is not None
        deadline = started + self._startup_timeout
        while True:
            code = self._proc.poll()
            if code is not None:
                await asyncio.to_thread(self._join_reader, 2.0)
                raise VllmStartError(
                    f"vLLM exited with status {code} before it was ready. Its last output:\n"
                    f"{self.output_tail() or '(none)'}"
                )
            try:
                response = await self._client.get("/health", timeout=5.0)
                if response.status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() >= deadline:
                raise VllmStartError(
                    f"vLLM was not ready within {self._startup_timeout:g}s. Its last output:\n"
                    f"{self.output_tail() or '(none)'}"
                )
            await asyncio.sleep(_HEALTH_INTERVAL_S)

    async def _read_models(self) -> None:
        """The served model's context length (``max_model_len`` of ``GET /v1/models``)."""
        assert self._client is not None
        try:
            response = await self._client.get("/v1/models", timeout=10.0)
            models = orjson.loads(response.content).get("data") or []
        except (httpx.HTTPError, orjson.JSONDecodeError, AttributeError):
            return
        for model in models:
            if isinstance(model, dict) and model.get("id") == self._name and model.get("max_model_len"):
                self.info = EngineInfo(
                    engine=self.info.engine,
                    task=self.info.task,
                    model=self.info.model,
                    context_length=int(model["max_model_len"]),
                    extra=self.info.extra,
                )

    async def aclose(self) -> None:
        """Stop the server: SIGTERM to its process group, SIGKILL after ``terminate_timeout``.
        Requests in flight end with :class:`~modelport.errors.TemporarilyUnavailable`."""
        if self._closed:
            return
        self._closed = True
        await self._shutdown()

    async def _shutdown(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()
        proc = self._proc
        if proc is not None:
            await asyncio.to_thread(self._terminate, proc)
            await asyncio.to_thread(self._join_reader, 5.0)
            if proc.stdin is not None:
                with contextlib.suppress(OSError):
                    proc.stdin.close()

    def _terminate(self, proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=self._terminate_timeout)
            except subprocess.TimeoutExpired:
                log.warning("vLLM did not stop within %gs of SIGTERM; killing it", self._terminate_timeout)
        # SIGKILL whatever is left of the group (vLLM's workers, should one outlive the server).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

    def _read_output(self) -> None:
        proc = self._proc
        if proc is None or proc.stdout is None:
            return
        for raw in iter(proc.stdout.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            self._tail.append(line)
            if self._output is not None:
                self._output(line)
        proc.stdout.close()

    def _join_reader(self, timeout: float) -> None:
        if self._reader is not None:
            self._reader.join(timeout)

    def output_tail(self, lines: int = 30) -> str:
        """The last ``lines`` lines the server printed."""
        return "\n".join(list(self._tail)[-lines:])

    # ---------------------------------------------------------------- requests
    def stats(self) -> dict[str, Any]:
        busy = self._busy_s
        if self._in_flight:
            busy += time.monotonic() - self._busy_since
        proc = self._proc
        return {
            "tokens_per_second": self._tokens / busy if busy > 0 else 0.0,
            "requests": self._requests,
            "in_flight": self._in_flight,
            "completion_tokens": self._tokens,
            "running": proc is not None and proc.poll() is None,
        }

    def request_body(self, request: GenerationRequest) -> tuple[str, dict[str, Any]]:
        """``(path, JSON body)`` of the vLLM request for ``request``."""
        s: Sampling = request.sampling
        body: dict[str, Any] = {
            "model": self._name,
            "stream": True,
            "stream_options": {"include_usage": True},
            "max_tokens": s.max_tokens,
            "temperature": s.temperature,
            "top_p": s.top_p,
            "n": request.n,
        }
        if s.top_k > 0:
            body["top_k"] = s.top_k
        if s.seed is not None:
            body["seed"] = s.seed
        if s.stop:
            body["stop"] = list(s.stop)
        if s.json_schema is not None:
            if len(s.json_schema) == 0:
                body["response_format"] = {"type": "json_object"}
            else:
                body["response_format"] = {
                    "type": "json_schema",
                    "json_schema": {"name": "answer", "schema": dict(s.json_schema)},
                }
        if request.messages is not None:
            body["messages"] = [dict(m) for m in request.messages]
            return "/v1/chat/completions", body
        body["prompt"] = request.prompt or ""
        return "/v1/completions", body

    async def generate(self, request: GenerationRequest) -> AsyncIterator[Event]:
        client = self._client
        if client is None or self._closed:
            raise TemporarilyUnavailable("The vLLM engine is not running.", retry_after=1)
        path, body = self.request_body(request)
        chat = request.messages is not None
        finished: set[int] = set()
        usage: Mapping[str, Any] | None = None
        self._begin()
        completion_tokens = 0
        try:
            try:
                async with client.stream("POST", path, content=orjson.dumps(body), headers=_JSON) as response:
                    if response.status_code != 200:
                        await response.aread()
                        raise self._answer_error(response.status_code, response.content)
                    async for data in _sse_data(response):
                        if data == "[DONE]":
                            break
                        chunk = _json(data)
                        if "error" in chunk or chunk.get("object") == "error":
                            raise self._stream_error(chunk)
                        for choice in chunk.get("choices") or ():
                            index = int(choice.get("index") or 0)
                            text = (choice.get("delta") or {}).get("content") if chat else choice.get("text")
                            if text:
                                yield TextDelta(index=index, text=text)
                            reason = choice.get("finish_reason")
                            if reason is not None and index not in finished:
                                if reason == "abort":
                                    raise TemporarilyUnavailable("vLLM aborted the request.", retry_after=1)
                                finished.add(index)
                                yield Finished(index=index, reason="length" if reason == "length" else "stop")
                        if chunk.get("usage"):
                            usage = chunk["usage"]
            except httpx.TimeoutException:
                raise DeadlineExceeded(
                    f"vLLM sent nothing for {self._request_timeout:g}s (request timeout)."
                ) from None
            except httpx.HTTPError as exc:
                raise self._transport_error(exc) from None
            for index in range(request.n):
                if index not in finished:
                    yield Finished(index=index, reason="stop")
            prompt_tokens = int((usage or {}).get("prompt_tokens") or 0)
            completion_tokens = int((usage or {}).get("completion_tokens") or 0)
            if usage is None:
                log.warning("vLLM's stream for %s ended without a usage chunk", path)
            yield Usage(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)
        finally:
            self._end(completion_tokens)

    def _begin(self) -> None:
        if self._in_flight == 0:
            self._busy_since = time.monotonic()
        self._in_flight += 1
        self._requests += 1

    def _end(self, tokens: int) -> None:
        self._in_flight -= 1
        self._tokens += tokens
        if self._in_flight == 0:
            self._busy_s += time.monotonic() - self._busy_since

    def _answer_error(self, status: int, content: bytes) -> ModelportError:
        message = _error_message(content) or f"vLLM answered HTTP {status}."
        if status in (400, 404, 413, 422):
            return BadRequest(message)
        if status in (429, 503):
            return TemporarilyUnavailable(message, retry_after=1)
        return ModelportError(f"vLLM answered HTTP {status}: {message}")

    def _stream_error(self, chunk: Mapping[str, Any]) -> ModelportError:
        inner = chunk.get("error")
        error: Mapping[str, Any] = inner if isinstance(inner, dict) else chunk
        message = str(error.get("message") or "vLLM reported an error in its stream.")
        code = error.get("code")
        if code in (400, 404, 413, 422) or error.get("type") == "BadRequestError":
            return BadRequest(message)
        return ModelportError(f"vLLM: {message}")

    def _transport_error(self, exc: httpx.HTTPError) -> ModelportError:
        if self._closed:
            return TemporarilyUnavailable("The vLLM engine was closed.", retry_after=1)
        proc = self._proc
        if proc is not None and proc.poll() is not None:
            return TemporarilyUnavailable(
                f"vLLM exited with status {proc.returncode}. Its last output:\n{self.output_tail(15)}",
                retry_after=5,
            )
        return TemporarilyUnavailable(f"The connection to vLLM failed: {exc!r}", retry_after=1)


_JSON = {"content-type": "application/json", "accept": "text/event-stream"}


async def _sse_data(response: httpx.Response) -> AsyncIterator[str]:
    """The ``data`` of each event of a ``text/event-stream`` body (multi-line data joined)."""
    data: list[str] = []
    async for line in response.aiter_lines():
        if not line:
            if data:
                yield "\n".join(data)
                data = []
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        if field == "data":
            data.append(value[1:] if value.startswith(" ") else value)
    if data:
        yield "\n".join(data)


def _json(data: str) -> dict[str, Any]:
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise ModelportError(f"vLLM sent a stream chunk that is not JSON: {data[:200]!r}") from None
    if not isinstance(value, dict):
        raise ModelportError(f"vLLM sent a stream chunk that is not an object: {data[:200]!r}")
    return value


def _error_message(content: bytes) -> str:
    """The message of a vLLM error answer: ``{"object": "error", "message": ...}`` or, in
    newer releases, ``{"error": {"message": ...}}``."""
    try:
        body = orjson.loads(content)
    except orjson.JSONDecodeError:
        return content.decode("utf-8", "replace").strip()[:500]
    if isinstance(body, dict):
        inner = body.get("error")
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])
        if body.get("message"):
            return str(body["message"])
        if isinstance(body.get("detail"), str):
            return str(body["detail"])
    return content.decode("utf-8", "replace").strip()[:500]
