"""Feature tables: Delta tables with keys under the tables root, their copies in the online
store, and who may do what with them.

A feature table is a table of the tables root (``<root>/<catalog>/<schema>/<table>``) whose
Delta properties name its primary keys (``modelport/tables/features.py``); its rows are
published into the online store (``modelport/tables/online_stores.py``: the embedded SQLite
file, PostgreSQL or Redis) for lookups by key. Privileges are the tables'
(:mod:`modelport.control.table_acl`):

- any authenticated principal may create a feature table; its creator gets MANAGE on it;
- SELECT reads it (info, rows, lookups in the online store, SQL), MODIFY writes rows, MANAGE
  publishes and drops it (and grants, through the table permission routes).

Publish modes: ``snapshot`` and ``triggered`` copy the table's current version now;
``continuous`` copies it now and then follows it: the server's follower (:meth:`FeatureService.start`,
run by the serving process only) polls every continuous table's Delta version each
:data:`FOLLOW_SECONDS` and publishes a new one, so a write reaches lookups within a few
seconds. Publishing the table again in another mode stops following it. Which mode a table was
published in is the online store's state, so following survives a restart.

Blocking (Delta, SQLite and store calls): the API calls these methods from a thread; only
:meth:`FeatureService.start` and :meth:`FeatureService.stop` run on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import re
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa

from modelport.control.table_acl import OBJECT_TYPE, TableAccess, TableListings
from modelport.errors import (
    InvalidParameterValue,
    MalformedRequest,
    ResourceAlreadyExists,
    ResourceDoesNotExist,
    TemporarilyUnavailable,
)
from modelport.spec.identity import Caller
from modelport.spec.table_privileges import TablePrivilege
from modelport.store import Database
from modelport.tables.features import FeatureTableInfo, FeatureTables, arrow_type
from modelport.tables.names import split_name
from modelport.tables.online_stores import open_reader, open_store
from modelport.tables.online_values import PUBLISH_MODES
from modelport.tables.query import json_cell

__all__ = [
    "FOLLOW_SECONDS",
    "MAX_LOOKUP_KEYS",
    "PUBLISH_MODES",
    "FeatureService",
    "parse_ipc",
]

log = logging.getLogger("modelport.features")

#: Values of ``mode`` of a write.
WRITE_MODES = ("merge", "overwrite")
#: How often the follower looks for new versions of continuously published tables, in seconds.
FOLLOW_SECONDS = 1.0
#: Most keys one lookup request may ask for.
MAX_LOOKUP_KEYS = 10_000
#: The catalog of modelport's own tables (usage, audit): no feature table goes there.
RESERVED_CATALOG = "system"

_COLUMN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,254}\Z")


def parse_ipc(payload: bytes, name: str) -> pa.Table:
    """The rows of an Arrow IPC stream (a write's body); 400 when it is not one."""
    if not payload:
        raise MalformedRequest(
            f"The write to feature table '{name}' has no body: send the rows as an Arrow IPC stream "
            "(content-type application/vnd.apache.arrow.stream)."
        )
    try:
        with pa.ipc.open_stream(pa.py_buffer(payload)) as reader:
            return reader.read_all()
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError) as exc:
        raise MalformedRequest(
            f"The body of the write to feature table '{name}' is not an Arrow IPC stream: {exc}"
        ) from None


def _string_list(value: Any, field: str, *, required: bool) -> list[str]:
    if value is None and not required:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise InvalidParameterValue(f"Invalid value for '{field}': must be a list of column names.")
    if required and not value:
        raise InvalidParameterValue(f"Invalid value for '{field}': name at least one column.")
    if len(set(value)) != len(value):
        raise InvalidParameterValue(f"Invalid value for '{field}': a column is named twice.")
    return list(value)


