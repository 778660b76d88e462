"""Each drift statistic against scipy's reference implementation on the same samples (to 1e-6)."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.typing import NDArray
from scipy import special, stats
from scipy.spatial.distance import jensenshannon

from modelport.monitoring.drift import categorical_drift, ks_exact, numeric_drift

TOL = 1e-6


def psi_oracle(current: NDArray[np.float64], base: NDArray[np.float64]) -> tuple[float, float]:
    """PSI and JS distance over the base's deciles, written with scipy/numpy only."""
    edges = np.unique(np.quantile(base, np.arange(1, 10) / 10))
    bins = np.concatenate(([-np.inf], edges, [np.inf]))
    p = np.histogram(current, bins)[0] / current.size
    q = np.histogram(base, bins)[0] / base.size
    js = float(jensenshannon(p, q, base=2))
    p, q = np.where(p == 0, 1e-4, p), np.where(q == 0, 1e-4, q)
    return float(special.rel_entr(p, q).sum() + special.rel_entr(q, p).sum()), js


@pytest.mark.parametrize(
    ("n", "m", "shift", "integers"),
    [
        (300, 280, 0.0, False),  # exact KS p-value
        (400, 390, 0.3, False),
        (1500, 1200, 0.1, False),  # n*m > 1e6: asymptotic p-value
        (1100, 1100, 0.1, False),  # equal sizes: exact (cheap)
        (250, 330, 0.0, True),  # many ties
        (5, 3000, 1.0, False),
    ],
)
def test_numeric_statistics_match_scipy(n: int, m: int, shift: float, integers: bool) -> None:
    rng = np.random.default_rng(n + m)
    if integers:
        current = rng.integers(0, 8, n).astype(np.float64)
        base = rng.integers(0, 10, m).astype(np.float64)
    else:
        current = rng.normal(shift, 1.3, n)
        base = rng.normal(0.0, 1.0, m)
    got = numeric_drift(np.sort(current), np.sort(base))

    method = "exact" if ks_exact(n, m) else "asymp"
    ks = stats.ks_2samp(current, base, method=method)
    assert got.ks_statistic == pytest.approx(ks.statistic, abs=TOL)
    assert got.ks_pvalue == pytest.approx(ks.pvalue, abs=TOL)
    assert got.wasserstein == pytest.approx(stats.wasserstein_distance(current, base), abs=TOL)
    psi, js = psi_oracle(current, base)
    assert got.psi == pytest.approx(psi, abs=TOL)
    assert got.js_distance == pytest.approx(js, abs=TOL)


def test_identical_samples_have_no_drift() -> None:
    values = np.sort(np.random.default_rng(1).normal(size=500))
    got = numeric_drift(values, values)
    assert (got.ks_statistic, got.wasserstein, got.psi, got.js_distance) == (0.0, 0.0, 0.0, 0.0)
    assert got.ks_pvalue == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("current", "base"),
    [
        ([40, 60], [55, 45]),  # 2 categories: Yates' correction
        ([10, 0, 30, 5], [12, 7, 25, 0]),
        ([100, 1, 1, 1, 50], [90, 10, 3, 2, 40]),
        ([7], [9]),  # one category: no test
    ],
)
def test_categorical_statistics_match_scipy(current: list[int], base: list[int]) -> None:
    cur, ref = np.asarray(current, dtype=np.float64), np.asarray(base, dtype=np.float64)
    got = categorical_drift(cur, ref)

    if len(current) > 1:
        chi2 = stats.chi2_contingency(np.vstack((cur, ref)))
        assert got.chi2_statistic == pytest.approx(chi2.statistic, abs=TOL)
        assert got.chi2_pvalue == pytest.approx(chi2.pvalue, abs=TOL)
    else:
        assert (got.chi2_statistic, got.chi2_pvalue) == (0.0, 1.0)
    p, q = cur / cur.sum(), ref / ref.sum()
    assert got.js_distance == pytest.approx(float(jensenshannon(p, q, base=2)), abs=TOL)
    assert got.tv_distance == pytest.approx(0.5 * np.abs(p - q).sum(), abs=TOL)
    assert got.l_infinity == pytest.approx(np.abs(p - q).max(), abs=TOL)
    pe, qe = np.where(p == 0, 1e-4, p), np.where(q == 0, 1e-4, q)
    assert got.psi == pytest.approx(
        float(special.rel_entr(pe, qe).sum() + special.rel_entr(qe, pe).sum()), abs=TOL
    )


def test_the_exact_limit_can_be_raised_to_scipys_default() -> None:
    rng = np.random.default_rng(4)
    current, base = np.sort(rng.normal(0.1, 1.0, 1200)), np.sort(rng.normal(0.0, 1.0, 1100))
    default = stats.ks_2samp(current, base)  # scipy's "auto": exact below 10,000 values per side
    got = numeric_drift(current, base, exact_max_product=10**8)
    assert got.ks_pvalue == pytest.approx(default.pvalue, abs=TOL)
    assert numeric_drift(current, base).ks_pvalue == pytest.approx(
        stats.ks_2samp(current, base, method="asymp").pvalue, abs=TOL
    )
