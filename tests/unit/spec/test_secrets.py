"""Secret names, references and the walkers over endpoint configs."""

from __future__ import annotations

from typing import Any

import pytest

from modelport.errors import InvalidParameterValue
from modelport.spec.secrets import (
    MASK,
    ScopePermission,
    SecretReference,
    keep_masked,
    parse_reference,
    plaintext_fields,
    reference,
    references_in,
    references_of,
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


def test_references_of_any_block_at_any_depth() -> None:
    block = {
        "api_key": "{{secrets/llm/key}}",
        "headers": [{"value": "{{secrets/llm/header}}"}, "Bearer {{secrets/llm/no}}"],
        "nested": {"deeper": {"token": "{{secrets/team/t}}"}},
        "plain": "sk-1",
    }
    assert list(references_of(block, "cfg")) == [
        SecretReference("cfg.api_key", "llm", "key"),
        SecretReference("cfg.headers[0].value", "llm", "header"),
        SecretReference("cfg.nested.deeper.token", "team", "t"),
    ]
    assert list(references_of("{{secrets/a/b}}")) == [SecretReference("", "a", "b")]


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


# ---- masked credentials written back --------------------------------------------------------
STORED = "{{secrets/modelport-endpoint-abc/chat.openai_api_key.1a2b3c4d}}"


def openai_config_body(name: str = "chat", **block: Any) -> dict[str, Any]:
    external = {"provider": "openai", "name": "gpt", "task": "llm/v1/chat", "openai_config": block}
    return {"served_entities": [{"name": name, "external_model": external}]}


def test_a_mask_keeps_the_stored_credential_of_the_same_entity_and_field() -> None:
    current = openai_config_body(openai_api_key_plaintext=STORED, openai_organization="org-1")
    body = openai_config_body(openai_api_key_plaintext=MASK, openai_organization="org-2")
    kept, refs = keep_masked(body, [current])
    assert kept == openai_config_body(openai_api_key_plaintext=STORED, openai_organization="org-2")
    assert refs == {("modelport-endpoint-abc", "chat.openai_api_key.1a2b3c4d")}
    assert body["served_entities"][0]["external_model"]["openai_config"]["openai_api_key_plaintext"] == MASK


def test_nested_fields_are_kept_too() -> None:
    def custom(value: str) -> dict[str, Any]:
        block = {
            "custom_provider_url": "https://llm.example/v1",
            "api_key_auth": {"key": "X-Key", "value_plaintext": value},
        }
        external = {"provider": "custom", "name": "m", "task": "llm/v1/chat", "custom_provider_config": block}
        return {"served_entities": [{"name": "c", "external_model": external}]}

    assert keep_masked(custom(MASK), [custom(STORED)])[0] == custom(STORED)


def test_the_first_current_config_with_the_field_wins() -> None:
    active = openai_config_body(openai_api_key_plaintext=STORED)
    pending = openai_config_body(openai_api_key_plaintext="{{secrets/modelport-endpoint-abc/other}}")
    kept, _ = keep_masked(openai_config_body(openai_api_key_plaintext=MASK), [active, pending])
    assert kept == active
    kept, _ = keep_masked(openai_config_body(openai_api_key_plaintext=MASK), [openai_config_body(), pending])
    assert kept == pending


def test_a_body_without_masks_is_returned_as_it_is() -> None:
    body = openai_config_body(openai_api_key_plaintext="sk-new")
    assert keep_masked(body, []) == (body, set())


@pytest.mark.parametrize(
    "current",
    [
        [],  # a new endpoint
        [openai_config_body("other", openai_api_key_plaintext=STORED)],  # a new entity
        [openai_config_body(openai_api_key="{{secrets/llm/openai}}")],  # the field was not set
    ],
)
def test_a_mask_with_nothing_to_keep_is_refused(current: list[dict[str, Any]]) -> None:
    with pytest.raises(InvalidParameterValue) as caught:
        keep_masked(openai_config_body(openai_api_key_plaintext=MASK), current)
    assert caught.value.message.startswith(
        "Invalid value for 'config.served_entities[0].external_model.openai_config."
        "openai_api_key_plaintext': '[REDACTED]' is what a GET shows in place of a stored credential, "
        "and served entity 'chat' has none there to keep."
    )


def test_a_mask_is_not_kept_when_the_credential_would_go_somewhere_else() -> None:
    current = openai_config_body(openai_api_key_plaintext=STORED, openai_api_base="https://a.example/v1")
    moved = openai_config_body(openai_api_key_plaintext=MASK, openai_api_base="https://evil.example/v1")
    with pytest.raises(InvalidParameterValue, match=r"openai_api_base changed\. Give the credential again\."):
        keep_masked(moved, [current])
    added = openai_config_body(openai_api_key_plaintext=MASK)
    with pytest.raises(InvalidParameterValue, match="openai_api_base changed"):
        keep_masked(added, [current])
    other_provider = openai_config_body(openai_api_key_plaintext=STORED)
    other_provider["served_entities"][0]["external_model"]["provider"] = "custom"
    with pytest.raises(InvalidParameterValue, match="provider changed"):
        keep_masked(openai_config_body(openai_api_key_plaintext=MASK), [other_provider])
