"""alphasignal.evaluation: the one Sharpe ratio, bootstrap schemes, the Newey-West interval, costs, DSR, layering."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

from alphasignal.evaluation import bootstrap, hac
from alphasignal.evaluation.costs import cost_model
from alphasignal.evaluation.metrics import (
    finalise_matrix,
    from_returns,
    moments,
    return_accumulators,
    sharpe,
    sharpe_from_sums,
    sharpe_from_sums_np,
)
from alphasignal.evaluation.overfitting import deflated_sharpe_ratio, dsr_of_best, dsr_of_returns


def _ar1(n: int, phi: float, seed: int) -> np.ndarray:
    """An AR(1) return series (mean 5e-4, innovations 1 %)."""
    rng = np.random.default_rng(seed)
    e = rng.normal(0.0, 0.01, n)
    r = np.empty(n)
    r[0] = e[0]
    for t in range(1, n):
        r[t] = phi * r[t - 1] + e[t]
    return r + 5e-4


def test_the_compiled_sharpe_and_its_numpy_twin_agree_bit_for_bit():
    rng = np.random.default_rng(3)
    r = rng.normal(3e-4, 0.01, (400, 64))
    r[:, 0] = 0.0  # no variance: NaN
    s1, s2 = r.sum(0), (r * r).sum(0)
    for rf in (0.0, 1e-4):
        twin = sharpe_from_sums_np(s1, s2, 400, rf)
        compiled = np.array([sharpe_from_sums(a, b, 400, rf) for a, b in zip(s1, s2, strict=True)])
        assert twin.tobytes() == compiled.tobytes()
        assert np.isnan(twin[0]) and np.isfinite(twin[1:]).all()
    assert np.isnan(sharpe_from_sums(0.1, 0.2, 1, 0.0)) and np.isnan(sharpe_from_sums_np(0.1, 0.2, 1))


def test_sharpe_of_returns_is_the_metric_pass_sharpe_bit_for_bit():
    r = np.random.default_rng(4).normal(4e-4, 0.012, (1000, 5))
    for jit in (True, False):
        via_acc = from_returns(r, 252.0, 1e-4, jit=jit)["sharpe"]
        assert via_acc.tobytes() == sharpe(r, 252.0, 1e-4, axis=0).tobytes()
    n, acc = return_accumulators(r)
    assert n == 1000
    assert finalise_matrix(acc, n, 252.0, 0.0)[3].tobytes() == sharpe(r.T, 252.0).tobytes()
    # the textbook two-pass formula, to rounding
    want = (r.mean(0) - 1e-4) / r.std(0, ddof=1) * math.sqrt(252.0)
    np.testing.assert_allclose(sharpe(r, 252.0, 1e-4, axis=0), want, rtol=1e-12)


def test_newey_west_lag_rule():
    assert [hac.newey_west_lags(n) for n in (50, 100, 1000, 5000)] == [3, 4, 6, 9]


def test_hac_standard_error_of_the_mean_by_hand():
    # x = (1, -1, 2, 0): mean 0.5, u = (0.5, -1.5, 1.5, -0.5); G0 = (0.25 + 2.25 + 2.25 + 0.25) / 4 = 1.25;
    # G1 = (-1.5*0.5 + 1.5*-1.5 + -0.5*1.5) / 4 = -0.9375; w1 = 1 - 1/2; omega = 1.25 + 2 * 0.5 * -0.9375 = 0.3125
    assert hac.hac_se_mean(np.array([1.0, -1.0, 2.0, 0.0]), lags=1) == pytest.approx(math.sqrt(0.3125 / 4), abs=1e-15)
    assert hac.hac_se_mean(np.array([1.0, -1.0, 2.0, 0.0]), lags=0) == pytest.approx(math.sqrt(1.25 / 4), abs=1e-15)


@pytest.mark.parametrize("lags", [0, 1, 5, None])
def test_hac_standard_error_of_the_mean_equals_statsmodels(lags):
    sm = pytest.importorskip("statsmodels.api")
    x = _ar1(750, 0.3, 11)
    maxlags = hac.newey_west_lags(len(x)) if lags is None else lags
    fit = sm.OLS(x, np.ones(len(x))).fit(cov_type="HAC", cov_kwds={"maxlags": maxlags, "use_correction": False})
    assert abs(hac.hac_se_mean(x, lags) - float(fit.bse[0])) < 1e-10


def test_hac_sharpe_without_lags_is_the_iid_formula():
    """With no lags the delta-method variance is (1 - skew SR + (kurtosis - 1) / 4 SR^2) / n, SR = mu / sigma with
    the moment (ddof=0) sigma: the DSR's denominator."""
    r = np.random.default_rng(8).standard_t(5, 600) * 0.01 + 8e-4
    d = r - r.mean()
    m2 = np.mean(d * d)
    sr = r.mean() / math.sqrt(m2)
    skew, kurt = np.mean(d**3) / m2**1.5, np.mean(d**4) / m2**2
    want = math.sqrt((1 - skew * sr + (kurt - 1) / 4 * sr * sr) / len(r))
    assert hac.sharpe_hac_se(r, lags=0) == pytest.approx(want, rel=1e-12)
    assert hac.sharpe_hac_se(r, 252.0, lags=0) == pytest.approx(want * math.sqrt(252.0), rel=1e-12)


