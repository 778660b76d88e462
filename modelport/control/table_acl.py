"""Who may read, change and grant the Delta tables modelport writes and serves.

Privileges are SELECT < MODIFY < MANAGE (ordered, unlike Unity Catalog's separate privileges:
see :mod:`modelport.spec.table_privileges`), granted to users, groups and service principals
and stored in ``object_acl`` with object type ``table`` and the lower-case three-part name as id.

The tables modelport knows (anything else is 404 ``RESOURCE_DOES_NOT_EXIST``):

- every Delta table under the tables root (``<root>/<catalog>/<schema>/<table>``);
- the inference table each endpoint's current config names (``ai_gateway.inference_table_config``
  or the legacy ``auto_capture_config``, of the active or the pending config), before its first row;
- the system tables ``system.serving.endpoint_usage`` and ``system.access.audit``.

Who holds what without a grant:

- admins hold MANAGE on every table;
- whoever holds CAN_MANAGE on an endpoint holds MANAGE on the inference table its current config
  names (implicit, shown as inherited from ``/serving-endpoints/<id>``; nothing is written, so it
  follows the endpoint's permissions and its config, and ends when the endpoint is deleted or
  stops naming the table);
- every user reads their own rows of ``system.serving.endpoint_usage`` (``requester`` is their
  principal name), as a row filter; SELECT there reads every row;
- nobody else reads anything: system tables are admin-only unless granted.

Blocking (store reads, a listing of the tables root): call it from a thread, never from the
event loop. The listing of the tables root is reused for :data:`LISTING_TTL_SECONDS` by every
:class:`TableAccess` of the process (:class:`TableListings`); a table modelport writes (a system
table, an inference table an endpoint's config names) is checked for on its own, so the next
query sees it as soon as its first rows are written.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pyarrow.fs as pafs

from modelport.control.acl import AclList, levels_answer, parse_acl, principal_id
from modelport.errors import InvalidParameterValue, PermissionDenied, ResourceDoesNotExist
from modelport.spec.identity import ADMINS_GROUP, Caller
from modelport.spec.permissions import PermissionLevel, effective_level
from modelport.spec.table_privileges import AUDIT_TABLE_NAME, PRIVILEGE_DESCRIPTIONS, TablePrivilege
from modelport.store import Database
from modelport.store.records import ConfigRecord, EndpointRecord
from modelport.tables.names import (
    PAYLOAD_SUFFIX,
    USAGE_TABLE_NAME,
    default_prefix,
    is_uri,
    split_name,
    table_uri,
    validate_part,
)
from modelport.tables.query import discover_tables

__all__ = [
    "LISTING_TTL_SECONDS",
    "OBJECT_TYPE",
    "REQUESTER_COLUMN",
    "SYSTEM_TABLES",
    "KnownTables",
    "QueryScope",
    "TableAccess",
    "TableListings",
    "inference_table_of",
]

#: ``object_acl.object_type`` of table grants.
OBJECT_TYPE = "table"
#: Tables that always exist (empty until their first row), admin-only unless granted.
SYSTEM_TABLES = (USAGE_TABLE_NAME, AUDIT_TABLE_NAME)
#: The usage column naming who sent the query (the caller's principal name).
REQUESTER_COLUMN = "requester"
#: How long a listing of the tables root is reused, in seconds (see :class:`TableListings`).
LISTING_TTL_SECONDS = 2.0

_PRIVILEGE_NAMES = ", ".join(p.name for p in TablePrivilege)


def _privilege(name: str) -> TablePrivilege:
    """A privilege by its exact name (the permissions API; the grants API also reads
    ``select`` and ``ALL_PRIVILEGES``, see :meth:`TablePrivilege.parse`)."""
    return TablePrivilege[name]


def inference_table_of(endpoint: EndpointRecord, configs: Iterable[ConfigRecord]) -> set[str]:
    """The inference tables ``endpoint`` writes or will write with ``configs`` (its current ones)."""
    settings: list[dict[str, Any]] = []
    gateway = (endpoint.ai_gateway or {}).get("inference_table_config")
    if isinstance(gateway, dict) and gateway.get("enabled"):
        settings.append(gateway)
    for config in configs:
        capture = config.body.get("auto_capture_config")
        if isinstance(capture, dict) and capture.get("enabled"):
            settings.append(capture)
    names: set[str] = set()
    for s in settings:
        try:
            catalog = validate_part(str(s["catalog_name"]), "catalog_name")
            schema = validate_part(str(s["schema_name"]), "schema_name")
            prefix = default_prefix(str(s.get("table_name_prefix") or endpoint.name))
            names.add(f"{catalog}.{schema}.{prefix}{PAYLOAD_SUFFIX}")
        except (InvalidParameterValue, KeyError):
            continue  # validated at create; an old row that does not parse names no table
    return names


def _is_delta_table(root: str, name: str) -> bool:
    """Whether table ``name`` (a canonical name) has a Delta log under ``root`` now."""
    uri = table_uri(root, *name.split("."))
    fs, path = pafs.FileSystem.from_uri(uri) if is_uri(uri) else (pafs.LocalFileSystem(), uri)
    return bool(fs.get_file_info(f"{path}/_delta_log").type == pafs.FileType.Directory)


class TableListings:
    """The Delta tables under each tables root (name -> URI), each listing reused for ``ttl``
    seconds: a query does not walk the root every time.

    Guarantees: a table named in ``expected`` (what modelport writes) that a reused listing
    lacks is looked for on its own (one probe of its ``_delta_log``), and when it is there now
    the root is listed again; :meth:`forget` (modelport made a table) makes the next call list
    again. Any other table appears within ``ttl`` (at once to :meth:`TableAccess.resolve`, which
    probes a name it does not find), and one removed behind modelport's back may be listed for
    as long. Thread-safe; listings run outside the lock.
    """

    def __init__(
        self,
        ttl: float = LISTING_TTL_SECONDS,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._listings: dict[str, tuple[float, dict[str, str]]] = {}
        self._generation = 0

    def on_disk(self, root: str, expected: Iterable[str] = ()) -> dict[str, str]:
        """The tables under ``root`` (a copy: the caller may change it)."""
        started = self._clock()
        with self._lock:
            cached = self._listings.get(root)
            generation = self._generation
        if cached is not None and started - cached[0] < self._ttl:
            listing = cached[1]
            if not any(name not in listing and _is_delta_table(root, name) for name in expected):
                return dict(listing)
        listing = discover_tables(root)
        with self._lock:
            if generation == self._generation:  # no forget() while listing: a fresh enough answer
                self._listings[root] = (started, listing)
        return dict(listing)

    def forget(self) -> None:
        """List every root again on the next call."""
        with self._lock:
            self._listings.clear()
            self._generation += 1


#: The listings every TableAccess of this process shares (the API builds one per request).
_LISTINGS = TableListings()


@dataclass(frozen=True)
class KnownTables:
    """The tables at one moment: those on disk (name -> URI) and each inference table's endpoints."""

    on_disk: dict[str, str]
    owners: dict[str, tuple[str, ...]]

    @property
    def names(self) -> set[str]:
        return set(self.on_disk) | set(self.owners) | set(SYSTEM_TABLES)


