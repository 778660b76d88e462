"""Each config version keeps the AI-gateway settings in effect with it; extension blocks that this
server does not act on yet are refused, never silently ignored."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from modelport.errors import InvalidParameterValue
from modelport.spec.endpoint import AiGatewayConfig, CreateEndpoint, EndpointCoreConfigInput
from tests.support.control import ADMIN, lead, settle, setup

ENTITY = {"name": "v1", "entity_name": "iris", "entity_version": "1"}


def gateway(calls: int) -> dict[str, Any]:
    return {"rate_limits": [{"calls": calls, "renewal_period": "minute", "key": "endpoint"}]}


def test_config_versions_keep_the_gateway_in_effect_with_them(tmp_path: Path) -> None:
    async def main() -> None:
        db, _, reconciler, service = setup(tmp_path)
        await lead(reconciler)
        try:
            body = {"name": "ep", "config": {"served_entities": [ENTITY]}, "ai_gateway": gateway(1)}
            await asyncio.to_thread(service.create, ADMIN, CreateEndpoint.model_validate(body))
            await settle(reconciler)
            endpoint = db.endpoints.get("ep")
            assert db.endpoints.get_config(endpoint.id, 1).ai_gateway == gateway(1)
            await asyncio.to_thread(
                service.put_ai_gateway, ADMIN, "ep", AiGatewayConfig.model_validate(gateway(2))
            )
            assert db.endpoints.get_config(endpoint.id, 1).ai_gateway == gateway(2)  # v1 serves
            config = EndpointCoreConfigInput.model_validate({"served_entities": [{**ENTITY, "name": "v2"}]})
            await asyncio.to_thread(service.update_config, ADMIN, "ep", config)
            await settle(reconciler)
            assert db.endpoints.get_config(endpoint.id, 2).ai_gateway == gateway(2)  # copied
            await asyncio.to_thread(
                service.put_ai_gateway, ADMIN, "ep", AiGatewayConfig.model_validate(gateway(3))
            )
            assert db.endpoints.get_config(endpoint.id, 2).ai_gateway == gateway(3)
            assert db.endpoints.get_config(endpoint.id, 1).ai_gateway == gateway(2)  # as it last served
        finally:
            await reconciler.stop()

    asyncio.run(main())


def test_a_response_cache_is_stored_with_its_defaults_and_bad_values_are_refused(tmp_path: Path) -> None:
    async def main() -> None:
        _, _, reconciler, service = setup(tmp_path)
        await lead(reconciler)
        try:
            body = {
                "name": "ep",
                "config": {"served_entities": [ENTITY]},
                "ai_gateway": {"response_cache": {"enabled": True, "ttl_seconds": 60}},
            }
            created = await asyncio.to_thread(service.create, ADMIN, CreateEndpoint.model_validate(body))
            assert created["ai_gateway"]["response_cache"] == {
                "enabled": True,
                "ttl_seconds": 60,
                "scope": "user",
                "max_entry_bytes": 1048576,
                "cache_non_deterministic": False,
            }
            await settle(reconciler)
            for block, message in [
                ({"ttl_seconds": 5}, "Missing required field 'response_cache.enabled'."),
                ({"enabled": True, "ttl_seconds": 0}, "'response_cache.ttl_seconds'"),
                ({"enabled": True, "semantic_similarity": 1.5}, "'response_cache.semantic_similarity'"),
                ({"enabled": True, "max_entry_bytes": -1}, "'response_cache.max_entry_bytes'"),
            ]:
                with pytest.raises(InvalidParameterValue) as refused:
                    await asyncio.to_thread(
                        service.put_ai_gateway,
                        ADMIN,
                        "ep",
                        AiGatewayConfig.model_validate({"response_cache": block}),
                    )
                assert message in refused.value.message
        finally:
            await reconciler.stop()

    asyncio.run(main())
