"""Canary rollouts: a config update that moves traffic to its candidate step by step.

:func:`plan_rollout` reads an update's ``rollout`` block against the config that serves now and
says which entity is the candidate, which are the incumbents and what the first step's traffic
is (pure; the update is refused with a 400 naming ``config.rollout...`` when it cannot roll out).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import secrets
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from modelport.clock import now_ms
from modelport.control.permissions import AccessControl
from modelport.errors import (
    InvalidParameterValue,
    InvalidState,
    ModelportError,
    ResourceConflict,
    ResourceDoesNotExist,
)
from modelport.metrics import histogram_quantile
from modelport.monitoring.webhooks import Post, deliver
from modelport.spec.identity import Caller
from modelport.spec.permissions import PermissionLevel
from modelport.store import Database
from modelport.store.records import EndpointRecord
from modelport.store.rollouts import ACTIVE, FINISHED, LATENCY_BOUNDS_MS, RolloutRecord, Tally

if TYPE_CHECKING:
    from modelport.control.endpoints import EndpointService

__all__ = [
    "ADVANCE",
    "HOLD",
    "LATENCY_BOUNDS_MS",
    "PROMOTE",
    "ROLL_BACK",
    "Decision",
    "RolloutService",
    "decide",
    "measure",
    "plan_rollout",
    "quantile",
    "render",
    "step_traffic",
]

log = logging.getLogger("modelport.rollouts")

_PATH = "config.rollout"


def _bad(path: str, problem: str) -> InvalidParameterValue:
    return InvalidParameterValue(f"Invalid value for '{path}': {problem}")


def _live(body: dict[str, Any]) -> dict[str, float]:
    """The entities of a config body that take traffic, with their percentage."""
    return {
        str(r["served_entity_name"]): float(r["traffic_percentage"])
        for r in body["traffic_config"]["routes"]
        if float(r["traffic_percentage"]) > 0
    }


def _identity(entity: dict[str, Any]) -> tuple[Any, ...]:
    """What an entity serves (a changed one is not the incumbent it replaces)."""
    external = entity.get("external_model")
    if external is not None:
        return ("external", external.get("provider"), external.get("name"), external.get("task"))
    return ("model", entity.get("entity_name"), str(entity.get("entity_version")))


def step_traffic(candidate: str, incumbents: dict[str, float], percentage: float) -> list[dict[str, Any]]:
    """The routes of a step: the candidate ``percentage`` %, the incumbents the rest in proportion
    to their weights (percentages rounded to 1/100, the last incumbent takes what rounding left)."""
    rest = round(100.0 - percentage, 2)
    total = sum(incumbents.values())
    routes = [{"served_entity_name": candidate, "traffic_percentage": round(percentage, 2)}]
    left = rest
    names = list(incumbents)
    for i, name in enumerate(names):
        share = left if i == len(names) - 1 else round(rest * incumbents[name] / total, 2)
        left = round(left - share, 2)
        routes.append({"served_entity_name": name, "traffic_percentage": share})
    return routes


def plan_rollout(serving: dict[str, Any] | None, body: dict[str, Any]) -> dict[str, Any] | None:
    """The plan of the update ``body`` (a normalized config body) from the ``serving`` config body.

    Returns None when ``body`` has no ``rollout`` block, else ``{"candidate", "incumbents":
    {name: weight in the serving config}, "steps", "first_traffic": [routes]}``. Raises
    InvalidParameterValue (400) when there is no serving config, no or several candidates, or no
    incumbent (an entity of the new config, other than the candidate, serving the same model as
    now and taking traffic now)."""
    policy = body.get("rollout")
    if not policy:
        return None
    if serving is None:
        raise _bad(
            _PATH,
            "a rollout moves traffic from the config that serves now, and this endpoint serves no "
            "config yet; create it without 'rollout', then update it with one.",
        )
    new_live = _live(body)
    old_live = _live(serving)
    old_entities = {str(e["name"]): _identity(e) for e in serving["served_entities"]}
    new_entities = {str(e["name"]): e for e in body["served_entities"]}
    candidate = policy.get("candidate")
    if candidate is None:
        same = {n for n, e in new_entities.items() if _identity(e) == old_entities.get(n)}
        raised = sorted(n for n, p in new_live.items() if p > (old_live.get(n, 0.0) if n in same else 0.0))
        if len(raised) != 1:
            found = ", ".join(raised) if raised else "none"
            raise InvalidParameterValue(
                f"Missing required field '{_PATH}.candidate': name the served entity the rollout "
                f"moves traffic to (entities whose traffic this update raises: {found})."
            )
        candidate = raised[0]
    if new_live.get(candidate, 0.0) <= 0:
        raise _bad(
            f"{_PATH}.candidate",
            f"'{candidate}' takes no traffic in config.traffic_config; the last step applies that "
            "traffic, so the candidate must take some.",
        )
    incumbents = {
        name: weight
        for name, weight in old_live.items()
        if name != candidate
        and name in new_entities
        and _identity(new_entities[name]) == old_entities.get(name)
    }
    if not incumbents:
        raise _bad(
            _PATH,
            f"no incumbent: a rollout moves traffic from entities that serve now and stay unchanged in "
            f"the new config (serving now: {', '.join(sorted(old_live)) or 'none'}); keep one of them "
            "in config.served_entities.",
        )
    steps = [float(s) for s in policy["steps"]]
    if len(steps) < 2:
        raise _bad(f"{_PATH}.steps", "give at least one step below 100 (the last step, 100, promotes).")
    return {
        "candidate": candidate,
        "incumbents": incumbents,
        "steps": steps,
        "first_traffic": step_traffic(candidate, incumbents, steps[0]),
    }


# ---- the decision --------------------------------------------------------------------------------

#: Failures beyond what the whole minimum sample could hold under a limit before the candidate
#: reaches ``min_requests_per_step`` requests: a breach then, without waiting for the sample.
FAST_MARGIN = 3

HOLD, ADVANCE, PROMOTE, ROLL_BACK = "HOLD", "ADVANCE", "PROMOTE", "ROLL_BACK"


def quantile(bounds_ms: list[float], counts: list[int], q: float) -> float | None:
    """The ``q`` quantile (0..1) of a latency histogram, interpolated inside its bucket; None
    when empty. The bucket above every bound reports the last bound."""
    value = histogram_quantile(bounds_ms, counts, q)
    return None if value is None else round(value, 3)


def above(tally: Tally, limit_ms: float) -> int:
    """Requests of ``tally`` certainly slower than ``limit_ms`` (their bucket starts at or above it)."""
    out = 0
    for i, count in enumerate(tally.counts):
        lower = 0.0 if i == 0 else float(tally.bounds_ms[i - 1])
        if lower >= limit_ms:
            out += count
    return out


def measure(tally: Tally) -> dict[str, Any]:
    """What an evaluation reports of one side (the candidate, or the incumbents together)."""
    return {
        "requests": tally.requests,
        "errors": tally.errors,
        "error_rate": round(tally.errors / tally.requests, 6) if tally.requests else None,
        "p50_ms": quantile(tally.bounds_ms, tally.counts, 0.5),
        "p99_ms": quantile(tally.bounds_ms, tally.counts, 0.99),
        "compared": tally.compared,
        "agreement": round(tally.agreed / tally.compared, 6) if tally.compared else None,
    }


def minus(now: Tally, before: Tally | None) -> Tally:
    """What ``now`` (cumulative) counted since ``before``."""
    if before is None or before.requests > now.requests:
        return now
    counts = list(now.counts)
    if before.bounds_ms == now.bounds_ms and len(before.counts) == len(counts):
        counts = [max(0, a - b) for a, b in zip(counts, before.counts, strict=True)]
    return Tally(
        requests=now.requests - before.requests,
        errors=max(0, now.errors - before.errors),
        bounds_ms=list(now.bounds_ms),
        counts=counts,
        compared=max(0, now.compared - before.compared),
        agreed=max(0, now.agreed - before.agreed),
    )


@dataclass(frozen=True)
class Decision:
    """An evaluation's verdict, why, the limit breached (ROLL_BACK) and what was measured."""

    verdict: str
    reason: str
    breached: str | None = None
    measured: dict[str, Any] = field(default_factory=dict)


