"""Replay metrics beside two anchors, with intervals: buy & hold and a seeded random-decision baseline.

* Metrics of a daily equity curve come from ``evaluation.metrics.from_returns`` (total return, CAGR, Sharpe,
  Sortino, max drawdown); trade metrics from the trades: hit rate (P&L > 0), average R, exposure (share of
  bars with a position open) and turnover (traded notional / equity, per year).
* Intervals: 95 % circular block bootstrap of the daily returns (``replay.bootstrap`` resamples of
  ``replay.block``-bar blocks, seeded: ``evaluation.bootstrap``), for total return and Sharpe of every column.
* Costs: ``evaluation.costs``, the cost model of the portfolio and the backtest engine.
* Buy & hold: each ticker bought with an equal share of the cash at its first open in the period (same fees
  and slippage), held to the end.
* Random: the same decision dates, of which as many get a random BUY/SELL (others no decision) as it takes
  to make the same number of trades as the replay; levels at the distances the model chose, drawn at random.
  ``replay.random_runs`` seeds (with that many random decisions) give the model's rank among random
  decision-makers.
* Beside the bootstrap interval, the Sharpe ratio's Newey-West (HAC) interval and the probabilistic Sharpe ratio
  against 0 and against buy & hold's Sharpe over the same days (``evaluation.hac``, ``evaluation.psr``).
* DSR (Bailey & López de Prado) of the replay's daily returns with ``replay.trials`` trials (1 = the
  probabilistic Sharpe ratio); the dispersion of trial Sharpe ratios is taken from the random runs.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pandas as pd

from ..config import ReplayConfig
from ..evaluation.bootstrap import circular_block_indices, percentile_interval
from ..evaluation.costs import cost_model
from ..evaluation.metrics import from_returns, sharpe
from ..evaluation.overfitting import dsr_of_returns
from ..evaluation.psr import table_extras
from .portfolio import SIDE, Signal, SimResult

RETURN_METRICS = ("total_return", "cagr", "sharpe", "sortino", "max_drawdown")


def returns_of(equity: np.ndarray, initial: float) -> np.ndarray:
    """Daily returns of an equity curve that starts from ``initial``."""
    eq = np.concatenate([[initial], np.asarray(equity, dtype="float64")])
    return eq[1:] / eq[:-1] - 1.0


def curve_metrics(r: np.ndarray, ppy: float) -> dict[str, float]:
    """Return-based metrics of one daily return series."""
    m = from_returns(r, ppy)
    return {k: float(m[k][0]) for k in RETURN_METRICS}


def trade_metrics(sim: SimResult) -> dict[str, float]:
    """Hit rate, average R, trades, exposure and turnover of a simulation."""
    t = sim.trades
    return {"trades": len(t), "hit_rate": float((t["pnl"] > 0).mean()) if len(t) else math.nan,
            "avg_r": float(t["r_multiple"].mean()) if len(t) else math.nan,
            "exposure": float(sim.exposed.mean()) if len(sim.exposed) else 0.0, "turnover": float(sim.turnover)}


def bootstrap_interval(r: np.ndarray, rc: ReplayConfig, ppy: float) -> dict[str, tuple[float, float]]:
    """95 % circular block-bootstrap intervals of total return and Sharpe."""
    n = len(r)
    if n < 3:
        return {"total_return": (math.nan, math.nan), "sharpe": (math.nan, math.nan)}
    idx = circular_block_indices(n, rc.bootstrap, rc.block, np.random.default_rng(rc.seed))
    m = from_returns(r[idx].T, ppy)
    return {k: percentile_interval(m[k], 0.95) for k in ("total_return", "sharpe")}


def buy_and_hold(frames: dict[str, pd.DataFrame], dates: pd.DatetimeIndex, rc: ReplayConfig) -> np.ndarray:
    """Equity of an equal-weight buy & hold over ``dates`` (each ticker bought at its first open there)."""
    alloc = rc.initial_cash / len(frames)
    cost = cost_model(rc.fees_bps, rc.slippage_bps).buy_mult
    total = np.zeros(len(dates))
    for df in frames.values():
        seg = df.loc[(df.index >= dates[0]) & (df.index <= dates[-1])]
        if seg.empty:
            total += alloc
            continue
        shares = alloc / (seg["Open"].iloc[0] * cost)
        value = (shares * seg["Close"]).reindex(dates).ffill().fillna(alloc)
        total += value.to_numpy()
    return total


def random_signals(model: dict[str, dict[int, Signal]], closes: dict[str, np.ndarray], n_entries: int,
                   rng: np.random.Generator, long_only: bool) -> dict[str, dict[int, Signal]]:
    """``n_entries`` random BUY/SELL decisions spread over the model's decision bars (per ticker in proportion
    to its decisions), with stop/target distances drawn from the model's own trades."""
    dists = [(abs(s.stop / closes[t][j] - 1), abs(s.target / closes[t][j] - 1), s.confidence)
             for t, sig in model.items() for j, s in sig.items() if s.action in SIDE]
    bars = [(t, j) for t, sig in model.items() for j in sig]
    out: dict[str, dict[int, Signal]] = {t: {} for t in model}
    if not dists or not bars:
        return out
    picks = rng.choice(len(bars), size=min(n_entries, len(bars)), replace=False)
    for p in picks:
        t, j = bars[p]
        stop_d, target_d, conf = dists[rng.integers(len(dists))]
        side = 1 if long_only else int(rng.choice((-1, 1)))
        c = closes[t][j]
        out[t][j] = Signal("BUY" if side == 1 else "SELL", conf, c * (1 - side * stop_d), c * (1 + side * target_d))
    return out


