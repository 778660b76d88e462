"""The permission check in front of the embedded MLflow server.

For each request the guard finds the route the way Flask will (MLflow's own URL map), looks
it up in :mod:`modelport.api.mlflow_routes`, reads the ids the route acts on the way MLflow's
handler will (``_get_request_message`` on the same body and query string, inside a Flask
request context), maps runs, logged models, experiment names and artifact paths to their
experiment through MLflow's tracking store, and checks the caller's level with
:class:`~modelport.control.registry_acl.RegistryAccess`. Only then does the request reach
MLflow, with the body it read replayed (artifact uploads are decided by path and stream
through unread). Routes with an ``after`` step have their answer held until the step has run:
the creator's grant, grants following a rename or delete, search results filtered to what the
caller may read. MLflow's GraphQL route is open to every caller and decided field by field
inside MLflow (:mod:`modelport.api.mlflow_graphql`): the guard hands it the caller.

The checks read the store: they run in a worker thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Callable
from typing import Any

from a2wsgi.wsgi import build_environ
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from modelport.api import mlflow_graphql
from modelport.api.body import read_body
from modelport.api.mlflow_routes import ADMIN_ONLY, RULES, After, Need, Rule
from modelport.control.registry_acl import RegistryAccess
from modelport.errors import (
    EndpointNotFound,
    InvalidParameterValue,
    MethodNotAllowed,
    PermissionDenied,
    TemporarilyUnavailable,
)
from modelport.spec.identity import Caller
from modelport.spec.registry_permissions import RegistryObject

__all__ = ["MlflowGuard"]

log = logging.getLogger("modelport.mlflow")

MODEL, EXPERIMENT = RegistryObject.REGISTERED_MODEL, RegistryObject.EXPERIMENT

#: Flask endpoints that are thin wrappers over a protobuf handler: their ids come from the
#: same message (the others read the query string).
_WRAPPED = {
    "serve_get_metric_history_bulk_interval": "get_metric_history_bulk_interval_handler",
    "serve_search_datasets": "_search_datasets_handler",
}

#: Lookup errors that mean "no such object" (or an id that cannot name one); any other error
#: (the store unreachable) refuses the request rather than letting it through unchecked.
_NO_SUCH_OBJECT = frozenset({"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "BAD_REQUEST"})

#: Search answers: (list field, how to get a listed item's object id, its kind).
_FILTERS: dict[After, tuple[str, Callable[[dict[str, Any]], str], RegistryObject]] = {
    After.FILTER_MODELS: ("registered_models", lambda item: str(item.get("name", "")), MODEL),
    After.FILTER_VERSIONS: ("model_versions", lambda item: str(item.get("name", "")), MODEL),
    After.FILTER_EXPERIMENTS: ("experiments", lambda item: str(item.get("experiment_id", "")), EXPERIMENT),
    After.FILTER_RUNS: ("runs", lambda item: str(item.get("info", {}).get("experiment_id", "")), EXPERIMENT),
    After.FILTER_LOGGED_MODELS: (
        "models",
        lambda item: str(item.get("info", {}).get("experiment_id", "")),
        EXPERIMENT,
    ),
}


class _Parsed:
    """The request as MLflow's handler reads it (a :class:`~modelport.api.mlflow_routes.Target`)."""

    def __init__(self, message: Any, args: Any, view_args: dict[str, Any], tracking: Any) -> None:
        self._message = message
        self._args = args
        self._view_args = view_args
        self._tracking = tracking

    def _in_message(self, name: str) -> bool:
        return self._message is not None and name in self._message.DESCRIPTOR.fields_by_name

    def value(self, name: str) -> str:
        if self._in_message(name):
            found = getattr(self._message, name)
            return "" if found is None else str(found)
        return str(self._args.get(name) or "")

    def values(self, name: str) -> list[str]:
        if self._in_message(name):
            return [str(v) for v in getattr(self._message, name)]
        return [str(v) for v in self._args.getlist(name)]

    def path_arg(self, name: str) -> str:
        return str(self._view_args.get(name, ""))

    def _lookup(self, fn: Callable[[], Any]) -> Any:
        from mlflow.exceptions import MlflowException

        try:
            return fn()
        except MlflowException as exc:
            if exc.error_code in _NO_SUCH_OBJECT:
                return None  # MLflow's handler answers for it (404, 400)
            raise TemporarilyUnavailable(
                f"The registry could not be read to check permissions: {exc.message}", retry_after=1
            ) from None

    def experiment_of_run(self, run_id: str) -> str | None:
        found = self._lookup(lambda: self._tracking.get_run(run_id))
        return None if found is None else str(found.info.experiment_id)

    def experiment_of_logged_model(self, model_id: str) -> str | None:
        found = self._lookup(lambda: self._tracking.get_logged_model(model_id))
        return None if found is None else str(found.experiment_id)

    def experiment_named(self, name: str) -> str | None:
        found = self._lookup(lambda: self._tracking.get_experiment_by_name(name))
        return None if found is None else str(found.experiment_id)


