"""Profile metrics of each column in each group (window x slice x model id) of an expanded table.

The expanded table (built by :mod:`modelport.monitoring.engine`) holds one row per (source row,
group it belongs to), with the group's id in ``__mp_gid`` (0..G-1). Everything here is one DuckDB
``GROUP BY __mp_gid`` over all columns at once, plus one sorted fetch per numeric column (values
ordered by group then value) from which numpy computes quantiles, distinct counts and, later, drift.

Definitions (documented choices where Databricks does not say):

- ``count`` is the number of rows in the group (NULLs included), the same on every column's row and
  the ``:table`` row; ``num_nulls`` the NULLs; every ``percent_*`` is 100 x x / ``count``.
- NaN is counted in ``num_nan`` and left out of ``avg``, ``stddev`` (sample), ``min``, ``max``,
  ``quantiles``, ``median`` and ``distinct_count``; ``num_zeros`` counts values equal to 0.
- ``quantiles`` are at :data:`QUANTILES` (linear interpolation, as numpy's default and DuckDB's
  ``quantile_cont``); ``median`` is the 0.5 quantile.
- ``distinct_count`` is exact, over non-NULL (and non-NaN) values.
- Strings get ``min_length``/``max_length``/``avg_length`` (characters); strings and booleans get
  ``frequent_items`` (the :data:`FREQUENT_ITEMS` most frequent values with their counts, ties by value).
- Timestamps and dates get ``min``/``max``/``median`` as epoch seconds (as Databricks shows them).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import duckdb
import numpy as np
import pyarrow as pa
from numpy.typing import NDArray

from modelport.monitoring.sqltext import ident, spark_type_name

__all__ = [
    "FREQUENT_ITEMS",
    "QUANTILES",
    "Categories",
    "ColumnInfo",
    "GroupProfile",
    "Segments",
    "column_info",
    "profile_groups",
]

QUANTILES = (0.0, 0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 1.0)
FREQUENT_ITEMS = 10

Floats = NDArray[np.float64]
Ints = NDArray[np.int64]

_NUMERIC_PREFIXES = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT")
_NUMERIC_PREFIXES += ("UINTEGER", "UBIGINT", "UHUGEINT", "FLOAT", "DOUBLE", "REAL", "DECIMAL")


@dataclass(frozen=True)
class ColumnInfo:
    """A profiled column: its DuckDB and Spark types and how it is profiled.

    ``kind`` is "numeric", "categorical" (strings, booleans, and a classification monitor's
    prediction and label), "timestamp" (timestamps and dates) or "other" (counts only).
    """

    name: str
    duck_type: str
    data_type: str
    kind: str
    is_float: bool


def column_info(name: str, duck_type: str, *, categorical: bool = False) -> ColumnInfo:
    upper = duck_type.upper()
    is_float = upper in ("FLOAT", "DOUBLE", "REAL")
    if categorical or upper in ("VARCHAR", "BOOLEAN") or upper.startswith("ENUM"):
        kind = "categorical"
    elif upper.startswith(_NUMERIC_PREFIXES):
        kind = "numeric"
    elif upper.startswith(("TIMESTAMP", "DATE")):
        kind = "timestamp"
    else:
        kind = "other"
    return ColumnInfo(name, duck_type, spark_type_name(duck_type), kind, is_float and kind == "numeric")


@dataclass(frozen=True)
class Segments:
    """A numeric column's non-NULL, non-NaN values, sorted within each group; group g is
    ``values[offsets[g]:offsets[g + 1]]``."""

    values: Floats
    offsets: Ints

    def get(self, gid: int) -> Floats:
        return self.values[self.offsets[gid] : self.offsets[gid + 1]]

    def sizes(self) -> Ints:
        return np.diff(self.offsets)


@dataclass(frozen=True)
class Categories:
    """A categorical column's value counts per group, most frequent first: group g's values are
    ``values[offsets[g]:offsets[g + 1]]`` with ``counts`` alongside."""

    values: NDArray[np.object_]
    counts: Ints
    offsets: Ints

    def get(self, gid: int) -> tuple[NDArray[np.object_], Ints]:
        lo, hi = self.offsets[gid], self.offsets[gid + 1]
        return self.values[lo:hi], self.counts[lo:hi]


@dataclass
class GroupProfile:
    """Per-group metrics of every profiled column.

    ``metrics[column][name]`` is a float array over groups (NaN = NULL) for the numeric metrics of
    :data:`~modelport.monitoring.schemas.PROFILE_SCHEMA`; ``lists[column]`` holds ``quantiles`` and
    ``frequent_items`` as Arrow arrays over groups; ``custom[(metric, column)]`` custom aggregates.
    """

    n_groups: int
    rows: Ints
    metrics: dict[str, dict[str, Floats]] = field(default_factory=dict)
    lists: dict[str, dict[str, pa.Array]] = field(default_factory=dict)
    numeric: dict[str, Segments] = field(default_factory=dict)
    categorical: dict[str, Categories] = field(default_factory=dict)
    custom: dict[tuple[str, str], pa.Array] = field(default_factory=dict)


def _aggregates(i: int, col: ColumnInfo) -> list[str]:
    c = ident(col.name)
    exprs = [f"count({c}) AS c{i}_nn"]
    if col.kind == "numeric":
        v = f"nullif(CAST({c} AS DOUBLE), 'NaN'::DOUBLE)" if col.is_float else f"CAST({c} AS DOUBLE)"
        if col.is_float:
            exprs.append(f"count_if(isnan({c})) AS c{i}_nan")
        exprs += [
            f"count_if({c} = 0) AS c{i}_zeros",
            f"avg({v}) AS c{i}_avg",
            f"stddev_samp({v}) AS c{i}_stddev",
            f"min({v}) AS c{i}_min",
            f"max({v}) AS c{i}_max",
        ]
    elif col.kind == "timestamp":
        exprs += [
            f"min(epoch({c})) AS c{i}_min",
            f"max(epoch({c})) AS c{i}_max",
            f"quantile_cont(epoch({c}), 0.5) AS c{i}_median",
            f"count(DISTINCT {c}) AS c{i}_distinct",
        ]
    if col.kind == "categorical" and col.duck_type.upper() == "VARCHAR":
        exprs += [
            f"min(length({c})) AS c{i}_minlen",
            f"max(length({c})) AS c{i}_maxlen",
            f"avg(length({c})) AS c{i}_avglen",
        ]
    return exprs


def _floats(table: pa.Table, name: str) -> Floats:
    return np.asarray(table.column(name).to_numpy(zero_copy_only=False), dtype=np.float64)


def _offsets(gids: Ints, n_groups: int) -> Ints:
    return np.searchsorted(gids, np.arange(n_groups + 1), side="left").astype(np.int64)


def _segment_quantiles(seg: Segments, n_groups: int) -> tuple[pa.Array, Floats]:
    sizes = seg.sizes()
    qs = np.asarray(QUANTILES)
    pos = (np.maximum(sizes, 1) - 1)[:, None] * qs[None, :]
    lo = np.floor(pos).astype(np.int64)
    hi = np.ceil(pos).astype(np.int64)
    base = seg.offsets[:-1, None]
    safe = seg.values if seg.values.size else np.zeros(1)
    a = safe[np.minimum(base + lo, safe.size - 1)]
    b = safe[np.minimum(base + hi, safe.size - 1)]
    values = a + (b - a) * (pos - lo)
    empty = sizes == 0
    values[empty] = np.nan
    flat = pa.array(values.ravel())
    offsets = pa.array(np.arange(0, (n_groups + 1) * qs.size, qs.size, dtype=np.int32))
    lists = pa.ListArray.from_arrays(offsets, flat, mask=pa.array(empty))
    median = values[:, QUANTILES.index(0.5)]
    return lists, median


def _segment_distinct(seg: Segments) -> Floats:
    values = seg.values
    if values.size == 0:
        return np.zeros(seg.offsets.size - 1)
    is_new = np.ones(values.size, dtype=np.int64)
    is_new[1:] = values[1:] != values[:-1]
    is_new[seg.offsets[:-1][seg.sizes() > 0]] = 1
    cumulative = np.concatenate(([0], np.cumsum(is_new)))
    return (cumulative[seg.offsets[1:]] - cumulative[seg.offsets[:-1]]).astype(np.float64)


def _frequent_items(cats: Categories, n_groups: int) -> pa.Array:
    sizes = np.diff(cats.offsets)
    if cats.values.size == 0:
        return pa.nulls(n_groups, type=pa.list_(pa.struct([("item", pa.string()), ("count", pa.int64())])))
    gids = np.repeat(np.arange(n_groups), sizes)
    rank = np.arange(cats.values.size) - cats.offsets[gids]
    keep = rank < FREQUENT_ITEMS
    kept_sizes = np.minimum(sizes, FREQUENT_ITEMS)
    offsets = np.concatenate(([0], np.cumsum(kept_sizes))).astype(np.int32)
    items = pa.StructArray.from_arrays(
        [pa.array(cats.values[keep], type=pa.string()), pa.array(cats.counts[keep], type=pa.int64())],
        names=["item", "count"],
    )
    return pa.ListArray.from_arrays(pa.array(offsets), items, mask=pa.array(sizes == 0))


def profile_groups(
    con: duckdb.DuckDBPyConnection,
    table: str,
    n_groups: int,
    columns: list[ColumnInfo],
    custom_aggregates: dict[tuple[str, str], str],
) -> GroupProfile:
    """Profile every column of ``table`` (an expanded table with ``__mp_gid``) per group."""
    exprs = ["count(*) AS __mp_rows"]
    for i, col in enumerate(columns):
        exprs += _aggregates(i, col)
    custom_alias = {key: f"__mp_cm{k}" for k, key in enumerate(custom_aggregates)}
    exprs += [f"{sql} AS {custom_alias[key]}" for key, sql in custom_aggregates.items()]
    wide = con.sql(
        f"SELECT __mp_gid, {', '.join(exprs)} FROM {table} GROUP BY __mp_gid ORDER BY __mp_gid"
    ).to_arrow_table()
    rows = np.asarray(wide.column("__mp_rows").to_numpy(), dtype=np.int64)
    out = GroupProfile(n_groups, rows)
    rows_f = rows.astype(np.float64)
    nan = np.full(n_groups, np.nan)
    for i, col in enumerate(columns):
        nn = _floats(wide, f"c{i}_nn")
        m: dict[str, Floats] = {"num_nulls": rows_f - nn}
        lists: dict[str, pa.Array] = {}
        names = set(wide.column_names)
        for metric, suffix in (
            ("avg", "avg"),
            ("stddev", "stddev"),
            ("min", "min"),
            ("max", "max"),
            ("num_zeros", "zeros"),
            ("num_nan", "nan"),
            ("median", "median"),
            ("distinct_count", "distinct"),
            ("min_length", "minlen"),
            ("max_length", "maxlen"),
            ("avg_length", "avglen"),
        ):
            m[metric] = _floats(wide, f"c{i}_{suffix}") if f"c{i}_{suffix}" in names else nan.copy()
        if col.kind == "numeric":
            if not col.is_float:
                m["num_nan"] = np.zeros(n_groups)
            nan_filter = f" AND NOT isnan({ident(col.name)})" if col.is_float else ""
            fetched = con.execute(
                f"SELECT __mp_gid, CAST({ident(col.name)} AS DOUBLE) AS v FROM {table} "
                f"WHERE {ident(col.name)} IS NOT NULL{nan_filter} ORDER BY __mp_gid, v"
            ).fetchnumpy()
            seg = Segments(
                np.asarray(fetched["v"], dtype=np.float64),
                _offsets(np.asarray(fetched["__mp_gid"], dtype=np.int64), n_groups),
            )
            out.numeric[col.name] = seg
            lists["quantiles"], m["median"] = _segment_quantiles(seg, n_groups)
            m["distinct_count"] = _segment_distinct(seg)
        elif col.kind == "categorical":
            counted = con.sql(
                f"SELECT __mp_gid, CAST({ident(col.name)} AS VARCHAR) AS v, count(*) AS n FROM {table} "
                f"WHERE {ident(col.name)} IS NOT NULL GROUP BY ALL ORDER BY __mp_gid, n DESC, v"
            ).to_arrow_table()
            gids = np.asarray(counted.column("__mp_gid").to_numpy(), dtype=np.int64)
            cats = Categories(
                np.asarray(counted.column("v").to_numpy(zero_copy_only=False), dtype=object),
                np.asarray(counted.column("n").to_numpy(), dtype=np.int64),
                _offsets(gids, n_groups),
            )
            out.categorical[col.name] = cats
            m["distinct_count"] = np.diff(cats.offsets).astype(np.float64)
            lists["frequent_items"] = _frequent_items(cats, n_groups)
        m["percent_null"] = 100.0 * m["num_nulls"] / rows_f
        m["percent_nan"] = 100.0 * m["num_nan"] / rows_f
        m["percent_zeros"] = 100.0 * m["num_zeros"] / rows_f
        m["percent_distinct"] = 100.0 * m["distinct_count"] / rows_f
        m["non_null"] = nn
        out.metrics[col.name] = m
        out.lists[col.name] = lists
    for key, alias in custom_alias.items():
        out.custom[key] = wide.column(alias).combine_chunks()
    return out
