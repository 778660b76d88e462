"""Bulk jobs on tables (``modelport batch run``, ``batch/table_runner.py``), modelport's own
routes beside OpenAI's Batch API:

- ``POST /api/2.0/modelport/batch/jobs`` ``{"endpoint", "input": {"file_id"} | {"table"},
  "output_table", "columns"?, "chunk_rows"?}``: the job (created, or the one already doing the
  same work: reopened when it was cancelled or failed), with ``action`` saying which;
- ``GET /api/2.0/modelport/batch/jobs``: ``{"jobs": [...]}``, the caller's (admins: all), newest first;
- ``GET /api/2.0/modelport/batch/jobs/{job_id}``;
- ``POST /api/2.0/modelport/batch/jobs/{job_id}/cancel``: stop it (rows written stay).

The input file is uploaded first with ``POST /serving-endpoints/files`` (``purpose="user_data"``).
Another principal's job answers 404. Creating and cancelling are in the audit log (service ``modelport``,
actions ``createBatchJob``, ``cancelBatchJob``).
"""

from __future__ import annotations

import asyncio

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from modelport.api.body import json_object
from modelport.api.responses import json_response
from modelport.api.services import caller_of, services_of
from modelport.batch.table_runner import TableJobRunner
from modelport.errors import TemporarilyUnavailable

__all__ = ["JOBS", "routes"]

JOBS = "/api/2.0/modelport/batch/jobs"


def _runner(request: Request) -> TableJobRunner:
    runner = services_of(request).table_jobs
    if runner is None:
        raise TemporarilyUnavailable("Batch jobs are not served by this process.")
    return runner


async def create_batch_job(request: Request) -> Response:
    caller = caller_of(request)
    runner = _runner(request)
    body = await json_object(request)
    job, action = await run_in_threadpool(runner.create, caller, body, asyncio.get_running_loop())
    runner.wake()
    return json_response({**job.to_json(), "action": action})


async def list_batch_jobs(request: Request) -> Response:
    caller = caller_of(request)
    jobs = await run_in_threadpool(_runner(request).jobs.list, caller)
    return json_response({"jobs": [job.to_json() for job in jobs]})


async def get_batch_job(request: Request) -> Response:
    caller = caller_of(request)
    job = await run_in_threadpool(_runner(request).jobs.get, caller, request.path_params["job_id"])
    return json_response(job.to_json())


async def cancel_batch_job(request: Request) -> Response:
    caller = caller_of(request)
    runner = _runner(request)
    job = await run_in_threadpool(runner.jobs.cancel, caller, request.path_params["job_id"])
    runner.wake()
    return json_response(job.to_json())


routes = [
    Route(JOBS, create_batch_job, methods=["POST"]),
    Route(JOBS, list_batch_jobs, methods=["GET"]),
    Route(f"{JOBS}/{{job_id}}", get_batch_job, methods=["GET"]),
    Route(f"{JOBS}/{{job_id}}/cancel", cancel_batch_job, methods=["POST"]),
]
