"""Technical indicators: pure, vectorised functions over NumPy arrays or pandas Series.

Each takes arrays (or Series) and returns the same kind; warm-up values are NaN. Values at bar t
depend only on bars <= t (no look-ahead).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import numpy as np
import pandas as pd

ArrayLike = TypeVar("ArrayLike", np.ndarray, pd.Series)


def _arr(x) -> np.ndarray:
    return np.asarray(x, dtype="float64")


def _like(template, values: np.ndarray):
    return pd.Series(values, index=template.index) if isinstance(template, pd.Series) else values


def check_period(period: int) -> None:
    if int(period) != period or period < 1:
        raise ValueError(f"indicator period must be a positive integer (got {period!r})")


def sma(x: ArrayLike, period: int) -> ArrayLike:
    """Simple moving average over ``period`` bars."""
    return _like(x, sma_rows(_arr(x), [period])[0])


def sma_rows(x: np.ndarray, periods: list[int], out: np.ndarray | None = None) -> np.ndarray:
    """Simple moving averages of one series for many periods (len(periods) x len(x), written into ``out`` when
    given), sharing one running sum."""
    a = _arr(x)
    out = np.empty((len(periods), len(a))) if out is None else out
    c = np.cumsum(np.insert(a, 0, 0.0))
    for row, p in zip(out, periods, strict=True):
        check_period(p)
        row[:min(p - 1, len(a))] = np.nan
        if len(a) >= p:
            np.subtract(c[p:], c[:-p], out=row[p - 1:])
            row[p - 1:] /= p
    return out


def _ewm(a: np.ndarray, alpha: float, period: int) -> np.ndarray:
    """Recursive exponential average seeded with the SMA of the first ``period`` values."""
    return _ewm_columns(a[:, None], [0], alpha, period)[:, 0]


def _ewm_columns(a: np.ndarray, starts: Sequence[int], alpha: float, period: int) -> np.ndarray:
    """:func:`_ewm` of each column ``j`` of ``a`` (bars x columns) from its own first bar ``starts[j]`` (NaN before),
    in one pandas call: its ewm(adjust=False) is the exact recursion, in C, column by column, and a column's
    leading NaNs leave it as if it began at its first value."""
    seeded = np.full(a.shape, np.nan)
    for j, s in enumerate(starts):
        if len(a) - s >= period:
            seeded[s + period:, j] = a[s + period:, j]
            seeded[s + period - 1, j] = np.ascontiguousarray(a[s:s + period, j]).mean()
    frame = pd.Series(seeded[:, 0]) if seeded.shape[1] == 1 else pd.DataFrame(seeded)  # a Series: less overhead
    return frame.ewm(alpha=alpha, adjust=False).mean().to_numpy().reshape(a.shape)


def ema(x: ArrayLike, period: int) -> ArrayLike:
    """Exponential moving average, alpha = 2/(period+1), seeded with the first SMA."""
    check_period(period)
    return _like(x, _ewm(_arr(x), 2.0 / (period + 1), period))


def rsi(close: ArrayLike, period: int = 14) -> ArrayLike:
    """Relative Strength Index with Wilder's smoothing (alpha = 1/period)."""
    check_period(period)
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
    line, sig = macd_rows(_arr(close), [(fast, slow, None), (fast, slow, signal)])
    return _like(close, line), _like(close, sig), _like(close, line - sig)


MACD_BATCH = 256  # signal lines per pandas call in macd_rows (about 10 MB of 5,000-bar columns)


def macd_rows(close: np.ndarray, specs: Sequence[tuple[int, int, int | None]],
              out: np.ndarray | None = None) -> np.ndarray:
    """Rows (len(specs) x len(close), written into ``out`` when given) of many MACD series: for (fast, slow, None)
    the MACD line, for (fast, slow, signal) its signal line. Each EMA period is computed once, and the signal EMAs
    of one signal period in batches of :data:`MACD_BATCH` columns: the same arithmetic as :func:`macd`, one series
    at a time."""
    for fast, slow, signal in specs:
        if fast >= slow:
            raise ValueError(f"MACD needs fast < slow (got {fast}, {slow})")
        if signal is not None:
            check_period(signal)
    c = _arr(close)
    out = np.empty((len(specs), len(c))) if out is None else out
    emas = {p: ema(c, p) for p in sorted({p for fast, slow, _ in specs for p in (fast, slow)})}
    by_signal: dict[int, list[int]] = {}
    for i, (fast, slow, signal) in enumerate(specs):
        if signal is None:
            np.subtract(emas[fast], emas[slow], out=out[i])
        else:
            by_signal.setdefault(signal, []).append(i)
    for signal, rows in by_signal.items():
        for b in range(0, len(rows), MACD_BATCH):
            batch = rows[b:b + MACD_BATCH]
            lines = np.stack([emas[specs[i][0]] - emas[specs[i][1]] for i in batch], axis=1)
            starts = [specs[i][1] - 1 for i in batch]  # a line's first bar: its signal EMA starts there
            out[batch] = _ewm_columns(lines, starts, 2.0 / (signal + 1), signal).T
    return out


def bollinger(close: ArrayLike, period: int = 20, num_std: float = 2.0) -> tuple[ArrayLike, ArrayLike, ArrayLike]:
    """Bollinger bands (lower, middle, upper) with the population standard deviation."""
    check_period(period)
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
    check_period(period)
    return _like(close, _ewm(_arr(true_range(high, low, close)), 1.0 / period, period))


def volume_ma(volume: ArrayLike, period: int = 20) -> ArrayLike:
    """Simple moving average of volume."""
    return sma(volume, period)


def indicator_frame(df: pd.DataFrame) -> pd.DataFrame:
    """Every snapshot indicator as a column over the whole frame (row t uses bars <= t only)."""
    c, h, lo, v = (df[k].to_numpy(dtype="float64") for k in ("Close", "High", "Low", "Volume"))
    line, sig, _ = macd(c)
    low_b, _mid, up_b = bollinger(c)
    return pd.DataFrame({
        "close": c,
        "sma_20": sma(c, 20),
        "sma_50": sma(c, 50),
        "ema_12": ema(c, 12),
        "rsi_14": rsi(c, 14),
        "macd": line,
        "macd_signal": sig,
        "bb_lower": low_b,
        "bb_upper": up_b,
        "atr_14": atr(h, lo, c, 14),
        "volume_ma_20": volume_ma(v, 20),
    }, index=df.index)


def snapshot(df: pd.DataFrame, end: int | None = None) -> dict[str, float | None]:
    """Indicator values at the last bar of ``df[:end]`` (rounded to 6 decimals; None during warm-up)."""
    row = indicator_frame(df.iloc[:end] if end is not None else df).iloc[-1]
    return {k: (None if np.isnan(x) else round(float(x), 6)) for k, x in row.items()}
