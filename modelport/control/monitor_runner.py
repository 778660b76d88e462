"""The runner of monitor refreshes: queued ones, scheduled ones, and those a restart interrupted.

Only the leader (``control/leadership.py``, through ``Cluster.leading``) runs refreshes, as it
runs bulk jobs (``batch/runner.py``): every second, and whenever a refresh is queued or
cancelled (:meth:`MonitorRunner.wake`), it looks at every monitor of the tables root:

- a PENDING refresh is started (RUNNING), one per monitor at a time, at most
  :data:`CONCURRENCY` at once; it ends SUCCESS, FAILED (the message says why, and the monitor
  shows it as ``latest_monitor_failure_msg`` with status ``MONITOR_STATUS_ERROR`` until a
  refresh succeeds) or CANCELED (a cancel request, or the monitor deleted);
- a RUNNING refresh that no task of this process runs was interrupted (the server stopped or
  was killed, or the leader changed): it is run again from the start, as it wrote nothing
  until its end; after :data:`MAX_ATTEMPTS` interruptions it is marked FAILED instead;
- a monitor whose schedule (Quartz cron, unpaused) fired since its last scheduled refresh gets
  a SCHEDULE refresh, unless one is pending or running; runs missed while no server led are
  not made up, the next one is queued at once.

A process that stops leading stops its refreshes and leaves them RUNNING for the next leader.

After a refresh that computed rows, and before it is marked SUCCESS, the monitor's alerts are
evaluated over those rows (:mod:`modelport.monitoring.alerts`); their state is kept in the
monitor's state file, and each alert that turned TRIGGERED, or back to OK, notifies its webhook
(:mod:`modelport.monitoring.webhooks`: bounded tries, a few seconds at most; the outcome is kept
in the alert's state, a failed delivery never fails the refresh). A FAILED refresh notifies the
webhooks of ``notifications.on_failure`` with its message.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from modelport.clock import now_ms
from modelport.control.leader_work import LeaderWork
from modelport.control.monitor_refresh import refresh_monitor
from modelport.control.monitors import ACTIVE_STATES, MonitorService, next_run
from modelport.errors import Cancelled, ModelportError, ResourceDoesNotExist
from modelport.monitoring.alerts import evaluate, notification_body, transition
from modelport.monitoring.webhooks import Delivery, Post, deliver
from modelport.spec.monitor import MonitorConfig
from modelport.spec.monitor_alerts import Webhook

__all__ = ["CONCURRENCY", "MAX_ATTEMPTS", "MonitorRunner"]

log = logging.getLogger("modelport.monitors")

#: Refreshes run at once by one process (each reads its table and computes on a thread).
CONCURRENCY = 2
#: Times a refresh is started before an interruption marks it FAILED.
MAX_ATTEMPTS = 3
#: Refreshes of a monitor looked at for one pending or running (the newest ones).
_RECENT = 3


class MonitorRunner(LeaderWork):
    """Runs the refreshes of ``service``'s monitors while ``leading()`` says this process leads."""

    what = "monitor refresh"

    def __init__(
        self,
        service: MonitorService,
        *,
        leading: Callable[[], bool],
        interval: float = 1.0,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        super().__init__(leading=leading, interval=interval, log=log)
        self.service = service
        self.store = service.store
        self._clock = clock
        self._slots = asyncio.Semaphore(CONCURRENCY)

    async def scan(self) -> None:
        for table, refresh_id in await asyncio.to_thread(self._scan, self.busy()):
            self.launch(table, self._run(table, refresh_id))

    # ---- what to run ----------------------------------------------------------------------------
    def _scan(self, busy: set[str]) -> list[tuple[str, int]]:
        """(table, refresh id) of each refresh to start now, queueing the scheduled ones."""
        out = []
        for table in self.store.tables():
            if table in busy:
                continue
            try:
                active = self._active(table)
                if active is None:
                    active = self._scheduled(table)
            except ResourceDoesNotExist:  # deleted meanwhile
                continue
            except Exception:
                log.exception("monitor scan failed", extra={"table": table})
                continue
            if active is not None:
                out.append((table, active))
        return out

    def _active(self, table: str) -> int | None:
        for refresh_id in self.store.refresh_ids(table)[-_RECENT:]:
            with contextlib.suppress(ResourceDoesNotExist):
                if self.store.refresh(table, refresh_id).get("state") in ACTIVE_STATES:
                    return refresh_id
        return None

    def _scheduled(self, table: str) -> int | None:
        doc = self.store.get(table)
        config, _ = self.service.config(table)
        if config.schedule is None:
            return None
        state = self.store.state(table)
        since = max(int(state.get("scheduled_ms") or 0), int(doc.get("updated_ms") or 0))
        due = next_run(config, since)
        now = self._clock()
        if due is None or due > now:
            return None
        self.store.save_state(table, {**state, "scheduled_ms": now})
        refresh = self.service.queue(table, "SCHEDULE")
        log.info(
            "scheduled monitor refresh queued", extra={"table": table, "refresh_id": refresh["refresh_id"]}
        )
        return int(refresh["refresh_id"])

    # ---- one refresh ----------------------------------------------------------------------------
    def _stopped(self, table: str, refresh_id: int) -> bool:
        """Whether the refresh must stop: cancelled, its monitor deleted, or no longer leading."""
        if not self._leading() or self.store.cancel_requested(table, refresh_id):
            return True
        try:
            self.store.get(table)
        except ResourceDoesNotExist:
            return True
        return False

    def _save(self, table: str, refresh: dict[str, Any]) -> None:
        """Save a refresh unless its monitor was deleted meanwhile (that would bring it back)."""
        try:
            self.store.get(table)
        except ResourceDoesNotExist:
            return
        self.store.save_refresh(table, refresh)

    def _start(self, table: str, refresh_id: int) -> dict[str, Any] | None:
        refresh = self.store.refresh(table, refresh_id)
        attempts = int(refresh.get("attempts") or 0)
        if refresh.get("state") == "RUNNING" and attempts >= MAX_ATTEMPTS:
            message = f"The refresh was interrupted {attempts} times (server restarts); not tried again."
            self._finish(table, refresh, "FAILED", message)
            return None
        refresh.update(state="RUNNING", attempts=attempts + 1)
        self._save(table, refresh)
        return refresh

    def _finish(
        self,
        table: str,
        refresh: dict[str, Any],
        state: str,
        message: str,
        last: Any = None,
        alerts: dict[str, Any] | None = None,
    ) -> None:
        refresh.update(state=state, end_time_ms=self._clock(), message=message)
        self._save(table, refresh)
        if state == "CANCELED":
            return
        notified = self._notify_failure(table, refresh, message) if state == "FAILED" else None
        saved = self.store.state(table)
        if state == "SUCCESS":
            saved.update(last=last, failed=False, failure=None)
            if alerts is not None:
                saved["alerts"] = alerts
        else:
            saved.update(failed=True, failure=message)
            if notified is not None:
                saved["failure_notification"] = notified
        with contextlib.suppress(ResourceDoesNotExist):
            self.store.get(table)
            self.store.save_state(table, saved)

    def _refresh(self, table: str, refresh_id: int) -> None:
        """Run one refresh to its end (blocking: a thread)."""
        refresh = self._start(table, refresh_id)
        if refresh is None:
            return
        resumed = int(refresh["attempts"]) > 1
        try:
            config, version = self.service.config(table)
            result = refresh_monitor(
                self.service.root,
                table,
                config,
                version,
                self.store.state(table).get("last") or {},
                cancelled=lambda: self._stopped(table, refresh_id),
            )
        except Cancelled:
            if self._leading():  # else the next leader runs it again
                self._finish(table, refresh, "CANCELED", "The refresh was canceled.")
            return
        except ModelportError as exc:
            self._finish(table, refresh, "FAILED", exc.message)
            return
        except Exception as exc:
            log.exception("monitor refresh failed", extra={"table": table, "refresh_id": refresh_id})
            self._finish(
                table, refresh, "FAILED", f"The refresh stopped on an internal error ({type(exc).__name__})."
            )
            return
        message = result.message + (" (run again after an interruption)" if resumed else "")
        self.service.written()
        alerts = None
        if result.profile is not None or result.drift is not None:
            try:
                alerts = self._alerts(table, config, refresh_id, result.profile, result.drift)
            except Exception:  # an alert never fails the refresh that computed the metrics
                log.exception("monitor alerts failed", extra={"table": table, "refresh_id": refresh_id})
        self._finish(table, refresh, "SUCCESS", message, result.state, alerts)
        log.info("monitor refreshed", extra={"table": table, "refresh_id": refresh_id})

    # ---- alerts and notifications ---------------------------------------------------------------
    def _post(self, hook: Webhook, body: dict[str, Any]) -> Post | Delivery:
        """The POST to ``hook`` (its secret references resolved), or why it cannot be sent."""
        try:
            url = self.service.resolve(hook.url)
            headers = {k: self.service.resolve(v) for k, v in hook.headers}
        except ModelportError as exc:
            return Delivery(False, 0, None, exc.message)
        return Post(url, headers, body)

    def _send(self, posts: list[Post | Delivery]) -> list[Delivery]:
        ready = [p for p in posts if isinstance(p, Post)]
        sent = iter(deliver(ready))
        return [next(sent) if isinstance(p, Post) else p for p in posts]

    def _alerts(
        self, table: str, config: MonitorConfig, refresh_id: int, profile: Any, drift: Any
    ) -> dict[str, Any]:
        """Evaluate the alerts over the rows a refresh computed, notify their changes; their states."""
        before = self.store.state(table).get("alerts") or {}
        now = self._clock()
        states: dict[str, Any] = {}
        posts: list[tuple[str, str, Post | Delivery]] = []
        for alert in config.alerts:
            rows = drift if alert.table == "drift" else profile
            state, event = transition(
                before.get(alert.name), evaluate(alert, rows), refresh_id=refresh_id, now_ms=now
            )
            states[alert.name] = state
            if event is not None and alert.webhook is not None:
                body = notification_body(table, alert, state, event)
                posts.append((alert.name, event, self._post(alert.webhook, body)))
        for (name, event, _), outcome in zip(posts, self._send([p for _, _, p in posts]), strict=True):
            states[name]["notification"] = {"event": event, "at_ms": self._clock(), **outcome.to_json()}
            if not outcome.delivered:
                log.warning(
                    "monitor alert webhook failed",
                    extra={"table": table, "alert": name, "error": outcome.error},
                )
        return states

    def _notify_failure(self, table: str, refresh: dict[str, Any], message: str) -> dict[str, Any] | None:
        """POST a failed refresh to ``notifications.on_failure.webhooks``; the outcome (None: none)."""
        try:
            config, _ = self.service.config(table)
        except Exception:  # the monitor is gone or unreadable: nobody to tell
            return None
        if not config.failure_webhooks:
            return None
        body = {
            "event": "monitor.refresh.failed",
            "table_name": table,
            "refresh_id": refresh.get("refresh_id"),
            "trigger": refresh.get("trigger"),
            "state": "FAILED",
            "message": message,
            "end_time_ms": refresh.get("end_time_ms"),
        }
        outcomes = self._send([self._post(hook, body) for hook in config.failure_webhooks])
        for outcome in outcomes:
            if not outcome.delivered:
                log.warning("monitor failure webhook failed", extra={"table": table, "error": outcome.error})
        return {"at_ms": self._clock(), "deliveries": [o.to_json() for o in outcomes]}

    async def _run(self, table: str, refresh_id: int) -> None:
        async with self._slots:
            await asyncio.to_thread(self._refresh, table, refresh_id)