def _breach(policy: dict[str, Any], tally: Tally, minimum: int, over: str) -> tuple[str, str] | None:
    """The first limit ``tally`` breaches (and the sentence that says how), else None.

    A rate is judged once the sample holds ``minimum`` requests; before that, only when the
    failures alone exceed what the whole minimum sample could hold under the limit, plus
    :data:`FAST_MARGIN` (a breach is then certain at the minimum sample, and waiting for it
    would only fail more live requests; the margin keeps two or three transient failures, a
    cold replica's, from rolling back a small sample)."""
    n = tally.requests
    limit = policy.get("max_error_rate")
    if limit is not None and n:
        rate = tally.errors / n
        if (n >= minimum and rate > limit) or (n < minimum and tally.errors > limit * minimum + FAST_MARGIN):
            return "max_error_rate", (
                f"error rate {rate:.1%} ({tally.errors} of {n} requests{over}) is above "
                f"max_error_rate {limit:g}"
            )
    limit = policy.get("max_p99_ms")
    if limit is not None and n:
        p99 = quantile(tally.bounds_ms, tally.counts, 0.99)
        slow = above(tally, float(limit))
        if (n >= minimum and p99 is not None and p99 > limit) or (
            n < minimum and slow > 0.01 * minimum + FAST_MARGIN
        ):
            shown = f"{p99:g} ms" if p99 is not None else "unknown"
            return "max_p99_ms", (
                f"p99 latency {shown} ({slow} of {n} requests{over} slower than {limit:g} ms) is above "
                f"max_p99_ms {limit:g}"
            )
    limit = policy.get("min_agreement")
    if limit is not None and tally.compared:
        c = tally.compared
        rate = tally.agreed / c
        if (c >= minimum and rate < limit) or (
            c < minimum and c - tally.agreed > (1 - limit) * minimum + FAST_MARGIN
        ):
            return "min_agreement", (
                f"agreement with the incumbents {rate:.1%} ({tally.agreed} of {c} compared{over}) is below "
                f"min_agreement {limit:g}"
            )
    return None


