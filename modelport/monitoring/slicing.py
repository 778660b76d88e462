"""Slicing expressions: which rows belong to which slice, as Databricks defines slices.

Each expression is a slice key of its own (``slice_key`` is the expression text as given). A boolean
expression (a predicate such as ``age > 30``) slices into ``"true"`` and ``"false"``; any other
expression (a column such as ``country``) slices by its values, keeping the 100 most frequent values
in the source (ties broken by value), each rendered as text (``slice_value``). Rows where the
expression is NULL, or whose value is not among those kept, belong to no slice of that key; they
still count in the whole-table rows (``slice_key`` NULL).
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

from modelport.errors import InvalidParameterValue
from modelport.monitoring.sqltext import literal, spark_to_duckdb

__all__ = ["TOP_SLICE_VALUES", "Slice", "resolve_slices"]

#: How many values of a non-boolean slicing expression get a slice of their own.
TOP_SLICE_VALUES = 100


@dataclass(frozen=True)
class Slice:
    """One slicing expression, resolved against the source.

    ``value_sql`` is DuckDB SQL giving the row's ``slice_value`` (VARCHAR), NULL when the row
    belongs to no slice of this key.
    """

    key: str
    value_sql: str


def resolve_slices(con: duckdb.DuckDBPyConnection, source: str, exprs: tuple[str, ...]) -> list[Slice]:
    """The slices of ``exprs`` over ``source``; InvalidParameterValue for an expression DuckDB can't run."""
    slices = []
    for expr in exprs:
        sql = spark_to_duckdb(expr)
        try:
            kind = con.execute(f"DESCRIBE SELECT ({sql}) AS v FROM {source}").fetchall()[0][1]
        except duckdb.Error as exc:
            raise InvalidParameterValue(f"Slicing expression {expr!r} cannot be evaluated: {exc}") from exc
        text = f"CAST(({sql}) AS VARCHAR)"
        if str(kind).upper() == "BOOLEAN":
            slices.append(Slice(expr, text))
            continue
        top = con.execute(
            f"SELECT __mp_v FROM (SELECT {text} AS __mp_v, count(*) AS __mp_n FROM {source} GROUP BY ALL) "
            f"WHERE __mp_v IS NOT NULL ORDER BY __mp_n DESC, __mp_v LIMIT {TOP_SLICE_VALUES}"
        ).fetchall()
        if not top:
            slices.append(Slice(expr, "NULL::VARCHAR"))
            continue
        kept = ", ".join(literal(str(row[0])) for row in top)
        slices.append(Slice(expr, f"CASE WHEN {text} IN ({kept}) THEN {text} END"))
    return slices


def evaluable(con: duckdb.DuckDBPyConnection, relation: str, value_sql: str) -> bool:
    """Whether ``value_sql`` runs against ``relation`` (a baseline may lack a slicing column)."""
    try:
        con.execute(f"DESCRIBE SELECT {value_sql} FROM {relation}")
    except duckdb.Error:
        return False
    return True
