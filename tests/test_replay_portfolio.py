"""The replay's portfolio loop against fills computed by hand: stop, target, gaps, both levels in one bar, time
and signal exits, skipped entries, costs, sizing and one cash account shared by two tickers."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from alphasignal.config import ReplayConfig
from alphasignal.replay.portfolio import Signal, simulate

DATES = pd.bdate_range("2024-01-01", periods=6)


def _frame(bars: list[tuple[float, float, float, float]]) -> pd.DataFrame:
    """OHLC rows (open, high, low, close) on business days from 2024-01-01."""
    df = pd.DataFrame(bars, columns=["Open", "High", "Low", "Close"], index=DATES[:len(bars)])
    df["Volume"] = 1.0
    return df


FLAT = (100.0, 101.0, 99.0, 100.0)
RC = ReplayConfig(initial_cash=1000.0, fraction=0.5, max_position=0.5, fees_bps=0.0, slippage_bps=0.0, max_hold=0)
BUY = Signal("BUY", 0.8, stop=95.0, target=110.0)
SELL = Signal("SELL", 0.8, stop=105.0, target=90.0)


def _one(bars, signals, rc=RC):
    sim = simulate({"X": _frame(bars)}, {"X": signals}, rc, DATES[0])
    return sim, sim.trades.to_dict("records")


@pytest.mark.parametrize(("bar2", "price", "reason", "r"), [
    ((101.0, 103.0, 94.0, 96.0), 95.0, "stop", -1.0),  # low crosses the stop: filled at the stop
    ((101.0, 111.0, 99.0, 108.0), 110.0, "target", 2.0),  # high crosses the target: filled at the target
    ((90.0, 92.0, 88.0, 91.0), 90.0, "stop", -2.0),  # gap down through the stop: filled at the open
    ((115.0, 116.0, 112.0, 113.0), 115.0, "target", 3.0),  # gap up through the target: filled at the open
    ((101.0, 111.0, 94.0, 100.0), 95.0, "stop", -1.0),  # both in one bar: the stop (conservative)
])
def test_long_levels_fill_as_computed_by_hand(bar2, price, reason, r) -> None:
    # decision at the close of bar 0 -> long 500 / 100 = 5 shares at the open of bar 1 (100)
    sim, trades = _one([FLAT, FLAT, bar2, FLAT], {0: BUY})
    (t,) = trades
    assert (t["entry_date"], t["entry_price"], t["shares"]) == ("2024-01-02", 100.0, 5.0)
    assert (t["exit_date"], t["exit_price"], t["exit_reason"]) == ("2024-01-03", price, reason)
    assert t["r_multiple"] == pytest.approx(r)
    assert t["pnl"] == pytest.approx(5 * (price - 100.0))
    assert sim.equity[-1] == pytest.approx(1000 + 5 * (price - 100.0))


@pytest.mark.parametrize(("bar2", "price", "reason"), [
    ((101.0, 106.0, 99.0, 104.0), 105.0, "stop"),
    ((99.0, 100.0, 89.0, 92.0), 90.0, "target"),
    ((107.0, 108.0, 106.0, 107.0), 107.0, "stop"),  # gap up through a short's stop
    ((99.0, 106.0, 89.0, 100.0), 105.0, "stop"),  # both: the stop
])
def test_short_levels_mirror_the_long_ones(bar2, price, reason) -> None:
    sim, (t,) = _one([FLAT, FLAT, bar2, FLAT], {0: SELL})
    assert (t["side"], t["exit_price"], t["exit_reason"]) == ("short", price, reason)
    assert t["pnl"] == pytest.approx(-5 * (price - 100.0))
    assert sim.equity[-1] == pytest.approx(1000 - 5 * (price - 100.0))


def test_levels_are_live_on_the_entry_bar_and_the_short_is_marked_at_each_close() -> None:
    sim, (t,) = _one([FLAT, (100.0, 100.5, 94.5, 97.0), FLAT], {0: BUY})
    assert (t["entry_date"], t["exit_date"], t["exit_reason"], t["bars_held"]) == ("2024-01-02", "2024-01-02",
                                                                                    "stop", 0)
    sim, _ = _one([FLAT, FLAT, (100.0, 103.0, 99.0, 102.0), FLAT], {0: SELL})
    assert sim.equity[2] == pytest.approx(1000 - 5 * 2.0)  # short 5 shares marked at 102


def test_entry_is_skipped_when_the_next_open_is_beyond_a_level() -> None:
    sim, trades = _one([FLAT, (94.0, 96.0, 93.0, 95.0), FLAT], {0: BUY})
    assert trades == [] and sim.skipped == 1 and sim.equity[-1] == 1000.0


def test_time_exit_after_max_hold_bars_at_the_next_open() -> None:
    rc = ReplayConfig(**{**RC.__dict__, "max_hold": 2})
    bars = [FLAT, FLAT, FLAT, (102.0, 103.0, 101.0, 102.0), FLAT]
    _, (t,) = _one(bars, {0: BUY}, rc)
    assert (t["exit_date"], t["exit_price"], t["exit_reason"], t["bars_held"]) == ("2024-01-04", 102.0, "time", 2)


def test_opposite_decision_exits_and_reverses_at_the_next_open() -> None:
    bars = [FLAT, FLAT, FLAT, (103.0, 104.0, 102.0, 103.0), FLAT]
    sim, trades = _one(bars, {0: BUY, 2: Signal("SELL", 0.8, stop=108.0, target=95.0)})
    first, second = trades
    assert (first["exit_date"], first["exit_price"], first["exit_reason"]) == ("2024-01-04", 103.0, "signal")
    # equity at the close of bar 2 is 1000 (flat prices): the short is 500 / 103 shares at 103
    assert (second["side"], second["entry_date"], second["entry_price"]) == ("short", "2024-01-04", 103.0)
    assert second["shares"] == pytest.approx(500 / 103)
    assert second["exit_reason"] == "open"
    assert sim.equity[-1] == pytest.approx(1000 + 5 * 3 - 500 / 103 * (100 - 103))


@pytest.mark.parametrize(("policy", "exits"), [("keep", "open"), ("close", "signal")])
def test_hold_policy(policy, exits) -> None:
    rc = ReplayConfig(**{**RC.__dict__, "hold_policy": policy})
    _, (t,) = _one([FLAT, FLAT, FLAT, FLAT], {0: BUY, 1: Signal("HOLD", 0.6)}, rc)
    assert t["exit_reason"] == exits
    assert t["exit_date"] == ("2024-01-03" if policy == "close" else "2024-01-04")


def test_same_direction_keeps_the_first_levels_and_long_only_never_shorts() -> None:
    _, trades = _one([FLAT, FLAT, (100.0, 101.0, 96.0, 97.0), FLAT], {0: BUY, 1: Signal("BUY", 0.9, 97.0, 120.0)})
    assert len(trades) == 1 and trades[0]["stop"] == 95.0 and trades[0]["exit_reason"] == "open"
    rc = ReplayConfig(**{**RC.__dict__, "mode": "long_only"})
    _, trades = _one([FLAT, FLAT, FLAT, FLAT], {0: BUY, 1: SELL}, rc)
    assert [t["exit_reason"] for t in trades] == ["signal"] and trades[0]["side"] == "long"


def test_fees_and_slippage_as_in_stage_05() -> None:
    rc = ReplayConfig(**{**RC.__dict__, "fees_bps": 10.0, "slippage_bps": 20.0})
    sim, (t,) = _one([FLAT, FLAT, (101.0, 111.0, 99.0, 108.0), FLAT], {0: BUY}, rc)
    entry = 100 * 1.002
    shares = 500 / entry
    exit_ = 110 * 0.998
    assert t["entry_price"] == pytest.approx(entry) and t["shares"] == pytest.approx(shares)
    assert t["exit_price"] == pytest.approx(exit_)
    fees = shares * entry * 0.001 + shares * exit_ * 0.001
    assert t["pnl"] == pytest.approx(shares * (exit_ - entry) - fees)
    assert sim.equity[-1] == pytest.approx(1000 + t["pnl"])


def test_two_tickers_share_one_cash_account_and_sizing_rules() -> None:
    a = _frame([FLAT, FLAT, (100.0, 101.0, 99.0, 100.0), FLAT])
    b = _frame([(50.0, 51.0, 49.0, 50.0), (50.0, 51.0, 49.0, 50.0), (50.0, 56.0, 49.0, 55.0), (55.0, 56.0, 54.0, 55.0)])
    buy_b = Signal("BUY", 0.5, stop=45.0, target=60.0)
    rc = ReplayConfig(initial_cash=1000.0, fraction=0.6, max_position=0.6, fees_bps=0.0, slippage_bps=0.0,
                      max_hold=0)
    sim = simulate({"A": a, "B": b}, {"A": {0: BUY}, "B": {0: buy_b}}, rc, DATES[0])
    ta, tb = sim.trades.sort_values("ticker").to_dict("records")
    assert ta["shares"] == pytest.approx(6.0)  # 600 at 100
    assert tb["shares"] == pytest.approx(8.0)  # wants 600, only 400 of cash left: 400 / 50
    assert sim.equity[1] == pytest.approx(1000.0)
    assert sim.equity[2] == pytest.approx(6 * 100 + 8 * 55)  # all cash spent, B up 5
    # confidence sizing: 0.6 x 0.5 of equity for B; a short credits its proceeds to the cash
    rc_c = ReplayConfig(**{**rc.__dict__, "sizing": "confidence"})
    sell_b = Signal("SELL", 0.5, stop=60.0, target=40.0)
    sim = simulate({"A": a, "B": b}, {"A": {0: BUY}, "B": {0: sell_b}}, rc_c, DATES[0])
    ta, tb = sim.trades.sort_values("ticker").to_dict("records")
    assert ta["shares"] == pytest.approx(0.6 * 0.8 * 1000 / 100) and tb["shares"] == pytest.approx(300 / 50)
    assert sim.equity[2] == pytest.approx(1000 - 6 * 5)


def test_volatility_sizing_uses_past_returns_only() -> None:
    closes = [100.0, 102.0, 99.0, 101.0, 100.0, 100.0]
    df = _frame([(c, c + 1, c - 1, c) for c in closes])
    rc = ReplayConfig(initial_cash=1000.0, sizing="volatility", vol_target=0.15, vol_lookback=3, max_position=1.0,
                      fees_bps=0.0, slippage_bps=0.0, max_hold=0)
    sim = simulate({"X": df}, {"X": {3: Signal("BUY", 0.5, 90.0, 120.0)}}, rc, DATES[0], ppy=252.0)
    r = np.diff(np.log(closes[0:4]))
    frac = min(0.15 / (r.std(ddof=1) * math.sqrt(252)), 1.0)
    (t,) = sim.trades.to_dict("records")
    assert t["shares"] * t["entry_price"] == pytest.approx(frac * 1000)
