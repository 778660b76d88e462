"""The runner of table jobs (``batch/table_jobs.py``): creates them, checking every input, and
runs them on the leader, chunk by chunk, through ``ai_query``'s machinery.

A chunk is up to ``chunk_rows`` rows not answered yet, scored as
``SELECT row_id, ai_query(endpoint, named_struct(cols...), failOnError => false) FROM chunk``
on a DuckDB connection of its own (``batch/ai_query.py``: a custom model gets multi-row
``dataframe_split`` requests, an LLM endpoint many requests in flight, 429/503 retried), each
request a query of the data plane in-process as the job's owner, so their ``CAN_QUERY``, the
endpoint's rate limits, guardrails, usage and inference tables apply; ``usage_context`` carries
``batch_job_id``. The chunk's answers are then appended to the output table in one Delta commit:
that commit is the checkpoint. A job started again (a restart, a kill -9, a new leader, a
reopened cancelled job) reads the row ids its output holds and sends only the others, so each
input row is in the output exactly once (requests in flight at a kill are sent again: their
chunk was not committed).

A cancel request, or this process ceasing to lead, stops the chunk in flight (its requests
fail fast and the chunk is not written); answers already committed stay.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from modelport.batch.ai_query import EndpointInfo, Endpoints, prepare
from modelport.batch.files import FileStore
from modelport.batch.served import served_endpoints
from modelport.batch.table_io import (
    ERROR,
    RESULT,
    ROW_ID,
    OutputState,
    append,
    delta_shape,
    delta_version,
    file_format,
    file_sha256,
    output_state,
    read_delta,
    read_file,
)
from modelport.batch.table_jobs import DONE, RESUMABLE, TOP_ERRORS, TableJob, TableJobStore, now_ms
from modelport.control.endpoints import EndpointService
from modelport.control.leader_work import LeaderWork
from modelport.control.table_acl import OBJECT_TYPE, TableAccess
from modelport.entities.registry_handle import RegistryHandle
from modelport.errors import (
    InvalidParameterValue,
    ModelportError,
    ResourceAlreadyExists,
    ResourceConflict,
    ResourceDoesNotExist,
)
from modelport.gateway.auth import active_caller
from modelport.gateway.exchange import Exchange
from modelport.gateway.pipeline import DataPlane
from modelport.spec.identity import Caller
from modelport.spec.permissions import PermissionLevel
from modelport.spec.table_privileges import TablePrivilege
from modelport.store import Database
from modelport.tables.names import split_name, table_uri

__all__ = ["CHUNK_ROWS", "TableJobRunner"]

log = logging.getLogger("modelport.batch")

#: Rows per chunk (one Delta commit each) by endpoint kind, unless the job says.
CHUNK_ROWS = {"custom": 10_000, "embeddings": 4_096, "chat": 512, "completions": 512}
MAX_CHUNK_ROWS = 1_000_000
#: How often a chunk in flight looks for a cancel request.
CHECK_SECONDS = 0.25
_RESERVED_CATALOG = "system"
_ANSWER = "__answer"


class _Stopped(Exception):
    """The job was cancelled or this process stopped leading: the chunk in flight is dropped.
    Not a ModelportError, so ``ai_query`` fails the statement rather than the row."""


def _quote(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _literal(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


class TableJobRunner(LeaderWork):
    """Creates table jobs and runs them while ``leading()`` says this process leads."""

    what = "table job"

    def __init__(
        self,
        jobs: TableJobStore,
        files: FileStore,
        dataplane: DataPlane,
        db: Database,
        endpoints: EndpointService,
        registry: RegistryHandle,
        tables_root: str,
        *,
        leading: Callable[[], bool],
        interval: float = 1.0,
    ) -> None:
        super().__init__(leading=leading, interval=interval, log=log)
        self.jobs = jobs
        self.files = files
        self._dataplane = dataplane
        self._db = db
        self._endpoints = endpoints
        self._registry = registry
        self._root = tables_root
        self._ended: dict[str, int] = {}  # jobs seen ended (``TableJobStore.pending``)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._create_lock = threading.Lock()

    # ---- lifecycle ------------------------------------------------------------------------------
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        await super().start()

    async def scan(self) -> None:
        for job in await asyncio.to_thread(self.jobs.pending, self._ended):
            if job.id not in self.busy():
                self.launch(job.id, self._run(job.id))

    # ---- creating -------------------------------------------------------------------------------
    def create(
        self, caller: Caller, body: dict[str, Any], loop: asyncio.AbstractEventLoop
    ) -> tuple[TableJob, str]:
        """A job for ``body`` (``endpoint``, ``input`` ``{"file_id"}`` or ``{"table"}``,
        ``output_table``, ``columns``, ``chunk_rows``), and what was done: ``created``,
        ``resumed`` (an ended job for the same work reopened), ``attached`` (the same work runs
        already) or ``done`` (the same work is complete). Blocking: call from a thread; ``loop`` is
        the server's event loop (any process may create; the leader runs the job)."""
        endpoint = body.get("endpoint")
        if not isinstance(endpoint, str) or not endpoint:
            raise InvalidParameterValue("Missing required field 'endpoint': the serving endpoint to query.")
        self._endpoints.authorized(caller, endpoint, PermissionLevel.CAN_QUERY)
        described = served_endpoints(self._dataplane, self._endpoints, self._registry, caller, loop)
        kind = described.describe(endpoint).kind
        access = TableAccess(self._db, self._root)
        job = self._input(caller, body.get("input"), access)
        job.owner, job.endpoint, job.kind = caller.name, endpoint, kind
        job.columns = self._columns(body.get("columns"), job.columns, kind)
        job.output_table = self._output_name(body.get("output_table"), job)
        job.chunk_rows = self._chunk_rows(body.get("chunk_rows"), kind)
        with self._create_lock:
            return self._place(caller, job, access)

    def _input(self, caller: Caller, spec: Any, access: TableAccess) -> TableJob:
        """A job skeleton for the input (its format, name, fingerprint, columns and row count)."""
        if not isinstance(spec, dict) or len(spec) != 1 or not ({"file_id", "table"} & set(spec)):
            raise InvalidParameterValue(
                '\'input\' must be {"file_id": <an uploaded file>} or {"table": <catalog.schema.table>}.'
            )
        job = TableJob(
            id=self.jobs.new_id(),
            owner="",
            endpoint="",
            kind="",
            input_format="",
            input_name="",
            fingerprint="",
            output_table="",
            columns=[],
            chunk_rows=0,
            created_at=now_ms(),
        )
        if "file_id" in spec:
            file_id = spec["file_id"]
            if not isinstance(file_id, str):
                raise InvalidParameterValue("'input.file_id' must name an uploaded file.")
            meta = self.files.get(caller, file_id)
            if meta.purpose != "user_data":
                raise InvalidParameterValue(f'File {file_id} has purpose {meta.purpose!r}, not "user_data".')
            fmt = file_format(meta.filename)
            path = self.files.content_path(file_id)
            table = read_file(path, fmt, meta.filename)
            job.input_file_id, job.input_format, job.input_name = file_id, fmt, meta.filename
            job.fingerprint = file_sha256(path)
            job.columns, job.total = table.column_names, table.num_rows
            return job
        name, known = access.require(caller, str(spec["table"]), TablePrivilege.SELECT)
        uri = known.on_disk.get(name)
        if uri is None:
            raise ResourceDoesNotExist(f"Table '{name}' has no rows yet.")
        version = delta_version(uri)
        job.columns, job.total = delta_shape(uri, version, name)
        job.input_format, job.input_name, job.input_version = "delta", name, version
        job.fingerprint = f"delta:{name}@{version}"
        return job

    @staticmethod
    def _columns(given: Any, available: list[str], kind: str) -> list[str]:
        if given is not None and (not isinstance(given, list) or not all(isinstance(c, str) for c in given)):
            raise InvalidParameterValue("'columns' must be a list of column names.")
        if given:
            unknown = [c for c in given if c not in available]
            if unknown:
                raise InvalidParameterValue(
                    f"The input has no column {unknown[0]!r} (its columns: {', '.join(available)})."
                )
            if len(set(given)) != len(given):
                raise InvalidParameterValue("'columns' names a column twice.")
        chosen = list(given or available)
        if kind != "custom" and len(chosen) != 1:
            raise InvalidParameterValue(
                f"A {kind} endpoint takes one text column per row: pick it with 'columns' "
                f"(--column; the input's columns: {', '.join(available)})."
            )
        return chosen

    def _output_name(self, raw: Any, job: TableJob) -> str:
        if not isinstance(raw, str) or not raw:
            raise InvalidParameterValue("Missing required field 'output_table': its catalog.schema.table.")
        name = ".".join(split_name(raw))
        if name.split(".", 1)[0] == _RESERVED_CATALOG:
            raise InvalidParameterValue(
                f"Cannot write '{name}': the catalog '{_RESERVED_CATALOG}' holds modelport's own tables."
            )
        if job.input_format == "delta" and name == job.input_name:
            raise InvalidParameterValue(f"The output table '{name}' is the input table: name another.")
        return name

    @staticmethod
    def _chunk_rows(raw: Any, kind: str) -> int:
        if raw is None:
            return CHUNK_ROWS[kind]
        if not isinstance(raw, int) or isinstance(raw, bool) or not 1 <= raw <= MAX_CHUNK_ROWS:
            raise InvalidParameterValue(f"'chunk_rows' must be an integer from 1 to {MAX_CHUNK_ROWS}.")
        return raw

    def _place(self, caller: Caller, job: TableJob, access: TableAccess) -> tuple[TableJob, str]:
        """Attach to, reopen or refuse against the jobs and the table already there; else add."""
        writers = self.jobs.writing(job.output_table)
        for other in writers:
            if other.status in DONE:
                continue
            if other.same_work(job):
                self._drop_upload(job, other)
                return other, "attached"
            raise ResourceConflict(
                f"Table '{job.output_table}' is being written by batch job {other.id} "
                f"(owner {other.owner}, input {other.input_name}): wait for it, cancel it or name another "
                "output table."
            )
        latest = next((w for w in writers if w.same_work(job)), None)
        if latest is not None and latest.status == "completed" and latest.fingerprint == job.fingerprint:
            self._drop_upload(job, latest)
            return latest, "done"
        uri = table_uri(self._root, *job.output_table.split("."))
        state = output_state(uri)
        if latest is not None and latest.status in RESUMABLE and _holds(state, latest):
            if job.input_file_id and latest.input_file_id != job.input_file_id:
                self._drop_upload(latest, job)  # the same content: keep the new upload
                latest.input_file_id = job.input_file_id
            return self.jobs.reopen(latest), "resumed"
        if state is not None:
            if state.fingerprint != job.fingerprint:
                holder = f"the answers of batch job {state.job_id} (input {state.fingerprint})"
                raise ResourceAlreadyExists(
                    f"Table '{job.output_table}' already holds "
                    + (holder if state.job_id else "other data")
                    + f", not this input's ({job.fingerprint}): name another output table."
                )
            access.require(caller, job.output_table, TablePrivilege.MODIFY)
        else:
            if job.output_table in access.known().names:
                raise ResourceAlreadyExists(f"Table '{job.output_table}' already exists.")
            # Grants left from an earlier table of this name are not this table's.
            self._db.grants.drop(OBJECT_TYPE, job.output_table)
            access.set_owner(job.output_table, caller.id)
        return self.jobs.add(job), "created"

    def _drop_upload(self, unused: TableJob, kept: TableJob) -> None:
        """Delete the upload of a request that found its work in another job (same content)."""
        if unused.input_file_id and unused.input_file_id != kept.input_file_id:
            with contextlib.suppress(ModelportError, OSError):
                path = self.files.content_path(unused.input_file_id)
                path.with_suffix(".json").unlink(missing_ok=True)
                path.unlink(missing_ok=True)

    # ---- running --------------------------------------------------------------------------------
    async def _run(self, job_id: str) -> None:
        try:
            await self._run_job(job_id)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug or a broken table: failed, not retried every tick
            log.exception("table job failed", extra={"batch_job_id": job_id})
            with contextlib.suppress(Exception):
                job = await asyncio.to_thread(self.jobs.load, job_id)
                await self._fail(job, f"The job stopped on an error: {type(exc).__name__}: {exc}")

    async def _fail(self, job: TableJob, message: str) -> None:
        job.status, job.failure, job.ended_at = "failed", message, now_ms()
        await asyncio.to_thread(self.jobs.save, job)

    def _read_input(self, job: TableJob) -> pa.Table:
        if job.input_file_id is not None:
            path = self.files.content_path(job.input_file_id)
            if not path.exists():
                raise ResourceDoesNotExist(f"The input file {job.input_file_id} was deleted.")
            return read_file(path, job.input_format, job.input_name)
        uri = table_uri(self._root, *job.input_name.split("."))
        assert job.input_version is not None
        return read_delta(uri, job.input_version, job.input_name)

    async def _run_job(self, job_id: str) -> None:
        job = await asyncio.to_thread(self.jobs.load, job_id)
        caller = await asyncio.to_thread(active_caller, self._db, job.owner)
        if caller is None:
            await self._fail(job, f"The job's owner '{job.owner}' is not an active principal.")
            return
        try:
            rows = await asyncio.to_thread(self._read_input, job)
        except ModelportError as exc:
            await self._fail(job, exc.message)
            return
        uri = table_uri(self._root, *job.output_table.split("."))
        state = await asyncio.to_thread(output_state, uri)
        if state is not None and state.fingerprint not in (None, job.fingerprint):
            await self._fail(
                job, f"The output table now holds the answers of another input ({state.fingerprint})."
            )
            return
        answered = state.row_ids if state is not None else pa.array([], pa.int64())
        errors: Counter[str] = state.errors if state is not None else Counter()
        job.total, job.done = rows.num_rows, len(answered)
        job.failed = state.failed if state is not None else 0
        job.errors = _top(errors)
        job.status, job.started_at, job.runs = "running", job.started_at or now_ms(), job.runs + 1
        await asyncio.to_thread(self.jobs.save, job)
        ids = pa.array(range(rows.num_rows), pa.int64())
        todo = pc.filter(ids, pc.invert(pc.is_in(ids, value_set=answered))).to_numpy()
        rows = rows.add_column(0, ROW_ID, ids)
        log.info("table job running", extra={"batch_job_id": job.id, "left": len(todo)})
        stop = threading.Event()
        endpoints = self._job_endpoints(job, caller, stop)
        # The chunk scored last is committed while the next one is scored.
        committing: asyncio.Future[None] | None = None

        async def commit(scored: pa.Table) -> None:
            await asyncio.to_thread(append, uri, scored, job.id, job.fingerprint)
            failed = scored.column(ERROR).drop_null()
            errors.update(str(m) for m in failed.to_pylist())
            job.done, job.failed = job.done + scored.num_rows, job.failed + len(failed)
            job.errors = _top(errors)
            await asyncio.to_thread(self.jobs.save, job)

        outcome, failure = "completed", None
        try:
            for start in range(0, len(todo), job.chunk_rows):
                if await asyncio.to_thread(self.jobs.cancel_requested, job.id):
                    outcome = "cancelled"
                    break
                chunk = rows.take(pa.array(todo[start : start + job.chunk_rows]))
                try:
                    scored = await self._score_chunk(job, endpoints, chunk, stop)
                except _Stopped:
                    cancelled = await asyncio.to_thread(self.jobs.cancel_requested, job.id)
                    outcome = "cancelled" if cancelled else "stopped"
                    break
                except ModelportError as exc:
                    outcome, failure = "failed", f"{exc.error_code}: {exc.message}"
                    break
                if committing is not None:
                    await committing
                    committing = None
                if not self._leading():
                    outcome = "stopped"
                    break
                committing = asyncio.ensure_future(commit(scored))
            if committing is not None:
                await committing
        finally:
            stop.set()  # a cancelled task (shutdown): the thread's requests end now
        TableAccess(self._db, self._root).forget()  # a new table: the next query lists it
        if outcome == "stopped":
            return  # no longer leading: the next leader goes on
        if failure is not None:
            await self._fail(job, failure)
            return
        job.status, job.ended_at = outcome, now_ms()
        await asyncio.to_thread(self.jobs.save, job)
        log.info("table job ended", extra={"batch_job_id": job.id, "status": job.status})

    async def _score_chunk(
        self, job: TableJob, endpoints: Endpoints, chunk: pa.Table, stop: threading.Event
    ) -> pa.Table:
        """The chunk with ``result`` and ``errorMessage``; stopped (:class:`_Stopped`) by a cancel
        request or a lost lead, the requests left failing at once."""
        work = asyncio.ensure_future(asyncio.to_thread(_score, job, endpoints, chunk, stop))
        while not work.done():
            await asyncio.wait([work], timeout=CHECK_SECONDS)
            if not self._leading() or await asyncio.to_thread(self.jobs.cancel_requested, job.id):
                stop.set()
        return work.result()

    def _job_endpoints(self, job: TableJob, caller: Caller, stop: threading.Event) -> Endpoints:
        assert self._loop is not None
        base = served_endpoints(self._dataplane, self._endpoints, self._registry, caller, self._loop)
        described: dict[str, EndpointInfo] = {}

        def describe(endpoint: str) -> EndpointInfo:  # once per run, not once per chunk
            if endpoint not in described:
                described[endpoint] = base.describe(endpoint)
            return described[endpoint]

        async def call(endpoint: str, body: bytes) -> bytes:
            if stop.is_set():
                raise _Stopped()
            answer = await self._dataplane.query(Exchange(caller, endpoint, body))
            return answer.body

        return Endpoints(call, describe, base.run)


