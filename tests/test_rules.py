"""Builtin rule engine: expected actions on clear synthetic series, valid contracts, rationale, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from alphasignal.charts.read import Candles
from alphasignal.charts.render import render_chart
from alphasignal.signals.rules import analyze_chart, chart_atr, rule_votes, signal_from_candles
from alphasignal.signals.schemas import TradingSignal


def _series(close: np.ndarray, wick: float = 0.2) -> Candles:
    opn = np.concatenate([[close[0]], close[:-1]])
    return Candles(opn, np.maximum(opn, close) + wick, np.minimum(opn, close) - wick, close, None, "synthetic",
                   np.arange(len(close), dtype=float))


@pytest.mark.parametrize("drift, action", [(0.6, "BUY"), (-0.6, "SELL")])
def test_rules_follow_clear_trends(drift, action):
    rng = np.random.default_rng(0)
    close = 100 + np.cumsum(drift + rng.normal(0, 0.3, 60))
    sig = signal_from_candles(_series(close), last_close=float(close[-1]))
    assert sig.action == action
    assert sig.confidence > 0.5
    votes = rule_votes(_series(close))
    assert votes["trend"] == votes["ma_cross"] == (1 if drift > 0 else -1)
    assert f"trend {votes['trend']:+d}" in sig.rationale and f"ma_cross {votes['ma_cross']:+d}" in sig.rationale
    if action == "BUY":
        assert sig.stop_loss < sig.entry_price < sig.take_profit
    else:
        assert sig.take_profit < sig.entry_price < sig.stop_loss


def test_rules_hold_on_flat_noise():
    close = 100 + 0.3 * np.sin(np.arange(60) / 2.0)
    sig = signal_from_candles(_series(close), last_close=100.0)
    assert sig.action == "HOLD"
    assert sig.stop_loss is None and sig.take_profit is None


def test_breakout_and_band_rules_fire_on_a_spike():
    close = np.concatenate([100 + 0.2 * np.sin(np.arange(55)), [101, 102, 103.5, 105, 107]])
    votes = rule_votes(_series(close))
    assert votes["breakout"] == 1  # the last close is the 20-bar high
    assert votes["bollinger"] == -1  # ... and far above the upper band
    assert votes["rsi"] == -1  # five straight up bars: overbought


def test_every_output_validates_even_on_wild_series():
    rng = np.random.default_rng(7)
    for i in range(60):
        n = int(rng.integers(5, 90))
        close = 50 * np.exp(np.cumsum(rng.normal(0.0, [0.005, 0.05, 0.3][i % 3], n)))
        sig = signal_from_candles(_series(close, wick=float(close.std() + 0.01)), last_close=float(rng.uniform(1, 500)))
        TradingSignal.model_validate(sig.model_dump())
        assert sig.check_levels() == []  # within the contract's default distance bounds
        assert len(sig.rationale) <= 600


def test_analyze_chart_is_deterministic_and_valid(aapl):
    trades = 0
    for s in range(0, 1200, 200):
        png = render_chart(aapl.iloc[s:s + 80], warmup=20)
        last = float(aapl["Close"].iloc[s + 79])
        a = analyze_chart(png, last_close=last)
        assert a == analyze_chart(png, last_close=last)
        TradingSignal.model_validate(a.model_dump())  # the contract's cross-field rules hold
        assert a.entry_price == pytest.approx(last)
        assert "relative units" not in a.rationale
        if a.action != "HOLD":  # levels at 1.5 / 3 ATR of the candles read from the chart (the pipeline's ATR)
            trades += 1
            atr = min(chart_atr(png, last), 0.1 * last)
            assert abs(a.stop_loss - last) == pytest.approx(1.5 * atr, rel=1e-4)
            assert abs(a.take_profit - last) == pytest.approx(3 * atr, rel=1e-4)
    assert trades


def test_unknown_last_close_uses_relative_units_and_says_so(aapl):
    sig = analyze_chart(render_chart(aapl.iloc[400:480], warmup=20))
    assert sig.entry_price == 100.0
    assert "relative units" in sig.rationale
