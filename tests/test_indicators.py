"""Indicators against hand-computed values and a second, independent formulation (loops / pandas)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from alphasignal.market import indicators as ind

NAN = float("nan")


def _close(a, b):
    np.testing.assert_allclose(np.asarray(a, dtype=float), np.asarray(b, dtype=float), rtol=1e-10, atol=1e-10,
                               equal_nan=True)


# ---- hand-computed cases ----

def test_sma_ema_by_hand():
    _close(ind.sma(np.array([1.0, 2, 3, 4, 5]), 3), [NAN, NAN, 2, 3, 4])
    # EMA(3): alpha = 0.5, seeded with mean(2, 4, 6) = 4; then 0.5*8 + 0.5*4 = 6; 0.5*4 + 0.5*6 = 5
    _close(ind.ema(np.array([2.0, 4, 6, 8, 4]), 3), [NAN, NAN, 4, 6, 5])
    _close(ind.sma(np.array([1.0, 2]), 3), [NAN, NAN])


def test_rsi_by_hand():
    # diffs 1, 1, -1, 1; Wilder(2): seed gain 1 / loss 0 -> 100; then gain .5 / loss .5 -> 50; gain .75 / loss .25 -> 75
    _close(ind.rsi(np.array([1.0, 2, 3, 2, 3]), 2), [NAN, NAN, 100, 50, 75])
    _close(ind.rsi(np.array([5.0, 5, 5, 5]), 2), [NAN, NAN, 50, 50])  # no movement: neutral, not NaN


def test_atr_and_true_range_by_hand():
    h = np.array([10.0, 12, 11, 15])
    lo = np.array([8.0, 9, 7, 12])
    c = np.array([9.0, 11, 8, 14])
    # TR: 2 (first bar H-L); max(3, |12-9|, |9-9|) = 3; max(4, 0, 4) = 4; max(3, |15-8|=7, |12-8|=4) = 7
    _close(ind.true_range(h, lo, c), [2, 3, 4, 7])
    # ATR(2): seed mean(2, 3) = 2.5; (2.5*1 + 4)/2 = 3.25; (3.25 + 7)/2 = 5.125
    _close(ind.atr(h, lo, c, 2), [NAN, 2.5, 3.25, 5.125])


def test_bollinger_and_macd_by_hand():
    lower, mid, upper = ind.bollinger(np.array([1.0, 2, 3]), 3, 2.0)
    sd = math.sqrt(2 / 3)  # population std of 1, 2, 3
    _close(mid, [NAN, NAN, 2])
    _close(upper, [NAN, NAN, 2 + 2 * sd])
    _close(lower, [NAN, NAN, 2 - 2 * sd])
    line, sig, hist = ind.macd(np.array([1.0, 2, 3, 4, 5, 6]), fast=2, slow=3, signal=2)
    # EMA2 seeds at i=1 with 1.5, then alpha 2/3: 2.5, 3.5, 4.5, 5.5; EMA3 seeds at i=2 with 2, alpha .5: 3, 4, 5
    _close(line, [NAN, NAN, 0.5, 0.5, 0.5, 0.5])
    _close(sig, [NAN, NAN, NAN, 0.5, 0.5, 0.5])
    _close(hist, [NAN, NAN, NAN, 0, 0, 0])


# ---- a second formulation: plain loops and pandas, on real data ----

def _loop_wilder(x, period, alpha):
    out = [NAN] * len(x)
    if len(x) < period:
        return out
    prev = sum(x[:period]) / period
    out[period - 1] = prev
    for i in range(period, len(x)):
        prev = alpha * x[i] + (1 - alpha) * prev
        out[i] = prev
    return out


def _loop_rsi(c, period):
    d = [c[i] - c[i - 1] for i in range(1, len(c))]
    g = _loop_wilder([max(x, 0.0) for x in d], period, 1 / period)
    lo = _loop_wilder([max(-x, 0.0) for x in d], period, 1 / period)
    out = [NAN]
    for a, b in zip(g, lo, strict=True):
        out.append(NAN if math.isnan(a) else (50.0 if a == b == 0 else 100.0 if b == 0 else 100 - 100 / (1 + a / b)))
    return out


def test_against_pandas_and_loops(aapl):
    c = aapl["Close"].to_numpy()
    h, lo, v = aapl["High"].to_numpy(), aapl["Low"].to_numpy(), aapl["Volume"].to_numpy()
    s = pd.Series(c)
    for p in (2, 10, 20, 50):
        _close(ind.sma(c, p), s.rolling(p).mean())
        _close(ind.ema(c, p), _loop_wilder(list(c), p, 2 / (p + 1)))
    _close(ind.volume_ma(v, 20), pd.Series(v).rolling(20).mean().to_numpy())
    _close(ind.rsi(c, 14), _loop_rsi(list(c), 14))
    lower, mid, upper = ind.bollinger(c, 20, 2.0)
    _close(upper, s.rolling(20).mean() + 2 * s.rolling(20).std(ddof=0))
    _close(lower, s.rolling(20).mean() - 2 * s.rolling(20).std(ddof=0))
    tr = [h[0] - lo[0]] + [max(h[i] - lo[i], abs(h[i] - c[i - 1]), abs(lo[i] - c[i - 1])) for i in range(1, len(c))]
    _close(ind.atr(h, lo, c, 14), _loop_wilder(tr, 14, 1 / 14))
    line, sig, _ = ind.macd(c)
    ref_line = np.array(_loop_wilder(list(c), 12, 2 / 13)) - np.array(_loop_wilder(list(c), 26, 2 / 27))
    _close(line, ref_line)
    _close(sig[25:], _loop_wilder(list(ref_line[25:]), 9, 2 / 10))


def test_no_lookahead_and_series_in_series_out(aapl):
    full = ind.indicator_frame(aapl)
    prefix = ind.indicator_frame(aapl.iloc[:400])
    _close(prefix.to_numpy(), full.iloc[:400].to_numpy())  # later bars never change earlier values
    out = ind.rsi(aapl["Close"], 14)
    assert isinstance(out, pd.Series) and out.index.equals(aapl.index)
    assert isinstance(ind.sma(aapl["Close"].to_numpy(), 5), np.ndarray)


def test_snapshot_matches_frame_and_handles_warmup(aapl):
    snap = ind.snapshot(aapl)
    last = ind.indicator_frame(aapl).iloc[-1]
    assert snap.keys() == set(last.index)
    assert all(snap[k] == pytest.approx(round(float(last[k]), 6)) for k in snap)
    short = ind.snapshot(aapl, end=10)
    assert short["close"] == pytest.approx(aapl["Close"].iloc[9]) and short["sma_20"] is None


def test_bad_parameters():
    with pytest.raises(ValueError, match="positive integer"):
        ind.sma(np.ones(5), 0)
    with pytest.raises(ValueError, match="positive integer"):
        ind.ema(np.ones(5), 2.5)
    with pytest.raises(ValueError, match="fast < slow"):
        ind.macd(np.ones(50), 26, 12)


def test_macd_rows_batch_every_series_bit_for_bit_as_one_at_a_time(monkeypatch):
    """macd_rows (the sweep's MACD table: each EMA once, signal EMAs in batches of columns, one pandas call each)
    equals the MACD written one series at a time -- EMA fast - EMA slow, and the signal EMA of the line from its
    first bar -- bit for bit, across batch boundaries and for series too short to have a signal."""
    monkeypatch.setattr(ind, "MACD_BATCH", 3)
    rng = np.random.default_rng(3)
    c = 100 * np.exp(np.cumsum(rng.normal(0, 0.02, 400)))
    specs = [(f, s, g) for f, s, g in rng.integers(2, 60, (40, 3)) if f < s] + [(3, 9, None), (5, 390, 20)]
    rows = ind.macd_rows(c, specs)
    for (fast, slow, signal), row in zip(specs, rows, strict=True):
        line = ind.ema(c, fast) - ind.ema(c, slow)
        want = line if signal is None else np.concatenate([np.full(slow - 1, NAN), ind.ema(line[slow - 1:], signal)])
        assert np.array_equal(row, want, equal_nan=True), (fast, slow, signal)
    assert np.isnan(rows[-1]).all()  # 390 + 20 bars of warm-up: longer than the series
    with pytest.raises(ValueError, match="fast < slow"):
        ind.macd_rows(c, [(9, 3, 2)])
