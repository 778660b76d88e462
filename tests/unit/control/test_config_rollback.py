"""Dry runs and rollbacks in the control plane (``EndpointService``) over the fake backend: a dry
run writes nothing (no inline credential stored either), a rollback restores a version's config
and AI-gateway settings as a new version, keeps the history of the versions it leaves, and is
refused when a credential the version used is gone."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from modelport.control.endpoints import EndpointService
from modelport.control.reconciler import Reconciler
from modelport.errors import InvalidParameterValue, ResourceDoesNotExist
from modelport.spec.endpoint import AiGatewayConfig, CreateEndpoint, EndpointCoreConfigInput
from modelport.spec.secrets import MASK
from modelport.store import Database
from tests.support.control import ADMIN, KEY, external, run, settle

SCOPE_PREFIX = "modelport-endpoint-"


def config(**openai: Any) -> EndpointCoreConfigInput:
    return EndpointCoreConfigInput.model_validate(external(openai))


def create(service: EndpointService, *, dry_run: bool = False, **extra: Any) -> dict[str, Any]:
    req = CreateEndpoint.model_validate(
        {"name": "ext", "config": external({"openai_api_key_plaintext": KEY}), **extra}
    )
    return service.create(ADMIN, req, dry_run=dry_run)


def keys(db: Database) -> list[str]:
    return sorted(s.key for scope in db.secrets.list_scopes() for s in db.secrets.list_secrets(scope.name))


def test_a_dry_run_create_writes_nothing_and_masks_the_credential(tmp_path: Path) -> None:
    async def body(db: Database, reconciler: Reconciler, service: EndpointService) -> None:
        report = await asyncio.to_thread(create, service, dry_run=True)

        assert report["dry_run"] is True and report["config_version"] is None
        assert report["next_config_version"] == 1
        assert report["resolved"] == {"chat": {"external_model": {"provider": "openai", "name": "gpt"}}}
        added = {c["path"]: c for c in report["diff"]}["served_entities.chat"]
        assert added["after"]["external_model"]["openai_config"] == {"openai_api_key_plaintext": MASK}
        assert KEY not in repr(report)
        assert db.endpoints.get("ext") is None
        assert db.secrets.list_scopes() == []

    run(tmp_path, body)


def test_a_dry_run_update_stores_no_credential_and_records_no_version(tmp_path: Path) -> None:
    async def body(db: Database, reconciler: Reconciler, service: EndpointService) -> None:
        created = await asyncio.to_thread(create, service)
        await settle(reconciler)
        before = keys(db)

        report = await asyncio.to_thread(
            service.update_config, ADMIN, "ext", config(openai_api_key_plaintext="sk-other"), dry_run=True
        )

        assert report["config_version"] == 1 and report["next_config_version"] == 2
        assert [c["path"] for c in report["diff"]] == [
            "served_entities.chat.external_model.openai_config.openai_api_key_plaintext"
        ]
        assert "sk-other" not in repr(report)
        assert keys(db) == before
        assert [c.version for c in db.endpoints.configs(created["id"])] == [1]
        assert db.events.page(created["id"], kinds=["CONFIG_UPDATE_STARTED"])[0].config_version == 1

    run(tmp_path, body)


def test_a_rollout_needs_the_rollout_service_and_a_serving_config(tmp_path: Path) -> None:
    def model_config(traffic: dict[str, int], **extra: Any) -> dict[str, Any]:
        return {
            "served_entities": [
                {"name": name, "entity_name": "iris", "entity_version": name[1:]} for name in traffic
            ],
            "traffic_config": {
                "routes": [{"served_entity_name": k, "traffic_percentage": v} for k, v in traffic.items()]
            },
            **extra,
        }

    rollout = {"rollout": {"steps": [10, 100]}}

    async def body(db: Database, reconciler: Reconciler, service: EndpointService) -> None:
        first = CreateEndpoint.model_validate({"name": "m", "config": model_config({"v1": 100}, **rollout)})
        with pytest.raises(InvalidParameterValue, match="serves no config yet"):
            await asyncio.to_thread(service.create, ADMIN, first, dry_run=True)
        first = CreateEndpoint.model_validate({"name": "m", "config": model_config({"v1": 100})})
        await asyncio.to_thread(service.create, ADMIN, first)
        await settle(reconciler)
        update = EndpointCoreConfigInput.model_validate(model_config({"v1": 50, "v2": 50}, **rollout))

        with pytest.raises(InvalidParameterValue, match="rollouts need the rollout service"):
            await asyncio.to_thread(service.update_config, ADMIN, "m", update, dry_run=True)
        with pytest.raises(InvalidParameterValue, match="rollouts need the rollout service"):
            await asyncio.to_thread(service.update_config, ADMIN, "m", update)
        endpoint = db.endpoints.get("m")
        assert endpoint is not None
        assert [c.version for c in db.endpoints.configs(endpoint.id)] == [1]

    run(tmp_path, body)


def test_rollback_restores_the_config_and_gateway_and_keeps_history(tmp_path: Path) -> None:
    async def body(db: Database, reconciler: Reconciler, service: EndpointService) -> None:
        created = await asyncio.to_thread(
            create, service, ai_gateway={"usage_tracking_config": {"enabled": True}}
        )
        await settle(reconciler)
        v2 = external({"openai_api_key_plaintext": MASK})
        v2["served_entities"][0]["external_model"]["name"] = "gpt-2"
        await asyncio.to_thread(
            service.update_config, ADMIN, "ext", EndpointCoreConfigInput.model_validate(v2)
        )
        await settle(reconciler)
        limits = AiGatewayConfig.model_validate(
            {"rate_limits": [{"calls": 5, "renewal_period": "minute", "key": "user"}]}
        )
        await asyncio.to_thread(service.put_ai_gateway, ADMIN, "ext", limits)
        v2_gateway = db.endpoints.get_config(created["id"], 2).ai_gateway  # type: ignore[union-attr]

        out = await asyncio.to_thread(service.rollback, ADMIN, "ext", 1, "gpt-2 answers badly")
        await settle(reconciler)

        assert out["rollback"]["to_version"] == 1 and out["rollback"]["new_version"] == 3
        assert out["rollback"]["restored"] == ["served_entities", "traffic_config", "ai_gateway"]
        changed = {c["path"] for c in out["rollback"]["diff"]}
        assert "served_entities.chat.external_model.name" in changed
        assert "ai_gateway.rate_limits" in changed
        endpoint = db.endpoints.get("ext")
        assert endpoint is not None and endpoint.active_version == 3
        v1, v3 = (db.endpoints.get_config(created["id"], v) for v in (1, 3))
        assert v1 is not None and v3 is not None
        assert (
            v3.body["served_entities"][0]["external_model"] == v1.body["served_entities"][0]["external_model"]
        )
        assert v3.body["rolled_back_from"] == 1
        assert endpoint.ai_gateway == v1.ai_gateway == v3.ai_gateway
        assert db.endpoints.get_config(created["id"], 2).ai_gateway == v2_gateway  # type: ignore[union-attr]
        scope = f"{SCOPE_PREFIX}{created['id']}"
        ref = v3.body["served_entities"][0]["external_model"]["openai_config"]["openai_api_key_plaintext"]
        assert service._secrets.resolve(scope, ref[len(f"{{{{secrets/{scope}/") : -2]) == KEY
        (event,) = db.events.page(created["id"], kinds=["CONFIG_ROLLBACK"])
        assert event.details == {"to_version": 1, "new_version": 3, "reason": "gpt-2 answers badly"}
        assert event.actor == "admin"

    run(tmp_path, body)


def test_restore_version_needs_no_caller_and_refuses_a_missing_version(tmp_path: Path) -> None:
    async def body(db: Database, reconciler: Reconciler, service: EndpointService) -> None:
        created = await asyncio.to_thread(create, service)
        await settle(reconciler)
        v2 = external({"openai_api_key_plaintext": MASK, "openai_organization": "org"})
        await asyncio.to_thread(
            service.update_config, ADMIN, "ext", EndpointCoreConfigInput.model_validate(v2)
        )
        await settle(reconciler)

        with pytest.raises(ResourceDoesNotExist, match=r"Config version 9 .* \(versions 1 to 2\)"):
            await asyncio.to_thread(service.restore_version, created["id"], 9, actor="rollout", reason="x")
        new = await asyncio.to_thread(
            service.restore_version, created["id"], 1, actor="rollout", reason="breach"
        )
        await settle(reconciler)

        assert new == 3
        assert db.endpoints.get_config(created["id"], 3).creator == "rollout"  # type: ignore[union-attr]

    run(tmp_path, body)


def test_a_version_whose_credential_is_gone_is_not_restored(tmp_path: Path) -> None:
    async def body(db: Database, reconciler: Reconciler, service: EndpointService) -> None:
        created = await asyncio.to_thread(create, service)
        await settle(reconciler)
        await asyncio.to_thread(
            service.update_config, ADMIN, "ext", config(openai_api_key_plaintext="sk-new")
        )
        await settle(reconciler)
        scope = f"{SCOPE_PREFIX}{created['id']}"
        v1 = db.endpoints.get_config(created["id"], 1)
        assert v1 is not None
        old = v1.body["served_entities"][0]["external_model"]["openai_config"]["openai_api_key_plaintext"]
        db.secrets.delete(scope, old[len(f"{{{{secrets/{scope}/") : -2])  # as pruning does, past its grace

        with pytest.raises(
            InvalidParameterValue, match=r"config version 1 cannot be restored.*no longer exists"
        ):
            await asyncio.to_thread(service.rollback, ADMIN, "ext", 1, None)

        assert [c.version for c in db.endpoints.configs(created["id"])] == [1, 2]
        with pytest.raises(InvalidParameterValue, match="is the one endpoint 'ext' serves"):
            await asyncio.to_thread(service.rollback, ADMIN, "ext", 2, None)

    run(tmp_path, body)
