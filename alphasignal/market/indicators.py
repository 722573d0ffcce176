"""Technical indicators: pure, vectorised functions over NumPy arrays or pandas Series.

Each takes arrays (or Series) and returns the same kind; warm-up values are NaN. Values at bar t
depend only on bars <= t (no look-ahead).
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import pandas as pd

ArrayLike = TypeVar("ArrayLike", np.ndarray, pd.Series)


def _arr(x) -> np.ndarray:
    return np.asarray(x, dtype="float64")


def _like(template, values: np.ndarray):
    return pd.Series(values, index=template.index) if isinstance(template, pd.Series) else values


def _check_period(period: int) -> None:
    if int(period) != period or period < 1:
        raise ValueError(f"indicator period must be a positive integer (got {period!r})")


def sma(x: ArrayLike, period: int) -> ArrayLike:
    """Simple moving average over ``period`` bars."""
    _check_period(period)
    a = _arr(x)
    out = np.full(a.shape, np.nan)
    if len(a) >= period:
        c = np.cumsum(np.insert(a, 0, 0.0))
        out[period - 1:] = (c[period:] - c[:-period]) / period
    return _like(x, out)


def _ewm(a: np.ndarray, alpha: float, period: int) -> np.ndarray:
    """Recursive exponential average seeded with the SMA of the first ``period`` values."""
    out = np.full(a.shape, np.nan)
    if len(a) < period:
        return out
    # pandas' ewm(adjust=False) on the seeded series is the exact recursion, in C.
    seeded = a[period - 1:].copy()
    seeded[0] = a[:period].mean()
    out[period - 1:] = pd.Series(seeded).ewm(alpha=alpha, adjust=False).mean().to_numpy()
    return out


def ema(x: ArrayLike, period: int) -> ArrayLike:
    """Exponential moving average, alpha = 2/(period+1), seeded with the first SMA."""
    _check_period(period)
    return _like(x, _ewm(_arr(x), 2.0 / (period + 1), period))


def rsi(close: ArrayLike, period: int = 14) -> ArrayLike:
    """Relative Strength Index with Wilder's smoothing (alpha = 1/period)."""
    _check_period(period)
    c = _arr(close)
    out = np.full(c.shape, np.nan)
    if len(c) > period:
        d = np.diff(c)
        gain = _ewm(np.where(d > 0, d, 0.0), 1.0 / period, period)
        loss = _ewm(np.where(d < 0, -d, 0.0), 1.0 / period, period)
        with np.errstate(divide="ignore", invalid="ignore"):
            r = np.where(loss == 0, np.where(gain == 0, 50.0, 100.0), 100.0 - 100.0 / (1.0 + gain / loss))
        out[1:] = np.where(np.isnan(gain), np.nan, r)
    return _like(close, out)


def macd(close: ArrayLike, fast: int = 12, slow: int = 26, signal: int = 9) -> tuple[ArrayLike, ArrayLike, ArrayLike]:
    """MACD line (EMA fast - EMA slow), its signal EMA, and the histogram."""
    if fast >= slow:
        raise ValueError(f"MACD needs fast < slow (got {fast}, {slow})")
    c = _arr(close)
    line = ema(c, fast) - ema(c, slow)
    sig = np.full(c.shape, np.nan)
    start = slow - 1
    sig[start:] = ema(line[start:], signal) if len(c) > start else np.nan
    return _like(close, line), _like(close, sig), _like(close, line - sig)


def bollinger(close: ArrayLike, period: int = 20, num_std: float = 2.0) -> tuple[ArrayLike, ArrayLike, ArrayLike]:
    """Bollinger bands (lower, middle, upper) with the population standard deviation."""
    _check_period(period)
    c = _arr(close)
    mid = sma(c, period)
    sd = np.full(c.shape, np.nan)
    if len(c) >= period:  # two-pass std per window: exact, unlike E[x^2] - E[x]^2 on large prices
        sd[period - 1:] = np.lib.stride_tricks.sliding_window_view(c, period).std(axis=1)
    return _like(close, mid - num_std * sd), _like(close, mid), _like(close, mid + num_std * sd)


def true_range(high: ArrayLike, low: ArrayLike, close: ArrayLike) -> ArrayLike:
    """True range; the first bar uses high - low."""
    h, lo, c = _arr(high), _arr(low), _arr(close)
    prev = np.concatenate([[np.nan], c[:-1]])
    tr = np.fmax(h - lo, np.fmax(np.abs(h - prev), np.abs(lo - prev)))
    return _like(close, tr)


def atr(high: ArrayLike, low: ArrayLike, close: ArrayLike, period: int = 14) -> ArrayLike:
    """Average true range with Wilder's smoothing."""
    _check_period(period)
    return _like(close, _ewm(_arr(true_range(high, low, close)), 1.0 / period, period))


def volume_ma(volume: ArrayLike, period: int = 20) -> ArrayLike:
    """Simple moving average of volume."""
    return sma(volume, period)


def snapshot(df: pd.DataFrame, end: int | None = None) -> dict[str, float]:
    """Indicator values at the last bar of ``df[:end]`` (rounded), for dataset metadata and rules."""
    d = df.iloc[:end] if end is not None else df
    c, h, lo, v = d["Close"], d["High"], d["Low"], d["Volume"]
    line, sig, _ = macd(c.to_numpy())
    low_b, mid_b, up_b = bollinger(c.to_numpy())
    vals = {
        "close": c.iloc[-1],
        "sma_20": sma(c.to_numpy(), 20)[-1],
        "sma_50": sma(c.to_numpy(), 50)[-1],
        "ema_12": ema(c.to_numpy(), 12)[-1],
        "rsi_14": rsi(c.to_numpy(), 14)[-1],
        "macd": line[-1],
        "macd_signal": sig[-1],
        "bb_lower": low_b[-1],
        "bb_upper": up_b[-1],
        "atr_14": atr(h.to_numpy(), lo.to_numpy(), c.to_numpy(), 14)[-1],
        "volume_ma_20": volume_ma(v.to_numpy(), 20)[-1],
    }
    return {k: (None if np.isnan(x) else round(float(x), 6)) for k, x in vals.items()}
