"""A replica's handler for an agent: an MLflow pyfunc written with MLflow's agent interfaces.

Started as ``python -m modelport.runtime.worker --socket PATH --kind agent --model-path DIR
--task agent/v1/responses`` (``runtime/local.py`` picks ``--kind agent`` for a model
``entities/agents.py`` detects as an agent). Unlike a custom model, an agent is called one
request at a time (no Batcher): each request runs in a thread of its own, up to
``--concurrency`` at once (the others wait for a thread).

- AGENT_PREDICT (and a plain PREDICT, without a context): the body is validated on the event
  loop (``entities.agents.parsed_request``: a bad body is a 400 naming the field), then the
  pyfunc's ``predict`` runs in a thread; the answer is its JSON, with a trailer holding the
  request's MLflow trace.
- AGENT_STREAM (and STREAM): the pyfunc's ``predict_stream`` runs in one thread from its first
  event to its last (spans keep their parents within one thread's context); each event is one
  chunk (its JSON), then the trailer with the trace. When the request is cancelled (the client
  went away) the thread closes the agent's generator at its next event: the agent's
  ``finally`` blocks run, and its code stops.

While the agent runs, ``protocol.current_agent_context`` holds the request's
:class:`~modelport.runtime.protocol.AgentContext` (its tools call other endpoints with it:
``modelport.client.agent_tools``). Traces stay in this process (``runtime/agent_tracing.py``).
What the agent raises is the request's error: a ``ModelportError`` (an inner call refused) as
it is, MLflow's input errors as 400, anything else as a 500 naming the exception.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import threading
from collections.abc import AsyncGenerator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import orjson

from modelport.entities.agents import AGENT_TASKS, agent_task_of, parsed_request
from modelport.errors import InvalidParameterValue, ModelportError
from modelport.runtime.agent_tracing import TraceCapture, install
from modelport.runtime.protocol import AgentContext, Trailer, current_agent_context
from modelport.runtime.replica_server import Handler

__all__ = ["AgentHandler"]

#: Agent requests running at once in one replica, unless ``--concurrency`` says.
DEFAULT_CONCURRENCY = 4


class AgentHandler(Handler):
    def __init__(self, model: Any, task: str, capture: TraceCapture, concurrency: int, name: str) -> None:
        self.model = model
        self.task = task
        self.capture = capture
        self.name = name
        self.what = f"python_function agent ({task})"
        self._pool = ThreadPoolExecutor(max(1, concurrency), thread_name_prefix="agent")
        self.requests = 0
        self.running = 0
        self.streams_closed_early = 0

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        group = parser.add_argument_group("agent (--kind agent)")
        group.add_argument("--model-path", required=True, help="Local folder holding the MLmodel file.")
        group.add_argument(
            "--task",
            choices=["", *AGENT_TASKS],
            default="",
            help="The agent's interface; empty: read from the MLmodel file.",
        )
        group.add_argument(
            "--concurrency", type=int, default=DEFAULT_CONCURRENCY, help="Requests the agent runs at once."
        )

    @classmethod
    def load(cls, args: argparse.Namespace) -> AgentHandler:
        from mlflow.environment_variables import _MLFLOW_IS_IN_SERVING_ENVIRONMENT

        _MLFLOW_IS_IN_SERVING_ENVIRONMENT.set("true")
        capture = install()  # before the model's code runs: it may trace while it loads
        task = args.task or agent_task_of(Path(args.model_path))
        if task is None:
            raise RuntimeError(f"the model at {args.model_path} is not an MLflow agent")
        import mlflow.pyfunc

        model = mlflow.pyfunc.load_model(args.model_path)
        name = os.environ.get("MODELPORT_ENDPOINT") or "agent"
        return cls(model, task, capture, args.concurrency, name)

    def details(self) -> str:
        return f"; task {self.task}"

    def stats(self) -> dict[str, Any]:
        return {
            "agent_task": self.task,
            "agent_requests": self.requests,
            "agent_running": self.running,
            "agent_streams_closed_early": self.streams_closed_early,
        }

    async def aclose(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    # ---- answers -------------------------------------------------------------------------------
    async def predict(self, payload: bytes) -> bytes:
        return (await self.predict_agent(payload, None))[0]

    async def predict_agent(
        self, payload: bytes, context: AgentContext | None
    ) -> tuple[bytes, Trailer | None]:
        request = parsed_request(self.task, payload)
        self.requests += 1
        loop = asyncio.get_running_loop()
        answer, trace = await loop.run_in_executor(self._pool, self._predict, request, context)
        return orjson.dumps(answer, default=_jsonable), Trailer(trace=trace)

    def _predict(self, request: dict[str, Any], context: AgentContext | None) -> tuple[Any, bytes | None]:
        """Run the agent's ``predict`` (in a pool thread); the answer and the trace."""
        token = current_agent_context.set(context)
        self.running += 1
        try:
            request_id = context.parent_request_id if context is not None else None
            with self.capture.request_span(self.name, request, request_id) as span:
                try:
                    answer = self.model.predict(request)
                except Exception as exc:
                    raise _error(exc) from exc
                span.set_outputs(answer)
            return answer, self.capture.take(span.trace_id)
        finally:
            self.running -= 1
            current_agent_context.reset(token)

    async def stream(self, payload: bytes) -> AsyncGenerator[bytes, None]:
        async for event in self.stream_agent(payload, None):
            if isinstance(event, bytes):
                yield event

    async def stream_agent(
        self, payload: bytes, context: AgentContext | None
    ) -> AsyncGenerator[bytes | Trailer, None]:
        request = parsed_request(self.task, payload)
        self.requests += 1
        loop = asyncio.get_running_loop()
        events: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        stop = threading.Event()

        def put(kind: str, value: Any) -> None:
            loop.call_soon_threadsafe(events.put_nowait, (kind, value))

        done = loop.run_in_executor(self._pool, self._stream, request, context, stop, put)
        ended = False
        try:
            while True:
                kind, value = await events.get()
                if kind == "chunk":
                    yield value
                elif kind == "end":
                    ended = True
                    if value is not None:
                        yield Trailer(trace=value)
                    return
                else:
                    ended = True
                    raise value
        finally:
            stop.set()  # the thread closes the agent's generator at its next event
            if not ended:
                self.streams_closed_early += 1
            done.add_done_callback(_ignore)

    def _stream(
        self,
        request: dict[str, Any],
        context: AgentContext | None,
        stop: threading.Event,
        put: Callable[[str, Any], None],
    ) -> None:
        """Run the agent's ``predict_stream`` to its end or until ``stop`` (in a pool thread)."""
        token = current_agent_context.set(context)
        self.running += 1
        try:
            request_id = context.parent_request_id if context is not None else None
            with self.capture.request_span(self.name, request, request_id) as span:
                events = None
                try:
                    events = self.model.predict_stream(request)
                    count = 0
                    for event in events:
                        if stop.is_set():
                            break
                        put("chunk", orjson.dumps(event, default=_jsonable))
                        count += 1
                    span.set_outputs({"events": count, "closed_early": stop.is_set()})
                except Exception as exc:
                    raise _error(exc) from exc
                finally:
                    close = getattr(events, "close", None)
                    if close is not None:
                        close()  # GeneratorExit inside the agent: its finally blocks run now
            put("end", self.capture.take(span.trace_id))
        except ModelportError as exc:
            put("error", exc)
        except Exception as exc:  # a failure of our own
            put("error", ModelportError(f"{type(exc).__name__}: {exc}"))
        finally:
            self.running -= 1
            current_agent_context.reset(token)


def _error(exc: Exception) -> ModelportError:
    """What the request answers when the agent raised ``exc``."""
    if isinstance(exc, ModelportError):
        return exc
    code = getattr(exc, "error_code", None)
    if code in ("INVALID_PARAMETER_VALUE", "BAD_REQUEST"):
        return InvalidParameterValue(f"The agent refused the request: {getattr(exc, 'message', exc)}")
    if type(exc).__name__ == "ValidationError":  # pydantic: the agent's input or output model
        return InvalidParameterValue(f"The agent refused the request: {exc}")
    return ModelportError(f"The agent raised {type(exc).__name__}: {exc}")


def _jsonable(value: Any) -> Any:
    """What orjson cannot encode by itself in an agent's answer: pydantic models, sets."""
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return dump(exclude_none=True)
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _ignore(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()  # retrieved: the thread reported its failure through the queue
