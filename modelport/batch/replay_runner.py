"""The runner of replays (``control/replays.py``): on the leader, sends logged requests of an
endpoint's inference table again to a candidate served entity, at a bounded rate, then writes
the comparison report.

- Selection: the live rows (``shadow_of`` and ``replay_of`` null, the request not cut at the
  table's limit) in the replay's time range and filter, the **newest first**, up to its
  ``limit``. ``until`` was frozen at creation, so a replay started again selects the same rows.
- Sending: each row's ``request`` (as the model received it) through
  :meth:`~modelport.gateway.pipeline.DataPlane.call_entity`, as the replay's creator (it stops
  when they are removed or deactivated), with ``replay_of`` = the logged request id and
  ``replay_id`` (the inference row's ``request_metadata["replay_id"]``): no rate limits,
  guardrails, cache, usage row, shadow nor observer. One request starts every
  ``1 / rate_per_second`` seconds, at most :func:`concurrency` in flight; one answered 503 or
  429 is sent again (:data:`RETRIES` times; every answer is recorded, the newest one counts).
- Progress (``{"sent", "total", "errors"}``) is written every second; a write refused (the
  replay was cancelled) stops the sending, as does this process ceasing to lead.
- Resuming (a restart, a new leader): the rows this replay already sent are in the inference
  table (the spool is replayed into it at start); they are skipped and counted as sent.
- The end: once every answer is in the table (waited for up to a few flush intervals), the
  compare report with ``source=replay`` of this replay is stored with the state SUCCEEDED.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from modelport.control.comparisons import ComparisonService, all_of, read_rows, replay_rows, time_window
from modelport.control.leader_work import LeaderWork
from modelport.errors import ModelportError, RequestLimitExceeded, TemporarilyUnavailable
from modelport.gateway.auth import active_caller
from modelport.gateway.exchange import Exchange
from modelport.gateway.pipeline import DataPlane
from modelport.spec.identity import Caller
from modelport.store import Database
from modelport.store.replays import ACTIVE, ReplayRecord
from modelport.tables.names import split_name, table_uri

__all__ = ["MAX_CONCURRENCY", "ReplayRunner", "concurrency"]

log = logging.getLogger("modelport.batch")

#: Most replayed requests in flight at once.
MAX_CONCURRENCY = 16
#: How often progress is written (and a cancel noticed), in seconds.
PROGRESS_SECONDS = 1.0
#: A request answered 503 or 429 (the candidate starting, busy) is sent again this many times,
#: after its ``retry_after`` (at most :data:`RETRY_MAX_SECONDS`); the newest answer counts.
RETRIES = 3
RETRY_MAX_SECONDS = 5.0


def concurrency(rate: float) -> int:
    """Requests in flight for ``rate`` per second: enough for half a second's requests."""
    return max(1, min(MAX_CONCURRENCY, math.ceil(rate / 2)))


@dataclass
class _Logged:
    id: str
    request: str


class _Progress:
    """What the replay did so far (written to the store every second)."""

    def __init__(self, sent: int, total: int, errors: int) -> None:
        self.sent, self.total, self.errors = sent, total, errors

    def as_dict(self) -> dict[str, Any]:
        return {"sent": self.sent, "total": self.total, "errors": self.errors}


def select(uri: str, spec: dict[str, Any]) -> list[_Logged]:
    """The logged requests a replay sends (blocking: two scans of the inference table)."""
    flt = spec.get("filter") or {}
    truncated = pc.field("request_truncated")
    clauses = [
        pc.field("shadow_of").is_null(),
        pc.field("replay_of").is_null(),
        pc.field("request").is_valid(),
        truncated.is_null() | (truncated == pa.scalar(False)),
        time_window(spec.get("since"), spec.get("until")),
    ]
    if flt.get("served_entity_name") is not None:
        clauses.append(pc.field("served_entity_name") == flt["served_entity_name"])
    if flt.get("status_code") is not None:
        clauses.append(pc.field("status_code") == int(flt["status_code"]))
    keys = read_rows(
        uri,
        ["databricks_request_id", "timestamp_ms", "shadow_of", "replay_of", "request_truncated"],
        all_of(clauses),
    )
    if keys.num_rows == 0:
        return []
    order = pc.sort_indices(keys, [("timestamp_ms", "descending"), ("databricks_request_id", "ascending")])
    newest = keys.take(order).slice(0, int(spec["limit"]))
    ids = newest.column("databricks_request_id").combine_chunks()
    bodies = read_rows(uri, ["databricks_request_id", "request"], pc.field("databricks_request_id").isin(ids))
    by_id = dict(zip(bodies.column(0).to_pylist(), bodies.column(1).to_pylist(), strict=True))
    return [_Logged(i, by_id[i]) for i in ids.to_pylist() if by_id.get(i) is not None]


