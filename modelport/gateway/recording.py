"""Usage rows and inference-table rows of answered queries (``tables/`` writes them).

The data plane calls :meth:`Recorder.record` once per query, after the answer (or the error)
is known and before it is sent: the record is in the durable spool by the time the client
sees the answer, so a server killed with -9 loses no answered query (``tables/writer.py``
replays the spool into the Delta tables at the next start). A streamed answer is recorded
when its last chunk has been read, before ``[DONE]`` goes out.

- Usage (``ai_gateway.usage_tracking_config.enabled``): one row of ``system.serving.endpoint_usage``
  per query. Token counts are the answer's ``usage``; where an answer has none (custom models,
  errors) they are estimated as one token per four bytes of the request and of the answer,
  and ``tokens_estimated`` says so.
- Inference table (``ai_gateway.inference_table_config`` or the legacy ``auto_capture_config``,
  enabled): the request as the model received it and the response (up to 1 MB each, flagged
  when cut), status, timings, served entity, requester, the fallback chain and the guardrail
  decisions, in ``<catalog>.<schema>.<prefix>_payload``; with ``record_raw_request``, also
  the request as the client sent it, when a guardrail changed it (``received_request``).
- A model that looks its features up (``features/mlflow_model.py``): ``request`` holds the
  rows its raw model received, the looked-up features in them (``{"dataframe_records": [...]}``,
  cut at 1 MB by the replica), and ``received_request`` the request as sent (the keys; as the
  guardrails left it, unless ``record_raw_request``). A cached answer keeps the request as sent.
- An agent's tool call (an agent token, ``agent_tokens.py``): the usage row's requester is the
  principal the agent acts for, and its ``usage_context`` holds ``parent_request_id`` (the
  agent endpoint's query) and ``agent_endpoint`` (over what the request body says).
- A response-cache hit (``caching.py``) is recorded with zero tokens (nothing was asked of the
  model or provider) and ``cache_hit`` true; a miss of an endpoint with a cache, ``cache_hit`` false.
- An agent's answer (``Exchange.trace``): its MLflow trace (``Trace.to_json()``) in the row's
  ``trace`` column, as the replica sent it, up to :data:`MAX_TRACE_BYTES` (1 MiB). A longer one
  is replaced by a stub that says so: ``{"truncated": true, "trace_id": "tr-...", "spans": <its
  span count>, "size_bytes": <its size>}`` (``trace_id`` null when the trace does not name one);
  the whole trace is in the MLflow tracking store (``agent_traces.py``), under that trace id.
"""

from __future__ import annotations

import re
import time
from typing import Any

import orjson

from modelport.gateway.exchange import Exchange, Tokens
from modelport.gateway.routing import Route
from modelport.tables.names import TableRef, default_prefix
from modelport.tables.records import InferenceRecord, UsageRecord
from modelport.tables.writer import TableWriter

__all__ = ["MAX_TRACE_BYTES", "Recorder", "trace_column"]

#: The largest trace kept whole in an inference row's ``trace`` column (bytes of its JSON).
MAX_TRACE_BYTES = 1024 * 1024

#: The trace id of a trace's JSON: ``info`` comes first in ``Trace.to_json()``.
_TRACE_ID = re.compile(rb'"trace_id"\s*:\s*"([^"\\]{1,200})"')


def trace_column(trace: bytes) -> str:
    """The ``trace`` column of an agent's row: the trace's JSON text, or past
    :data:`MAX_TRACE_BYTES` the stub that says it was cut (the module docstring shows it). The
    stub is made without parsing the trace: its id is the first ``"trace_id"`` of its first
    64 KiB, its span count the number of ``"span_id"`` keys (an attribute's text has its quotes
    escaped, so it adds none)."""
    if len(trace) <= MAX_TRACE_BYTES:
        return trace.decode("utf-8", "replace")
    found = _TRACE_ID.search(trace, 0, 65536)
    stub = {
        "truncated": True,
        "trace_id": found.group(1).decode("utf-8", "replace") if found else None,
        "spans": trace.count(b'"span_id"'),
        "size_bytes": len(trace),
    }
    return orjson.dumps(stub).decode()