def _replayed(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # after the body: wait for the disconnect

    return replay


def _with_length(scope: Scope, length: int) -> Scope:
    """The scope MLflow gets for a buffered body: its exact length, no transfer-encoding, so
    the handler reads the same bytes the guard read."""
    headers = [(k, v) for k, v in scope["headers"] if k not in (b"content-length", b"transfer-encoding")]
    return {**scope, "headers": [*headers, (b"content-length", str(length).encode())]}


class MlflowGuard:
    """Built once MLflow is imported; called by the mount with the authenticated caller."""

    def __init__(self, access: RegistryAccess) -> None:
        from mlflow.server import app as flask_app
        from mlflow.server import handlers

        self._access = access
        self._flask = flask_app
        self._tracking: Callable[[], Any] = handlers._get_tracking_store
        classes = {fn.__name__: cls for cls, fn in handlers.HANDLERS.items()}
        self._classes = {**classes, **{k: classes.get(v) for k, v in _WRAPPED.items()}}
        self._get_message = handlers._get_request_message
        mlflow_graphql.install()  # GraphQL fields are decided inside MLflow's route

    # ---- routing -----------------------------------------------------------------------
    def route(self, scope: Scope) -> tuple[str, dict[str, Any]]:
        """(Flask endpoint, path arguments) of a request, as Flask will route it."""
        from werkzeug.exceptions import MethodNotAllowed as FlaskMethodNotAllowed
        from werkzeug.exceptions import NotFound
        from werkzeug.routing import RequestRedirect

        adapter = self._flask.url_map.bind_to_environ(build_environ(scope, io.BytesIO()))  # type: ignore[arg-type]
        try:
            endpoint, view_args = adapter.match()
        except FlaskMethodNotAllowed:
            raise MethodNotAllowed(f"{scope['method']} is not allowed on {scope['path']}.") from None
        except (NotFound, RequestRedirect):
            raise EndpointNotFound(f"No MLflow route matches {scope['method']} {scope['path']}.") from None
        return str(endpoint), dict(view_args)

    @staticmethod
    def rule_for(endpoint: str, caller: Caller) -> Rule:
        """The route's rule; a route outside :data:`RULES` is refused to everyone but admins."""
        rule = RULES.get(endpoint)
        if rule is None:
            if caller.is_admin:
                return Rule()
            what = (
                "is not governed by modelport's registry permissions yet"
                if endpoint in ADMIN_ONLY
                else ("is not known to modelport's registry permissions")
            )
            raise PermissionDenied(f"This MLflow route ({endpoint}) {what}: only admins may call it.")
        return rule

    # ---- the check (in a worker thread) ------------------------------------------------
    def _parse(
        self, scope: Scope, body: bytes, endpoint: str, view_args: dict[str, Any], rule: Rule
    ) -> _Parsed:
        from mlflow.exceptions import MlflowException

        # A route decided by path and query alone has no message to read (its body is a file).
        cls = self._classes.get(endpoint) if rule.body else None
        with self._flask.request_context(build_environ(scope, io.BytesIO(body))):  # type: ignore[arg-type]
            from flask import request

            try:
                message = self._get_message(cls()) if cls is not None else None
            except MlflowException as exc:
                raise InvalidParameterValue(exc.message) from None
            return _Parsed(message, request.args.copy(), view_args, self._tracking())

    def check(
        self, caller: Caller, scope: Scope, body: bytes, endpoint: str, view_args: dict[str, Any], rule: Rule
    ) -> _Parsed:
        parsed = self._parse(scope, body, endpoint, view_args, rule)
        if not caller.is_admin:
            needs: list[Need] = [n for locate in rule.needs for n in locate(parsed)]
            for need in needs:
                self._access.require(caller, need.kind, need.object_id, need.level)
        return parsed

    def after(
        self, caller: Caller, rule: Rule, parsed: _Parsed, answer: dict[str, Any]
    ) -> dict[str, Any] | None:
        """Run a rule's ``after`` step on MLflow's 200 answer; a new answer when it filtered."""
        step = rule.after
        if step is After.OWN_MODEL:
            self._access.set_owner(MODEL, str(answer["registered_model"]["name"]), caller.id)
        elif step is After.OWN_EXPERIMENT:
            self._access.set_owner(EXPERIMENT, str(answer["experiment_id"]), caller.id)
        elif step is After.RENAME_MODEL:
            self._access.renamed(MODEL, parsed.value("name"), str(answer["registered_model"]["name"]))
        elif step is After.DROP_MODEL:
            self._access.dropped(MODEL, parsed.value("name"))
        elif step in _FILTERS:
            field, id_of, kind = _FILTERS[step]
            readable = self._access.readable(caller, kind)
            if readable is not None and field in answer:
                answer[field] = [item for item in answer[field] if id_of(item) in readable]
                return answer
        return None

    # ---- ASGI -------------------------------------------------------------------------
    async def __call__(
        self, caller: Caller, app: ASGIApp, scope: Scope, receive: Receive, send: Send
    ) -> None:
        """Raises a ModelportError before anything is sent when the request is refused."""
        endpoint, view_args = self.route(scope)
        rule = self.rule_for(endpoint, caller)
        if endpoint == mlflow_graphql.ENDPOINT:
            scope = mlflow_graphql.admitted(scope, caller, self._access)
        body = b""
        if rule.body:
            body = await read_body(scope, receive, what="an MLflow request")
            scope, receive = _with_length(scope, len(body)), _replayed(body, receive)
        parsed = await asyncio.to_thread(self.check, caller, scope, body, endpoint, view_args, rule)
        if rule.after is None:
            await app(scope, receive, send)
            return
        await self._answer_after(caller, rule, parsed, app, scope, receive, send)

    async def _answer_after(
        self,
        caller: Caller,
        rule: Rule,
        parsed: _Parsed,
        app: ASGIApp,
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> None:
        start: Message | None = None
        chunks: list[bytes] = []

        async def hold(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await app(scope, receive, hold)
        if start is None:
            return
        body = b"".join(chunks)
        if start["status"] == 200:
            try:
                changed = await asyncio.to_thread(self.after, caller, rule, parsed, json.loads(body))
            except Exception:
                log.exception("registry permissions: the step after %s failed", rule.after)
                changed = None
            if changed is not None:
                body = json.dumps(changed).encode()
                headers = [(k, v) for k, v in start.get("headers", []) if k != b"content-length"]
                start = {**start, "headers": [*headers, (b"content-length", str(len(body)).encode())]}
        await send(start)
        await send({"type": "http.response.body", "body": body, "more_body": False})
