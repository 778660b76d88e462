"""Secret scopes and secrets with Databricks' semantics, and their resolution for the data plane.

Permissions (``spec.secrets.ScopePermission``) are granted per scope to users, service
principals and groups: READ reads values and lists keys (and lets a principal reference
the scope's secrets in an endpoint config), WRITE also puts and deletes secrets, MANAGE
also changes the ACL and deletes the scope. A scope's creator gets MANAGE (or the group
``users`` does, with ``initial_manage_principal: "users"``); members of ``admins`` may do
everything. A caller's permission is the highest of its own grant and its groups'.

Endpoint credentials given inline (``*_plaintext``) are stored as secrets in a scope the
server owns, ``modelport-endpoint-<endpoint id>``, which has an empty ACL (admins only);
the config keeps a ``{{secrets/...}}`` reference in their place.

Methods block (database calls): the API runs them in a thread pool; the data plane uses
:meth:`SecretService.resolve_async`, which reads the store in a thread on a cache miss. No
method logs or returns a secret value except :meth:`SecretService.get_secret` (to READ
holders, as Databricks does) and :meth:`SecretService.resolve` (to the server's own data
plane and replicas).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import re
import time
from collections.abc import Callable, Collection
from secrets import token_hex
from typing import Any

from modelport.clock import now_ms
from modelport.control.cipher import SecretCipher, seal_check
from modelport.control.identity import IdentityService
from modelport.errors import (
    InvalidParameterValue,
    InvalidState,
    PermissionDenied,
    ResourceDoesNotExist,
)
from modelport.spec.identity import USERS_GROUP, Caller
from modelport.spec.secrets import (
    ENDPOINT_SCOPE_PREFIX,
    MAX_VALUE_BYTES,
    ScopePermission,
    endpoint_scope,
    reference,
    references_in,
    replace_plaintext,
    validate_key,
    validate_scope_name,
)
from modelport.store import Database
from modelport.store.connectivity import is_unreachable
from modelport.store.records import SecretAclRecord, SecretScopeRecord

__all__ = ["SecretService"]

READ, WRITE, MANAGE = ScopePermission.READ, ScopePermission.WRITE, ScopePermission.MANAGE
#: How long a resolved value is served from memory. Writes through this process evict it at
#: once; other server processes sharing the store see a rotation within this time.
CACHE_SECONDS = 5.0
#: Inline credentials written this long before an update began and no longer referenced by
#: the serving or the new config are deleted; the margin covers updates racing each other.
_PRUNE_GRACE_MS = 60_000
_UNSAFE_KEY_CHARS = re.compile(r"[^A-Za-z0-9_.-]")
_SERVER = "modelport"


def _acl_item(entry: SecretAclRecord) -> dict[str, str]:
    return {"principal": entry.principal_name, "permission": ScopePermission(entry.permission).name}


def _decode_value(data: dict[str, Any]) -> bytes:
    string_value, bytes_value = data.get("string_value"), data.get("bytes_value")
    if (string_value is None) == (bytes_value is None):
        raise InvalidParameterValue("Give exactly one of 'string_value' and 'bytes_value'.")
    if string_value is not None:
        if not isinstance(string_value, str):
            raise InvalidParameterValue("Invalid value for 'string_value': must be a string.")
        value = string_value.encode("utf-8")
    else:
        if not isinstance(bytes_value, str):
            raise InvalidParameterValue("Invalid value for 'bytes_value': must be a base64-encoded string.")
        try:
            value = base64.b64decode(bytes_value, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidParameterValue("Invalid value for 'bytes_value': it is not valid base64.") from None
    if len(value) > MAX_VALUE_BYTES:
        raise InvalidParameterValue(
            f"The secret value is {len(value)} bytes long; the limit is {MAX_VALUE_BYTES // 1024} KB."
        )
    return value


class SecretService:
    """Scopes, secrets and ACLs behind the secrets API, and resolution of ``{{secrets/...}}``.

    Invariants: values are encrypted before they reach the store and decrypted only in
    :meth:`get_secret` and :meth:`resolve`; error messages name scopes, keys and fields,
    never values. ``resolve`` serves from a per-process cache for at most
    :data:`CACHE_SECONDS`; ``put``/``delete`` through this service evict at once.
    """

    def __init__(
        self,
        db: Database,
        cipher: SecretCipher,
        *,
        cache_seconds: float = CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._db = db
        self._cipher = cipher
        self._ttl = cache_seconds
        self._clock = clock
        self._cache: dict[tuple[str, str], tuple[float, str]] = {}

    # ---- permissions --------------------------------------------------------------------
    def permission(self, caller: Caller, scope: str) -> ScopePermission | None:
        """The caller's effective permission on ``scope`` (MANAGE for admins), None if none."""
        if caller.is_admin:
            return MANAGE
        granted = [p for pid, p in self._db.secrets.acl(scope).items() if pid in caller.principal_ids]
        return ScopePermission(max(granted)) if granted else None

    def _scope(self, scope: Any, path: str = "scope") -> SecretScopeRecord:
        name = validate_scope_name(scope, path)
        found = self._db.secrets.get_scope(name)
        if found is None:
            raise ResourceDoesNotExist(f"Scope {name} does not exist!")
        return found

    def _require(self, caller: Caller, scope: Any, needed: ScopePermission) -> SecretScopeRecord:
        found = self._scope(scope)
        have = self.permission(caller, found.name)
        if have is None or have < needed:
            raise PermissionDenied(
                f"'{caller.name}' does not have {needed.name} permission on secret scope '{found.name}'"
                + (f" (has {have.name})." if have else ".")
            )
        return found

    def forget_all(self) -> None:
        """Drop every cached value (another process changed secrets: re-read them)."""
        self._cache.clear()

    def _evict(self, scope: str, key: str | None = None) -> None:
        # list() copies the keys at once: resolve() may add entries from another thread meanwhile.
        for cached in [k for k in list(self._cache) if k[0] == scope and (key is None or k[1] == key)]:
            self._cache.pop(cached, None)

    # ---- scopes -------------------------------------------------------------------------
    def create_scope(
        self, caller: Caller, scope: Any, initial_manage_principal: Any = None, backend_type: Any = None
    ) -> None:
        name = validate_scope_name(scope)
        if backend_type not in (None, "", "DATABRICKS"):
            raise InvalidParameterValue(
                f"Invalid value for 'scope_backend_type': '{backend_type}' is not supported; "
                "secrets are kept in modelport's store (DATABRICKS)."
            )
        if name.startswith(ENDPOINT_SCOPE_PREFIX):
            raise InvalidParameterValue(
                f"Invalid value for 'scope': names starting with '{ENDPOINT_SCOPE_PREFIX}' are reserved "
                "for the credentials the server stores for endpoints."
            )
        manager_id = caller.id
        if initial_manage_principal not in (None, ""):
            if initial_manage_principal != USERS_GROUP:
                raise InvalidParameterValue(
                    "Invalid value for 'initial_manage_principal': the only supported principal is "
                    f"'{USERS_GROUP}' (all users); leave it out to make the creator the manager."
                )
            group = self._db.principals.get(USERS_GROUP)
            if group is None:
                raise ResourceDoesNotExist(f"Group '{USERS_GROUP}' does not exist.")
            manager_id = group.id
        self._db.secrets.create_scope(name, caller.name, now_ms(), manager_id)

    def delete_scope(self, caller: Caller, scope: Any) -> None:
        found = self._require(caller, scope, MANAGE)
        self._db.secrets.delete_scope(found.name)
        self._evict(found.name)

    def list_scopes(self, caller: Caller) -> list[dict[str, str]]:
        """Every scope, as Databricks lists them (names are not secret; values are guarded)."""
        return [{"name": s.name, "backend_type": "DATABRICKS"} for s in self._db.secrets.list_scopes()]

    # ---- secrets ------------------------------------------------------------------------
    def put_secret(self, caller: Caller, data: dict[str, Any]) -> None:
        """Create or overwrite a secret from a put request (``string_value`` or base64 ``bytes_value``)."""
        found = self._require(caller, data.get("scope"), WRITE)
        key = validate_key(data.get("key"))
        value = _decode_value(data)
        self._db.secrets.put(found.name, key, self._cipher.encrypt(value), now_ms())
        self._evict(found.name, key)

    def delete_secret(self, caller: Caller, scope: Any, key: Any) -> None:
        found = self._require(caller, scope, WRITE)
        name = validate_key(key)
        if not self._db.secrets.delete(found.name, name):
            raise ResourceDoesNotExist(f"Secret '{name}' does not exist in scope {found.name}.")
        self._evict(found.name, name)

    def list_secrets(self, caller: Caller, scope: Any) -> list[dict[str, Any]]:
        """Keys and last-update times (ms); never values."""
        found = self._require(caller, scope, READ)
        return [
            {"key": s.key, "last_updated_timestamp": s.last_updated_ms}
            for s in self._db.secrets.list_secrets(found.name)
        ]

    def get_secret(self, caller: Caller, scope: Any, key: Any) -> dict[str, str]:
        """``{"key", "value"}`` with the value base64-encoded, for principals with READ."""
        found = self._require(caller, scope, READ)
        name = validate_key(key)
        record = self._db.secrets.get(found.name, name)
        if record is None:
            raise ResourceDoesNotExist(f"Secret '{name}' does not exist in scope {found.name}.")
        value = self._cipher.decrypt(record.value, f"Secret {reference(found.name, name)}")
        return {"key": name, "value": base64.b64encode(value).decode("ascii")}

    # ---- ACLs ---------------------------------------------------------------------------
    def _principal_id(self, principal: Any) -> tuple[str, int]:
        if principal is None or principal == "":
            raise InvalidParameterValue("Missing required field 'principal'.")
        if not isinstance(principal, str):
            raise InvalidParameterValue("Invalid value for 'principal': must be a string.")
        found = self._db.principals.get(principal)
        if found is None:
            raise InvalidParameterValue(
                "Invalid value for 'principal': no user, group or service principal named "
                f"'{principal}' exists."
            )
        return found.name, found.id

    def put_acl(self, caller: Caller, scope: Any, principal: Any, permission: Any) -> None:
        found = self._require(caller, scope, MANAGE)
        if permission is None or permission == "":
            raise InvalidParameterValue("Missing required field 'permission'.")
        level = ScopePermission.parse(permission)
        _, pid = self._principal_id(principal)
        self._db.secrets.put_acl(found.name, pid, int(level))

    def delete_acl(self, caller: Caller, scope: Any, principal: Any) -> None:
        found = self._require(caller, scope, MANAGE)
        name, pid = self._principal_id(principal)
        if not self._db.secrets.delete_acl(found.name, pid):
            raise ResourceDoesNotExist(f"No ACL for principal '{name}' on scope {found.name}.")

    def list_acls(self, caller: Caller, scope: Any) -> list[dict[str, str]]:
        found = self._require(caller, scope, MANAGE)
        return [_acl_item(e) for e in self._db.secrets.acl_entries(found.name)]

    def get_acl(self, caller: Caller, scope: Any, principal: Any) -> dict[str, str]:
        found = self._require(caller, scope, MANAGE)
        name, pid = self._principal_id(principal)
        for entry in self._db.secrets.acl_entries(found.name):
            if entry.principal_id == pid:
                return _acl_item(entry)
        raise ResourceDoesNotExist(f"No ACL for principal '{name}' on scope {found.name}.")

    # ---- the secrets key ----------------------------------------------------------------------
    def rotate_key(self, caller: Caller) -> int:
        """Rewrite every secret with the first configured key and seal the store's check token
        with it (admins only; the second step of a key rotation, ``control/cipher.py``).

        All or nothing: a secret that no configured key decrypts stops the rotation with an
        error naming it, and nothing is rewritten. Returns how many secrets were rewritten.
        """
        IdentityService.require_admin(caller, "rotate the secrets key")

        def rotated(scope: str, key: str, token: bytes) -> bytes:
            value = self._cipher.rotate(token)
            if value is None:
                raise InvalidState(
                    f"Secret {reference(scope, key)} cannot be decrypted with any configured secrets "
                    "key, so the key was not rotated (nothing was rewritten). Add the key it was "
                    "written with to MODELPORT_SECRETS_KEY (after the new one), or put the secret again."
                )
            return value

        count = self._db.secrets.rewrite_values(rotated)
        seal_check(self._db, self._cipher)
        return count

    # ---- the data plane -----------------------------------------------------------------------
    def resolve(self, scope: str, key: str) -> str:
        """The value of ``{{secrets/scope/key}}`` as text, for the server's own use (provider
        credentials, replica environments). Raises :class:`InvalidState` naming the reference
        when the secret is gone. While the store is unreachable, a value resolved before is
        served from the expired cache (queries to external models go on; asked again one
        cache period later)."""
        now = self._clock()
        hit = self._cache.get((scope, key))
        if hit is not None and hit[0] > now:
            return hit[1]
        what = f"Secret {reference(scope, key)}"
        try:
            record = self._db.secrets.get(scope, key)
        except Exception as exc:
            if hit is None or not is_unreachable(exc):
                raise
            self._cache[(scope, key)] = (now + self._ttl, hit[1])
            return hit[1]
        if record is None:
            self._cache.pop((scope, key), None)
            raise InvalidState(
                f"{what}, which the endpoint's config references, does not exist; put it back "
                "(POST /api/2.0/secrets/put) or update the endpoint's config."
            )
        try:
            value = self._cipher.decrypt(record.value, what).decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidState(f"{what} is not UTF-8 text, so it cannot be used as a credential.") from None
        self._cache[(scope, key)] = (now + self._ttl, value)
        return value

    async def resolve_async(self, scope: str, key: str) -> str:
        """:meth:`resolve` for the event loop: a cached value is returned at once, a miss
        reads the store in a worker thread so that queries in flight are not held up."""
        hit = self._cache.get((scope, key))
        if hit is not None and hit[0] > self._clock():
            return hit[1]
        return await asyncio.to_thread(self.resolve, scope, key)

    # ---- endpoint configs ---------------------------------------------------------------------
    def check_references(
        self, caller: Caller, body: dict[str, Any], kept: Collection[tuple[str, str]] = ()
    ) -> None:
        """Every ``{{secrets/...}}`` of an endpoint config must exist and be readable by ``caller``.

        A missing scope or key is a 400 naming the field and the reference; a scope the
        caller may not READ is a 403 naming them. Whether a key exists is told only to
        principals who may read the scope. References in ``kept`` (``(scope, key)``, carried
        over from the current config in place of a mask) must exist, but need no READ: the
        caller keeps a credential that is already configured, and never sees it.
        """
        for ref in references_in(body):
            scope = self._db.secrets.get_scope(ref.scope)
            if scope is None:
                raise InvalidParameterValue(
                    f"Invalid value for '{ref.path}': secret {ref.text} does not exist (no scope "
                    f"'{ref.scope}'). Create the scope and put the secret first."
                )
            have = READ if (ref.scope, ref.key) in kept else self.permission(caller, ref.scope)
            if have is None or have < READ:
                raise PermissionDenied(
                    f"'{caller.name}' does not have READ permission on secret scope '{ref.scope}', "
                    f"which '{ref.path}' references ({ref.text})."
                )
            if self._db.secrets.get(ref.scope, ref.key) is None:
                raise InvalidParameterValue(
                    f"Invalid value for '{ref.path}': secret {ref.text} does not exist (scope "
                    f"'{ref.scope}' has no key '{ref.key}'). Put the secret first."
                )

    def store_inline_credentials(
        self, endpoint_id: str, body: dict[str, Any]
    ) -> tuple[dict[str, Any], list[str]]:
        """Store each ``*_plaintext`` value of ``body`` in the endpoint's server-owned scope.

        Returns the body with references in their place, and the keys written (for
        :meth:`forget_inline_credentials` if the config is not recorded after all).
        """
        scope = endpoint_scope(endpoint_id)
        written: list[str] = []

        def store(entity: str, path: tuple[str, ...], value: str) -> str:
            data = value.encode("utf-8")
            where = ".".join(path)
            if len(data) > MAX_VALUE_BYTES:
                raise InvalidParameterValue(
                    f"Invalid value for '{where}' of served entity '{entity}': {len(data)} bytes; "
                    f"the limit is {MAX_VALUE_BYTES // 1024} KB."
                )
            fields = [p.removesuffix("_plaintext") for p in path if not p.endswith("_config")]
            key = _UNSAFE_KEY_CHARS.sub("_", ".".join([entity, *fields]))[:110] + "." + token_hex(4)
            if not written:
                self._db.secrets.ensure_scope(scope, _SERVER, now_ms())
            self._db.secrets.put(scope, key, self._cipher.encrypt(data), now_ms())
            written.append(key)
            return reference(scope, key)

        try:
            stored = replace_plaintext(body, store)
        except BaseException:
            self.forget_inline_credentials(endpoint_id, written)
            raise
        return stored, written

    def forget_inline_credentials(self, endpoint_id: str, keys: list[str]) -> None:
        scope = endpoint_scope(endpoint_id)
        for key in keys:
            self._db.secrets.delete(scope, key)
            self._evict(scope, key)

    def prune_inline_credentials(self, endpoint_id: str, keep: list[dict[str, Any]], started_ms: int) -> None:
        """Delete the endpoint's stored credentials that none of the ``keep`` configs references."""
        scope = endpoint_scope(endpoint_id)
        if self._db.secrets.get_scope(scope) is None:
            return
        used = {r.key for body in keep for r in references_in(body) if r.scope == scope}
        for key in self._db.secrets.prune(scope, used, started_ms - _PRUNE_GRACE_MS):
            self._evict(scope, key)

    def delete_inline_credentials(self, endpoint_id: str) -> None:
        """Delete the endpoint's server-owned scope (when the endpoint is deleted)."""
        scope = endpoint_scope(endpoint_id)
        self._db.secrets.delete_scope(scope)
        self._evict(scope)
