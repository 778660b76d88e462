"""The bulk jobs' routes (OpenAI's Files and Batch APIs, ``api/control/batches.py``, and the
table jobs, ``api/control/batch_jobs.py``), as the OpenAPI document describes them."""

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
_JOBS = "/api/2.0/modelport/batch/jobs"
_INT: Schema = {"type": "integer"}
_TABLE_JOB = obj(
    {
        "id": string(),
        "object": string(enum=["batch_job"]),
        "owner": string("The principal the job runs as."),
        "endpoint": string(),
        "endpoint_kind": string(enum=["custom", "chat", "completions", "embeddings"]),
        "input": obj(
            {
                "format": string(enum=["parquet", "csv", "jsonl", "delta"]),
                "name": string(),
                "file_id": _NULLABLE,
                "version": {"type": ["integer", "null"]},
                "fingerprint": string(),
            }
        ),
        "output_table": string(),
        "columns": array_of(string()),
        "chunk_rows": _INT,
        "status": string(enum=["queued", "running", "cancelling", "cancelled", "completed", "failed"]),
        "rows": obj({"total": _INT, "done": _INT, "failed": _INT}),
        "top_errors": array_of(obj({"message": string(), "count": _INT})),
        "error": _NULLABLE,
        "created_at": _INT,
        "started_at": {"type": ["integer", "null"]},
        "ended_at": {"type": ["integer", "null"]},
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
        *_table_job_operations(),
    ]


def _table_job_operations() -> list[Operation]:
    tag = "tables"
    return [
        Operation(
            "POST",
            _JOBS,
            'Score a table or an uploaded file (purpose "user_data") into a Delta table; the same '
            "work again resumes it.",
            tag,
            "the caller needs CAN_QUERY on the endpoint, SELECT on an input table, MODIFY on an "
            "existing output table",
            body=obj(
                {
                    "endpoint": string(),
                    "input": obj({"file_id": string(), "table": string()}),
                    "output_table": string(),
                    "columns": array_of(string()),
                    "chunk_rows": {"type": "integer", "minimum": 1, "maximum": 1_000_000},
                },
                ("endpoint", "input", "output_table"),
            ),
            response=_TABLE_JOB,
        ),
        Operation(
            "GET",
            _JOBS,
            "The caller's table jobs.",
            tag,
            _OWNER,
            response=obj({"jobs": array_of(_TABLE_JOB)}),
        ),
        Operation("GET", f"{_JOBS}/{{job_id}}", "A table job.", tag, _OWNER, response=_TABLE_JOB),
        Operation(
            "POST",
            f"{_JOBS}/{{job_id}}/cancel",
            "Cancel a table job (rows written are kept).",
            tag,
            _OWNER,
            body_required=False,
            response=_TABLE_JOB,
        ),
    ]
