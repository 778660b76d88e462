"""The one server the agents tests share (``tests/agents/``: agents served as endpoints, the
Responses route, tools through the gateway, traces).

- ``ag-llm``: an external chat endpoint in front of the OpenAI fake (answers
  ``"You said: <last user text>"``), usage tracking on;
- ``ag-responses``: the registered model ``ag-responses-model`` (a deterministic
  ``ResponsesAgent``, :data:`RESPONSES_AGENT`), inference table ``main.ag.ag_responses_*`` and
  usage tracking;
- ``ag-chat``: ``ag-chat-model`` (a deterministic ``ChatAgent``, :data:`CHAT_AGENT`), inference
  table ``main.ag.ag_chat_*`` and usage tracking;
- ``ag-chatmodel``: ``ag-chatmodel-model`` (a deterministic ``ChatModel``, :data:`CHAT_MODEL_AGENT`:
  MLflow's older interface, chat-completions bodies), inference table and usage tracking;
- ``alice``: a user with no permission on any endpoint.

The agents answer ``"echo: <last user text>"``. ``custom_inputs`` steer them:

- ``use_tool: true``: the agent first asks ``ag-llm`` (through
  ``modelport.client.agent_tools``, with the request's agent context) and appends
  ``" | tool: <its answer>"``;
- ``sleep_ms``: the streamed answer waits that long before each event;
- ``marker``: a file path the streamed answer writes when its generator ends: ``"closed"``
  when it was closed early (``GeneratorExit``: the client went away), ``"finished"`` when it
  ran to its end, ``"failed"`` when it raised.

The streamed answer is one text delta per word of the answer, then the whole item.
The server flushes its tables every second (``--tables-flush-seconds 1``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.fakes.openai_server import API_KEY, FakeOpenAI
from tests.serverproc import ADMIN_TOKEN, ServerProcess
from tests.support.endpoints import wait_settled
from tests.support.principals import create_user, obo_token

__all__ = [
    "CHAT",
    "CHAT_MODEL",
    "CHAT_MODEL_ENDPOINT",
    "CHAT_MODEL_MODEL",
    "LLM",
    "RESPONSES",
    "RESPONSES_MODEL",
    "SCHEMA",
    "World",
    "started_world",
]

LLM = "ag-llm"
RESPONSES = "ag-responses"
RESPONSES_MODEL = "ag-responses-model"
CHAT = "ag-chat"
CHAT_MODEL = "ag-chat-model"
CHAT_MODEL_ENDPOINT = "ag-chatmodel"
CHAT_MODEL_MODEL = "ag-chatmodel-model"
#: The inference tables' catalog and schema: ``main.ag.<endpoint>_payload``.
SCHEMA = ("main", "ag")

#: Shared by both agents: the tool call and the stream's close marker.
_TOOLS = """
import time
from pathlib import Path

LLM = "__LLM__"


def ask_llm(text):
    \"\"\"The answer of the chat endpoint LLM to ``text``, asked through the agent's context.\"\"\"
    from modelport.client import agent_tools

    body = {"messages": [{"role": "user", "content": text}], "max_tokens": 64}
    if hasattr(agent_tools, "query"):
        answer = agent_tools.query(LLM, body)
        return answer["choices"][0]["message"]["content"]
    client = agent_tools.endpoint_client()
    answer = client.chat.completions.create(model=LLM, **body)
    return answer.choices[0].message.content


def answer_of(text, custom_inputs):
    answer = f"echo: {text}"
    if custom_inputs.get("use_tool"):
        answer += " | tool: " + ask_llm(text)
    return answer


def mark(custom_inputs, what):
    marker = custom_inputs.get("marker")
    if marker:
        Path(marker).write_text(what)


def pause(custom_inputs):
    if custom_inputs.get("sleep_ms"):
        time.sleep(custom_inputs["sleep_ms"] / 1000)
"""

#: A deterministic ``ResponsesAgent`` (models from code).
RESPONSES_AGENT = (
    _TOOLS
    + """
import mlflow
from mlflow.pyfunc import ResponsesAgent
from mlflow.types.responses import ResponsesAgentResponse, ResponsesAgentStreamEvent


def last_user_text(request):
    for item in reversed(request.input):
        item = item.model_dump() if hasattr(item, "model_dump") else dict(item)
        if item.get("role") == "user":
            content = item.get("content")
            if isinstance(content, str):
                return content
            return " ".join(p.get("text", "") for p in content or [] if isinstance(p, dict))
    return ""


