"""Model-quality metrics per group, from the rows that have both a label and a prediction.

Regression (one DuckDB aggregate): ``mean_squared_error``, ``root_mean_squared_error``,
``mean_absolute_error``, ``mean_absolute_percentage_error`` (as scikit-learn: a fraction, each term
|y - ŷ| / max(|y|, float64 eps)) and ``r2_score`` (1 - SS_res/SS_tot; 1.0 or 0.0 when SS_tot = 0,
as scikit-learn's ``force_finite``).

Classification (numpy over one fetch ordered by group): labels and predictions are compared as text
(both cast to their common type first); classes are ordered by their natural (typed) order.

- ``accuracy_score``; ``confusion_matrix`` (every (label, prediction) pair among the classes seen in
  the group, with its count);
- ``precision``, ``recall``, ``f1_score`` as structs: ``one_vs_all`` (class → score, over the
  classes seen in the group's labels or predictions), ``macro`` (their mean) and ``weighted`` (mean
  weighted by each class's true count) — scikit-learn's ``average=None/"macro"/"weighted"`` with
  ``zero_division=0``;
- with ``prediction_proba_col``: ``log_loss`` (probabilities clipped to [eps, 1 - eps]) and
  ``roc_auc_score``. The column holds either one number, the probability of the positive class (the
  greater of exactly two classes, as scikit-learn), or a list of per-class probabilities in class
  order. ROC AUC of several classes is one-vs-rest, macro-averaged over the classes that occur in
  the group's labels (scikit-learn's ``multi_class="ovr"``); NULL when the labels have one class.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import numpy as np
import pyarrow as pa
from numpy.typing import NDArray
from scipy import stats

from modelport.monitoring.schemas import CONFUSION_MATRIX_TYPE, SCORE_STRUCT_TYPE

__all__ = ["QualityColumns", "classification_quality", "regression_quality"]

_EPS = float(np.finfo(np.float64).eps)


@dataclass
class QualityColumns:
    """Model-quality values per group, as Arrow arrays of the profile schema's types."""

    arrays: dict[str, pa.Array]


def regression_quality(con: duckdb.DuckDBPyConnection, table: str, n_groups: int) -> QualityColumns:
    """Regression metrics of ``table`` (with ``__mp_gid``, ``__mp_label``, ``__mp_pred`` doubles)."""
    result = con.execute(
        f"""
        SELECT __mp_gid,
               avg(pow(__mp_pred - __mp_label, 2)) AS mse,
               avg(abs(__mp_pred - __mp_label)) AS mae,
               avg(abs(__mp_pred - __mp_label) / greatest(abs(__mp_label), {_EPS!r})) AS mape,
               sum(pow(__mp_pred - __mp_label, 2)) AS ss_res,
               var_pop(__mp_label) * count(*) AS ss_tot
        FROM {table}
        WHERE __mp_label IS NOT NULL AND __mp_pred IS NOT NULL
        GROUP BY __mp_gid
        """
    ).fetchnumpy()
    gids = np.asarray(result["__mp_gid"], dtype=np.int64)
    out: dict[str, NDArray[np.float64]] = {}
    for name in ("mse", "mae", "mape", "ss_res", "ss_tot"):
        full = np.full(n_groups, np.nan)
        full[gids] = np.asarray(result[name], dtype=np.float64)
        out[name] = full
    ss_tot, ss_res = out["ss_tot"], out["ss_res"]
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = np.where(
            ss_tot > 0, 1.0 - ss_res / np.where(ss_tot > 0, ss_tot, 1.0), np.where(ss_res == 0, 1.0, 0.0)
        )
    r2[np.isnan(ss_tot)] = np.nan

    def arr(values: NDArray[np.float64]) -> pa.Array:
        return pa.array(values, mask=np.isnan(values), type=pa.float64())

    return QualityColumns(
        {
            "mean_squared_error": arr(out["mse"]),
            "root_mean_squared_error": arr(np.sqrt(out["mse"])),
            "mean_absolute_error": arr(out["mae"]),
            "mean_absolute_percentage_error": arr(out["mape"]),
            "r2_score": arr(r2),
        }
    )


def _scores_struct(
    per_class: list[dict[str, float] | None], macro: list[float], weighted: list[float]
) -> pa.Array:
    return pa.array(
        [
            None if scores is None else {"one_vs_all": list(scores.items()), "macro": ma, "weighted": we}
            for scores, ma, we in zip(per_class, macro, weighted, strict=True)
        ],
        type=SCORE_STRUCT_TYPE,
    )