def usage_context(job: TableJob) -> dict[str, str]:
    """What the usage and inference tables say a job's requests came from."""
    return {"source": "batch_job", "batch_job_id": job.id}


def _holds(state: OutputState | None, job: TableJob) -> bool:
    """Whether the output table is still this job's (or not written yet)."""
    return state is None or state.fingerprint in (None, job.fingerprint)


def _top(errors: Counter[str]) -> list[dict[str, Any]]:
    return [{"message": m, "count": n} for m, n in errors.most_common(TOP_ERRORS)]


def _score(job: TableJob, endpoints: Endpoints, chunk: pa.Table, stop: threading.Event) -> pa.Table:
    """``ai_query`` over the chunk on a DuckDB connection of its own (a worker thread)."""
    if job.kind == "custom":
        request = "named_struct(" + ", ".join(f"{_literal(c)}, {_quote(c)}" for c in job.columns) + ")"
    else:
        request = _quote(job.columns[0])
    sql = (
        f"SELECT {ROW_ID}, ai_query({_literal(job.endpoint)}, {request}, failOnError => false) AS {_ANSWER} "
        f"FROM batch_rows ORDER BY {ROW_ID}"
    )
    con = duckdb.connect()
    try:
        con.register("batch_rows", chunk.select([ROW_ID, *job.columns]))
        text, statement = prepare(con, sql, endpoints, usage_context=usage_context(job))
        try:
            answered = con.sql(text).to_arrow_table()
        except Exception as exc:
            if stop.is_set():
                raise _Stopped() from exc
            if statement.failure is not None:
                raise statement.failure from exc
            raise
    finally:
        con.close()
    if not answered.column(ROW_ID).equals(chunk.column(ROW_ID)):
        raise RuntimeError("the answers' row ids are not the chunk's")
    answers = answered.column(_ANSWER).combine_chunks()
    result, error = pc.struct_field(answers, "result"), pc.struct_field(answers, "errorMessage")
    return chunk.append_column(RESULT, result).append_column(ERROR, error)