def decide(
    policy: dict[str, Any],
    step: int,
    elapsed_s: float,
    candidate: Tally,
    incumbent: Tally,
    recent: Tally | None = None,
) -> Decision:
    """The verdict on a running step (pure).

    ``candidate`` and ``incumbent``: the step's tallies so far (the incumbents summed);
    ``recent``: the candidate's since the previous evaluation, judged too, so that a candidate
    that starts failing late in a long step is not hidden by its healthy start. ROLL_BACK at the
    first breached limit (see :func:`_breach`); else, once ``step_seconds`` elapsed: ADVANCE
    (PROMOTE when the next step is the last, 100 %) when the candidate got
    ``min_requests_per_step`` requests in the step, HOLD (saying so) when it did not."""
    steps = [float(s) for s in policy["steps"]]
    minimum = max(1, int(policy.get("min_requests_per_step") or 0))
    measured = {"candidate": measure(candidate), "incumbent": measure(incumbent)}
    found = _breach(policy, candidate, minimum, " in this step")
    if found is None and recent is not None and recent.requests < candidate.requests:
        found = _breach(policy, recent, minimum, " since the last evaluation")
        if found is not None:
            measured["recent"] = measure(recent)
    if found is not None:
        limit, sentence = found
        return Decision(ROLL_BACK, sentence, limit, measured)
    percentage = steps[step]
    wanted = int(policy.get("min_requests_per_step") or 0)
    total = float(policy["step_seconds"])
    if elapsed_s < total:
        return Decision(
            HOLD,
            f"step {step + 1} of {len(steps)} ({percentage:g}%): {elapsed_s:.0f} of {total:g} s, "
            f"{candidate.requests} candidate requests, within the limits",
            None,
            measured,
        )
    if candidate.requests < wanted:
        return Decision(
            HOLD,
            f"step {step + 1} ({percentage:g}%) elapsed with {candidate.requests} of the "
            f"{wanted} candidate requests min_requests_per_step asks for: holding until they come",
            None,
            measured,
        )
    following = steps[step + 1] if step + 1 < len(steps) else 100.0
    if step + 1 >= len(steps) - 1:
        return Decision(
            PROMOTE,
            f"step {step + 1} ({percentage:g}%) passed with {candidate.requests} candidate requests: "
            "promoted to the config's own traffic",
            None,
            measured,
        )
    return Decision(
        ADVANCE,
        f"step {step + 1} ({percentage:g}%) passed with {candidate.requests} candidate requests: "
        f"moving to {following:g}%",
        None,
        measured,
    )