def _binary_auc(is_positive: NDArray[np.bool_], score: NDArray[np.float64]) -> float | None:
    n_pos = int(is_positive.sum())
    n_neg = is_positive.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = stats.rankdata(score)
    return float((ranks[is_positive].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def classification_quality(
    con: duckdb.DuckDBPyConnection, table: str, n_groups: int, classes: list[str], has_proba: bool
) -> QualityColumns:
    """Classification metrics of ``table`` (``__mp_gid``, class codes ``__mp_lc``/``__mp_pc`` indexing
    ``classes``, and ``__mp_proba`` when ``has_proba``)."""
    proba = ", __mp_proba" if has_proba else ""
    fetched = con.sql(
        f"SELECT __mp_gid, __mp_lc, __mp_pc{proba} FROM {table} "
        "WHERE __mp_lc IS NOT NULL AND __mp_pc IS NOT NULL ORDER BY __mp_gid"
    ).to_arrow_table()
    k = len(classes)
    gids = np.asarray(fetched.column("__mp_gid").to_numpy(), dtype=np.int64)
    labels = np.asarray(fetched.column("__mp_lc").to_numpy(), dtype=np.int64)
    preds = np.asarray(fetched.column("__mp_pc").to_numpy(), dtype=np.int64)
    cm = np.bincount(gids * k * k + labels * k + preds, minlength=n_groups * k * k).reshape(n_groups, k, k)
    offsets = np.searchsorted(gids, np.arange(n_groups + 1))
    prob_matrix = _probabilities(fetched, k) if has_proba else None

    accuracy: list[float | None] = []
    matrices: list[list[dict[str, object]] | None] = []
    precision: list[dict[str, float] | None] = []
    recall: list[dict[str, float] | None] = []
    f1: list[dict[str, float] | None] = []
    means: dict[str, tuple[list[float], list[float]]] = {n: ([], []) for n in ("p", "r", "f")}
    log_loss: list[float | None] = []
    auc: list[float | None] = []
    for g in range(n_groups):
        m = cm[g]
        total = int(m.sum())
        if total == 0:
            accuracy.append(None)
            matrices.append(None)
            for lst in (precision, recall, f1):
                lst.append(None)
            for ma, we in means.values():
                ma.append(float("nan"))
                we.append(float("nan"))
            log_loss.append(None)
            auc.append(None)
            continue
        true_counts, pred_counts, tp = m.sum(axis=1), m.sum(axis=0), np.diag(m)
        seen = np.flatnonzero((true_counts + pred_counts) > 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            p = np.where(pred_counts > 0, tp / np.maximum(pred_counts, 1), 0.0)[seen]
            r = np.where(true_counts > 0, tp / np.maximum(true_counts, 1), 0.0)[seen]
            denom = 2 * tp + (pred_counts - tp) + (true_counts - tp)
            f = np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0)[seen]
        weights = true_counts[seen] / total
        accuracy.append(float(tp.sum() / total))
        matrices.append(
            [
                {"label": classes[i], "prediction": classes[j], "count": int(m[i, j])}
                for i in seen
                for j in seen
            ]
        )
        for lst, key, vals in ((precision, "p", p), (recall, "r", r), (f1, "f", f)):
            lst.append({classes[c]: float(v) for c, v in zip(seen, vals, strict=True)})
            means[key][0].append(float(vals.mean()))
            means[key][1].append(float(np.sum(vals * weights)))
        if prob_matrix is None:
            log_loss.append(None)
            auc.append(None)
            continue
        lo, hi = offsets[g], offsets[g + 1]
        y, probs = labels[lo:hi], prob_matrix[lo:hi]
        valid = ~np.isnan(probs).any(axis=1)
        y, probs = y[valid], probs[valid]
        if y.size == 0:
            log_loss.append(None)
            auc.append(None)
            continue
        clipped = np.clip(probs, _EPS, 1 - _EPS)
        log_loss.append(float(-np.mean(np.log(clipped[np.arange(y.size), y]))))
        if k == 2:
            auc.append(_binary_auc(y == 1, probs[:, 1]))
        else:
            present = [c for c in range(k) if 0 < int((y == c).sum()) < y.size]
            scores = [_binary_auc(y == c, probs[:, c]) for c in present]
            valid_scores = [s for s in scores if s is not None]
            auc.append(float(np.mean(valid_scores)) if len(np.unique(y)) > 1 and valid_scores else None)

    return QualityColumns(
        {
            "accuracy_score": pa.array(accuracy, type=pa.float64()),
            "precision": _scores_struct(precision, *means["p"]),
            "recall": _scores_struct(recall, *means["r"]),
            "f1_score": _scores_struct(f1, *means["f"]),
            "log_loss": pa.array(log_loss, type=pa.float64()),
            "roc_auc_score": pa.array(auc, type=pa.float64()),
            "confusion_matrix": pa.array(matrices, type=CONFUSION_MATRIX_TYPE),
        }
    )


def _probabilities(fetched: pa.Table, k: int) -> NDArray[np.float64]:
    """An (n, k) matrix of class probabilities (NaN rows where missing or malformed)."""
    column = fetched.column("__mp_proba").combine_chunks()
    n = len(column)
    if pa.types.is_list(column.type) or pa.types.is_large_list(column.type):
        lengths = column.value_lengths().fill_null(-1).to_numpy(zero_copy_only=False)
        out = np.full((n, k), np.nan)
        ok = lengths == k
        if ok.any():
            flat = column.filter(pa.array(ok)).flatten().cast(pa.float64()).to_numpy(zero_copy_only=False)
            out[ok] = np.asarray(flat, dtype=np.float64).reshape(-1, k)
        return out
    positive = np.asarray(column.cast(pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)
    if k != 2:
        return np.full((n, k), np.nan)
    return np.column_stack((1.0 - positive, positive))
