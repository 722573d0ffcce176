"""Backtest test helpers: a slow, obviously-correct per-configuration reference loop, and random valid grids.

The reference re-states the execution conventions in plain Python, one configuration and one bar at a time,
with its own signal rules per strategy; only the indicator series are shared with the engine (they have their
own tests in tests/test_indicators*).
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from alphasignal.backtest.strategies import PARAM_SPECS, build_row, row_keys, validate_params


def _rule(strategy: str, p: dict, pos: int, c: float, a: float, b: float, short: bool,
          prev: tuple[float, float] | None = None) -> int:
    """Position wanted at this close, given indicator values a, b (NaN = warm-up -> flat); with ``prev`` (the
    values at the bar before) a crossover strategy follows entry="cross": only a crossing changes the position."""
    if prev is not None:
        a0, b0 = prev
        if a0 < b0 and a > b:
            return 1
        if a0 > b0 and a < b:
            return -1 if short else 0
        return pos
    if math.isnan(a) or math.isnan(b):
        return 0
    if strategy in ("MA_Crossover", "MACD"):
        return 1 if a > b else (-1 if short and a < b else 0)
    if strategy == "Bollinger_Breakout":
        mid, upper, lower = a, a + p["num_std"] * b, a - p["num_std"] * b
        if not p["mean_reversion"]:
            if c > upper:
                return 1
            if c < lower:
                return -1 if short else 0
            if pos == 1 and c < mid or pos == -1 and c > mid:
                return 0
            return pos
        if c < lower:
            return 1
        if c > upper:
            return -1 if short else 0
        if pos == 1 and c > mid or pos == -1 and c < mid:
            return 0
        return pos
    if strategy == "RSI_Reversion":
        if a < p["lower"]:
            return 1
        if a > p["upper"]:
            return -1 if short else 0
        return pos
    if strategy == "Donchian_Breakout":
        if c > a:
            return 1
        if c < b:
            return -1 if short else 0
        return pos
    raise AssertionError(strategy)


def reference_backtest(df: pd.DataFrame, strategy: str, p: dict, *, mode: str = "long_only", fill: str = "close",
                       fees_bps: float = 0.0, slippage_bps: float = 0.0, risk_free: float = 0.0, ppy: float = 252.0,
                       lo: int = 0, hi: int | None = None, entry: str = "state") -> dict:
    """Metrics of one configuration, computed bar by bar; also returns the equity curve and positions."""
    close, opn = df["Close"].to_numpy(float), df["Open"].to_numpy(float)
    high, low = df["High"].to_numpy(float), df["Low"].to_numpy(float)
    hi = len(close) if hi is None else hi
    keys = row_keys(strategy, p)
    ind_a, ind_b = build_row(keys[0], high, low, close), build_row(keys[-1], high, low, close)
    fee, slip, short = fees_bps / 1e4, slippage_bps / 1e4, mode == "long_short"
    buy_mult, sell_mult = (1 + slip) * (1 + fee), (1 - slip) * (1 - fee)
    cash, shares, pos, pending, dead = 1.0, 0.0, 0, 0, False
    trade_pnls, entry_equity, exposed, turnover = [], 0.0, 0, 0.0
    equity, positions = [], []

    def trade(new: int, price: float) -> None:
        nonlocal cash, shares, entry_equity, turnover, pos
        turnover += abs(new - pos)
        if shares > 0:
            cash += shares * price * sell_mult
        elif shares < 0:
            cash -= -shares * price * buy_mult
        if shares != 0:
            trade_pnls.append(cash - entry_equity)
        shares = 0.0
        if new != 0:
            entry_equity = cash
            n = cash / (price * buy_mult)
            if new > 0:
                shares, cash = n, 0.0
            else:
                shares, cash = -n, cash + n * price * sell_mult
        pos = new

    for t in range(lo, hi):
        if fill == "next_open" and pending != pos:
            trade(pending, opn[t])
        exposed += shares != 0
        value = cash + shares * close[t]
        if value <= 0 and not dead:
            if shares != 0:
                trade_pnls.append(-entry_equity)
            turnover += abs(pos)
            cash, shares, pos, dead, value = 0.0, 0.0, 0, True, 0.0
        cross = entry == "cross" and strategy in ("MA_Crossover", "MACD")
        prev = (ind_a[t - 1], ind_b[t - 1]) if cross and t > 0 else (math.nan, math.nan) if cross else None
        want = 0 if dead else _rule(strategy, p, pos, close[t], ind_a[t], ind_b[t], short, prev)
        if fill == "next_open":
            pending = want
        elif want != pos:
            trade(want, close[t])
            value = cash + shares * close[t]
        equity.append(value)
        positions.append(want)
    if shares != 0:
        trade_pnls.append(equity[-1] - entry_equity)

    eq = np.array(equity)
    prev = np.concatenate([[1.0], eq[:-1]])
    r = np.where(prev > 0, eq / np.where(prev > 0, prev, 1.0) - 1.0, 0.0)
    n = len(r)
    rf = (1 + risk_free) ** (1 / ppy) - 1
    sd = r.std(ddof=1)
    down = np.sqrt(np.mean(np.minimum(r - rf, 0.0) ** 2))
    peak = np.maximum.accumulate(np.concatenate([[1.0], eq]))[1:]
    mdd = float(np.max(1 - eq / peak))
    cagr = eq[-1] ** (ppy / n) - 1 if eq[-1] > 0 else -1.0
    pnl = np.array(trade_pnls)
    wins, losses = pnl[pnl > 0].sum(), -pnl[pnl < 0].sum()
    return {
        "total_return": eq[-1] - 1, "cagr": cagr, "volatility": sd * np.sqrt(ppy),
        "sharpe": (r.mean() - rf) / sd * np.sqrt(ppy) if sd > 0 else np.nan,
        "sortino": (r.mean() - rf) / down * np.sqrt(ppy) if down > 0 else np.nan,
        "max_drawdown": mdd, "calmar": cagr / mdd if mdd > 0 else np.nan, "trades": len(pnl),
        "win_rate": (pnl > 0).mean() if len(pnl) else np.nan, "exposure": exposed / n, "turnover": turnover * ppy / n,
        "profit_factor": wins / losses if losses > 0 else (np.inf if wins > 0 else np.nan),
        "equity": eq, "positions": np.array(positions), "returns": r,
    }


def random_configs(strategy: str, rng: np.random.Generator, k: int, max_window: int = 120) -> list[dict]:
    """``k`` valid random configurations on the PARAM_SPECS step grids (windows capped at ``max_window``)."""
    specs, out = PARAM_SPECS[strategy], []
    while len(out) < k:
        p = {}
        for name, s in specs.items():
            if s.type is bool:
                p[name] = bool(rng.integers(2))
            elif s.type is int:
                p[name] = int(rng.integers(s.min, min(s.max, max_window) + 1))
            else:
                p[name] = round(float(s.min + s.step * rng.integers(int((s.max - s.min) / s.step) + 1)), 10)
        if not validate_params(strategy, p):
            out.append(p)
    return out


@pytest.fixture(scope="session")
def reference():
    """The reference loop (a fixture so test modules need no import path tricks)."""
    return reference_backtest


@pytest.fixture(scope="session")
def configs_for():
    """random_configs(strategy, rng, k)."""
    return random_configs


@pytest.fixture
def sweep_refuses(tmp_path):
    """``check(strategy_file, class_name, needle)``: stage 05 with that strategy file exits 2 with one ``error:``
    line holding ``needle`` and writes nothing."""
    def check(path: Path, name: str, needle: str) -> None:
        out = tmp_path / "out"
        res = subprocess.run([sys.executable, "05_sweep_backtest.py", "--strategy-file", str(path), "--strategy",
                              name, "--source", "offline", "--output", str(out / "r.csv")],
                             cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True, timeout=600)
        assert res.returncode == 2, res.stderr
        assert res.stderr.startswith("error: ") and res.stderr.count("\n") == 1, res.stderr
        assert needle in res.stderr and not out.exists()

    return check
