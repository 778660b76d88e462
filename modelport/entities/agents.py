"""Agents: MLflow pyfunc models written with MLflow's agent interfaces, and their request bodies.

An agent is a registered model whose pyfunc's python model is a ``ResponsesAgent`` (task
:data:`RESPONSES_AGENT`, ``agent/v1/responses``), a ``ChatAgent`` (:data:`CHAT_AGENT`,
``agent/v2/chat``) or a ``ChatModel`` (:data:`CHAT_MODEL`, ``agent/v1/chat``).
:func:`agent_task_of` tells them apart from the model's ``MLmodel`` file, at deploy time:

1. its ``metadata.task``, which MLflow (3.x) writes when it logs one of the three;
2. else (a model logged without it, or by hand) its signature: inputs ``input`` and an output
   object with ``output`` → Responses; inputs ``messages`` and outputs ``messages`` →
   ChatAgent; inputs ``messages`` and outputs ``choices`` → ChatModel;
3. else it is not an agent (a plain custom model).

Only a model with the ``python_function`` flavor whose loader is MLflow's own
(``mlflow.pyfunc.model`` or one of ``mlflow.pyfunc.loaders.*``) qualifies. The deployed entity
keeps the task under :data:`AGENT_TASK_KEY` (the gateway routes on it, GET shows it).

The request bodies (``POST /serving-endpoints/{name}/invocations``):

- Responses agents: ``{"input": [...], "custom_inputs"?, "context"?, "stream"?}``;
- ChatAgent: ``{"messages": [...], "custom_inputs"?, "context"?, "stream"?}``;
- ChatModel: the chat-completions request (``{"messages": [...], "temperature"?, ...}``).

:func:`check_body` checks the shape in the gateway (a 400 naming the field); :func:`parsed_request`
validates the whole body with MLflow's own pydantic models in the replica (a 400 naming the
field's path) and returns it as the pyfunc's ``predict`` takes it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import yaml

from modelport.errors import InvalidParameterValue, MalformedRequest

__all__ = [
    "AGENT_TASKS",
    "AGENT_TASK_KEY",
    "CHAT_AGENT",
    "CHAT_MODEL",
    "RESPONSES_AGENT",
    "agent_task_of",
    "check_body",
    "parsed_request",
    "task_of_mlmodel",
]

RESPONSES_AGENT = "agent/v1/responses"
CHAT_AGENT = "agent/v2/chat"
CHAT_MODEL = "agent/v1/chat"
AGENT_TASKS = (RESPONSES_AGENT, CHAT_AGENT, CHAT_MODEL)
#: The deployed served entity's agent task (``runtime/local.py`` sets it; the config keeps it).
AGENT_TASK_KEY = "agent_task"

#: Keys every agent body may hold beside its input; ``stream`` is the gateway's, the rest the agent's.
_COMMON = ("custom_inputs", "context", "stream")
#: What each task's body must hold (a list).
_INPUT_FIELD = {RESPONSES_AGENT: "input", CHAT_AGENT: "messages", CHAT_MODEL: "messages"}
_LOADERS = ("mlflow.pyfunc.model", "mlflow.pyfunc.loaders.")


def agent_task_of(model_dir: Path) -> str | None:
    """The agent task of the MLflow model in ``model_dir`` (see the module), or None."""
    path = model_dir / "MLmodel"
    if not path.exists():
        return None
    return task_of_mlmodel(yaml.safe_load(path.read_text()) or {})


def task_of_mlmodel(mlmodel: dict[str, Any]) -> str | None:
    """The agent task an ``MLmodel`` document (parsed) describes, or None."""
    pyfunc = (mlmodel.get("flavors") or {}).get("python_function")
    if not isinstance(pyfunc, dict):
        return None
    loader = str(pyfunc.get("loader_module") or "")
    if not loader.startswith(_LOADERS):
        return None
    task = (mlmodel.get("metadata") or {}).get("task")
    if task in AGENT_TASKS:
        return str(task)
    return _task_of_signature(mlmodel.get("signature") or {})


def _columns(schema: Any) -> list[dict[str, Any]]:
    if isinstance(schema, str):
        try:
            schema = orjson.loads(schema)
        except orjson.JSONDecodeError:
            return []
    return [c for c in schema if isinstance(c, dict)] if isinstance(schema, list) else []


def _task_of_signature(signature: dict[str, Any]) -> str | None:
    inputs = {c.get("name") for c in _columns(signature.get("inputs"))}
    outputs = _columns(signature.get("outputs"))
    names = {c.get("name") for c in outputs}
    if "input" in inputs:
        properties = [set((c.get("properties") or {}).keys()) for c in outputs]
        if "output" in names or any("output" in p for p in properties):
            return RESPONSES_AGENT
        return None
    if "messages" in inputs:
        if "messages" in names:
            return CHAT_AGENT
        if "choices" in names:
            return CHAT_MODEL
    return None


def check_body(task: str, data: dict[str, Any]) -> None:
    """A 400 naming the field when ``data`` is not a body for an agent of ``task``: its input
    list (``input`` or ``messages``) is required, ``custom_inputs`` and ``context`` are
    objects, ``stream`` a boolean."""
    field = _INPUT_FIELD[task]
    if field not in data:
        other = "messages" if field == "input" else "input"
        hint = f" ({task} agents take '{field}', not '{other}')" if other in data else ""
        raise InvalidParameterValue(f"The request to this {task} agent needs '{field}', a list{hint}.")
    if not isinstance(data[field], list) or not data[field]:
        raise InvalidParameterValue(f"'{field}' must be a non-empty list of items.")
    for i, item in enumerate(data[field]):
        if not isinstance(item, dict):
            raise InvalidParameterValue(f"'{field}[{i}]' must be an object.")
    for key in ("custom_inputs", "context"):
        if data.get(key) is not None and not isinstance(data[key], dict):
            raise InvalidParameterValue(f"'{key}' must be an object.")
    if "stream" in data and not isinstance(data["stream"], bool):
        raise InvalidParameterValue("'stream' must be true or false.")


def parsed_request(task: str, body: bytes) -> dict[str, Any]:
    """The request ``body`` (JSON bytes) as the agent's pyfunc ``predict`` takes it, validated
    by MLflow's request model for ``task`` (a 400 naming the field's path when it is not one);
    ``stream`` is left out (the replica streams on its own frame)."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise MalformedRequest(f"The request body is not JSON: {exc}.") from None
    if not isinstance(data, dict):
        raise MalformedRequest("The request body must be a JSON object.")
    check_body(task, data)
    data = {k: v for k, v in data.items() if k != "stream"}
    from pydantic import ValidationError

    try:
        _request_model(task).model_validate(data)
    except ValidationError as exc:
        raise InvalidParameterValue(_validation_message(task, exc)) from None
    return data