def _request_fields(ex: Exchange) -> tuple[str | None, dict[str, str] | None]:
    """``client_request_id`` and ``usage_context`` of the request (parsed only when it has them)."""
    if not ex.parsed and b"client_request_id" not in ex.body and b"usage_context" not in ex.body:
        return None, None
    try:
        data = ex.data
    except Exception:  # not a JSON object: nothing to read
        return None, None
    rid = data.get("client_request_id")
    context = data.get("usage_context")
    return (
        rid[:256] if isinstance(rid, str) else None,
        {str(k): str(v) for k, v in context.items()} if isinstance(context, dict) else None,
    )


class Recorder:
    """Turns a finished exchange into the rows its endpoint asked for (blocking: a spool append)."""

    def __init__(self, writer: TableWriter) -> None:
        self.writer = writer
        self._tables: dict[tuple[Any, Any, Any], TableRef] = {}

    def _table(self, config: dict[str, Any], endpoint: str) -> TableRef:
        raw = (config["catalog_name"], config["schema_name"], config.get("table_name_prefix") or endpoint)
        ref = self._tables.get(raw)
        if ref is None:
            ref = self._tables[raw] = self.writer.payload_table(
                str(raw[0]), str(raw[1]), default_prefix(str(raw[2]))
            )
        return ref

    def record(
        self,
        ex: Exchange,
        route: Route,
        *,
        status: int,
        served: str | None,
        response: bytes | None,
        tokens: Tokens,
        error_code: str | None = None,
    ) -> None:
        """Append the usage row and the inference row of ``ex``, as ``route`` asks."""
        latency_ms = int((time.perf_counter() - ex.started) * 1000)
        client_request_id, usage_context = _request_fields(ex)
        if ex.caller.agent is not None:  # an agent's tool call: which query of which agent made it
            usage_context = {**(usage_context or {}), **ex.caller.agent.usage_context}
        if ex.cache == "hit":
            tokens = (0, 0, 0)  # no model or provider work
        if route.usage:
            estimated = tokens is None
            counted = tokens[:2] if tokens is not None else (len(ex.body) // 4, len(response or b"") // 4)
            self.writer.record_usage(
                UsageRecord(
                    request_id=ex.request_id,
                    endpoint_name=route.name,
                    status_code=status,
                    requester=ex.caller.name,
                    client_request_id=client_request_id,
                    served_entity_name=served,
                    input_token_count=counted[0],
                    output_token_count=counted[1],
                    tokens_estimated=estimated,
                    latency_ms=latency_ms,
                    request_time_ms=ex.timestamp_ms,
                    usage_context=usage_context,
                )
            )
        inference = route.inference
        if inference is not None:
            request, received = ex.sent, None
            if inference.get("record_raw_request") and ex.sent is not ex.body:
                received = ex.body
            if ex.model_input is not None:  # a feature-aware model: the rows with their features
                request = ex.model_input
                if received is None:
                    received = ex.sent
            record = InferenceRecord.from_bodies(
                ex.request_id,
                status,
                latency_ms,
                request,
                response,
                received_request_body=received,
                timestamp_ms=ex.timestamp_ms,
                client_request_id=client_request_id,
                served_entity_name=served,
                requester=ex.caller.name,
                request_metadata=(
                    {"endpoint_name": route.name}
                    if ex.replay_id is None
                    else {"endpoint_name": route.name, "replay_id": ex.replay_id}
                ),
                guardrails=list(ex.decisions) or None,
                fallback_chain=list(ex.chain) or None,
                error_code=error_code,
                cache_hit=None if ex.cache is None else ex.cache == "hit",
                trace=None if ex.trace is None else trace_column(ex.trace),
            )
            if ex.model_input_truncated:
                record.request_truncated = True
            record.shadow_of = ex.shadow_of
            record.replay_of = ex.replay_of
            self.writer.record_inference(self._table(inference, route.name), record)
