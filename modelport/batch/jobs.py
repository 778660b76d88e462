"""Bulk jobs (OpenAI's ``Batch`` object) and where their state is kept.

A job is ``<root>/jobs/<id>/job.json``, written whole (atomically) by whoever creates it, then
only by the runner that runs it (``runner.py``). A cancel request does not write it: it leaves a
``cancel`` marker beside it that the runner reads, so the two never overwrite each other. The
job's answers go straight into its output and error files (``files.py``: ``<file id>.jsonl``),
appended as they come; their metadata is written when the job ends, so they are listed then.
The state lives under the server's data directory: servers sharing a PostgreSQL store see each
other's jobs only when they share that directory too.

Statuses, as OpenAI names them: ``validating`` (created, not picked up yet), ``in_progress``,
``finalizing``, ``completed``, ``failed``, ``cancelling``, ``cancelled``, ``expired``.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson

from modelport.batch.files import URL_TASKS, FileStore, new_id, parse_input, write_atomically
from modelport.errors import InvalidParameterValue, InvalidState, NotFound
from modelport.spec.identity import Caller

__all__ = ["DONE", "Job", "JobStore"]

#: Statuses after which nothing changes.
DONE = frozenset({"completed", "failed", "cancelled", "expired"})
WINDOW_SECONDS = {"24h": 24 * 3600}
_METADATA_PAIRS, _KEY_CHARS, _VALUE_CHARS = 16, 64, 512


@dataclass
class Job:
    """One bulk job; :meth:`to_json` is OpenAI's ``Batch`` object."""

    id: str
    owner: str
    endpoint: str
    input_file_id: str
    completion_window: str
    created_at: int
    expires_at: int
    output_id: str
    error_id: str
    status: str = "validating"
    metadata: dict[str, str] | None = None
    total: int = 0
    completed: int = 0
    failed: int = 0
    #: Whether the output and error files hold lines (they are named only then).
    has_output: bool = False
    has_errors: bool = False
    errors: list[dict[str, Any]] = field(default_factory=list)
    in_progress_at: int | None = None
    finalizing_at: int | None = None
    completed_at: int | None = None
    failed_at: int | None = None
    expired_at: int | None = None
    cancelling_at: int | None = None
    cancelled_at: int | None = None

    def to_json(self) -> dict[str, Any]:
        ended = self.status in DONE
        return {
            "id": self.id,
            "object": "batch",
            "endpoint": self.endpoint,
            "errors": {"object": "list", "data": self.errors} if self.errors else None,
            "input_file_id": self.input_file_id,
            "completion_window": self.completion_window,
            "status": self.status,
            "output_file_id": self.output_id if ended and self.has_output else None,
            "error_file_id": self.error_id if ended and self.has_errors else None,
            "created_at": self.created_at,
            "in_progress_at": self.in_progress_at,
            "expires_at": self.expires_at,
            "finalizing_at": self.finalizing_at,
            "completed_at": self.completed_at,
            "failed_at": self.failed_at,
            "expired_at": self.expired_at,
            "cancelling_at": self.cancelling_at,
            "cancelled_at": self.cancelled_at,
            "request_counts": {"total": self.total, "completed": self.completed, "failed": self.failed},
            "metadata": self.metadata,
            "owner": self.owner,  # modelport's: who the job runs as (admins list everyone's)
        }


def _check_metadata(metadata: Any) -> dict[str, str] | None:
    if metadata is None:
        return None
    if not isinstance(metadata, dict) or len(metadata) > _METADATA_PAIRS:
        raise InvalidParameterValue(f"'metadata' must be an object of at most {_METADATA_PAIRS} pairs.")
    for key, value in metadata.items():
        if len(key) > _KEY_CHARS or not isinstance(value, str) or len(value) > _VALUE_CHARS:
            raise InvalidParameterValue(
                f"'metadata' keys are at most {_KEY_CHARS} characters and values strings of at most "
                f"{_VALUE_CHARS} (key {key[:80]!r})."
            )
    return metadata


