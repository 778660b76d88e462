"""Table privileges are ordered; ALL_PRIVILEGES is MANAGE."""

from __future__ import annotations

import pytest

from modelport.spec.table_privileges import PRIVILEGE_DESCRIPTIONS, TablePrivilege


def test_privileges_are_ordered_and_imply_the_lower_ones() -> None:
    assert TablePrivilege.SELECT < TablePrivilege.MODIFY < TablePrivilege.MANAGE
    assert TablePrivilege.SELECT.implied() == ["SELECT"]
    assert TablePrivilege.MODIFY.implied() == ["SELECT", "MODIFY"]
    assert TablePrivilege.MANAGE.implied() == ["SELECT", "MODIFY", "MANAGE"]
    assert set(PRIVILEGE_DESCRIPTIONS) == set(TablePrivilege)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("select", TablePrivilege.SELECT),
        (" Modify ", TablePrivilege.MODIFY),
        ("ALL_PRIVILEGES", TablePrivilege.MANAGE),
    ],
)
def test_parse(text: str, expected: TablePrivilege) -> None:
    assert TablePrivilege.parse(text) is expected


@pytest.mark.parametrize("text", ["READ", "CAN_MANAGE", "", "USE_SCHEMA"])
def test_parse_refuses_other_names(text: str) -> None:
    with pytest.raises(KeyError):
        TablePrivilege.parse(text)
