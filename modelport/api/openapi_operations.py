"""Every route of modelport's REST surface, as its OpenAPI document describes it.

One :class:`~modelport.api.openapi_schemas.Operation` per method and route: what the handler
reads (body fields, required ones, query parameters), what it answers, and who may call it.
A route added to the server needs an entry here: ``tests/unit/api/test_openapi_document.py``
compares this table with the server's route table, both ways. MLflow's own REST API (the
embedded registry's ``/api/2.0/mlflow/...`` paths) is MLflow's document, not this one.
"""

from __future__ import annotations

from modelport.api.openapi_batches import batch_operations
from modelport.api.openapi_config_versions import DRY_RUN, config_version_operations
from modelport.api.openapi_monitors import monitor_operations
from modelport.api.openapi_schemas import OBJECT, Operation, Param, Schema, array_of, obj, string
from modelport.spec import secrets as secret_names
from modelport.spec import validation as endpoint_names
from modelport.spec.endpoint import (
    AiGatewayConfig,
    CreateEndpoint,
    CreatePtEndpoint,
    EndpointCoreConfigInput,
    PatchTags,
    PutRateLimits,
    UpdatePtConfig,
)
from modelport.tables.online_store import PUBLISH_MODES

__all__ = ["OPERATIONS"]

#: ``group_by`` of the usage route: one or more keys, comma-separated.
_USAGE_KEY = "endpoint|user|group|principal_type|served_entity|day|hour"
_USAGE_KEYS = rf"^({_USAGE_KEY})(,({_USAGE_KEY}))*$"

#: One point of an endpoint's metrics history (api/control/metric_history.py).
_HISTORY_POINT = obj(
    {
        "time_ms": {"type": "integer"},
        "requests": {"type": "integer"},
        "requests_per_second": {"type": "number"},
        "errors_4xx": {"type": "integer"},
        "errors_5xx": {"type": "integer"},
        "errors": {"type": "object", "additionalProperties": {"type": "integer"}},
        "latency_p50_ms": {"type": ["number", "null"]},
        "latency_p99_ms": {"type": ["number", "null"]},
        "latency_mean_ms": {"type": ["number", "null"]},
        "replicas": {"type": ["number", "null"]},
        "concurrency": {"type": "number"},
    }
)

SE = "/api/2.0/serving-endpoints"
SCIM = "/api/2.0/preview/scim/v2"
ANY_USER = "any authenticated principal"
ADMIN = "admins"
VIEW, QUERY, MANAGE = (f"{level} on the endpoint" for level in ("CAN_VIEW", "CAN_QUERY", "CAN_MANAGE"))

_SESSION = "/api/2.0/modelport/session"
_WHO = obj(
    {
        "user_name": string(),
        "kind": string(),
        "groups": array_of(string()),
        "is_admin": {"type": "boolean"},
        "expiry_time": {"type": "integer"},
    }
)
_TAG = "serving-endpoints"
_PERMS = "permissions"
_SECRETS = "secrets"
_TOKENS = "tokens"
_SCIM = "scim"
_TABLES = "tables"
_DATA = "queries"
_SYSTEM = "system"

