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
  enabled): the request and response bodies (up to 1 MB each, flagged when cut), status,
  timings, served entity, requester, the fallback chain and the guardrail decisions, in
  ``<catalog>.<schema>.<prefix>_payload``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from modelport.tables.names import TableRef, default_prefix
from modelport.tables.records import InferenceRecord, UsageRecord
from modelport.tables.writer import TableWriter

__all__ = ["Recorder", "Trace"]


@dataclass
class Trace:
    """What one query leaves for the tables."""

    request_id: str
    endpoint: str
    requester: str
    request: bytes
    started: float = field(default_factory=time.perf_counter)
    timestamp_ms: int = field(default_factory=lambda: int(time.time() * 1000))
    served_entity: str | None = None
    status: int = 200
    error_code: str | None = None
    response: bytes | None = None
    fallback_chain: tuple[dict[str, Any], ...] = ()
    guardrails: tuple[dict[str, Any], ...] = ()
    #: (prompt, completion) from the answer's ``usage``, when it had one.
    tokens: tuple[int, int] | None = None
    client_request_id: str | None = None
    usage_context: dict[str, str] | None = None


def usage_of(body: bytes) -> tuple[int, int] | None:
    """``(prompt_tokens, completion_tokens)`` of an answer, if it says."""
    if b'"usage"' not in body:
        return None
    try:
        used = orjson.loads(body).get("usage")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    if not isinstance(used, dict):
        return None
    return int(used.get("prompt_tokens") or 0), int(used.get("completion_tokens") or 0)


def request_fields(trace: Trace) -> None:
    """Fill ``client_request_id`` and ``usage_context`` from the request body (when present)."""
    body = trace.request
    if b"client_request_id" not in body and b"usage_context" not in body:
        return
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return
    if not isinstance(data, dict):
        return
    rid = data.get("client_request_id")
    if isinstance(rid, str):
        trace.client_request_id = rid[:256]
    context = data.get("usage_context")
    if isinstance(context, dict):
        trace.usage_context = {str(k): str(v) for k, v in context.items()}


class Recorder:
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

    def record(self, trace: Trace, *, usage: bool, inference: dict[str, Any] | None) -> None:
        latency_ms = int((time.perf_counter() - trace.started) * 1000)
        request_fields(trace)
        if usage:
            tokens = trace.tokens
            estimated = tokens is None
            if tokens is None:
                tokens = (len(trace.request) // 4, len(trace.response or b"") // 4)
            self.writer.record_usage(
                UsageRecord(
                    request_id=trace.request_id,
                    endpoint_name=trace.endpoint,
                    status_code=trace.status,
                    requester=trace.requester,
                    client_request_id=trace.client_request_id,
                    served_entity_name=trace.served_entity,
                    input_token_count=tokens[0],
                    output_token_count=tokens[1],
                    tokens_estimated=estimated,
                    latency_ms=latency_ms,
                    request_time_ms=trace.timestamp_ms,
                    usage_context=trace.usage_context,
                )
            )
        if inference is not None:
            record = InferenceRecord.from_bodies(
                trace.request_id,
                trace.status,
                latency_ms,
                trace.request,
                trace.response,
                timestamp_ms=trace.timestamp_ms,
                client_request_id=trace.client_request_id,
                served_entity_name=trace.served_entity,
                requester=trace.requester,
                request_metadata={"endpoint_name": trace.endpoint},
                guardrails=list(trace.guardrails) or None,
                fallback_chain=list(trace.fallback_chain) or None,
                error_code=trace.error_code,
            )
            self.writer.record_inference(self._table(inference, trace.endpoint), record)
