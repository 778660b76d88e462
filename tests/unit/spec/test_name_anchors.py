"""Names checked with a pattern are refused with a trailing newline (Python's ``$`` matches
before one; found by reading the patterns while fuzzing: ``{"name": "ep\\n"}`` created an
endpoint whose name ends in a newline)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from modelport.errors import InvalidParameterValue
from modelport.spec.secrets import parse_reference, validate_key, validate_scope_name
from modelport.spec.validation import validate_endpoint_name
from modelport.tables.names import validate_part

CHECKS: list[Callable[[str], Any]] = [
    validate_endpoint_name,
    validate_scope_name,
    validate_key,
    lambda value: validate_part(value, "catalog_name"),
]


@pytest.mark.parametrize("check", CHECKS)
def test_a_trailing_newline_is_refused(check: Callable[[str], Any]) -> None:
    assert check("name_1") is not None
    with pytest.raises(InvalidParameterValue):
        check("name_1\n")


def test_a_reference_with_a_trailing_newline_is_not_a_reference() -> None:
    assert parse_reference("{{secrets/scope/key}}") is not None
    assert parse_reference("{{secrets/scope/key}}\n") is None
