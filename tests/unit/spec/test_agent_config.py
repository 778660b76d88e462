"""``agent_config`` of a served entity: its shape (spec/validation.py) and who may make an agent
run as a service principal (control/agent_config.py, on a SQLite file)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from modelport.control.agent_config import check_run_as
from modelport.control.identity import IdentityService
from modelport.errors import InvalidParameterValue, PermissionDenied
from modelport.gateway.auth import Authenticator, caller_from
from modelport.spec.endpoint import EndpointCoreConfigInput
from modelport.spec.validation import normalize_agent_config, normalize_config


def _entity(agent_config: Any, **over: Any) -> dict[str, Any]:
    return {"name": "agent", "entity_name": "m", "entity_version": "1", "agent_config": agent_config, **over}


def _normalized(agent_config: Any) -> dict[str, Any]:
    cfg = EndpointCoreConfigInput(served_entities=[_entity(agent_config)])
    return dict(normalize_config(cfg, "ep")["served_entities"][0])


def test_defaults_and_canonical_form() -> None:
    assert _normalized({})["agent_config"] == {"run_as": "caller"}
    assert _normalized({"run_as": None})["agent_config"] == {"run_as": "caller"}
    assert _normalized({"run_as": " svc ", "allowed_endpoints": ["a", "b", "a"]})["agent_config"] == {
        "run_as": "svc",
        "allowed_endpoints": ["a", "b"],
    }
    assert _normalized({"allowed_endpoints": []})["agent_config"]["allowed_endpoints"] == []
    cfg = EndpointCoreConfigInput(served_entities=[{"entity_name": "m", "entity_version": "1"}])
    assert "agent_config" not in normalize_config(cfg, "ep")["served_entities"][0]


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ({"runas": "x"}, "unknown field"),
        ({"run_as": ""}, r"agent_config\.run_as'"),
        ({"run_as": 3}, r"agent_config\.run_as'"),
        ({"allowed_endpoints": "ag-llm"}, r"allowed_endpoints': must be a list"),
        ({"allowed_endpoints": [1]}, r"allowed_endpoints\[0\]'"),
        ({"allowed_endpoints": ["ok", "not ok"]}, r"allowed_endpoints\[1\]'"),
        ({"allowed_endpoints": [f"e{i}" for i in range(51)]}, "limit is 50"),
    ],
)
def test_bad_agent_config_names_the_field(raw: Any, fragment: str) -> None:
    with pytest.raises(InvalidParameterValue, match=fragment):
        _normalized(raw)


def test_agent_config_must_be_an_object() -> None:
    with pytest.raises(InvalidParameterValue, match="'p': must be an object"):
        normalize_agent_config("caller", "p")


def test_agent_config_is_for_registered_models_only() -> None:
    external = {
        "provider": "openai",
        "name": "gpt",
        "task": "llm/v1/chat",
        "openai_config": {"openai_api_key_plaintext": "k"},
    }
    cfg = EndpointCoreConfigInput(served_entities=[{"external_model": external, "agent_config": {}}])
    with pytest.raises(InvalidParameterValue, match="registered model served as an agent"):
        normalize_config(cfg, "ep")


def test_run_as_a_service_principal_needs_an_admin_or_itself(tmp_path: Path) -> None:
    from modelport.store import open_database

    db = open_database(f"sqlite:///{tmp_path / 'm.db'}")
    auth = Authenticator(db)
    identity = IdentityService(db, auth.forget)
    identity.bootstrap("admin", "dapi-ok", tmp_path)
    admin = auth.authenticate("Bearer dapi-ok")
    alice = caller_from(identity.create_principal(admin, "alice", "user"))
    bot = caller_from(identity.create_principal(admin, "svc-bot", "service_principal"))

    def body(run_as: str) -> dict[str, Any]:
        return {"served_entities": [{"name": "x"}, _entity({"run_as": run_as})]}

    for caller in (admin, alice, bot, None):
        check_run_as(db, caller, body("caller"))
    for caller in (admin, bot, None):
        check_run_as(db, caller, body("svc-bot"))
    with pytest.raises(PermissionDenied, match=r"'alice' may not set 'config\.served_entities\[1\]"):
        check_run_as(db, alice, body("svc-bot"))
    for missing in ("nobody", "alice"):  # a user is not a service principal
        with pytest.raises(InvalidParameterValue, match=f"'{missing}' is not a service principal"):
            check_run_as(db, admin, body(missing))
