"""Metrics from the kernels' accumulators, and from plain return series (reference/validation use).

Definitions (per configuration, over the n evaluated bars, annualised with ``ppy`` bars per year):
total_return = equity_end - 1; cagr = equity_end ** (ppy / n) - 1; volatility = std(r, ddof=1) * sqrt(ppy);
sharpe = mean(r - rf) / std(r, ddof=1) * sqrt(ppy); sortino = mean(r - rf) / sqrt(mean(min(r - rf, 0)^2)) * sqrt(ppy);
max_drawdown = max(1 - equity / running peak) (a positive fraction); calmar = cagr / max_drawdown;
trades = entries (an open last trade included); win_rate = trades with PnL > 0 / trades;
exposure = fraction of bars a position was held; turnover = sum |position change| per year;
profit_factor = gross PnL of winning trades / |gross PnL of losing trades|.
Undefined values (no variance, no drawdown, no trades) are NaN; profit_factor is inf with wins and no losses.
"""

from __future__ import annotations

import numba as nb
import numpy as np
import pandas as pd

METRICS = ("total_return", "cagr", "volatility", "sharpe", "sortino", "max_drawdown", "calmar", "trades",
           "win_rate", "exposure", "turnover", "profit_factor")


def periods_per_year(index: pd.Index) -> float:
    """Bars per year from the median bar spacing: 252 for daily, 52 weekly, 12 monthly; intraday as
    252 sessions of 6.5 hours (US equities). Non-datetime indexes are treated as daily."""
    if not isinstance(index, pd.DatetimeIndex) or len(index) < 3:
        return 252.0
    step = float(np.median((index[1:] - index[:-1]).total_seconds())) / 86_400.0  # days
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


@nb.njit(parallel=True, cache=True)
def _finalise_into(acc, n, ppy, rf_bar, out):
    root = np.sqrt(ppy)
    for j in nb.prange(acc.shape[0]):
        eq, s1, s2, sd2, mdd = acc[j, 0], acc[j, 1], acc[j, 2], acc[j, 3], acc[j, 4]
        trades, wins, gw, gl = acc[j, 5], acc[j, 6], acc[j, 7], acc[j, 8]
        std = np.sqrt(max(s2 - s1 * s1 / n, 0.0) / (n - 1)) if n > 1 else np.nan
        excess = s1 / n - rf_bar
        cagr = eq ** (ppy / n) - 1.0 if eq > 0 else -1.0
        out[0, j] = eq - 1.0
        out[1, j] = cagr
        out[2, j] = std * root
        out[3, j] = excess / std * root if std > 0 else np.nan
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
        std = np.sqrt(np.maximum(s2 - s1 * s1 / n, 0.0) / (n - 1)) if n > 1 else np.full(len(acc), np.nan)
        excess = s1 / n - rf_bar
        p = ppy / n  # the C library's pow, as compiled code calls it (NumPy's own differs in the last bit)
        cagr = np.array([e ** p - 1.0 if e > 0 else -1.0 for e in eq.tolist()], dtype=np.float64)
        root = np.sqrt(ppy)
        out[:] = (eq - 1.0, cagr, std * root, np.where(std > 0, excess / std * root, np.nan),
                  np.where(sd2 > 0, excess / np.sqrt(sd2 / n) * root, np.nan), mdd,
                  np.where(mdd > 0, cagr / mdd, np.nan), trades, np.where(trades > 0, wins / trades, np.nan),
                  exposed / n, turnover * ppy / n, np.where(gl > 0, gw / gl, np.where(gw > 0, np.inf, np.nan)))


def finalise_matrix(acc: np.ndarray, n: int, ppy: float, rf_bar: float, *, jit: bool = True) -> np.ndarray:
    """Metrics (one row per name in METRICS, one column per configuration) from the accumulators (k x NACC, see
    ``kernels.ACC``) of ``n``-bar backtests, in one parallel Numba pass (numpy's column-wise version of the same
    formulas, ``jit=False``, takes ~0.3 s per million configurations, this ~0.01 s, but needs no compile: the
    NumPy engine uses it). Both agree to the last bit or two."""
    out = np.empty((len(METRICS), len(acc)))
    acc = np.ascontiguousarray(acc, dtype=np.float64)
    if jit:
        _finalise_into(acc, int(n), float(ppy), float(rf_bar), out)
    else:
        _finalise_numpy(acc, int(n), float(ppy), float(rf_bar), out)
    return out


def finalise(acc: np.ndarray, n: int, ppy: float, rf_bar: float) -> dict[str, np.ndarray]:
    """:func:`finalise_matrix` as a dict of metric name -> column."""
    return dict(zip(METRICS, finalise_matrix(acc, n, ppy, rf_bar), strict=True))


def from_returns(returns: np.ndarray, ppy: float = 252.0, rf_bar: float = 0.0) -> dict[str, np.ndarray]:
    """Return-based metrics (no trade statistics) of a bars x configs return matrix."""
    r = np.asarray(returns, dtype="float64")
    if r.ndim == 1:
        r = r[:, None]
    n = r.shape[0]
    eq = np.cumprod(1.0 + r, axis=0)
    peak = np.maximum.accumulate(np.vstack([np.ones((1, r.shape[1])), eq]), axis=0)[1:]
    acc = np.zeros((r.shape[1], 11))
    acc[:, 0] = eq[-1]
    acc[:, 1] = r.sum(0)
    acc[:, 2] = (r * r).sum(0)
    acc[:, 3] = (np.minimum(r - rf_bar, 0.0) ** 2).sum(0)
    acc[:, 4] = (1.0 - eq / peak).max(0)
    m = finalise(acc, n, ppy, rf_bar)
    return {k: m[k] for k in ("total_return", "cagr", "volatility", "sharpe", "sortino", "max_drawdown", "calmar")}
