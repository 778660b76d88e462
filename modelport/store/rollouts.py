"""Rollouts and the per-process tallies of their steps (``endpoint_rollouts``, ``rollout_tallies``).

A rollout's state changes (started, advanced, paused, promoted, rolled back...) are single
conditional UPDATEs on the state it is expected to be in (and the step), so two processes
cannot both win one. A change that moves traffic also writes the endpoint's ``rollout`` column
(what the query path reads) with ``updated_ms`` bumped, in the same :func:`changing`
transaction: every process reloads the endpoint's route when the change counter moves.

Tallies are what each server process saw of a step's traffic per served entity (cumulative
counts, rewritten by their process every second); :meth:`RolloutRepository.step_tallies` sums
them over the processes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, insert, select, update
from sqlalchemy.engine import Connection, RowMapping

from modelport.store import schema
from modelport.store.changes import changing

__all__ = [
    "ACTIVE",
    "FINISHED",
    "LATENCY_BOUNDS_MS",
    "UNCHANGED",
    "RolloutRecord",
    "RolloutRepository",
    "Tally",
]

R, T, E = schema.endpoint_rollouts, schema.rollout_tallies, schema.endpoints

#: States of a rollout that is not over.
ACTIVE = ("WAITING", "RUNNING", "PAUSED")
#: States a rollout ends in.
FINISHED = ("SUCCEEDED", "ROLLED_BACK", "CANCELED", "FAILED")

#: Bounds (ms) of the latency histogram each process keeps per served entity and step.
LATENCY_BOUNDS_MS: tuple[float, ...] = (
    1, 2, 3, 5, 7.5, 10, 15, 20, 30, 50, 75, 100, 150, 200, 250, 300, 400, 500, 750,
    1000, 1500, 2000, 3000, 5000, 7500, 10000, 20000, 30000, 60000,
)  # fmt: skip

#: :meth:`RolloutRepository.transition`'s ``endpoint_rollout`` when the endpoint's column stays.
UNCHANGED: Any = object()


@dataclass(frozen=True)
class RolloutRecord:
    """One rollout: the config version it rolls out, from which version, its policy (the stored
    ``config.rollout``), candidate, incumbents (name → weight in the config it started from),
    state, the current step (an index into ``policy["steps"]``) and when it started."""

    id: str
    endpoint_id: str
    config_version: int
    from_version: int | None
    policy: dict[str, Any]
    candidate: str
    incumbents: dict[str, float]
    state: str
    step: int
    step_started_ms: int | None
    creator: str
    created_ms: int
    updated_ms: int
    finished_ms: int | None = None
    message: str | None = None
    last_evaluation: dict[str, Any] | None = None

    @property
    def steps(self) -> list[float]:
        return [float(s) for s in self.policy["steps"]]

    @property
    def percentage(self) -> float:
        return self.steps[min(self.step, len(self.steps) - 1)]


_FIELDS = [f.name for f in dataclasses.fields(RolloutRecord)]


def _record(row: RowMapping) -> RolloutRecord:
    data = {k: row[k] for k in _FIELDS}
    data["incumbents"] = {str(k): float(v) for k, v in (data["incumbents"] or {}).items()}
    return RolloutRecord(**data)


@dataclass
class Tally:
    """What was seen of one served entity in one step: requests, errors, a latency histogram
    (``counts[i]``: requests at most ``bounds_ms[i]``; the last count: above every bound), and
    the answers compared with an incumbent's and how many agreed."""

    requests: int = 0
    errors: int = 0
    bounds_ms: list[float] = field(default_factory=list)
    counts: list[int] = field(default_factory=list)
    compared: int = 0
    agreed: int = 0

    def add(self, other: Tally) -> None:
        self.requests += other.requests
        self.errors += other.errors
        self.compared += other.compared
        self.agreed += other.agreed
        if not self.bounds_ms:
            self.bounds_ms = list(other.bounds_ms)
            self.counts = [0] * len(other.counts)
        if other.bounds_ms == self.bounds_ms:
            self.counts = [a + b for a, b in zip(self.counts, other.counts, strict=True)]

    def latency_json(self) -> dict[str, Any]:
        return {"bounds_ms": list(self.bounds_ms), "counts": list(self.counts)}


