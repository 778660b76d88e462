"""Quality monitors on tables (Databricks' ``quality_monitors``): who may create, read, change and
refresh them, and what a monitor may say.

A monitor watches one Delta table of the tables root (an endpoint's inference table first of
all) and writes ``{output_schema}.{table}_profile_metrics`` and ``_drift_metrics`` at each
refresh (:mod:`modelport.control.monitor_refresh`). Monitors and their refreshes are files under
the tables root (:mod:`modelport.monitoring.store`), so every server that shares the root sees
them; the leader runs the refreshes (:mod:`modelport.control.monitor_runner`).

Privileges (the tables' are :mod:`modelport.control.table_acl`'s; Databricks asks for the
table's ownership, modelport's nearest is MANAGE):

- create, update, delete, run and cancel a refresh: MANAGE on the monitored table (admins; a
  manager of the endpoint whose inference table it is; a MANAGE grant), plus SELECT on the
  baseline and labels tables it names. The creator gets MANAGE on the two metrics tables
  (unless they hold a grant there already), whoever refreshes them later;
- read the monitor and its refreshes: SELECT on the monitored table;
- name a ``{{secrets/scope/key}}`` reference in a webhook (an alert's, or
  ``notifications.on_failure.webhooks``): READ on the scope.

Alerts (:mod:`modelport.monitoring.alerts`) are shown with their state in the monitor (its
``alerts``) and, for an endpoint's page, by :meth:`MonitorService.alerts`.

A caller without the privilege gets the table's 403 whether the monitor exists or not; admins
get 404 ``RESOURCE_DOES_NOT_EXIST`` for a table that does not exist or has no monitor.

What a create or update is checked for, beyond its shape (:mod:`modelport.spec.monitor`): the
columns it names exist in the table as the monitor reads it (an inference table's unpacked
columns, learnt from a sample of its rows: before its first row only the fixed ones are known,
and the others are checked by the first refresh), granularities, the Quartz expression and time
zone of the schedule, the output schema (``catalog.schema``, not ``system``), the slicing
expressions (DuckDB must bind them over the table's columns).

Blocking (files, store reads, Delta metadata): call these methods from a thread.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from typing import Any

import duckdb
import pyarrow as pa
from deltalake import DeltaTable

from modelport.clock import now_ms
from modelport.control.monitor_refresh import TableReader
from modelport.control.secrets import SecretService
from modelport.control.table_acl import TableAccess, TableListings, inference_table_of
from modelport.errors import (
    InvalidParameterValue,
    InvalidState,
    PermissionDenied,
    ResourceConflict,
    ResourceDoesNotExist,
)
from modelport.monitoring import canonical_granularity
from modelport.monitoring.alerts import alert_views, check_alerts
from modelport.monitoring.output import metrics_table_names
from modelport.monitoring.schedule import parse_cron, zone
from modelport.monitoring.store import MonitorStore
from modelport.monitoring.unpack import BOOKKEEPING_COLUMNS
from modelport.spec.identity import Caller
from modelport.spec.monitor import MonitorConfig, parse_config
from modelport.spec.monitor_alerts import Webhook
from modelport.spec.secrets import ScopePermission, parse_reference
from modelport.spec.table_privileges import TablePrivilege
from modelport.store import Database
from modelport.tables.names import split_name, table_uri

__all__ = ["ACTIVE_STATES", "MonitorService", "next_run", "refresh_info"]

#: Refresh states that are not over.
ACTIVE_STATES = ("PENDING", "RUNNING")
#: Catalog of modelport's own tables: no metrics table goes there.
RESERVED_CATALOG = "system"
#: Fields of a stored monitor that are modelport's bookkeeping, not Databricks' MonitorInfo.
_PRIVATE = ("owner", "created_ms", "updated_ms")
#: Refresh fields Databricks' MonitorRefreshInfo has.
_REFRESH_FIELDS = ("refresh_id", "state", "start_time_ms", "end_time_ms", "message", "trigger")


def _table_name(name: Any) -> str:
    if not isinstance(name, str):
        raise InvalidParameterValue("The table name must be a string catalog.schema.table.")
    return ".".join(split_name(name))


def refresh_info(doc: Mapping[str, Any]) -> dict[str, Any]:
    """A stored refresh as Databricks' ``MonitorRefreshInfo``."""
    return {k: doc[k] for k in _REFRESH_FIELDS if doc.get(k) is not None}


