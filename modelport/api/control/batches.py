"""Bulk jobs, OpenAI's Files and Batch APIs under the OpenAI base URL the server already has
(``OpenAI(base_url=f"{host}/serving-endpoints", api_key=<token>)``):

- ``POST /serving-endpoints/files`` (multipart: ``file``, ``purpose="batch"``; every line checked,
  a 400 names the first bad one), ``GET /serving-endpoints/files``,
  ``GET|DELETE /serving-endpoints/files/{file_id}``, ``GET /serving-endpoints/files/{file_id}/content``;
- ``POST /serving-endpoints/batches`` (``input_file_id``, ``endpoint``, ``completion_window``,
  ``metadata``), ``GET /serving-endpoints/batches``, ``GET /serving-endpoints/batches/{batch_id}``,
  ``POST /serving-endpoints/batches/{batch_id}/cancel``.

Any authenticated principal may call them; each sees its own files and jobs (admins: all), and
another's are 404. The job runs as its owner (``batch/runner.py``): a request the owner may not
send is answered 403 in the error file.
"""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from modelport.api.body import json_object, read_body
from modelport.api.multipart import parse_form
from modelport.api.responses import json_response
from modelport.api.services import caller_of, services_of
from modelport.batch.files import MAX_FILE_BYTES
from modelport.batch.runner import BatchRunner
from modelport.errors import InvalidParameterValue, TemporarilyUnavailable

__all__ = ["BATCHES", "FILES", "routes"]

FILES = "/serving-endpoints/files"
BATCHES = "/serving-endpoints/batches"
_MAX_LIMIT = 100


def _runner(request: Request) -> BatchRunner:
    runner = services_of(request).batches
    if runner is None:
        raise TemporarilyUnavailable("Bulk jobs are not served by this process.")
    return runner


def _page(request: Request, items: list[dict[str, Any]]) -> dict[str, Any]:
    """A cursor page (``after``: the last id of the previous page, ``limit``: at most 100)."""
    raw = request.query_params.get("limit", "20")
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= _MAX_LIMIT:
        raise InvalidParameterValue(f"'limit' must be between 1 and {_MAX_LIMIT} (got {raw!r}).")
    after = request.query_params.get("after")
    if after:
        ids = [item["id"] for item in items]
        items = items[ids.index(after) + 1 :] if after in ids else []
    page = items[: int(raw)]
    return {
        "object": "list",
        "data": page,
        "first_id": page[0]["id"] if page else None,
        "last_id": page[-1]["id"] if page else None,
        "has_more": len(items) > len(page),
    }


# ---- files --------------------------------------------------------------------------------------
async def upload_file(request: Request) -> Response:
    caller = caller_of(request)
    runner = _runner(request)
    body = await read_body(request.scope, request.receive, MAX_FILE_BYTES, what="a batch input file")
    form = parse_form(request.headers.get("content-type", ""), body)
    file, purpose = form.get("file"), form.get("purpose")
    if file is None or purpose is None:
        raise InvalidParameterValue("Send the fields 'file' and 'purpose'.")
    created = await run_in_threadpool(
        runner.files.create,
        caller.name,
        file.filename or "upload.jsonl",
        purpose.value.decode("utf-8", "replace"),
        file.value,
    )
    return json_response(created.to_json())


async def list_files(request: Request) -> Response:
    caller = caller_of(request)
    found = await run_in_threadpool(_runner(request).files.list, caller, request.query_params.get("purpose"))
    return json_response(_page(request, [f.to_json() for f in found]))


async def get_file(request: Request) -> Response:
    caller = caller_of(request)
    found = await run_in_threadpool(_runner(request).files.get, caller, request.path_params["file_id"])
    return json_response(found.to_json())


async def file_content(request: Request) -> Response:
    caller = caller_of(request)
    content = await run_in_threadpool(_runner(request).files.content, caller, request.path_params["file_id"])
    return Response(content, media_type="application/jsonl")


async def delete_file(request: Request) -> Response:
    caller = caller_of(request)
    file_id = request.path_params["file_id"]
    await run_in_threadpool(_runner(request).files.delete, caller, file_id)
    return json_response({"id": file_id, "object": "file", "deleted": True})


# ---- batches ------------------------------------------------------------------------------------
async def create_batch(request: Request) -> Response:
    caller = caller_of(request)
    runner = _runner(request)
    job = await run_in_threadpool(runner.jobs.create, caller, await json_object(request))
    runner.wake()
    return json_response(job.to_json())


async def list_batches(request: Request) -> Response:
    caller = caller_of(request)
    jobs = await run_in_threadpool(_runner(request).jobs.list, caller)
    return json_response(_page(request, [job.to_json() for job in jobs]))


async def get_batch(request: Request) -> Response:
    caller = caller_of(request)
    job = await run_in_threadpool(_runner(request).jobs.get, caller, request.path_params["batch_id"])
    return json_response(job.to_json())


async def cancel_batch(request: Request) -> Response:
    caller = caller_of(request)
    runner = _runner(request)
    job = await run_in_threadpool(runner.jobs.cancel, caller, request.path_params["batch_id"])
    runner.wake()
    return json_response(job.to_json())


routes = [
    Route(FILES, upload_file, methods=["POST"]),
    Route(FILES, list_files, methods=["GET"]),
    Route(f"{FILES}/{{file_id}}", get_file, methods=["GET"]),
    Route(f"{FILES}/{{file_id}}", delete_file, methods=["DELETE"]),
    Route(f"{FILES}/{{file_id}}/content", file_content, methods=["GET"]),
    Route(BATCHES, create_batch, methods=["POST"]),
    Route(BATCHES, list_batches, methods=["GET"]),
    Route(f"{BATCHES}/{{batch_id}}", get_batch, methods=["GET"]),
    Route(f"{BATCHES}/{{batch_id}}/cancel", cancel_batch, methods=["POST"]),
]
