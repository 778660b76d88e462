"""The runner of bulk jobs: each request of a job goes through the data plane in-process, as the
job's owner, like a query to ``/serving-endpoints/chat/completions`` (and the others) would.

So the owner's ``CAN_QUERY``, the endpoint's rate limits, guardrails, usage tracking and
inference table apply to every line; each usage record carries ``usage_context.batch_id``. A
429 or 503 is tried again after a growing pause (0.5 s, 1 s, 2 s, ..., or the ``Retry-After``
the answer asked for when longer, at most a minute), then written as the line's answer. At
most ``concurrency`` requests of the process are in flight.

Only the leader (``control/leadership.py``) runs jobs; a process that stops leading stops its
jobs, and the next leader resumes them. Durable: each answer is appended to the job's output
file (2xx) or error file (the rest) as it comes, and fsync'd at least every half second; the
files are the checkpoint. A job resumed after a kill -9 reads which ``custom_id`` were answered
(a torn last line is cut off) and sends only the others, so every ``custom_id`` is answered
exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import orjson

from modelport.batch.files import URL_TASKS, FileStore, InputLine, parse_input
from modelport.batch.jobs import DONE, Job, JobStore
from modelport.control.leader_work import LeaderWork
from modelport.errors import ModelportError
from modelport.gateway.auth import active_caller
from modelport.gateway.exchange import Exchange
from modelport.gateway.pipeline import DataPlane
from modelport.spec.identity import Caller
from modelport.store import Database

__all__ = ["BatchRunner"]

log = logging.getLogger("modelport.batch")

#: Tries of a request answered 429 or 503 after the first, and the first pause between them.
RETRIES, FIRST_PAUSE = 6, 0.5
#: The longest pause, whatever ``Retry-After`` asks.
MAX_PAUSE = 60.0
_RETRIED = (429, 503)
#: How often a running job syncs its files, saves its counts and looks for a cancel request.
CHECKPOINT_SECONDS = 0.5


class _Answers:
    """An output or error file: answered ``custom_id`` read back, lines appended."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.count = 0
        self._file: IO[bytes] | None = None

    def recover(self) -> set[str]:
        """The ``custom_id`` answered so far; a torn last line (a kill mid-write) is cut off."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            data = b""
        keep = data.rfind(b"\n") + 1
        if keep != len(data):
            with open(self.path, "r+b") as f:
                f.truncate(keep)
        answered = {orjson.loads(line)["custom_id"] for line in data[:keep].splitlines() if line.strip()}
        self.count = len(answered)
        return answered

    def append(self, line: dict[str, Any]) -> None:
        if self._file is None:
            self._file = open(self.path, "ab")  # noqa: SIM115 (closed by close())
        self._file.write(orjson.dumps(line) + b"\n")
        self._file.flush()
        self.count += 1

    def sync(self) -> None:
        if self._file is not None:
            os.fsync(self._file.fileno())

    def close(self) -> None:
        if self._file is not None:
            self.sync()
            self._file.close()
            self._file = None


class BatchRunner(LeaderWork):
    """Runs the jobs of ``jobs`` while ``leading()`` says this process leads."""

    what = "bulk job"

    def __init__(
        self,
        jobs: JobStore,
        dataplane: DataPlane,
        db: Database,
        *,
        leading: Callable[[], bool],
        concurrency: int = 16,
        interval: float = 1.0,
    ) -> None:
        super().__init__(leading=leading, interval=interval, log=log)
        self.jobs = jobs
        self._dataplane = dataplane
        self._db = db
        self._concurrency = concurrency
        self._slots = asyncio.Semaphore(concurrency)
        self._ended: set[str] = set()  # jobs seen ended: not read again

    @property
    def files(self) -> FileStore:
        return self.jobs.files

    async def scan(self) -> None:
        for job in await asyncio.to_thread(self.jobs.load_except, self._ended | self.busy()):
            if job.status in DONE:
                self._ended.add(job.id)
            elif job.id not in self.busy():
                self.launch(job.id, self._run(job.id))

    # ---- one job --------------------------------------------------------------------------------
    async def _run(self, job_id: str) -> None:
        try:
            await self._run_job(job_id)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug or a broken file: failed, not retried every tick
            log.exception("bulk job failed", extra={"batch_id": job_id})
            with contextlib.suppress(Exception):
                job = await asyncio.to_thread(self.jobs.load, job_id)
                await self._fail(job, "internal_error", f"The job stopped on an error: {type(exc).__name__}.")

    async def _run_job(self, job_id: str) -> None:
        job = await asyncio.to_thread(self.jobs.load, job_id)
        caller = await asyncio.to_thread(active_caller, self._db, job.owner)
        if caller is None:
            await self._fail(
                job, "owner_inactive", f"The batch's owner '{job.owner}' is not an active principal."
            )
            return
        try:
            content = await asyncio.to_thread(self.files.content_path(job.input_file_id).read_bytes)
        except FileNotFoundError:
            await self._fail(job, "input_file_missing", f"The input file {job.input_file_id} was deleted.")
            return
        lines = parse_input(content)
        out = _Answers(self.files.content_path(job.output_id))
        err = _Answers(self.files.content_path(job.error_id))
        answered = await asyncio.to_thread(lambda: out.recover() | err.recover())
        if job.status == "validating":
            job.status, job.in_progress_at = "in_progress", int(time.time())
        todo = iter([line for line in lines if line.custom_id not in answered])
        log.info("bulk job running", extra={"batch_id": job.id, "left": len(lines) - len(answered)})
        stopping = asyncio.Event()

        async def work() -> None:
            while not stopping.is_set() and (line := next(todo, None)) is not None:
                async with self._slots:
                    record, ok = await self._answer(job, caller, line)
                (out if ok else err).append(record)

        def count() -> None:
            job.completed, job.failed = out.count, err.count

        workers = [asyncio.get_running_loop().create_task(work()) for _ in range(self._concurrency)]
        waiting = asyncio.gather(*workers)
        try:
            while not waiting.done():
                await asyncio.wait([waiting], timeout=CHECKPOINT_SECONDS)
                await asyncio.to_thread(out.sync)
                await asyncio.to_thread(err.sync)
                count()
                if await asyncio.to_thread(self.jobs.cancel_requested, job.id):
                    job.status = "cancelling"
                    stopping.set()
                elif time.time() > job.expires_at:
                    stopping.set()
                await asyncio.to_thread(self.jobs.save, job)
            waiting.result()
        finally:
            stopping.set()
            for worker in workers:
                worker.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            await asyncio.to_thread(out.close)
            await asyncio.to_thread(err.close)
        now = int(time.time())
        if job.status == "cancelling":
            job.status, job.cancelled_at = "cancelled", now
        elif time.time() > job.expires_at and out.count + err.count < len(lines):
            for line in todo:
                err.append(_line(line, None, None, error={"code": "batch_expired", "message": "expired"}))
            await asyncio.to_thread(err.close)
            job.status, job.expired_at = "expired", now
        else:
            job.status, job.finalizing_at = "finalizing", now
            await asyncio.to_thread(self.jobs.save, job)
            job.status, job.completed_at = "completed", int(time.time())
        count()
        await asyncio.to_thread(self._publish, job, out, err)
        log.info("bulk job ended", extra={"batch_id": job.id, "status": job.status})

    def _publish(self, job: Job, out: _Answers, err: _Answers) -> None:
        """Name the output and error files (those with lines), then save the ended job."""
        for answers, file_id, purpose in ((out, job.output_id, "output"), (err, job.error_id, "error")):
            if answers.count:
                self.files.register(file_id, job.owner, f"{job.id}_{purpose}.jsonl", "batch_output")
        job.has_output, job.has_errors = out.count > 0, err.count > 0
        self.jobs.save(job)

    async def _fail(self, job: Job, code: str, message: str) -> None:
        job.status, job.failed_at = "failed", int(time.time())
        job.errors = [{"code": code, "message": message, "param": None, "line": None}]
        await asyncio.to_thread(self.jobs.save, job)

    async def _answer(self, job: Job, caller: Caller, line: InputLine) -> tuple[dict[str, Any], bool]:
        """One request's output line, and whether it succeeded."""
        body = {k: v for k, v in line.body.items() if k not in ("stream", "stream_options")}
        context = body.get("usage_context")
        body["usage_context"] = {**(context if isinstance(context, dict) else {}), "batch_id": job.id}
        sent = orjson.dumps(body)
        for attempt in range(RETRIES + 1):
            ex = Exchange(caller, "", sent, task=URL_TASKS[line.url])
            try:
                answer = await self._dataplane.query(ex)
            except ModelportError as exc:
                if exc.status in _RETRIED and attempt < RETRIES:
                    pause = FIRST_PAUSE * 2**attempt
                    await asyncio.sleep(min(max(pause, exc.retry_after or 0), MAX_PAUSE))
                    continue
                return _line(line, ex.request_id, (exc.status, exc.to_body())), False
            except Exception:
                log.exception("bulk job request failed", extra={"batch_id": job.id})
                failure = {"error_code": "INTERNAL_ERROR", "message": f"Internal error ({ex.request_id})."}
                return _line(line, ex.request_id, (500, failure)), False
            if answer.stream is not None:  # never asked for; released all the same
                await answer.stream.aclose()
            return _line(line, ex.request_id, (200, answer.data)), True
        raise AssertionError("unreachable: the last try returns")


def _line(
    line: InputLine,
    request_id: str | None,
    response: tuple[int, Any] | None,
    *,
    error: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A line of an output or error file, as OpenAI writes them."""
    return {
        "id": f"batch_req_{secrets.token_hex(12)}",
        "custom_id": line.custom_id,
        "response": None
        if response is None
        else {"status_code": response[0], "request_id": request_id, "body": response[1]},
        "error": error,
    }
