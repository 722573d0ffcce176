"""Return metrics: the one definition of the Sharpe ratio and every other metric of a return series.

Definitions (per configuration, over the n evaluated bars, annualised with ``ppy`` bars per year):
total_return = equity_end - 1; cagr = equity_end ** (ppy / n) - 1; volatility = std(r, ddof=1) * sqrt(ppy);
sharpe = mean(r - rf) / std(r, ddof=1) * sqrt(ppy); sortino = mean(r - rf) / sqrt(mean(min(r - rf, 0)^2)) * sqrt(ppy);
max_drawdown = max(1 - equity / running peak) (a positive fraction); calmar = cagr / max_drawdown;
trades = entries (an open last trade included); win_rate = trades with PnL > 0 / trades;
exposure = fraction of bars a position was held; turnover = sum |position change| per year;
profit_factor = gross PnL of winning trades / |gross PnL of losing trades|.
Undefined values (no variance, no drawdown, no trades) are NaN; profit_factor is inf with wins and no losses.

Every metric comes from per-configuration accumulators (:data:`ACC`): running sums the backtest kernels keep bar
by bar, or :func:`from_returns` computes from a return series. The Sharpe ratio is written once, from the sums
(:func:`sharpe_from_sums`, compiled, called inside the Numba passes: the metric pass and PBO's CSCV), with a NumPy
twin (:func:`sharpe_from_sums_np`, the same operations in the same order, bit for bit equal, tested) for the paths
that must compile nothing (the start-fast NumPy engine) and for return series (:func:`sharpe`): one formula, so a
Sharpe ratio read anywhere -- sweep, bootstrap, DSR, PBO, replay, optimizer -- is the same number.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np
import pandas as pd

METRICS = ("total_return", "cagr", "volatility", "sharpe", "sortino", "max_drawdown", "calmar", "trades",
           "win_rate", "exposure", "turnover", "profit_factor")
# Accumulators per configuration, the columns the backtest kernels fill (in this order) and the metrics read.
ACC = ("final_equity", "sum_r", "sum_r2", "sum_down2", "max_dd", "trades", "wins", "gross_win", "gross_loss",
       "exposed", "turnover")
NACC = len(ACC)
SERIES_METRICS = ("total_return", "cagr", "volatility", "sharpe", "sortino", "max_drawdown", "calmar")


_TICKS_PER_SECOND = {"s": 1, "ms": 10**3, "us": 10**6, "ns": 10**9}  # a DatetimeIndex's unit


def periods_per_year(index: pd.Index) -> float:
    """Bars per year from the median bar spacing: 252 for daily, 52 weekly, 12 monthly; intraday as
    252 sessions of 6.5 hours (US equities). Non-datetime indexes are treated as daily."""
    if not isinstance(index, pd.DatetimeIndex) or len(index) < 3:
        return 252.0
    if index.hasnans:
        step = float(np.median((index[1:] - index[:-1]).total_seconds())) / 86_400.0  # days
    else:  # the same seconds from the raw integers, without two index copies (~1 ms of each backtest)
        step = float(np.median(np.diff(index.asi8) / _TICKS_PER_SECOND[index.unit])) / 86_400.0
    if step < 0.9:
        return 252.0 * 6.5 / (step * 24.0)
    if step < 4.5:  # daily bars, weekends and holidays included
        return 252.0
    if step < 10:
        return 52.0
    if step < 45:
        return 12.0
    return 365.25 / step


def rf_per_bar(risk_free: float, ppy: float) -> float:
    """Annual risk-free rate -> per-bar rate (compounded)."""
    return (1.0 + risk_free) ** (1.0 / ppy) - 1.0


@nb.njit(inline="always", cache=True)
def std_from_sums(s1, s2, n):
    """Sample standard deviation (ddof=1) of ``n`` returns from their sum ``s1`` and sum of squares ``s2``."""
    if n > 1:
        return np.sqrt(max(s2 - s1 * s1 / n, 0.0) / (n - 1))
    return np.nan


@nb.njit(inline="always", cache=True)
def sharpe_from_sums(s1, s2, n, rf_bar):
    """THE Sharpe ratio, per bar (not annualised): mean(r - rf) / std(r, ddof=1) from the sums of ``n`` returns;
    NaN without variance."""
    std = std_from_sums(s1, s2, n)
    return (s1 / n - rf_bar) / std if std > 0 else np.nan


def std_from_sums_np(s1: np.ndarray, s2: np.ndarray, n: float | np.ndarray) -> np.ndarray:
    """:func:`std_from_sums` over arrays (NumPy, nothing to compile; the same operations)."""
    s1 = np.asarray(s1, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        if np.all(np.asarray(n) > 1):
            return np.sqrt(np.maximum(s2 - s1 * s1 / n, 0.0) / (n - 1))
        return np.full(np.broadcast(s1, n).shape, np.nan)


def sharpe_from_sums_np(s1: np.ndarray, s2: np.ndarray, n: float | np.ndarray, rf_bar: float = 0.0
                        ) -> np.ndarray:
    """:func:`sharpe_from_sums` over arrays (NumPy, nothing to compile; the same operations, bit for bit)."""
    std = std_from_sums_np(s1, s2, n)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(std > 0, (s1 / n - rf_bar) / std, np.nan)


def sharpe(returns: np.ndarray, ppy: float = 1.0, rf_bar: float = 0.0, axis: int = -1) -> np.ndarray:
    """Sharpe ratio of return series along ``axis``, annualised with ``ppy`` bars per year (1: per bar); NaN
    without variance. The sums are the kernels' accumulators, so this is the sweep's Sharpe ratio."""
    r = np.asarray(returns, dtype=np.float64)
    n = r.shape[axis]
    return sharpe_from_sums_np(r.sum(axis), (r * r).sum(axis), n, rf_bar) * np.sqrt(ppy)


@nb.njit(parallel=True, cache=True)
def _finalise_into(acc, n, ppy, rf_bar, out):
    root = np.sqrt(ppy)
    for j in nb.prange(acc.shape[0]):
        eq, s1, s2, sd2, mdd = acc[j, 0], acc[j, 1], acc[j, 2], acc[j, 3], acc[j, 4]
        trades, wins, gw, gl = acc[j, 5], acc[j, 6], acc[j, 7], acc[j, 8]
        std = std_from_sums(s1, s2, n)
        excess = s1 / n - rf_bar
        cagr = eq ** (ppy / n) - 1.0 if eq > 0 else -1.0
        out[0, j] = eq - 1.0
        out[1, j] = cagr
        out[2, j] = std * root
        out[3, j] = sharpe_from_sums(s1, s2, n, rf_bar) * root
        out[4, j] = excess / np.sqrt(sd2 / n) * root if sd2 > 0 else np.nan
        out[5, j] = mdd
        out[6, j] = cagr / mdd if mdd > 0 else np.nan
        out[7, j] = trades
        out[8, j] = wins / trades if trades > 0 else np.nan
        out[9, j] = acc[j, 9] / n
        out[10, j] = acc[j, 10] * ppy / n
        out[11, j] = gw / gl if gl > 0 else (np.inf if gw > 0 else np.nan)


def _finalise_numpy(acc: np.ndarray, n: int, ppy: float, rf_bar: float, out: np.ndarray) -> None:
    """:func:`_finalise_into`'s formulas, operation for operation, column-wise in NumPy (nothing to compile)."""
    eq, s1, s2, sd2, mdd, trades, wins, gw, gl, exposed, turnover = acc.T
    with np.errstate(divide="ignore", invalid="ignore"):
        std = std_from_sums_np(s1, s2, n)
        excess = s1 / n - rf_bar
        p = ppy / n  # the C library's pow, as compiled code calls it (NumPy's own differs in the last bit)
        cagr = np.array([e ** p - 1.0 if e > 0 else -1.0 for e in eq.tolist()], dtype=np.float64)
        root = np.sqrt(ppy)
        out[:] = (eq - 1.0, cagr, std * root, sharpe_from_sums_np(s1, s2, n, rf_bar) * root,
                  np.where(sd2 > 0, excess / np.sqrt(sd2 / n) * root, np.nan), mdd,
                  np.where(mdd > 0, cagr / mdd, np.nan), trades, np.where(trades > 0, wins / trades, np.nan),
                  exposed / n, turnover * ppy / n, np.where(gl > 0, gw / gl, np.where(gw > 0, np.inf, np.nan)))


