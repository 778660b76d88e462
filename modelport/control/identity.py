"""Principals (users, service principals, groups), the first admin, and API tokens.

Groups ``admins`` and ``users`` always exist: every principal is a member of ``users``;
members of ``admins`` may do anything. Token values are shown once, at creation; the
store keeps only their SHA-256.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from modelport.clock import now_ms
from modelport.errors import (
    InvalidParameterValue,
    PermissionDenied,
    ResourceAlreadyExists,
    ResourceDoesNotExist,
)
from modelport.spec.identity import ADMINS_GROUP, USERS_GROUP, Caller, hash_token, new_token_value
from modelport.store import Database
from modelport.store.records import PrincipalRecord, TokenRecord

__all__ = ["SESSION_COMMENT", "IdentityService", "NewToken"]

log = logging.getLogger("modelport.identity")
KINDS = ("user", "service_principal", "group")
MAX_LIFETIME_SECONDS = 10 * 365 * 24 * 3600
#: The comment of the tokens that browser sign-ins create (listed with the principal's tokens).
SESSION_COMMENT = "browser session"


@dataclass(frozen=True)
class NewToken:
    value: str
    record: TokenRecord


class IdentityService:
    def __init__(self, db: Database, forget: Callable[[str | None], None]) -> None:
        """``forget(token_hash | None)`` drops cached authentications after a change."""
        self._db = db
        self._forget = forget

    # ---- first start -------------------------------------------------------------------
    def bootstrap(self, admin_user: str, admin_token: str | None, data_dir: Path) -> str | None:
        """Create the built-in groups, the admin user and its first token.

        Returns the generated token value when one was generated (to print once), else None.
        """
        repo = self._db.principals
        for group in (ADMINS_GROUP, USERS_GROUP):
            if repo.get(group) is None:
                with contextlib.suppress(ResourceAlreadyExists):
                    repo.create(
                        group, "group", display_name=group, is_admin=group == ADMINS_GROUP, now_ms=now_ms()
                    )
        admin = repo.get(admin_user)
        if admin is None:
            try:
                admin = self._create(admin_user, "user", display_name=admin_user, admin=True)
            except ResourceAlreadyExists:
                admin = repo.get(admin_user)
        assert admin is not None
        token_file = data_dir / "admin-token"
        if admin_token:
            if self._db.principals.find_token(hash_token(admin_token)) is None:
                self._store_token(
                    admin,
                    admin_token,
                    comment="admin token from MODELPORT_ADMIN_TOKEN",
                    lifetime_seconds=None,
                    created_by=admin.name,
                )
            return None
        if repo.tokens(admin.id) or token_file.exists():
            return None
        value = new_token_value()
        self._store_token(
            admin, value, comment="first admin token", lifetime_seconds=None, created_by=admin.name
        )
        data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(value + "\n")
        return value

    # ---- principals ----------------------------------------------------------------------
    def _create(
        self, name: str, kind: str, *, display_name: str | None, admin: bool = False
    ) -> PrincipalRecord:
        repo = self._db.principals
        record = repo.create(name, kind, display_name=display_name, is_admin=False, now_ms=now_ms())
        if kind != "group":
            users = repo.get(USERS_GROUP)
            assert users is not None
            repo.set_members(users.id, [record.id], replace=False)
        if admin:
            admins = repo.get(ADMINS_GROUP)
            assert admins is not None
            repo.set_members(admins.id, [record.id], replace=False)
        found = repo.get_by_id(record.id)
        assert found is not None
        return found

    @staticmethod
    def require_admin(caller: Caller, what: str) -> None:
        if not caller.is_admin:
            raise PermissionDenied(
                f"Only members of the '{ADMINS_GROUP}' group may {what}; '{caller.name}' is not one."
            )

    def create_principal(
        self,
        caller: Caller,
        name: str | None,
        kind: str,
        *,
        display_name: str | None = None,
        groups: list[str] | None = None,
        members: list[str] | None = None,
    ) -> PrincipalRecord:
        self.require_admin(caller, f"create a {kind.replace('_', ' ')}")
        if kind == "service_principal" and not name:
            name = str(uuid.uuid4())
        field = {"user": "userName", "service_principal": "applicationId", "group": "displayName"}[kind]
        if not name:
            raise InvalidParameterValue(f"Missing required field '{field}'.")
        if not isinstance(name, str):  # e.g. {"userName": ["a"]}: a 400, not a 500 from the store
            raise InvalidParameterValue(f"Invalid value for '{field}': must be a string.")
        if display_name is not None and not isinstance(display_name, str):
            raise InvalidParameterValue("Invalid value for 'displayName': must be a string.")
        record = self._create(name, kind, display_name=display_name or name)
        repo = self._db.principals
        for group_name in groups or []:
            group = self.find(group_name, "group")
            repo.set_members(group.id, [record.id], replace=False)
        if members:
            repo.set_members(record.id, [self.find(m).id for m in members], replace=False)
        self._forget(None)
        found = repo.get_by_id(record.id)
        assert found is not None
        return found

    def find(self, name_or_id: str, kind: str | None = None) -> PrincipalRecord:
        repo = self._db.principals
        record = repo.get(name_or_id)
        # an id is a database integer: digits only (int() takes '²' for no number and '٣' for 3)
        if record is None and name_or_id.isascii() and name_or_id.isdecimal() and len(name_or_id) < 19:
            record = repo.get_by_id(int(name_or_id))
        if record is None or (kind is not None and record.kind != kind):
            what = (kind or "principal").replace("_", " ")
            raise ResourceDoesNotExist(f"No {what} named '{name_or_id}' exists.")
        return record

    def list_principals(self, caller: Caller, kind: str) -> list[PrincipalRecord]:
        return self._db.principals.list(kind)

    def members(self, group: PrincipalRecord) -> list[PrincipalRecord]:
        return self._db.principals.members(group.id)

    def change_members(
        self, caller: Caller, group_ref: str, add: list[str], remove: list[str]
    ) -> PrincipalRecord:
        self.require_admin(caller, "change group members")
        group = self.find(group_ref, "group")
        repo = self._db.principals
        if add:
            repo.set_members(group.id, [self.find(m).id for m in add], replace=False)
        if remove:
            repo.remove_members(group.id, [self.find(m).id for m in remove])
        self._forget(None)
        return group

    def set_active(self, caller: Caller, ref: str, kind: str, active: bool) -> PrincipalRecord:
        """Deactivate (or reactivate) a user or service principal: a deactivated one keeps its
        tokens, grants and groups, but every token of it is refused (401) until it is active
        again (other processes follow within the authenticator's cache time)."""
        self.require_admin(caller, f"deactivate or activate a {kind.replace('_', ' ')}")
        if kind == "group":
            raise InvalidParameterValue("Groups have no 'active' attribute.")
        record = self.find(ref, kind)
        if record.id == caller.id and not active:
            raise InvalidParameterValue("You cannot deactivate yourself.")
        self._db.principals.set_active(record.id, active)
        self._forget(None)
        return self.find(str(record.id), kind)

    def delete_principal(self, caller: Caller, ref: str, kind: str) -> None:
        self.require_admin(caller, f"delete a {kind.replace('_', ' ')}")
        record = self.find(ref, kind)
        if record.name in (ADMINS_GROUP, USERS_GROUP):
            raise InvalidParameterValue(f"The built-in group '{record.name}' cannot be deleted.")
        if record.id == caller.id:
            raise InvalidParameterValue("You cannot delete yourself.")
        self._db.principals.delete(record.id)
        self._forget(None)

    # ---- tokens ---------------------------------------------------------------------------
    def _store_token(
        self,
        owner: PrincipalRecord,
        value: str,
        *,
        comment: str | None,
        lifetime_seconds: int | None,
        created_by: str,
    ) -> TokenRecord:
        if (
            lifetime_seconds is not None
            and lifetime_seconds != -1
            and not 0 < lifetime_seconds <= MAX_LIFETIME_SECONDS
        ):
            raise InvalidParameterValue(
                f"Invalid value for 'lifetime_seconds': {lifetime_seconds}; give a positive number of "
                f"seconds "
                f"up to {MAX_LIFETIME_SECONDS}, or leave it out for a token that does not expire."
            )
        created = now_ms()
        expiry = None if lifetime_seconds in (None, -1) else created + int(lifetime_seconds) * 1000  # type: ignore[operator]
        token_id = secrets.token_hex(16)
        self._db.principals.add_token(
            token_id,
            owner.id,
            hash_token(value),
            comment=comment,
            now_ms=created,
            expiry_ms=expiry,
            created_by=created_by,
        )
        token = self._db.principals.get_token(token_id)
        assert token is not None
        return token

    def create_token(self, caller: Caller, lifetime_seconds: int | None, comment: str | None) -> NewToken:
        owner = self.find(str(caller.id))
        value = new_token_value()
        record = self._store_token(
            owner, value, comment=comment, lifetime_seconds=lifetime_seconds, created_by=caller.name
        )
        return NewToken(value, record)

    def create_token_for(
        self, caller: Caller, principal: str, kind: str, lifetime_seconds: int | None, comment: str | None
    ) -> NewToken:
        self.require_admin(caller, "create tokens on behalf of others")
        owner = self.find(principal, kind)
        value = new_token_value()
        record = self._store_token(
            owner, value, comment=comment, lifetime_seconds=lifetime_seconds, created_by=caller.name
        )
        return NewToken(value, record)

    def create_session(self, caller: Caller, max_seconds: int) -> NewToken:
        """A browser session's token (:mod:`modelport.api.sessions`): the caller's principal, at most
        ``max_seconds`` long and never outliving the token the caller signed in with."""
        lifetime = max_seconds
        signed_in_with = self._db.principals.get_token(caller.token_id) if caller.token_id else None
        if signed_in_with is not None and signed_in_with.expiry_ms is not None:
            lifetime = min(lifetime, max(1, (signed_in_with.expiry_ms - now_ms()) // 1000))
        return self.create_token(caller, lifetime, SESSION_COMMENT)

    def end_session(self, caller: Caller) -> None:
        """Delete the token of the session the caller signed in with (signing out)."""
        token = self._db.principals.get_token(caller.token_id) if caller.token_id else None
        if token is not None and token.comment == SESSION_COMMENT and token.principal_id == caller.id:
            self._forget(self._db.principals.delete_token(token.id))

    def list_tokens(self, caller: Caller, *, all_principals: bool = False) -> list[TokenRecord]:
        if all_principals:
            self.require_admin(caller, "list every principal's tokens")
            return self._db.principals.tokens()
        return self._db.principals.tokens(caller.id)

    def delete_token(self, caller: Caller, token_id: str | None) -> None:
        if not token_id:
            raise InvalidParameterValue("Missing required field 'token_id'.")
        if not isinstance(token_id, str):  # a JSON body may hold anything there
            raise InvalidParameterValue("Invalid value for 'token_id': must be a string.")
        token = self._db.principals.get_token(token_id)
        if token is None or (token.principal_id != caller.id and not caller.is_admin):
            raise ResourceDoesNotExist(f"Token with id '{token_id}' does not exist.")
        digest = self._db.principals.delete_token(token_id)
        self._forget(digest)
