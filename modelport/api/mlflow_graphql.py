"""Registry permissions inside MLflow's GraphQL route (``/graphql``), field by field.

MLflow's web UI reads runs, experiments, artifact listings, metric histories and model
versions through one GraphQL route, so the route table (:mod:`modelport.api.mlflow_routes`)
lets every authenticated caller reach it and this graphene middleware decides each field for
callers who are not admins, as MLflow's basic-auth does
(``mlflow.server.auth.GraphQLAuthorizationMiddleware``), with modelport's levels:

- ``mlflowGetExperiment`` needs CAN_READ on the experiment; ``mlflowGetRun`` and
  ``mlflowListArtifacts`` on the run's experiment; ``mlflowGetMetricHistoryBulkInterval`` on
  every run's experiment; a nested ``run.experiment`` on that experiment.
- ``mlflowSearchRuns`` and ``mlflowSearchDatasets`` search only the experiments asked for that
  the caller may read (none: refused).
- ``mlflowSearchModelVersions`` and a nested ``run.modelVersions`` keep the versions of the
  models the caller may read.
- Any other field with a resolver of its own (one that may fetch data) is refused unless it is
  known to fetch nothing: a field a new MLflow adds is closed until someone
  decides about it (:data:`NO_DATA`). Fields read from an object already allowed, and
  introspection, pass.

A refused field resolves to null with an entry in the answer's ``errors``
(``PERMISSION_DENIED: ...``). MLflow's middleware returns null silently; the error is better
here: it is how GraphQL reports a field that failed, the UI's client (Apollo, default error
policy) then shows its error as it does for a run that does not exist instead of rendering a
page from missing data, a script can tell "refused" from "empty", and it tells nothing the REST
routes do not (they answer 403 for the same object).

The caller reaches the middleware in the request's ASGI scope: the guard puts a
:class:`GraphqlCaller` under :data:`SCOPE_KEY` (:func:`admitted`), and a2wsgi hands MLflow's
Flask app that same scope as ``environ["asgi.scope"]``. Nothing a client sends can put one
there, it lives and dies with its request (a2wsgi runs Flask in worker threads: no shared
"current caller"), and a request without one (which only a path around the guard could make)
is treated as a caller with no permissions.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starlette.types import Scope

from modelport.control.registry_acl import RegistryAccess
from modelport.errors import InvalidParameterValue, ModelportError, PermissionDenied, TemporarilyUnavailable
from modelport.spec.identity import Caller
from modelport.spec.registry_permissions import RegistryLevel, RegistryObject

if TYPE_CHECKING:
    from graphql import GraphQLError, GraphQLResolveInfo

__all__ = [
    "ENDPOINT",
    "GOVERNED",
    "NO_DATA",
    "SCOPE_KEY",
    "GraphqlCaller",
    "GraphqlPermissions",
    "admitted",
    "install",
]

#: The Flask endpoint of MLflow's GraphQL route.
ENDPOINT = "_graphql"
SCOPE_KEY = "modelport.graphql"

READ = RegistryLevel.CAN_READ
MODEL, EXPERIMENT = RegistryObject.REGISTERED_MODEL, RegistryObject.EXPERIMENT

FieldKey = str | tuple[str, str]
#: The fields checked for callers who are not admins, as a root field's name or (parent type,
#: field), each with its check (a method of :class:`GraphqlPermissions`).
GOVERNED: dict[FieldKey, str] = {
    "mlflowGetExperiment": "_get_experiment",
    "mlflowGetRun": "_get_run",
    "mlflowListArtifacts": "_get_run",
    "mlflowGetMetricHistoryBulkInterval": "_metric_history",
    "mlflowSearchRuns": "_search_in_experiments",
    "mlflowSearchDatasets": "_search_in_experiments",
    "mlflowSearchModelVersions": "_search_model_versions",
    ("MlflowRunExtension", "experiment"): "_run_experiment",
    ("MlflowRunExtension", "modelVersions"): "_run_model_versions",
}
#: Fields with a resolver of their own that fetches nothing: the echo test fields, a metric's
#: NaN-to-null value.
NO_DATA: frozenset[FieldKey] = frozenset({"test", "testMutation", ("MlflowMetricExtension", "value")})

#: Lookup errors that mean "no such run": MLflow's resolver answers for it.
_NO_SUCH_OBJECT = frozenset({"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "BAD_REQUEST"})

Next = Callable[..., Any]


@dataclass(frozen=True)
class GraphqlCaller:
    """Who sent a GraphQL request, and the permissions to check it against."""

    caller: Caller
    access: RegistryAccess


def admitted(scope: Scope, caller: Caller, access: RegistryAccess) -> Scope:
    """The scope MLflow's GraphQL route gets: the caller under :data:`SCOPE_KEY`."""
    return {**scope, SCOPE_KEY: GraphqlCaller(caller, access)}


