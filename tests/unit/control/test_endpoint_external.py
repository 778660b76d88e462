"""External-model configs in the control plane: masked credentials written back, the task
check against the provider modules, several external entities in one endpoint."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from modelport.control.endpoints import EndpointService
from modelport.control.reconciler import Reconciler
from modelport.errors import InvalidParameterValue
from modelport.spec.endpoint import CreateEndpoint, EndpointCoreConfigInput
from modelport.store import Database
from tests.support.control import ADMIN, KEY, alice, external, run, settle, stored_block


def create(
    service: EndpointService, caller: Any, config: dict[str, Any], name: str = "ext"
) -> dict[str, Any]:
    return service.create(caller, CreateEndpoint.model_validate({"name": name, "config": config}))


def update(
    service: EndpointService, caller: Any, config: dict[str, Any], name: str = "ext"
) -> dict[str, Any]:
    return service.update_config(caller, name, EndpointCoreConfigInput.model_validate(config))


def written_back(got: dict[str, Any]) -> dict[str, Any]:
    """What a client sends when it PUTs back the config it read (GET fields and all)."""
    return {
        "served_entities": got["config"]["served_entities"],
        "traffic_config": got["config"]["traffic_config"],
    }


def test_a_config_written_back_with_its_mask_keeps_the_stored_key(tmp_path: Path) -> None:
    async def body(db: Database, reconciler: Reconciler, service: EndpointService) -> None:
        user = alice(db)  # CAN_MANAGE on her endpoint, no READ on the server-owned scope
        created = await asyncio.to_thread(create, service, user, external({"openai_api_key_plaintext": KEY}))
        await settle(reconciler)
        scope = f"modelport-endpoint-{created['id']}"
        ref = stored_block(db, 1)["openai_api_key_plaintext"]
        got = await asyncio.to_thread(service.get, user, "ext")
        assert got["config"]["served_entities"][0]["external_model"]["openai_config"] == {
            "openai_api_key_plaintext": "[REDACTED]"
        }

        await asyncio.to_thread(update, service, user, written_back(got))
        await settle(reconciler)
        assert stored_block(db, 2) == {"openai_api_key_plaintext": ref}
        assert service._secrets.resolve(scope, ref[len(f"{{{{secrets/{scope}/") : -2]) == KEY
        assert [s.key for s in db.secrets.list_secrets(scope)] == [ref.split("/")[-1][:-2]]

    run(tmp_path, body)


def test_a_mask_is_refused_where_there_is_nothing_to_keep(tmp_path: Path) -> None:
    async def body(db: Database, reconciler: Reconciler, service: EndpointService) -> None:
        masked = external({"openai_api_key_plaintext": "[REDACTED]"})
        with pytest.raises(InvalidParameterValue, match="has none there to keep"):
            await asyncio.to_thread(create, service, ADMIN, masked)
        assert db.endpoints.get("ext") is None and db.secrets.list_scopes() == []

        await asyncio.to_thread(create, service, ADMIN, external({"openai_api_key_plaintext": KEY}))
        await settle(reconciler)
        renamed = external({"openai_api_key_plaintext": "[REDACTED]"})
        renamed["served_entities"][0]["name"] = "chat-2"
        with pytest.raises(InvalidParameterValue, match="served entity 'chat-2' has none there to keep"):
            await asyncio.to_thread(update, service, ADMIN, renamed)
        endpoint = db.endpoints.get("ext")
        assert endpoint is not None and endpoint.pending_version is None

    run(tmp_path, body)


def test_a_task_the_provider_lacks_is_refused_before_anything_is_stored(tmp_path: Path) -> None:
    async def body(db: Database, reconciler: Reconciler, service: EndpointService) -> None:
        config = {
            "served_entities": [
                {
                    "name": "claude",
                    "external_model": {
                        "provider": "anthropic",
                        "name": "claude-x",
                        "task": "llm/v1/embeddings",
                        "anthropic_config": {"anthropic_api_key_plaintext": KEY},
                    },
                }
            ]
        }
        with pytest.raises(
            InvalidParameterValue, match="provider 'anthropic' does not offer llm/v1/embeddings"
        ):
            await asyncio.to_thread(create, service, ADMIN, config)
        assert db.endpoints.get("ext") is None and db.secrets.list_scopes() == []

    run(tmp_path, body)


def test_two_external_models_split_the_traffic_of_one_endpoint(tmp_path: Path) -> None:
    async def body(db: Database, reconciler: Reconciler, service: EndpointService) -> None:
        one, two = (
            external({"openai_api_key_plaintext": KEY}),
            external({"openai_api_key_plaintext": KEY + "2"}),
        )
        two["served_entities"][0]["name"] = "chat-2"
        config = {
            "served_entities": one["served_entities"] + two["served_entities"],
            "traffic_config": {
                "routes": [
                    {"served_entity_name": "chat", "traffic_percentage": 50},
                    {"served_entity_name": "chat-2", "traffic_percentage": 50},
                ]
            },
        }
        created = await asyncio.to_thread(create, service, ADMIN, config)
        await settle(reconciler)
        got = await asyncio.to_thread(service.get, ADMIN, "ext")
        assert got["task"] == "llm/v1/chat" and got["state"]["ready"] == "READY"
        assert [e["name"] for e in got["config"]["served_entities"]] == ["chat", "chat-2"]
        scope = f"modelport-endpoint-{created['id']}"
        assert len(db.secrets.list_secrets(scope)) == 2

    run(tmp_path, body)
