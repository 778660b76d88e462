"""Tools for agent code served by modelport: call other endpoints as the agent's request allows.

Inside an agent's ``predict`` or ``predict_stream`` (an MLflow ``ResponsesAgent``,
``ChatAgent`` or ``ChatModel`` served by modelport), the request's agent context
(:data:`current_context`, set per request by the replica) holds the server's URL and a
short-lived agent token (``gateway/agent_tokens.py``) that acts for the caller of the agent's
endpoint (or for the service principal of its ``agent_config.run_as``) and may call the
endpoints of its ``agent_config.allowed_endpoints``. Nothing is read from the replica's
environment::

    from modelport.client.agent_tools import openai_client, query

    answer = query("my-retriever", {"dataframe_records": [{"q": "..."}]})
    chat = openai_client().chat.completions.create(model="my-llm", messages=[...])

Each call is a query like any other: the endpoint's permissions, rate limits, guardrails, usage
rows (``usage_context`` names the agent's request and endpoint) and inference table apply. A
refused call raises the project's error of its answer (:class:`~modelport.errors.PermissionDenied`
for 403, :class:`~modelport.errors.RequestLimitExceeded` for 429, ...), its message naming the
endpoint; uncaught, it fails the agent's request with that status. Called outside an agent's
request, they raise :class:`~modelport.errors.InvalidState`. When the agent's request is traced
(MLflow), each :func:`query` is a ``TOOL`` span of it.
"""

from __future__ import annotations

import atexit
import threading
from typing import TYPE_CHECKING, Any

import httpx

from modelport.errors import InvalidState, ModelportError, error_from_body
from modelport.runtime.protocol import AgentContext
from modelport.runtime.protocol import current_agent_context as current_context

if TYPE_CHECKING:
    import openai

__all__ = ["current_context", "endpoint_client", "openai_client", "query"]

#: Seconds a tool call may take by default (the server's own --request-timeout applies too).
DEFAULT_TIMEOUT = 120.0

_clients: dict[str, httpx.Client] = {}
_lock = threading.Lock()


def _context() -> AgentContext:
    ctx = current_context.get()
    if ctx is None:
        raise InvalidState(
            "modelport.client.agent_tools is called outside an agent's request: call it from the "
            "agent's predict or predict_stream while modelport serves it (the request's agent "
            "token exists only then)."
        )
    return ctx


def _http(host: str) -> httpx.Client:
    """One pooled client per server URL, shared by the replica's threads."""
    with _lock:
        client = _clients.get(host)
        if client is None:
            client = _clients[host] = httpx.Client(base_url=host, timeout=DEFAULT_TIMEOUT)
        return client


@atexit.register
def _close_clients() -> None:
    with _lock:
        for client in _clients.values():
            client.close()
        _clients.clear()


def _traced(endpoint: str, body: dict[str, Any], call: Any) -> Any:
    """``call()``, as a TOOL span of the request's MLflow trace when there is one."""
    try:
        import mlflow
        from mlflow.entities import SpanType
    except ImportError:
        return call()
    if mlflow.get_current_active_span() is None:
        return call()
    with mlflow.start_span(name=f"query {endpoint}", span_type=SpanType.TOOL) as span:
        span.set_inputs({"endpoint": endpoint, "body": body})
        answer = call()
        span.set_outputs(answer)
        return answer


def query(endpoint: str, body: dict[str, Any], *, timeout: float | None = None) -> dict[str, Any]:
    """The answer of ``endpoint`` to ``body`` (``POST /serving-endpoints/{endpoint}/invocations``
    with the request's agent token): a JSON object. A refused or failed call raises the
    project's error of its status; outside an agent's request, :class:`InvalidState`."""
    ctx = _context()

    def call() -> dict[str, Any]:
        resp = _http(ctx.host).post(
            f"/serving-endpoints/{endpoint}/invocations",
            json=body,
            headers={"Authorization": f"Bearer {ctx.token}"},
            timeout=timeout or DEFAULT_TIMEOUT,
        )
        if resp.status_code != 200:
            raise _refusal(endpoint, resp)
        answer = resp.json()
        if not isinstance(answer, dict):
            return {"predictions": answer}
        return answer

    return _traced(endpoint, body, call)


def _refusal(endpoint: str, resp: httpx.Response) -> ModelportError:
    try:
        data: Any = resp.json()
    except ValueError:
        data = resp.text
    error = error_from_body(resp.status_code, data, resp.headers.get("retry-after"))
    return type(error)(
        f"Tool call to endpoint '{endpoint}' failed ({resp.status_code}): {error.message}",
        retry_after=error.retry_after,
    )


def openai_client(**options: Any) -> openai.OpenAI:
    """An ``openai.OpenAI`` client of this server's OpenAI-compatible routes with the request's
    agent token (``model`` = the endpoint's name). Make one per request: the token ends with
    it. ``options`` go to ``openai.OpenAI`` (``max_retries`` is 0 unless given, so a refusal is
    seen at once)."""
    import openai

    ctx = _context()
    options.setdefault("max_retries", 0)
    return openai.OpenAI(base_url=f"{ctx.host}/serving-endpoints", api_key=ctx.token, **options)


#: The contract's name for :func:`openai_client`.
endpoint_client = openai_client