def _middleware() -> list[GraphqlPermissions]:
    """MLflow's per-request hook (``handlers._get_graphql_auth_middleware``), called inside
    the Flask request of ``/graphql``."""
    from flask import request

    scope = request.environ.get("asgi.scope")
    found = scope.get(SCOPE_KEY) if isinstance(scope, dict) else None
    return [GraphqlPermissions(found if isinstance(found, GraphqlCaller) else None)]


def install() -> None:
    """Make MLflow's GraphQL route run :class:`GraphqlPermissions` (idempotent)."""
    from mlflow.server import handlers

    handlers._get_graphql_auth_middleware = _middleware


def _error(exc: ModelportError) -> GraphQLError:
    from graphql import GraphQLError

    return GraphQLError(f"{exc.error_code}: {exc.message}")


@functools.cache
def _default_resolvers() -> tuple[Callable[..., Any], ...]:
    from graphene.types import resolver

    return (
        resolver.dict_or_attr_resolver,
        resolver.attr_resolver,
        resolver.dict_resolver,
        resolver.get_default_resolver(),
    )


def _reads_its_parent(info: GraphQLResolveInfo) -> bool:
    """Whether the field only reads an attribute of its parent (graphene's default resolver)."""
    field = info.parent_type.fields.get(info.field_name)
    resolve = field.resolve if field is not None else None
    if resolve is None:
        return field is not None  # graphql-core's default: an attribute or key of the parent
    return isinstance(resolve, functools.partial) and resolve.func in _default_resolvers()


def _text(obj: Any, *names: str) -> str:
    """The first of ``names`` set on a GraphQL input (MLflow reads ``run_id or run_uuid``)."""
    return next((str(v) for v in (getattr(obj, n, None) for n in names) if v), "")


