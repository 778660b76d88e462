"""Which requests the audit log ``system.access.audit`` records, and what a row says about one.

Audited (:func:`audited`): every request that may change something (any method but GET, HEAD
and OPTIONS) outside the data plane's query routes, MLflow's registry and artifact writes
included, minus the POSTs that only read (``.../search``, ``/api/2.0/modelport/tables/query``);
every read of a secret's value (``GET /api/2.0/secrets/get``), whatever its outcome; and every
answer 401 or 403 on any route, queries included (a denied permission decision, whichever layer
made it). A successful query costs one string and one integer comparison.

A row (:func:`audit_record`) names who (the authenticated principal, from
``scope["modelport.caller"]``, which ``api/services.py:caller_of``, the data plane's router and
the MLflow mount set), when, from where (``scope["client"]``: the peer, or the forwarded
address when ``--trusted-proxies`` lets uvicorn rewrite it) and with what client
(``User-Agent``), the request id answered in ``x-request-id``, what (a service name from the
path, an action name from the route, the method and path) and the outcome (status, and for
errors the ``error_code`` and, outside the data plane, the message).

Secrets never reach it: bodies are never recorded. ``request_params`` holds only the
identifiers below, taken from the route's path parameters, the query string and the top level
of a JSON body of at most :data:`MAX_CAPTURED_BODY` bytes: names of endpoints, scopes, keys,
principals and models, permission levels, versions and ids. ``string_value``, ``bytes_value``,
token values, ``Authorization`` and every field not listed are left out, whatever the route.
The data plane's error messages are left out too: a provider's message may quote part of a
credential.
"""

from __future__ import annotations

import re
import uuid
from typing import Any
from urllib.parse import parse_qsl

import orjson
from starlette.types import Scope

from modelport.spec.identity import Caller
from modelport.tables.records import AuditRecord

__all__ = [
    "MAX_CAPTURED_BODY",
    "MAX_CAPTURED_ERROR",
    "QUERY_PREFIX",
    "always_audited",
    "audit_record",
    "audited",
    "is_query",
]

#: Largest JSON request body read for identifiers; a longer one contributes none.
MAX_CAPTURED_BODY = 64 * 1024
#: Largest error answer read for its ``error_code`` and message.
MAX_CAPTURED_ERROR = 8 * 1024
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_DENIED = frozenset({401, 403})
#: Where the data plane's queries arrive (the control plane is under /api/2.0/serving-endpoints).
QUERY_PREFIX = "/serving-endpoints/"
#: Bulk jobs' routes (``api/control/batches.py``): under the queries' prefix, audited like the
#: control plane (a job's own queries are not audited, like any query).
_BULK_JOBS = ("/serving-endpoints/files", "/serving-endpoints/batches")
#: Reads audited whatever their outcome: they hand out a secret's value.
_SENSITIVE_READS = frozenset({"/api/2.0/secrets/get"})
#: POST routes that only read.
_READ_POSTS = re.compile(r"(?:/search|/api/2\.0/modelport/tables/query)$")
#: Top-level fields recorded as they are (identifiers, never values).
_PARAMS = frozenset(
    {
        "name",
        "endpoint_name",
        "served_model_name",
        "scope",
        "key",
        "principal",
        "permission",
        "initial_manage_principal",
        "user_name",
        "userName",
        "group_name",
        "displayName",
        "service_principal_name",
        "application_id",
        "applicationId",
        "token_id",
        "version",
        "stage",
        "experiment_id",
        "run_id",
        "model_id",
        "full_name",
        "securable_type",
        "id",
    }
)
#: List fields kept as JSON of these entries' identifier fields (permission changes).
_GRANT_LISTS = frozenset({"access_control_list", "changes"})
_GRANT_FIELDS = frozenset(
    {"user_name", "group_name", "service_principal_name", "permission_level", "principal", "add", "remove"}
)
_MAX_VALUE = 256
_MAX_LIST_JSON = 2048
_MAX_MESSAGE = 512
#: Service names by path prefix, first match wins (Databricks' names where it has one).
_SERVICES = (
    ("/api/2.0/serving-endpoints", "serving"),
    (QUERY_PREFIX, "serving"),
    ("/api/2.0/secrets", "secrets"),
    ("/api/2.0/modelport/secrets", "secrets"),
    ("/api/2.0/token", "tokens"),
    ("/api/2.0/preview/scim", "scim"),
    ("/api/2.0/permissions", "permissions"),
    ("/api/2.1/unity-catalog", "unityCatalog"),
    ("/api/2.0/modelport/tables", "tables"),
    ("/api/2.0/modelport/usage", "tables"),
    ("/api/2.0/mlflow", "mlflow"),
    ("/api/3.0/mlflow", "mlflow"),
    ("/ajax-api", "mlflow"),
    ("/get-artifact", "mlflow"),
    ("/model-versions", "mlflow"),
    ("/mlflow", "mlflow"),
    ("/ui", "ui"),
)
_MLFLOW_TAIL = re.compile(r"/mlflow(?:-artifacts)?/(.+)$")
_ARTIFACT_ACTIONS = {"PUT": "uploadArtifact", "DELETE": "deleteArtifact", "POST": "uploadArtifact"}
_INVOCATIONS = re.compile(r"^/serving-endpoints/([^/]+)(?:/served-models/([^/]+))?/invocations$")


