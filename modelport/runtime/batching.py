"""Adaptive batching: the queue of parsed requests and the loop that predicts them.

A replica predicts one thing at a time, in one predict thread, so that its event loop keeps
reading frames. Requests that arrive while the model is busy queue up here; the next turn of
:meth:`Batcher.run` takes the oldest one and, when batching is on for it, every other queued
request whose frame can be concatenated with it (same ``ModelInput.key``) up to
``max_batch_size`` rows. Taking what is already queued costs no time; waiting does. The
loop waits for the batch to fill (up to ``max_batch_wait`` seconds) only while it is not
full, more requests were already waiting behind the oldest one when the turn began (a
request that finds the queue empty is predicted at once), and no queued request with the
batch's key was left out for lack of room. Such a request starts the next batch, so the
queue already holds more rows of this key than the batch can take: waiting would leave the
model idle and delay both batches. (With 40-row requests and batches of 64 rows, every turn
used to wait out the timer, and throughput fell to less than half of batching off.)
Requests of other keys queued behind do not stop the wait, since newcomers of the batch's
key may still join it (stopping for them cost about 15% of throughput with a mix of 1-row
and 100-row requests: the 1-row batches came out smaller).

A batch is predicted with one ``predict`` call and the output is split back by row counts
(:func:`split_output`); if anything about that goes wrong, each request of the batch is
predicted alone, so a bad request only fails itself. A model that looks its features up also
says, per request, which keys found no row and (when asked) what its raw model received
(``BatchModel.lookups``, split by the same row counts): such a request's outcome is the body
with its :class:`~modelport.entities.custom.Lookups`.

Nothing here knows about sockets: answers go to the ``reply`` callback given with each
request, on the event loop's thread.
"""

from __future__ import annotations

import asyncio
import traceback
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np
import pandas as pd

from modelport.entities.custom import Lookups, ModelInput
from modelport.errors import ModelportError, TemporarilyUnavailable

__all__ = ["BatchModel", "Batcher", "BatchingMode", "Outcome", "Reply", "Stats", "split_output"]

BatchingMode = Literal["auto", "on", "off"]
#: The answer to one request: the response body (with what the model looked up for it, for a
#: model that looks features up), or the error to send instead.
Outcome = bytes | tuple[bytes, Lookups] | ModelportError
Reply = Callable[[Outcome], None]


class BatchModel(Protocol):
    """What the batcher needs from a model (``entities.custom.CustomModel`` is one)."""

    batch_capable: bool

    def predict(self, inp: ModelInput) -> bytes: ...

    def combine(self, inputs: Sequence[ModelInput]) -> Any: ...

    def run(self, data: Any, params: dict[str, Any] | None = None) -> Any: ...

    def render(self, output: Any, wrap: bool = True) -> bytes: ...

    def lookups(self, inputs: Sequence[ModelInput]) -> list[Lookups] | None: ...


@dataclass(slots=True)
class Stats:
    """Counters sent in PONG. ``batches`` counts predict calls that served several requests."""

    batches: int = 0
    batched_rows: int = 0
    max_batch_seen: int = 0

    def as_dict(self) -> dict[str, int]:
        return {
            "batches": self.batches,
            "batched_rows": self.batched_rows,
            "max_batch_seen": self.max_batch_seen,
        }


@dataclass(slots=True, eq=False)
class _Item:
    inp: ModelInput
    reply: Reply
    key: Hashable | None  # None: predicted alone


def split_output(output: Any, counts: Sequence[int]) -> list[Any] | None:
    """Split a batch's output into one part per request by row ``counts``, or ``None``.

    Numpy arrays, lists, Series and DataFrames are split by position along their first axis;
    anything else, or an output whose length is not the total row count, gives ``None``.
    """
    if isinstance(output, (pd.DataFrame, pd.Series)):
        rows: Any = output.iloc
    elif (isinstance(output, np.ndarray) and output.ndim >= 1) or isinstance(output, list):
        rows = output
    else:
        return None
    if len(output) != sum(counts):
        return None
    parts = []
    start = 0
    for n in counts:
        parts.append(rows[start : start + n])
        start += n
    return parts