class MonitorService:
    """The monitors under one tables root, with their privileges (see the module docstring)."""

    def __init__(
        self,
        db: Database,
        root: str,
        *,
        listings: TableListings | None = None,
        wake: Callable[[], None] = lambda: None,
        secrets: SecretService | None = None,
    ) -> None:
        """``wake``: tells the refresh runner a refresh was queued or cancelled; ``secrets``
        resolves the webhooks' secret references (None: references are refused)."""
        self._db = db
        self.secrets = secrets
        self._access = TableAccess(db, root, listings)
        self.root = root
        self.store = MonitorStore(root)
        self.wake = wake

    # ---- checks ----------------------------------------------------------------------------------
    def _require(self, caller: Caller, table: Any, needed: TablePrivilege) -> str:
        name, _ = self._access.require(caller, _table_name(table), needed)
        return name

    def _require_other(self, caller: Caller, table: str, field: str) -> str:
        """SELECT on a table a monitor reads besides its own (400 naming the field when unknown)."""
        name = _table_name(table)
        if DeltaTable.is_deltatable(table_uri(self.root, *split_name(name))):
            self._access.forget()  # written a moment ago, maybe after the last listing
        try:
            return self._require(caller, table, TablePrivilege.SELECT)
        except ResourceDoesNotExist:
            raise InvalidParameterValue(
                f"Invalid value for '{field}': table '{table}' does not exist."
            ) from None

    def _columns(self, table: str, config: MonitorConfig) -> tuple[pa.Schema, bool]:
        """The monitor's columns of ``table`` and whether they are all known (see the module
        docstring)."""
        fixed = pa.schema([(c, pa.string()) for c in (*BOOKKEEPING_COLUMNS, "prediction")])
        try:
            reader = TableReader(self.root, table, config.include_traffic)
        except ResourceDoesNotExist:
            return fixed, False
        schema = reader.schema()
        if reader.inference and len(schema) <= len(BOOKKEEPING_COLUMNS) + 1:
            return fixed, False
        return schema, True

    def _check(self, caller: Caller, table: str, config: MonitorConfig) -> MonitorConfig:
        """``config`` with canonical granularities, once every check passed (400 otherwise)."""
        profile_name, _ = metrics_table_names(config.output_schema_name, table)
        if profile_name.split(".", 1)[0] == RESERVED_CATALOG:
            raise InvalidParameterValue(
                f"Invalid value for 'output_schema_name': the catalog '{RESERVED_CATALOG}' holds "
                "modelport's own tables."
            )
        if config.schedule is not None:
            parse_cron(config.schedule.quartz_cron_expression)
            zone(config.schedule.timezone_id)
        granularities = tuple(dict.fromkeys(canonical_granularity(g) for g in config.granularities))
        schema, complete = self._columns(table, config)
        extra: list[pa.Field] = []
        if config.labels is not None:
            labels = self._require_other(caller, config.labels.table_name, "labels.table_name")
            try:
                label_fields = list(TableReader(self.root, labels).schema())
            except ResourceDoesNotExist:
                label_fields = []
            label_columns = [f.name for f in label_fields]
            log = config.inference_log
            wanted = [*config.labels.key_cols, *([log.label_col] if log and log.label_col else [])]
            missing = [c for c in wanted if c not in label_columns]
            if label_columns and missing:
                raise InvalidParameterValue(
                    f"Invalid value for 'labels': table '{labels}' has no column(s) {', '.join(missing)}."
                )
            extra = [f for f in label_fields if f.name not in schema.names]
        if config.baseline_table_name is not None:
            self._require_other(caller, config.baseline_table_name, "baseline_table_name")
        fields = pa.schema([*schema, *extra])
        known = set(fields.names)
        named: list[tuple[str, str]] = []
        if config.timestamp_col is not None:
            named.append(("timestamp_col", config.timestamp_col))
        log = config.inference_log
        if log is not None:
            prefix = "inference_log."
            named += [
                (prefix + "prediction_col", log.prediction_col),
                (prefix + "model_id_col", log.model_id_col),
            ]
            if log.label_col:
                named.append((prefix + "label_col", log.label_col))
            if log.prediction_proba_col:
                named.append((prefix + "prediction_proba_col", log.prediction_proba_col))
        for i, metric in enumerate(config.custom_metrics):
            named += [
                (f"custom_metrics[{i}].input_columns", c) for c in metric.input_columns if c != ":table"
            ]
        if complete:
            unknown = [(field, column) for field, column in named if column not in known]
            if unknown:
                field, column = unknown[0]
                raise InvalidParameterValue(
                    f"Invalid value for '{field}': table '{table}' has no column '{column}' (its columns: "
                    f"{', '.join(sorted(known))})."
                )
            self._check_slices(config, fields)
        log = config.inference_log
        if log is not None:
            log = type(log)(**{**log.__dict__, "granularities": granularities})
        series = config.time_series
        if series is not None:
            series = type(series)(series.timestamp_col, granularities)
        alerts = check_alerts(config.alerts, config.custom_metrics, granularities, config.profile_type)
        self._check_references(caller, config)
        return MonitorConfig(
            **{**config.__dict__, "inference_log": log, "time_series": series, "alerts": alerts}
        )

    def _check_references(self, caller: Caller, config: MonitorConfig) -> None:
        """Every secret reference of the webhooks must exist and be readable by ``caller``."""
        hooks: list[tuple[str, Webhook]] = [
            (f"alerts[{i}].webhook", a.webhook) for i, a in enumerate(config.alerts) if a.webhook is not None
        ]
        hooks += [
            (f"notifications.on_failure.webhooks[{i}]", w) for i, w in enumerate(config.failure_webhooks)
        ]
        for path, hook in hooks:
            for where, value in [
                (f"{path}.url", hook.url),
                *((f"{path}.headers.{k}", v) for k, v in hook.headers),
            ]:
                ref = parse_reference(value)
                if ref is None:
                    continue
                scope, key = ref
                if self.secrets is None or self._db.secrets.get_scope(scope) is None:
                    raise InvalidParameterValue(
                        f"Invalid value for '{where}': secret {value} does not exist (no scope '{scope}')."
                    )
                have = self.secrets.permission(caller, scope)
                if have is None or have < ScopePermission.READ:
                    raise PermissionDenied(
                        f"'{caller.name}' does not have READ permission on secret scope '{scope}', "
                        f"which '{where}' references ({value})."
                    )
                if self._db.secrets.get(scope, key) is None:
                    raise InvalidParameterValue(
                        f"Invalid value for '{where}': secret {value} does not exist (scope '{scope}' has "
                        f"no key '{key}')."
                    )

    def resolve(self, value: str) -> str:
        """A webhook's URL or header value with its secret reference resolved (runner side)."""
        ref = parse_reference(value)
        if ref is None:
            return value
        if self.secrets is None:
            raise InvalidState(f"Secret {value} cannot be resolved: no secret store is set up.")
        return self.secrets.resolve(*ref)

    @staticmethod
    def _check_slices(config: MonitorConfig, fields: pa.Schema) -> None:
        if not config.slicing_exprs:
            return
        con = duckdb.connect(":memory:")
        try:
            con.register("t", fields.empty_table())
            for i, expr in enumerate(config.slicing_exprs):
                try:
                    con.execute(f"SELECT ({expr}) FROM t LIMIT 0")
                except duckdb.Error as exc:
                    raise InvalidParameterValue(
                        f"Invalid value for 'slicing_exprs[{i}]': {expr!r} does not read as SQL over the "
                        f"table's columns: {str(exc).splitlines()[0]}"
                    ) from None
        finally:
            con.close()

    # ---- answers ---------------------------------------------------------------------------------
    def info(self, table: str, doc: Mapping[str, Any]) -> dict[str, Any]:
        """A stored monitor as Databricks' ``MonitorInfo`` (with modelport's own fields)."""
        state = self.store.state(table)
        out = {k: v for k, v in doc.items() if k not in _PRIVATE}
        out.pop("alerts", None)
        config = parse_config(doc, creating=True)
        shown = config.to_json(redact=True)
        if "notifications" in shown:
            out["notifications"] = shown["notifications"]
        if config.alerts:
            out["alerts"] = alert_views(config.alerts, state.get("alerts"))
        profile_name, drift_name = metrics_table_names(str(doc["output_schema_name"]), table)
        out.update(
            table_name=table,
            status="MONITOR_STATUS_ERROR" if state.get("failed") else "MONITOR_STATUS_ACTIVE",
            profile_metrics_table_name=profile_name,
            drift_metrics_table_name=drift_name,
        )
        if state.get("failure"):
            out["latest_monitor_failure_msg"] = state["failure"]
        return out

    def alerts(self, caller: Caller, endpoint: Any = None, table_name: Any = None) -> dict[str, Any]:
        """The alerts, with their state, of the monitors on ``endpoint``'s inference tables (or
        on ``table_name``): SELECT on each table (see the ALERTS route of docs/monitoring.md)."""
        out: dict[str, Any] = {}
        if endpoint is not None:
            if not isinstance(endpoint, str) or not endpoint:
                raise InvalidParameterValue("Invalid value for 'endpoint': must be an endpoint name.")
            record = self._db.endpoints.get(endpoint)
            if record is None:
                raise ResourceDoesNotExist(f"Endpoint '{endpoint}' does not exist.")
            configs = self._db.endpoints.current_configs([record.id]).values()
            tables = sorted(inference_table_of(record, configs))
            out["endpoint_name"] = endpoint
        elif table_name is not None:
            tables = [_table_name(table_name)]
        else:
            raise InvalidParameterValue("Missing required parameter 'endpoint' (or 'table_name').")
        monitors = []
        for table in tables:
            try:
                name = self._require(caller, table, TablePrivilege.SELECT)
                doc = self._stored(name)
            except ResourceDoesNotExist:
                if table_name is not None:
                    raise
                continue  # an endpoint's table not written yet, or not monitored
            info = self.info(name, doc)
            entry = {"table_name": name, "status": info["status"], "alerts": info.get("alerts", [])}
            if "latest_monitor_failure_msg" in info:
                entry["latest_monitor_failure_msg"] = info["latest_monitor_failure_msg"]
            monitors.append(entry)
        out["monitors"] = monitors
        return out

    # ---- monitors --------------------------------------------------------------------------------
    def create(self, caller: Caller, table: Any, body: Any) -> dict[str, Any]:
        name = self._require(caller, table, TablePrivilege.MANAGE)
        if isinstance(body, Mapping) and body.get("table_name") not in (None, name, table):
            raise InvalidParameterValue("'table_name' in the body differs from the table in the path.")
        config = self._check(caller, name, parse_config(body, creating=True))
        now = now_ms()
        doc = {
            **config.to_json(),
            "monitor_version": 1,
            "owner": caller.name,
            "created_ms": now,
            "updated_ms": now,
        }
        self.store.create(name, doc)
        for metrics in metrics_table_names(config.output_schema_name, name):
            self._access.set_owner(metrics, caller.id)
        return self.info(name, doc)

    def _stored(self, name: str) -> dict[str, Any]:
        return self.store.get(name)

    def get(self, caller: Caller, table: Any) -> dict[str, Any]:
        name = self._require(caller, table, TablePrivilege.SELECT)
        return self.info(name, self._stored(name))

    def update(self, caller: Caller, table: Any, body: Any) -> dict[str, Any]:
        """Replace the monitor's configuration (see :func:`~modelport.spec.monitor.parse_config`);
        its ``monitor_version`` goes up by one, so the next refresh recomputes every window."""
        name = self._require(caller, table, TablePrivilege.MANAGE)
        current = self._stored(name)
        config = parse_config(body, creating=False, current=parse_config(current, creating=True))
        if config.output_schema_name != current["output_schema_name"]:
            raise InvalidParameterValue(
                "'output_schema_name' cannot be changed: delete the monitor and create it again."
            )
        config = self._check(caller, name, config)
        doc = {
            **config.to_json(),
            "monitor_version": int(current.get("monitor_version", 1)) + 1,
            **{k: current[k] for k in _PRIVATE if k in current},
            "updated_ms": now_ms(),
        }
        self.store.replace(name, doc)
        return self.info(name, doc)

    def delete(self, caller: Caller, table: Any) -> None:
        """Delete the monitor and its refreshes (a running one stops); the metrics tables stay."""
        name = self._require(caller, table, TablePrivilege.MANAGE)
        self.store.delete(name)
        self.wake()

    def written(self) -> None:
        """A refresh wrote metrics tables: the next query lists the tables root again."""
        self._access.forget()

    def config(self, table: str) -> tuple[MonitorConfig, int]:
        """The stored monitor of ``table`` (runner side: no privilege check)."""
        doc = self.store.get(table)
        return parse_config(doc, creating=True), int(doc.get("monitor_version", 1))

    # ---- refreshes -------------------------------------------------------------------------------
    def queue(self, table: str, trigger: str) -> dict[str, Any]:
        """Queue a refresh (PENDING); 409 while another is pending or running."""
        for refresh_id in reversed(self.store.refresh_ids(table)):
            refresh = self.store.refresh(table, refresh_id)
            if refresh.get("state") in ACTIVE_STATES:
                raise ResourceConflict(
                    f"Refresh {refresh_id} of the monitor of table '{table}' is {refresh['state']}: "
                    "wait for it to end or cancel it."
                )
            break
        refresh = self.store.add_refresh(
            table, {"state": "PENDING", "start_time_ms": now_ms(), "trigger": trigger}
        )
        self.wake()
        return refresh

    def run_refresh(self, caller: Caller, table: Any) -> dict[str, Any]:
        name = self._require(caller, table, TablePrivilege.MANAGE)
        self._stored(name)
        return refresh_info(self.queue(name, "MANUAL"))

    def list_refreshes(self, caller: Caller, table: Any) -> list[dict[str, Any]]:
        """The monitor's refreshes, newest first (as Databricks lists them)."""
        name = self._require(caller, table, TablePrivilege.SELECT)
        self._stored(name)
        out = []
        for refresh_id in reversed(self.store.refresh_ids(name)):
            try:
                out.append(refresh_info(self.store.refresh(name, refresh_id)))
            except ResourceDoesNotExist:
                continue
        return out

    def _refresh_id(self, refresh_id: Any) -> int:
        try:
            value = int(refresh_id)
        except (TypeError, ValueError):
            raise InvalidParameterValue(f"Invalid refresh_id {refresh_id!r}: must be an integer.") from None
        return value

    def get_refresh(self, caller: Caller, table: Any, refresh_id: Any) -> dict[str, Any]:
        name = self._require(caller, table, TablePrivilege.SELECT)
        self._stored(name)
        return refresh_info(self.store.refresh(name, self._refresh_id(refresh_id)))

    def cancel_refresh(self, caller: Caller, table: Any, refresh_id: Any) -> None:
        """Ask the runner to cancel a pending or running refresh (400 when it has ended)."""
        name = self._require(caller, table, TablePrivilege.MANAGE)
        self._stored(name)
        number = self._refresh_id(refresh_id)
        refresh = self.store.refresh(name, number)
        if refresh.get("state") not in ACTIVE_STATES:
            raise InvalidState(
                f"Refresh {number} has ended ({refresh.get('state')}): there is nothing to cancel."
            )
        self.store.request_cancel(name, number)
        self.wake()


def next_run(config: MonitorConfig, after_ms: int) -> int | None:
    """When the monitor's schedule next fires after ``after_ms`` (None: no schedule, paused, or never)."""
    schedule = config.schedule
    if schedule is None or schedule.pause_status == "PAUSED":
        return None
    after = dt.datetime.fromtimestamp(after_ms / 1000, dt.UTC)
    fired = parse_cron(schedule.quartz_cron_expression).next_after(after, zone(schedule.timezone_id))
    return None if fired is None else int(fired.timestamp() * 1000)