class JobStore:
    """The jobs under ``root`` (blocking: call from a thread)."""

    def __init__(self, root: Path, files: FileStore) -> None:
        self.root = root / "jobs"
        self.root.mkdir(parents=True, exist_ok=True)
        self.files = files

    def _dir(self, job_id: str) -> Path:
        if len(job_id) > 64 or not job_id.startswith("batch-") or not job_id[6:].isalnum():
            raise NotFound(f"No such Batch object: {job_id}")
        return self.root / job_id

    def create(self, caller: Caller, body: dict[str, Any]) -> Job:
        """A new job over the caller's input file (each line's ``url`` must be the job's endpoint)."""
        endpoint = body.get("endpoint")
        if not isinstance(endpoint, str) or endpoint not in URL_TASKS:
            raise InvalidParameterValue(
                f"'endpoint' must be one of {', '.join(URL_TASKS)} (got {endpoint!r})."
            )
        window = body.get("completion_window")
        if not isinstance(window, str) or window not in WINDOW_SECONDS:
            raise InvalidParameterValue(f"'completion_window' must be \"24h\" (got {window!r}).")
        file_id = body.get("input_file_id")
        if not isinstance(file_id, str):
            raise InvalidParameterValue("'input_file_id' must name an uploaded file.")
        metadata = _check_metadata(body.get("metadata"))
        meta = self.files.get(caller, file_id)
        if meta.purpose != "batch":
            raise InvalidParameterValue(f'File {file_id} has purpose {meta.purpose!r}, not "batch".')
        lines = parse_input(self.files.content_path(file_id).read_bytes())
        for number, line in enumerate(lines, start=1):
            if line.url != endpoint:
                raise InvalidParameterValue(
                    f"Request {number} ('{line.custom_id}') of {file_id} has url {line.url}, "
                    f"not the batch's endpoint {endpoint}."
                )
        now = int(time.time())
        job = Job(
            id=new_id("batch"),
            owner=caller.name,
            endpoint=endpoint,
            input_file_id=file_id,
            completion_window=window,
            created_at=now,
            expires_at=now + WINDOW_SECONDS[window],
            output_id=new_id("file"),
            error_id=new_id("file"),
            metadata=metadata,
            total=len(lines),
        )
        self._dir(job.id).mkdir()
        self.save(job)
        return job

    def save(self, job: Job) -> None:
        write_atomically(self._dir(job.id) / "job.json", orjson.dumps(asdict(job)))

    def load(self, job_id: str) -> Job:
        try:
            job = Job(**orjson.loads((self._dir(job_id) / "job.json").read_bytes()))
        except FileNotFoundError:
            raise NotFound(f"No such Batch object: {job_id}") from None
        marker = self._dir(job_id) / "cancel"
        if job.status not in DONE and marker.exists():
            job.status = "cancelling"
            job.cancelling_at = job.cancelling_at or int(marker.read_bytes() or b"0")
        return job

    def get(self, caller: Caller, job_id: str) -> Job:
        """The job, when ``caller`` owns it or is an admin; else 404."""
        job = self.load(job_id)
        if job.owner != caller.name and not caller.is_admin:
            raise NotFound(f"No such Batch object: {job_id}")
        return job

    def list(self, caller: Caller | None = None) -> list[Job]:
        """The caller's jobs (an admin's, or with no caller: every job), newest first."""
        found = []
        for path in self.root.glob("batch-*"):
            try:
                job = self.load(path.name)
            except (NotFound, orjson.JSONDecodeError):
                continue
            if caller is None or job.owner == caller.name or caller.is_admin:
                found.append(job)
        return sorted(found, key=lambda j: (j.created_at, j.id), reverse=True)

    def load_except(self, skip: set[str]) -> list[Job]:
        """The jobs not in ``skip`` (the runner's: those it saw ended or runs), ended ones included."""
        found = []
        for path in self.root.glob("batch-*"):
            if path.name in skip:
                continue
            try:
                found.append(self.load(path.name))
            except (NotFound, orjson.JSONDecodeError):
                continue
        return found

    def cancel(self, caller: Caller, job_id: str) -> Job:
        """Ask the runner to stop the job (answers so far are kept)."""
        job = self.get(caller, job_id)
        if job.status in DONE:
            raise InvalidState(f"Batch {job_id} is {job.status}: it cannot be cancelled.")
        write_atomically(self._dir(job_id) / "cancel", str(int(time.time())).encode())
        job.status = "cancelling"
        job.cancelling_at = job.cancelling_at or int(time.time())
        return job

    def cancel_requested(self, job_id: str) -> bool:
        return (self._dir(job_id) / "cancel").exists()