class EchoResponses(ResponsesAgent):
    def predict(self, request):
        custom = request.custom_inputs or {}
        text = answer_of(last_user_text(request), custom)
        return ResponsesAgentResponse(
            output=[self.create_text_output_item(text=text, id="msg-1")],
            custom_outputs={"inputs": len(request.input)},
        )

    def predict_stream(self, request):
        custom = request.custom_inputs or {}
        what = "failed"
        try:
            text = answer_of(last_user_text(request), custom)
            for i, word in enumerate(text.split(" ")):
                pause(custom)
                delta = word if i == 0 else " " + word
                yield ResponsesAgentStreamEvent(**self.create_text_delta(delta=delta, item_id="msg-1"))
            yield ResponsesAgentStreamEvent(
                type="response.output_item.done",
                item=self.create_text_output_item(text=text, id="msg-1"),
            )
            what = "finished"
        except GeneratorExit:  # closed before its end: the client went away
            what = "closed"
            raise
        finally:
            mark(custom, what)


mlflow.models.set_model(EchoResponses())
"""
)

#: A deterministic ``ChatAgent`` (models from code).
CHAT_AGENT = (
    _TOOLS
    + """
import mlflow
from mlflow.pyfunc import ChatAgent
from mlflow.types.agent import ChatAgentChunk, ChatAgentMessage, ChatAgentResponse


def last_user_text(messages):
    for m in reversed(messages):
        if m.role == "user":
            return m.content or ""
    return ""


class EchoChat(ChatAgent):
    def predict(self, messages, context=None, custom_inputs=None):
        text = answer_of(last_user_text(messages), custom_inputs or {})
        return ChatAgentResponse(
            messages=[ChatAgentMessage(role="assistant", content=text, id="msg-1")],
            custom_outputs={"inputs": len(messages)},
        )

    def predict_stream(self, messages, context=None, custom_inputs=None):
        custom = custom_inputs or {}
        what = "failed"
        try:
            text = answer_of(last_user_text(messages), custom)
            for i, word in enumerate(text.split(" ")):
                pause(custom)
                delta = word if i == 0 else " " + word
                yield ChatAgentChunk(delta=ChatAgentMessage(role="assistant", content=delta, id="msg-1"))
            what = "finished"
        except GeneratorExit:  # closed before its end: the client went away
            what = "closed"
            raise
        finally:
            mark(custom, what)


mlflow.models.set_model(EchoChat())
"""
)

#: A deterministic ``ChatModel`` (models from code; the ``params``' ``custom_inputs`` steer it).
CHAT_MODEL_AGENT = (
    _TOOLS
    + """
import mlflow
from mlflow.pyfunc import ChatModel
from mlflow.types.llm import (
    ChatChoice,
    ChatChoiceDelta,
    ChatChunkChoice,
    ChatCompletionChunk,
    ChatCompletionResponse,
    ChatMessage,
)


def last_user_text(messages):
    for m in reversed(messages):
        if m.role == "user":
            return m.content or ""
    return ""


class EchoChatModel(ChatModel):
    def predict(self, context, messages, params):
        text = answer_of(last_user_text(messages), params.custom_inputs or {})
        message = ChatMessage(role="assistant", content=text)
        return ChatCompletionResponse(choices=[ChatChoice(index=0, message=message, finish_reason="stop")])

    def predict_stream(self, context, messages, params):
        custom = params.custom_inputs or {}
        what = "failed"
        try:
            text = answer_of(last_user_text(messages), custom)
            for i, word in enumerate(text.split(" ")):
                pause(custom)
                delta = ChatChoiceDelta(role="assistant", content=word if i == 0 else " " + word)
                yield ChatCompletionChunk(choices=[ChatChunkChoice(delta=delta)])
            what = "finished"
        except GeneratorExit:
            what = "closed"
            raise
        finally:
            mark(custom, what)


mlflow.models.set_model(EchoChatModel())
"""
)


@dataclass
class World:
    server: ServerProcess
    admin: httpx.Client
    alice: httpx.Client  # no permission on any endpoint
    alice_token: str
    fake: FakeOpenAI
    scratch: Path  # a folder for the tests' marker files

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def tables(self) -> Path:
        return self.server.data_dir / "tables"

    def payload_table(self, name: str) -> Path:
        """The folder of endpoint ``name``'s inference table (Delta)."""
        return self.tables / SCHEMA[0] / SCHEMA[1] / f"{name.replace('-', '_')}_payload"

    def invoke(
        self, name: str, body: dict[str, Any], *, client: httpx.Client | None = None
    ) -> httpx.Response:
        return (client or self.admin).post(f"/serving-endpoints/{name}/invocations", json=body)

    def marker(self, name: str) -> Path:
        """A fresh marker file path under the scratch folder (not yet written)."""
        path = self.scratch / name
        path.unlink(missing_ok=True)
        return path

    def wait_rows(self, name: str, count: int, timeout: float = 30.0, **where: Any) -> list[dict[str, Any]]:
        """The inference rows of ``name`` once at least ``count`` match ``where`` (column == value)."""
        from tests.support.tables import wait_rows

        return wait_rows(self.payload_table(name), count, timeout, **where)


