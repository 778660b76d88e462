"""Assembling output rows: profile rows per (group, column) and drift rows per (pair, column).

Works on the per-group arrays of :class:`~modelport.monitoring.profile.GroupProfile`; a loop runs
over columns and over compared pairs, never over source rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from numpy.typing import NDArray

from modelport.monitoring.drift import BaseSample, categorical_drift, numeric_drift
from modelport.monitoring.profile import ColumnInfo, GroupProfile
from modelport.monitoring.schemas import DRIFT_SCHEMA, PROFILE_SCHEMA, TEST_TYPE, WINDOW_TYPE

__all__ = ["GroupKeys", "Pairs", "copy_for_model", "drift_piece", "profile_piece", "window_array"]

TABLE = ":table"
Floats = NDArray[np.float64]
Ints = NDArray[np.int64]


@dataclass
class GroupKeys:
    """What identifies each group: window (start, end; None for baseline rows), slice and model id."""

    starts: list[datetime | None]
    ends: list[datetime | None]
    parts: Ints
    slice_keys: list[str | None]
    slice_values: list[str | None]
    model_ids: list[str | None]

    def __len__(self) -> int:
        return len(self.starts)


def window_array(starts: list[datetime | None], ends: list[datetime | None]) -> pa.Array:
    return pa.array(
        [None if s is None else {"start": s, "end": e} for s, e in zip(starts, ends, strict=True)],
        type=WINDOW_TYPE,
    )


def _f(values: Floats) -> pa.Array:
    return pa.array(values, mask=np.isnan(values), type=pa.float64())


def _i(values: Floats) -> pa.Array:
    mask = np.isnan(values)
    return pa.array(np.where(mask, 0, values).astype(np.int64), mask=mask, type=pa.int64())


def _const(value: object, n: int, type_: pa.DataType) -> pa.Array:
    return pa.array([value] * n, type=type_) if value is not None else pa.nulls(n, type=type_)


def profile_piece(
    keys: GroupKeys,
    profile: GroupProfile,
    column: ColumnInfo | None,
    *,
    columns: list[ColumnInfo],
    log_type: str,
    granularity: str | None,
    monitor_version: int,
    table_version: int | None,
    quality: dict[str, pa.Array],
    custom_fields: list[pa.Field],
) -> pa.Table:
    """The profile rows of one column (``None``: the ``:table`` row) for every group."""
    n = profile.n_groups
    windows = window_array(keys.starts, keys.ends)
    data: dict[str, pa.Array] = {
        "window": windows,
        "log_type": _const(log_type, n, pa.string()),
        "logging_table_commit_version": _const(table_version, n, pa.int64()),
        "monitor_version": _const(monitor_version, n, pa.int64()),
        "granularity": _const(granularity, n, pa.string()),
        "slice_key": pa.array(keys.slice_keys, type=pa.string()),
        "slice_value": pa.array(keys.slice_values, type=pa.string()),
        "column_name": _const(TABLE if column is None else column.name, n, pa.string()),
        "data_type": _const(None if column is None else column.data_type, n, pa.string()),
        "count": pa.array(profile.rows, type=pa.int64()),
        "model_id": pa.array(keys.model_ids, type=pa.string()),
    }
    if column is None:
        non_null = np.array([profile.metrics[c.name]["non_null"] > 0 for c in columns]).reshape(
            len(columns), n
        )
        names = [c.name for c in columns]
        data["non_null_columns"] = pa.array(
            [[names[i] for i in np.flatnonzero(non_null[:, g])] for g in range(n)], type=pa.list_(pa.string())
        )
        data.update(quality)
        name = TABLE
    else:
        m = profile.metrics[column.name]
        for metric in ("avg", "min", "max", "stddev", "avg_length", "median"):
            data[metric] = _f(m[metric])
        for pct in ("percent_nan", "percent_null", "percent_zeros", "percent_distinct"):
            data[pct] = _f(m[pct])
        for metric in ("num_nulls", "num_zeros", "num_nan", "min_length", "max_length", "distinct_count"):
            data[metric] = _i(m[metric])
        data.update(profile.lists[column.name])
        name = column.name
    arrays = [data[f.name] if f.name in data else pa.nulls(n, type=f.type) for f in PROFILE_SCHEMA]
    for fld in custom_fields:
        value = profile.custom.get((fld.name, name))
        arrays.append(value.cast(fld.type) if value is not None else pa.nulls(n, type=fld.type))
    return pa.Table.from_arrays(arrays, schema=pa.schema([*PROFILE_SCHEMA, *custom_fields]))


@dataclass
class Pairs:
    """Compared groups: ``current[i]`` (in the current profile) against ``base[i]`` (in ``base_profile``)."""

    current: Ints
    base: Ints
    drift_type: str


def drift_piece(
    keys: GroupKeys,
    profile: GroupProfile,
    base_keys: GroupKeys,
    base_profile: GroupProfile,
    pairs: Pairs,
    column: ColumnInfo | None,
    *,
    columns: list[ColumnInfo],
    granularity: str | None,
    monitor_version: int,
    ks_exact_max_product: int,
) -> pa.Table:
    """The drift rows of one column (``None``: ``:table``) for every compared pair."""
    cur, base = pairs.current, pairs.base
    n = cur.size
    data: dict[str, pa.Array] = {
        "window": window_array([keys.starts[g] for g in cur], [keys.ends[g] for g in cur]),
        "window_cmp": window_array([base_keys.starts[g] for g in base], [base_keys.ends[g] for g in base]),
        "drift_type": _const(pairs.drift_type, n, pa.string()),
        "granularity": _const(granularity, n, pa.string()),
        "monitor_version": _const(monitor_version, n, pa.int64()),
        "slice_key": pa.array([keys.slice_keys[g] for g in cur], type=pa.string()),
        "slice_value": pa.array([keys.slice_values[g] for g in cur], type=pa.string()),
        "column_name": _const(TABLE if column is None else column.name, n, pa.string()),
        "data_type": _const(None if column is None else column.data_type, n, pa.string()),
        "model_id": pa.array([keys.model_ids[g] for g in cur], type=pa.string()),
        "count_delta": pa.array(profile.rows[cur] - base_profile.rows[base], type=pa.int64()),
    }
    if column is None:
        names = [c.name for c in columns if c.name in base_profile.metrics]
        cur_nn = np.array([profile.metrics[c]["non_null"][cur] > 0 for c in names]).reshape(len(names), n)
        base_nn = np.array([base_profile.metrics[c]["non_null"][base] > 0 for c in names]).reshape(
            len(names), n
        )
        data["non_null_columns_delta"] = pa.StructArray.from_arrays(
            [
                pa.array((cur_nn & ~base_nn).sum(axis=0), type=pa.int32()),
                pa.array((base_nn & ~cur_nn).sum(axis=0), type=pa.int32()),
            ],
            names=["added", "missing"],
        )
    else:
        m, bm = profile.metrics[column.name], base_profile.metrics[column.name]
        data["avg_delta"] = _f(m["avg"][cur] - bm["avg"][base])
        for pct in ("percent_null", "percent_zeros", "percent_distinct"):
            data[f"{pct}_delta"] = _f(m[pct][cur] - bm[pct][base])
        if column.kind == "numeric":
            data.update(_numeric_stats(profile, base_profile, column.name, cur, base, ks_exact_max_product))
        elif column.kind == "categorical":
            data.update(_categorical_stats(profile, base_profile, column.name, cur, base))
    arrays = [data[f.name] if f.name in data else pa.nulls(n, type=f.type) for f in DRIFT_SCHEMA]
    return pa.Table.from_arrays(arrays, schema=DRIFT_SCHEMA)


def _tests(stat: Floats, pvalue: Floats) -> pa.Array:
    mask = np.isnan(stat)
    return pa.StructArray.from_arrays(
        [pa.array(stat, type=pa.float64()), pa.array(pvalue, type=pa.float64())],
        fields=list(TEST_TYPE),
        mask=pa.array(mask),
    )


def _numeric_stats(
    profile: GroupProfile,
    base_profile: GroupProfile,
    name: str,
    cur: Ints,
    base: Ints,
    exact_max_product: int,
) -> dict[str, pa.Array]:
    seg, base_seg = profile.numeric[name], base_profile.numeric[name]
    out = np.full((5, cur.size), np.nan)
    prepared: dict[int, BaseSample] = {}
    for i, (g, h) in enumerate(zip(cur.tolist(), base.tolist(), strict=True)):
        u, v = seg.get(g), base_seg.get(h)
        if u.size and v.size:
            if h not in prepared:
                prepared[h] = BaseSample.of(v)
            d = numeric_drift(u, prepared[h], exact_max_product=exact_max_product)
            out[:, i] = (d.ks_statistic, d.ks_pvalue, d.wasserstein, d.psi, d.js_distance)
    return {
        "ks_test": _tests(out[0], out[1]),
        "wasserstein_distance": _f(out[2]),
        "population_stability_index": _f(out[3]),
        "js_distance": _f(out[4]),
    }


def _categorical_stats(
    profile: GroupProfile, base_profile: GroupProfile, name: str, cur: Ints, base: Ints
) -> dict[str, pa.Array]:
    cats, base_cats = profile.categorical[name], base_profile.categorical[name]
    out = np.full((6, cur.size), np.nan)
    for i, (g, h) in enumerate(zip(cur.tolist(), base.tolist(), strict=True)):
        values, counts = cats.get(g)
        base_values, base_counts = base_cats.get(h)
        if not (values.size and base_values.size):
            continue
        vocab, codes = np.unique(np.concatenate((values, base_values)), return_inverse=True)
        k = vocab.size
        current = np.bincount(codes[: values.size], weights=counts, minlength=k)
        reference = np.bincount(codes[values.size :], weights=base_counts, minlength=k)
        d = categorical_drift(current, reference)
        out[:, i] = (d.chi2_statistic, d.chi2_pvalue, d.tv_distance, d.l_infinity, d.js_distance, d.psi)
    return {
        "chi_squared_test": _tests(out[0], out[1]),
        "tv_distance": _f(out[2]),
        "l_infinity_distance": _f(out[3]),
        "js_distance": _f(out[4]),
        "population_stability_index": _f(out[5]),
    }


def copy_for_model(profile: pa.Table, drift: pa.Table, model: str) -> tuple[pa.Table, pa.Table]:
    """Append a copy of the all-models INPUT rows (and their drift rows) under ``model``'s id."""
    inputs = profile.filter(pc.equal(profile.column("log_type"), "INPUT"))
    offset = profile.num_rows
    copies = inputs.set_column(
        inputs.schema.get_field_index("model_id"),
        "model_id",
        pa.array([model] * inputs.num_rows, pa.string()),
    )
    # Rows keep their relative order, so a copied row's index is found from the original's.
    new_index = np.full(offset, -1, dtype=np.int64)
    new_index[inputs.column("__mp_row").to_numpy()] = np.arange(offset, offset + inputs.num_rows)
    copies = copies.set_column(
        copies.schema.get_field_index("__mp_row"),
        "__mp_row",
        pa.array(np.arange(offset, offset + inputs.num_rows)),
    )
    drift_copies = drift.set_column(
        drift.schema.get_field_index("model_id"), "model_id", pa.array([model] * drift.num_rows, pa.string())
    )
    cur_rows = drift.column("__mp_cur_row").to_numpy()
    drift_copies = drift_copies.set_column(
        drift_copies.schema.get_field_index("__mp_cur_row"), "__mp_cur_row", pa.array(new_index[cur_rows])
    )
    cmp_rows = drift.column("__mp_cmp_row").to_numpy()
    is_input = new_index[cmp_rows] >= 0
    drift_copies = drift_copies.set_column(
        drift_copies.schema.get_field_index("__mp_cmp_row"),
        "__mp_cmp_row",
        pa.array(np.where(is_input, new_index[cmp_rows], cmp_rows)),
    )
    return pa.concat_tables([profile, copies]), pa.concat_tables([drift, drift_copies])