def test_hac_sharpe_interval_widens_with_positive_autocorrelation():
    r = _ar1(2000, 0.5, 5)
    lo, hi = hac.sharpe_hac_ci(r, 252.0)
    centre = float(sharpe(r, 252.0))
    assert lo < centre < hi and (lo + hi) / 2 == pytest.approx(centre, rel=1e-12)
    assert hac.sharpe_hac_se(r, 252.0) > 1.3 * hac.sharpe_hac_se(r, 252.0, lags=0)
    lo99, hi99 = hac.sharpe_hac_ci(r, 252.0, level=0.99)
    assert lo99 < lo and hi99 > hi
    assert all(np.isnan(hac.sharpe_hac_ci(np.zeros(50), 252.0)))
    assert all(np.isnan(hac.sharpe_hac_ci(np.array([0.01, 0.02]), 252.0)))
    with pytest.raises(Exception, match="lags"):
        hac.hac_se_mean(np.ones(5), lags=5)


def test_bootstrap_index_schemes():
    rng = np.random.default_rng(0)
    iid = bootstrap.iid_indices(50, 200, rng)
    assert iid.shape == (200, 50) and iid.min() >= 0 and iid.max() < 50
    circ = bootstrap.circular_block_indices(50, 200, 7, rng)
    assert circ.shape == (200, 50)
    steps = (np.diff(circ, axis=1) % 50)[:, :6]  # inside the first block: consecutive bars, wrapping around
    assert (steps == 1).all()
    assert bootstrap.circular_block_indices(5, 3, 99, rng).shape == (3, 5)  # a block longer than the series
    stat = bootstrap.stationary_indices(400, 100, 10.0, rng)
    cont = (np.diff(stat, axis=1) % 400) == 1
    assert 0.85 < cont.mean() < 0.95  # a block continues with probability 1 - 1/10 (or jumps to the next bar)
    assert np.isnan(bootstrap.percentile_interval(np.array([np.nan, np.inf]))).all()
    assert bootstrap.percentile_interval(np.arange(101.0), 0.9) == (5.0, 95.0)


def test_bootstrap_and_hac_sharpe_intervals_agree_roughly():
    r = _ar1(1500, 0.2, 9)
    b_lo, b_hi = bootstrap.sharpe_ci(r, 252.0, seed=3)
    h_lo, h_hi = hac.sharpe_hac_ci(r, 252.0)
    assert bootstrap.sharpe_ci(r, 252.0, seed=3) == (b_lo, b_hi)
    assert b_lo < float(sharpe(r, 252.0)) < b_hi
    assert 0.6 < (b_hi - b_lo) / (h_hi - h_lo) < 1.6


def test_cost_model():
    c = cost_model(10.0, 5.0)
    assert (c.fee, c.slippage) == (10.0 * 1e-4, 5.0 * 1e-4)
    assert c.buy_mult == (1 + 5e-4) * (1 + 1e-3) and c.sell_mult == (1 - 5e-4) * (1 - 1e-3)
    assert c.fill_price(100.0, 1) == pytest.approx(100.05) and c.fill_price(100.0, -1) == pytest.approx(99.95)
    # a buy at the fill price plus its fee costs what the whole-equity multiplier says
    assert c.fill_price(100.0, 1) + c.fee_on(c.fill_price(100.0, 1)) == pytest.approx(100.0 * c.buy_mult, rel=1e-15)
    assert cost_model(0.0, 0.0).buy_mult == 1.0 == cost_model(0.0, 0.0).sell_mult


def test_engine_and_replay_take_the_one_cost_model():
    from alphasignal.backtest.engine import cost_factors
    from alphasignal.config import ReplayConfig, SweepConfig
    from alphasignal.replay.portfolio import Book

    c = cost_model(7.0, 3.0)
    assert cost_factors(SweepConfig(fees_bps=7.0, slippage_bps=3.0)) == (c.buy_mult, c.sell_mult)
    rc = ReplayConfig(fees_bps=7.0, slippage_bps=3.0)
    assert Book(rc.initial_cash, cost_model(rc.fees_bps, rc.slippage_bps)).costs == c


def test_dsr_of_returns_and_of_best():
    r = _ar1(800, 0.0, 2)
    sr, skew, kurt = moments(r)
    one = dsr_of_returns(r, 1, 0.0)
    assert one["dsr"] == deflated_sharpe_ratio(sr, 1, 800, 0.0, skew, kurt)  # one trial: the PSR
    trials = np.array([sr, sr * 0.5, -sr, np.nan, 0.0])
    best = dsr_of_best(r, trials)
    assert best["n_trials"] == 4 and best["dsr"] < one["dsr"]
    assert np.isnan(dsr_of_returns(np.zeros(30), 5, 0.1)["dsr"])


def test_evaluation_imports_nothing_above_it():
    code = ("import sys; import alphasignal.evaluation.metrics, alphasignal.evaluation.bootstrap, "
            "alphasignal.evaluation.hac, alphasignal.evaluation.costs, alphasignal.evaluation.overfitting; "
            "print(sorted(m for m in sys.modules if m.startswith('alphasignal.') and not "
            "m.startswith(('alphasignal.evaluation', 'alphasignal.errors'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
