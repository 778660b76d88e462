"""Serving-endpoint operations behind the control-plane routes.

Methods block (database and registry calls): the API runs them in a thread pool. Each
checks the caller's permission first, validates input completely before writing, and
returns the JSON-ready shape the Databricks API returns.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any, Protocol

from modelport.clock import now_ms
from modelport.control import config_history
from modelport.control.agent_config import check_run_as
from modelport.control.endpoint_state import with_entity_states
from modelport.control.feature_specs import FeatureSpecService
from modelport.control.permissions import AccessControl
from modelport.control.reconciler import Reconciler
from modelport.control.registry_acl import RegistryAccess
from modelport.control.render import render_detailed, render_summary
from modelport.control.rollouts import plan_rollout
from modelport.control.secrets import SecretService
from modelport.control.system_endpoints import forbid_changes
from modelport.entities.foundation.catalog import system_model
from modelport.entities.providers import check_task
from modelport.entities.registry import ModelVersionRef
from modelport.entities.registry_handle import RegistryHandle
from modelport.errors import (
    InvalidParameterValue,
    PermissionDenied,
    ResourceAlreadyExists,
    ResourceConflict,
    ResourceDoesNotExist,
)
from modelport.runtime.logs import LogStore
from modelport.spec.endpoint import (
    FEATURE_SPEC_KEY,
    PROVIDER_CONFIG_KEY,
    AiGatewayConfig,
    CreateEndpoint,
    EmailNotifications,
    EndpointCoreConfigInput,
    PatchTags,
    Provider,
    PutRateLimits,
)
from modelport.spec.identity import Caller
from modelport.spec.permissions import PermissionLevel
from modelport.spec.registry_permissions import RegistryLevel, RegistryObject
from modelport.spec.secrets import keep_masked, references_in
from modelport.spec.validation import (
    normalize_ai_gateway,
    normalize_config,
    normalize_legacy_rate_limits,
    normalize_tags,
    validate_endpoint_name,
)
from modelport.store import Database
from modelport.store.records import ConfigRecord, EndpointRecord

__all__ = ["EndpointService"]

VIEW, QUERY, MANAGE = PermissionLevel.CAN_VIEW, PermissionLevel.CAN_QUERY, PermissionLevel.CAN_MANAGE
MODEL = RegistryObject.REGISTERED_MODEL


def _has_external(body: dict[str, Any] | None) -> bool:
    return bool(body) and any("external_model" in e for e in body["served_entities"])  # type: ignore[index]


def _task_of(body: dict[str, Any] | None) -> str | None:
    if not body:
        return None
    for entity in body["served_entities"]:
        if "external_model" in entity:
            return str(entity["external_model"]["task"])
    return None


def _model_names(entity_name: str) -> list[str]:
    """The registered models ``entity_name`` may resolve to, as the registry reads it
    (``ModelRegistry.lookup``): the name without ``models:/``, and for a three-part Unity
    Catalog name its last part too."""
    raw = entity_name.removeprefix("models:/").strip("/")
    parts = raw.split(".")
    return [raw, parts[2]] if len(parts) == 3 and all(parts) else [raw]


def _check_tasks(body: dict[str, Any]) -> None:
    """Every external model's provider must serve its task (for that model id, on Bedrock)."""
    for i, entity in enumerate(body["served_entities"]):
        ext = entity.get("external_model")
        if ext is not None:
            block = ext.get(PROVIDER_CONFIG_KEY[Provider(ext["provider"])]) or {}
            path = f"config.served_entities[{i}].external_model"
            check_task(ext["provider"], ext["task"], block, ext["name"], path)


def _check_external_kept(name: str, current: ConfigRecord | None, body: dict[str, Any]) -> None:
    """A config update cannot add or remove an endpoint's external model (its task would change)."""
    if current is not None and _has_external(current.body) != _has_external(body):
        verb = "add an external model to" if _has_external(body) else "remove the external model from"
        raise InvalidParameterValue(
            f"A config update cannot {verb} endpoint '{name}'; create a new endpoint instead."
        )


def _busy(endpoint: EndpointRecord) -> ResourceConflict:
    name = endpoint.name
    return ResourceConflict(
        f"Endpoint '{name}' already has a config update in progress (version "
        f"{endpoint.pending_version}). Wait for it to finish, or cancel it with "
        f"POST /api/2.0/serving-endpoints/{name}/cancel-update."
    )