def finalise_matrix(acc: np.ndarray, n: int, ppy: float, rf_bar: float, *, jit: bool = True) -> np.ndarray:
    """Metrics (one row per name in METRICS, one column per configuration) from the accumulators (k x NACC, see
    :data:`ACC`) of ``n``-bar backtests, in one parallel Numba pass (numpy's column-wise version of the same
    formulas, ``jit=False``, takes ~0.3 s per million configurations, this ~0.01 s, but needs no compile: the
    NumPy engine uses it). Both agree to the last bit or two."""
    out = np.empty((len(METRICS), len(acc)))
    acc = np.ascontiguousarray(acc, dtype=np.float64)
    if jit:
        _finalise_into(acc, int(n), float(ppy), float(rf_bar), out)
    else:
        _finalise_numpy(acc, int(n), float(ppy), float(rf_bar), out)
    return out


def finalise(acc: np.ndarray, n: int, ppy: float, rf_bar: float, *, jit: bool = True) -> dict[str, np.ndarray]:
    """:func:`finalise_matrix` as a dict of metric name -> column."""
    return dict(zip(METRICS, finalise_matrix(acc, n, ppy, rf_bar, jit=jit), strict=True))


def return_accumulators(returns: np.ndarray, rf_bar: float = 0.0) -> tuple[int, np.ndarray]:
    """(bars, accumulators k x NACC) of a bars x configs return matrix (1-D: one configuration), trade columns 0."""
    r = np.asarray(returns, dtype="float64")
    if r.ndim == 1:
        r = r[:, None]
    eq = np.cumprod(1.0 + r, axis=0)
    peak = np.maximum.accumulate(np.vstack([np.ones((1, r.shape[1])), eq]), axis=0)[1:]
    acc = np.zeros((r.shape[1], NACC))
    acc[:, 0] = eq[-1]
    acc[:, 1] = r.sum(0)
    acc[:, 2] = (r * r).sum(0)
    acc[:, 3] = (np.minimum(r - rf_bar, 0.0) ** 2).sum(0)
    acc[:, 4] = (1.0 - eq / peak).max(0)
    return r.shape[0], acc


def from_returns(returns: np.ndarray, ppy: float = 252.0, rf_bar: float = 0.0, *, jit: bool = True
                 ) -> dict[str, np.ndarray]:
    """Return-based metrics (:data:`SERIES_METRICS`, no trade statistics) of a bars x configs return matrix."""
    n, acc = return_accumulators(returns, rf_bar)
    m = finalise(acc, n, ppy, rf_bar, jit=jit)
    return {k: m[k] for k in SERIES_METRICS}


def moments(returns: np.ndarray) -> tuple[float, float, float]:
    """(per-bar Sharpe ratio, skewness, raw kurtosis) of one return series: biased moments, as scipy.stats'
    defaults; skew 0 and kurtosis 3 (the normal's) without variance."""
    r = np.asarray(returns, dtype="float64")
    sr = float(sharpe(r))
    if not math.isfinite(sr):
        return sr, 0.0, 3.0
    d = r - r.mean()
    m2 = float(np.mean(d * d))
    if not m2 > 0:
        return sr, 0.0, 3.0
    return sr, float(np.mean(d * d * d)) / m2**1.5, float(np.mean((d * d) ** 2)) / m2**2
