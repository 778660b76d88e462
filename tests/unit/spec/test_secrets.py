"""Secret names, references and the walkers over endpoint configs."""

from __future__ import annotations

from typing import Any

import pytest

from modelport.errors import InvalidParameterValue
from modelport.spec.secrets import (
    ScopePermission,
    SecretReference,
    parse_reference,
    plaintext_fields,
    reference,
    references_in,
    replace_plaintext,
    validate_key,
    validate_scope_name,
)

BODY: dict[str, Any] = {
    "served_entities": [
        {
            "name": "chat",
            "external_model": {
                "provider": "custom",
                "name": "m",
                "task": "llm/v1/chat",
                "custom_provider_config": {
                    "custom_provider_url": "https://example.test",
                    "api_key_auth": {"key": "X-Key", "value_plaintext": "inline-value"},
                },
            },
            "environment_vars": {"TOKEN": "{{secrets/team/token}}", "PLAIN": "hello"},
        },
        {
            "name": "other",
            "external_model": {
                "provider": "openai",
                "openai_config": {
                    "openai_api_key": "{{secrets/llm/openai}}",
                    "microsoft_entra_client_secret_plaintext": "{{secrets/llm/entra}}",
                },
            },
        },
    ],
    "traffic_config": {"routes": []},
}


def test_reference_round_trip() -> None:
    assert reference("llm", "openai") == "{{secrets/llm/openai}}"
    assert parse_reference("{{secrets/llm/openai}}") == ("llm", "openai")


@pytest.mark.parametrize(
    "value", ["sk-123", "Bearer {{secrets/a/b}}", "{{secrets/a}}", "{{secrets/a/b/c}}", None, 5]
)
def test_only_whole_values_are_references(value: Any) -> None:
    assert parse_reference(value) is None


def test_references_are_found_in_provider_blocks_and_environment_vars() -> None:
    assert references_in(BODY) == [
        SecretReference("config.served_entities[0].environment_vars.TOKEN", "team", "token"),
        SecretReference(
            "config.served_entities[1].external_model.openai_config.openai_api_key", "llm", "openai"
        ),
        SecretReference(
            "config.served_entities[1].external_model.openai_config.microsoft_entra_client_secret_plaintext",
            "llm",
            "entra",
        ),
    ]


def test_plaintext_fields_skip_values_that_are_references() -> None:
    assert list(plaintext_fields(BODY)) == [
        ("chat", ("custom_provider_config", "api_key_auth", "value_plaintext"), "inline-value")
    ]


def test_replace_plaintext_copies_and_swaps_values() -> None:
    seen: list[tuple[str, tuple[str, ...], str]] = []

    def store(entity: str, path: tuple[str, ...], value: str) -> str:
        seen.append((entity, path, value))
        return "{{secrets/server/k1}}"

    out = replace_plaintext(BODY, store)

    auth = out["served_entities"][0]["external_model"]["custom_provider_config"]["api_key_auth"]
    assert auth == {"key": "X-Key", "value_plaintext": "{{secrets/server/k1}}"}
    original = BODY["served_entities"][0]["external_model"]["custom_provider_config"]["api_key_auth"]
    assert original["value_plaintext"] == "inline-value"
    assert seen == [("chat", ("custom_provider_config", "api_key_auth", "value_plaintext"), "inline-value")]
    assert out["served_entities"][1] == BODY["served_entities"][1]


@pytest.mark.parametrize("name", ["llm", "a.b-c_d", "x" * 128])
def test_valid_names(name: str) -> None:
    assert validate_scope_name(name) == name
    assert validate_key(name) == name


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (None, "Missing required field 'scope'"),
        ("", "Missing required field 'scope'"),
        (5, "must be a string"),
        ("has space", "letters, digits"),
        ("x" * 129, "1-128"),
        ("a/b", "letters, digits"),
    ],
)
def test_invalid_scope_names(value: Any, message: str) -> None:
    with pytest.raises(InvalidParameterValue, match=message):
        validate_scope_name(value)


def test_permissions_parse_and_order() -> None:
    assert ScopePermission.parse("read") is ScopePermission.READ
    assert ScopePermission.READ < ScopePermission.WRITE < ScopePermission.MANAGE
    with pytest.raises(InvalidParameterValue, match="'OWNER' is not one of READ, WRITE, MANAGE"):
        ScopePermission.parse("OWNER")


def test_a_plaintext_value_that_is_not_a_string_is_refused_without_echo() -> None:
    body = {
        "served_entities": [{"name": "e", "external_model": {"openai_config": {"x_plaintext": {"k": "v9"}}}}]
    }
    where = r"'external_model\.openai_config\.x_plaintext'"
    with pytest.raises(InvalidParameterValue, match=where) as caught:
        replace_plaintext(body, lambda *_: "never")
    assert "v9" not in caught.value.message