class RolloutStarter(Protocol):
    """What :class:`EndpointService` needs of the rollout service (``control/rollouts.py``)."""

    def check(self, endpoint: EndpointRecord) -> None: ...

    def begin(
        self,
        caller: Caller,
        endpoint: EndpointRecord,
        version: int,
        plan: dict[str, Any],
        from_version: int | None,
    ) -> Any: ...


class EndpointService:
    #: Starts the rollout of an update with a ``rollout`` block (set by the wiring; None: such an
    #: update is refused).
    rollouts: RolloutStarter | None = None

    def __init__(
        self,
        db: Database,
        access: AccessControl,
        reconciler: Reconciler,
        logs: LogStore,
        registry: RegistryHandle,
        on_change: Callable[[str], None] = lambda endpoint_id: None,
        *,
        secrets: SecretService,
        models: RegistryAccess | None = None,
        feature_specs: FeatureSpecService | None = None,
    ) -> None:
        """``models``: registry permissions to check (the embedded registry's); None serves
        any registered model the registry holds. ``feature_specs``: where served feature specs
        are read (None: no endpoint serves one)."""
        self._db = db
        self._models = models
        self._feature_specs = feature_specs
        self._secrets = secrets
        self.access = access
        self._reconciler = reconciler
        self._logs = logs
        self._registry = registry
        self._on_change = on_change

    # ---- helpers ----------------------------------------------------------------------
    def _find(self, name: str) -> EndpointRecord:
        endpoint = self._db.endpoints.get(name)
        if endpoint is None:
            raise ResourceDoesNotExist(f"Endpoint with name '{name}' does not exist.")
        return endpoint

    def find_by_id(self, endpoint_id: str) -> EndpointRecord:
        endpoint = self._db.endpoints.get_by_id(endpoint_id)
        if endpoint is None:
            raise ResourceDoesNotExist(f"Serving endpoint with id '{endpoint_id}' does not exist.")
        return endpoint

    def authorized(
        self, caller: Caller, name: str, needed: PermissionLevel
    ) -> tuple[EndpointRecord, PermissionLevel]:
        endpoint = self._find(name)
        return endpoint, self.access.require(caller, endpoint, needed)

    def _configs(self, endpoint: EndpointRecord) -> tuple[ConfigRecord | None, ConfigRecord | None]:
        repo = self._db.endpoints
        active = repo.get_config(endpoint.id, endpoint.active_version)
        pending = None
        if endpoint.pending_version is not None and endpoint.pending_version != endpoint.active_version:
            pending = repo.get_config(endpoint.id, endpoint.pending_version)
        return active, pending

    def _detailed(self, endpoint: EndpointRecord, level: PermissionLevel | None) -> dict[str, Any]:
        fresh = self._db.endpoints.get_by_id(endpoint.id) or endpoint
        return render_detailed(fresh, *self._configs(fresh), level)

    def _check_registry(self, caller: Caller | None, body: dict[str, Any]) -> dict[str, dict[str, Any]]:
        """Every registered model and version (or alias) named must exist now, and the caller
        must be able to read each registered model (CAN_READ): see :meth:`_check_model`
        (``caller`` None: existence only). Returns what each served entity resolves to now:
        ``{name: {"entity_name", "entity_version"[, "alias"]}}`` for registered and system
        models, ``{"external_model": {"provider", "name"}}`` or ``{"feature_spec": name}``."""
        resolved: dict[str, dict[str, Any]] = {}
        for entity in body["served_entities"]:
            name = str(entity["name"])
            if "external_model" in entity:
                ext = entity["external_model"]
                resolved[name] = {"external_model": {"provider": ext["provider"], "name": ext["name"]}}
                continue
            if FEATURE_SPEC_KEY in entity:
                resolved[name] = {"feature_spec": entity["entity_name"]}
                continue
            model = system_model(entity["entity_name"])
            if model is not None:
                if model.path() is None:
                    raise ResourceDoesNotExist(
                        f"System model '{entity['entity_name']}' is not installed on this server "
                        f"(package {model.package}, in modelport's llm extra)."
                    )
                resolved[name] = {
                    "entity_name": entity["entity_name"],
                    "entity_version": str(entity.get("entity_version") or ""),
                }
                continue
            ref = self._check_model(caller, entity["entity_name"], str(entity["entity_version"]))
            resolved[name] = {"entity_name": ref.name, "entity_version": ref.version}
            if ref.alias:
                resolved[name]["alias"] = f"@{ref.alias}"
        return resolved

    def _check_model(self, caller: Caller | None, entity_name: str, version: str) -> ModelVersionRef:
        """The registered model version (or alias) must exist and the caller hold CAN_READ on
        the model. A caller who does not hold it gets the same 403 whether the model exists or
        not (a missing version or alias of it included), so that the answer does not tell which
        private models exist; admins and the model's readers get the 404 that says what is
        missing."""
        registry = self._registry.get()
        if self._models is None or caller is None or caller.is_admin:
            return registry.lookup(entity_name, version)
        denied = PermissionDenied(
            f"'{caller.name}' does not have {RegistryLevel.CAN_READ.name} permission on registered "
            f"model '{entity_name}'."
        )
        try:
            ref = registry.lookup(entity_name, version)
        except ResourceDoesNotExist:
            if not any(self._models.level(caller, MODEL, name) for name in _model_names(entity_name)):
                raise denied from None
            raise
        if self._models.level(caller, MODEL, ref.name) is None:
            raise denied
        return ref

    def _copy_feature_specs(self, caller: Caller, body: dict[str, Any], named: bool) -> None:
        """Copy each served feature spec into its entity (the config keeps it as it is now); the
        caller must hold SELECT on every table it reads. ``named``: the request said it serves
        feature specs; without, an entity naming no spec the caller may read is a registered
        model missing its version."""
        for i, entity in enumerate(body["served_entities"]):
            if FEATURE_SPEC_KEY not in entity:
                continue
            name = entity["entity_name"]
            doc = None
            if self._feature_specs is not None:
                doc = self._feature_specs.for_endpoint(caller, name, named=named)
            elif named:
                raise InvalidParameterValue("This server does not serve feature specs.")
            if doc is None:
                raise InvalidParameterValue(
                    f"Missing required field 'config.served_entities[{i}].entity_version': a version "
                    'number such as "1" or an alias such as "@champion" (nor is there a feature spec '
                    f"'{name}' that you may read)."
                )
            entity[FEATURE_SPEC_KEY] = doc

    def _validated_config(
        self,
        caller: Caller,
        config: EndpointCoreConfigInput,
        name: str,
        feature_serving: bool | None = None,
    ) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
        """The config's stored form, and what its served entities resolve to (see
        :meth:`_check_registry`)."""
        if config.name is not None and config.name != name:
            raise InvalidParameterValue(
                f"Invalid value for 'config.name': '{config.name}' differs from the endpoint name '{name}'."
            )
        body = normalize_config(config, name, feature_serving=feature_serving)
        _check_tasks(body)
        check_run_as(self._db, caller, body)  # agents acting as a service principal
        self._copy_feature_specs(caller, body, named=bool(feature_serving))
        return body, self._check_registry(caller, body)

    # ---- operations ---------------------------------------------------------------------
    def create(self, caller: Caller, req: CreateEndpoint, *, dry_run: bool = False) -> dict[str, Any]:
        """Create the endpoint and start deploying its config. ``dry_run``: check everything the
        real call checks, write nothing, and return the dry-run report
        (:func:`~modelport.control.config_history.dry_run_report`) instead."""
        name = validate_endpoint_name(req.name)
        body, resolved = (
            self._validated_config(caller, req.config, name, req.is_feature_serving)
            if req.config is not None
            else (None, {})
        )
        gateway = normalize_ai_gateway(req.ai_gateway, name) if req.ai_gateway is not None else None
        legacy_limits = normalize_legacy_rate_limits(req.rate_limits) if req.rate_limits else None
        tags = normalize_tags(req.tags)
        if self._db.endpoints.get(name) is not None:
            raise ResourceAlreadyExists(f"Endpoint with name '{name}' already exists.")
        plan = plan_rollout(None, body) if body else None  # raises: a new endpoint has nothing to roll from
        endpoint_id = secrets.token_hex(16)
        stored_keys: list[str] = []
        if body:
            keep_masked(body, [])  # a new endpoint has no stored credential for a mask to keep
            self._secrets.check_references(caller, body)
        if dry_run:
            return config_history.dry_run_report(
                current_version=None,
                next_version=1 if body else None,
                changes=config_history.diff(None, body) + config_history.diff_ai_gateway(None, gateway),
                resolved=resolved,
                plan=plan,
            )
        if body:
            body, stored_keys = self._secrets.store_inline_credentials(endpoint_id, body)
        now = now_ms()
        endpoint = EndpointRecord(
            id=endpoint_id,
            name=name,
            creator=caller.name,
            created_ms=now,
            updated_ms=now,
            config_update="IN_PROGRESS" if body else "NOT_UPDATING",
            pending_version=1 if body else None,
            description=req.description,
            route_optimized=bool(req.route_optimized),
            budget_policy_id=req.budget_policy_id,
            task=_task_of(body),
            tags=tags,
            ai_gateway=gateway,
            rate_limits=legacy_limits,
            email_notifications=req.email_notifications.dump() if req.email_notifications else None,
            telemetry_config=req.telemetry_config,
        )
        config = (
            ConfigRecord(
                endpoint_id=endpoint.id,
                version=1,
                body=body,
                status="PENDING",
                creator=caller.name,
                created_ms=now,
                ai_gateway=endpoint.ai_gateway,
            )
            if body
            else None
        )
        try:
            self._db.endpoints.create(endpoint, config, caller.id)
        except BaseException:
            if stored_keys:
                self._secrets.delete_inline_credentials(endpoint_id)
            raise
        self._on_change(endpoint.id)
        if body:
            self._started(endpoint.id, 1, caller.name)
            self._reconciler.submit(endpoint.id, 1)
        return self._detailed(endpoint, MANAGE)

    def get(self, caller: Caller, name: str) -> dict[str, Any]:
        endpoint, level = self.authorized(caller, name, VIEW)
        return render_detailed(endpoint, *self._configs(endpoint), level)

    def list(self, caller: Caller) -> list[dict[str, Any]]:
        """Three queries whatever the number of endpoints: endpoints, grants, current configs."""
        repo = self._db.endpoints
        acls = repo.all_acls()
        configs = repo.current_configs()
        out = []
        for endpoint in repo.list():
            if self.access.level_from(acls.get(endpoint.id, {}), caller) is None:
                continue
            active = configs.get((endpoint.id, endpoint.active_version or 0))
            pending = None
            if endpoint.pending_version is not None and endpoint.pending_version != endpoint.active_version:
                pending = configs.get((endpoint.id, endpoint.pending_version))
            out.append(render_summary(endpoint, active, pending))
        return out

    def update_config(
        self, caller: Caller, name: str, config: EndpointCoreConfigInput, *, dry_run: bool = False
    ) -> dict[str, Any]:
        """Record ``config`` as the endpoint's next version and start deploying it (a ``rollout``
        block starts a rollout: ``control/rollouts.py``). ``dry_run``: check everything the real
        call checks (a config update in progress included), write nothing, and return the dry-run
        report with the diff against the current config."""
        endpoint, level = self.authorized(caller, name, MANAGE)
        forbid_changes(endpoint, "reconfigured")
        body, resolved = self._validated_config(caller, config, name)
        active, pending = self._configs(endpoint)
        current = active or pending
        _check_external_kept(name, current, body)
        # A config read with GET shows stored credentials masked; written back, it keeps them
        # (the serving config's first, as GET shows that one as 'config').
        body, kept = keep_masked(body, [c.body for c in (active, pending) if c is not None])
        self._secrets.check_references(caller, body, kept=kept)
        plan = plan_rollout(active.body if active is not None else None, body)
        if plan is not None and self.rollouts is None:
            raise InvalidParameterValue(
                "Invalid value for 'config.rollout': rollouts need the rollout service, which this "
                "server does not run."
            )
        if plan is not None:
            assert self.rollouts is not None
            self.rollouts.check(endpoint)  # 409 before anything is written
        if dry_run:
            if endpoint.config_update == "IN_PROGRESS":
                raise _busy(endpoint)
            versions = [c.version for c in self._db.endpoints.configs(endpoint.id)]
            return config_history.dry_run_report(
                current_version=endpoint.active_version,
                next_version=max(versions, default=0) + 1,
                changes=config_history.diff(current.body if current is not None else None, body),
                resolved=resolved,
                plan=plan,
            )
        self._start_update(caller.name, endpoint, body, (active, pending), plan=plan, caller=caller)
        return self._detailed(endpoint, level)

    def _start_update(
        self,
        actor: str,
        endpoint: EndpointRecord,
        body: dict[str, Any],
        current: tuple[ConfigRecord | None, ConfigRecord | None],
        *,
        plan: dict[str, Any] | None = None,
        caller: Caller | None = None,
    ) -> int:
        """Record ``body`` (validated) as the next version, start its rollout when ``plan`` is
        given, and submit it to the reconciler; the new version. ``current``: the active and
        pending configs read before. 409 while an update is in progress."""
        started = now_ms()
        body, stored_keys = self._secrets.store_inline_credentials(endpoint.id, body)
        version = self._db.endpoints.begin_update(
            endpoint.id, body, actor, started, _task_of(body) or endpoint.task
        )
        if version is None:
            self._secrets.forget_inline_credentials(endpoint.id, stored_keys)
            raise _busy(self._db.endpoints.get_by_id(endpoint.id) or endpoint)
        if plan is not None:
            assert self.rollouts is not None and caller is not None, "update_config checks both"
            try:  # recorded before the version can serve, so its first traffic is the first step's
                self.rollouts.begin(caller, endpoint, version, plan, endpoint.active_version)
            except BaseException:
                self._db.endpoints.cancel_update(endpoint.id, None, now_ms())
                self._secrets.forget_inline_credentials(endpoint.id, stored_keys)
                raise
        # Keep what the new config and the configs read above use. Read before the update is
        # submitted: an external-model update can be promoted before a later read, and the
        # config serving until then would lose its credentials while still serving.
        keep = [body, *(c.body for c in current if c is not None)]
        self._started(endpoint.id, version, actor, body.get(config_history.ROLLED_BACK_FROM))
        self._reconciler.submit(endpoint.id, version)
        self._secrets.prune_inline_credentials(endpoint.id, keep, started)
        return version

    def _started(self, endpoint_id: str, version: int, actor: str, restores: int | None = None) -> None:
        message = f"Config version {version} started by {actor}"
        message += f" (a rollback to version {restores})." if restores is not None else "."
        details = {"rolled_back_from": restores} if restores is not None else None
        self._db.events.add(
            endpoint_id,
            "CONFIG_UPDATE_STARTED",
            message,
            actor=actor,
            config_version=version,
            details=details,
        )

    # ---- config history and rollback ----------------------------------------------------------
    def config_versions(
        self, caller: Caller, name: str, max_results: int, page_token: str | None
    ) -> dict[str, Any]:
        """``{"config_versions": [...], "next_page_token"}``: the endpoint's versions, newest first."""
        endpoint, _ = self.authorized(caller, name, VIEW)
        configs, token = config_history.page_of(
            self._db.endpoints.configs(endpoint.id), max_results, page_token
        )
        return {
            "config_versions": [config_history.version_summary(c) for c in configs],
            "next_page_token": token,
        }

    def config_version(self, caller: Caller, name: str, version: int) -> dict[str, Any]:
        """One version in full (its config as GET endpoint shows one, and its AI-gateway settings)."""
        endpoint, _ = self.authorized(caller, name, VIEW)
        return config_history.version_detail(endpoint, self._version_of(endpoint, version))

    def _version_of(self, endpoint: EndpointRecord, version: int) -> ConfigRecord:
        cfg = self._db.endpoints.get_config(endpoint.id, version)
        if cfg is None:
            versions = [c.version for c in self._db.endpoints.configs(endpoint.id)]
            known = f"versions {min(versions)} to {max(versions)}" if versions else "no config versions"
            raise ResourceDoesNotExist(
                f"Config version {version} of endpoint '{endpoint.name}' does not exist ({known})."
            )
        return cfg

    def rollback(self, caller: Caller, name: str, version: int, reason: str | None = None) -> dict[str, Any]:
        """Make config version ``version`` serve again as a new version (CAN_MANAGE): the endpoint
        as GET shows it, plus ``rollback: {"to_version", "new_version", "restored", "diff"}``."""
        endpoint, level = self.authorized(caller, name, MANAGE)
        forbid_changes(endpoint, "reconfigured")
        if version == endpoint.active_version:
            raise InvalidParameterValue(
                f"Invalid value for 'version': config version {version} is the one endpoint "
                f"'{name}' serves; there is nothing to roll back."
            )
        result = self._restore(endpoint, version, actor=caller.name, reason=reason, caller=caller)
        out = self._detailed(endpoint, level)
        out["rollback"] = result
        return out

    def restore_version(self, endpoint_id: str, version: int, *, actor: str, reason: str | None) -> int:
        """Roll endpoint ``endpoint_id`` back to config version ``version`` as :meth:`rollback`
        does, without a permission check (the rollout runner's rollback); the new version.
        Raises ResourceConflict while an update is in progress, ResourceDoesNotExist for a
        version that does not exist."""
        endpoint = self.find_by_id(endpoint_id)
        return int(self._restore(endpoint, version, actor=actor, reason=reason, caller=None)["new_version"])

    def _restore(
        self, endpoint: EndpointRecord, version: int, *, actor: str, reason: str | None, caller: Caller | None
    ) -> dict[str, Any]:
        """Record version ``version``'s body (without its rollout) as a new version through the
        normal update, with the endpoint's AI-gateway settings set to the ones recorded with it.
        ``caller``: whose registry permissions are checked (None: none, existence only)."""
        target = self._version_of(endpoint, version)
        if endpoint.config_update == "IN_PROGRESS":
            raise _busy(endpoint)
        active, pending = self._configs(endpoint)
        current = active or pending
        body = config_history.restored_body(target)
        _check_external_kept(endpoint.name, current, body)
        _check_tasks(body)
        check_run_as(self._db, caller, body)
        self._check_registry(caller, body)
        self._check_restored_secrets(body, version)
        before, gateway = endpoint.ai_gateway, target.ai_gateway
        changes = config_history.diff(current.body if current is not None else None, body)
        changes += config_history.diff_ai_gateway(before, gateway)
        # The endpoint's settings, not set_ai_gateway: that also rewrites the serving version's
        # record, whose history must keep the settings it served with. begin_update copies the
        # endpoint's settings into the new version.
        if gateway != before:
            self._db.endpoints.update_fields(endpoint.id, ai_gateway=gateway, updated_ms=now_ms())
        try:
            new_version = self._start_update(actor, endpoint, body, (active, pending))
        except BaseException:
            if gateway != before:
                self._db.endpoints.update_fields(endpoint.id, ai_gateway=before, updated_ms=now_ms())
            raise
        if gateway != before:
            self._on_change(endpoint.id)  # the data plane applies the restored gateway at once
        message = f"Config version {new_version} restores version {version}"
        self._db.events.add(
            endpoint.id,
            "CONFIG_ROLLBACK",
            message + (f": {reason}" if reason else "."),
            actor=actor,
            config_version=new_version,
            details={"to_version": version, "new_version": new_version, "reason": reason},
        )
        return {
            "to_version": version,
            "new_version": new_version,
            "restored": config_history.restored_parts(target, current),
            "diff": changes,
        }

    def _check_restored_secrets(self, body: dict[str, Any], version: int) -> None:
        """Every secret a restored config references must still exist. Reading them needs no
        permission: the rollback keeps credentials configured before, which the caller never sees
        (as a masked credential written back keeps its stored one)."""
        for ref in references_in(body):
            if self._db.secrets.get(ref.scope, ref.key) is not None:
                continue
            what = "its stored credential" if ref.path.endswith("_plaintext") else f"secret {ref.text}"
            raise InvalidParameterValue(
                f"Invalid value for 'version': config version {version} cannot be restored: "
                f"'{ref.path}' uses {what}, which no longer exists (a credential replaced by a "
                "later version is deleted). Update the config with the credential instead."
            )

    def cancel_update(self, caller: Caller, name: str) -> dict[str, Any]:
        endpoint, level = self.authorized(caller, name, MANAGE)
        forbid_changes(endpoint, "reconfigured")
        pending = self._db.endpoints.get_config(endpoint.id, endpoint.pending_version)
        body = (
            with_entity_states(pending.body, "DEPLOYMENT_ABORTED", message="Update cancelled by request.")
            if pending is not None
            else None
        )
        version = self._db.endpoints.cancel_update(endpoint.id, body, now_ms())
        if version is None:
            raise ResourceConflict(
                f"Endpoint '{name}' has no config update in progress to cancel "
                f"(state: {endpoint.config_update})."
            )
        self._reconciler.cancel(endpoint.id)
        self._on_change(endpoint.id)
        message = f"Config version {version} update cancelled by request."
        self._db.events.add(
            endpoint.id, "CONFIG_UPDATE_CANCELED", message, actor=caller.name, config_version=version
        )
        return self._detailed(endpoint, level)

    def delete(self, caller: Caller, name: str) -> None:
        endpoint, _ = self.authorized(caller, name, MANAGE)
        forbid_changes(endpoint, "deleted")
        self._reconciler.remove(endpoint.id)
        self._db.endpoints.delete(endpoint.id)
        self._secrets.delete_inline_credentials(endpoint.id)
        self._on_change(endpoint.id)
        self._logs.remove(endpoint.id)

    def patch_tags(self, caller: Caller, name: str, req: PatchTags) -> dict[str, Any]:
        endpoint, _ = self.authorized(caller, name, MANAGE)
        add = normalize_tags(req.add_tags, "add_tags")
        remove = set(req.delete_tags or [])
        merged = {t["key"]: t for t in endpoint.tags if t["key"] not in remove}
        merged.update({t["key"]: t for t in add})
        tags = list(merged.values())
        self._db.endpoints.update_fields(endpoint.id, tags=tags, updated_ms=now_ms())
        return {"tags": tags}

    def put_ai_gateway(self, caller: Caller, name: str, req: AiGatewayConfig) -> dict[str, Any]:
        endpoint, _ = self.authorized(caller, name, MANAGE)
        gateway = normalize_ai_gateway(req, name)
        self._db.endpoints.set_ai_gateway(endpoint.id, gateway, now_ms())
        self._on_change(endpoint.id)  # the data plane applies the new limits and guardrails at once
        message = f"AI gateway settings set: {', '.join(sorted(gateway)) or 'none'}."
        self._db.events.add(endpoint.id, "AI_GATEWAY_UPDATED", message, actor=caller.name, details=gateway)
        return gateway

    def put_rate_limits(self, caller: Caller, name: str, req: PutRateLimits) -> dict[str, Any]:
        endpoint, _ = self.authorized(caller, name, MANAGE)
        limits = normalize_legacy_rate_limits(req.rate_limits)
        self._db.endpoints.update_fields(endpoint.id, rate_limits=limits, updated_ms=now_ms())
        self._on_change(endpoint.id)
        return {"rate_limits": limits}

    def patch_notifications(
        self, caller: Caller, name: str, notifications: EmailNotifications | None
    ) -> dict[str, Any]:
        endpoint, _ = self.authorized(caller, name, MANAGE)
        value = notifications.dump() if notifications else {}
        self._db.endpoints.update_fields(endpoint.id, email_notifications=value, updated_ms=now_ms())
        return {"name": endpoint.name, "email_notifications": value}

    def patch_telemetry(self, caller: Caller, name: str, telemetry: dict[str, Any] | None) -> dict[str, Any]:
        endpoint, level = self.authorized(caller, name, MANAGE)
        self._db.endpoints.update_fields(endpoint.id, telemetry_config=telemetry or {}, updated_ms=now_ms())
        return self._detailed(endpoint, level)

    def _served(self, endpoint: EndpointRecord, served: str) -> None:
        names = set()
        for cfg in self._db.endpoints.configs(endpoint.id):
            names.update(e["name"] for e in cfg.body["served_entities"])
        if served not in names:
            raise ResourceDoesNotExist(
                f"Served model '{served}' does not exist in endpoint '{endpoint.name}'"
                + (f" (served entities: {', '.join(sorted(names))})." if names else ".")
            )

    def logs(self, caller: Caller, name: str, served: str, kind: str) -> dict[str, str]:
        endpoint, _ = self.authorized(caller, name, VIEW)
        self._served(endpoint, served)
        return {"logs": self._logs.read(endpoint.id, served, kind)}

    def snapshot(self, caller: Caller, name: str) -> tuple[EndpointRecord, ConfigRecord | None]:
        """The endpoint and its serving config, for metrics and OpenAPI rendering."""
        endpoint, _ = self.authorized(caller, name, VIEW)
        active, pending = self._configs(endpoint)
        return endpoint, active or pending

    def write_permissions(
        self, caller: Caller, endpoint_id: str, entries: list[dict[str, Any]] | None, *, replace: bool
    ) -> dict[str, Any]:
        endpoint = self.permissions(caller, endpoint_id, MANAGE)
        forbid_changes(endpoint, "re-permissioned")
        result = self.access.write(endpoint, entries, replace=replace)
        self._on_change(endpoint.id)
        return result

    def permissions(self, caller: Caller, endpoint_id: str, needed: PermissionLevel) -> EndpointRecord:
        endpoint = self.find_by_id(endpoint_id)
        self.access.require(caller, endpoint, needed)
        return endpoint