def _gateway(name: str) -> dict[str, Any]:
    return {
        "inference_table_config": {
            "enabled": True,
            "catalog_name": SCHEMA[0],
            "schema_name": SCHEMA[1],
            "table_name_prefix": name.replace("-", "_"),
        },
        "usage_tracking_config": {"enabled": True},
    }


def _external_llm(admin: httpx.Client, fake: FakeOpenAI) -> None:
    config = {"custom_provider_url": f"{fake.url}/v1", "bearer_token_auth": {"token_plaintext": API_KEY}}
    external = {
        "provider": "custom",
        "name": "gpt-fake",
        "task": "llm/v1/chat",
        "custom_provider_config": config,
    }
    body = {
        "name": LLM,
        "config": {"served_entities": [{"name": "gpt", "external_model": external}]},
        "ai_gateway": {"usage_tracking_config": {"enabled": True}},
    }
    r = admin.post("/api/2.0/serving-endpoints", json=body)
    assert r.status_code == 200, r.text


def _log_agent(server: ServerProcess, code: Path, model: str, input_example: dict[str, Any]) -> None:
    import mlflow

    os.environ["MLFLOW_TRACKING_TOKEN"] = ADMIN_TOKEN
    mlflow.set_tracking_uri(server.url)
    with mlflow.start_run():
        info = mlflow.pyfunc.log_model(
            name="agent",
            python_model=str(code),
            registered_model_name=model,
            input_example=input_example,
            pip_requirements=["mlflow"],
        )
    assert str(info.registered_model_version) == "1"


def _serve(admin: httpx.Client, name: str, model: str) -> None:
    entity = {
        "name": "agent",
        "entity_name": model,
        "entity_version": "1",
        "workload_size": "Small",
        "scale_to_zero_enabled": False,
    }
    body = {"name": name, "config": {"served_entities": [entity]}, "ai_gateway": _gateway(name)}
    r = admin.post("/api/2.0/serving-endpoints", json=body)
    assert r.status_code == 200, r.text


def started_world(data_dir: Path) -> Iterator[World]:
    """The shared server, its endpoints and ``alice`` (a generator: the package fixture's body)."""
    scratch = data_dir / "scratch"
    scratch.mkdir(parents=True)
    fake = FakeOpenAI().start()
    server = ServerProcess(data_dir / "server", extra_args=["--tables-flush-seconds", "1"]).start()
    clients: list[httpx.Client] = []
    try:
        admin = httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=120
        )
        clients.append(admin)
        create_user(admin, "alice")
        alice_token = obo_token(admin, user_name="alice")["token_value"]
        alice = httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {alice_token}"}, timeout=60
        )
        clients.append(alice)
        _external_llm(admin, fake)
        responses_code = scratch / "responses_agent.py"
        responses_code.write_text(RESPONSES_AGENT.replace("__LLM__", LLM))
        _log_agent(
            server,
            responses_code,
            RESPONSES_MODEL,
            {"input": [{"role": "user", "content": "hello"}]},
        )
        chat_code = scratch / "chat_agent.py"
        chat_code.write_text(CHAT_AGENT.replace("__LLM__", LLM))
        _log_agent(server, chat_code, CHAT_MODEL, {"messages": [{"role": "user", "content": "hello"}]})
        chat_model_code = scratch / "chat_model.py"
        chat_model_code.write_text(CHAT_MODEL_AGENT.replace("__LLM__", LLM))
        _log_agent(
            server, chat_model_code, CHAT_MODEL_MODEL, {"messages": [{"role": "user", "content": "hello"}]}
        )
        _serve(admin, RESPONSES, RESPONSES_MODEL)
        _serve(admin, CHAT, CHAT_MODEL)
        _serve(admin, CHAT_MODEL_ENDPOINT, CHAT_MODEL_MODEL)
        for name in (LLM, RESPONSES, CHAT, CHAT_MODEL_ENDPOINT):
            got = wait_settled(admin, name, timeout=180, poll=0.2)
            assert got["state"]["ready"] == "READY", got
        yield World(server, admin, alice, alice_token, fake, scratch)
    finally:
        for c in clients:
            c.close()
        server.stop()
        fake.stop()
