"""The authorization matrix: every route of the server x every kind of caller, on a real server.

Callers: no token, an expired token, a user with no permission, a user holding each level of
the object the route acts on (an endpoint: CAN_VIEW/CAN_QUERY/CAN_MANAGE; a secret scope:
READ/WRITE/MANAGE; a registered model or an experiment: CAN_READ/CAN_EDIT/CAN_MANAGE; a
table: SELECT/MODIFY/MANAGE), and an admin. :data:`MATRIX` says, per route, what it acts on,
the level it needs and the status an allowed caller gets; the expected status of each cell
follows: 401 without a valid token (public routes excepted), 403 below the level, the route's
own status at or above it. Requests are cheap: reads, writes that change nothing, or a body
that fails validation after the permission check (an allowed caller gets that 400/404/409,
a refused one 403). A route that destroys its object (a delete) gets a fresh object per cell.

:func:`test_every_route_has_a_row` compares :data:`MATRIX` with the server's route table
(``api/openapi_document.route_table``): a new route without a row fails it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from modelport.api.app import ModelportApp
from modelport.api.openapi_document import route_table
from modelport.config import Settings
from tests.serverproc import ServerProcess
from tests.support.names import unique
from tests.support.principals import create_user

SE = "/api/2.0/serving-endpoints"
SCIM = "/api/2.0/preview/scim/v2"
FT = "/api/2.0/feature-engineering/tables"
FF = "/api/2.0/feature-engineering/functions"
FS = "/api/2.0/feature-engineering/feature-specs"
MON = "/api/2.1/unity-catalog/tables/{table_name}/monitor"
MISSING_ID = "0" * 32
CMP = "/api/2.0/modelport/serving-endpoints/{name}"
#: The levels of each kind of object, lowest first.
LEVELS = {
    "endpoint": ("CAN_VIEW", "CAN_QUERY", "CAN_MANAGE"),
    "scope": ("READ", "WRITE", "MANAGE"),
    "model": ("CAN_READ", "CAN_EDIT", "CAN_MANAGE"),
    "experiment": ("CAN_READ", "CAN_EDIT", "CAN_MANAGE"),
    "table": ("SELECT", "MODIFY", "MANAGE"),
}
PUBLIC, USER, ADMIN = "public", "user", "admin"
Body = dict[str, Any] | Callable[[dict[str, str]], dict[str, Any]] | None


@dataclass(frozen=True)
class Row:
    """One route: what it acts on (``public``, ``user``: any caller with a valid token,
    ``admin``, or an object kind of :data:`LEVELS`), the level it needs, the status an allowed
    caller gets, and the request to send (path values, query, JSON body; each may use the
    values of the object: ``name``, ``endpoint_id``, ``scope``, ``object_id``, ...)."""

    on: str
    level: str | None = None
    ok: int = 200
    body: Body = None
    query: dict[str, str] = field(default_factory=dict)
    fresh: bool = False  #: the request destroys its object: a new one for each cell
    signed_out: int = 401  #: the status without a valid token (a page redirects to sign-in)


def _acl_with_unknown_user(level: str) -> Body:
    return {"access_control_list": [{"user_name": "no-such-user@example.com", "permission_level": level}]}


def _scope_body(**extra: str) -> Body:
    return lambda v: {"scope": v["scope"], **extra}


MATRIX: dict[tuple[str, str], Row] = {
    # ---- system ------------------------------------------------------------------------------
    ("GET", "/.well-known/databricks-config"): Row(PUBLIC),
    ("GET", "/health"): Row(PUBLIC),
    ("GET", "/ready"): Row(PUBLIC),
    ("GET", "/metrics"): Row(USER),  # behind a token unless --public-metrics
    ("GET", "/api/2.0/modelport/openapi.json"): Row(PUBLIC),
    ("GET", "/api/2.0/modelport/status"): Row(ADMIN),
    ("GET", "/"): Row(PUBLIC, ok=307),
    ("GET", "/ui/{path}"): Row(PUBLIC),
    ("GET", "/mlflow"): Row(PUBLIC, ok=307),
    ("GET", "/mlflow/"): Row(USER, signed_out=303),  # MLflow's UI: signed out, to the sign-in page
    ("GET", "/mlflow/static-files/{path}"): Row(PUBLIC),
    # sign-in reads the token from its body (a missing one: 400 whoever asks); sign-out clears cookies
    ("POST", "/api/2.0/modelport/session"): Row(PUBLIC, ok=400, body={}),
    ("GET", "/api/2.0/modelport/session"): Row(USER),
    ("DELETE", "/api/2.0/modelport/session"): Row(PUBLIC),
    # ---- serving endpoints -------------------------------------------------------------------
    ("GET", SE): Row(USER),
    ("POST", SE): Row(USER, body=lambda v: {"name": unique("mx-new")}),
    # Validated before the endpoint is looked up: an unknown foundation model is a 400 for all.
    ("POST", f"{SE}/pt"): Row(USER, ok=400, body={"name": "mx-pt", "config": {}}),
    # A traffic route to no served entity: a 400 once the caller may manage the endpoint. (A
    # missing registered model is no use here: it is a 404 for admins but a 403 for others, who
    # are not told whether a model they cannot read exists.)
    ("PUT", f"{SE}/pt/{{name}}/config"): Row(
        "endpoint",
        "CAN_MANAGE",
        ok=400,
        body={
            "config": {
                "served_entities": [{"entity_name": "system.ai.none", "provisioned_model_units": 1}],
                "traffic_config": {"routes": [{"served_model_name": "mx-none", "traffic_percentage": 100}]},
            }
        },
    ),
    ("GET", f"{SE}/{{name}}"): Row("endpoint", "CAN_VIEW"),
    ("DELETE", f"{SE}/{{name}}"): Row("endpoint", "CAN_MANAGE", fresh=True),
    ("PUT", f"{SE}/{{name}}/config"): Row("endpoint", "CAN_MANAGE", ok=400, body={"served_entities": []}),
    ("POST", f"{SE}/{{name}}/cancel-update"): Row("endpoint", "CAN_MANAGE", ok=409),
    ("PUT", f"{SE}/{{name}}/rate-limits"): Row("endpoint", "CAN_MANAGE", body={"rate_limits": []}),
    ("PUT", f"{SE}/{{name}}/ai-gateway"): Row("endpoint", "CAN_MANAGE", body={}),
    ("PATCH", f"{SE}/{{name}}/tags"): Row("endpoint", "CAN_MANAGE", body={}),
    ("PATCH", f"{SE}/{{name}}/notifications"): Row("endpoint", "CAN_MANAGE", body={}),
    ("PATCH", f"{SE}/{{name}}/telemetry-config"): Row("endpoint", "CAN_MANAGE", body={}),
    ("GET", f"{SE}/{{name}}/served-models/{{served}}/logs"): Row("endpoint", "CAN_VIEW", ok=404),
    ("GET", f"{SE}/{{name}}/served-models/{{served}}/build-logs"): Row("endpoint", "CAN_VIEW", ok=404),
    ("GET", f"{SE}/{{name}}/metrics"): Row("endpoint", "CAN_VIEW"),
    ("GET", f"{SE}/{{name}}/openapi"): Row("endpoint", "CAN_VIEW"),
    # config history: the matrix's endpoints have no config, so version 1 is missing (404)
    ("GET", f"{SE}/{{name}}/config-versions"): Row("endpoint", "CAN_VIEW"),
    ("GET", f"{SE}/{{name}}/config-versions/{{version}}"): Row("endpoint", "CAN_VIEW", ok=404),
    ("POST", f"{SE}/{{name}}/config-versions/{{version}}/rollback"): Row(
        "endpoint", "CAN_MANAGE", ok=404, body={}
    ),
    ("GET", f"{SE}/{{name}}/events"): Row("endpoint", "CAN_VIEW"),
    ("GET", f"{SE}/{{name}}/metrics/history"): Row("endpoint", "CAN_VIEW"),
    # rollouts: the matrix's endpoints have none (the current one is missing: 404)
    ("GET", f"{SE}/{{name}}/rollouts"): Row("endpoint", "CAN_VIEW"),
    ("GET", f"{SE}/{{name}}/rollouts/current"): Row("endpoint", "CAN_VIEW", ok=404),
    ("POST", f"{SE}/{{name}}/rollouts/current/pause"): Row("endpoint", "CAN_MANAGE", ok=404, body={}),
    ("POST", f"{SE}/{{name}}/rollouts/current/resume"): Row("endpoint", "CAN_MANAGE", ok=404, body={}),
    ("POST", f"{SE}/{{name}}/rollouts/current/cancel"): Row("endpoint", "CAN_MANAGE", ok=404, body={}),
    # comparisons and replays: the candidate is no served entity of a config-less endpoint (400)
    ("GET", f"{CMP}/compare"): Row("endpoint", "CAN_VIEW", ok=400, query={"candidate": "absent"}),
    ("POST", f"{CMP}/replays"): Row("endpoint", "CAN_MANAGE", ok=400, body={}),
    ("GET", f"{CMP}/replays"): Row("endpoint", "CAN_VIEW"),
    ("GET", f"{CMP}/replays/{{replay_id}}"): Row("endpoint", "CAN_VIEW", ok=404),
    ("POST", f"{CMP}/replays/{{replay_id}}/cancel"): Row("endpoint", "CAN_MANAGE", ok=404, body={}),
    ("GET", "/api/2.0/permissions/serving-endpoints/{endpoint_id}"): Row("endpoint", "CAN_VIEW"),
    ("PUT", "/api/2.0/permissions/serving-endpoints/{endpoint_id}"): Row(
        "endpoint", "CAN_MANAGE", ok=400, body=_acl_with_unknown_user("CAN_VIEW")
    ),
    ("PATCH", "/api/2.0/permissions/serving-endpoints/{endpoint_id}"): Row(
        "endpoint", "CAN_MANAGE", ok=400, body=_acl_with_unknown_user("CAN_VIEW")
    ),
    ("GET", "/api/2.0/permissions/serving-endpoints/{endpoint_id}/permissionLevels"): Row(
        "endpoint", "CAN_VIEW"
    ),
    # ---- queries: the endpoint has no config, so an allowed caller hears so (400 INVALID_STATE) --
    ("POST", "/serving-endpoints/{name}/invocations"): Row(
        "endpoint", "CAN_QUERY", ok=400, body={"inputs": [1]}
    ),
    ("POST", "/serving-endpoints/{name}/served-models/{served}/invocations"): Row(
        "endpoint", "CAN_QUERY", ok=400, body={"inputs": [1]}
    ),
    ("POST", "/serving-endpoints/chat/completions"): Row(
        "endpoint",
        "CAN_QUERY",
        ok=400,
        body=lambda v: {"model": v["name"], "messages": [{"role": "user", "content": "hi"}]},
    ),
    ("POST", "/serving-endpoints/completions"): Row(
        "endpoint", "CAN_QUERY", ok=400, body=lambda v: {"model": v["name"], "prompt": "hi"}
    ),
    ("POST", "/serving-endpoints/embeddings"): Row(
        "endpoint", "CAN_QUERY", ok=400, body=lambda v: {"model": v["name"], "input": "hi"}
    ),
    # The matrix's endpoint is no agent: the Responses route refuses it after the permission check.
    ("POST", "/serving-endpoints/responses"): Row(
        "endpoint", "CAN_QUERY", ok=400, body=lambda v: {"model": v["name"], "input": "hi"}
    ),
    # ---- bulk jobs (OpenAI's Files and Batch APIs): each caller's own; others' are 404 -----------
    ("POST", "/serving-endpoints/files"): Row(USER, ok=400),  # not multipart
    ("GET", "/serving-endpoints/files"): Row(USER),
    ("GET", "/serving-endpoints/files/{file_id}"): Row(USER, ok=404),
    ("DELETE", "/serving-endpoints/files/{file_id}"): Row(USER, ok=404),
    ("GET", "/serving-endpoints/files/{file_id}/content"): Row(USER, ok=404),
    ("POST", "/serving-endpoints/batches"): Row(USER, ok=400, body={}),
    ("GET", "/serving-endpoints/batches"): Row(USER),
    ("GET", "/serving-endpoints/batches/{batch_id}"): Row(USER, ok=404),
    ("POST", "/serving-endpoints/batches/{batch_id}/cancel"): Row(USER, ok=404),
    ("POST", "/api/2.0/modelport/batch/jobs"): Row(USER, ok=400, body={}),
    ("GET", "/api/2.0/modelport/batch/jobs"): Row(USER),
    ("GET", "/api/2.0/modelport/batch/jobs/{job_id}"): Row(USER, ok=404),
    ("POST", "/api/2.0/modelport/batch/jobs/{job_id}/cancel"): Row(USER, ok=404),
    # ---- secrets -----------------------------------------------------------------------------
    ("POST", "/api/2.0/secrets/scopes/create"): Row(USER, body=lambda v: {"scope": unique("mx-scope")}),
    ("POST", "/api/2.0/secrets/scopes/delete"): Row("scope", "MANAGE", body=_scope_body(), fresh=True),
    ("GET", "/api/2.0/secrets/scopes/list"): Row(USER),
    ("POST", "/api/2.0/secrets/put"): Row("scope", "WRITE", body=_scope_body(key="k", string_value="v")),
    ("POST", "/api/2.0/secrets/delete"): Row("scope", "WRITE", ok=404, body=_scope_body(key="absent")),
    ("GET", "/api/2.0/secrets/list"): Row("scope", "READ", query={"scope": "{scope}"}),
    ("GET", "/api/2.0/secrets/get"): Row(
        "scope", "READ", ok=404, query={"scope": "{scope}", "key": "absent"}
    ),
    ("POST", "/api/2.0/secrets/acls/put"): Row(
        "scope", "MANAGE", ok=400, body=_scope_body(principal="no-such-user", permission="READ")
    ),
    ("POST", "/api/2.0/secrets/acls/delete"): Row(
        "scope", "MANAGE", ok=400, body=_scope_body(principal="no-such-user")
    ),
    ("GET", "/api/2.0/secrets/acls/list"): Row("scope", "MANAGE", query={"scope": "{scope}"}),
    ("GET", "/api/2.0/secrets/acls/get"): Row(
        "scope", "MANAGE", ok=400, query={"scope": "{scope}", "principal": "no-such-user"}
    ),
    ("POST", "/api/2.0/modelport/secrets/rotate-key"): Row(ADMIN),
    # ---- tokens ------------------------------------------------------------------------------
    ("POST", "/api/2.0/token/create"): Row(USER, body={"lifetime_seconds": 60, "comment": "matrix"}),
    ("GET", "/api/2.0/token/list"): Row(USER),
    ("POST", "/api/2.0/token/delete"): Row(USER, ok=404, body={"token_id": MISSING_ID}),
    ("POST", "/api/2.0/token-management/on-behalf-of/tokens"): Row(
        ADMIN, ok=404, body={"user_name": "no-such-user@example.com"}
    ),
    ("GET", "/api/2.0/token-management/tokens"): Row(ADMIN),
    ("DELETE", "/api/2.0/token-management/tokens/{token_id}"): Row(USER, ok=404),
    # ---- SCIM --------------------------------------------------------------------------------
    ("GET", f"{SCIM}/Me"): Row(USER),
    ("GET", f"{SCIM}/{{kind}}"): Row(USER),
    ("POST", f"{SCIM}/{{kind}}"): Row(ADMIN, ok=201, body=lambda v: {"userName": unique("mx-made")}),
    ("GET", f"{SCIM}/{{kind}}/{{id}}"): Row(USER),
    ("DELETE", f"{SCIM}/{{kind}}/{{id}}"): Row(ADMIN, ok=204, fresh=True),
    ("PATCH", f"{SCIM}/Groups/{{id}}"): Row(
        ADMIN, body=lambda v: {"Operations": [{"op": "add", "value": [{"value": v["member"]}]}]}
    ),
    ("PATCH", f"{SCIM}/{{kind}}/{{id}}"): Row(
        ADMIN, fresh=True, body={"Operations": [{"op": "replace", "path": "active", "value": True}]}
    ),
    # ---- tables ------------------------------------------------------------------------------
    ("GET", "/api/2.0/modelport/usage"): Row(USER),
    ("POST", "/api/2.0/modelport/tables/query"): Row(USER, body={"sql": "SELECT 1 AS one"}),
    ("GET", "/api/2.0/permissions/tables/{full_name}"): Row("table", "SELECT"),
    ("PUT", "/api/2.0/permissions/tables/{full_name}"): Row(
        "table", "MANAGE", ok=400, body=_acl_with_unknown_user("SELECT")
    ),
    ("PATCH", "/api/2.0/permissions/tables/{full_name}"): Row(
        "table", "MANAGE", ok=400, body=_acl_with_unknown_user("SELECT")
    ),
    ("GET", "/api/2.0/permissions/tables/{full_name}/permissionLevels"): Row("table", "SELECT"),
    ("GET", "/api/2.1/unity-catalog/permissions/{securable_type}/{full_name}"): Row("table", "SELECT"),
    ("PATCH", "/api/2.1/unity-catalog/permissions/{securable_type}/{full_name}"): Row(
        "table", "MANAGE", ok=400, body={"changes": [{"principal": "no-such-user", "add": ["SELECT"]}]}
    ),
    # ---- quality monitors: the usage table, which has no monitor (404; a create's empty body 400) --
    ("POST", MON): Row("table", "MANAGE", ok=400, body={}),
    ("GET", MON): Row("table", "SELECT", ok=404),
    ("PUT", MON): Row("table", "MANAGE", ok=404, body={}),
    ("DELETE", MON): Row("table", "MANAGE", ok=404),
    ("POST", f"{MON}/refreshes"): Row("table", "MANAGE", ok=404),
    ("GET", f"{MON}/refreshes"): Row("table", "SELECT", ok=404),
    ("GET", f"{MON}/refreshes/{{refresh_id}}"): Row("table", "SELECT", ok=404),
    ("POST", f"{MON}/refreshes/{{refresh_id}}/cancel"): Row("table", "MANAGE", ok=404),
    ("GET", "/api/2.0/modelport/monitors"): Row(USER),
    ("GET", "/api/2.0/modelport/monitors/metrics"): Row(
        "table", "SELECT", ok=404, query={"table_name": "{full_name}", "kind": "drift"}
    ),
    ("GET", "/api/2.0/modelport/monitors/alerts"): Row(
        "table", "SELECT", ok=404, query={"table_name": "{full_name}"}
    ),
    # ---- feature tables: the table is the usage table, which is not a feature table (404) -------
    ("GET", FT): Row(USER),
    ("POST", FT): Row(USER, ok=400, body={"name": "mx.features.none", "primary_keys": ["id"], "columns": []}),
    ("GET", f"{FT}/{{full_name}}"): Row("table", "SELECT", ok=404),
    ("DELETE", f"{FT}/{{full_name}}"): Row("table", "MANAGE", ok=404),
    ("POST", f"{FT}/{{full_name}}/write"): Row("table", "MODIFY", ok=404),
    ("GET", f"{FT}/{{full_name}}/data"): Row("table", "SELECT", ok=404),
    ("POST", f"{FT}/{{full_name}}/publish"): Row("table", "MANAGE", ok=404, body={"mode": "snapshot"}),
    ("POST", f"{FT}/{{full_name}}/lookup"): Row("table", "SELECT", ok=400, body={"keys": []}),
    ("GET", "/api/2.0/feature-engineering/serving-endpoints/{name}/features"): Row("endpoint", "CAN_VIEW"),
    # ---- feature functions: reading is open, registering runs code (admins) ------------------
    ("GET", FF): Row(USER),
    ("POST", FF): Row(ADMIN, ok=400, body={"name": "mx.features.none"}),
    ("GET", f"{FF}/{{full_name}}"): Row(USER, ok=404),
    ("DELETE", f"{FF}/{{full_name}}"): Row(ADMIN, ok=404),
    # feature specs: a caller who may not read a spec gets 403 whether it exists or not
    ("GET", FS): Row(USER),
    ("POST", FS): Row(USER, ok=400, body={"name": "mx.features.none"}),
    ("GET", f"{FS}/{{full_name}}"): Row(ADMIN, ok=404),
    ("DELETE", f"{FS}/{{full_name}}"): Row(ADMIN, ok=404),
    # ---- registry permissions ----------------------------------------------------------------
    **{
        key: row
        for collection, kind in (("registered-models", "model"), ("experiments", "experiment"))
        for key, row in {
            ("GET", f"/api/2.0/permissions/{collection}/{{object_id}}"): Row(kind, "CAN_READ"),
            ("PUT", f"/api/2.0/permissions/{collection}/{{object_id}}"): Row(
                kind, "CAN_MANAGE", ok=400, body=_acl_with_unknown_user("CAN_READ")
            ),
            ("PATCH", f"/api/2.0/permissions/{collection}/{{object_id}}"): Row(
                kind, "CAN_MANAGE", ok=400, body=_acl_with_unknown_user("CAN_READ")
            ),
            ("GET", f"/api/2.0/permissions/{collection}/{{object_id}}/permissionLevels"): Row(
                kind, "CAN_READ"
            ),
        }.items()
    },
}


@dataclass
class Principals:
    """Tokens of every caller of the matrix (None: no Authorization header)."""

    tokens: dict[str, str | None]
    #: object kind -> {level: user name}
    grantees: dict[str, dict[str, str]]


class World:
    """The objects the matrix acts on, made by the admin, each granted to its level users."""

    def __init__(self, admin: httpx.Client, grantees: dict[str, dict[str, str]]) -> None:
        self.admin = admin
        self.grantees = grantees
        self.values: dict[str, dict[str, str]] = {kind: self.make(kind) for kind in LEVELS}
        group = admin.post(f"{SCIM}/Groups", json={"displayName": unique("mx-group")})
        assert group.status_code == 201, group.text
        self.values["user"] = {
            "kind": "Users",
            "id": admin.get(f"{SCIM}/Me").json()["id"],
            "token_id": MISSING_ID,
            "file_id": f"file-{MISSING_ID}",
            "batch_id": f"batch-{MISSING_ID}",
            "job_id": f"bjob-{MISSING_ID}",
            "path": "index.html",
            "full_name": "mx.features.none",  # a feature function that does not exist
        }
        self.values["admin"] = {
            **self.values["user"],
            "id": group.json()["id"],
            "member": grantees["endpoint"]["CAN_VIEW"],
        }

    def _ok(self, resp: httpx.Response) -> dict[str, Any]:
        assert resp.status_code < 300, (
            f"{resp.request.method} {resp.request.url}: {resp.status_code} {resp.text}"
        )
        return dict(resp.json()) if resp.content else {}

    def _acl(self, kind: str, field_name: str = "permission_level") -> list[dict[str, str]]:
        return [{"user_name": user, field_name: level} for level, user in self.grantees[kind].items()]

    def make(self, kind: str) -> dict[str, str]:
        """A new object of ``kind`` with each level granted to its user; its path values."""
        a = self.admin
        if kind == "endpoint":
            created = self._ok(a.post(SE, json={"name": unique("mx-ep")}))
            self._ok(
                a.patch(
                    f"/api/2.0/permissions/serving-endpoints/{created['id']}",
                    json={"access_control_list": self._acl(kind)},
                )
            )
            return {
                "name": created["name"],
                "endpoint_id": created["id"],
                "served": "absent",
                "version": "1",
                "replay_id": MISSING_ID,
            }
        if kind == "scope":
            scope = unique("mx-scope")
            self._ok(a.post("/api/2.0/secrets/scopes/create", json={"scope": scope}))
            for level, user in self.grantees[kind].items():
                body = {"scope": scope, "principal": user, "permission": level}
                self._ok(a.post("/api/2.0/secrets/acls/put", json=body))
            return {"scope": scope}
        if kind == "model":
            name = unique("mx-model")
            self._ok(a.post("/api/2.0/mlflow/registered-models/create", json={"name": name}))
            object_id = name
        elif kind == "experiment":
            created = self._ok(a.post("/api/2.0/mlflow/experiments/create", json={"name": unique("mx-exp")}))
            object_id = created["experiment_id"]
        else:
            object_id = "system.serving.endpoint_usage"
        collection = {"model": "registered-models", "experiment": "experiments", "table": "tables"}[kind]
        self._ok(
            a.patch(
                f"/api/2.0/permissions/{collection}/{object_id}",
                json={"access_control_list": self._acl(kind)},
            )
        )
        return {
            "object_id": object_id,
            "full_name": object_id,
            "table_name": object_id,
            "refresh_id": "1",
            "securable_type": "table",
        }

    def fresh(self, row: Row) -> dict[str, str]:
        if row.on in LEVELS:
            return self.make(row.on)
        user = create_user(self.admin, unique("mx-doomed"))
        return {**self.values["user"], "id": user["id"]}


@pytest.fixture(scope="module")
def principals(admin: httpx.Client) -> Principals:
    tokens: dict[str, str | None] = {"no token": None}

    def user_token(prefix: str, lifetime: int | None = None) -> tuple[str, str]:
        name = create_user(admin, unique(prefix))["userName"]
        body: dict[str, Any] = {"user_name": name, "comment": "authorization matrix"}
        if lifetime:
            body["lifetime_seconds"] = lifetime
        resp = admin.post("/api/2.0/token-management/on-behalf-of/tokens", json=body)
        assert resp.status_code == 200, resp.text
        return name, resp.json()["token_value"]

    _, tokens["expired token"] = user_token("mx-expired", lifetime=1)
    _, tokens["no permission"] = user_token("mx-nobody")
    grantees: dict[str, dict[str, str]] = {}
    for kind, levels in LEVELS.items():
        for level in levels:
            name, tokens[f"{kind} {level}"] = user_token(f"mx-{kind}-{level.lower()}")
            grantees.setdefault(kind, {})[level] = name
    tokens["admin"] = str(admin.headers["Authorization"]).split(" ", 1)[1]
    time.sleep(1.5)  # the expired token's second is over (it was never used, so nothing cached it)
    return Principals(tokens, grantees)


def callers_of(row: Row) -> list[str]:
    levels = [f"{row.on} {level}" for level in LEVELS.get(row.on, ())]
    return ["no token", "expired token", "no permission", *levels, "admin"]


def expected(row: Row, caller: str) -> int:
    if row.on == PUBLIC:
        return row.ok
    if caller in ("no token", "expired token"):
        return row.signed_out
    if caller == "admin" or row.on == USER:
        return row.ok
    if caller == "no permission" or row.on == ADMIN:
        return 403
    levels = LEVELS[row.on]
    assert row.level is not None
    held = caller.split(" ", 1)[1]
    return row.ok if levels.index(held) >= levels.index(row.level) else 403


def _fill(template: str, values: dict[str, str]) -> str:
    return template.format(**values)


def test_every_route_has_a_row() -> None:
    table = set(route_table(ModelportApp(Settings()).api.routes))
    assert sorted(table - set(MATRIX)) == [], "routes without a row in the authorization matrix"
    assert sorted(set(MATRIX) - table) == [], "rows of the matrix for routes the server does not have"


def test_each_route_answers_each_caller_as_the_matrix_says(
    security_server: ServerProcess, admin: httpx.Client, principals: Principals
) -> None:
    world = World(admin, principals.grantees)
    wrong: list[str] = []
    cells = 0
    with httpx.Client(base_url=security_server.url, timeout=60, follow_redirects=False) as http:
        for (method, template), row in MATRIX.items():
            for caller in callers_of(row):
                values = world.fresh(row) if row.fresh else world.values.get(row.on, world.values["user"])
                token = principals.tokens[caller]
                headers = {"Authorization": f"Bearer {token}"} if token else {}
                body = row.body(values) if callable(row.body) else row.body
                query = {k: _fill(v, values) for k, v in row.query.items()}
                resp = http.request(method, _fill(template, values), headers=headers, json=body, params=query)
                cells += 1
                want = expected(row, caller)
                if resp.status_code != want:
                    got = f"{resp.status_code}, expected {want}: {resp.text[:160]}"
                    wrong.append(f"{method} {template} as {caller}: {got}")
                elif resp.status_code >= 400:
                    error = resp.json()
                    if not (error.get("error_code") and error.get("message")):
                        wrong.append(
                            f"{method} {template} as {caller}: {resp.status_code} without error_code"
                        )
    routes = len(MATRIX)
    principals_count = len(principals.tokens)
    summary = (
        f"authorization matrix: {routes} routes x {principals_count} principals "
        f"({cells} cells checked: each route against no token, an expired token, no permission, "
        "each level of its object, admin)"
    )
    print(summary)
    (security_server.data_dir / "authorization-matrix.txt").write_text(summary + "\n")
    assert wrong == [], "\n".join(wrong)
