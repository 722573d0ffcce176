"""backtest/rolling.py: the compiled rows of the indicator table equal the NumPy formulas bit for bit (so a table is
the same whichever builds it): standard deviations across NumPy's pairwise-summation block edges, and simple
averages."""

from __future__ import annotations

import numpy as np
import pytest

from alphasignal.backtest.rolling import PAIRWISE_BLOCK, sma_rows, window_std_rows
from alphasignal.backtest.strategies import build_row, build_rows, decode_row, pack_rows
from alphasignal.market import indicators


def _numpy_std(x: np.ndarray, p: int) -> np.ndarray:
    out = np.full(len(x), np.nan)
    if len(x) >= p:
        out[p - 1:] = np.lib.stride_tricks.sliding_window_view(x, p).std(axis=1)
    return out


def test_window_std_rows_equal_numpys_sliding_std_bit_for_bit():
    """Periods below 8 (a plain sum), up to a block, just past it and several blocks deep (NumPy's recursion), and
    longer than the series (all NaN), on a random walk with a price-like level (where rounding differs most)."""
    rng = np.random.default_rng(11)
    x = 150.0 * np.exp(np.cumsum(rng.normal(0, 0.02, 1500)))
    b = PAIRWISE_BLOCK
    periods = np.array([1, 2, 7, 8, 9, 15, 16, 17, 100, b - 1, b, b + 1, 2 * b - 7, 2 * b + 9, 777, 1500, 1501])
    out = np.empty((len(periods), len(x)))
    window_std_rows(x, periods, out)
    for row, p in zip(out, periods, strict=True):
        assert np.array_equal(row, _numpy_std(x, int(p)), equal_nan=True), p
    assert np.isnan(out[-1]).all() and not np.isnan(out[-2, -1])


def test_build_rows_std_rows_are_build_rows_numpy_rows():
    """The indicator table's sma and std rows (compiled, batched) against build_row's NumPy formula, beside other
    rows."""
    rng = np.random.default_rng(3)
    close = 50.0 + np.cumsum(rng.normal(0, 1, 600))
    keys = [("sma", 1), ("sma", 20), ("sma", 601), ("std", 5), ("std", 20), ("std", 200), ("rsi", 14)]
    codes = np.sort(np.concatenate([pack_rows(k[0], [np.array([k[1]])], 1) for k in keys]))
    table = build_rows(codes, close + 1, close - 1, close, compiled=True)
    for row, code in zip(table, codes, strict=True):
        key = decode_row(int(code))
        assert np.array_equal(row, build_row(key, close + 1, close - 1, close), equal_nan=True), key


@pytest.mark.parametrize("n", [1, 2, 7, 5000])
def test_compiled_sma_rows_equal_the_numpy_sma_rows_bit_for_bit(n):
    """Every period from 1 to past the series' length (all NaN), on a price-like random walk; a bad period is the
    same ValueError."""
    rng = np.random.default_rng(n)
    x = 150.0 * np.exp(np.cumsum(rng.normal(0, 0.02, n)))
    periods = [*range(1, min(n, 300) + 3), n + 1]
    got = sma_rows(x, periods)
    assert np.array_equal(got, indicators.sma_rows(x, periods), equal_nan=True)
    assert np.isnan(got[-1]).all() and (n < 3 or not np.isnan(got[2, 2:]).any())
    for bad in (0, 2.5):
        with pytest.raises(ValueError, match="positive integer"):
            sma_rows(x, [5, bad])
