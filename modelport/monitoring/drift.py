"""Distribution-drift statistics between two samples of one column (pure numpy/scipy).

Numeric columns (values sorted, NULL and NaN left out):

- ``ks_test``: the two-sample Kolmogorov-Smirnov statistic and two-sided p-value of
  ``scipy.stats.ks_2samp``. The p-value is scipy's ``method="exact"`` when both samples hold at most
  10,000 values (scipy's own limit for its default ``"auto"``) and either n1 = n2 or
  n1*n2 <= ``exact_max_product`` (default 1,000,000), else ``method="asymp"`` (Smirnov's
  distribution, ``kstwo.sf(D, round(n1*n2/(n1+n2)))``): scipy's exact method for unequal sizes costs
  O(n1*n2) (about 10 ms for two samples of 6,000). With ``exact_max_product=10**8`` the p-values are
  those of ``ks_2samp``'s default.
- ``wasserstein_distance``: ``scipy.stats.wasserstein_distance`` (first Wasserstein distance between
  the two empirical distributions).
- ``population_stability_index``: over 10 quantile bins of the comparison sample (edges = its
  deciles k/10 by ``np.quantile``, linear interpolation, duplicates dropped; open-ended outer bins;
  a value equal to an edge falls in the bin above it), sum of (p_i - q_i) * ln(p_i / q_i), an empty
  bin's share replaced by 1e-4.
- ``js_distance``: ``scipy.spatial.distance.jensenshannon(p, q, base=2)`` on the same bins' counts
  (0 = same distribution, 1 = disjoint).

Categorical columns (counts per category over the union of both samples' categories):

- ``chi_squared_test``: ``scipy.stats.chi2_contingency`` on the 2xk table of counts (Yates'
  correction when k = 2, as scipy does by default); statistic 0 and p-value 1 when k = 1.
- ``tv_distance``: ½ Σ |pᵢ - qᵢ|; ``l_infinity_distance``: max |pᵢ - qᵢ|.
- ``js_distance``: as above (base 2); ``population_stability_index``: as above (1e-4 for empty).

``current`` is the window being checked, ``base`` the window or baseline it is compared with.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import special, stats

__all__ = [
    "KS_EXACT_MAX_PRODUCT",
    "KS_EXACT_MAX_SIDE",
    "PSI_BINS",
    "PSI_EMPTY_SHARE",
    "BaseSample",
    "CategoricalDrift",
    "NumericDrift",
    "categorical_drift",
    "jensen_shannon",
    "ks_exact",
    "numeric_drift",
    "psi",
    "psi_edges",
]

KS_EXACT_MAX_PRODUCT = 1_000_000
#: scipy's ``ks_2samp(method="auto")`` is exact up to this many values per sample.
KS_EXACT_MAX_SIDE = 10_000
PSI_BINS = 10
PSI_EMPTY_SHARE = 1e-4

Floats = NDArray[np.float64]


@dataclass(frozen=True)
class NumericDrift:
    ks_statistic: float
    ks_pvalue: float
    wasserstein: float
    psi: float
    js_distance: float


@dataclass(frozen=True)
class CategoricalDrift:
    chi2_statistic: float
    chi2_pvalue: float
    tv_distance: float
    l_infinity: float
    js_distance: float
    psi: float


def psi_edges(base_sorted: Floats) -> Floats:
    """The inner bin edges PSI and numeric JS use: the base sample's deciles, without duplicates."""
    return np.unique(np.quantile(base_sorted, np.arange(1, PSI_BINS) / PSI_BINS))


def _bin_counts(sorted_values: Floats, edges: Floats) -> Floats:
    cuts = np.searchsorted(sorted_values, edges, side="left")
    return np.diff(np.concatenate(([0], cuts, [sorted_values.size]))).astype(np.float64)


def psi(current_counts: Floats, base_counts: Floats) -> float:
    """Population stability index of two count vectors over the same bins."""
    p = current_counts / current_counts.sum()
    q = base_counts / base_counts.sum()
    p = np.where(p == 0, PSI_EMPTY_SHARE, p)
    q = np.where(q == 0, PSI_EMPTY_SHARE, q)
    return float(np.sum((p - q) * np.log(p / q)))


def jensen_shannon(current_counts: Floats, base_counts: Floats) -> float:
    """Jensen-Shannon distance (base 2) of two count vectors, as scipy's ``jensenshannon``."""
    p = current_counts / current_counts.sum()
    q = base_counts / base_counts.sum()
    m = (p + q) / 2.0
    js = (special.rel_entr(p, m).sum() + special.rel_entr(q, m).sum()) / np.log(2.0)
    return float(np.sqrt(max(js, 0.0) / 2.0))


