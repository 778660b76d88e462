"""What one row of the inference and usage tables holds, and its Arrow (Delta) schema.

:class:`InferenceRecord` is one row of an endpoint's payload table
``<catalog>.<schema>.<prefix>_payload``; :class:`UsageRecord` one row of
``system.serving.endpoint_usage``. Both are slotted dataclasses that orjson serialises natively, which
keeps :meth:`modelport.tables.writer.TableWriter.record_inference` cheap: the record goes to the spool
as JSON and becomes Arrow only in the background flusher (:func:`to_arrow`).

Payload table columns (Databricks names where they exist, then modelport's own)::

    client_request_id string, databricks_request_id string, date date (partition, UTC),
    timestamp_ms long, status_code int, execution_time_ms long, request string, response string,
    sampling_fraction double, request_metadata map<string,string>, served_entity_id string,
    served_entity_name string, requester string,
    request_truncated boolean, response_truncated boolean, guardrails string (JSON),
    fallback_chain string (JSON), error_code string,
    received_request string, cache_hit boolean, shadow_of string, replay_of string,
    batch_job_id string, trace string (JSON)

``request`` is the request as the served model received it (input guardrails may have masked
it; for a model that looks its features up, the rows its raw model received, features
included). The last six columns are declared here, once, for the features that fill them; null
where they do not apply:

- ``received_request``: the request as the client sent it, when it differs from ``request``
  and the endpoint keeps it (``inference_table_config.record_raw_request``), and always for a
  model that looks its features up (the keys, as the guardrails left them);
- ``cache_hit``: the answer came from the response cache, not from the served entity;
- ``shadow_of``: this row is a shadow query's (a copy of live traffic sent to another entity),
  and names the request id of the query it copied;
- ``replay_of``: this row is a replay of a logged request against a candidate, and names the
  request id of the row replayed;
- ``batch_job_id``: the query was sent by a batch job (``ai_query`` or a bulk job);
- ``trace``: the MLflow trace of the request (agents), as JSON.

Usage table columns::

    request_id string, client_request_id string, requester string, endpoint_name string,
    served_entity_name string, status_code int, input_token_count long, output_token_count long,
    tokens_estimated boolean, latency_ms long, request_time timestamp (UTC),
    usage_context map<string,string>, date date (partition, UTC)

Audit log columns (``system.access.audit``: Databricks' names and types where they fit, then
modelport's own ``http_method`` and ``path``)::

    workspace_id string, event_time timestamp (UTC), event_date date (partition, UTC),
    event_id string, request_id string, source_ip_address string, user_agent string,
    user_identity struct<email string>, service_name string, action_name string,
    request_params map<string,string>,
    response struct<status_code int, error_code string, error_message string>,
    audit_level string, http_method string, path string

Bodies are kept up to :data:`MAX_BODY_BYTES` (1 MiB) of UTF-8; :func:`clip` cuts a longer one at a
character boundary and says so, and the record's ``request_truncated``/``response_truncated`` flag it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from modelport.clock import now_ms

__all__ = [
    "AUDIT_SCHEMA",
    "INFERENCE_SCHEMA",
    "MAX_BODY_BYTES",
    "PARTITION_COLUMN",
    "USAGE_SCHEMA",
    "AuditRecord",
    "InferenceRecord",
    "UsageRecord",
    "clip",
    "to_arrow",
]

#: Largest request or response body kept whole, in bytes of UTF-8.
MAX_BODY_BYTES = 1024 * 1024
#: The column the inference and usage tables are partitioned by (the UTC date of the request).
PARTITION_COLUMN = "date"

_STR_MAP = pa.map_(pa.string(), pa.string())
_UTC_US = pa.timestamp("us", tz="UTC")

#: Arrow schema of an inference (payload) table, in column order.
INFERENCE_SCHEMA = pa.schema(
    [
        ("client_request_id", pa.string()),
        ("databricks_request_id", pa.string()),
        ("date", pa.date32()),
        ("timestamp_ms", pa.int64()),
        ("status_code", pa.int32()),
        ("execution_time_ms", pa.int64()),
        ("request", pa.string()),
        ("response", pa.string()),
        ("sampling_fraction", pa.float64()),
        ("request_metadata", _STR_MAP),
        ("served_entity_id", pa.string()),
        ("served_entity_name", pa.string()),
        ("requester", pa.string()),
        ("request_truncated", pa.bool_()),
        ("response_truncated", pa.bool_()),
        ("guardrails", pa.string()),
        ("fallback_chain", pa.string()),
        ("error_code", pa.string()),
        ("received_request", pa.string()),
        ("cache_hit", pa.bool_()),
        ("shadow_of", pa.string()),
        ("replay_of", pa.string()),
        ("batch_job_id", pa.string()),
        ("trace", pa.string()),
    ]
)

#: Arrow schema of the usage table, in column order.
USAGE_SCHEMA = pa.schema(
    [
        ("request_id", pa.string()),
        ("client_request_id", pa.string()),
        ("requester", pa.string()),
        ("endpoint_name", pa.string()),
        ("served_entity_name", pa.string()),
        ("status_code", pa.int32()),
        ("input_token_count", pa.int64()),
        ("output_token_count", pa.int64()),
        ("tokens_estimated", pa.bool_()),
        ("latency_ms", pa.int64()),
        ("request_time", _UTC_US),
        ("usage_context", _STR_MAP),
        ("date", pa.date32()),
    ]
)

#: Arrow schema of the audit log ``system.access.audit``, in column order.
AUDIT_SCHEMA = pa.schema(
    [
        ("workspace_id", pa.string()),
        ("event_time", _UTC_US),
        ("event_date", pa.date32()),
        ("event_id", pa.string()),
        ("request_id", pa.string()),
        ("source_ip_address", pa.string()),
        ("user_agent", pa.string()),
        ("user_identity", pa.struct([("email", pa.string())])),
        ("service_name", pa.string()),
        ("action_name", pa.string()),
        ("request_params", _STR_MAP),
        (
            "response",
            pa.struct(
                [("status_code", pa.int32()), ("error_code", pa.string()), ("error_message", pa.string())]
            ),
        ),
        ("audit_level", pa.string()),
        ("http_method", pa.string()),
        ("path", pa.string()),
    ]
)


def clip(
    body: bytes | bytearray | memoryview | str | None, limit: int = MAX_BODY_BYTES
) -> tuple[str | None, bool]:
    """A body as text of at most ``limit`` bytes of UTF-8, and whether it had to be cut.

    Bytes are decoded as UTF-8 (invalid sequences become U+FFFD); a longer body is cut at the last
    whole character before ``limit``. ``None`` stays ``None``.
    """
    if body is None:
        return None, False
    if isinstance(body, str):
        if len(body) <= limit // 4:  # at most 4 bytes a character: surely short enough
            return body, False
        raw = body.encode("utf-8", "surrogatepass")
        if len(raw) <= limit:
            return body, False
    else:
        raw = bytes(body)
        if len(raw) <= limit:
            return raw.decode("utf-8", "replace"), False
    end = limit
    # Step back over continuation bytes (10xxxxxx) so that no character is cut in two.
    while end > 0 and limit - end < 4 and (raw[end] & 0xC0) == 0x80:
        end -= 1
    return raw[:end].decode("utf-8", "replace"), True


def _json_text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


def _str_map(value: Any) -> dict[str, str] | None:
    if not value:
        return None
    return {str(k): v if isinstance(v, str) or v is None else _json_text(v) for k, v in dict(value).items()}


@dataclass(slots=True)
class InferenceRecord:
    """One request/response exchange, as a row of the endpoint's payload table.

    ``databricks_request_id`` is modelport's request id (the ``x-request-id`` it answered with) and the
    key that recovery deduplicates by. ``request``/``response`` are text of at most 1 MiB: build the
    record with :meth:`from_bodies` to clip raw bodies and set the ``*_truncated`` flags.
    ``guardrails`` and ``fallback_chain`` may be any JSON value (stored as JSON text) or text already.
    ``request_metadata`` holds the endpoint name, served model name and version, sampling fraction and
    whatever else describes the request (values become strings).
    """

    databricks_request_id: str
    status_code: int
    execution_time_ms: int
    request: str | None = None
    response: str | None = None
    timestamp_ms: int = field(default_factory=now_ms)
    client_request_id: str | None = None
    served_entity_id: str | None = None
    served_entity_name: str | None = None
    requester: str | None = None
    sampling_fraction: float = 1.0
    request_metadata: dict[str, str] | None = None
    request_truncated: bool = False
    response_truncated: bool = False
    guardrails: Any = None
    fallback_chain: Any = None
    error_code: str | None = None
    received_request: str | None = None
    cache_hit: bool | None = None
    shadow_of: str | None = None
    replay_of: str | None = None
    batch_job_id: str | None = None
    trace: Any = None

    @classmethod
    def from_bodies(
        cls,
        databricks_request_id: str,
        status_code: int,
        execution_time_ms: int,
        request_body: bytes | str | None,
        response_body: bytes | str | None,
        *,
        received_request_body: bytes | str | None = None,
        **fields: Any,
    ) -> InferenceRecord:
        """A record whose request and response are raw bodies, clipped to 1 MiB with the flags set
        (``received_request_body``, when given, is clipped too; ``request_truncated`` covers both)."""
        request, request_truncated = clip(request_body)
        response, response_truncated = clip(response_body)
        received, received_truncated = clip(received_request_body)
        return cls(
            received_request=received,
            databricks_request_id=databricks_request_id,
            status_code=status_code,
            execution_time_ms=execution_time_ms,
            request=request,
            response=response,
            request_truncated=request_truncated or received_truncated,
            response_truncated=response_truncated,
            **fields,
        )


@dataclass(slots=True)
class UsageRecord:
    """One request, as a row of ``system.serving.endpoint_usage``.

    ``request_time_ms`` (milliseconds since the epoch) becomes the ``request_time`` timestamp column
    and the ``date`` partition. ``tokens_estimated`` says the token counts were counted by modelport
    rather than reported by the model. ``usage_context`` is the client's ``usage_context`` map.
    """

    request_id: str
    endpoint_name: str
    status_code: int
    requester: str | None = None
    client_request_id: str | None = None
    served_entity_name: str | None = None
    input_token_count: int = 0
    output_token_count: int = 0
    tokens_estimated: bool = False
    latency_ms: int = 0
    request_time_ms: int = field(default_factory=now_ms)
    usage_context: dict[str, str] | None = None


@dataclass(slots=True)
class AuditRecord:
    """One audited request, as a row of ``system.access.audit``.

    ``event_time_ms`` becomes the ``event_time`` timestamp and the ``event_date`` partition;
    ``event_id`` (unique) is the key recovery deduplicates by. ``user_identity`` is
    ``{"email": <principal name>}`` (None when the caller was not authenticated) and ``response``
    ``{"status_code", "error_code", "error_message"}``. ``request_params`` holds identifiers only
    (names of endpoints, scopes, keys and principals): whoever builds the record keeps values,
    tokens and bodies out of it.
    """

    event_id: str
    request_id: str
    service_name: str
    action_name: str
    response: dict[str, Any]
    event_time_ms: int = field(default_factory=now_ms)
    workspace_id: str | None = None
    source_ip_address: str | None = None
    user_agent: str | None = None
    user_identity: dict[str, str | None] | None = None
    request_params: dict[str, str] | None = None
    audit_level: str = "WORKSPACE_LEVEL"
    http_method: str | None = None
    path: str | None = None


# What the spooled JSON rows look like before the derived columns are computed.
_INFERENCE_INPUT = pa.schema([f for f in INFERENCE_SCHEMA if f.name != "date"])
_USAGE_INPUT = pa.schema(
    [f for f in USAGE_SCHEMA if f.name not in ("request_time", "date")] + [("request_time_ms", pa.int64())]
)
_AUDIT_INPUT = pa.schema(
    [f for f in AUDIT_SCHEMA if f.name not in ("event_time", "event_date")] + [("event_time_ms", pa.int64())]
)


#: Rows converted by one call into Arrow: each call holds the GIL throughout (~3 µs a row), so a
#: large batch is converted in slices to let the event loop's thread run in between.
_CHUNK_ROWS = 512


def _from_rows(rows: list[dict[str, Any]], schema: pa.Schema) -> pa.Table:
    # Through struct arrays: about ten times faster than Table.from_pylist.
    struct_type = pa.struct(list(schema))
    if len(rows) <= _CHUNK_ROWS:
        return pa.Table.from_struct_array(pa.array(rows, type=struct_type))
    chunks = [pa.array(rows[i : i + _CHUNK_ROWS], type=struct_type) for i in range(0, len(rows), _CHUNK_ROWS)]
    return pa.Table.from_struct_array(pa.chunked_array(chunks, type=struct_type))


def _utc_date(ms: pa.ChunkedArray) -> pa.ChunkedArray:
    return pc.cast(pc.cast(ms, pa.timestamp("ms", tz="UTC")), pa.date32())


def to_arrow(kind: str, rows: Iterable[dict[str, Any]]) -> pa.Table:
    """Rows as spooled (dicts with the record's field names) -> an Arrow table of the table's schema.

    ``kind`` is ``"inference"``, ``"usage"`` or ``"audit"``. Unknown keys are ignored and missing
    ones are null, so spool files written by an older or newer modelport still load. Raises
    ``pyarrow.ArrowException`` (or ``TypeError``/``ValueError``) when a value has the wrong type.
    """
    if kind == "inference":
        fixed = []
        for row in rows:
            if row.get("guardrails") is not None or row.get("fallback_chain") is not None:
                row["guardrails"] = _json_text(row.get("guardrails"))
                row["fallback_chain"] = _json_text(row.get("fallback_chain"))
            if row.get("trace") is not None:
                row["trace"] = _json_text(row["trace"])
            if row.get("request_metadata"):
                row["request_metadata"] = _str_map(row["request_metadata"])
            fixed.append(row)
        table = _from_rows(fixed, _INFERENCE_INPUT)
        date = _utc_date(table["timestamp_ms"])
        return table.add_column(2, "date", date)
    if kind == "usage":
        fixed = []
        for row in rows:
            if row.get("usage_context"):
                row["usage_context"] = _str_map(row["usage_context"])
            fixed.append(row)
        table = _from_rows(fixed, _USAGE_INPUT)
        ms = table["request_time_ms"]
        request_time = pc.cast(pc.multiply(ms, 1000), pa.int64()).cast(_UTC_US)
        table = table.drop_columns(["request_time_ms"])
        table = table.append_column("request_time", request_time).append_column("date", _utc_date(ms))
        return table.select(USAGE_SCHEMA.names)
    if kind == "audit":
        fixed = []
        for row in rows:
            if row.get("request_params"):
                row["request_params"] = _str_map(row["request_params"])
            fixed.append(row)
        table = _from_rows(fixed, _AUDIT_INPUT)
        ms = table["event_time_ms"]
        event_time = pc.cast(pc.multiply(ms, 1000), pa.int64()).cast(_UTC_US)
        table = table.drop_columns(["event_time_ms"])
        table = table.append_column("event_time", event_time).append_column("event_date", _utc_date(ms))
        return table.select(AUDIT_SCHEMA.names)
    raise ValueError(f"unknown table kind {kind!r}")