class ReplayRunner(LeaderWork):
    """Runs the QUEUED and RUNNING replays while ``leading()`` says this process leads."""

    what = "replay"

    def __init__(
        self,
        db: Database,
        dataplane: DataPlane,
        comparisons: ComparisonService,
        *,
        leading: Callable[[], bool],
        flush_seconds: float,
        interval: float = 1.0,
    ) -> None:
        """``flush_seconds``: the tables' flush interval (how long answers take to be readable)."""
        super().__init__(leading=leading, interval=interval, log=log)
        self._db = db
        self._dataplane = dataplane
        self._comparisons = comparisons
        self._flush_seconds = flush_seconds

    async def scan(self) -> None:
        for record in await asyncio.to_thread(self._db.replays.active):
            if record.id not in self.busy():
                self.launch(record.id, self._run(record.id))

    async def _run(self, replay_id: str) -> None:
        try:
            await self._run_replay(replay_id)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug or a broken table: failed, not retried every tick
            log.exception("replay failed", extra={"replay_id": replay_id})
            with contextlib.suppress(Exception):
                await asyncio.to_thread(
                    self._db.replays.finish,
                    replay_id,
                    "FAILED",
                    message=f"The replay stopped on an error: {type(exc).__name__}: {exc}",
                )

    def _uri(self, record: ReplayRecord) -> str:
        return table_uri(self._comparisons.root, *split_name(str(record.spec["table"])))

    def _prepare(self, record: ReplayRecord) -> tuple[list[_Logged], _Progress]:
        """The requests left to send and the progress so far (blocking)."""
        uri = self._uri(record)
        done = replay_rows(uri, record.candidate, record.created_ms, None, record.id)
        done_ids = {r.of for r in done}
        todo = [row for row in select(uri, record.spec) if row.id not in done_ids]
        errors = sum(1 for r in done if r.status >= 400)
        return todo, _Progress(len(done), len(done) + len(todo), errors)

    async def _run_replay(self, replay_id: str) -> None:
        record = await asyncio.to_thread(self._db.replays.get, replay_id)
        if record is None or record.state not in ACTIVE:
            return
        caller = await asyncio.to_thread(active_caller, self._db, record.creator)
        if caller is None:
            await asyncio.to_thread(
                self._db.replays.finish,
                replay_id,
                "FAILED",
                message=f"The replay's creator '{record.creator}' is not an active principal.",
            )
            return
        todo, progress = await asyncio.to_thread(self._prepare, record)
        if not await asyncio.to_thread(self._db.replays.start, replay_id, progress.as_dict()):
            return  # cancelled meanwhile
        log.info("replay running", extra={"replay_id": replay_id, "left": len(todo)})
        outcome = await self._send(record, caller, todo, progress)
        if outcome != "sent":
            return  # cancelled (the cancel wrote the state), or no longer leading (the next leader goes on)
        await self._wait_recorded(record, progress.sent)
        spec = record.spec
        report = await asyncio.to_thread(
            self._comparisons.compute,
            str(spec["endpoint"]),
            str(spec["table"]),
            record.candidate,
            "replay",
            None,
            None,
            record.id,
        )
        message = None if progress.total else "No logged request matched the replay's time range and filter."
        await asyncio.to_thread(
            self._db.replays.finish,
            replay_id,
            "SUCCEEDED",
            progress=progress.as_dict(),
            report=report,
            message=message,
        )
        log.info("replay ended", extra={"replay_id": replay_id, "sent": progress.sent})

    async def _send(
        self, record: ReplayRecord, caller: Caller, todo: list[_Logged], progress: _Progress
    ) -> str:
        """Send ``todo`` at the replay's rate: ``sent`` when all were, ``cancelled`` or ``stopped``."""
        rate = float(record.spec.get("rate_per_second") or 1.0)
        slots = asyncio.Semaphore(concurrency(rate))
        endpoint = str(record.spec["endpoint"])
        loop = asyncio.get_running_loop()
        ended = asyncio.Event()
        cancelled = False

        async def one(row: _Logged) -> None:
            try:
                for attempt in range(RETRIES + 1):
                    ex = Exchange(
                        caller,
                        endpoint,
                        row.request.encode(),
                        served=record.candidate,
                        request_id=uuid.uuid4().hex,
                        replay_of=row.id,
                        replay_id=record.id,
                    )
                    try:
                        await self._dataplane.call_entity(ex, record.candidate)
                        break
                    except (TemporarilyUnavailable, RequestLimitExceeded) as exc:
                        if attempt == RETRIES:
                            raise
                        await asyncio.sleep(min(float(exc.retry_after or 1), RETRY_MAX_SECONDS))
            except ModelportError:
                progress.errors += 1
            except Exception:
                progress.errors += 1
                log.exception("replayed request failed", extra={"replay_id": record.id})
            finally:
                progress.sent += 1
                slots.release()

        async def report_progress() -> None:
            nonlocal cancelled
            while not ended.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(ended.wait(), PROGRESS_SECONDS)
                if ended.is_set():
                    return
                saved = await asyncio.to_thread(self._db.replays.save_progress, record.id, progress.as_dict())
                if not saved:
                    cancelled = True
                    return

        reporter = loop.create_task(report_progress())
        tasks: set[asyncio.Task[None]] = set()
        outcome = "sent"
        started = loop.time()
        try:
            for i, row in enumerate(todo):
                delay = started + i / rate - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                await slots.acquire()
                if cancelled or not self._leading():
                    slots.release()
                    outcome = "cancelled" if cancelled else "stopped"
                    break
                task = loop.create_task(one(row))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            if tasks:
                await asyncio.gather(*list(tasks), return_exceptions=True)
        finally:
            ended.set()
            for task in list(tasks):
                task.cancel()
            reporter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reporter
        if outcome == "sent" and cancelled:
            outcome = "cancelled"
        return outcome

    async def _wait_recorded(self, record: ReplayRecord, expected: int) -> None:
        """Wait until the replay's answers are readable in the inference table (flushed), at most
        a few flush intervals: a report on fewer rows beats none."""
        uri = self._uri(record)
        deadline = asyncio.get_running_loop().time() + 3 * self._flush_seconds + 10
        while asyncio.get_running_loop().time() < deadline:
            rows = await asyncio.to_thread(
                replay_rows, uri, record.candidate, record.created_ms, None, record.id
            )
            if len(rows) >= expected:
                return
            await asyncio.sleep(min(0.5, self._flush_seconds / 2 or 0.1))
        log.warning("replay's answers not all in the table in time", extra={"replay_id": record.id})