def _request_model(task: str) -> Any:
    if task == RESPONSES_AGENT:
        from mlflow.types.responses import ResponsesAgentRequest

        return ResponsesAgentRequest
    if task == CHAT_AGENT:
        from mlflow.types.agent import ChatAgentRequest

        return ChatAgentRequest
    from mlflow.types.llm import ChatCompletionRequest

    return _Lenient(ChatCompletionRequest)


class _Lenient:
    """A request dataclass of ``mlflow.types.llm`` checked as pydantic would check it."""

    def __init__(self, cls: Any) -> None:
        self.cls = cls

    def model_validate(self, data: dict[str, Any]) -> None:
        try:
            self.cls.from_dict(data)
        except (TypeError, ValueError, KeyError) as exc:
            raise InvalidParameterValue(f"The request is not a chat request: {exc}") from None


def _path(loc: tuple[Any, ...]) -> str:
    """A pydantic error location as a field path (``input[0].content``), without the names of
    the validators and union members pydantic puts in it."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif isinstance(part, str) and part.isidentifier():
            out += f".{part}" if out else part
    return out or "body"


def _validation_message(task: str, exc: Any) -> str:
    problems: list[str] = []
    for error in exc.errors():
        problem = f"'{_path(tuple(error.get('loc', ())))}': {str(error.get('msg', 'invalid')).rstrip('.')}"
        if problem not in problems:
            problems.append(problem)
    return f"Invalid request for this {task} agent: " + "; ".join(problems[:3]) + "."
