"""Telling MLflow agents apart from other pyfuncs (``entities/agents.py``), and their bodies."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow.types.responses  # noqa: F401 (imported before the autouse fixture: it runs `uname`)
import orjson
import pytest
import yaml

from modelport.entities.agents import (
    CHAT_AGENT,
    CHAT_MODEL,
    RESPONSES_AGENT,
    agent_task_of,
    check_body,
    parsed_request,
    task_of_mlmodel,
)
from modelport.errors import InvalidParameterValue, MalformedRequest

_RESPONSES_SIGNATURE = {
    "inputs": '[{"type": "array", "items": {"type": "any"}, "name": "input", "required": true}, '
    '{"type": "map", "values": {"type": "any"}, "name": "custom_inputs", "required": false}]',
    "outputs": '[{"type": "object", "properties": {"object": {"type": "string", "required": true}, '
    '"output": {"type": "array", "items": {"type": "any"}, "required": true}}, "required": true}]',
}
_CHAT_AGENT_SIGNATURE = {
    "inputs": '[{"type": "array", "items": {"type": "any"}, "name": "messages", "required": true}]',
    "outputs": '[{"type": "array", "items": {"type": "any"}, "name": "messages", "required": true}, '
    '{"type": "map", "values": {"type": "any"}, "name": "custom_outputs", "required": false}]',
}
_CHAT_MODEL_SIGNATURE = {
    "inputs": '[{"type": "array", "items": {"type": "any"}, "name": "messages", "required": true}]',
    "outputs": '[{"type": "string", "name": "id", "required": true}, '
    '{"type": "array", "items": {"type": "any"}, "name": "choices", "required": true}]',
}


def mlmodel(loader: str = "mlflow.pyfunc.loaders.code_model", **extra: Any) -> dict[str, Any]:
    """An MLmodel document as MLflow 3.17 writes one for a model logged from code."""
    return {"flavors": {"python_function": {"loader_module": loader, "streamable": True}}, **extra}


@pytest.mark.parametrize("task", [RESPONSES_AGENT, CHAT_AGENT, CHAT_MODEL])
def test_the_task_mlflow_writes_names_the_agent(task: str) -> None:
    assert task_of_mlmodel(mlmodel(metadata={"task": task})) == task


@pytest.mark.parametrize(
    ("signature", "task"),
    [
        (_RESPONSES_SIGNATURE, RESPONSES_AGENT),
        (_CHAT_AGENT_SIGNATURE, CHAT_AGENT),
        (_CHAT_MODEL_SIGNATURE, CHAT_MODEL),
    ],
)
def test_without_a_task_the_signature_tells(signature: dict[str, str], task: str) -> None:
    assert task_of_mlmodel(mlmodel(signature=signature)) == task
    assert task_of_mlmodel(mlmodel("mlflow.pyfunc.model", signature=signature)) == task


@pytest.mark.parametrize(
    "doc",
    [
        mlmodel(),  # a pyfunc with no signature
        mlmodel(metadata={"task": "llm/v1/chat"}),  # not an agent task
        mlmodel(
            signature={
                "inputs": '[{"type": "double", "name": "x", "required": true}]',
                "outputs": '[{"type": "long", "required": true}]',
            }
        ),
        # another flavor's loader (sklearn) with an agent task: not MLflow's agent interfaces
        mlmodel("mlflow.sklearn", metadata={"task": RESPONSES_AGENT}),
        {"flavors": {"sklearn": {}}, "metadata": {"task": RESPONSES_AGENT}},  # no pyfunc at all
        {},
    ],
)
def test_other_models_are_not_agents(doc: dict[str, Any]) -> None:
    assert task_of_mlmodel(doc) is None


def test_agent_task_of_reads_the_mlmodel_file(tmp_path: Path) -> None:
    assert agent_task_of(tmp_path) is None  # no MLmodel
    (tmp_path / "MLmodel").write_text(yaml.safe_dump(mlmodel(metadata={"task": CHAT_AGENT})))
    assert agent_task_of(tmp_path) == CHAT_AGENT


@pytest.mark.parametrize(
    ("task", "body", "says"),
    [
        (RESPONSES_AGENT, {"messages": []}, "needs 'input', a list (agent/v1/responses agents take 'input'"),
        (CHAT_AGENT, {}, "needs 'messages', a list."),
        (CHAT_AGENT, {"messages": "hi"}, "'messages' must be a non-empty list"),
        (RESPONSES_AGENT, {"input": ["hi"]}, "'input[0]' must be an object"),
        (RESPONSES_AGENT, {"input": [{}], "context": "c"}, "'context' must be an object"),
        (CHAT_MODEL, {"messages": [{}], "stream": 1}, "'stream' must be true or false"),
    ],
)
def test_check_body_names_the_field(task: str, body: dict[str, Any], says: str) -> None:
    with pytest.raises(InvalidParameterValue) as caught:
        check_body(task, body)
    assert says in caught.value.message


def test_parsed_request_validates_with_mlflows_models_and_drops_stream() -> None:
    body = {"input": [{"role": "user", "content": "hi"}], "custom_inputs": {"a": 1}, "stream": True}
    assert parsed_request(RESPONSES_AGENT, orjson.dumps(body)) == {
        "input": [{"role": "user", "content": "hi"}],
        "custom_inputs": {"a": 1},
    }
    chat = {"messages": [{"role": "user", "content": "hi"}], "context": {"conversation_id": "c"}}
    assert parsed_request(CHAT_AGENT, orjson.dumps(chat)) == chat
    assert parsed_request(CHAT_MODEL, orjson.dumps({"messages": [{"role": "user", "content": "x"}]}))


@pytest.mark.parametrize(
    ("task", "body", "says"),
    [
        (RESPONSES_AGENT, {"input": [{"role": "user"}]}, "'input[0].content': Field required"),
        (CHAT_AGENT, {"messages": [{"role": "user"}]}, "'messages[0]': Value error"),
        (
            CHAT_AGENT,
            {
                "messages": [{"role": "user", "content": "x"}],
                "custom_inputs": {"a": 1},
                "context": {"user_id": 5},
            },
            "'context.user_id'",
        ),
        (CHAT_MODEL, {"messages": [{"role": "user", "content": "x"}], "temperature": "hot"}, "temperature"),
    ],
)
def test_parsed_request_names_the_field_mlflow_refuses(task: str, body: dict[str, Any], says: str) -> None:
    with pytest.raises(InvalidParameterValue) as caught:
        parsed_request(task, orjson.dumps(body))
    assert says in caught.value.message
    assert "function-after" not in caught.value.message  # pydantic's validator names left out


def test_parsed_request_refuses_what_is_not_a_json_object() -> None:
    with pytest.raises(MalformedRequest):
        parsed_request(RESPONSES_AGENT, b"{nope")
    with pytest.raises(MalformedRequest):
        parsed_request(RESPONSES_AGENT, b"[1]")
