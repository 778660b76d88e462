"""Bulk jobs on tables (``modelport batch run``) and where their state is kept.

A table job scores the rows of a tabular input (an uploaded Parquet, CSV or JSON-lines file, or
a Delta table at one version) with one serving endpoint, into an output Delta table holding each
row's ``row_id`` (its position in the input), the input's columns, ``result`` and
``errorMessage``. ``batch/table_runner.py`` runs it; ``batch/table_io.py`` reads and writes the
tables.

A job is ``<root>/table-jobs/<id>/job.json``, written whole (atomically) by whoever creates or
reopens it, then only by the runner. A cancel request leaves a ``cancel`` marker beside it that
the runner reads, as the OpenAI jobs do (``batch/jobs.py``), so the two never overwrite each
other. The job's counts are a cache: the output table is the truth (the runner recounts it when
it starts a job).

Statuses: ``queued`` (created or reopened, not picked up yet), ``running``, ``cancelling``,
``cancelled``, ``completed``, ``failed``. A cancelled or failed job is reopened (``queued``) by a
new request for the same input, endpoint, columns and output; it goes on from the rows its
output table holds.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson

from modelport.batch.files import new_id, write_atomically
from modelport.errors import InvalidState, NotFound
from modelport.spec.identity import Caller

__all__ = ["DONE", "RESUMABLE", "TableJob", "TableJobStore"]

#: Statuses after which the runner leaves a job alone.
DONE = frozenset({"completed", "failed", "cancelled"})
#: Ended statuses a new request for the same work reopens.
RESUMABLE = frozenset({"failed", "cancelled"})
#: How many distinct error messages a job keeps (the most common).
TOP_ERRORS = 5
_PREFIX = "bjob"


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class TableJob:
    """One table job; :meth:`to_json` is its API shape."""

    id: str
    owner: str
    endpoint: str
    #: ``custom``, ``chat``, ``completions`` or ``embeddings`` (what the endpoint was at creation).
    kind: str
    #: ``parquet``, ``csv``, ``jsonl`` (an uploaded file) or ``delta`` (a table).
    input_format: str
    #: The file's name as uploaded, or the table's three-part name.
    input_name: str
    #: ``sha256:<hex>`` of the file, or ``delta:<table>@<version>``.
    fingerprint: str
    output_table: str
    columns: list[str]
    chunk_rows: int
    created_at: int
    input_file_id: str | None = None
    input_version: int | None = None
    status: str = "queued"
    total: int = 0
    done: int = 0
    failed: int = 0
    #: The most common error messages: ``[{"message", "count"}]``, most common first.
    errors: list[dict[str, Any]] = field(default_factory=list)
    #: Why the job failed (the whole job, not a row).
    failure: str | None = None
    started_at: int | None = None
    ended_at: int | None = None
    #: How many times the job was started (1 the first time; each resume adds one).
    runs: int = 0

    @property
    def input_identity(self) -> str:
        """What "the same input" means for reopening: the file's content, or the table's name
        (a reopened job reads the version it started with)."""
        return self.fingerprint if self.input_format != "delta" else f"delta:{self.input_name}"

    def same_work(self, other: TableJob) -> bool:
        return (
            self.owner == other.owner
            and self.endpoint == other.endpoint
            and self.input_identity == other.input_identity
            and self.columns == other.columns
            and self.output_table == other.output_table
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "batch_job",
            "owner": self.owner,
            "endpoint": self.endpoint,
            "endpoint_kind": self.kind,
            "input": {
                "format": self.input_format,
                "name": self.input_name,
                "file_id": self.input_file_id,
                "version": self.input_version,
                "fingerprint": self.fingerprint,
            },
            "output_table": self.output_table,
            "columns": self.columns,
            "chunk_rows": self.chunk_rows,
            "status": self.status,
            "rows": {"total": self.total, "done": self.done, "failed": self.failed},
            "top_errors": self.errors,
            "error": self.failure,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "runs": self.runs,
        }


class TableJobStore:
    """The table jobs under ``root`` (blocking: call from a thread)."""

    def __init__(self, root: Path) -> None:
        self.root = root / "table-jobs"
        self.root.mkdir(parents=True, exist_ok=True)

    def _dir(self, job_id: str) -> Path:
        if len(job_id) > 64 or not job_id.startswith(f"{_PREFIX}-") or not job_id[5:].isalnum():
            raise NotFound(f"No such batch job: {job_id}")
        return self.root / job_id

    @staticmethod
    def new_id() -> str:
        return new_id(_PREFIX)

    def add(self, job: TableJob) -> TableJob:
        self._dir(job.id).mkdir()
        self.save(job)
        return job

    def save(self, job: TableJob) -> None:
        write_atomically(self._dir(job.id) / "job.json", orjson.dumps(asdict(job)))

    def load(self, job_id: str) -> TableJob:
        try:
            job = TableJob(**orjson.loads((self._dir(job_id) / "job.json").read_bytes()))
        except FileNotFoundError:
            raise NotFound(f"No such batch job: {job_id}") from None
        if job.status not in DONE and self.cancel_requested(job_id):
            job.status = "cancelling"
        return job

    def get(self, caller: Caller, job_id: str) -> TableJob:
        """The job, when ``caller`` owns it or is an admin; else 404."""
        job = self.load(job_id)
        if job.owner != caller.name and not caller.is_admin:
            raise NotFound(f"No such batch job: {job_id}")
        return job

    def all(self) -> list[TableJob]:
        """Every job, newest first (a half-written one is skipped)."""
        found = []
        for path in self.root.glob(f"{_PREFIX}-*"):
            try:
                found.append(self.load(path.name))
            except (NotFound, orjson.JSONDecodeError, TypeError):
                continue
        return sorted(found, key=lambda j: (j.created_at, j.id), reverse=True)

    def pending(self, ended: dict[str, int]) -> list[TableJob]:
        """The jobs not ended, for the runner; ``ended`` (id -> ``job.json``'s mtime in ns when seen
        ended) is kept up to date, so an ended job is read again only once it is rewritten
        (reopened)."""
        found = []
        for path in self.root.glob(f"{_PREFIX}-*"):
            try:
                mtime = (path / "job.json").stat().st_mtime_ns
                if ended.get(path.name) == mtime:
                    continue
                job = self.load(path.name)
            except (FileNotFoundError, NotFound, orjson.JSONDecodeError, TypeError):
                continue
            if job.status in DONE:
                ended[job.id] = mtime
            else:
                ended.pop(job.id, None)
                found.append(job)
        return found

    def list(self, caller: Caller) -> list[TableJob]:
        """The caller's jobs (an admin's: every job), newest first."""
        return [j for j in self.all() if j.owner == caller.name or caller.is_admin]

    def writing(self, output_table: str) -> list[TableJob]:
        """The jobs whose output is ``output_table``, newest first."""
        return [j for j in self.all() if j.output_table == output_table]

    def cancel(self, caller: Caller, job_id: str) -> TableJob:
        """Ask the runner to stop the job after (or in the middle of) its current chunk; the
        rows already written stay, and a new request for the same work goes on from them."""
        job = self.get(caller, job_id)
        if job.status in DONE:
            raise InvalidState(f"Batch job {job_id} is {job.status}: it cannot be cancelled.")
        write_atomically(self._dir(job_id) / "cancel", str(now_ms()).encode())
        job.status = "cancelling"
        return job

    def cancel_requested(self, job_id: str) -> bool:
        return (self._dir(job_id) / "cancel").exists()

    def reopen(self, job: TableJob) -> TableJob:
        """Queue an ended (cancelled or failed) job again."""
        (self._dir(job.id) / "cancel").unlink(missing_ok=True)
        job.status, job.failure, job.ended_at = "queued", None, None
        self.save(job)
        return job