class RolloutRepository:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    # ---- reads ---------------------------------------------------------------------
    def get(self, rollout_id: str) -> RolloutRecord | None:
        with self._engine.connect() as conn:
            row = conn.execute(select(R).where(R.c.id == rollout_id)).mappings().first()
        return None if row is None else _record(row)

    def current(self, endpoint_id: str) -> RolloutRecord | None:
        """The endpoint's newest rollout (whatever its state), None when it never had one."""
        rows = self.list(endpoint_id, limit=1)
        return rows[0] if rows else None

    def list(self, endpoint_id: str, *, limit: int = 100) -> list[RolloutRecord]:
        """The endpoint's rollouts, newest first."""
        query = (
            select(R)
            .where(R.c.endpoint_id == endpoint_id)
            .order_by(R.c.created_ms.desc(), R.c.config_version.desc())
            .limit(limit)
        )
        with self._engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        return [_record(r) for r in rows]

    def active(self) -> list[RolloutRecord]:
        """Every rollout not over (WAITING, RUNNING, PAUSED), of every endpoint."""
        with self._engine.connect() as conn:
            rows = conn.execute(select(R).where(R.c.state.in_(ACTIVE))).mappings().all()
        return [_record(r) for r in rows]

    # ---- writes --------------------------------------------------------------------
    def create(self, rollout: RolloutRecord, endpoint_rollout: dict[str, Any]) -> None:
        """Insert ``rollout`` and set the endpoint's ``rollout`` column, in one transaction."""
        with changing(self._engine) as conn:
            conn.execute(insert(R).values(**dataclasses.asdict(rollout)))
            self._write_endpoint(
                conn, rollout.endpoint_id, rollout.id, endpoint_rollout, rollout.created_ms, force=True
            )

    def transition(
        self,
        rollout_id: str,
        from_states: Iterable[str],
        now_ms: int,
        *,
        at_step: int | None = None,
        endpoint_rollout: Any = UNCHANGED,
        resume: bool = False,
        **values: Any,
    ) -> RolloutRecord | None:
        """Change the rollout if it is in one of ``from_states`` (and at ``at_step``, when given):
        one conditional UPDATE, so of two processes trying, one wins. ``values``: the columns to
        set (``updated_ms`` is set to ``now_ms``); ``resume``: move ``step_started_ms`` on by the
        time spent paused (since ``updated_ms``). ``endpoint_rollout``: the endpoint's new
        ``rollout`` column (None clears it), written in the same transaction when the column
        still belongs to this rollout (or is empty). Returns the rollout as changed, None when
        it was not in the expected state."""
        where = [R.c.id == rollout_id, R.c.state.in_(list(from_states))]
        if at_step is not None:
            where.append(R.c.step == at_step)
        sets: dict[str, Any] = {**values, "updated_ms": now_ms}
        if resume:
            sets["step_started_ms"] = R.c.step_started_ms + (now_ms - R.c.updated_ms)
        with changing(self._engine) as conn:
            if not conn.execute(update(R).where(*where).values(**sets)).rowcount:
                return None
            row = conn.execute(select(R).where(R.c.id == rollout_id)).mappings().one()
            record = _record(row)
            if endpoint_rollout is not UNCHANGED:
                self._write_endpoint(conn, record.endpoint_id, rollout_id, endpoint_rollout, now_ms)
        return record

    def save_evaluation(self, rollout_id: str, evaluation: dict[str, Any]) -> None:
        """The rollout's last evaluation (read by the API only: no change to count)."""
        with self._engine.begin() as conn:
            conn.execute(update(R).where(R.c.id == rollout_id).values(last_evaluation=evaluation))

    def set_message(self, rollout_id: str, message: str) -> None:
        with self._engine.begin() as conn:
            conn.execute(update(R).where(R.c.id == rollout_id).values(message=message))

    def _write_endpoint(
        self,
        conn: Connection,
        endpoint_id: str,
        rollout_id: str,
        value: dict[str, Any] | None,
        now_ms: int,
        *,
        force: bool = False,
    ) -> None:
        """Set the endpoint's ``rollout`` column (``updated_ms`` bumped: every process reloads the
        route) unless it holds another rollout's (a newer one owns it then), or ``force``."""
        held = conn.execute(select(E.c.rollout).where(E.c.id == endpoint_id)).scalar()
        if not force and held is not None and held.get("id") not in (None, rollout_id):
            return
        updated = conn.execute(select(E.c.updated_ms).where(E.c.id == endpoint_id)).scalar() or 0
        conn.execute(
            update(E)
            .where(E.c.id == endpoint_id)
            .values(rollout=value, updated_ms=max(now_ms, int(updated) + 1))
        )

    # ---- tallies -------------------------------------------------------------------
    def save_tallies(self, process: str, tallies: dict[tuple[str, int, str], Tally], now_ms: int) -> None:
        """Write this process's cumulative tallies, keyed (rollout id, step, entity): each row is
        updated, or inserted when new (one process writes its own rows only). Tallies of a rollout
        deleted meanwhile are dropped with it."""
        if not tallies:
            return
        with self._engine.begin() as conn:
            known = {r[0] for r in conn.execute(select(R.c.id).where(R.c.id.in_({k[0] for k in tallies})))}
            for (rollout_id, step, entity), tally in tallies.items():
                if rollout_id not in known:
                    continue
                values = {
                    "requests": tally.requests,
                    "errors": tally.errors,
                    "latency": tally.latency_json(),
                    "compared": tally.compared,
                    "agreed": tally.agreed,
                    "updated_ms": now_ms,
                }
                key = (
                    T.c.rollout_id == rollout_id,
                    T.c.step == step,
                    T.c.process == process,
                    T.c.entity == entity,
                )
                if not conn.execute(update(T).where(*key).values(**values)).rowcount:
                    conn.execute(
                        insert(T).values(
                            rollout_id=rollout_id, step=step, process=process, entity=entity, **values
                        )
                    )

    def step_tallies(self, rollout_id: str, step: int) -> dict[str, Tally]:
        """The step's tallies summed over every process, per served entity."""
        with self._engine.connect() as conn:
            rows = (
                conn.execute(select(T).where(T.c.rollout_id == rollout_id, T.c.step == step)).mappings().all()
            )
        out: dict[str, Tally] = {}
        for row in rows:
            latency = row["latency"] or {}
            one = Tally(
                requests=int(row["requests"]),
                errors=int(row["errors"]),
                bounds_ms=[float(b) for b in latency.get("bounds_ms", [])],
                counts=[int(c) for c in latency.get("counts", [])],
                compared=int(row["compared"]),
                agreed=int(row["agreed"]),
            )
            out.setdefault(str(row["entity"]), Tally()).add(one)
        return out
