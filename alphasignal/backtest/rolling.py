"""Rolling-window rows of the indicator table in compiled code, equal bit for bit to the NumPy formulas they
replace (the tables, and so every backtest result, are the same whichever builds them)."""

from __future__ import annotations

import numba as nb
import numpy as np

from ..market.indicators import check_period

PAIRWISE_BLOCK = 128  # NumPy's PW_BLOCKSIZE: sums of up to this many values use eight running partial sums


@nb.njit(inline="always", cache=True)
def _block_sum(a, lo, n):
    """NumPy's pairwise sum of ``a[lo:lo+n]`` (n <= PAIRWISE_BLOCK): plain below 8 values, else eight partial sums
    over the multiple of 8, added pairwise, then the rest one by one -- the same additions in the same order."""
    if n < 8:
        res = 0.0
        for i in range(n):
            res += a[lo + i]
        return res
    r0, r1, r2, r3 = a[lo], a[lo + 1], a[lo + 2], a[lo + 3]
    r4, r5, r6, r7 = a[lo + 4], a[lo + 5], a[lo + 6], a[lo + 7]
    i = 8
    whole = n - n % 8
    while i < whole:
        r0 += a[lo + i]
        r1 += a[lo + i + 1]
        r2 += a[lo + i + 2]
        r3 += a[lo + i + 3]
        r4 += a[lo + i + 4]
        r5 += a[lo + i + 5]
        r6 += a[lo + i + 6]
        r7 += a[lo + i + 7]
        i += 8
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while i < n:
        res += a[lo + i]
        i += 1
    return res


@nb.njit(inline="always", cache=True)
def pairwise_sum(a, lo, n, frames, partial):
    """NumPy's sum of ``a[lo:lo+n]`` (``np.add.reduce``'s pairwise summation): halves, cut at multiples of 8, down to
    blocks of at most PAIRWISE_BLOCK values, added as NumPy's recursion adds them. The recursion runs on explicit
    stacks (``frames``: int64 (64, 3) of start, length, stage; ``partial``: float64 (64,)), since Numba cannot cache
    a recursive function."""
    if n <= PAIRWISE_BLOCK:
        return _block_sum(a, lo, n)
    top, done = 0, 0
    frames[0, 0], frames[0, 1], frames[0, 2] = lo, n, 0
    while top >= 0:
        start, size, stage = frames[top, 0], frames[top, 1], frames[top, 2]
        if size <= PAIRWISE_BLOCK:
            partial[done] = _block_sum(a, start, size)
            done += 1
            top -= 1
            continue
        half = size // 2
        half -= half % 8
        if stage == 2:  # both halves summed: left + right
            done -= 1
            partial[done - 1] = partial[done - 1] + partial[done]
            top -= 1
            continue
        frames[top, 2] = stage + 1
        top += 1
        frames[top, 0] = start if stage == 0 else start + half
        frames[top, 1] = half if stage == 0 else size - half
        frames[top, 2] = 0
    return partial[0]


@nb.njit(cache=True, parallel=True)
def window_std_rows(x, periods, out):
    """Population standard deviation (ddof=0) of ``x`` over trailing windows of each of ``periods`` bars, one row of
    ``out`` per period (NaN before the first whole window): NumPy's ``sliding_window_view(x, p).std(axis=1)`` -- the
    window's pairwise-summed mean, then the pairwise sum of squared deviations over p, square-rooted -- bit for bit,
    about 2x faster on two threads (its rows run in parallel)."""
    n = x.shape[0]
    for r in nb.prange(len(periods)):
        p = periods[r]
        dev, frames, partial = np.empty(p), np.empty((64, 3), np.int64), np.empty(64)
        out[r, :min(p - 1, n)] = np.nan
        for s in range(n - p + 1):
            mean = pairwise_sum(x, s, p, frames, partial) / p
            for j in range(p):
                d = x[s + j] - mean
                dev[j] = d * d
            out[r, s + p - 1] = np.sqrt(pairwise_sum(dev, 0, p, frames, partial) / p)
    return out


@nb.njit(cache=True, parallel=True)
def window_mean_rows(x, periods, out):
    """Simple moving average of ``x`` over trailing windows of each of ``periods`` bars, one row of ``out`` per period
    (NaN before the first whole window): :func:`market.indicators.sma_rows`' formula -- differences of one running
    sum (``np.cumsum``'s sequential additions), divided by the period -- bit for bit, its rows in parallel."""
    n = x.shape[0]
    csum = np.empty(n + 1)
    csum[0] = 0.0
    for t in range(n):
        csum[t + 1] = csum[t] + x[t]
    for r in nb.prange(len(periods)):
        p = periods[r]
        out[r, :min(p - 1, n)] = np.nan
        later, earlier, row = csum[p:], csum[:max(n + 1 - p, 0)], out[r, p - 1:]
        for t in range(n + 1 - p):  # from 0 over slices: LLVM vectorises the divisions (from p - 1: 4x slower)
            row[t] = (later[t] - earlier[t]) / np.float64(p)
    return out


def sma_rows(x: np.ndarray, periods: list[int], out: np.ndarray | None = None) -> np.ndarray:
    """:func:`market.indicators.sma_rows` (the same arguments and bits) in compiled code: :func:`window_mean_rows`."""
    for p in periods:
        check_period(p)
    x = np.ascontiguousarray(x, dtype=np.float64)
    out = np.empty((len(periods), len(x))) if out is None else out
    return window_mean_rows(x, np.asarray(periods, dtype=np.int64), out)