def random_baseline(run: Callable[[dict[str, dict[int, Signal]]], SimResult], model: dict[str, dict[int, Signal]],
                    closes: dict[str, np.ndarray], target_trades: int, rc: ReplayConfig, seed: int
                    ) -> tuple[SimResult, int]:
    """A random decision stream whose simulation makes ``target_trades`` trades, or as close as a few tries get:
    the number of random decisions is rescaled by target / trades made after each try (same seed). Returns the
    simulation and the number of random decisions it used."""
    total = sum(len(s) for s in model.values())
    m, tried = max(1, min(target_trades, total)), set()
    best: tuple[SimResult, int] | None = None
    for _ in range(8):
        tried.add(m)
        sim = run(random_signals(model, closes, m, np.random.default_rng(seed), rc.mode == "long_only"))
        n = len(sim.trades)
        if best is None or abs(n - target_trades) < abs(len(best[0].trades) - target_trades):
            best = sim, m
        if n == target_trades:
            break
        nxt = max(1, min(total, round(m * target_trades / max(n, 1))))
        if nxt in tried:
            nxt = max(1, min(total, m + (1 if n < target_trades else -1)))
        if nxt in tried:
            break
        m = nxt
    assert best is not None
    return best


def random_runs(run: Callable[[dict[str, dict[int, Signal]]], SimResult], model: dict[str, dict[int, Signal]],
                closes: dict[str, np.ndarray], target_trades: int, rc: ReplayConfig) -> list[SimResult]:
    """``rc.random_runs`` random baselines: the first (seed ``rc.seed``) is matched to the replay's number of
    trades; the others (seeds ``rc.seed + k``) use as many random decisions as it needed."""
    first, m = random_baseline(run, model, closes, target_trades, rc, rc.seed)
    long_only = rc.mode == "long_only"
    return [first] + [run(random_signals(model, closes, m, np.random.default_rng(rc.seed + k), long_only))
                      for k in range(1, rc.random_runs)]


def dsr(r: np.ndarray, rc: ReplayConfig, random_sharpes: np.ndarray) -> float:
    """Deflated Sharpe ratio of the daily returns ``r`` with ``rc.trials`` trials."""
    var = float(np.var(random_sharpes, ddof=1)) if len(random_sharpes) > 1 else 0.0
    return dsr_of_returns(r, rc.trials, var)["dsr"]


def compare(sim: SimResult, frames: dict[str, pd.DataFrame], model: dict[str, dict[int, Signal]],
            run: Callable[[dict[str, dict[int, Signal]]], SimResult], rc: ReplayConfig, ppy: float) -> dict:
    """Every metric of the replay, buy & hold and random, with intervals, the random rank and the DSR."""
    closes = {t: df["Close"].to_numpy(dtype="float64") for t, df in frames.items()}
    r_model = returns_of(sim.equity, rc.initial_cash)
    bh = buy_and_hold(frames, sim.dates, rc)
    r_bh = returns_of(bh, rc.initial_cash)
    n_trades = len(sim.trades)
    rand_sims = random_runs(run, model, closes, n_trades, rc)
    r_rand = returns_of(rand_sims[0].equity, rc.initial_cash)
    sharpes = np.array([float(sharpe(returns_of(s.equity, rc.initial_cash), ppy)) for s in rand_sims])
    cols = {}
    for name, r, s in (("replay", r_model, sim), ("buy & hold", r_bh, None), ("random", r_rand, rand_sims[0])):
        row: dict = {**curve_metrics(r, ppy), "interval": bootstrap_interval(r, rc, ppy)}
        extra, row["interval"]["sharpe_hac"] = table_extras(r, ppy, r_bh)
        row.update(extra)
        if s is not None:
            row.update(trade_metrics(s))
        else:
            row.update(trades=len(frames), hit_rate=math.nan, avg_r=math.nan, exposure=1.0, turnover=math.nan)
        cols[name] = row
    own = cols["replay"]["sharpe"]
    finite = sharpes[np.isfinite(sharpes)]
    rank = float(np.mean(finite < own)) if len(finite) and np.isfinite(own) else math.nan
    per_bar = finite / math.sqrt(ppy)
    return {"columns": cols, "random_rank": rank, "random_runs": rc.random_runs,
            "random_trades": [len(s.trades) for s in rand_sims], "dsr": dsr(r_model, rc, per_bar),
            "trials": rc.trials, "buy_hold_equity": bh, "random_equity": rand_sims[0].equity,
            "returns": {"replay": r_model, "buy & hold": r_bh}}