class GraphqlPermissions:
    """Graphene middleware for one GraphQL request (MLflow asks for it per request): decides
    every field for its caller (module docstring). Blocking: it reads modelport's store and
    MLflow's tracking store, on MLflow's worker thread. Levels and readable sets are read once
    per request."""

    def __init__(self, who: GraphqlCaller | None) -> None:
        self._who = who
        self._levels: dict[tuple[RegistryObject, str], RegistryLevel | None] = {}
        self._readable: dict[RegistryObject, set[str] | None] = {}

    def resolve(self, next_: Next, root: Any, info: GraphQLResolveInfo, **args: Any) -> Any:
        name, parent = info.field_name, info.parent_type
        if name.startswith("__") or parent.name.startswith("__"):
            return next_(root, info, **args)  # introspection: the schema, no data
        on_root = parent in (info.schema.query_type, info.schema.mutation_type)
        key: FieldKey = name if on_root else (parent.name, name)
        if key in NO_DATA or (self._who is not None and self._who.caller.is_admin):
            return next_(root, info, **args)
        check = GOVERNED.get(key)
        if check is not None:
            self._who_calls()  # before any lookup
            return getattr(self, check)(next_, root, info, args)
        if not on_root and _reads_its_parent(info):
            return next_(root, info, **args)
        raise _error(
            PermissionDenied(
                f"MLflow's GraphQL field {parent.name}.{name} is not governed by modelport's "
                "registry permissions: only admins may read it."
            )
        )

    # ---- checks --------------------------------------------------------------------------
    def _who_calls(self) -> GraphqlCaller:
        if self._who is None:
            raise _error(PermissionDenied("This GraphQL request has no caller: nothing protected is read."))
        return self._who

    def _require_read(self, kind: RegistryObject, object_id: str) -> None:
        who = self._who_calls()
        key = (kind, object_id)
        if key not in self._levels:
            self._levels[key] = who.access.level(who.caller, kind, object_id)
        level = self._levels[key]
        if level is None or level < READ:
            raise _error(
                PermissionDenied(
                    f"'{who.caller.name}' does not have {READ.name} permission on {kind.noun} "
                    f"'{object_id}'" + (f" (has {level.name})." if level else ".")
                )
            )

    def _readable_ids(self, kind: RegistryObject) -> set[str] | None:
        who = self._who_calls()
        if kind not in self._readable:
            self._readable[kind] = who.access.readable(who.caller, kind)
        return self._readable[kind]

    def _require_run(self, run_id: str) -> None:
        """CAN_READ on the run's experiment; a run that does not exist is MLflow's to answer."""
        from mlflow.exceptions import MlflowException
        from mlflow.server import handlers

        try:
            experiment_id = str(handlers._get_tracking_store().get_run(run_id).info.experiment_id)
        except MlflowException as exc:
            if exc.error_code in _NO_SUCH_OBJECT:
                return
            raise _error(
                TemporarilyUnavailable(f"The registry could not be read to check permissions: {exc.message}")
            ) from None
        self._require_read(EXPERIMENT, experiment_id)

    # ---- fields --------------------------------------------------------------------------
    def _get_experiment(self, next_: Next, root: Any, info: GraphQLResolveInfo, args: Any) -> Any:
        experiment_id = _text(args.get("input"), "experiment_id")
        if not experiment_id:
            raise _error(InvalidParameterValue("Give input.experimentId."))
        self._require_read(EXPERIMENT, experiment_id)
        return next_(root, info, **args)

    def _get_run(self, next_: Next, root: Any, info: GraphQLResolveInfo, args: Any) -> Any:
        run_id = _text(args.get("input"), "run_id", "run_uuid")
        if not run_id:
            raise _error(InvalidParameterValue("Give input.runId."))
        self._require_run(run_id)
        return next_(root, info, **args)

    def _metric_history(self, next_: Next, root: Any, info: GraphQLResolveInfo, args: Any) -> Any:
        for run_id in dict.fromkeys(getattr(args.get("input"), "run_ids", None) or []):
            self._require_run(str(run_id))
        return next_(root, info, **args)

    def _search_in_experiments(self, next_: Next, root: Any, info: GraphQLResolveInfo, args: Any) -> Any:
        given = args.get("input")
        asked = [str(e) for e in getattr(given, "experiment_ids", None) or []]
        readable = self._readable_ids(EXPERIMENT)
        kept = asked if readable is None else [e for e in asked if e in readable]
        if not kept:
            raise _error(
                PermissionDenied(
                    f"'{self._who_calls().caller.name}' may read none of the experiments asked for "
                    f"({', '.join(asked) or 'none given'})."
                )
            )
        given.experiment_ids = kept
        return next_(root, info, **args)

    def _keep_readable_versions(self, versions: list[Any]) -> list[Any]:
        readable = self._readable_ids(MODEL)
        return list(versions) if readable is None else [v for v in versions if v.name in readable]

    def _search_model_versions(self, next_: Next, root: Any, info: GraphQLResolveInfo, args: Any) -> Any:
        answer = next_(root, info, **args)
        if answer is not None:
            kept = self._keep_readable_versions(answer.model_versions)
            del answer.model_versions[:]
            answer.model_versions.extend(kept)
        return answer

    def _run_experiment(self, next_: Next, root: Any, info: GraphQLResolveInfo, args: Any) -> Any:
        self._require_read(EXPERIMENT, str(root.info.experiment_id))
        return next_(root, info, **args)

    def _run_model_versions(self, next_: Next, root: Any, info: GraphQLResolveInfo, args: Any) -> Any:
        versions = next_(root, info, **args)
        return None if versions is None else self._keep_readable_versions(versions)