def audited(method: str, path: str, status: int) -> bool:
    """Whether the request goes to the audit log (see the module docstring)."""
    if status in _DENIED:
        return True
    return always_audited(method, path)


def is_query(path: str) -> bool:
    """Whether a path is the data plane's (a query), not a bulk job's route."""
    return path.startswith(QUERY_PREFIX) and not path.startswith(_BULK_JOBS)


def always_audited(method: str, path: str) -> bool:
    """Whether the audit log records a request whatever its outcome (a write, a secret read)."""
    if method in _SAFE_METHODS:
        return path in _SENSITIVE_READS
    return not is_query(path) and not _READ_POSTS.search(path)


def _camel(words: list[str]) -> str:
    parts = [w for word in words for w in re.split(r"[-_]", word) if w]
    return parts[0].lower() + "".join(p[:1].upper() + p[1:] for p in parts[1:]) if parts else ""


def _service(path: str) -> str:
    for prefix, name in _SERVICES:
        if path.startswith(prefix):
            return name
    return "modelport"


def _action(scope: Scope, service: str) -> str:
    path, method = scope["path"], scope["method"]
    if is_query(path):
        return "query"
    if service == "mlflow":
        if "/mlflow-artifacts/" in path or "artifact" in path.rsplit("/", 1)[-1]:
            return _ARTIFACT_ACTIONS.get(method, "getArtifact")
        found = _MLFLOW_TAIL.search(path)
        return _camel(found[1].split("/")) if found else "mlflow"
    handler = scope.get("endpoint")
    name = getattr(handler, "__name__", None) or getattr(getattr(handler, "func", None), "__name__", None)
    return _camel([name]) if name else f"{method.lower()}Unmatched"


def _scalar(value: Any) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)[:_MAX_VALUE]
    return None


def _grants(value: Any) -> str | None:
    if not isinstance(value, list):
        return None
    kept = [
        {k: v for k, v in entry.items() if k in _GRANT_FIELDS} for entry in value if isinstance(entry, dict)
    ]
    return orjson.dumps(kept).decode()[:_MAX_LIST_JSON]


def _identifiers(fields: dict[str, Any], into: dict[str, str]) -> None:
    for key, value in fields.items():
        if key in _PARAMS:
            text = _scalar(value)
        elif key in _GRANT_LISTS:
            text = _grants(value)
        else:
            continue
        if text is not None:
            into.setdefault(key, text)


def request_params(scope: Scope, body: bytes | None) -> dict[str, str]:
    """The identifiers a request names (module docstring): path parameters, then the query
    string's and the JSON body's allowed fields."""
    params: dict[str, str] = {}
    for key, value in (scope.get("path_params") or {}).items():
        text = _scalar(value)
        if text is not None:
            params[key] = text
    if is_query(scope["path"]):
        found = _INVOCATIONS.match(scope["path"])
        if found is not None:
            params["name"] = found[1][:_MAX_VALUE]
            if found[2]:
                params["served_model_name"] = found[2][:_MAX_VALUE]
        return params  # a query's body and query string are the client's data: never read
    query = scope.get("query_string") or b""
    if query:
        _identifiers(dict(parse_qsl(query.decode("latin-1"))), params)
    if body:
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            data = None
        if isinstance(data, dict):
            _identifiers(data, params)
    return params


def _error(status: int, answer: bytes | None, data_plane: bool) -> tuple[str | None, str | None]:
    if status < 400 or not answer:
        return None, None
    try:
        data = orjson.loads(answer)
    except orjson.JSONDecodeError:
        return None, None
    if not isinstance(data, dict):
        return None, None
    code = data.get("error_code")
    message = None if data_plane else data.get("message")
    return (
        code if isinstance(code, str) else None,
        message[:_MAX_MESSAGE] if isinstance(message, str) else None,
    )


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")[:_MAX_VALUE]
    return None


def audit_record(
    scope: Scope,
    request_id: str,
    status: int,
    body: bytes | None,
    answer: bytes | None,
    workspace_id: str | None = None,
) -> AuditRecord:
    """The audit row of a finished request: ``body`` is the captured JSON request body (None
    when not captured), ``answer`` the captured error answer."""
    service = _service(scope["path"])
    caller = scope.get("modelport.caller")
    client = scope.get("client")
    code, message = _error(status, answer, is_query(scope["path"]))
    return AuditRecord(
        event_id=uuid.uuid4().hex,
        request_id=request_id,
        service_name=service,
        action_name=_action(scope, service),
        response={"status_code": status, "error_code": code, "error_message": message},
        workspace_id=workspace_id,
        source_ip_address=client[0] if client else None,
        user_agent=_header(scope, b"user-agent"),
        user_identity={"email": caller.name} if isinstance(caller, Caller) else None,
        request_params=request_params(scope, body) or None,
        http_method=scope["method"],
        path=scope["path"][:1024],
    )