_PERMISSION_LEVEL = string(enum=["CAN_VIEW", "CAN_QUERY", "CAN_MANAGE"])
_ACL_ENTRY = obj(
    {
        "user_name": string(),
        "group_name": string(),
        "service_principal_name": string(),
        "permission_level": _PERMISSION_LEVEL,
    },
    ("permission_level",),
    description="One grant: exactly one of user_name, group_name, service_principal_name.",
)
_ACL_BODY = obj({"access_control_list": array_of(_ACL_ENTRY)})
TABLE_PERMS = "/api/2.0/permissions/tables/{full_name}"
UC_GRANTS = "/api/2.1/unity-catalog/permissions/{securable_type}/{full_name}"
TABLE_SELECT, TABLE_MODIFY, TABLE_MANAGE = (f"{p} on the table" for p in ("SELECT", "MODIFY", "MANAGE"))
FT = "/api/2.0/feature-engineering/tables"
_FEATURE_TABLE_NAME = string(
    "catalog.schema.table: letters, digits and underscores in each part.",
    pattern="^[A-Za-z0-9_]+\\.[A-Za-z0-9_]+\\.[A-Za-z0-9_]+$",
)
_ONLINE_STATE = obj(
    {
        "name": string(),
        "mode": string(enum=list(PUBLISH_MODES)),
        "published_version": {"type": "integer"},
        "published_ms": {"type": "integer"},
        "rows": {"type": "integer"},
        "columns": array_of(string()),
        "primary_keys": array_of(string()),
        "timestamp_keys": array_of(string()),
        "status": string(),
    }
)
_FEATURE_TABLE = obj(
    {
        "name": string(),
        "primary_keys": array_of(string()),
        "timestamp_keys": array_of(string()),
        "description": string(),
        "columns": array_of(obj({"name": string(), "type": string(), "nullable": {"type": "boolean"}})),
        "version": {"type": "integer"},
        "created_ms": {"type": "integer"},
        "updated_ms": {"type": "integer"},
        "online": {"oneOf": [_ONLINE_STATE, {"type": "null"}]},
    }
)
_ENTITY_FEATURES = obj(
    {
        "name": string(),
        "entity_name": {"type": ["string", "null"]},
        "entity_version": {"type": ["string", "null"]},
        "features": array_of(
            obj(
                {
                    "output_name": string(),
                    "table_name": string(),
                    "feature_name": string(),
                    "lookup_key": array_of(string()),
                    "timestamp_lookup_key": array_of(string()),
                    "data_type": {"type": ["string", "null"]},
                    "default_value": {"type": ["string", "null"]},
                }
            )
        ),
        "functions": array_of(
            obj(
                {
                    "output_name": string(),
                    "udf_name": string(),
                    "input_bindings": {"type": "object", "additionalProperties": string()},
                    "data_type": {"type": ["string", "null"]},
                }
            )
        ),
        "problems": array_of(
            obj(
                {
                    "table_name": {"type": ["string", "null"]},
                    "feature_name": string(),
                    "message": string(),
                },
                ("table_name", "message"),
            )
        ),
    }
)
FS = "/api/2.0/feature-engineering/feature-specs"
_FEATURE_SPEC = obj(
    {
        "name": string(),
        "owner": string(),
        "created_ms": {"type": "integer"},
        "tables": array_of(string()),
        "functions": array_of(string()),
        "inputs": array_of(string(description="A column each query row must carry.")),
        "outputs": array_of(string(description="A column each answer row has, in this order.")),
        "feature_spec": obj({}, description="The spec: Databricks' feature_spec.yaml document, as JSON."),
    }
)
FF = "/api/2.0/feature-engineering/functions"
_FUNCTION_TYPE = string(enum=["tinyint", "smallint", "int", "bigint", "float", "double", "string", "boolean"])
_FUNCTION_BODY = {
    "name": string(description="catalog.schema.function (lower-cased)."),
    "parameters": array_of(obj({"name": string(), "type": _FUNCTION_TYPE}, ("name", "type"))),
    "return_type": _FUNCTION_TYPE,
    "entry_point": string(description="The function's name in source."),
    "source": string(description="Python source of a module defining entry_point at its top level."),
    "description": string(),
}
_FEATURE_FUNCTION = obj({**_FUNCTION_BODY, "owner": string(), "created_ms": {"type": "integer"}})
_TABLE_PRIVILEGE = string(enum=["SELECT", "MODIFY", "MANAGE", "ALL_PRIVILEGES"])
_TABLE_ACL_BODY = obj(
    {
        "access_control_list": array_of(
            obj(
                {
                    "user_name": string(),
                    "group_name": string(),
                    "service_principal_name": string(),
                    "permission_level": string(enum=["SELECT", "MODIFY", "MANAGE"]),
                },
                ("permission_level",),
                description="One grant: exactly one of user_name, group_name, service_principal_name.",
            )
        )
    }
)
_PRIVILEGE_ASSIGNMENTS = obj(
    {"privilege_assignments": array_of(obj({"principal": string(), "privileges": array_of(string())}))}
)
_ENDPOINT_NAME = string(
    "An endpoint's name: letters, digits, '-' and '_'.",
    pattern="^[A-Za-z0-9_-]+$",
    minLength=1,
    maxLength=endpoint_names.MAX_NAME_LENGTH,
)
_SECRET_NAME = {"pattern": "^[A-Za-z0-9_.-]+$", "minLength": 1, "maxLength": secret_names.MAX_NAME_LENGTH}
_SCOPE = string("A secret scope's name: letters, digits, '-', '_' and '.'.", **_SECRET_NAME)
_KEY = string("A secret's key: letters, digits, '-', '_' and '.'.", **_SECRET_NAME)
_SCOPE_PERMISSION = string(enum=["READ", "WRITE", "MANAGE"])
_LIFETIME: Schema = {
    "type": "integer",
    "description": "Seconds until the token expires (at most a year); -1 or absent: never.",
}
_VALUES = array_of(obj({"value": string(), "display": string()}))
_SCIM_KINDS: Schema = string(enum=["Users", "ServicePrincipals", "Groups"])
_PRINCIPAL_BODY = obj(
    {
        "userName": string("Users: the user's name (an e-mail address or any name)."),
        "applicationId": string("Service principals: the application id (name)."),
        "displayName": string("Groups: the group's name; users and service principals: shown name."),
        "groups": _VALUES,
        "members": _VALUES,
        "modelport_admin": {"type": "boolean", "description": "Make the new principal an admin."},
    },
    description="Users need userName, service principals applicationId, groups displayName.",
)
_GROUP_PATCH = obj(
    {
        "schemas": array_of(string()),
        "Operations": array_of(
            obj(
                {"op": string(enum=["add", "remove"]), "path": string(), "value": _VALUES},
                ("op",),
            )
        ),
    },
    ("Operations",),
)
_PRINCIPAL_PATCH = obj(
    {
        "schemas": array_of(string()),
        "Operations": array_of(
            obj({"op": string(enum=["replace"]), "path": string(enum=["active"]), "value": {}}, ("op",))
        ),
    },
    ("Operations",),
)
_CHAT_MESSAGE = obj({"role": string(), "content": {"type": ["string", "array", "null"]}}, ("role",))
_QUERY_BODY = obj(
    {
        "dataframe_split": OBJECT,
        "dataframe_records": array_of(OBJECT),
        "instances": {"type": "array"},
        "inputs": {},
        "messages": array_of(_CHAT_MESSAGE),
        "prompt": {"type": ["string", "array"]},
        "input": {"type": ["string", "array"]},
        "stream": {"type": "boolean"},
        "max_tokens": {"type": "integer"},
        "temperature": {"type": "number"},
    },
    minProperties=1,
    description="A custom model's input (dataframe_split, dataframe_records, instances or inputs) "
    "or an llm/v1 request (messages, prompt or input), as the endpoint's task takes.",
)
_OPENAI_COMMON = {
    "model": string("The endpoint's name."),
    "stream": {"type": "boolean"},
    "max_tokens": {"type": "integer"},
    "temperature": {"type": "number"},
}
_TOKEN_INFO = obj(
    {"token_id": string(), "creation_time": {"type": "integer"}, "expiry_time": {"type": "integer"}}
)


_REGISTRY_LEVEL = string(enum=["CAN_READ", "CAN_EDIT", "CAN_MANAGE"])
_REGISTRY_ACL_BODY = obj(
    {
        "access_control_list": array_of(
            obj(
                {
                    "user_name": string(),
                    "group_name": string(),
                    "service_principal_name": string(),
                    "permission_level": _REGISTRY_LEVEL,
                },
                ("permission_level",),
                description="One grant: exactly one of user_name, group_name, service_principal_name.",
            )
        )
    }
)


_MEASURED: Schema = obj(
    {
        "requests": {"type": "integer"},
        "errors": {"type": "integer"},
        "error_rate": {"type": ["number", "null"]},
        "p50_ms": {"type": ["number", "null"]},
        "p99_ms": {"type": ["number", "null"]},
        "compared": {"type": "integer"},
        "agreement": {"type": ["number", "null"]},
    }
)
#: A rollout as ``GET .../rollouts/current`` returns it (``control/rollouts.render``).
_ROLLOUT: Schema = obj(
    {
        "id": string(),
        "config_version": {"type": "integer"},
        "from_version": {"type": ["integer", "null"]},
        "state": {"enum": ["WAITING", "RUNNING", "PAUSED", "SUCCEEDED", "ROLLED_BACK", "CANCELED", "FAILED"]},
        "step": {"type": "integer"},
        "steps": array_of({"type": "number"}),
        "percentage": {"type": "number"},
        "candidate": string(),
        "incumbents": array_of(string()),
        "policy": OBJECT,
        "step_started_timestamp": {"type": ["integer", "null"]},
        "created_timestamp": {"type": "integer"},
        "finished_timestamp": {"type": ["integer", "null"]},
        "creator": string(),
        "message": {"type": ["string", "null"]},
        "last_evaluation": {
            "type": ["object", "null"],
            "properties": {
                "timestamp": {"type": "integer"},
                "step": {"type": "integer"},
                "percentage": {"type": "number"},
                "candidate": _MEASURED,
                "incumbent": _MEASURED,
                "verdict": {"enum": ["HOLD", "ADVANCE", "PROMOTE", "ROLL_BACK"]},
                "reason": string(),
                "breached": {"type": ["string", "null"]},
            },
        },
    }
)


