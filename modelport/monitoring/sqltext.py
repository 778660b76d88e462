"""Small SQL-text helpers shared by the monitoring modules: quoting, Spark→DuckDB, type names."""

from __future__ import annotations

import json

import duckdb
import pyarrow as pa
import sqlglot

from modelport.errors import InvalidParameterValue

__all__ = ["describe", "ident", "literal", "output_type", "spark_to_duckdb", "spark_type_name"]


def ident(name: str) -> str:
    """A DuckDB quoted identifier."""
    return '"' + name.replace('"', '""') + '"'


def literal(text: str) -> str:
    """A DuckDB string literal."""
    return "'" + text.replace("'", "''") + "'"


def spark_to_duckdb(sql: str) -> str:
    """Databricks (Spark) SQL expression text in DuckDB's dialect; the text itself when sqlglot can't.

    Backticked identifiers, ``percentile_approx`` and the like become DuckDB's spellings.
    """
    try:
        out = sqlglot.transpile(sql, read="spark", write="duckdb")
    except sqlglot.errors.SqlglotError:
        return sql
    return out[0] if len(out) == 1 else sql


def describe(con: duckdb.DuckDBPyConnection, relation_sql: str) -> dict[str, str]:
    """Column name → DuckDB type of a SELECT (or a view/table name)."""
    query = (
        relation_sql
        if relation_sql.lstrip().upper().startswith("SELECT")
        else f"SELECT * FROM {relation_sql}"
    )
    try:
        rows = con.execute(f"DESCRIBE {query}").fetchall()
    except duckdb.Error as exc:
        raise InvalidParameterValue(f"Cannot read {relation_sql!r}: {exc}") from exc
    return {str(row[0]): str(row[1]) for row in rows}


_SPARK_NAMES = {
    "DOUBLE": "double",
    "FLOAT": "float",
    "REAL": "float",
    "BIGINT": "bigint",
    "HUGEINT": "decimal(38,0)",
    "UBIGINT": "decimal(20,0)",
    "INTEGER": "int",
    "UINTEGER": "bigint",
    "SMALLINT": "smallint",
    "USMALLINT": "int",
    "TINYINT": "tinyint",
    "UTINYINT": "smallint",
    "VARCHAR": "string",
    "BOOLEAN": "boolean",
    "DATE": "date",
    "TIMESTAMP": "timestamp",
    "TIMESTAMP WITH TIME ZONE": "timestamp",
    "BLOB": "binary",
}


def spark_type_name(duckdb_type: str) -> str:
    """The Spark SQL name of a DuckDB type, as the ``data_type`` column carries it."""
    upper = duckdb_type.upper()
    if upper in _SPARK_NAMES:
        return _SPARK_NAMES[upper]
    if upper.startswith("TIMESTAMP"):
        return "timestamp"
    if upper.startswith("DECIMAL"):
        return upper.lower().replace(" ", "")
    if upper.endswith("[]"):
        return f"array<{spark_type_name(duckdb_type[:-2])}>"
    return duckdb_type.lower()


_OUTPUT_TYPES: dict[str, tuple[str, pa.DataType]] = {
    "double": ("DOUBLE", pa.float64()),
    "float": ("FLOAT", pa.float32()),
    "int": ("INTEGER", pa.int32()),
    "integer": ("INTEGER", pa.int32()),
    "long": ("BIGINT", pa.int64()),
    "bigint": ("BIGINT", pa.int64()),
    "short": ("SMALLINT", pa.int16()),
    "smallint": ("SMALLINT", pa.int16()),
    "string": ("VARCHAR", pa.string()),
    "boolean": ("BOOLEAN", pa.bool_()),
}


def output_type(spec: str) -> tuple[str, pa.DataType]:
    """(DuckDB type, Arrow type) of a custom metric's ``output_data_type``.

    Accepts a Spark type name ("double") or the JSON of a Spark ``StructField`` as the Databricks
    SDK examples write it (``'{"name": "output", "type": "double", ...}'``).
    """
    text = spec.strip()
    if text.startswith("{"):
        try:
            text = str(json.loads(text)["type"])
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidParameterValue(f"Unreadable custom metric output_data_type {spec!r}") from exc
    key = text.lower()
    if key not in _OUTPUT_TYPES:
        raise InvalidParameterValue(
            f"Unsupported custom metric output_data_type {spec!r}: use one of {', '.join(_OUTPUT_TYPES)}"
        )
    return _OUTPUT_TYPES[key]
