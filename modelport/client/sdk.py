"""The Python SDK: a thin, synchronous httpx client for a modelport server.

One method per REST operation (compat-api.md §A, §B, and the secrets API), plus the
modelport extensions (cancel-update, tokens, a minimal SCIM surface). Methods return the
parsed JSON the server sent. Every non-2xx answer is raised as the :mod:`modelport.errors`
class its ``error_code`` names, so ``except ResourceDoesNotExist`` works the same on both
sides of the wire. Transport failures are translated once, here: a refused or broken
connection becomes :class:`TemporarilyUnavailable`, a timeout :class:`DeadlineExceeded`.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any, Literal
from urllib.parse import quote, urlencode

import httpx

from modelport.config import env_value
from modelport.errors import (
    DeadlineExceeded,
    InvalidState,
    ModelportError,
    TemporarilyUnavailable,
    Unauthenticated,
    error_from_body,
)

__all__ = ["ARROW_STREAM", "DEFAULT_HOST", "ModelportClient", "PollCallback"]

DEFAULT_HOST = "http://127.0.0.1:8080"

#: Called after every poll of :meth:`ModelportClient.wait_for_update` with the endpoint
#: as the server returned it and the seconds waited so far.
PollCallback = Callable[[dict[str, Any], float], None]

_FAILED_STATES = {"UPDATE_FAILED", "UPDATE_CANCELED"}
_SCIM = "/api/2.0/preview/scim/v2"
_FEATURES = "/api/2.0/feature-engineering/tables"
_FEATURE_SPECS = "/api/2.0/feature-engineering/feature-specs"
_FEATURE_FUNCTIONS = "/api/2.0/feature-engineering/functions"
_BATCH_JOBS = "/api/2.0/modelport/batch/jobs"
#: Media type of the Arrow IPC streams the feature-table data routes send and accept.
ARROW_STREAM = "application/vnd.apache.arrow.stream"
#: Media type of JSON lines (the SQL route's answer with progress).
_NDJSON = "application/x-ndjson"


def _segment(value: str) -> str:
    """One path segment, percent-encoded so that a name can never change the route."""
    return quote(value, safe="")


def _normalise_host(host: str) -> str:
    host = host.strip().rstrip("/")
    if "://" not in host:
        # The server speaks plain HTTP by default, so a bare host:port means http.
        host = "http://" + host
    return host


class ModelportClient:
    """A connection to one modelport server, authenticated with one bearer token.

    The client holds an ``httpx.Client`` (a connection pool); release it with
    :meth:`close` or by using the client as a context manager. Calls are not retried:
    the caller decides what to do with :class:`RequestLimitExceeded` or
    :class:`TemporarilyUnavailable`, whose ``retry_after`` carries the server's hint.
    """

    def __init__(
        self,
        host: str | None = None,
        token: str | None = None,
        *,
        timeout: float = 60.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        host = host or env_value("MODELPORT_HOST") or DEFAULT_HOST
        token = token or env_value("MODELPORT_TOKEN")
        if not token:
            raise Unauthenticated(
                "no API token given: set MODELPORT_TOKEN or pass --token "
                "(the server writes the first admin token to <data-dir>/admin-token)"
            )
        self.host = _normalise_host(host)
        self._http = httpx.Client(
            base_url=self.host,
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
            timeout=timeout,
            transport=transport,
        )

    # ---- lifecycle ---------------------------------------------------------------------
    def close(self) -> None:
        """Close the connection pool; the client cannot be used afterwards."""
        self._http.close()

    def __enter__(self) -> ModelportClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ---- transport ---------------------------------------------------------------------
    @contextmanager
    def _translated_transport_errors(self) -> Iterator[None]:
        try:
            yield
        except httpx.TimeoutException as exc:
            raise DeadlineExceeded(f"request to {self.host} timed out: {exc}") from exc
        except httpx.TransportError as exc:
            raise TemporarilyUnavailable(f"cannot reach modelport server at {self.host}: {exc}") from exc

    def _send(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        accept: str | None = None,
        content: bytes | None = None,
        content_type: str | None = None,
        params: dict[str, Any] | None = None,
    ) -> httpx.Response:
        headers = {"Accept": accept} if accept else {}
        if content_type:
            headers["Content-Type"] = content_type
        with self._translated_transport_errors():
            response = self._http.request(
                method, path, json=body, content=content, headers=headers or None, params=params
            )
        if response.is_success:
            return response
        try:
            detail: Any = response.json()
        except ValueError:
            detail = response.text
        raise error_from_body(response.status_code, detail, response.headers.get("retry-after"))

    def _json(self, method: str, path: str, body: Any = None) -> Any:
        response = self._send(method, path, body=body)
        if not response.content:
            return {}
        try:
            return response.json()
        except ValueError as exc:
            raise ModelportError(
                f"{method} {path}: the server answered {response.status_code} with a body that is not JSON"
            ) from exc

    def _json_lines(self, method: str, path: str, body: Any) -> Iterator[dict[str, Any]]:
        """The objects of an ``application/x-ndjson`` answer, as they arrive; a non-2xx answer
        is raised as :meth:`_send` raises it."""
        with (
            self._translated_transport_errors(),
            self._http.stream(method, path, json=body, headers={"Accept": _NDJSON}) as response,
        ):
            if not response.is_success:
                response.read()
                try:
                    detail: Any = response.json()
                except ValueError:
                    detail = response.text
                raise error_from_body(response.status_code, detail, response.headers.get("retry-after"))
            for line in response.iter_lines():
                if line.strip():
                    yield json.loads(line)

    # ---- inference, usage and audit tables ---------------------------------------------------
    def usage(self, by: str = "user", since: str | None = None) -> list[dict[str, Any]]:
        """Totals of ``system.serving.endpoint_usage`` by user, endpoint or day (the caller's
        own requests unless they hold SELECT on the table)."""
        path = f"/api/2.0/modelport/usage?by={by}" + (f"&since={since}" if since else "")
        return list(self._json("GET", path).get("rows", []))

    def query_tables(
        self, sql: str, on_progress: Callable[[dict[str, Any]], None] | None = None
    ) -> dict[str, Any]:
        """``{"columns", "rows", "truncated"}`` of a SQL query over the Delta tables (DuckDB).

        With ``on_progress`` the server answers in JSON lines and ``on_progress`` gets each
        progress report of a statement still running, every half second:
        ``{"percent": float | None, "elapsed_s": float[, "ai_query_requests": int]}``. The
        client's timeout then bounds the wait between lines, not the whole query.
        """
        path, body = "/api/2.0/modelport/tables/query", {"sql": sql}
        if on_progress is None:
            return dict(self._json("POST", path, body))
        for line in self._json_lines("POST", path, body):
            if "progress" in line:
                on_progress(line["progress"])
            elif "error_code" in line:  # failed after the lines began: the status was already 200
                raise error_from_body(500, line)
            else:
                return dict(line)
        raise ModelportError(f"POST {path}: the server's answer ended before its result")

    def get_table_permissions(self, full_name: str) -> dict[str, Any]:
        """A table's grants in the permissions API's shape (``access_control_list``)."""
        return dict(self._json("GET", f"/api/2.0/permissions/tables/{_segment(full_name)}"))

    def set_table_permissions(self, full_name: str, acl: list[dict[str, Any]]) -> dict[str, Any]:
        """Replace a table's grants (``[{"user_name"|"group_name"|..., "permission_level"}]``)."""
        path = f"/api/2.0/permissions/tables/{_segment(full_name)}"
        return dict(self._json("PUT", path, {"access_control_list": acl}))

    def update_table_permissions(self, full_name: str, acl: list[dict[str, Any]]) -> dict[str, Any]:
        """Merge entries into a table's grants."""
        path = f"/api/2.0/permissions/tables/{_segment(full_name)}"
        return dict(self._json("PATCH", path, {"access_control_list": acl}))

    def get_table_grants(self, full_name: str, principal: str | None = None) -> list[dict[str, Any]]:
        """A table's direct grants in Unity Catalog's shape: ``[{"principal", "privileges"}]``."""
        path = f"/api/2.1/unity-catalog/permissions/table/{_segment(full_name)}"
        if principal:
            path += f"?principal={quote(principal, safe='')}"
        return list(self._json("GET", path).get("privilege_assignments", []))

    def update_table_grants(
        self, full_name: str, principal: str, add: list[str] | None = None, remove: list[str] | None = None
    ) -> list[dict[str, Any]]:
        """Add and remove privileges of one principal on a table (Unity Catalog's PATCH)."""
        path = f"/api/2.1/unity-catalog/permissions/table/{_segment(full_name)}"
        change = {"principal": principal, "add": add or [], "remove": remove or []}
        return list(self._json("PATCH", path, {"changes": [change]}).get("privilege_assignments", []))

    # ---- feature tables ----------------------------------------------------------------------
    def list_feature_tables(self) -> list[dict[str, Any]]:
        """The feature tables the caller may read, each with ``online`` (its online state or None)."""
        return list(self._json("GET", _FEATURES).get("tables", []))

    def create_feature_table(self, body: dict[str, Any]) -> dict[str, Any]:
        """Create a feature table: ``{"name", "primary_keys", "timestamp_keys", "description",
        "columns": [{"name", "type"}]}``; its info."""
        return dict(self._json("POST", _FEATURES, body))

    def write_feature_table(self, name: str, ipc: bytes, mode: str = "merge") -> dict[str, Any]:
        """Write rows (an Arrow IPC stream) by ``merge`` (upsert on the keys) or ``overwrite``
        (needs MODIFY); the table's info after the write."""
        response = self._send(
            "POST",
            f"{_FEATURES}/{_segment(name)}/write",
            content=ipc,
            content_type=ARROW_STREAM,
            params={"mode": mode},
        )
        return dict(response.json())

    def get_feature_table(self, name: str) -> dict[str, Any]:
        """A feature table: keys, columns, version, freshness (``updated_ms``) and ``online``."""
        return dict(self._json("GET", f"{_FEATURES}/{_segment(name)}"))

    def drop_feature_table(self, name: str) -> dict[str, Any]:
        """Drop a feature table and its online copy (needs MANAGE)."""
        return dict(self._json("DELETE", f"{_FEATURES}/{_segment(name)}"))

    def publish_feature_table(self, name: str, mode: str = "snapshot") -> dict[str, Any]:
        """Publish to the online store (snapshot, triggered or continuous); the online state."""
        return dict(self._json("POST", f"{_FEATURES}/{_segment(name)}/publish", {"mode": mode}))

    def lookup_features(
        self, name: str, keys: list[dict[str, Any]], features: list[str] | None = None
    ) -> list[dict[str, Any] | None]:
        """Rows of the online copy by primary key, in the keys' order (None: no row)."""
        body: dict[str, Any] = {"keys": keys}
        if features:
            body["features"] = features
        return list(self._json("POST", f"{_FEATURES}/{_segment(name)}/lookup", body).get("rows", []))

    def read_feature_table(self, name: str, version: int | None = None, limit: int | None = None) -> bytes:
        """A feature table's rows as an Arrow IPC stream (``pyarrow.ipc.open_stream`` reads it)."""
        params = {k: v for k, v in (("version", version), ("limit", limit)) if v is not None}
        path = f"{_FEATURES}/{_segment(name)}/data" + (f"?{urlencode(params)}" if params else "")
        return self._send("GET", path, accept=ARROW_STREAM).content

    # ---- bulk jobs on tables (modelport batch run) -------------------------------------------
    def upload_file(self, filename: str, content: bytes, purpose: str = "user_data") -> dict[str, Any]:
        """Upload a file through the OpenAI Files API (``user_data``: a table job's input); its
        ``File`` object."""
        built = httpx.Request(
            "POST", "http://x/", files={"file": (filename, content)}, data={"purpose": purpose}
        )
        response = self._send(
            "POST",
            "/serving-endpoints/files",
            content=built.read(),
            content_type=built.headers["content-type"],
        )
        return dict(response.json())

    def create_batch_job(self, body: dict[str, Any]) -> dict[str, Any]:
        """Start (or resume, or find) a table job: ``{"endpoint", "input": {"file_id"} |
        {"table"}, "output_table", "columns", "chunk_rows"}``; the job, with ``action``."""
        return dict(self._json("POST", _BATCH_JOBS, body))

    def list_batch_jobs(self) -> list[dict[str, Any]]:
        """The caller's table jobs (admins: all), newest first."""
        return list(self._json("GET", _BATCH_JOBS).get("jobs", []))

    def get_batch_job(self, job_id: str) -> dict[str, Any]:
        return dict(self._json("GET", f"{_BATCH_JOBS}/{_segment(job_id)}"))

    def cancel_batch_job(self, job_id: str) -> dict[str, Any]:
        """Stop a table job; the rows written stay, and the same work again resumes it."""
        return dict(self._json("POST", f"{_BATCH_JOBS}/{_segment(job_id)}/cancel"))

    # ---- quality monitors (Databricks' quality_monitors API) -------------------------------
    def _monitor(self, table: str) -> str:
        return f"/api/2.1/unity-catalog/tables/{_segment(table)}/monitor"

    def create_monitor(self, table: str, body: dict[str, Any]) -> dict[str, Any]:
        """Create the monitor of ``table`` (``MonitorInfo`` fields; needs MANAGE on it)."""
        return dict(self._json("POST", self._monitor(table), body))

    def get_monitor(self, table: str) -> dict[str, Any]:
        return dict(self._json("GET", self._monitor(table)))

    def update_monitor(self, table: str, body: dict[str, Any]) -> dict[str, Any]:
        """Replace the monitor's configuration (its ``monitor_version`` goes up)."""
        return dict(self._json("PUT", self._monitor(table), body))

    def delete_monitor(self, table: str) -> dict[str, Any]:
        """Delete the monitor and its refreshes; the metrics tables stay."""
        return dict(self._json("DELETE", self._monitor(table)))

    def run_monitor_refresh(self, table: str) -> dict[str, Any]:
        """Queue a refresh (``MonitorRefreshInfo``, PENDING)."""
        return dict(self._json("POST", f"{self._monitor(table)}/refreshes"))

    def list_monitor_refreshes(self, table: str) -> list[dict[str, Any]]:
        """The monitor's refreshes, newest first."""
        return list(self._json("GET", f"{self._monitor(table)}/refreshes").get("refreshes", []))

    def get_monitor_refresh(self, table: str, refresh_id: int) -> dict[str, Any]:
        return dict(self._json("GET", f"{self._monitor(table)}/refreshes/{int(refresh_id)}"))

    def cancel_monitor_refresh(self, table: str, refresh_id: int) -> dict[str, Any]:
        return dict(self._json("POST", f"{self._monitor(table)}/refreshes/{int(refresh_id)}/cancel"))

    # ---- comparisons and replays (safe rollouts) ------------------------------------------------
    @staticmethod
    def _compared(name: str) -> str:
        return f"/api/2.0/modelport/serving-endpoints/{_segment(name)}"

    def compare(
        self,
        name: str,
        candidate: str,
        *,
        source: str = "shadow",
        since: str | int | None = None,
        until: str | int | None = None,
        replay_id: str | None = None,
    ) -> dict[str, Any]:
        """The comparison report of served entity ``candidate`` against live traffic (``since``,
        ``until``: ISO-8601, epoch ms or a time ago such as ``1h``)."""
        params = {
            "candidate": candidate,
            "source": source,
            "since": since,
            "until": until,
            "replay_id": replay_id,
        }
        query = urlencode({k: v for k, v in params.items() if v is not None})
        return dict(self._json("GET", f"{self._compared(name)}/compare?{query}"))

    def create_replay(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        """Replay logged requests against a candidate (``{"candidate", "since", "until", "filter",
        "limit", "rate_per_second"}``); the replay, QUEUED."""
        return dict(self._json("POST", f"{self._compared(name)}/replays", body))

    def list_replays(self, name: str) -> list[dict[str, Any]]:
        return list(self._json("GET", f"{self._compared(name)}/replays").get("replays", []))

    def get_replay(self, name: str, replay_id: str) -> dict[str, Any]:
        return dict(self._json("GET", f"{self._compared(name)}/replays/{_segment(replay_id)}"))

    def cancel_replay(self, name: str, replay_id: str) -> dict[str, Any]:
        return dict(self._json("POST", f"{self._compared(name)}/replays/{_segment(replay_id)}/cancel"))

    # ---- canary rollouts ------------------------------------------------------------------------
    @staticmethod
    def _rollouts(name: str) -> str:
        return f"/api/2.0/serving-endpoints/{_segment(name)}/rollouts"

    def list_rollouts(self, name: str) -> list[dict[str, Any]]:
        """The endpoint's rollouts (config updates with a ``rollout`` policy), newest first."""
        return list(self._json("GET", self._rollouts(name)).get("rollouts", []))

    def current_rollout(self, name: str) -> dict[str, Any]:
        """The endpoint's newest rollout: ``{"id", "state", "step", "steps", "percentage",
        "candidate", "incumbents", "policy", "last_evaluation", ...}`` (404 when none)."""
        return dict(self._json("GET", f"{self._rollouts(name)}/current"))

    def pause_rollout(self, name: str) -> dict[str, Any]:
        """Pause the running rollout (its traffic stays at the step); the rollout."""
        return dict(self._json("POST", f"{self._rollouts(name)}/current/pause"))

    def resume_rollout(self, name: str) -> dict[str, Any]:
        """Resume a paused rollout; the rollout."""
        return dict(self._json("POST", f"{self._rollouts(name)}/current/resume"))

    def cancel_rollout(self, name: str) -> dict[str, Any]:
        """Cancel the rollout: a running or paused one rolls back; the rollout."""
        return dict(self._json("POST", f"{self._rollouts(name)}/current/cancel"))

    # ---- feature specs ---------------------------------------------------------------------
    def create_feature_spec(self, name: str, feature_spec: dict[str, Any]) -> dict[str, Any]:
        """Store a feature spec (its ``feature_spec.yaml`` document as JSON) for feature-serving
        endpoints; needs SELECT on every table it reads. The stored spec."""
        return dict(self._json("POST", _FEATURE_SPECS, {"name": name, "feature_spec": feature_spec}))

    def get_feature_spec(self, name: str) -> dict[str, Any]:
        """A feature spec: ``name``, ``owner``, ``tables``, ``inputs``, ``outputs``, ``feature_spec``."""
        return dict(self._json("GET", f"{_FEATURE_SPECS}/{_segment(name)}"))

    def list_feature_specs(self) -> list[dict[str, Any]]:
        """The feature specs the caller may read."""
        return list(self._json("GET", _FEATURE_SPECS).get("feature_specs", []))

    def delete_feature_spec(self, name: str) -> dict[str, Any]:
        """Delete a feature spec (its owner or an admin) that no endpoint serves."""
        return dict(self._json("DELETE", f"{_FEATURE_SPECS}/{_segment(name)}"))

    # ---- feature functions ------------------------------------------------------------------
    def create_feature_function(self, body: dict[str, Any]) -> dict[str, Any]:
        """Register a feature function (admins): ``{"name", "parameters": [{"name", "type"}],
        "return_type", "entry_point", "source", "description"}``; the stored function."""
        return dict(self._json("POST", _FEATURE_FUNCTIONS, body))

    def get_feature_function(self, name: str) -> dict[str, Any]:
        """A feature function's definition, ``owner`` and ``created_ms``."""
        return dict(self._json("GET", f"{_FEATURE_FUNCTIONS}/{_segment(name)}"))

    def list_feature_functions(self) -> list[dict[str, Any]]:
        """Every registered feature function."""
        return list(self._json("GET", _FEATURE_FUNCTIONS).get("functions", []))

    def delete_feature_function(self, name: str) -> dict[str, Any]:
        """Delete a feature function (admins); models and specs using it keep their copy."""
        return dict(self._json("DELETE", f"{_FEATURE_FUNCTIONS}/{_segment(name)}"))

    # ---- serving endpoints (control plane) ------------------------------------------------
    def list_endpoints(self) -> list[dict[str, Any]]:
        """All endpoints the caller may view (ServingEndpoint summaries)."""
        body = self._json("GET", "/api/2.0/serving-endpoints")
        return list(body.get("endpoints", []))

    def get_endpoint(self, name: str) -> dict[str, Any]:
        """One endpoint in full (ServingEndpointDetailed)."""
        return dict(self._json("GET", f"/api/2.0/serving-endpoints/{_segment(name)}"))

    def create_endpoint(self, body: dict[str, Any], *, dry_run: bool = False) -> dict[str, Any]:
        """Create an endpoint from a CreateEndpoint body; returns at once (the update runs on).
        ``dry_run``: check it all and return the dry-run report (``diff``, ``resolved``); nothing
        is created."""
        path = "/api/2.0/serving-endpoints" + ("?dry_run=true" if dry_run else "")
        return dict(self._json("POST", path, body))

    def delete_endpoint(self, name: str) -> dict[str, Any]:
        """Delete an endpoint and stop its replicas; returns ``{}``."""
        return dict(self._json("DELETE", f"/api/2.0/serving-endpoints/{_segment(name)}"))

    def update_config(self, name: str, config: dict[str, Any], *, dry_run: bool = False) -> dict[str, Any]:
        """Start a config update (EndpointCoreConfigInput); refused with 409 while one runs.
        ``dry_run``: check it all and return the dry-run report (the ``diff`` against the current
        config); nothing changes."""
        path = f"/api/2.0/serving-endpoints/{_segment(name)}/config" + ("?dry_run=true" if dry_run else "")
        return dict(self._json("PUT", path, config))

    def config_versions(
        self, name: str, *, max_results: int | None = None, page_token: str | None = None
    ) -> dict[str, Any]:
        """One page of the endpoint's config versions, newest first: ``{"config_versions",
        "next_page_token"}`` (modelport extension)."""
        params = {k: v for k, v in (("max_results", max_results), ("page_token", page_token)) if v}
        path = f"/api/2.0/serving-endpoints/{_segment(name)}/config-versions"
        return dict(self._json("GET", path + (f"?{urlencode(params)}" if params else "")))

    def list_config_versions(self, name: str) -> list[dict[str, Any]]:
        """Every config version of the endpoint, newest first (all pages)."""
        out: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            page = self.config_versions(name, max_results=500, page_token=token)
            out.extend(page.get("config_versions") or [])
            token = page.get("next_page_token")
            if not token:
                return out

    def get_config_version(self, name: str, version: int) -> dict[str, Any]:
        """One config version in full: its ``config`` (credentials masked) and ``ai_gateway``."""
        path = f"/api/2.0/serving-endpoints/{_segment(name)}/config-versions/{int(version)}"
        return dict(self._json("GET", path))

    def rollback(self, name: str, version: int, reason: str | None = None) -> dict[str, Any]:
        """Serve config ``version`` again as a new version (its AI-gateway settings too); the
        endpoint plus ``rollback: {"to_version", "new_version", "restored", "diff"}``."""
        path = f"/api/2.0/serving-endpoints/{_segment(name)}/config-versions/{int(version)}/rollback"
        return dict(self._json("POST", path, {"reason": reason} if reason else {}))

    def cancel_update(self, name: str) -> dict[str, Any]:
        """Cancel the update in progress; the previous config keeps serving (modelport extension)."""
        path = f"/api/2.0/serving-endpoints/{_segment(name)}/cancel-update"
        return dict(self._json("POST", path, {}))

    def put_rate_limits(self, name: str, rate_limits: list[dict[str, Any]]) -> dict[str, Any]:
        """Replace the legacy rate limits; returns ``{"rate_limits": [...]}``."""
        path = f"/api/2.0/serving-endpoints/{_segment(name)}/rate-limits"
        return dict(self._json("PUT", path, {"rate_limits": rate_limits}))

    def put_ai_gateway(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        """Replace the AI gateway config (AiGatewayConfig in, AiGatewayConfig out)."""
        return dict(self._json("PUT", f"/api/2.0/serving-endpoints/{_segment(name)}/ai-gateway", body))

    def patch_tags(
        self,
        name: str,
        add: list[dict[str, Any]] | None = None,
        delete: list[str] | None = None,
    ) -> dict[str, Any]:
        """Add tags (``{"key", "value"}``) and delete tags by key; returns ``{"tags": [...]}``."""
        body: dict[str, Any] = {}
        if add is not None:
            body["add_tags"] = add
        if delete is not None:
            body["delete_tags"] = delete
        return dict(self._json("PATCH", f"/api/2.0/serving-endpoints/{_segment(name)}/tags", body))

    def logs(self, name: str, served: str) -> str:
        """Recent log lines of one served entity's replicas."""
        path = f"/api/2.0/serving-endpoints/{_segment(name)}/served-models/{_segment(served)}/logs"
        return str(self._json("GET", path).get("logs", ""))

    def build_logs(self, name: str, served: str) -> str:
        """Log of building one served entity's environment."""
        path = f"/api/2.0/serving-endpoints/{_segment(name)}/served-models/{_segment(served)}/build-logs"
        return str(self._json("GET", path).get("logs", ""))

    def events(
        self,
        name: str,
        *,
        kinds: list[str] | None = None,
        max_results: int | None = None,
        page_token: str | None = None,
    ) -> dict[str, Any]:
        """One page of the endpoint's event log, newest first: ``{"events": [{"id", "timestamp",
        "kind", "message", "actor", "config_version", "served_entity", "details"}],
        "next_page_token"}`` (null on the last page); ``kinds``: only these kinds."""
        params: dict[str, Any] = {}
        if kinds:
            params["kind"] = ",".join(kinds)
        if max_results is not None:
            params["max_results"] = max_results
        if page_token:
            params["page_token"] = page_token
        response = self._send("GET", f"/api/2.0/serving-endpoints/{_segment(name)}/events", params=params)
        return dict(response.json())

    def metrics(self, name: str) -> str:
        """The endpoint's metrics as Prometheus text."""
        path = f"/api/2.0/serving-endpoints/{_segment(name)}/metrics"
        return self._send("GET", path, accept="text/plain").text

    def openapi(self, name: str) -> dict[str, Any]:
        """The endpoint's OpenAPI document."""
        path = f"/api/2.0/serving-endpoints/{_segment(name)}/openapi"
        return dict(json.loads(self._send("GET", path, accept="text/plain").text))

    # ---- permissions (keyed by endpoint id, not name) ------------------------------------
    def get_permissions(self, endpoint_id: str) -> dict[str, Any]:
        """ServingEndpointPermissions of one endpoint."""
        return dict(self._json("GET", f"/api/2.0/permissions/serving-endpoints/{_segment(endpoint_id)}"))

    def set_permissions(self, endpoint_id: str, acl: list[dict[str, Any]]) -> dict[str, Any]:
        """Replace the access control list."""
        path = f"/api/2.0/permissions/serving-endpoints/{_segment(endpoint_id)}"
        return dict(self._json("PUT", path, {"access_control_list": acl}))

    def update_permissions(self, endpoint_id: str, acl: list[dict[str, Any]]) -> dict[str, Any]:
        """Merge entries into the access control list."""
        path = f"/api/2.0/permissions/serving-endpoints/{_segment(endpoint_id)}"
        return dict(self._json("PATCH", path, {"access_control_list": acl}))

    def get_permission_levels(self, endpoint_id: str) -> list[dict[str, Any]]:
        """The levels that can be granted: ``[{"permission_level", "description"}]``."""
        path = f"/api/2.0/permissions/serving-endpoints/{_segment(endpoint_id)}/permissionLevels"
        return list(self._json("GET", path).get("permission_levels", []))

    # ---- data plane ---------------------------------------------------------------------
    def query(self, name: str, body: dict[str, Any], served: str | None = None) -> dict[str, Any]:
        """Score a request: through the traffic split, or against one served entity if ``served``."""
        if served is None:
            path = f"/serving-endpoints/{_segment(name)}/invocations"
        else:
            path = f"/serving-endpoints/{_segment(name)}/served-models/{_segment(served)}/invocations"
        return dict(self._json("POST", path, body))

    # ---- waiting ------------------------------------------------------------------------
    def wait_for_update(
        self,
        name: str,
        timeout: float = 1200,
        poll: float = 0.5,
        on_poll: PollCallback | None = None,
    ) -> dict[str, Any]:
        """Poll the endpoint until its config update has settled; return the settled endpoint.

        Like the Databricks SDK, only ``state.config_update`` is looked at: ``NOT_UPDATING``
        ends the wait (``state.ready`` may still be ``NOT_READY``). ``UPDATE_FAILED`` and
        ``UPDATE_CANCELED`` raise :class:`InvalidState` with the server's reason; after
        ``timeout`` seconds :class:`TimeoutError` is raised.
        """
        started = time.monotonic()
        while True:
            endpoint = self.get_endpoint(name)
            elapsed = time.monotonic() - started
            if on_poll is not None:
                on_poll(endpoint, elapsed)
            update = (endpoint.get("state") or {}).get("config_update")
            if update == "NOT_UPDATING":
                return endpoint
            if update in _FAILED_STATES:
                raise InvalidState(_failure_message(endpoint))
            if elapsed >= timeout:
                raise TimeoutError(f"endpoint {name!r} still has config_update={update} after {timeout:g}s")
            time.sleep(poll)

    # ---- tokens -------------------------------------------------------------------------
    def create_token(self, lifetime_seconds: int | None = None, comment: str | None = None) -> dict[str, Any]:
        """A new token for the caller: ``{"token_value", "token_info"}``; the value is shown once."""
        return dict(self._json("POST", "/api/2.0/token/create", _token_body(lifetime_seconds, comment)))

    def list_tokens(self) -> list[dict[str, Any]]:
        """The caller's tokens (``token_info`` objects, never the values)."""
        return list(self._json("GET", "/api/2.0/token/list").get("token_infos", []))

    def delete_token(self, token_id: str) -> dict[str, Any]:
        """Revoke one of the caller's tokens."""
        return dict(self._json("POST", "/api/2.0/token/delete", {"token_id": token_id}))

    def create_token_for(
        self,
        principal: str,
        kind: Literal["user", "service_principal"],
        lifetime_seconds: int | None = None,
        comment: str | None = None,
    ) -> dict[str, Any]:
        """A token on behalf of another principal (admins only): ``{"token_value", "token_info"}``."""
        body = _token_body(lifetime_seconds, comment)
        if kind == "service_principal":
            body["application_id"] = principal
        elif kind == "user":
            body["user_name"] = principal
        else:
            raise ValueError(f"kind must be 'user' or 'service_principal', not {kind!r}")
        return dict(self._json("POST", "/api/2.0/token-management/on-behalf-of/tokens", body))

    # ---- secrets ----------------------------------------------------------------------------
    def create_secret_scope(self, scope: str, initial_manage_principal: str | None = None) -> dict[str, Any]:
        """Create a scope; the caller (or, with ``"users"``, every user) gets MANAGE on it."""
        body: dict[str, Any] = {"scope": scope}
        if initial_manage_principal is not None:
            body["initial_manage_principal"] = initial_manage_principal
        return dict(self._json("POST", "/api/2.0/secrets/scopes/create", body))

    def delete_secret_scope(self, scope: str) -> dict[str, Any]:
        """Delete a scope with its secrets (needs MANAGE)."""
        return dict(self._json("POST", "/api/2.0/secrets/scopes/delete", {"scope": scope}))

    def list_secret_scopes(self) -> list[dict[str, Any]]:
        """Every scope: ``{"name", "backend_type"}`` objects."""
        return list(self._json("GET", "/api/2.0/secrets/scopes/list").get("scopes", []))

    def put_secret(self, scope: str, key: str, value: str | bytes) -> dict[str, Any]:
        """Create or overwrite a secret (needs WRITE); ``bytes`` are sent base64-encoded."""
        body: dict[str, Any] = {"scope": scope, "key": key}
        if isinstance(value, bytes):
            body["bytes_value"] = base64.b64encode(value).decode("ascii")
        else:
            body["string_value"] = value
        return dict(self._json("POST", "/api/2.0/secrets/put", body))

    def delete_secret(self, scope: str, key: str) -> dict[str, Any]:
        """Delete a secret (needs WRITE)."""
        return dict(self._json("POST", "/api/2.0/secrets/delete", {"scope": scope, "key": key}))

    def list_secrets(self, scope: str) -> list[dict[str, Any]]:
        """Keys and ``last_updated_timestamp`` of a scope's secrets, never values (needs READ)."""
        path = "/api/2.0/secrets/list?" + urlencode({"scope": scope})
        return list(self._json("GET", path).get("secrets", []))

    def get_secret(self, scope: str, key: str) -> bytes:
        """A secret's value (needs READ)."""
        path = "/api/2.0/secrets/get?" + urlencode({"scope": scope, "key": key})
        return base64.b64decode(self._json("GET", path).get("value", ""))

    def put_secret_acl(self, scope: str, principal: str, permission: str) -> dict[str, Any]:
        """Grant READ, WRITE or MANAGE on a scope to a user, group or service principal."""
        body = {"scope": scope, "principal": principal, "permission": permission}
        return dict(self._json("POST", "/api/2.0/secrets/acls/put", body))

    def delete_secret_acl(self, scope: str, principal: str) -> dict[str, Any]:
        """Remove a principal's grant on a scope (needs MANAGE)."""
        body = {"scope": scope, "principal": principal}
        return dict(self._json("POST", "/api/2.0/secrets/acls/delete", body))

    def list_secret_acls(self, scope: str) -> list[dict[str, Any]]:
        """``{"principal", "permission"}`` grants of a scope (needs MANAGE)."""
        path = "/api/2.0/secrets/acls/list?" + urlencode({"scope": scope})
        return list(self._json("GET", path).get("items", []))

    def get_secret_acl(self, scope: str, principal: str) -> dict[str, Any]:
        """One principal's grant on a scope (needs MANAGE)."""
        path = "/api/2.0/secrets/acls/get?" + urlencode({"scope": scope, "principal": principal})
        return dict(self._json("GET", path))

    def status(self) -> dict[str, Any]:
        """The server processes sharing the store, the leader and the replicas (admins)."""
        return dict(self._json("GET", "/api/2.0/modelport/status"))

    def rotate_secrets_key(self) -> dict[str, Any]:
        """Rewrite every secret with the server's first secrets key (admins; modelport's own).

        Answers ``{"rewritten": n}``. Run it once every server sharing the store runs with
        ``MODELPORT_SECRETS_KEY=NEW,OLD``; afterwards they may start with ``NEW`` alone.
        """
        return dict(self._json("POST", "/api/2.0/modelport/secrets/rotate-key", {}))

    # ---- principals (minimal SCIM) ----------------------------------------------------------
    def create_user(self, user_name: str, admin: bool = False) -> dict[str, Any]:
        """Create a user; ``admin`` makes it a modelport administrator."""
        body = {"userName": user_name, "modelport_admin": admin}
        return dict(self._json("POST", "/api/2.0/preview/scim/v2/Users", body))

    def create_service_principal(
        self, application_id: str, display_name: str | None = None
    ) -> dict[str, Any]:
        """Create a service principal, named by its application id."""
        body = {"applicationId": application_id, "displayName": display_name or application_id}
        return dict(self._json("POST", "/api/2.0/preview/scim/v2/ServicePrincipals", body))

    def create_group(self, name: str, members: list[str] | None = None) -> dict[str, Any]:
        """Create a group whose members are given by user name or application id."""
        body = {"displayName": name, "members": [{"value": member} for member in members or []]}
        return dict(self._json("POST", "/api/2.0/preview/scim/v2/Groups", body))

    def list_users(self) -> list[dict[str, Any]]:
        """Every user: SCIM User objects (``id``, ``userName``, ``groups``, ...)."""
        return self._scim_list("Users")

    def list_service_principals(self) -> list[dict[str, Any]]:
        """Every service principal: SCIM objects (``id``, ``applicationId``, ``displayName``, ...)."""
        return self._scim_list("ServicePrincipals")

    def list_groups(self) -> list[dict[str, Any]]:
        """Every group: SCIM Group objects (``id``, ``displayName``, ``members``)."""
        return self._scim_list("Groups")

    def delete_user(self, user_id: str) -> dict[str, Any]:
        """Delete a user (admins only) by its id; returns ``{}``."""
        return dict(self._json("DELETE", f"{_SCIM}/Users/{_segment(user_id)}"))

    def delete_service_principal(self, principal_id: str) -> dict[str, Any]:
        """Delete a service principal (admins only) by its id; returns ``{}``."""
        return dict(self._json("DELETE", f"{_SCIM}/ServicePrincipals/{_segment(principal_id)}"))

    def delete_group(self, group_id: str) -> dict[str, Any]:
        """Delete a group (admins only) by its id; its members are not deleted. Returns ``{}``."""
        return dict(self._json("DELETE", f"{_SCIM}/Groups/{_segment(group_id)}"))

    def add_group_member(self, group_id: str, member: str) -> dict[str, Any]:
        """Add a principal to a group (admins only); returns the group.

        ``member`` is the principal's id or, on modelport, its name (user name, application
        id or group name).
        """
        operation = {"op": "add", "path": "members", "value": [{"value": member}]}
        return self._patch_group(group_id, operation)

    def remove_group_member(self, group_id: str, member_id: str) -> dict[str, Any]:
        """Remove a principal, given by id, from a group (admins only); returns the group."""
        operation = {"op": "remove", "path": f'members[value eq "{member_id}"]'}
        return self._patch_group(group_id, operation)

    def _patch_group(self, group_id: str, operation: dict[str, Any]) -> dict[str, Any]:
        body = {"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [operation]}
        return dict(self._json("PATCH", f"{_SCIM}/Groups/{_segment(group_id)}", body))

    def _scim_list(self, resource: str) -> list[dict[str, Any]]:
        return list(self._json("GET", f"{_SCIM}/{resource}").get("Resources", []))

    def me(self) -> dict[str, Any]:
        """The principal the token belongs to."""
        return dict(self._json("GET", "/api/2.0/preview/scim/v2/Me"))


def _token_body(lifetime_seconds: int | None, comment: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if lifetime_seconds is not None:
        body["lifetime_seconds"] = lifetime_seconds
    if comment is not None:
        body["comment"] = comment
    return body


def _failure_message(endpoint: dict[str, Any]) -> str:
    """Why an endpoint's config update failed or was cancelled, from its entities' states."""
    name = endpoint.get("name", "?")
    update = (endpoint.get("state") or {}).get("config_update")
    reasons: list[str] = []
    for section in ("pending_config", "config"):
        for entity in (endpoint.get(section) or {}).get("served_entities") or []:
            state = entity.get("state") or {}
            message = state.get("deployment_state_message")
            if message and state.get("deployment") != "DEPLOYMENT_READY":
                reasons.append(f"{entity.get('name', '?')}: {message}")
        if reasons:
            break
    verb = "was cancelled" if update == "UPDATE_CANCELED" else "failed"
    summary = f"config update of endpoint {name!r} {verb}"
    return f"{summary}: {'; '.join(reasons)}" if reasons else summary
