"""Endpoint configs and secrets: inline credentials become server-owned secrets, references
are checked when a config is created or updated, and deleting the endpoint deletes them."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from modelport.control.endpoints import EndpointService
from modelport.control.reconciler import Reconciler
from modelport.errors import InvalidParameterValue, PermissionDenied
from modelport.spec.endpoint import CreateEndpoint, EndpointCoreConfigInput
from modelport.spec.identity import Caller
from modelport.store import Database
from tests.support.control import ADMIN, KEY, alice, external, run, settle, stored_block


def create(service: EndpointService, caller: Caller, config: dict[str, Any]) -> dict[str, Any]:
    return service.create(caller, CreateEndpoint.model_validate({"name": "ext", "config": config}))


def _key(ref: str, scope: str) -> str:
    return ref[len(f"{{{{secrets/{scope}/") : -2]


def test_plaintext_key_is_stored_as_a_secret_and_only_the_reference_kept(tmp_path: Path) -> None:
    async def body(db: Database, reconciler: Reconciler, service: EndpointService) -> None:
        created = await asyncio.to_thread(create, service, ADMIN, external({"openai_api_key_plaintext": KEY}))
        await settle(reconciler)
        scope = f"modelport-endpoint-{created['id']}"
        ref = stored_block(db)["openai_api_key_plaintext"]
        assert ref.startswith(f"{{{{secrets/{scope}/chat.openai_api_key.")
        assert KEY not in repr(db.endpoints.configs(created["id"]))
        assert service._secrets.resolve(scope, _key(ref, scope)) == KEY
        got = await asyncio.to_thread(service.get, ADMIN, "ext")
        assert got["config"]["served_entities"][0]["external_model"]["openai_config"] == {
            "openai_api_key_plaintext": "[REDACTED]"
        }

        await asyncio.to_thread(service.delete, ADMIN, "ext")
        assert db.secrets.get_scope(scope) is None

    run(tmp_path, body)


def test_a_missing_reference_is_refused_and_nothing_is_created(tmp_path: Path) -> None:
    async def body(db: Database, reconciler: Reconciler, service: EndpointService) -> None:
        config = external({"openai_api_key": "{{secrets/llm/openai}}"})
        with pytest.raises(InvalidParameterValue, match=r"\{\{secrets/llm/openai\}\} does not exist"):
            await asyncio.to_thread(create, service, ADMIN, config)
        assert db.endpoints.get("ext") is None
        assert db.secrets.list_scopes() == []

    run(tmp_path, body)


def test_a_reference_needs_read_on_its_scope(tmp_path: Path) -> None:
    async def body(db: Database, reconciler: Reconciler, service: EndpointService) -> None:
        secrets = service._secrets
        await asyncio.to_thread(secrets.create_scope, ADMIN, "llm")
        await asyncio.to_thread(
            secrets.put_secret, ADMIN, {"scope": "llm", "key": "openai", "string_value": KEY}
        )
        user = alice(db)
        config = external({"openai_api_key": "{{secrets/llm/openai}}"})
        with pytest.raises(
            PermissionDenied, match="'alice' does not have READ permission on secret scope 'llm'"
        ):
            await asyncio.to_thread(create, service, user, config)
        await asyncio.to_thread(secrets.put_acl, ADMIN, "llm", "alice", "READ")
        await asyncio.to_thread(create, service, user, config)
        assert stored_block(db) == {"openai_api_key": "{{secrets/llm/openai}}"}

    run(tmp_path, body)


def test_config_updates_store_new_keys_and_drop_those_no_config_serves(tmp_path: Path) -> None:
    async def body(db: Database, reconciler: Reconciler, service: EndpointService) -> None:
        created = await asyncio.to_thread(create, service, ADMIN, external({"openai_api_key_plaintext": KEY}))
        await settle(reconciler)
        scope = f"modelport-endpoint-{created['id']}"
        refs = [stored_block(db, 1)["openai_api_key_plaintext"]]
        for version, value in ((2, KEY + "-2"), (3, KEY + "-3")):
            # Backdate what is stored, so that the update may prune it (it spares recent writes).
            for secret in db.secrets.list_secrets(scope):
                record = db.secrets.get(scope, secret.key)
                assert record is not None
                db.secrets.put(scope, secret.key, record.value, 1)
            update = EndpointCoreConfigInput.model_validate(external({"openai_api_key_plaintext": value}))
            await asyncio.to_thread(service.update_config, ADMIN, "ext", update)
            await settle(reconciler)
            refs.append(stored_block(db, version)["openai_api_key_plaintext"])

        # Version 3 serves; version 2 served while 3 was deployed; version 1's key is gone.
        keys = sorted(s.key for s in db.secrets.list_secrets(scope))
        assert keys == sorted(_key(r, scope) for r in refs[1:])
        assert service._secrets.resolve(scope, _key(refs[2], scope)) == KEY + "-3"

    run(tmp_path, body)
