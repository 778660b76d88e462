"""Names and locations of the inference and usage tables.

Databricks names an endpoint's inference table ``<catalog_name>.<schema_name>.<table_name_prefix>_payload``
and the account's usage table ``system.serving.endpoint_usage``. modelport keeps every table under one
*root* (by default ``<data-dir>/tables``; a URI such as ``s3://bucket/prefix`` may replace it), one folder
per name part::

    <root>/<catalog>/<schema>/<table>          e.g. <root>/main/default/chat_payload
    <root>/system/serving/endpoint_usage
    <root>/system/access/audit

Name parts are case-insensitive (Unity Catalog lower-cases them); they are stored lower-case and may hold
only letters, digits and underscores, so a name can never climb out of the root.

A :class:`TableRef` is the resolved form the writer and the spool use: kind, three-part name and URI.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import orjson

from modelport.errors import InvalidParameterValue
from modelport.spec.table_privileges import AUDIT_TABLE_NAME

__all__ = [
    "AUDIT_TABLE_NAME",
    "MAX_NAME_LENGTH",
    "PAYLOAD_SUFFIX",
    "USAGE_TABLE_NAME",
    "TableKind",
    "TableRef",
    "audit_table",
    "default_prefix",
    "is_uri",
    "payload_table",
    "split_name",
    "table_uri",
    "usage_table",
    "validate_part",
]

TableKind = Literal["inference", "usage", "audit"]

#: Suffix Databricks appends to ``table_name_prefix`` for the payload (inference) table.
PAYLOAD_SUFFIX = "_payload"
#: Three-part name of the usage system table.
USAGE_TABLE_NAME = "system.serving.endpoint_usage"
#: Longest name part accepted (Unity Catalog's limit).
MAX_NAME_LENGTH = 255

_PART = re.compile(r"^[a-z0-9_]+\Z")  # \Z: "$" matches before a final newline
_URI = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


def is_uri(root: str) -> bool:
    """Whether ``root`` is a URI (``s3://...``, ``file:///...``) rather than a local path."""
    return bool(_URI.match(root))


def validate_part(value: str, field_name: str) -> str:
    """Check one name part (catalog, schema or table) and return it lower-cased.

    Raises :class:`~modelport.errors.InvalidParameterValue` naming ``field_name`` when the part is
    empty, too long or holds anything but letters, digits and underscores.
    """
    if not isinstance(value, str) or not value:
        raise InvalidParameterValue(f"{field_name} must be a non-empty string.")
    lowered = value.lower()
    if len(lowered) > MAX_NAME_LENGTH:
        raise InvalidParameterValue(f"{field_name} is longer than {MAX_NAME_LENGTH} characters.")
    if not _PART.match(lowered):
        raise InvalidParameterValue(
            f"{field_name} may contain only letters, digits and underscores; got {value!r}."
        )
    return lowered


def default_prefix(endpoint_name: str) -> str:
    """The ``table_name_prefix`` used when the endpoint's config gives none: its name, made a valid part.

    Characters other than letters, digits and underscores (endpoint names allow ``-``) become ``_``.
    """
    prefix = re.sub(r"[^a-z0-9_]", "_", endpoint_name.lower())
    return validate_part(prefix, "table_name_prefix")


def split_name(full_name: str) -> tuple[str, str, str]:
    """``"a.b.c"`` -> ``("a", "b", "c")``, each part validated and lower-cased."""
    parts = full_name.split(".")
    if len(parts) != 3:
        raise InvalidParameterValue(f"Table name {full_name!r} must have three parts: catalog.schema.table.")
    catalog, schema, table = parts
    return (
        validate_part(catalog, "catalog_name"),
        validate_part(schema, "schema_name"),
        validate_part(table, "table_name"),
    )


def table_uri(root: str, catalog: str, schema: str, table: str) -> str:
    """Where table ``catalog.schema.table`` lives under ``root`` (parts must already be valid)."""
    base = root.rstrip("/") if is_uri(root) else _local_root(root)
    return f"{base}/{catalog}/{schema}/{table}"


def _local_root(root: str) -> str:
    return str(Path(root).expanduser().resolve())


@dataclass(frozen=True, slots=True)
class TableRef:
    """A resolved table: what it holds, its three-part name and where it is stored.

    ``spool_key`` is the JSON prefix that names the table in each spool line (built once, so that
    recording a row costs no extra serialisation).
    """

    kind: TableKind
    name: str
    uri: str
    spool_key: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.kind not in ("inference", "usage", "audit"):
            raise InvalidParameterValue(f"Unknown table kind {self.kind!r}.")
        object.__setattr__(self, "spool_key", orjson.dumps([self.kind, self.name, self.uri]))

    @property
    def id_column(self) -> str:
        """The column holding the request id, the key rows are deduplicated by."""
        if self.kind == "audit":
            return "event_id"
        return "databricks_request_id" if self.kind == "inference" else "request_id"

    @property
    def partition_column(self) -> str:
        """The date column the table is partitioned by (Databricks' ``event_date`` for the audit log)."""
        return "event_date" if self.kind == "audit" else "date"


def payload_table(root: str, catalog_name: str, schema_name: str, table_name_prefix: str) -> TableRef:
    """The inference table of an endpoint: ``<catalog>.<schema>.<prefix>_payload`` under ``root``."""
    catalog = validate_part(catalog_name, "catalog_name")
    schema = validate_part(schema_name, "schema_name")
    table = validate_part(table_name_prefix, "table_name_prefix") + PAYLOAD_SUFFIX
    if len(table) > MAX_NAME_LENGTH:
        raise InvalidParameterValue(f"table_name_prefix is longer than {MAX_NAME_LENGTH - 8} characters.")
    return TableRef("inference", f"{catalog}.{schema}.{table}", table_uri(root, catalog, schema, table))


def usage_table(root: str) -> TableRef:
    """The usage table ``system.serving.endpoint_usage`` under ``root``."""
    return TableRef("usage", USAGE_TABLE_NAME, table_uri(root, "system", "serving", "endpoint_usage"))


def audit_table(root: str) -> TableRef:
    """The audit log ``system.access.audit`` under ``root``."""
    return TableRef("audit", AUDIT_TABLE_NAME, table_uri(root, "system", "access", "audit"))
