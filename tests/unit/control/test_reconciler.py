"""The update state machine, driven through EndpointService and the Reconciler.

The deployment backend is a fake (the runtime is where processes live); the store is a
real SQLite database in a temporary folder.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from modelport.errors import InvalidParameterValue, ResourceConflict, ResourceDoesNotExist
from modelport.spec.endpoint import CreateEndpoint, EndpointCoreConfigInput
from modelport.store import open_database
from tests.support.control import ADMIN, lead, settle, setup


def create_body(*names: str, version: str = "1") -> CreateEndpoint:
    entities = [{"name": n, "entity_name": "iris", "entity_version": version} for n in names]
    routes = [
        {"served_entity_name": n, "traffic_percentage": 100 if i == 0 else 0} for i, n in enumerate(names)
    ]
    return CreateEndpoint.model_validate(
        {"name": "ep", "config": {"served_entities": entities, "traffic_config": {"routes": routes}}}
    )


def update_body(*names: str) -> EndpointCoreConfigInput:
    return create_body(*names).config  # type: ignore[return-value]


def test_create_goes_in_progress_then_ready(tmp_path: Path) -> None:
    async def main() -> None:
        _, backend, reconciler, service = setup(tmp_path)
        await lead(reconciler)
        backend.gate = asyncio.Event()
        created = await asyncio.to_thread(service.create, ADMIN, create_body("a"))
        assert created["state"] == {
            "ready": "NOT_READY",
            "config_update": "IN_PROGRESS",
            "suspend": "NOT_SUSPENDED",
        }
        assert created["pending_config"]["config_version"] == 1
        assert "config" not in created
        backend.gate.set()
        await settle(reconciler)
        got = await asyncio.to_thread(service.get, ADMIN, "ep")
        assert got["state"]["ready"] == "READY" and got["state"]["config_update"] == "NOT_UPDATING"
        assert got["config"]["config_version"] == 1
        assert got["config"]["served_entities"][0]["state"]["deployment"] == "DEPLOYMENT_READY"
        assert "pending_config" not in got
        assert ("retire", 1) in backend.calls

    asyncio.run(main())


def test_failed_update_keeps_old_config_serving(tmp_path: Path) -> None:
    async def main() -> None:
        _, backend, reconciler, service = setup(tmp_path)
        await lead(reconciler)
        await asyncio.to_thread(service.create, ADMIN, create_body("a"))
        await settle(reconciler)
        await asyncio.to_thread(service.update_config, ADMIN, "ep", update_body("bad-one", "b"))
        await settle(reconciler)
        got = await asyncio.to_thread(service.get, ADMIN, "ep")
        assert got["state"]["config_update"] == "UPDATE_FAILED"
        assert got["state"]["ready"] == "READY"
        assert got["config"]["config_version"] == 1
        states = {e["name"]: e["state"] for e in got["pending_config"]["served_entities"]}
        assert states["bad-one"] == {
            "deployment": "DEPLOYMENT_FAILED",
            "deployment_state_message": "model failed to load: boom",
        }
        assert states["b"]["deployment"] == "DEPLOYMENT_ABORTED"
        assert ("abort", 2) in backend.calls
        # A later good update is accepted and becomes version 3.
        await asyncio.to_thread(service.update_config, ADMIN, "ep", update_body("c"))
        await settle(reconciler)
        got = await asyncio.to_thread(service.get, ADMIN, "ep")
        assert (got["state"]["config_update"], got["config"]["config_version"]) == ("NOT_UPDATING", 3)

    asyncio.run(main())


def test_second_update_while_in_progress_is_a_conflict_and_cancel_works(tmp_path: Path) -> None:
    async def main() -> None:
        _, backend, reconciler, service = setup(tmp_path)
        await lead(reconciler)
        await asyncio.to_thread(service.create, ADMIN, create_body("a"))
        await settle(reconciler)
        backend.gate = asyncio.Event()
        backend.started.clear()
        await asyncio.to_thread(service.update_config, ADMIN, "ep", update_body("b"))
        await backend.started.wait()
        with pytest.raises(ResourceConflict, match="already has a config update in progress"):
            await asyncio.to_thread(service.update_config, ADMIN, "ep", update_body("c"))
        canceled = await asyncio.to_thread(service.cancel_update, ADMIN, "ep")
        assert canceled["state"]["config_update"] == "UPDATE_CANCELED"
        await settle(reconciler)
        got = await asyncio.to_thread(service.get, ADMIN, "ep")
        assert got["state"] == {
            "ready": "READY",
            "config_update": "UPDATE_CANCELED",
            "suspend": "NOT_SUSPENDED",
        }
        assert got["config"]["served_entities"][0]["name"] == "a"
        assert got["pending_config"]["served_entities"][0]["state"]["deployment"] == "DEPLOYMENT_ABORTED"
        assert ("abort", 2) in backend.calls
        with pytest.raises(ResourceConflict, match="no config update in progress"):
            await asyncio.to_thread(service.cancel_update, ADMIN, "ep")
        backend.gate.set()

    asyncio.run(main())


def test_update_left_in_progress_resumes_on_start(tmp_path: Path) -> None:
    async def first_run() -> None:
        _, backend, reconciler, service = setup(tmp_path)
        await lead(reconciler)
        backend.gate = asyncio.Event()  # never opened: the "process" dies mid-update
        await asyncio.to_thread(service.create, ADMIN, create_body("a"))
        await backend.started.wait()
        await reconciler.stop()

    async def second_run() -> None:
        db = open_database(f"sqlite:///{tmp_path / 'm.db'}")
        assert db.endpoints.get("ep").config_update == "IN_PROGRESS"  # type: ignore[union-attr]
        _, backend, reconciler, service = setup(tmp_path, db)
        await lead(reconciler)
        await settle(reconciler)
        got = await asyncio.to_thread(service.get, ADMIN, "ep")
        assert (got["state"]["config_update"], got["config"]["config_version"]) == ("NOT_UPDATING", 1)
        assert backend.calls[0] == ("deploy", 1)

    asyncio.run(first_run())
    asyncio.run(second_run())


def test_unknown_version_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    async def main() -> None:
        db, _, reconciler, service = setup(tmp_path)
        await lead(reconciler)
        with pytest.raises(ResourceDoesNotExist, match="no iris 7"):
            await asyncio.to_thread(service.create, ADMIN, create_body("a", version="7"))
        assert db.endpoints.get("ep") is None

    asyncio.run(main())


def test_update_cannot_add_an_external_model(tmp_path: Path) -> None:
    async def main() -> None:
        _, _, reconciler, service = setup(tmp_path)
        await lead(reconciler)
        await asyncio.to_thread(service.create, ADMIN, create_body("a"))
        await settle(reconciler)
        ext = EndpointCoreConfigInput.model_validate(
            {
                "served_entities": [
                    {
                        "external_model": {
                            "provider": "openai",
                            "name": "gpt",
                            "task": "llm/v1/chat",
                            "openai_config": {"openai_api_key": "{{secrets/s/k}}"},
                        }
                    }
                ]
            }
        )
        with pytest.raises(InvalidParameterValue, match="cannot add an external model"):
            await asyncio.to_thread(service.update_config, ADMIN, "ep", ext)

    asyncio.run(main())


def test_plaintext_credentials_are_masked_in_responses(tmp_path: Path) -> None:
    async def main() -> None:
        _, _, reconciler, service = setup(tmp_path)
        await lead(reconciler)
        body = CreateEndpoint.model_validate(
            {
                "name": "ext",
                "config": {
                    "served_entities": [
                        {
                            "external_model": {
                                "provider": "openai",
                                "name": "gpt",
                                "task": "llm/v1/chat",
                                "openai_config": {"openai_api_key_plaintext": "sk-very-secret"},
                            }
                        }
                    ]
                },
            }
        )
        created = await asyncio.to_thread(service.create, ADMIN, body)
        await settle(reconciler)
        listed = await asyncio.to_thread(service.list, ADMIN)
        got = await asyncio.to_thread(service.get, ADMIN, "ext")
        for shown in (created, listed, got):
            assert "sk-very-secret" not in repr(shown)
        assert got["task"] == "llm/v1/chat"

    asyncio.run(main())
