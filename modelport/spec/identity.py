"""Who calls: the caller of a request, built-in groups, and the API-token format. No I/O."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

__all__ = ["ADMINS_GROUP", "USERS_GROUP", "Caller", "hash_token", "new_token_value"]

ADMINS_GROUP = "admins"
USERS_GROUP = "users"
TOKEN_PREFIX = "dapi"


def new_token_value() -> str:
    """A fresh token in the Databricks personal-access-token shape (``dapi`` + 32 hex)."""
    return TOKEN_PREFIX + secrets.token_hex(16)


def hash_token(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


@dataclass(frozen=True)
class Caller:
    """Who sent a request: the principal, its groups, and whether it is an admin."""

    id: int
    name: str
    kind: str
    groups: tuple[str, ...]
    principal_ids: frozenset[int]
    token_id: str | None = None

    @property
    def is_admin(self) -> bool:
        return ADMINS_GROUP in self.groups