def _registry_permission_ops() -> list[Operation]:
    """Grants on the embedded registry's registered models (id: the model's name) and
    experiments (id: the experiment's id)."""
    out: list[Operation] = []
    for collection, noun in (("registered-models", "registered model"), ("experiments", "experiment")):
        base = f"/api/2.0/permissions/{collection}/{{object_id}}"
        read, manage = (f"{level} on the {noun}" for level in ("CAN_READ", "CAN_MANAGE"))
        out += [
            Operation("GET", base, f"A {noun}'s grants.", _PERMS, read),
            Operation(
                "PUT",
                base,
                f"Replace a {noun}'s grants.",
                _PERMS,
                manage,
                body=_REGISTRY_ACL_BODY,
                body_required=False,
            ),
            Operation(
                "PATCH",
                base,
                f"Add to a {noun}'s grants.",
                _PERMS,
                manage,
                body=_REGISTRY_ACL_BODY,
                body_required=False,
            ),
            Operation("GET", f"{base}/permissionLevels", f"The levels a {noun}'s grants take.", _PERMS, read),
        ]
    return out


_COMPARED = "/api/2.0/modelport/serving-endpoints/{name}"
_NUMBER_OR_NULL: Schema = {"type": ["number", "null"]}
_SIDE = obj(
    {
        "requests": {"type": "integer"},
        "errors": {"type": "integer"},
        "error_rate": _NUMBER_OR_NULL,
        "p50_ms": _NUMBER_OR_NULL,
        "p99_ms": _NUMBER_OR_NULL,
    }
)
_COMPARE_REPORT = obj(
    {
        "endpoint": string(),
        "candidate": string(),
        "incumbent": array_of(string()),
        "source": string(enum=["shadow", "replay"]),
        "kind": {"type": ["string", "null"], "enum": ["labels", "numbers", "text", None]},
        "pairs": {"type": "integer"},
        "compared": {"type": "integer"},
        "agreement": _NUMBER_OR_NULL,
        "correlation": _NUMBER_OR_NULL,
        "similarity": _NUMBER_OR_NULL,
        "similarity_method": {"type": ["string", "null"]},
        "length": {"type": ["object", "null"]},
        "live": _SIDE,
        "candidate_stats": _SIDE,
        "since": {"type": ["integer", "null"]},
        "until": {"type": ["integer", "null"]},
    }
)
_REPLAY = obj(
    {
        "id": string(),
        "state": string(enum=["QUEUED", "RUNNING", "SUCCEEDED", "FAILED", "CANCELED"]),
        "candidate": string(),
        "spec": OBJECT,
        "progress": obj(
            {
                "sent": {"type": "integer"},
                "total": {"type": ["integer", "null"]},
                "errors": {"type": "integer"},
            }
        ),
        "report": {"type": ["object", "null"]},
        "created_timestamp": {"type": "integer"},
        "creator": string(),
        "message": {"type": ["string", "null"]},
    }
)


