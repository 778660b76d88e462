"""Replica environments get secret values for ``{{secrets/...}}`` environment_vars."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelport.entities.registry_handle import RegistryHandle
from modelport.errors import InvalidState
from modelport.runtime.local import LocalBackend, RuntimeOptions
from modelport.runtime.logs import LogStore


def backend(tmp_path: Path, values: dict[tuple[str, str], str]) -> LocalBackend:
    def resolve(scope: str, key: str) -> str:
        if (scope, key) not in values:
            raise InvalidState(f"Secret {{{{secrets/{scope}/{key}}}}} does not exist")
        return values[(scope, key)]

    options = RuntimeOptions(run_dir=tmp_path / "run", models_dir=tmp_path / "models")
    return LocalBackend(RegistryHandle(), LogStore(tmp_path / "logs"), options, {}, resolve_secret=resolve)


def test_references_are_resolved_and_other_values_kept(tmp_path: Path) -> None:
    local = backend(tmp_path, {("team", "token"): "v-42"})
    entity = {
        "environment_vars": {"TOKEN": "{{secrets/team/token}}", "MODE": "fast", "X": "a {{secrets/t/k}}"}
    }
    assert local._entity_vars(entity) == {"TOKEN": "v-42", "MODE": "fast", "X": "a {{secrets/t/k}}"}


def test_a_missing_secret_names_the_reference(tmp_path: Path) -> None:
    local = backend(tmp_path, {})
    with pytest.raises(InvalidState, match=r"\{\{secrets/team/gone\}\}"):
        local._entity_vars({"environment_vars": {"TOKEN": "{{secrets/team/gone}}"}})
