"""The bulk jobs' routes (OpenAI's Files and Batch APIs, ``api/control/batches.py``), as the
OpenAPI document describes them."""

from __future__ import annotations

from modelport.api.openapi_schemas import Operation, Param, Schema, array_of, obj, string

__all__ = ["batch_operations"]

_FILES = "/serving-endpoints/files"
_BATCHES = "/serving-endpoints/batches"
_TAG = "queries"
_OWNER = "any authenticated principal (its own; admins: all)"
_FILE = obj(
    {
        "id": string(),
        "object": string(enum=["file"]),
        "bytes": {"type": "integer"},
        "created_at": {"type": "integer"},
        "filename": string(),
        "purpose": string(enum=["batch", "batch_output"]),
    }
)
_NULLABLE: Schema = {"type": ["string", "null"]}
_COUNTS = obj({"total": {"type": "integer"}, "completed": {"type": "integer"}, "failed": {"type": "integer"}})
_STATUSES = [
    "validating",
    "in_progress",
    "finalizing",
    "completed",
    "failed",
    "cancelling",
    "cancelled",
    "expired",
]
_BATCH = obj(
    {
        "id": string(),
        "object": string(enum=["batch"]),
        "endpoint": string(),
        "input_file_id": string(),
        "completion_window": string(),
        "status": string(enum=_STATUSES),
        "output_file_id": _NULLABLE,
        "error_file_id": _NULLABLE,
        "request_counts": _COUNTS,
        "metadata": {"type": ["object", "null"]},
        "owner": string("The principal the job runs as."),
    }
)
_PAGE = (
    Param("limit", {"type": "integer", "minimum": 1, "maximum": 100}),
    Param("after", string(), description="The last id of the previous page."),
)


def _list(item: Schema) -> Schema:
    return obj(
        {
            "object": string(),
            "data": array_of(item),
            "first_id": _NULLABLE,
            "last_id": _NULLABLE,
            "has_more": {"type": "boolean"},
        }
    )


def batch_operations() -> list[Operation]:
    return [
        Operation(
            "POST",
            _FILES,
            "Upload a batch input file (multipart: 'file', 'purpose'=\"batch\"); each line is checked.",
            _TAG,
            _OWNER,
            response=_FILE,
        ),
        Operation(
            "GET",
            _FILES,
            "The caller's files.",
            _TAG,
            _OWNER,
            query=(Param("purpose", string()), *_PAGE),
            response=_list(_FILE),
        ),
        Operation("GET", f"{_FILES}/{{file_id}}", "A file's metadata.", _TAG, _OWNER, response=_FILE),
        Operation("DELETE", f"{_FILES}/{{file_id}}", "Delete a file.", _TAG, _OWNER),
        Operation(
            "GET",
            f"{_FILES}/{{file_id}}/content",
            "A file's content (JSON lines).",
            _TAG,
            _OWNER,
            media_type="application/jsonl",
            response={"type": "string"},
        ),
        Operation(
            "POST",
            _BATCHES,
            "Start a bulk job over an uploaded file; it runs as the caller, through the data plane.",
            _TAG,
            _OWNER,
            body=obj(
                {
                    "input_file_id": string(),
                    "endpoint": string(enum=["/v1/chat/completions", "/v1/completions", "/v1/embeddings"]),
                    "completion_window": string(enum=["24h"]),
                    "metadata": {"type": "object"},
                },
                ("input_file_id", "endpoint", "completion_window"),
            ),
            response=_BATCH,
        ),
        Operation(
            "GET", _BATCHES, "The caller's bulk jobs.", _TAG, _OWNER, query=_PAGE, response=_list(_BATCH)
        ),
        Operation("GET", f"{_BATCHES}/{{batch_id}}", "A bulk job.", _TAG, _OWNER, response=_BATCH),
        Operation(
            "POST",
            f"{_BATCHES}/{{batch_id}}/cancel",
            "Cancel a bulk job (answers so far are kept).",
            _TAG,
            _OWNER,
            body_required=False,
            response=_BATCH,
        ),
    ]