def _schema(columns: Any) -> pa.Schema:
    """The schema of a create request's ``columns`` (``[{"name", "type", "nullable"?}]``)."""
    if not isinstance(columns, list) or not columns:
        raise InvalidParameterValue(
            'Missing required field \'columns\': a list of {"name", "type"} (e.g. int64, double, string).'
        )
    fields: list[pa.Field] = []
    seen: set[str] = set()
    for i, column in enumerate(columns):
        if not isinstance(column, Mapping):
            raise InvalidParameterValue(f"Invalid value for 'columns[{i}]': must be an object.")
        name = column.get("name")
        if not isinstance(name, str) or not _COLUMN.match(name):
            raise InvalidParameterValue(
                f"Invalid value for 'columns[{i}].name': {name!r} is not a column name (letters, digits "
                "and underscores, not starting with a digit, at most 255 characters)."
            )
        if name.lower() in seen:
            raise InvalidParameterValue(f"Column '{name}' is named twice in 'columns'.")
        seen.add(name.lower())
        nullable = column.get("nullable", True)
        if not isinstance(nullable, bool):
            raise InvalidParameterValue(f"Invalid value for 'columns[{i}].nullable': must be a boolean.")
        kind = column.get("type")
        if not isinstance(kind, str) or not kind.strip():
            raise InvalidParameterValue(f"Column '{name}' needs a 'type' (a string such as int64 or double).")
        try:
            fields.append(pa.field(name, arrow_type(kind), nullable=nullable))
        except (InvalidParameterValue, ValueError):  # ValueError: pyarrow refused a decimal's size
            raise InvalidParameterValue(
                f"Column '{name}' has type {kind!r}, which a feature table cannot hold; use an Arrow "
                "type (bool, int32, int64, float, double, string, binary, date32, timestamp[us, tz=UTC], "
                "decimal128(p, s), list<item: double>) or Spark's name for one (bigint, timestamp, ...)."
            ) from None
    return pa.schema(fields)