@dataclass(frozen=True)
class BaseSample:
    """A comparison sample prepared once for many comparisons: its sorted values and PSI edges."""

    values: Floats
    edges: Floats

    @classmethod
    def of(cls, sorted_values: Floats) -> BaseSample:
        return cls(sorted_values, psi_edges(sorted_values))


try:  # ks_2samp's own exact step, without its ~2 ms of argument handling per call
    from scipy.stats._stats_py import _attempt_exact_2kssamp
except ImportError:  # pragma: no cover - a scipy that moved it: the public function below
    _attempt_exact_2kssamp = None


def _exact_pvalue(current: Floats, base: Floats, statistic: float) -> float | None:
    """``ks_2samp(current, base, method="exact").pvalue``, or None where scipy's exact step gives
    up (``ks_2samp`` then warns and uses ``method="asymp"``, as the caller does, without the warning)."""
    n, m = current.size, base.size
    if _attempt_exact_2kssamp is not None:
        ok, _, prob = _attempt_exact_2kssamp(n, m, math.gcd(n, m), statistic, "two-sided")
        return float(np.clip(prob, 0.0, 1.0)) if ok else None
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        try:
            return float(stats.ks_2samp(current, base, method="exact").pvalue)
        except RuntimeWarning:  # "Exact calculation unsuccessful"
            return None


def ks_exact(n: int, m: int, exact_max_product: int = KS_EXACT_MAX_PRODUCT) -> bool:
    """Whether the KS p-value of samples of n and m values uses scipy's exact method."""
    return max(n, m) <= KS_EXACT_MAX_SIDE and (n == m or n * m <= exact_max_product)


def numeric_drift(
    current: Floats, base: Floats | BaseSample, *, exact_max_product: int = KS_EXACT_MAX_PRODUCT
) -> NumericDrift:
    """Drift statistics of two non-empty sorted float samples (no NaN).

    Both CDFs are evaluated on the merged values, as scipy does, but the merge is one stable
    argsort of two sorted runs (linear) rather than a sort plus two binary searches.
    """
    prepared = base if isinstance(base, BaseSample) else BaseSample.of(base)
    v = prepared.values
    n, m = current.size, v.size
    values = np.concatenate((current, v))
    order = np.argsort(values, kind="stable")
    merged = values[order]
    below_cur = np.cumsum(order < n)
    below_base = np.arange(1, n + m + 1) - below_cur
    # CDFs count every value equal to the point (side="right"): only the last of a run of equal
    # values has the full count; elsewhere the gap is multiplied by a zero-width step.
    last = np.ones(n + m, dtype=bool)
    last[:-1] = merged[1:] != merged[:-1]
    gaps = below_cur / n - below_base / m
    ks = float(np.max(np.abs(gaps[last])))
    # (not np.dot: a BLAS call may spin up threads for one small product)
    wasserstein = float(np.sum(np.abs(gaps[:-1]) * np.diff(merged)))
    pvalue = _exact_pvalue(current, v, ks) if ks_exact(n, m, exact_max_product) else None
    if pvalue is None:
        big, small = max(n, m), min(n, m)
        en = big * small / (big + small)
        pvalue = float(np.clip(stats.kstwo.sf(ks, np.round(en)), 0.0, 1.0))
    cur_bins, base_bins = _bin_counts(current, prepared.edges), _bin_counts(v, prepared.edges)
    return NumericDrift(
        ks, pvalue, wasserstein, psi(cur_bins, base_bins), jensen_shannon(cur_bins, base_bins)
    )


def categorical_drift(current_counts: Floats, base_counts: Floats) -> CategoricalDrift:
    """Drift statistics of two count vectors over the same categories (each category seen in one)."""
    p = current_counts / current_counts.sum()
    q = base_counts / base_counts.sum()
    diff = np.abs(p - q)
    table = np.vstack((current_counts, base_counts))
    k = table.shape[1]
    if k < 2:
        chi2, pvalue = 0.0, 1.0
    else:
        expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0, keepdims=True) / table.sum()
        observed = table
        dof = k - 1
        if dof == 1:
            delta = expected - observed
            observed = observed + np.minimum(0.5, np.abs(delta)) * np.sign(delta)
        chi2 = float(np.sum((observed - expected) ** 2 / expected))
        pvalue = float(stats.chi2.sf(chi2, dof))
    return CategoricalDrift(
        chi2,
        pvalue,
        float(0.5 * diff.sum()),
        float(diff.max()),
        jensen_shannon(current_counts, base_counts),
        psi(current_counts, base_counts),
    )