# ---- the service ---------------------------------------------------------------------------------

#: Who the event log names for what the rollout controller decides by itself.
CONTROLLER = "modelport"


def render(rollout: RolloutRecord) -> dict[str, Any]:
    """A rollout as the API returns it."""
    return {
        "id": rollout.id,
        "config_version": rollout.config_version,
        "from_version": rollout.from_version,
        "state": rollout.state,
        "step": rollout.step,
        "steps": rollout.steps,
        "percentage": rollout.percentage,
        "candidate": rollout.candidate,
        "incumbents": sorted(rollout.incumbents),
        "policy": rollout.policy,
        "step_started_timestamp": rollout.step_started_ms,
        "created_timestamp": rollout.created_ms,
        "finished_timestamp": rollout.finished_ms,
        "creator": rollout.creator,
        "message": rollout.message,
        "last_evaluation": rollout.last_evaluation,
    }


def _column(rollout: RolloutRecord, state: str, traffic: list[dict[str, Any]] | None) -> dict[str, Any]:
    """The endpoint's ``rollout`` column for ``rollout`` (what the query path reads)."""
    return {
        "id": rollout.id,
        "config_version": rollout.config_version,
        "state": state,
        "step": rollout.step,
        "candidate": rollout.candidate,
        "incumbents": sorted(rollout.incumbents),
        "compare": rollout.policy.get("min_agreement") is not None,
        "traffic": traffic,
    }


