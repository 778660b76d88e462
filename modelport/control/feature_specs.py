"""Feature specs served by endpoints: who may create, read and delete them, and what they may hold.

A feature spec names the feature table columns (and feature functions' outputs) an endpoint
answers for a key (Databricks' ``create_feature_spec``; the client builds it,
:mod:`modelport.features.client`). It is stored under the tables root
(:mod:`modelport.tables.feature_spec_store`), and each endpoint config that serves it keeps a copy.

The server trusts nothing of the document but its shape: on create it checks every feature
against its table's current schema (the column exists, with the type the spec says; as many
lookup keys as the table has primary keys; a timestamp lookup key only on a time series), and
replaces the function definitions by the registered ones (a spec never brings code of its own);
the spec keeps that copy, so deleting or replacing a function later changes no spec.

Privileges (the tables' are :mod:`modelport.control.table_acl`'s):

- create: any principal holding SELECT on every feature table the spec reads; the creator
  owns the spec;
- read (get, list): the owner, admins, and whoever holds SELECT on every table it reads;
- delete: the owner and admins; a spec that an endpoint's current config serves (active or
  pending) cannot be deleted (400 naming the endpoint): change that config first;
- serve (an endpoint's config naming it): SELECT on every table it reads, as for create.

A caller who may not read a spec gets the same 403 whether it exists or not (admins get the 404).

Blocking (files, store reads, Delta metadata): call these methods from a thread.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from modelport.clock import now_ms
from modelport.control.table_acl import KnownTables, TableAccess, TableListings
from modelport.errors import (
    InvalidParameterValue,
    PermissionDenied,
    ResourceDoesNotExist,
)
from modelport.spec.endpoint import FEATURE_SPEC_KEY
from modelport.spec.identity import Caller
from modelport.spec.table_privileges import TablePrivilege
from modelport.store import Database
from modelport.tables.feature_functions import FunctionDef
from modelport.tables.feature_spec import FeatureColumn, FeatureSpec, arrow_type, spark_type
from modelport.tables.feature_spec_store import FeatureSpecStore, StoredSpec, spec_name
from modelport.tables.features import FeatureTableInfo, FeatureTables

__all__ = ["FeatureSpecService", "FunctionResolver"]

#: A registered feature function's definition by name (404 when there is none).
FunctionResolver = Callable[[str], FunctionDef]

#: Catalog of modelport's own tables: no feature spec goes there.
RESERVED_CATALOG = "system"

_ON_DEMAND = "on_demand_feature"


def _udf_names(doc: Mapping[str, Any]) -> list[str]:
    """The feature functions the columns of a spec document name, each once, in order."""
    names: list[str] = []
    columns = doc.get("input_columns")
    for entry in columns if isinstance(columns, list) else []:
        if not isinstance(entry, Mapping) or len(entry) != 1:
            continue
        (attrs,) = entry.values()
        if isinstance(attrs, Mapping) and attrs.get("source") == _ON_DEMAND:
            udf = attrs.get("udf_name")
            if isinstance(udf, str) and udf.lower() not in names:
                names.append(udf.lower())
    return names


def _column_type(info: FeatureTableInfo, column: str) -> str | None:
    """The Spark type name of a column of a feature table (None: no such column)."""
    for c in info.columns:
        if c["name"] == column:
            arrow = arrow_type(str(c["type"]))
            return spark_type(arrow) if arrow is not None else str(c["type"])
    return None


class FeatureSpecService:
    """Feature specs under one tables root, with their privileges (see the module docstring)."""

    def __init__(
        self,
        db: Database,
        root: str,
        *,
        functions: FunctionResolver | None = None,
        listings: TableListings | None = None,
    ) -> None:
        """``functions``: the registered feature functions (None: a spec using one is refused)."""
        self._db = db
        self._access = TableAccess(db, root, listings)
        self._tables = FeatureTables(root)
        self._functions = functions
        self.store = FeatureSpecStore(root)

    # ---- checks ----------------------------------------------------------------------------
    def _unreadable_tables(self, caller: Caller, spec: FeatureSpec, known: KnownTables) -> list[str]:
        """The tables of ``spec`` on which the caller lacks SELECT (every one that is gone too)."""
        if caller.is_admin:
            return []
        out = []
        for table in spec.tables:
            name = table.table_name
            level = self._access.level(caller, name, known) if name in known.names else None
            if level is None or level < TablePrivilege.SELECT:
                out.append(name)
        return out

    def _require_select(self, caller: Caller, spec: FeatureSpec, what: str) -> None:
        missing = self._unreadable_tables(caller, spec, self._access.known())
        if missing:
            raise PermissionDenied(
                f"'{caller.name}' does not hold SELECT on feature table(s) {', '.join(missing)}, which "
                f"{what} reads."
            )

    def _with_functions(self, doc: Mapping[str, Any]) -> dict[str, Any]:
        """``doc`` with the registered definitions of the functions it names (whatever it brought)."""
        out = {k: v for k, v in doc.items() if k != "input_functions"}
        names = _udf_names(doc)
        if not names:
            return out
        if self._functions is None:
            raise InvalidParameterValue(
                f"The feature spec uses feature functions ({', '.join(names)}), which this server does "
                "not run."
            )
        definitions = []
        for name in names:
            body = self._functions(name).to_dict()
            del body["name"]
            definitions.append({name: body})
        out["input_functions"] = definitions
        return out

    def _check_features(self, spec: FeatureSpec) -> None:
        """Every feature column fits its table as the table is now (400 naming the problem)."""
        infos: dict[str, FeatureTableInfo] = {}
        for column in spec.feature_columns:
            table = column.table_name
            if table not in infos:
                try:
                    infos[table] = self._tables.get(table)
                except ResourceDoesNotExist as exc:
                    raise InvalidParameterValue(
                        f"Feature '{column.output_name}' reads table '{table}': {exc.message}"
                    ) from None
            self._check_feature(column, infos[table])

    @staticmethod
    def _check_feature(column: FeatureColumn, info: FeatureTableInfo) -> None:
        table, feature = info.name, column.feature_name
        kind = _column_type(info, feature)
        if kind is None:
            raise InvalidParameterValue(f"Feature table '{table}' has no feature '{feature}'.")
        if column.data_type is not None and column.data_type != kind:
            raise InvalidParameterValue(
                f"Feature '{feature}' of table '{table}' is {kind}; the feature spec says {column.data_type}."
            )
        keys = [k for k in info.primary_keys if k not in info.timestamp_keys]
        if len(column.lookup_key) != len(keys):
            raise InvalidParameterValue(
                f"Feature table '{table}' has primary keys {keys}; feature '{column.output_name}' is "
                f"looked up with {list(column.lookup_key)}."
            )
        if column.timestamp_lookup_key and not info.timestamp_keys:
            raise InvalidParameterValue(
                f"Feature table '{table}' has no timestamp key; feature '{column.output_name}' cannot "
                "be looked up at a point in time."
            )

    def _readable(self, caller: Caller, stored: StoredSpec, known: KnownTables | None = None) -> bool:
        if caller.is_admin or stored.owner == caller.name:
            return True
        try:
            spec = FeatureSpec.from_dict(stored.document)
        except InvalidParameterValue:
            return False
        return not self._unreadable_tables(caller, spec, known or self._access.known())

    def _find(self, caller: Caller, full_name: Any) -> StoredSpec:
        """The stored spec when the caller may read it (see the module docstring for 403/404)."""
        name = spec_name(full_name)
        denied = PermissionDenied(f"'{caller.name}' may not read feature spec '{name}'.")
        try:
            stored = self.store.get(name)
        except ResourceDoesNotExist:
            if caller.is_admin:
                raise
            raise denied from None
        if not self._readable(caller, stored):
            raise denied
        return stored

    # ---- operations ---------------------------------------------------------------------------
    def create(self, caller: Caller, body: Mapping[str, Any]) -> dict[str, Any]:
        """Create a spec from ``{"name", "feature_spec": <feature_spec.yaml as JSON>}``; the
        caller owns it and must hold SELECT on every table it reads."""
        name = spec_name(body.get("name"))
        if name.split(".", 1)[0] == RESERVED_CATALOG:
            raise InvalidParameterValue(
                f"Cannot create feature spec '{name}': the catalog '{RESERVED_CATALOG}' holds modelport's "
                "own tables."
            )
        doc = body.get("feature_spec")
        if not isinstance(doc, Mapping):
            raise InvalidParameterValue(
                "Missing required field 'feature_spec': the spec's feature_spec.yaml document as JSON."
            )
        spec = FeatureSpec.from_dict(self._with_functions(doc))
        if not spec.feature_columns and not spec.function_columns:
            raise InvalidParameterValue("A feature spec needs at least one feature or function output.")
        if not spec.output_columns:
            raise InvalidParameterValue("The feature spec excludes every column: it would answer nothing.")
        self._require_select(caller, spec, f"feature spec '{name}'")
        self._check_features(spec)
        stored = StoredSpec(name, caller.name, now_ms(), spec.to_dict())
        self.store.create(stored)
        return self._answer(stored)

    def get(self, caller: Caller, full_name: Any) -> dict[str, Any]:
        return self._answer(self._find(caller, full_name))

    def list(self, caller: Caller) -> list[dict[str, Any]]:
        """The specs the caller may read."""
        known = None if caller.is_admin else self._access.known()
        return [self._answer(s) for s in self.store.list() if self._readable(caller, s, known)]

    def delete(self, caller: Caller, full_name: Any) -> None:
        """Delete a spec (its owner or an admin) that no endpoint's current config serves."""
        stored = self._find(caller, full_name)
        if not caller.is_admin and stored.owner != caller.name:
            raise PermissionDenied(
                f"'{caller.name}' may not delete feature spec '{stored.name}': only its owner "
                f"('{stored.owner}') and admins may."
            )
        serving = self.endpoints_serving(stored.name)
        if serving:
            raise InvalidParameterValue(
                f"Feature spec '{stored.name}' is served by endpoint(s) {', '.join(serving)}; change "
                "their config or delete them first."
            )
        self.store.delete(stored.name)

    def endpoints_serving(self, name: str) -> list[str]:
        """The endpoints whose active or pending config serves feature spec ``name``."""
        names = {e.id: e.name for e in self._db.endpoints.list()}
        found: set[str] = set()
        for (endpoint_id, _), config in self._db.endpoints.current_configs().items():
            for entity in config.body.get("served_entities", []):
                if FEATURE_SPEC_KEY in entity and entity.get("entity_name") == name:
                    found.add(names.get(endpoint_id, endpoint_id))
        return sorted(found)

    def for_endpoint(self, caller: Caller, full_name: str, *, named: bool) -> dict[str, Any] | None:
        """The document an endpoint config copies in: the spec ``full_name`` as stored (with the
        function definitions it copied when it was created); the caller must hold SELECT on
        every table it reads (403).

        A spec the caller may not read, or that does not exist: with ``named`` (the request said
        it serves feature specs) the 403/404 of :meth:`get`; without, None (the entity may be a
        registered model missing its version)."""
        name = spec_name(full_name)
        try:
            stored = self._find(caller, name)
        except (ResourceDoesNotExist, PermissionDenied):
            if named:
                raise
            return None
        spec = FeatureSpec.from_dict(stored.document)
        self._require_select(caller, spec, f"feature spec '{name}'")
        return spec.to_dict()

    @staticmethod
    def _answer(stored: StoredSpec) -> dict[str, Any]:
        """``{"name", "owner", "created_ms", "tables", "functions", "inputs", "outputs",
        "feature_spec"}``: ``inputs`` are the columns a query must carry, ``outputs`` what it gets."""
        out = stored.to_json()
        try:
            spec = FeatureSpec.from_dict(stored.document)
        except InvalidParameterValue:
            return out
        out["tables"] = [t.table_name for t in spec.tables]
        out["functions"] = [f.name for f in spec.functions]
        out["inputs"] = spec.required_columns
        out["outputs"] = spec.output_columns
        return out