def _as_of_ms(value: Any, column: str, index: int) -> int | None:
    """A lookup key's timestamp (epoch milliseconds or an ISO 8601 string; UTC when it names
    no zone) in milliseconds; None when not given."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            moment = dt.datetime.fromisoformat(value)
        except ValueError:
            moment = None
        if moment is not None:
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=dt.UTC)
            return int(moment.timestamp() * 1000)
    raise InvalidParameterValue(
        f"Invalid value for 'keys[{index}].{column}': the timestamp key takes epoch milliseconds or an "
        f"ISO 8601 string, not {value!r}."
    )


class FeatureService:
    """Feature tables and their online copies, with the tables' privileges.

    Guarantees: a table's publishes, its drop and the follower's publishes of it run one at a
    time (a lock per table), each publishing the version it read, so a later publish never puts
    back an older version; a dropped table's online copy is gone before its Delta table is.
    """

    def __init__(
        self,
        db: Database,
        root: str,
        online_location: str | Path,
        *,
        listings: TableListings | None = None,
    ) -> None:
        """``root``: the tables root; ``online_location``: the online store
        (:func:`~modelport.tables.online_stores.open_store`: a SQLite file, made with its folder
        when missing, or a postgresql:// or redis:// URL)."""
        self._db = db
        self._access = TableAccess(db, root, listings)
        self.tables = FeatureTables(root)
        self.online_location = online_location
        self._store = open_store(online_location)
        self._reader = open_reader(online_location)
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self._follower: asyncio.Task[None] | None = None
        self._missing: set[str] = set()  # continuous tables found gone (logged once)

    # ---- helpers -------------------------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self, name: str) -> Iterator[None]:
        with self._locks_guard:
            lock = self._locks.setdefault(name, threading.Lock())
        with lock:
            yield

    def online_state(self, name: str) -> dict[str, Any] | None:
        """The online store's state of table ``name`` (None: not published). No permission
        check: for the server's own use (what an endpoint's features need)."""
        return self._store.state(name)

    def _answer(self, info: FeatureTableInfo) -> dict[str, Any]:
        return {**info.to_json(), "online": self._store.state(info.name)}

    def _feature_table(self, caller: Caller, full_name: Any, needed: TablePrivilege) -> FeatureTableInfo:
        """The feature table ``full_name`` when the caller holds ``needed`` on it (403 below;
        404 when the table is not a feature table)."""
        if not isinstance(full_name, str):
            raise InvalidParameterValue("The feature table's name must be a string.")
        name, _ = self._access.require(caller, full_name, needed)
        return self.tables.get(name)

    # ---- tables --------------------------------------------------------------------------
    def list_tables(self, caller: Caller) -> list[dict[str, Any]]:
        """The feature tables the caller holds a privilege on (SELECT or more), each with its
        online state (None: not published)."""
        readable = self._access.readable(caller, self._access.known())
        states = {str(s["name"]): s for s in self._store.states()}
        return [
            {**info.to_json(), "online": states.get(info.name)}
            for info in self.tables.list()
            if info.name in readable
        ]

    def create(self, caller: Caller, body: Mapping[str, Any]) -> dict[str, Any]:
        """Create an empty feature table (``{"name", "primary_keys", "timestamp_keys"?,
        "description"?, "columns"}``); the caller gets MANAGE on it."""
        raw_name = body.get("name")
        if not isinstance(raw_name, str) or not raw_name:
            raise InvalidParameterValue("Missing required field 'name': the table's catalog.schema.table.")
        name = ".".join(split_name(raw_name))
        if name.split(".", 1)[0] == RESERVED_CATALOG:
            raise InvalidParameterValue(
                f"Cannot create feature table '{name}': the catalog '{RESERVED_CATALOG}' holds modelport's "
                "own tables."
            )
        primary_keys = _string_list(body.get("primary_keys"), "primary_keys", required=True)
        timestamp_keys = _string_list(body.get("timestamp_keys"), "timestamp_keys", required=False)
        description = body.get("description") or ""
        if not isinstance(description, str):
            raise InvalidParameterValue("Invalid value for 'description': must be a string.")
        schema = _schema(body.get("columns"))
        # An inference table an endpoint's config names exists before its first row: a feature
        # table of that name would take its place (and its grants).
        if name in self._access.known().names:
            raise ResourceAlreadyExists(f"Table '{name}' already exists.")
        info = self.tables.create(
            name, primary_keys, schema, timestamp_keys=timestamp_keys, description=description
        )
        # Grants left from an earlier table of this name (removed behind modelport's back) are
        # not this table's.
        self._db.grants.drop(OBJECT_TYPE, name)
        self._access.set_owner(name, caller.id)
        return {**info.to_json(), "online": None}

    def get(self, caller: Caller, full_name: Any) -> dict[str, Any]:
        return self._answer(self._feature_table(caller, full_name, TablePrivilege.SELECT))

    def drop(self, caller: Caller, full_name: Any) -> None:
        """Drop the feature table, its online copy and its grants (MANAGE)."""
        info = self._feature_table(caller, full_name, TablePrivilege.MANAGE)
        with self._locked(info.name):
            self._store.drop(info.name)
            self.tables.drop(info.name)
            self._db.grants.drop(OBJECT_TYPE, info.name)
        self._access.forget()

    def write(self, caller: Caller, full_name: Any, payload: bytes, mode: str) -> dict[str, Any]:
        """Merge (upsert on the keys) or overwrite rows given as an Arrow IPC stream (MODIFY)."""
        info = self._feature_table(caller, full_name, TablePrivilege.MODIFY)
        if mode not in WRITE_MODES:
            raise InvalidParameterValue(
                f"Invalid value for 'mode': must be merge or overwrite, not {mode!r}."
            )
        data = parse_ipc(payload, info.name)
        return self._answer(self.tables.write(info.name, data, mode))  # type: ignore[arg-type]

    def read(self, caller: Caller, full_name: Any, version: int | None, limit: int | None) -> pa.Table:
        """The rows of the table (at ``version``; the first ``limit``) (SELECT)."""
        info = self._feature_table(caller, full_name, TablePrivilege.SELECT)
        data = self.tables.read(info.name, version)
        return data if limit is None else data.slice(0, limit)

    # ---- the online store ----------------------------------------------------------------
    def publish(self, caller: Caller, full_name: Any, mode: Any) -> dict[str, Any]:
        """Copy the table's current version into the online store (MANAGE); its state."""
        info = self._feature_table(caller, full_name, TablePrivilege.MANAGE)
        if mode not in PUBLISH_MODES:
            raise InvalidParameterValue(
                f"Invalid value for 'mode': must be one of {', '.join(PUBLISH_MODES)}, not {mode!r}."
            )
        with self._locked(info.name):
            return self._publish(info.name, mode)

    def _publish(self, name: str, mode: str) -> dict[str, Any]:
        """Publish the latest version (the caller holds the table's lock)."""
        info = self.tables.get(name)
        state = self._store.publish(info, self.tables.read(name, info.version), mode=mode)
        self._missing.discard(name)
        return state

    def lookup(self, caller: Caller, full_name: Any, body: Mapping[str, Any]) -> list[dict[str, Any] | None]:
        """Rows of the online copy by primary key (SELECT), in the keys' order (None: no row).

        ``body``: ``{"keys": [{key column: value, ...}], "features"?: [names], "lookback_ms"?: N}``;
        with a timestamp key, a key that gives it (epoch milliseconds or ISO 8601) gets the latest
        row at or before that time (and, with ``lookback_ms``, no older than that before it);
        without, the latest row. ``features`` default: every column but the keys."""
        if not isinstance(full_name, str):
            raise InvalidParameterValue("The feature table's name must be a string.")
        name, _ = self._access.require(caller, full_name, TablePrivilege.SELECT)
        keys = body.get("keys")
        if not isinstance(keys, list) or not keys or not all(isinstance(k, Mapping) for k in keys):
            raise InvalidParameterValue(
                "Invalid value for 'keys': must be a non-empty list of objects, one per row to look up."
            )
        if len(keys) > MAX_LOOKUP_KEYS:
            raise InvalidParameterValue(f"A lookup takes at most {MAX_LOOKUP_KEYS} keys, not {len(keys)}.")
        features = body.get("features")
        if features is not None:
            features = _string_list(features, "features", required=True)
        lookback = body.get("lookback_ms")
        if lookback is not None and (
            isinstance(lookback, bool) or not isinstance(lookback, int) or lookback < 0
        ):
            raise InvalidParameterValue(
                "Invalid value for 'lookback_ms': must be a whole number of milliseconds."
            )
        state = self._store.state(name)
        if state is None:
            raise TemporarilyUnavailable(f"Feature table '{name}' is not published to the online store.")
        primary_keys: list[str] = list(state["primary_keys"])
        timestamp_keys: list[str] = list(state.get("timestamp_keys") or [])
        tuples: list[tuple[Any, ...]] = []
        as_of: list[int | None] = []
        for i, key in enumerate(keys):
            values = []
            for column in primary_keys:
                if column not in key:
                    raise InvalidParameterValue(
                        f"'keys[{i}]' lacks '{column}', a primary key of feature table '{name}'."
                    )
                value = key[column]
                if value is None:
                    raise InvalidParameterValue(f"'keys[{i}].{column}' is null: a lookup key cannot be null.")
                if isinstance(value, list | dict):
                    raise InvalidParameterValue(f"'keys[{i}].{column}' must be a single value.")
                values.append(value)
            tuples.append(tuple(values))
            as_of.append(
                _as_of_ms(key.get(timestamp_keys[0]), timestamp_keys[0], i) if timestamp_keys else None
            )
        rows = self._reader.lookup(
            name,
            tuples,
            features,
            as_of_ms=as_of if any(t is not None for t in as_of) else None,
            lookback_ms=lookback,
        )
        return [None if row is None else json_cell(row) for row in rows]

    # ---- the follower of continuous publishes ---------------------------------------------
    def follow_once(self) -> int:
        """Publish every continuously published table whose Delta version is newer than its
        online copy's; how many were published. A failure is logged and leaves the table for
        the next round."""
        published = 0
        for state in self._store.states():
            name = str(state["name"])
            if state.get("mode") != "continuous":
                continue
            try:
                with self._locked(name):
                    current = self._store.state(name)  # dropped or republished meanwhile?
                    if current is None or current.get("mode") != "continuous":
                        continue
                    if self.tables.get(name).version <= int(current["published_version"]):
                        continue
                    self._publish(name, "continuous")
                    published += 1
            except ResourceDoesNotExist:
                if name not in self._missing:
                    self._missing.add(name)
                    log.warning(
                        "a continuously published feature table is gone; its online copy stays as it was",
                        extra={"table": name},
                    )
            except Exception:
                log.exception("publishing a feature table continuously failed", extra={"table": name})
        return published

    async def _follow(self) -> None:
        while True:
            await asyncio.sleep(FOLLOW_SECONDS)
            try:
                await asyncio.to_thread(self.follow_once)
            except Exception:  # the store unreadable: try again next round
                log.exception("following continuously published feature tables failed")

    async def start(self) -> None:
        """Start following continuously published tables (the serving process only)."""
        if self._follower is None:
            self._follower = asyncio.get_running_loop().create_task(self._follow())

    async def stop(self) -> None:
        if self._follower is not None:
            self._follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._follower
            self._follower = None
