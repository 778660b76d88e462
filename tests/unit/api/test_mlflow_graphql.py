"""The GraphQL middleware's decisions that need no server: fields it does not know are closed,
MLflow's schema has no field with a resolver of its own that nobody decided about, and a
request that reaches MLflow's GraphQL route without a caller reads nothing protected.
(tests/integration/test_mlflow_graphql.py checks the levels on a real server.)"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import graphene
import pytest

from modelport.api.mlflow_graphql import (
    GOVERNED,
    NO_DATA,
    SCOPE_KEY,
    GraphqlCaller,
    GraphqlPermissions,
    install,
)
from modelport.control.registry_acl import RegistryAccess
from modelport.spec.identity import Caller
from modelport.store import open_database


class Box(graphene.ObjectType):
    label = graphene.String()
    fetched = graphene.String()

    def resolve_fetched(self, info: Any) -> str:
        return "fetched"


class Query(graphene.ObjectType):
    # ``test`` is a name the middleware knows fetches nothing; ``other`` is not
    test = graphene.Field(Box)
    other = graphene.String()

    def resolve_test(self, info: Any) -> Box:
        return Box(label="plain")

    def resolve_other(self, info: Any) -> str:
        return "other"


SCHEMA = graphene.Schema(query=Query)


@pytest.fixture(scope="module")
def mlflow_server() -> Any:
    """``mlflow.server``, imported before the unit tests' no-process rule applies (MLflow's
    import asks ``uname``)."""
    import mlflow.server
    import mlflow.server.graphql.graphql_schema_extensions

    return mlflow.server


@pytest.fixture
def access(tmp_path: Path) -> RegistryAccess:
    return RegistryAccess(open_database(f"sqlite:///{tmp_path / 'm.db'}"))


def caller(*, admin: bool) -> Caller:
    return Caller(
        id=5, name="bob", kind="user", groups=("admins",) if admin else (), principal_ids=frozenset({5})
    )


def run(query: str, who: GraphqlCaller | None) -> tuple[Any, list[str]]:
    result = SCHEMA.execute(query, middleware=[GraphqlPermissions(who)])
    return result.data, sorted(e.message for e in result.errors or [])


def test_a_field_with_a_resolver_of_its_own_is_closed_to_users(access: RegistryAccess) -> None:
    data, errors = run("{ test { label fetched } other }", GraphqlCaller(caller(admin=False), access))
    assert data == {"test": {"label": "plain", "fetched": None}, "other": None}
    assert errors == [
        "PERMISSION_DENIED: MLflow's GraphQL field Box.fetched is not governed by modelport's "
        "registry permissions: only admins may read it.",
        "PERMISSION_DENIED: MLflow's GraphQL field Query.other is not governed by modelport's "
        "registry permissions: only admins may read it.",
    ]


def test_admins_read_every_field(access: RegistryAccess) -> None:
    data, errors = run("{ test { label fetched } other }", GraphqlCaller(caller(admin=True), access))
    assert data == {"test": {"label": "plain", "fetched": "fetched"}, "other": "other"}
    assert errors == []


def test_introspection_is_open() -> None:
    data, errors = run('{ __typename __type(name: "Box") { name } }', None)
    assert data == {"__typename": "Query", "__type": {"name": "Box"}}
    assert errors == []


def test_every_mlflow_field_with_its_own_resolver_is_decided(mlflow_server: Any) -> None:
    """A new MLflow version with a new resolving field fails here until someone decides (it is
    closed meanwhile); a decision about a field MLflow no longer has fails too."""
    from graphene.types.resolver import get_default_resolver
    from graphql import GraphQLObjectType
    from mlflow.server.graphql.graphql_schema_extensions import schema

    gql = schema.graphql_schema
    resolving: set[Any] = set()
    for type_ in gql.type_map.values():
        if not isinstance(type_, GraphQLObjectType) or type_.name.startswith("__"):
            continue
        on_root = type_ in (gql.query_type, gql.mutation_type)
        for name, field in type_.fields.items():
            resolve = field.resolve
            default = isinstance(resolve, functools.partial) and resolve.func is get_default_resolver()
            if on_root or not default:
                resolving.add(name if on_root else (type_.name, name))
    assert resolving == set(GOVERNED) | NO_DATA


@pytest.fixture
def mlflow_graphql_hook(mlflow_server: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """MLflow's Flask app with modelport's GraphQL middleware installed (undone after)."""
    handlers = mlflow_server.handlers
    monkeypatch.setattr(handlers, "_get_graphql_auth_middleware", handlers._get_graphql_auth_middleware)
    install()
    yield mlflow_server.app


@pytest.mark.parametrize(
    "environ",
    [
        {},  # no ASGI scope at all
        {"asgi.scope": {"type": "http"}},  # a scope the guard did not admit
        {"asgi.scope": {"type": "http", SCOPE_KEY: {"caller": "admin"}}},  # not a GraphqlCaller
    ],
)
def test_a_graphql_request_without_an_admitted_caller_reads_nothing_protected(
    mlflow_graphql_hook: Any, environ: dict[str, Any]
) -> None:
    from mlflow.server import handlers
    from mlflow.server.graphql.graphql_schema_extensions import schema

    query = """{
      mlflowGetRun(input: {runId: "0123"}) { run { info { runId } } }
      mlflowGetExperiment(input: {experimentId: "0"}) { experiment { name } }
      mlflowSearchModelVersions(input: {filter: ""}) { modelVersions { name } }
      test(inputString: "hi") { output }
    }"""
    with mlflow_graphql_hook.test_request_context(
        "/graphql", method="POST", headers={"X-Modelport-Graphql": "admin"}, environ_base=environ
    ):
        result = schema.execute(query, middleware=handlers._get_graphql_auth_middleware())
    assert result.data == {
        "mlflowGetRun": None,
        "mlflowGetExperiment": None,
        "mlflowSearchModelVersions": None,
        "test": {"output": "hi"},
    }
    assert [e.message for e in result.errors or []] == [
        "PERMISSION_DENIED: This GraphQL request has no caller: nothing protected is read."
    ] * 3