class Batcher:
    """The request queue and the predict loop of one replica.

    Guarantees: every request submitted before :meth:`run` is cancelled gets exactly one call
    of its ``reply`` (``TemporarilyUnavailable`` when cancelled before its turn); the oldest
    queued request is always part of the next predict call (first come, first served);
    requests that cannot be batched (``key`` ``None``, or batching off) are predicted alone,
    in arrival order; only one predict runs at a time; a turn waits at most ``max_batch_wait``
    before predicting. ``submit`` and the replies run on the event loop; the model runs in
    one dedicated thread.
    """

    def __init__(
        self,
        model: BatchModel,
        mode: BatchingMode = "auto",
        max_batch_size: int = 64,
        max_batch_wait: float = 0.002,
        stats: Stats | None = None,
    ) -> None:
        self.model = model
        self.enabled = mode == "on" or (mode == "auto" and model.batch_capable)
        self.max_batch_size = max(1, max_batch_size)
        self.max_batch_wait = max(0.0, max_batch_wait)
        self.stats = stats if stats is not None else Stats()
        self._queue: deque[_Item] = deque()
        self._wakeup: asyncio.Future[None] | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="predict")

    def submit(self, inp: ModelInput, reply: Reply) -> None:
        """Queue ``inp``; ``reply`` is called once with its outcome, on the event loop."""
        key = inp.key if self.enabled and 0 < inp.rows <= self.max_batch_size else None
        self._queue.append(_Item(inp, reply, key))
        waiter = self._wakeup
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def __len__(self) -> int:
        return len(self._queue)

    async def run(self) -> None:
        """Predict queued requests until cancelled."""
        loop = asyncio.get_running_loop()
        try:
            while True:
                if not self._queue:
                    await self._wait(loop, None)
                    continue
                await self._turn(loop)
        except asyncio.CancelledError:
            # Stopping: what is still queued is answered, not dropped.
            rest = list(self._queue)
            self._queue.clear()
            self._answer(rest, [_stopping()] * len(rest))
            raise

    async def _turn(self, loop: asyncio.AbstractEventLoop) -> None:
        """Take the oldest request (and its batch), predict, answer."""
        others_waiting = len(self._queue) > 1
        batch = self._take()
        try:
            if batch[0].key is not None and others_waiting and self.max_batch_wait > 0:
                await self._fill(loop, batch)
            outcomes = await loop.run_in_executor(self._executor, self._predict, batch)
        except asyncio.CancelledError:
            self._answer(batch, [_stopping()] * len(batch))
            raise
        except Exception as exc:  # a bug here: still answer every request
            outcomes = [_internal(exc)] * len(batch)
        self._answer(batch, outcomes)

    def close(self) -> None:
        """Release the predict thread (without waiting for a predict that is running)."""
        self._executor.shutdown(wait=False, cancel_futures=True)

    # --- taking from the queue -----------------------------------------------------------------

    def _take(self) -> list[_Item]:
        head = self._queue.popleft()
        batch = [head]
        if head.key is not None and self._queue:
            self._take_more(batch)
        return batch

    async def _fill(self, loop: asyncio.AbstractEventLoop, batch: list[_Item]) -> None:
        """Wait up to ``max_batch_wait`` for requests with the batch's key, until it is full
        or a queued request with its key does not fit (that one starts the next batch)."""
        deadline = loop.time() + self.max_batch_wait
        key = batch[0].key
        while self._rows(batch) < self.max_batch_size and not self._left_behind(key):
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            await self._wait(loop, remaining)
            self._take_more(batch)

    def _take_more(self, batch: list[_Item]) -> None:
        """Move queued items with the batch's key into it, in order, while they fit."""
        key = batch[0].key
        room = self.max_batch_size - self._rows(batch)
        if key is None or room <= 0 or not self._queue:
            return
        kept: deque[_Item] = deque()
        queue = self._queue
        while queue:
            item = queue.popleft()
            if item.key == key and item.inp.rows <= room:
                batch.append(item)
                room -= item.inp.rows
                if room <= 0:
                    break
            else:
                kept.append(item)
        kept.extend(queue)
        self._queue = kept

    def _left_behind(self, key: Hashable | None) -> bool:
        """Whether a request with ``key`` is queued (after ``_take_more``: one that did not fit)."""
        return any(item.key == key for item in self._queue)

    @staticmethod
    def _rows(batch: list[_Item]) -> int:
        return sum(item.inp.rows for item in batch)

    async def _wait(self, loop: asyncio.AbstractEventLoop, timeout: float | None) -> None:
        waiter: asyncio.Future[None] = loop.create_future()
        self._wakeup = waiter
        handle = loop.call_later(timeout, _wake, waiter) if timeout is not None else None
        try:
            await waiter
        finally:
            self._wakeup = None
            if handle is not None:
                handle.cancel()

    # --- predicting (in the predict thread) ------------------------------------------------------

    def _predict(self, batch: list[_Item]) -> list[Outcome]:
        if len(batch) > 1:
            outcomes = self._predict_together(batch)
            if outcomes is not None:
                return outcomes
        stats = self.stats
        stats.max_batch_seen = max(stats.max_batch_seen, 1)
        return [self._predict_alone(item.inp) for item in batch]

    def _predict_together(self, batch: list[_Item]) -> list[Outcome] | None:
        inputs = [item.inp for item in batch]
        counts = [inp.rows for inp in inputs]
        try:
            output = self.model.run(self.model.combine(inputs))
            parts = split_output(output, counts)
            if parts is None:
                return None
            found = self.model.lookups(inputs)
            bodies = [self.model.render(part) for part in parts]
            outcomes: list[Outcome] = list(bodies) if found is None else list(zip(bodies, found, strict=True))
        except Exception:
            # A bad request in the batch, or a model that dislikes the batch: predict each alone.
            return None
        stats = self.stats
        stats.batches += 1
        stats.batched_rows += sum(counts)
        stats.max_batch_seen = max(stats.max_batch_seen, len(batch))
        return outcomes

    def _predict_alone(self, inp: ModelInput) -> Outcome:
        try:
            body = self.model.predict(inp)
            found = self.model.lookups([inp])
            return body if found is None else (body, found[0])
        except ModelportError as exc:
            return exc
        except Exception as exc:  # a bug of ours, not the model's: the model's are translated
            return _internal(exc)

    def _answer(self, batch: list[_Item], outcomes: Sequence[Outcome]) -> None:
        for item, outcome in zip(batch, outcomes, strict=True):
            try:
                item.reply(outcome)
            except Exception:
                traceback.print_exc()


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _stopping() -> ModelportError:
    return TemporarilyUnavailable("The replica is stopping; retry the request.", retry_after=1)


def _internal(exc: BaseException) -> ModelportError:
    traceback.print_exception(exc)
    return ModelportError(f"{type(exc).__name__}: {exc}")