@dataclass(frozen=True)
class QueryScope:
    """What one caller's SQL may see: the tables registered (name -> URI) and row filters.

    ``row_filters`` maps a table to ``(column, value)``: only rows whose column equals the
    value are registered. An unrestricted scope (admins) may name any table.
    """

    tables: dict[str, str]
    row_filters: dict[str, tuple[str, str]] = field(default_factory=dict)
    restricted: bool = True

    def deny_missing(self, caller: Caller) -> Callable[[set[str]], None] | None:
        """For :func:`~modelport.tables.query.query`'s ``missing``: PERMISSION_DENIED naming the
        first table the SQL names that is out of scope, the same answer whether the table exists
        or not (a caller cannot probe for names). What is registered is the enforcement; this
        only turns DuckDB's "does not exist" into an answer that says why. None for admins."""
        if not self.restricted:
            return None

        def deny(names: set[str]) -> None:
            for name in sorted(names):
                if name not in self.tables:
                    raise PermissionDenied(
                        f"'{caller.name}' may not read table '{name}': it does not exist or they do "
                        "not hold SELECT on it."
                    )

        return deny


class TableAccess:
    """Privilege decisions, the SQL scope of a caller, and the two grant shapes (Databricks'
    permissions API and Unity Catalog's grants API) for tables."""

    def __init__(self, db: Database, root: str, listings: TableListings | None = None) -> None:
        """``listings``: where the tables on disk come from (default: the process's shared ones)."""
        self._db = db
        self._root = root
        self._listings = _LISTINGS if listings is None else listings

    # ---- what exists ---------------------------------------------------------------------
    def known(self) -> KnownTables:
        endpoints = self._db.endpoints.list()
        configs: dict[str, list[ConfigRecord]] = {}
        for (endpoint_id, _), config in self._db.endpoints.current_configs().items():
            configs.setdefault(endpoint_id, []).append(config)
        owners: dict[str, list[str]] = {}
        for endpoint in endpoints:
            for name in inference_table_of(endpoint, configs.get(endpoint.id, [])):
                owners.setdefault(name, []).append(endpoint.id)
        return KnownTables(
            on_disk=self._listings.on_disk(self._root, expected=[*owners, *SYSTEM_TABLES]),
            owners={name: tuple(ids) for name, ids in owners.items()},
        )

    def resolve(self, full_name: str, known: KnownTables | None = None) -> tuple[str, KnownTables]:
        """The canonical name of a table modelport knows (400 for a bad name, 404 for an unknown one)."""
        if not isinstance(full_name, str):
            raise InvalidParameterValue("The table name must be a string.")
        name = ".".join(split_name(full_name))
        known = known or self.known()
        if name not in known.names and _is_delta_table(self._root, name):
            # written behind modelport's back since the listing (a table a user just wrote with
            # deltalake): one probe, then a listing that has it
            self._listings.forget()
            known = self.known()
        if name not in known.names:
            raise ResourceDoesNotExist(f"Table '{name}' does not exist.")
        return name, known

    # ---- decisions -----------------------------------------------------------------------
    def _managing(self, caller: Caller, name: str, known: KnownTables) -> list[str]:
        """The endpoints naming table ``name`` that ``caller`` manages (their ids)."""
        return [
            endpoint_id
            for endpoint_id in known.owners.get(name, ())
            if effective_level(self._db.endpoints.acl(endpoint_id), caller) == PermissionLevel.CAN_MANAGE
        ]

    def level(self, caller: Caller, name: str, known: KnownTables) -> TablePrivilege | None:
        """The caller's privilege on table ``name`` (a canonical name), None without one."""
        if caller.is_admin:
            return TablePrivilege.MANAGE
        grants = self._db.grants.acl(OBJECT_TYPE, name)
        held = [lvl for pid, lvl in grants.items() if pid in caller.principal_ids]
        if self._managing(caller, name, known):
            held.append(int(TablePrivilege.MANAGE))
        return TablePrivilege(max(held)) if held else None

    def require(self, caller: Caller, full_name: str, needed: TablePrivilege) -> tuple[str, KnownTables]:
        """The canonical name when the caller holds ``needed`` on it; 403 for too low a
        privilege, and for an unknown table 404 to admins but the same 403 to everyone else (who
        is not told which tables exist)."""
        try:
            name, known = self.resolve(full_name)
        except ResourceDoesNotExist:
            if caller.is_admin:
                raise
            name = ".".join(split_name(full_name))
            raise PermissionDenied(
                f"'{caller.name}' does not hold {needed.name} on table '{name}'."
            ) from None
        held = self.level(caller, name, known)
        if held is None or held < needed:
            raise PermissionDenied(
                f"'{caller.name}' does not hold {needed.name} on table '{name}'"
                + (f" (holds {held.name})." if held else ".")
            )
        return name, known

    def readable(self, caller: Caller, known: KnownTables) -> dict[str, TablePrivilege]:
        """Every known table the caller holds a privilege on: name -> privilege."""
        names = known.names
        if caller.is_admin:
            return dict.fromkeys(names, TablePrivilege.MANAGE)
        out = {
            name: TablePrivilege(level)
            for name, level in self._db.grants.readable(OBJECT_TYPE, caller.principal_ids).items()
            if name in names
        }
        if known.owners:
            acls = self._db.endpoints.all_acls()
            for name, endpoint_ids in known.owners.items():
                if any(
                    effective_level(acls.get(i, {}), caller) == PermissionLevel.CAN_MANAGE
                    for i in endpoint_ids
                ):
                    out[name] = TablePrivilege.MANAGE
        return out

    def query_scope(self, caller: Caller) -> QueryScope:
        """The tables ``caller``'s SQL runs over: every table on disk for admins; for others
        those they hold SELECT (or more) on, and their own rows of the usage table."""
        known = self.known()
        if caller.is_admin:
            return QueryScope(dict(known.on_disk), restricted=False)
        readable = self.readable(caller, known)
        tables = {name: uri for name, uri in known.on_disk.items() if name in readable}
        filters: dict[str, tuple[str, str]] = {}
        if USAGE_TABLE_NAME in known.on_disk and USAGE_TABLE_NAME not in readable:
            tables[USAGE_TABLE_NAME] = known.on_disk[USAGE_TABLE_NAME]
            filters[USAGE_TABLE_NAME] = (REQUESTER_COLUMN, caller.name)
        return QueryScope(tables, filters)

    def set_owner(self, full_name: str, principal_id: int) -> bool:
        """Give the creator of a table modelport makes for a user (a feature table, a monitor's
        output) MANAGE on it, unless they hold a grant there already; True when written. The
        table is new: the next query lists the tables root again."""
        name = ".".join(split_name(full_name))
        self._listings.forget()
        return self._db.grants.grant_if_absent(OBJECT_TYPE, name, principal_id, int(TablePrivilege.MANAGE))

    def forget(self) -> None:
        """A table was removed through modelport: the next query lists the tables root again."""
        self._listings.forget()

    def usage_filter(self, caller: Caller) -> tuple[str, str] | None:
        """The row filter on the usage table for ``caller`` (None: every row)."""
        if caller.is_admin:
            return None
        grants = self._db.grants.acl(OBJECT_TYPE, USAGE_TABLE_NAME)
        if any(pid in caller.principal_ids for pid in grants):
            return None
        return (REQUESTER_COLUMN, caller.name)

    # ---- Databricks' permissions API shape -------------------------------------------------
    def render_acl(self, name: str, known: KnownTables) -> dict[str, Any]:
        """``{"object_id": "/tables/<name>", "object_type": "table", "access_control_list": [...]}``:
        direct grants, endpoint managers' MANAGE (inherited from the endpoint) and admins'
        MANAGE (inherited from ``/tables/``), one entry per principal."""
        acl = AclList(self._db.principals)
        for pid, level in sorted(self._db.grants.acl(OBJECT_TYPE, name).items()):
            acl.add(pid, TablePrivilege(level).name)
        for endpoint_id in known.owners.get(name, ()):
            for pid, level in sorted(self._db.endpoints.acl(endpoint_id).items()):
                if level >= PermissionLevel.CAN_MANAGE:
                    acl.add(pid, TablePrivilege.MANAGE.name, f"/serving-endpoints/{endpoint_id}")
        acl.inherit(ADMINS_GROUP, TablePrivilege.MANAGE.name, "/tables/")
        return acl.answer(f"/tables/{name}", OBJECT_TYPE)

    def write_acl(self, caller: Caller, full_name: str, entries: Any, *, replace: bool) -> dict[str, Any]:
        """Set (PUT, ``replace``) or add to (PATCH) the direct grants; needs MANAGE."""
        name, known = self.require(caller, full_name, TablePrivilege.MANAGE)
        # typed=False: this API's reading of an entry's field types, kept as it first was.
        grants = parse_acl(entries, self._db.principals, _privilege, _PRIVILEGE_NAMES, typed=False)
        self._db.grants.write(OBJECT_TYPE, name, grants, replace=replace)
        return self.render_acl(name, known)

    @staticmethod
    def levels() -> dict[str, Any]:
        return levels_answer(PRIVILEGE_DESCRIPTIONS)

    # ---- Unity Catalog's grants API shape ---------------------------------------------------
    def render_grants(self, name: str, principal: str | None = None) -> dict[str, Any]:
        """``{"privilege_assignments": [{"principal", "privileges"}]}``: direct grants only (as
        Unity Catalog's GET, which leaves out inherited ones), each with every privilege it
        implies, lowest first; ``principal`` keeps that principal's only."""
        out: list[dict[str, Any]] = []
        for pid, level in self._db.grants.acl(OBJECT_TYPE, name).items():
            p = self._db.principals.get_by_id(pid)
            if p is None or (principal is not None and p.name != principal):
                continue
            out.append({"principal": p.name, "privileges": TablePrivilege(level).implied()})
        out.sort(key=lambda a: str(a["principal"]))
        return {"privilege_assignments": out}

    @staticmethod
    def _privileges(value: Any, path: str) -> list[TablePrivilege]:
        if value is None:
            return []
        if not isinstance(value, list):
            raise InvalidParameterValue(f"Invalid value for '{path}': must be a list of privileges.")
        out = []
        for i, raw in enumerate(value):
            try:
                if not isinstance(raw, str):
                    raise KeyError(raw)
                out.append(TablePrivilege.parse(raw))
            except KeyError:
                raise InvalidParameterValue(
                    f"Invalid value for '{path}[{i}]': {raw!r} is not a table privilege "
                    f"({_PRIVILEGE_NAMES} or ALL_PRIVILEGES)."
                ) from None
        return out

    def update_grants(self, caller: Caller, full_name: str, changes: Any) -> str:
        """Apply Unity Catalog ``changes`` (``[{"principal", "add", "remove"}]``); needs MANAGE.

        Ordered privileges: adding P raises a principal to at least P; removing P lowers it to
        below P (removing SELECT removes every privilege). Within one change ``remove`` is
        applied before ``add``. Returns the canonical table name.
        """
        name, _ = self.require(caller, full_name, TablePrivilege.MANAGE)
        if changes is None:
            changes = []
        if not isinstance(changes, list):
            raise InvalidParameterValue("Invalid value for 'changes': must be a list.")
        current = self._db.grants.acl(OBJECT_TYPE, name)
        updated: dict[int, int] = {}
        for i, change in enumerate(changes):
            path = f"changes[{i}]"
            if not isinstance(change, Mapping):
                raise InvalidParameterValue(f"Invalid value for '{path}': must be an object.")
            if change.get("principal") is None:
                raise InvalidParameterValue(f"Missing required field '{path}.principal'.")
            pid = principal_id(self._db.principals, change.get("principal"), f"{path}.principal")
            removed = self._privileges(change.get("remove"), f"{path}.remove")
            added = self._privileges(change.get("add"), f"{path}.add")
            level = updated.get(pid, current.get(pid, 0))
            for privilege in removed:
                level = min(level, int(privilege) - 1)
            for privilege in added:
                level = max(level, int(privilege))
            updated[pid] = level
        changed = {pid: level for pid, level in updated.items() if level != current.get(pid, 0)}
        if changed:
            self._db.grants.write(OBJECT_TYPE, name, changed, replace=False)
        return name
