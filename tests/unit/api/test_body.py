"""Request-body validation errors name the field and never echo an inline credential."""

from __future__ import annotations

import pytest

from modelport.api.body import validate
from modelport.errors import InvalidParameterValue
from modelport.spec.endpoint import CreateEndpoint


def test_a_type_error_around_a_plaintext_credential_masks_it() -> None:
    body = {
        "name": "ep",
        "config": {
            "served_entities": {"external_model": {"openai_config": {"openai_api_key_plaintext": "sk-9"}}}
        },
    }
    with pytest.raises(InvalidParameterValue, match=r"config\.served_entities") as caught:
        validate(CreateEndpoint, body)
    assert "sk-9" not in caught.value.message
    assert "[REDACTED]" in caught.value.message
