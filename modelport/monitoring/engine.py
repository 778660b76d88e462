"""The monitoring engine: profile and drift metrics of a DuckDB relation, as Databricks computes them.

``compute`` reads the source once into a temporary table, then per granularity builds an
"expanded" table holding each row once per group it belongs to (the whole table, each model id,
each slice, each slice x model id) tagged with the group's id, profiles every column per group in
one ``GROUP BY`` (:mod:`~modelport.monitoring.profile`), computes model quality
(:mod:`~modelport.monitoring.quality`) and compares each window with its previous window
(CONSECUTIVE) and with the baseline (BASELINE) (:mod:`~modelport.monitoring.drift`).

Groups: the whole table is ``slice_key``/``slice_value`` NULL and ``model_id`` NULL (all models);
with ``model_id_col`` each model id gets its own rows too, also within each slice.
Temporary tables are named ``__mp_*`` and dropped before returning.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import duckdb
import numpy as np
import pyarrow as pa

from modelport.errors import InvalidParameterValue
from modelport.monitoring import custom_metrics
from modelport.monitoring.drift import KS_EXACT_MAX_PRODUCT
from modelport.monitoring.granularity import Granularity, canonical_granularity, granularity
from modelport.monitoring.plan import (
    CLASSIFICATION,
    REGRESSION,
    CustomMetric,
    Plan,
    ProfileSpec,
    Window,
    make_plan,
)
from modelport.monitoring.profile import ColumnInfo, GroupProfile, profile_groups
from modelport.monitoring.quality import classification_quality, regression_quality
from modelport.monitoring.rows import GroupKeys, Pairs, copy_for_model, drift_piece, profile_piece
from modelport.monitoring.schemas import DRIFT_SCHEMA, PROFILE_SCHEMA
from modelport.monitoring.slicing import evaluable
from modelport.monitoring.sqltext import describe, ident, literal

__all__ = [
    "DRIFT_SCHEMA",
    "PROFILE_SCHEMA",
    "CustomMetric",
    "ProfileSpec",
    "Window",
    "canonical_granularity",
    "compute",
    "windows_touched",
]

# --------------------------------------------------------------------------------------------------
# Materialising the rows and their groups.


def _derived_columns(
    plan: Plan, rel_types: dict[str, str], con: duckdb.DuckDBPyConnection, rel: str
) -> list[str]:
    spec = plan.spec
    out = []
    if spec.model_id_col is not None and spec.model_id_col in rel_types:
        out.append(f"CAST({ident(spec.model_id_col)} AS VARCHAR) AS __mp_mid")
    else:
        out.append("NULL::VARCHAR AS __mp_mid")
    label, pred = spec.label_col, spec.prediction_col
    has_labels = label is not None and pred is not None and label in rel_types and pred in rel_types
    if plan.problem_type == CLASSIFICATION and has_labels:
        classes = "[" + ", ".join(literal(c) for c in plan.classes) + "]::VARCHAR[]"
        for name, alias in ((label, "__mp_lc"), (pred, "__mp_pc")):
            text = f"CAST(CAST({ident(name)} AS {plan.class_type}) AS VARCHAR)"  # type: ignore[arg-type]
            out.append(f"nullif(list_position({classes}, {text}), 0) - 1 AS {alias}")
        if spec.prediction_proba_col is not None and spec.prediction_proba_col in rel_types:
            out.append(f"{ident(spec.prediction_proba_col)} AS __mp_proba")
    elif plan.problem_type == REGRESSION and has_labels:
        out.append(f"CAST({ident(label)} AS DOUBLE) AS __mp_label")  # type: ignore[arg-type]
        out.append(f"CAST({ident(pred)} AS DOUBLE) AS __mp_pred")  # type: ignore[arg-type]
    for i, s in enumerate(plan.slices):
        value = s.value_sql if rel_types is plan.source_types or evaluable(con, rel, s.value_sql) else "NULL"
        out.append(f"{value}::VARCHAR AS __mp_s{i}")
    return out


def _slice_parts(
    plan: Plan,
    rel_types: dict[str, str],
    con: duckdb.DuckDBPyConnection,
    rel: str,
    *,
    per_model: bool = True,
) -> list[tuple[int, str, str, bool]]:
    """(part id, slice key SQL, slice value SQL, per model) for each group family."""
    per_model = per_model and plan.spec.model_id_col is not None and plan.spec.model_id_col in rel_types
    parts = [(0, "NULL::VARCHAR", "NULL::VARCHAR", False)]
    if per_model:
        parts.append((1, "NULL::VARCHAR", "NULL::VARCHAR", True))
    for i, s in enumerate(plan.slices):
        if rel_types is not plan.source_types and not evaluable(con, rel, s.value_sql):
            continue
        parts.append((2 + 2 * i, literal(s.key), f"__mp_s{i}", False))
        if per_model:
            parts.append((3 + 2 * i, literal(s.key), f"__mp_s{i}", True))
    return parts


def _expand(
    con: duckdb.DuckDBPyConnection,
    src: str,
    out: str,
    window_sql: str,
    parts: list[tuple[int, str, str, bool]],
    where: str,
) -> pa.Table:
    """Build ``out``: ``src`` rows once per group they belong to, with ``__mp_gid``; returns the groups."""
    selects = []
    for part, key_sql, value_sql, per_model in parts:
        conds = [where] if where else []
        if value_sql != "NULL::VARCHAR":
            conds.append(f"{value_sql} IS NOT NULL")
        if per_model:
            conds.append("__mp_mid IS NOT NULL")
        model_sql = "__mp_mid" if per_model else "NULL::VARCHAR"
        cond = f" WHERE {' AND '.join(conds)}" if conds else ""
        selects.append(
            f"SELECT {window_sql} AS __mp_w, {part} AS __mp_part, {key_sql} AS __mp_sk, "
            f"{value_sql} AS __mp_sv, {model_sql} AS __mp_m, * FROM {src}{cond}"
        )
    con.execute(f"CREATE OR REPLACE TEMP TABLE __mp_e AS {' UNION ALL '.join(selects)}")
    con.execute(
        "CREATE OR REPLACE TEMP TABLE __mp_groups AS SELECT (row_number() OVER (ORDER BY __mp_w, __mp_part, "
        "__mp_sv, __mp_m) - 1)::BIGINT AS __mp_gid, * FROM (SELECT __mp_w, __mp_part, any_value(__mp_sk) AS "
        "__mp_sk, __mp_sv, __mp_m FROM __mp_e GROUP BY __mp_w, __mp_part, __mp_sv, __mp_m)"
    )
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {out} AS SELECT g.__mp_gid, e.* FROM __mp_e e JOIN __mp_groups g "
        "ON e.__mp_w IS NOT DISTINCT FROM g.__mp_w AND e.__mp_part = g.__mp_part "
        "AND coalesce(e.__mp_sv, '') = coalesce(g.__mp_sv, '') "
        "AND coalesce(e.__mp_m, '') = coalesce(g.__mp_m, '')"
    )
    con.execute("DROP TABLE __mp_e")
    return con.sql("SELECT * FROM __mp_groups ORDER BY __mp_gid").to_arrow_table()


def _keys(groups: pa.Table, gran: Granularity | None, snapshot: bool = False) -> GroupKeys:
    starts = [None if s is None else s.replace(tzinfo=UTC) for s in groups.column("__mp_w").to_pylist()]
    if snapshot or gran is None:
        ends = list(starts)
    else:
        ends = [None if s is None else gran.end_of(s) for s in starts]
    return GroupKeys(
        starts,
        ends,
        np.asarray(groups.column("__mp_part").to_numpy(), dtype=np.int64),
        groups.column("__mp_sk").to_pylist(),
        groups.column("__mp_sv").to_pylist(),
        groups.column("__mp_m").to_pylist(),
    )


@dataclass
class _Profiled:
    keys: GroupKeys
    profile: GroupProfile
    quality: dict[str, pa.Array]
    columns: list[ColumnInfo]


def _profile(
    con: duckdb.DuckDBPyConnection,
    plan: Plan,
    table: str,
    groups: pa.Table,
    keys: GroupKeys,
    columns: list[ColumnInfo],
    rel_types: dict[str, str],
) -> _Profiled:
    n = groups.num_rows
    aggregates = {
        (m.name, col): sql
        for m in plan.metrics
        if m.type == custom_metrics.AGGREGATE
        for col, sql in m.sql_by_column.items()
        if col == custom_metrics.TABLE or col in rel_types
    }
    try:
        profile = profile_groups(con, table, n, columns, aggregates)
    except duckdb.Error as exc:
        raise InvalidParameterValue(f"A custom metric could not be computed: {exc}") from exc
    x_types = describe(con, table)
    quality: dict[str, pa.Array] = {}
    if plan.problem_type == CLASSIFICATION and "__mp_lc" in x_types:
        quality = classification_quality(con, table, n, plan.classes, "__mp_proba" in x_types).arrays
    elif plan.problem_type == REGRESSION and "__mp_label" in x_types:
        quality = regression_quality(con, table, n).arrays
    return _Profiled(keys, profile, quality, columns)


def _profile_table(
    p: _Profiled,
    plan: Plan,
    log_type: str,
    gran: str | None,
    monitor_version: int,
    table_version: int | None,
) -> list[pa.Table]:
    pieces = []
    for column in [None, *p.columns]:
        pieces.append(
            profile_piece(
                p.keys,
                p.profile,
                column,
                columns=p.columns,
                log_type=log_type,
                granularity=gran,
                monitor_version=monitor_version,
                table_version=table_version,
                quality=p.quality if column is None else {},
                custom_fields=plan.custom_fields,
            )
        )
    return pieces


# --------------------------------------------------------------------------------------------------
# Public entry points.


def compute(
    con: duckdb.DuckDBPyConnection,
    source: str,
    spec: ProfileSpec,
    *,
    baseline: str | None = None,
    windows: Sequence[Window] | None = None,
    monitor_version: int = 1,
    table_version: int | None = None,
    snapshot_time: datetime | None = None,
    ks_exact_max_product: int = KS_EXACT_MAX_PRODUCT,
) -> tuple[pa.Table, pa.Table]:
    """Profile and drift rows of ``source`` (a view or table on ``con``) for ``spec``.

    ``windows``: None computes every window present in ``source``; otherwise only these windows'
    rows are returned (their CONSECUTIVE drift still compares with the previous window, read from
    ``source``). BASELINE profile rows (window NULL) are returned on every call.
    ``snapshot_time``: the window of a Snapshot profile (default now). ``ks_exact_max_product``: see
    :mod:`~modelport.monitoring.drift` (when the KS p-value is scipy's exact one).
    Raises InvalidParameterValue when the spec does not fit the source.
    """
    plan = make_plan(con, source, spec, baseline)
    try:
        return _compute(
            con,
            source,
            plan,
            baseline,
            windows,
            monitor_version,
            table_version,
            snapshot_time,
            ks_exact_max_product,
        )
    finally:
        for table in ("__mp_src", "__mp_base", "__mp_x", "__mp_bx", "__mp_e", "__mp_groups"):
            con.execute(f"DROP TABLE IF EXISTS {table}")


def _compute(
    con: duckdb.DuckDBPyConnection,
    source: str,
    plan: Plan,
    baseline: str | None,
    windows: Sequence[Window] | None,
    monitor_version: int,
    table_version: int | None,
    snapshot_time: datetime | None,
    ks_exact_max_product: int,
) -> tuple[pa.Table, pa.Table]:
    snapshot = plan.profile_type == "Snapshot"
    requested: dict[str, set[datetime]] | None = None
    if windows is not None and not snapshot:
        requested = {}
        for w in windows:
            g = granularity(w.granularity)
            requested.setdefault(g.name, set()).add(g.start_of(w.start))
    src_where = ""
    if snapshot:
        pass
    elif requested is not None:
        ranges = []
        for g in plan.granularities:
            for start in requested.get(g.name, ()):
                lo, hi = g.shift(start, -1), g.end_of(start)
                ranges.append(f"(__mp_ts >= {_ts_literal(lo)} AND __mp_ts < {_ts_literal(hi)})")
        src_where = " OR ".join(ranges) if ranges else "false"
    else:
        src_where = "__mp_ts IS NOT NULL"
    ts_select = f"{plan.ts_sql} AS __mp_ts, " if plan.ts_sql else ""
    derived = ", ".join(_derived_columns(plan, plan.source_types, con, source))
    inner = f"SELECT {plan.kept_columns(plan.source_types)}, {ts_select}{derived} FROM {source} s"
    where = f" WHERE {src_where}" if src_where else ""
    con.execute(f"CREATE OR REPLACE TEMP TABLE __mp_src AS SELECT * FROM ({inner}){where}")
    _check_custom_sql(con, plan)

    profile_pieces: list[pa.Table] = []
    drift_pieces: list[pa.Table] = []
    drift_refs: list[tuple[int, int]] = []  # per drift piece: (current piece start, compared piece start)
    piece_rows = 0

    def add_profile(p: _Profiled, log_type: str, gran: str | None, emit: np.ndarray | None) -> dict[str, int]:
        nonlocal piece_rows
        starts = {}
        for column, piece in zip(
            [None, *p.columns],
            _profile_table(p, plan, log_type, gran, monitor_version, table_version),
            strict=True,
        ):
            key = ":table" if column is None else column.name
            starts[key] = piece_rows
            n = piece.num_rows
            emit_arr = np.ones(n, dtype=bool) if emit is None else emit
            piece = piece.append_column(
                "__mp_row", pa.array(np.arange(piece_rows, piece_rows + n), pa.int64())
            )
            piece = piece.append_column("__mp_emit", pa.array(emit_arr))
            profile_pieces.append(piece)
            piece_rows += n
        return starts

    base: _Profiled | None = None
    base_starts: dict[str, int] = {}
    if baseline is not None:
        base_types = describe(con, baseline)
        base_derived = ", ".join(_derived_columns(plan, base_types, con, baseline))
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE __mp_base AS "
            f"SELECT {plan.kept_columns(base_types)}, {base_derived} FROM {baseline} s"
        )
        base_groups = _expand(
            con, "__mp_base", "__mp_bx", "NULL::TIMESTAMP", _slice_parts(plan, base_types, con, baseline), ""
        )
        base_columns = [c for c in plan.columns if c.name in base_types]
        base = _profile(con, plan, "__mp_bx", base_groups, _keys(base_groups, None), base_columns, base_types)
        base_starts = add_profile(base, "BASELINE", None, None)

    passes: list[tuple[Granularity | None, str]] = []
    if snapshot:
        at = (snapshot_time or datetime.now(UTC)).astimezone(UTC).replace(tzinfo=None)
        passes.append((None, f"TIMESTAMP '{at.isoformat(sep=' ')}'"))
    else:
        for g in plan.granularities:
            if requested is not None and g.name not in requested:
                continue
            passes.append((g, g.bucket_sql("__mp_ts")))

    # With one model id everywhere, its rows equal the all-models rows: computed once, copied at the end.
    single_model = _single_model(con, plan, baseline)
    parts = _slice_parts(plan, plan.source_types, con, source, per_model=single_model is None)
    for g, window_sql in passes:
        where = ""
        if g is not None and requested is not None:
            loaded = {s for start in requested[g.name] for s in (start, g.shift(start, -1))}
            where = f"{window_sql} IN ({', '.join(_ts_literal(s) for s in sorted(loaded))})"
        groups = _expand(con, "__mp_src", "__mp_x", window_sql, parts, where)
        if groups.num_rows == 0:
            continue
        keys = _keys(groups, g, snapshot)
        current = _profile(con, plan, "__mp_x", groups, keys, plan.columns, plan.source_types)
        emit = np.ones(len(keys), dtype=bool)
        if g is not None and requested is not None:
            emit = np.array([s in requested[g.name] for s in keys.starts])
        gran_name = None if g is None else g.name
        starts = add_profile(current, "INPUT", gran_name, emit)

        index = {
            (s, int(p), v, m): i
            for i, (s, p, v, m) in enumerate(
                zip(keys.starts, keys.parts, keys.slice_values, keys.model_ids, strict=True)
            )
        }
        pair_sets: list[tuple[Pairs, _Profiled, dict[str, int]]] = []
        emitted = np.flatnonzero(emit)
        if g is not None:
            cur_idx, prev_idx = [], []
            for i in emitted.tolist():
                j = index.get(
                    (g.shift(keys.starts[i], -1), int(keys.parts[i]), keys.slice_values[i], keys.model_ids[i])
                )  # type: ignore[arg-type]
                if j is not None:
                    cur_idx.append(i)
                    prev_idx.append(j)
            pair_sets.append(
                (
                    Pairs(
                        np.array(cur_idx, dtype=np.int64), np.array(prev_idx, dtype=np.int64), "CONSECUTIVE"
                    ),
                    current,
                    starts,
                )
            )
        if base is not None:
            base_index = {
                (int(p), v, m): i
                for i, (p, v, m) in enumerate(
                    zip(base.keys.parts, base.keys.slice_values, base.keys.model_ids, strict=True)
                )
            }
            # A baseline without the model id column stands for every model.
            all_models = not (base.keys.parts % 2 == 1).any()
            cur_idx, base_idx = [], []
            for i in emitted.tolist():
                part = int(keys.parts[i])
                if all_models and part % 2 == 1:
                    j = base_index.get((part - 1, keys.slice_values[i], None))
                else:
                    j = base_index.get((part, keys.slice_values[i], keys.model_ids[i]))
                if j is not None:
                    cur_idx.append(i)
                    base_idx.append(j)
            pair_sets.append(
                (
                    Pairs(np.array(cur_idx, dtype=np.int64), np.array(base_idx, dtype=np.int64), "BASELINE"),
                    base,
                    base_starts,
                )
            )
        for pairs, cmp, cmp_starts in pair_sets:
            if pairs.current.size == 0:
                continue
            for column in [None, *plan.columns]:
                name = ":table" if column is None else column.name
                if column is not None and column.name not in cmp.profile.metrics:
                    continue
                piece = drift_piece(
                    keys,
                    current.profile,
                    cmp.keys,
                    cmp.profile,
                    pairs,
                    column,
                    columns=plan.columns,
                    granularity=gran_name,
                    monitor_version=monitor_version,
                    ks_exact_max_product=ks_exact_max_product,
                )
                piece = piece.append_column(
                    "__mp_cur_row", pa.array(starts[name] + pairs.current, pa.int64())
                )
                piece = piece.append_column(
                    "__mp_cmp_row", pa.array(cmp_starts[name] + pairs.base, pa.int64())
                )
                drift_pieces.append(piece)
                drift_refs.append((starts[name], cmp_starts[name]))

    profile_fields = [
        *PROFILE_SCHEMA,
        *plan.custom_fields,
        pa.field("__mp_row", pa.int64()),
        pa.field("__mp_emit", pa.bool_()),
    ]
    profile = pa.concat_tables(profile_pieces) if profile_pieces else pa.schema(profile_fields).empty_table()
    drift_fields = [*DRIFT_SCHEMA, pa.field("__mp_cur_row", pa.int64()), pa.field("__mp_cmp_row", pa.int64())]
    drift = pa.concat_tables(drift_pieces) if drift_pieces else pa.schema(drift_fields).empty_table()
    if single_model is not None:
        profile, drift = copy_for_model(profile, drift, single_model)
    profile = custom_metrics.apply_derived(con, plan.metrics, profile)
    drift = custom_metrics.apply_drift(con, plan.metrics, profile, drift)
    profile = profile.filter(profile.column("__mp_emit")).drop_columns(["__mp_row", "__mp_emit"])
    drift = drift.drop_columns(["__mp_cur_row", "__mp_cmp_row"])
    return profile, drift


def _single_model(con: duckdb.DuckDBPyConnection, plan: Plan, baseline: str | None) -> str | None:
    """The model id when every source row (and every baseline row that has one) has the same one."""
    if plan.spec.model_id_col is None:
        return None
    ids, nulls = con.execute(
        "SELECT count(DISTINCT __mp_mid), count(*) FILTER (WHERE __mp_mid IS NULL) FROM __mp_src"
    ).fetchone()  # type: ignore[misc]
    if ids != 1 or nulls:
        return None
    model = str(con.execute("SELECT any_value(__mp_mid) FROM __mp_src").fetchone()[0])  # type: ignore[index]
    if baseline is not None and plan.spec.model_id_col in describe(con, baseline):
        others = con.execute(
            f"SELECT count(*) FROM {baseline} WHERE CAST({ident(plan.spec.model_id_col)} AS VARCHAR) "
            f"IS DISTINCT FROM {literal(model)}"
        ).fetchone()[0]  # type: ignore[index]
        if others:
            return None
    return model


def _ts_literal(ts: datetime) -> str:
    naive = ts.astimezone(UTC).replace(tzinfo=None) if ts.tzinfo else ts
    return f"TIMESTAMP '{naive.isoformat(sep=' ')}'"


def _check_custom_sql(con: duckdb.DuckDBPyConnection, plan: Plan) -> None:
    for m in plan.metrics:
        if m.type != custom_metrics.AGGREGATE:
            continue
        for col, sql in m.sql_by_column.items():
            if col != custom_metrics.TABLE and col not in plan.source_types:
                raise InvalidParameterValue(f"Custom metric {m.name!r}: {col!r} is not a column of the table")
            try:
                con.execute(f"SELECT {sql} FROM __mp_src WHERE false").fetchall()
            except duckdb.Error as exc:
                raise InvalidParameterValue(f"Custom metric {m.name!r} is not valid SQL here: {exc}") from exc


def windows_touched(
    con: duckdb.DuckDBPyConnection, source: str, spec: ProfileSpec, since_expr: str
) -> list[Window]:
    """The windows (every granularity) holding rows that match ``since_expr``, plus each one's next
    window when that one holds rows (its CONSECUTIVE drift compares with the touched window).

    Snapshot monitors have no windows: [] (refresh them in full).
    """
    plan = make_plan(con, source, spec, None)
    if plan.ts_sql is None:
        return []
    out: list[Window] = []
    for g in plan.granularities:
        bucket = g.bucket_sql(plan.ts_sql)
        try:
            touched = {
                r[0].replace(tzinfo=UTC)
                for r in con.execute(
                    f"SELECT DISTINCT {bucket} FROM {source} "
                    f"WHERE ({since_expr}) AND {plan.ts_sql} IS NOT NULL"
                ).fetchall()
            }
        except duckdb.Error as exc:
            raise InvalidParameterValue(f"Cannot select the changed rows with {since_expr!r}: {exc}") from exc
        following = {g.shift(s, 1) for s in touched} - touched
        if following:
            listed = ", ".join(_ts_literal(s) for s in sorted(following))
            rows = con.execute(
                f"SELECT DISTINCT {bucket} FROM {source} WHERE {bucket} IN ({listed})"
            ).fetchall()
            touched |= {r[0].replace(tzinfo=UTC) for r in rows}
        out.extend(Window(s, g.end_of(s), g.name) for s in sorted(touched))
    return out
