"""Privileges on the Delta tables modelport writes and serves (``catalog.schema.table``). No I/O.

Unity Catalog's table privileges are separate (SELECT does not come with MODIFY); modelport's
are **ordered**, like its endpoint levels: SELECT < MODIFY < MANAGE, a higher one including
every right of the lower ones. ``ALL_PRIVILEGES`` is read as MANAGE.
"""

from __future__ import annotations

from enum import IntEnum

__all__ = ["AUDIT_TABLE_NAME", "PRIVILEGE_DESCRIPTIONS", "TablePrivilege"]

#: Three-part name of the audit log table (Databricks' ``system.access.audit``).
AUDIT_TABLE_NAME = "system.access.audit"


class TablePrivilege(IntEnum):
    """Ordered: a higher privilege includes every right of the lower ones."""

    SELECT = 1
    MODIFY = 2
    MANAGE = 3

    @classmethod
    def parse(cls, value: str) -> TablePrivilege:
        """``"select"``, ``"SELECT"``... -> the member; ``ALL_PRIVILEGES`` is MANAGE; KeyError otherwise."""
        name = value.strip().upper()
        if name == "ALL_PRIVILEGES":
            return cls.MANAGE
        return cls[name]

    def implied(self) -> list[str]:
        """This privilege and every lower one, lowest first (what a holder may do)."""
        return [p.name for p in TablePrivilege if p <= self]


PRIVILEGE_DESCRIPTIONS = {
    TablePrivilege.MANAGE: "Can read and change the table and grant privileges on it.",
    TablePrivilege.MODIFY: "Can read the table and write to it where modelport offers writes.",
    TablePrivilege.SELECT: "Can read every row of the table.",
}