class RolloutService:
    """Rollouts of config updates: begun by ``EndpointService.update_config``, read and steered
    (pause, resume, cancel) through the API, driven by the leader (``control/rollout_runner.py``
    calls :meth:`tick`). Blocking: call from a thread.

    ``endpoints`` (set by wiring) restores the previous config on a rollback and cancels an
    update still deploying; ``wake`` tells the runner that a rollout was begun or steered."""

    def __init__(
        self,
        db: Database,
        access: AccessControl,
        *,
        on_change: Callable[[str], None] = lambda endpoint_id: None,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self._db = db
        self._access = access
        self._on_change = on_change
        self._clock = clock
        self.endpoints: EndpointService | None = None
        self.wake: Callable[[], None] = lambda: None
        #: The candidate's tallies at each rollout's previous evaluation (this process's memory).
        self._previous: dict[str, tuple[int, Tally]] = {}
        self._hooks = ThreadPoolExecutor(max_workers=2, thread_name_prefix="rollout-webhook")

    # ---- begun by a config update ---------------------------------------------------------------
    def check(self, endpoint: EndpointRecord) -> None:
        """409 while a rollout of ``endpoint`` runs or is paused: a new one must wait for it (the
        control plane asks before it records the update, and :meth:`begin` again)."""
        running = self._db.rollouts.current(endpoint.id)
        if running is not None and running.state in ("RUNNING", "PAUSED"):
            raise ResourceConflict(
                f"Endpoint '{endpoint.name}' has a rollout in progress ({running.state}, config version "
                f"{running.config_version}); let it finish, or cancel it (POST "
                f"/api/2.0/serving-endpoints/{endpoint.name}/rollouts/current/cancel) first."
            )

    def begin(
        self,
        caller: Caller,
        endpoint: EndpointRecord,
        version: int,
        plan: dict[str, Any],
        from_version: int | None,
    ) -> dict[str, Any]:
        """Record the rollout of config ``version`` (WAITING until the version serves) and set the
        endpoint's ``rollout`` column to the first step's traffic, so that the version applies the
        step's split from the moment it serves. Call before the update is submitted. 409 while
        another rollout of the endpoint runs or is paused."""
        self.check(endpoint)
        config = self._db.endpoints.get_config(endpoint.id, version)
        if config is None or not config.body.get("rollout"):
            raise InvalidParameterValue(f"Config version {version} of '{endpoint.name}' has no 'rollout'.")
        now = self._clock()
        rollout = RolloutRecord(
            id=secrets.token_hex(16),
            endpoint_id=endpoint.id,
            config_version=version,
            from_version=from_version,
            policy=dict(config.body["rollout"]),
            candidate=str(plan["candidate"]),
            incumbents={str(k): float(v) for k, v in plan["incumbents"].items()},
            state="WAITING",
            step=0,
            step_started_ms=None,
            creator=caller.name,
            created_ms=now,
            updated_ms=now,
            message=f"waiting for config version {version} to serve",
        )
        self._db.rollouts.create(rollout, _column(rollout, "WAITING", plan["first_traffic"]))
        self._on_change(endpoint.id)
        self.wake()
        return render(rollout)

    # ---- read ------------------------------------------------------------------------------------
    def _endpoint(self, caller: Caller, name: str, needed: PermissionLevel) -> EndpointRecord:
        endpoint = self._db.endpoints.get(name)
        if endpoint is None:
            raise ResourceDoesNotExist(f"Endpoint with name '{name}' does not exist.")
        self._access.require(caller, endpoint, needed)
        return endpoint

    def list(self, caller: Caller, name: str) -> list[dict[str, Any]]:
        endpoint = self._endpoint(caller, name, PermissionLevel.CAN_VIEW)
        return [render(r) for r in self._db.rollouts.list(endpoint.id)]

    def _current(self, endpoint: EndpointRecord) -> RolloutRecord:
        rollout = self._db.rollouts.current(endpoint.id)
        if rollout is None:
            raise ResourceDoesNotExist(f"Endpoint '{endpoint.name}' has no rollout.")
        return rollout

    def current(self, caller: Caller, name: str) -> dict[str, Any]:
        return render(self._current(self._endpoint(caller, name, PermissionLevel.CAN_VIEW)))

    # ---- steered by hand -------------------------------------------------------------------------
    def pause(self, caller: Caller, name: str) -> dict[str, Any]:
        """Keep the traffic at the current step and stop evaluating (a RUNNING rollout)."""
        endpoint = self._endpoint(caller, name, PermissionLevel.CAN_MANAGE)
        rollout = self._current(endpoint)
        now = self._clock()
        changed = self._db.rollouts.transition(
            rollout.id,
            ["RUNNING"],
            now,
            state="PAUSED",
            message=f"paused by {caller.name}",
            endpoint_rollout=_column(rollout, "PAUSED", self._traffic(rollout, rollout.step)),
        )
        if changed is None:
            raise InvalidState(
                f"The rollout of '{name}' is {rollout.state}; only a RUNNING rollout can be paused."
            )
        self._decided(changed, "ROLLOUT_PAUSED", f"Rollout paused by {caller.name}", caller.name, {})
        return render(changed)

    def resume(self, caller: Caller, name: str) -> dict[str, Any]:
        """Evaluate a PAUSED rollout again; its step goes on for the time it had left."""
        endpoint = self._endpoint(caller, name, PermissionLevel.CAN_MANAGE)
        rollout = self._current(endpoint)
        now = self._clock()
        changed = self._db.rollouts.transition(
            rollout.id,
            ["PAUSED"],
            now,
            resume=True,
            state="RUNNING",
            message=f"resumed by {caller.name}",
            endpoint_rollout=_column(rollout, "RUNNING", self._traffic(rollout, rollout.step)),
        )
        if changed is None:
            raise InvalidState(
                f"The rollout of '{name}' is {rollout.state}; only a PAUSED rollout can be resumed."
            )
        self._decided(changed, "ROLLOUT_RESUMED", f"Rollout resumed by {caller.name}", caller.name, {})
        self.wake()
        return render(changed)

    def cancel(self, caller: Caller, name: str) -> dict[str, Any]:
        """Stop the rollout: a RUNNING or PAUSED one rolls back (traffic to the incumbents at once,
        then the previous config restored); a WAITING one cancels the update still deploying."""
        endpoint = self._endpoint(caller, name, PermissionLevel.CAN_MANAGE)
        rollout = self._current(endpoint)
        reason = f"cancelled by {caller.name}"
        if rollout.state == "WAITING":
            changed = self._db.rollouts.transition(
                rollout.id,
                ["WAITING"],
                self._clock(),
                state="CANCELED",
                finished_ms=self._clock(),
                message=f"{reason} before config version {rollout.config_version} served",
                endpoint_rollout=None,
            )
            if changed is not None:
                if self.endpoints is not None:
                    with contextlib.suppress(ResourceConflict):  # it finished meanwhile: the runner sees it
                        self.endpoints.cancel_update(caller, name)
                self._decided(changed, "ROLLOUT_CANCELED", f"Rollout {reason}", caller.name, {})
                return render(changed)
            rollout = self._current(endpoint)
        done = self.roll_back(
            rollout, state="CANCELED", reason=reason, actor=caller.name, kind="ROLLOUT_CANCELED"
        )
        if done is None:
            raise InvalidState(f"The rollout of '{name}' is {rollout.state}: there is nothing to cancel.")
        return render(done)

    def active_ids(self) -> list[str]:
        """The ids of the rollouts not over (the runner's scan)."""
        return [r.id for r in self._db.rollouts.active()]

    # ---- decisions -------------------------------------------------------------------------------
    def _traffic(self, rollout: RolloutRecord, step: int) -> list[dict[str, Any]]:
        return step_traffic(rollout.candidate, rollout.incumbents, rollout.steps[step])

    def roll_back(
        self,
        rollout: RolloutRecord,
        *,
        state: str,
        reason: str,
        actor: str,
        kind: str,
        details: dict[str, Any] | None = None,
    ) -> RolloutRecord | None:
        """Send all the traffic to the incumbents (one store write, with the new ``state``), then
        restore the config the rollout started from as a new version. None when the rollout was
        not RUNNING or PAUSED (another process decided first)."""
        now = self._clock()
        changed = self._db.rollouts.transition(
            rollout.id,
            ["RUNNING", "PAUSED"],
            now,
            state=state,
            finished_ms=now,
            message=reason,
            endpoint_rollout=_column(
                rollout, state, step_traffic(rollout.candidate, rollout.incumbents, 0.0)
            ),
        )
        if changed is None:
            return None
        self._on_change(rollout.endpoint_id)
        restored = ""
        if rollout.from_version is not None and self.endpoints is not None:
            try:
                new = self.endpoints.restore_version(
                    rollout.endpoint_id, rollout.from_version, actor=actor, reason=f"rollout {reason}"
                )
                restored = f"; config version {rollout.from_version} restored as version {new}"
            except ModelportError as exc:
                restored = f"; restoring config version {rollout.from_version} failed: {exc.message}"
                log.warning("rollout rollback could not restore the config", extra={"rollout": rollout.id})
            self._db.rollouts.set_message(rollout.id, reason + restored)
            changed = dataclasses.replace(changed, message=reason + restored)
        self._decided(changed, kind, f"Rollout {reason}{restored}", actor, details or {})
        return changed

    def tick(self, rollout_id: str) -> float | None:
        """Drive one rollout one step (the leader, every few seconds): start it when its version
        serves, evaluate a RUNNING step and act on the verdict. Seconds until the next tick; None
        when the rollout is over."""
        rollout = self._db.rollouts.get(rollout_id)
        if rollout is None or rollout.state in FINISHED:
            return None
        endpoint = self._db.endpoints.get_by_id(rollout.endpoint_id)
        if endpoint is None:
            return None
        if rollout.state == "WAITING":
            return self._start(rollout, endpoint)
        if endpoint.active_version != rollout.config_version:
            self._end(
                rollout,
                "CANCELED",
                f"config version {endpoint.active_version} replaced version "
                f"{rollout.config_version} while it rolled out",
            )
            return None
        if rollout.state == "PAUSED":
            return 1.0
        return self._evaluate(rollout, endpoint)

    def _start(self, rollout: RolloutRecord, endpoint: EndpointRecord) -> float | None:
        if endpoint.active_version == rollout.config_version:
            now = self._clock()
            changed = self._db.rollouts.transition(
                rollout.id,
                ["WAITING"],
                now,
                state="RUNNING",
                step=0,
                step_started_ms=now,
                message=None,
                endpoint_rollout=_column(rollout, "RUNNING", self._traffic(rollout, 0)),
            )
            if changed is None:
                return 0.2
            self._on_change(rollout.endpoint_id)
            self._decided(
                changed,
                "ROLLOUT_STARTED",
                f"Rollout of {rollout.candidate} started at {rollout.steps[0]:g}%",
                CONTROLLER,
                {"step": 0, "percentage": rollout.steps[0], "traffic": self._traffic(rollout, 0)},
            )
            return min(1.0, float(rollout.policy["evaluation_seconds"]))
        config = self._db.endpoints.get_config(endpoint.id, rollout.config_version)
        status = config.status if config is not None else "CANCELED"
        if status in ("FAILED", "CANCELED") or endpoint.pending_version != rollout.config_version:
            state = "FAILED" if status == "FAILED" else "CANCELED"
            self._end(rollout, state, f"config version {rollout.config_version} never served ({status})")
            return None
        return 0.5

    def _end(self, rollout: RolloutRecord, state: str, reason: str) -> None:
        changed = self._db.rollouts.transition(
            rollout.id,
            ACTIVE,
            self._clock(),
            state=state,
            finished_ms=self._clock(),
            message=reason,
            endpoint_rollout=None,
        )
        if changed is not None:
            self._on_change(rollout.endpoint_id)
            self._decided(changed, "ROLLOUT_CANCELED", f"Rollout {state.lower()}: {reason}", CONTROLLER, {})

    def _evaluate(self, rollout: RolloutRecord, endpoint: EndpointRecord) -> float | None:
        now = self._clock()
        tallies = self._db.rollouts.step_tallies(rollout.id, rollout.step)
        candidate = tallies.get(rollout.candidate) or Tally()
        incumbent = Tally()
        for name in rollout.incumbents:
            if name in tallies:
                incumbent.add(tallies[name])
        previous = self._previous.get(rollout.id)  # (step, candidate tally) at the last evaluation
        same_step = previous is not None and previous[0] == rollout.step
        recent = minus(candidate, previous[1]) if previous is not None and same_step else None
        self._previous[rollout.id] = (rollout.step, candidate)
        elapsed = max(0.0, (now - int(rollout.step_started_ms or now)) / 1000)
        decision = decide(rollout.policy, rollout.step, elapsed, candidate, incumbent, recent)
        evaluation = {
            "timestamp": now,
            "step": rollout.step,
            "percentage": rollout.percentage,
            **decision.measured,
            "verdict": decision.verdict,
            "reason": decision.reason,
            "breached": decision.breached,
        }
        self._db.rollouts.save_evaluation(rollout.id, evaluation)
        evaluation_s = float(rollout.policy["evaluation_seconds"])
        step_left = float(rollout.policy["step_seconds"]) - elapsed
        wait = max(0.2, min(evaluation_s, step_left) if step_left > 0 else evaluation_s)
        details = {"step": rollout.step, "percentage": rollout.percentage, "measured": decision.measured}
        if decision.verdict == HOLD:
            return wait
        if decision.verdict == ROLL_BACK:
            self._previous.pop(rollout.id, None)
            self.roll_back(
                dataclasses.replace(rollout, last_evaluation=evaluation),
                state="ROLLED_BACK",
                reason=f"rolled back: {decision.reason}",
                actor=CONTROLLER,
                kind="ROLLOUT_ROLLED_BACK",
                details={**details, "breached": decision.breached, "reason": decision.reason},
            )
            return None
        if decision.verdict == PROMOTE:
            last = len(rollout.steps) - 1
            changed = self._db.rollouts.transition(
                rollout.id,
                ["RUNNING"],
                now,
                at_step=rollout.step,
                step=last,
                state="SUCCEEDED",
                finished_ms=now,
                message=decision.reason,
                endpoint_rollout=None,
            )
            if changed is not None:
                self._on_change(rollout.endpoint_id)
                self._decided(
                    changed,
                    "ROLLOUT_PROMOTED",
                    f"Rollout promoted: {decision.reason}",
                    CONTROLLER,
                    {**details, "reason": decision.reason},
                )
            return None
        following = rollout.step + 1
        changed = self._db.rollouts.transition(
            rollout.id,
            ["RUNNING"],
            now,
            at_step=rollout.step,
            step=following,
            step_started_ms=now,
            endpoint_rollout={
                **_column(rollout, "RUNNING", self._traffic(rollout, following)),
                "step": following,
            },
        )
        if changed is None:
            return wait
        self._on_change(rollout.endpoint_id)
        self._decided(
            changed,
            "ROLLOUT_STEP",
            f"Rollout moved {rollout.candidate} to {rollout.steps[following]:g}%: {decision.reason}",
            CONTROLLER,
            {
                **details,
                "step": following,
                "percentage": rollout.steps[following],
                "from_percentage": rollout.percentage,
                "reason": decision.reason,
            },
        )
        return min(evaluation_s, float(rollout.policy["step_seconds"]))

    # ---- the event log and the webhook -----------------------------------------------------------
    def _decided(
        self, rollout: RolloutRecord, kind: str, message: str, actor: str, details: dict[str, Any]
    ) -> None:
        """Log a decision as an event of the endpoint and POST it to the policy's webhook."""
        body = {"rollout_id": rollout.id, "state": rollout.state, **details}
        self._db.events.add(
            rollout.endpoint_id,
            kind,
            message,
            actor=actor,
            config_version=rollout.config_version,
            served_entity=rollout.candidate,
            details=body,
        )
        url = rollout.policy.get("webhook_url")
        if url:
            endpoint = self._db.endpoints.get_by_id(rollout.endpoint_id)
            post = Post(
                url,
                {},
                {
                    "event": kind,
                    "endpoint": endpoint.name if endpoint is not None else None,
                    "config_version": rollout.config_version,
                    "candidate": rollout.candidate,
                    "message": message,
                    "actor": actor,
                    "timestamp": self._clock(),
                    **body,
                },
            )
            with contextlib.suppress(RuntimeError):  # shut down: the process stops
                self._hooks.submit(self._post, post, rollout.id)

    @staticmethod
    def _post(post: Post, rollout_id: str) -> None:
        delivery = deliver([post])[0]
        if not delivery.delivered:
            log.warning("rollout webhook not delivered: %s", delivery.error, extra={"rollout": rollout_id})

    def close(self) -> None:
        self._hooks.shutdown(wait=False)