def _ops() -> list[Operation]:
    name_link = {"name": "$response.body#/name"}
    get_endpoint = "get_api_2_0_serving_endpoints_by_name"
    return [
        # ---- system ------------------------------------------------------------------------
        Operation(
            "GET",
            "/.well-known/databricks-config",
            "Host discovery for the databricks-sdk.",
            _SYSTEM,
            "public",
            public=True,
            response=obj({"oidc_endpoint": string(), "workspace_id": string(), "cloud": string()}),
        ),
        Operation("GET", "/health", "200 while the process runs.", _SYSTEM, "public", public=True),
        Operation(
            "GET",
            "/ready",
            "200 once the store, the reconciler and the registry are up; 503 before.",
            _SYSTEM,
            "public",
            public=True,
        ),
        Operation(
            "GET",
            "/metrics",
            "Prometheus text of the whole server (no token needed with --public-metrics).",
            _SYSTEM,
            ANY_USER,
            media_type="text/plain",
            response=string(),
        ),
        Operation(
            "GET",
            "/api/2.0/modelport/openapi.json",
            "This document.",
            _SYSTEM,
            "public",
            public=True,
        ),
        Operation(
            "GET", "/", "Redirects to the UI.", _SYSTEM, "public", public=True, status=307, media_type=""
        ),
        Operation(
            "GET",
            "/ui/{path}",
            "The serving UI's static files (it signs in with a token).",
            _SYSTEM,
            "public",
            public=True,
            media_type="text/html",
            response=string(),
        ),
        Operation(
            "GET",
            "/mlflow",
            "Redirects to MLflow's UI.",
            _SYSTEM,
            "public",
            public=True,
            status=307,
            media_type="",
        ),
        Operation(
            "GET",
            "/mlflow/",
            "MLflow's own UI (its page; signed out: a redirect to the sign-in page). Its API calls, "
            "/mlflow/<MLflow path>, are the embedded MLflow server's, with the registry permissions.",
            _SYSTEM,
            "public",
            public=True,
            media_type="text/html",
            response=string(),
        ),
        Operation(
            "GET",
            "/mlflow/static-files/{path}",
            "MLflow's UI's static files.",
            _SYSTEM,
            "public",
            public=True,
            media_type="text/html",
            response=string(),
        ),
        # ---- browser sign-in ---------------------------------------------------------------
        Operation(
            "POST",
            _SESSION,
            "Sign in with a token: sets the session cookie (HttpOnly, SameSite=Strict) of a new "
            "short-lived token and the CSRF cookie; writes signed in with the cookie need the header "
            "X-CSRF-Token or a same-origin page (docs/security.md).",
            _TOKENS,
            "public",
            public=True,
            body=obj({"token": string("The access token to sign in with.")}, ("token",)),
            response=_WHO,
        ),
        Operation("GET", _SESSION, "Who the request is signed in as.", _TOKENS, ANY_USER, response=_WHO),
        Operation(
            "DELETE",
            _SESSION,
            "Sign out: deletes the session's token and clears the cookies.",
            _TOKENS,
            "public",
            public=True,
        ),
        # ---- serving endpoints -------------------------------------------------------------
        Operation("GET", SE, "List the endpoints the caller may view.", _TAG, ANY_USER),
        Operation(
            "POST",
            SE,
            "Create an endpoint (the creator gets CAN_MANAGE).",
            _TAG,
            ANY_USER,
            body=CreateEndpoint,
            query=(DRY_RUN,),
            required=("name",),
            fields={"name": _ENDPOINT_NAME},
            links={"GetEndpoint": (get_endpoint, name_link)},
        ),
        Operation(
            "POST",
            f"{SE}/pt",
            "Create a provisioned-throughput endpoint (entities sized in model units).",
            _TAG,
            ANY_USER,
            body=CreatePtEndpoint,
            required=("name", "config"),
            query=(DRY_RUN,),
            fields={"name": _ENDPOINT_NAME},
            links={"GetEndpoint": (get_endpoint, name_link)},
        ),
        Operation(
            "PUT",
            f"{SE}/pt/{{name}}/config",
            "Update a provisioned-throughput endpoint's config.",
            _TAG,
            MANAGE,
            body=UpdatePtConfig,
            required=("config",),
            query=(DRY_RUN,),
        ),
        Operation("GET", f"{SE}/{{name}}", "Get an endpoint.", _TAG, VIEW),
        Operation("DELETE", f"{SE}/{{name}}", "Delete an endpoint.", _TAG, MANAGE),
        Operation(
            "PUT",
            f"{SE}/{{name}}/config",
            "Update the serving config (a new config version).",
            _TAG,
            MANAGE,
            body=EndpointCoreConfigInput,
            query=(DRY_RUN,),
        ),
        Operation(
            "POST",
            f"{SE}/{{name}}/cancel-update",
            "Cancel the config update in progress.",
            _TAG,
            MANAGE,
            body=OBJECT,
            body_required=False,
        ),
        Operation(
            "PUT",
            f"{SE}/{{name}}/rate-limits",
            "Set the legacy rate limits.",
            _TAG,
            MANAGE,
            body=PutRateLimits,
        ),
        Operation(
            "PUT",
            f"{SE}/{{name}}/ai-gateway",
            "Set the AI gateway (usage, inference table, limits, guardrails, response cache, fallbacks).",
            _TAG,
            MANAGE,
            body=AiGatewayConfig,
        ),
        Operation("PATCH", f"{SE}/{{name}}/tags", "Add and delete tags.", _TAG, MANAGE, body=PatchTags),
        Operation(
            "PATCH",
            f"{SE}/{{name}}/notifications",
            "Set the e-mail notifications.",
            _TAG,
            MANAGE,
            body=obj({"email_notifications": OBJECT}),
            body_required=False,
        ),
        Operation(
            "PATCH",
            f"{SE}/{{name}}/telemetry-config",
            "Set the telemetry config.",
            _TAG,
            MANAGE,
            body=obj({"telemetry_config": OBJECT}),
            body_required=False,
        ),
        Operation(
            "GET",
            f"{SE}/{{name}}/served-models/{{served}}/logs",
            "A served entity's runtime logs.",
            _TAG,
            VIEW,
            response=obj({"logs": string()}),
        ),
        Operation(
            "GET",
            f"{SE}/{{name}}/served-models/{{served}}/build-logs",
            "A served entity's build logs.",
            _TAG,
            VIEW,
            response=obj({"logs": string()}),
        ),
        Operation(
            "GET",
            f"{SE}/{{name}}/events",
            "The endpoint's event log, newest first: config updates (who, which version), rollout "
            "decisions, replicas started, stopped, crashed and scaled, cold starts, and rate-limit and "
            "guardrail refusals (RATE_LIMITED, GUARDRAIL_BLOCKED: one event per burst).",
            _TAG,
            VIEW,
            query=(
                Param(
                    "max_results",
                    {"type": "integer", "minimum": 1, "maximum": 1000},
                    description="Default 100.",
                ),
                Param("page_token", description="The next_page_token of the previous page."),
                Param("kind", description="Only these kinds (repeatable, or a comma list)."),
            ),
            response=obj(
                {
                    "events": array_of(
                        obj(
                            {
                                "id": {"type": "integer"},
                                "timestamp": {"type": "integer"},
                                "kind": string(),
                                "message": string(),
                                "actor": {"type": ["string", "null"]},
                                "config_version": {"type": ["integer", "null"]},
                                "served_entity": {"type": ["string", "null"]},
                                "details": {"type": ["object", "null"]},
                            }
                        )
                    ),
                    "next_page_token": {"type": ["string", "null"]},
                }
            ),
        ),
        # ---- metrics history (api/control/metric_history.py) -----------------------------------
        Operation(
            "GET",
            f"{SE}/{{name}}/metrics/history",
            "The endpoint's metrics history (14 days: per minute for 48 hours, then per hour), one "
            "point per step overall and per served entity: requests, requests per second, errors by "
            "status, latency p50/p99/mean, most replicas and mean concurrency.",
            _TAG,
            VIEW,
            query=(
                Param(
                    "since",
                    {"type": "integer", "minimum": 0},
                    description="Milliseconds since the epoch; default an hour before until.",
                ),
                Param(
                    "until",
                    {"type": "integer", "minimum": 0},
                    description="Milliseconds since the epoch; default now.",
                ),
                Param(
                    "step",
                    {"type": "integer", "minimum": 60, "multipleOf": 60},
                    description="Seconds per point; default 60 up to 2 h, 300 up to 48 h, 3600 beyond.",
                ),
                Param("served_entity", description="Only this served entity's figures."),
            ),
            response=obj(
                {
                    "endpoint_name": string(),
                    "since": {"type": "integer"},
                    "until": {"type": "integer"},
                    "step": {"type": "integer"},
                    "points": array_of(_HISTORY_POINT),
                    "served_entities": array_of(obj({"name": string(), "points": array_of(_HISTORY_POINT)})),
                }
            ),
        ),
        # ---- canary rollouts (api/control/rollouts.py) ----------------------------------------
        Operation(
            "GET",
            f"{SE}/{{name}}/rollouts",
            "The endpoint's rollouts (config updates with a `rollout` policy), newest first.",
            _TAG,
            VIEW,
            response=obj({"rollouts": array_of(_ROLLOUT)}),
        ),
        Operation(
            "GET",
            f"{SE}/{{name}}/rollouts/current",
            "The endpoint's newest rollout: state, step, policy and the last evaluation (404 when none).",
            _TAG,
            VIEW,
            response=_ROLLOUT,
        ),
        *(
            Operation(
                "POST",
                f"{SE}/{{name}}/rollouts/current/{verb}",
                summary,
                _TAG,
                MANAGE,
                response=_ROLLOUT,
            )
            for verb, summary in (
                ("pause", "Pause the running rollout: the traffic stays at its step, no evaluation."),
                ("resume", "Resume a paused rollout: its step goes on for the time it had left."),
                (
                    "cancel",
                    "Cancel the rollout: a running or paused one rolls back (traffic to the incumbents "
                    "at once, then the previous config restored as a new version).",
                ),
            )
        ),
        Operation(
            "GET",
            f"{SE}/{{name}}/metrics",
            "The endpoint's metrics in Prometheus text.",
            _TAG,
            VIEW,
            media_type="text/plain",
            response=string(),
        ),
        Operation(
            "GET",
            f"{SE}/{{name}}/openapi",
            "The OpenAPI document of the endpoint's query routes (the UI's playground).",
            _TAG,
            VIEW,
        ),
        # ---- endpoint permissions ----------------------------------------------------------
        Operation(
            "GET",
            "/api/2.0/permissions/serving-endpoints/{endpoint_id}",
            "An endpoint's grants (endpoint_id: the endpoint's id, not its name).",
            _PERMS,
            VIEW,
        ),
        Operation(
            "PUT",
            "/api/2.0/permissions/serving-endpoints/{endpoint_id}",
            "Replace an endpoint's grants.",
            _PERMS,
            MANAGE,
            body=_ACL_BODY,
            body_required=False,
        ),
        Operation(
            "PATCH",
            "/api/2.0/permissions/serving-endpoints/{endpoint_id}",
            "Add to an endpoint's grants.",
            _PERMS,
            MANAGE,
            body=_ACL_BODY,
            body_required=False,
        ),
        Operation(
            "GET",
            "/api/2.0/permissions/serving-endpoints/{endpoint_id}/permissionLevels",
            "The levels an endpoint's grants take.",
            _PERMS,
            VIEW,
        ),
        *_registry_permission_ops(),
        *batch_operations(),
        *monitor_operations(),
        *config_version_operations(),
        # ---- comparisons and replays (safe rollouts; api/control/comparisons.py) ------------
        Operation(
            "GET",
            f"{_COMPARED}/compare",
            "Compare a candidate served entity with live traffic, from the inference table: "
            "agreement, correlation or similarity, errors and latency side by side.",
            _TAG,
            f"{VIEW}, and SELECT on its inference table",
            query=(
                Param("candidate", required=True, description="The served entity to compare."),
                Param("source", string(enum=["shadow", "replay"]), description="Default shadow."),
                Param("since", description="ISO-8601, epoch ms or a time ago (1h); default 24 h ago."),
                Param("until", description="As since; default now."),
                Param("replay_id", description="With source=replay: one replay's rows."),
            ),
            response=_COMPARE_REPORT,
        ),
        Operation(
            "POST",
            f"{_COMPARED}/replays",
            "Replay logged requests (newest first) against a candidate served entity at a bounded "
            "rate, then compare.",
            _TAG,
            MANAGE,
            body=obj(
                {
                    "candidate": string("A served entity of the serving config."),
                    "since": {"type": ["string", "integer"]},
                    "until": {"type": ["string", "integer"]},
                    "filter": obj({"served_entity_name": string(), "status_code": {"type": "integer"}}),
                    "limit": {"type": "integer", "minimum": 1, "maximum": 10000},
                    "rate_per_second": {"type": "number", "minimum": 0.1, "maximum": 1000},
                },
                ("candidate",),
            ),
            response=_REPLAY,
            links={
                "GetReplay": (
                    "get_api_2_0_modelport_serving_endpoints_by_name_replays_by_replay_id",
                    {"name": "$request.path.name", "replay_id": "$response.body#/id"},
                )
            },
        ),
        Operation(
            "GET",
            f"{_COMPARED}/replays",
            "The endpoint's replays, newest first.",
            _TAG,
            VIEW,
            response=obj({"replays": array_of(_REPLAY)}),
        ),
        Operation("GET", f"{_COMPARED}/replays/{{replay_id}}", "One replay.", _TAG, VIEW, response=_REPLAY),
        Operation(
            "POST",
            f"{_COMPARED}/replays/{{replay_id}}/cancel",
            "Cancel a replay.",
            _TAG,
            MANAGE,
            body_required=False,
            response=_REPLAY,
        ),
        # ---- secrets -----------------------------------------------------------------------
        Operation(
            "POST",
            "/api/2.0/secrets/scopes/create",
            "Create a scope (the creator gets MANAGE).",
            _SECRETS,
            ANY_USER,
            body=obj(
                {
                    "scope": _SCOPE,
                    "initial_manage_principal": string("Only 'users' (all users) is supported."),
                    "scope_backend_type": string(enum=["DATABRICKS"]),
                },
                ("scope",),
            ),
        ),
        Operation(
            "POST",
            "/api/2.0/secrets/scopes/delete",
            "Delete a scope and its secrets.",
            _SECRETS,
            "MANAGE on the scope",
            body=obj({"scope": _SCOPE}, ("scope",)),
        ),
        Operation(
            "GET",
            "/api/2.0/secrets/scopes/list",
            "List every scope (names only).",
            _SECRETS,
            ANY_USER,
            response=obj({"scopes": array_of(obj({"name": string(), "backend_type": string()}))}),
        ),
        Operation(
            "POST",
            "/api/2.0/secrets/put",
            "Create or overwrite a secret.",
            _SECRETS,
            "WRITE on the scope",
            body=obj(
                {
                    "scope": _SCOPE,
                    "key": _KEY,
                    "string_value": string("The value as text (or bytes_value)."),
                    "bytes_value": string("The value, base64-encoded (or string_value)."),
                },
                ("scope", "key"),
            ),
        ),
        Operation(
            "POST",
            "/api/2.0/secrets/delete",
            "Delete a secret.",
            _SECRETS,
            "WRITE on the scope",
            body=obj({"scope": _SCOPE, "key": _KEY}, ("scope", "key")),
        ),
        Operation(
            "GET",
            "/api/2.0/secrets/list",
            "A scope's keys and update times (never values).",
            _SECRETS,
            "READ on the scope",
            query=(Param("scope", _SCOPE, required=True),),
        ),
        Operation(
            "GET",
            "/api/2.0/secrets/get",
            "A secret's value, base64-encoded.",
            _SECRETS,
            "READ on the scope",
            query=(Param("scope", _SCOPE, required=True), Param("key", _KEY, required=True)),
            response=obj({"key": string(), "value": string()}),
        ),
        Operation(
            "POST",
            "/api/2.0/secrets/acls/put",
            "Grant a principal a permission on a scope.",
            _SECRETS,
            "MANAGE on the scope",
            body=obj(
                {"scope": _SCOPE, "principal": string(), "permission": _SCOPE_PERMISSION},
                ("scope", "principal", "permission"),
            ),
        ),
        Operation(
            "POST",
            "/api/2.0/secrets/acls/delete",
            "Remove a principal's grant on a scope.",
            _SECRETS,
            "MANAGE on the scope",
            body=obj({"scope": _SCOPE, "principal": string()}, ("scope", "principal")),
        ),
        Operation(
            "GET",
            "/api/2.0/secrets/acls/list",
            "A scope's grants.",
            _SECRETS,
            "MANAGE on the scope",
            query=(Param("scope", _SCOPE, required=True),),
        ),
        Operation(
            "GET",
            "/api/2.0/secrets/acls/get",
            "One principal's grant on a scope.",
            _SECRETS,
            "MANAGE on the scope",
            query=(Param("scope", _SCOPE, required=True), Param("principal", string(), required=True)),
        ),
        Operation(
            "GET",
            "/api/2.0/modelport/status",
            "The server processes sharing the store, the leader (lease holder, epoch, time left) "
            "and the replica registry.",
            _SYSTEM,
            ADMIN,
            response=obj(
                {
                    "process": {"type": "object"},
                    "leader": {"type": "object", "nullable": True},
                    "processes": {"type": "array", "items": {"type": "object"}},
                    "replicas": {"type": "array", "items": {"type": "object"}},
                    "change_version": {"type": "integer"},
                }
            ),
        ),
        Operation(
            "POST",
            "/api/2.0/modelport/secrets/rotate-key",
            "Rewrite every secret with the first configured secrets key.",
            _SECRETS,
            ADMIN,
            response=obj({"rewritten": {"type": "integer"}}),
        ),
        # ---- tokens ------------------------------------------------------------------------
        Operation(
            "POST",
            "/api/2.0/token/create",
            "Create a token for the caller (shown once).",
            _TOKENS,
            ANY_USER,
            body=obj({"lifetime_seconds": _LIFETIME, "comment": string()}),
            body_required=False,
            response=obj({"token_value": string(), "token_info": _TOKEN_INFO}),
        ),
        Operation(
            "GET",
            "/api/2.0/token/list",
            "The caller's tokens.",
            _TOKENS,
            ANY_USER,
            response=obj({"token_infos": array_of(_TOKEN_INFO)}),
        ),
        Operation(
            "POST",
            "/api/2.0/token/delete",
            "Delete one of the caller's tokens (admins: anyone's).",
            _TOKENS,
            ANY_USER,
            body=obj({"token_id": string()}, ("token_id",)),
            body_required=False,
        ),
        Operation(
            "POST",
            "/api/2.0/token-management/on-behalf-of/tokens",
            "Create a token for a user or service principal.",
            _TOKENS,
            ADMIN,
            body=obj(
                {
                    "application_id": string("A service principal (or user_name)."),
                    "user_name": string("A user (or application_id)."),
                    "lifetime_seconds": _LIFETIME,
                    "comment": string(),
                }
            ),
        ),
        Operation("GET", "/api/2.0/token-management/tokens", "Every principal's tokens.", _TOKENS, ADMIN),
        Operation(
            "DELETE",
            "/api/2.0/token-management/tokens/{token_id}",
            "Delete a token (admins: anyone's; others: their own).",
            _TOKENS,
            ANY_USER,
        ),
        # ---- SCIM --------------------------------------------------------------------------
        Operation("GET", f"{SCIM}/Me", "The caller.", _SCIM, ANY_USER),
        Operation(
            "GET",
            f"{SCIM}/{{kind}}",
            "List users, service principals or groups.",
            _SCIM,
            ANY_USER,
            path_params={"kind": _SCIM_KINDS},
        ),
        Operation(
            "POST",
            f"{SCIM}/{{kind}}",
            "Create a user, service principal or group.",
            _SCIM,
            ADMIN,
            body=_PRINCIPAL_BODY,
            path_params={"kind": _SCIM_KINDS},
            status=201,
        ),
        Operation(
            "GET",
            f"{SCIM}/{{kind}}/{{id}}",
            "Get a principal by id (or name).",
            _SCIM,
            ANY_USER,
            path_params={"kind": _SCIM_KINDS},
        ),
        Operation(
            "DELETE",
            f"{SCIM}/{{kind}}/{{id}}",
            "Delete a principal.",
            _SCIM,
            ADMIN,
            path_params={"kind": _SCIM_KINDS},
            status=204,
            media_type="",
        ),
        Operation(
            "PATCH", f"{SCIM}/Groups/{{id}}", "Add or remove group members.", _SCIM, ADMIN, body=_GROUP_PATCH
        ),
        Operation(
            "PATCH",
            f"{SCIM}/{{kind}}/{{id}}",
            "Deactivate or reactivate a user or service principal (replace 'active'); a deactivated "
            "principal's tokens are refused until it is active again. On Groups: members, as above.",
            _SCIM,
            ADMIN,
            path_params={"kind": _SCIM_KINDS},
            body=_PRINCIPAL_PATCH,
        ),
        # ---- tables ------------------------------------------------------------------------
        Operation(
            "GET",
            "/api/2.0/modelport/usage",
            "Totals of system.serving.endpoint_usage (the caller's own requests without SELECT).",
            _TABLES,
            ANY_USER,
            query=(
                Param("by", string(enum=["user", "endpoint", "day"])),
                Param(
                    "group_by",
                    string(pattern=_USAGE_KEYS),
                    description="Keys, comma-separated: endpoint, user, group, principal_type, "
                    "served_entity, day, hour.",
                ),
                Param("since", string(format="date"), description="First day counted (YYYY-MM-DD)."),
                Param("until", string(format="date"), description="Last day counted (YYYY-MM-DD)."),
                Param("endpoint", description="Only this endpoint's requests."),
                Param("user", description="Only this requester's requests."),
                Param("served_entity", description="Only this served entity's requests."),
                Param("group", description="Only requests of this group's members."),
                Param("series", string(enum=["day", "hour"]), description="Also totals by day or hour."),
                Param("format", string(enum=["json", "csv"]), description="csv: text/csv rows."),
            ),
        ),
        Operation(
            "POST",
            "/api/2.0/modelport/tables/query",
            "A read-only SQL query over the Delta tables the caller may read.",
            _TABLES,
            ANY_USER,
            body=obj({"sql": string("One SELECT; tables named catalog.schema.table.")}, ("sql",)),
            response=obj(
                {
                    "columns": array_of(string()),
                    "rows": array_of({"type": "array"}),
                    "truncated": {"type": "boolean"},
                }
            ),
        ),
        Operation(
            "GET",
            "/api/2.0/modelport/monitors",
            "The monitors of the tables the caller may read, with their latest refresh and drift.",
            _TABLES,
            ANY_USER,
            response=obj({"monitors": array_of(OBJECT)}),
        ),
        Operation(
            "GET",
            "/api/2.0/modelport/monitors/metrics",
            "A monitor's profile or drift metrics as series (the web UI's charts).",
            _TABLES,
            "SELECT on the monitored table and on the metrics table",
            query=(
                Param("table_name", string(), required=True),
                Param("kind", string(enum=["drift", "profile"])),
                Param("granularity", string()),
                Param("slice_key", string()),
                Param("slice_value", string()),
                Param("column_name", string(), description="Repeatable; default every column."),
                Param("drift_type", string(enum=["CONSECUTIVE", "BASELINE"])),
                Param("log_type", string(enum=["INPUT", "BASELINE"])),
            ),
            response=obj(
                {
                    "metrics_table": string(),
                    "granularity": string(),
                    "columns": array_of(string()),
                    "rows": array_of({"type": "array"}),
                    "truncated": {"type": "boolean"},
                }
            ),
        ),
        # ---- feature tables ----------------------------------------------------------------
        Operation(
            "GET",
            FT,
            "The feature tables the caller may read, each with its online store state.",
            _TABLES,
            ANY_USER,
            response=obj({"tables": array_of(_FEATURE_TABLE)}),
        ),
        Operation(
            "POST",
            FT,
            "Create an empty feature table (the creator gets MANAGE on it).",
            _TABLES,
            ANY_USER,
            body=obj(
                {
                    "name": _FEATURE_TABLE_NAME,
                    "primary_keys": array_of(string(), minItems=1),
                    "timestamp_keys": array_of(string(), maxItems=1),
                    "description": string(),
                    "columns": array_of(
                        obj(
                            {
                                "name": string(),
                                "type": string(
                                    "An Arrow type: int64, double, string, timestamp[us, tz=UTC], ..."
                                ),
                                "nullable": {"type": "boolean"},
                            },
                            ("name", "type"),
                        ),
                        minItems=1,
                    ),
                },
                ("name", "primary_keys", "columns"),
            ),
            response=_FEATURE_TABLE,
        ),
        Operation(
            "GET",
            f"{FT}/{{full_name}}",
            "A feature table: keys, columns, version, freshness and online state.",
            _TABLES,
            TABLE_SELECT,
            response=_FEATURE_TABLE,
        ),
        Operation(
            "DELETE",
            f"{FT}/{{full_name}}",
            "Drop a feature table, its online copy and its grants.",
            _TABLES,
            TABLE_MANAGE,
        ),
        Operation(
            "POST",
            f"{FT}/{{full_name}}/write",
            "Write rows, sent as an Arrow IPC stream (application/vnd.apache.arrow.stream, at most 16 MiB "
            "a call): merge upserts on the primary keys, overwrite replaces every row.",
            _TABLES,
            TABLE_MODIFY,
            query=(Param("mode", string(enum=["merge", "overwrite"]), description="Default: merge."),),
            response=_FEATURE_TABLE,
        ),
        Operation(
            "GET",
            f"{FT}/{{full_name}}/data",
            "A feature table's rows as an Arrow IPC stream.",
            _TABLES,
            TABLE_SELECT,
            query=(
                Param("version", {"type": "integer", "minimum": 0}, description="A Delta version."),
                Param("limit", {"type": "integer", "minimum": 0}, description="At most this many rows."),
            ),
            media_type="application/vnd.apache.arrow.stream",
            response=string(format="binary"),
        ),
        Operation(
            "POST",
            f"{FT}/{{full_name}}/publish",
            "Publish a feature table to the online store; continuous also follows its new versions "
            "(another mode stops that).",
            _TABLES,
            TABLE_MANAGE,
            body=obj({"mode": string(enum=list(PUBLISH_MODES))}),
            body_required=False,
            response=_ONLINE_STATE,
        ),
        Operation(
            "POST",
            f"{FT}/{{full_name}}/lookup",
            "Rows of the online copy by primary key, in the keys' order (null: no row); 503 when the "
            "table is not published.",
            _TABLES,
            TABLE_SELECT,
            body=obj(
                {
                    "keys": array_of(OBJECT, minItems=1),
                    "features": array_of(string()),
                    "lookback_ms": {"type": "integer", "minimum": 0},
                },
                ("keys",),
            ),
            response=obj({"rows": array_of({"type": ["object", "null"]})}),
        ),
        Operation(
            "GET",
            "/api/2.0/feature-engineering/serving-endpoints/{name}/features",
            "The features each served entity of an endpoint looks up (and its feature functions), with "
            "what stops a lookup now: a table not published or gone, a feature missing from its copy.",
            _TABLES,
            VIEW,
            response=obj({"served_entities": array_of(_ENTITY_FEATURES)}),
        ),
        # ---- feature specs -----------------------------------------------------------------
        Operation(
            "GET",
            FS,
            "The feature specs the caller may read (owned, or SELECT on every table they read).",
            _TABLES,
            ANY_USER,
            response=obj({"feature_specs": array_of(_FEATURE_SPEC)}),
        ),
        Operation(
            "POST",
            FS,
            "Create a feature spec for feature-serving endpoints; the creator owns it. The features "
            "are checked against their tables; function definitions are the registered ones.",
            _TABLES,
            "SELECT on every table the spec reads",
            body=obj(
                {
                    "name": _FEATURE_TABLE_NAME,
                    "feature_spec": obj({}, description="Databricks' feature_spec.yaml document, as JSON."),
                },
                ("name", "feature_spec"),
            ),
            response=_FEATURE_SPEC,
        ),
        Operation(
            "GET",
            f"{FS}/{{full_name}}",
            "A feature spec: its tables, functions, inputs, outputs and document.",
            _TABLES,
            "its owner, admins, SELECT on every table it reads",
            response=_FEATURE_SPEC,
        ),
        Operation(
            "DELETE",
            f"{FS}/{{full_name}}",
            "Delete a feature spec; 400 while an endpoint's current config serves it.",
            _TABLES,
            "its owner, admins",
        ),
        # ---- feature functions -------------------------------------------------------------
        Operation(
            "GET",
            FF,
            "The registered feature functions, with their definitions.",
            _TABLES,
            ANY_USER,
            response=obj({"functions": array_of(_FEATURE_FUNCTION)}),
        ),
        Operation(
            "POST",
            FF,
            "Register a feature function (Python source, checked but not run here).",
            _TABLES,
            ADMIN,
            body=obj(_FUNCTION_BODY, ("name", "parameters", "return_type", "entry_point", "source")),
            response=_FEATURE_FUNCTION,
        ),
        Operation(
            "GET",
            f"{FF}/{{full_name}}",
            "A feature function's definition.",
            _TABLES,
            ANY_USER,
            response=_FEATURE_FUNCTION,
        ),
        Operation(
            "DELETE",
            f"{FF}/{{full_name}}",
            "Delete a feature function; models and feature specs that use it keep their copy.",
            _TABLES,
            ADMIN,
        ),
        # ---- table grants ------------------------------------------------------------------
        Operation(
            "GET",
            TABLE_PERMS,
            "A table's grants (full_name: catalog.schema.table).",
            _PERMS,
            TABLE_SELECT,
        ),
        Operation(
            "PUT",
            TABLE_PERMS,
            "Replace a table's grants.",
            _PERMS,
            TABLE_MANAGE,
            body=_TABLE_ACL_BODY,
            body_required=False,
        ),
        Operation(
            "PATCH",
            TABLE_PERMS,
            "Add to a table's grants.",
            _PERMS,
            TABLE_MANAGE,
            body=_TABLE_ACL_BODY,
            body_required=False,
        ),
        Operation(
            "GET",
            f"{TABLE_PERMS}/permissionLevels",
            "The privileges a table's grants take.",
            _PERMS,
            TABLE_SELECT,
        ),
        Operation(
            "GET",
            UC_GRANTS,
            "A table's grants, Unity Catalog's shape (securable_type: table).",
            _PERMS,
            TABLE_SELECT,
            query=(Param("principal", description="Only this principal's grants."),),
            response=_PRIVILEGE_ASSIGNMENTS,
        ),
        Operation(
            "PATCH",
            UC_GRANTS,
            "Add and remove privileges on a table, Unity Catalog's shape.",
            _PERMS,
            TABLE_MANAGE,
            body=obj(
                {
                    "changes": array_of(
                        obj(
                            {
                                "principal": string("A user, group or service principal name."),
                                "add": array_of(_TABLE_PRIVILEGE),
                                "remove": array_of(_TABLE_PRIVILEGE),
                            },
                            ("principal",),
                        )
                    ),
                    "omit_permissions_in_response": {"type": "boolean"},
                }
            ),
            body_required=False,
            response=_PRIVILEGE_ASSIGNMENTS,
        ),
        # ---- queries (the data plane) ------------------------------------------------------
        Operation(
            "POST",
            "/serving-endpoints/{name}/invocations",
            "Query an endpoint (traffic split across its served entities).",
            _DATA,
            QUERY,
            body=_QUERY_BODY,
        ),
        Operation(
            "POST",
            "/serving-endpoints/{name}/served-models/{served}/invocations",
            "Query one served entity of an endpoint.",
            _DATA,
            QUERY,
            body=_QUERY_BODY,
        ),
        Operation(
            "POST",
            "/serving-endpoints/chat/completions",
            "OpenAI-compatible chat completions; model: the endpoint's name.",
            _DATA,
            QUERY,
            body=obj(
                {**_OPENAI_COMMON, "messages": array_of(_CHAT_MESSAGE, minItems=1)}, ("model", "messages")
            ),
        ),
        Operation(
            "POST",
            "/serving-endpoints/completions",
            "OpenAI-compatible completions; model: the endpoint's name.",
            _DATA,
            QUERY,
            body=obj({**_OPENAI_COMMON, "prompt": {"type": ["string", "array"]}}, ("model", "prompt")),
        ),
        Operation(
            "POST",
            "/serving-endpoints/embeddings",
            "OpenAI-compatible embeddings; model: the endpoint's name.",
            _DATA,
            QUERY,
            body=obj(
                {"model": string("The endpoint's name."), "input": {"type": ["string", "array"]}},
                ("model", "input"),
            ),
        ),
        Operation(
            "POST",
            "/serving-endpoints/responses",
            "OpenAI Responses API for agent/v1/responses agents (MLflow ResponsesAgent); model: the "
            "endpoint's name; stream: Responses events (event: and data: lines).",
            _DATA,
            QUERY,
            body=obj(
                {
                    "model": string("The endpoint's name."),
                    "input": {
                        "type": ["string", "array"],
                        "description": "A user message, or the conversation's items.",
                    },
                    "instructions": string("A system message put before the input."),
                    "stream": {"type": "boolean"},
                    "metadata": {"type": "object", "additionalProperties": {"type": "string"}},
                    "custom_inputs": {"type": "object", "description": "Passed to the agent as it is."},
                    "context": obj({"conversation_id": string(), "user_id": string()}),
                },
                ("model", "input"),
            ),
        ),
    ]


#: Every operation, in the order the document lists them.
OPERATIONS: tuple[Operation, ...] = tuple(_ops())
