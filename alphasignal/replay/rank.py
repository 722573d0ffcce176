"""A rank portfolio over a universe: at each rebalance date, rank the tickers by a rung's P(up) and trade the legs.

Conventions (each is tested against hand-computed values in ``tests/test_rank_portfolio.py``):

* Scores: ``scores`` is a frame of decision dates x tickers holding P(up) in [0, 1]; NaN = the ticker is not
  ranked that date (no bar, not enough history). A score at date t is computed from bars <= t only (the caller's
  duty; ``tests`` alter every bar after t and check that the weights at t do not move).
* Ranks: descending P(up); ties are broken by ticker name (ascending), so the order is deterministic.
  ``k = max(1, floor(n * rank_fraction))`` of the ``n`` ranked tickers go long (the top k) and, in long-short,
  the bottom k go short, each with weight ``1 / k`` (equal weight); a leg needs ``2k <= n`` in long-short
  (otherwise nothing is held that period).
* Execution: weights decided at the close of t are traded at the next open in the universe's calendar; each ticker
  is bought or sold to ``weight x equity at that open`` (shares then drift with the prices until the next
  rebalance). A ticker with no bar that day trades at its last close. Costs: stage 05's model, price multipliers
  ``(1 + slippage)(1 + fee)`` on buys and ``(1 - slippage)(1 - fee)`` on sells
  (``evaluation.costs.cost_model``).
* Books: ``long`` (the top k at +1/k), ``short`` (the bottom k at -1/k: a short earns when they fall) and
  ``long_short`` (both: one unit of capital long and one short, so its return is about long minus the losers'
  return, as in Jiang, Kelly & Xiu 2023). Long-only mode trades the ``long`` book alone.
* Turnover: traded notional / equity at each rebalance (one-way: a full switch of a long-only book is 2.0),
  reported per rebalance and per year.
* Rank IC: Spearman correlation, per rebalance date, between the scores and each ticker's return from the open
  the weights are traded at to the open of the next rebalance's trades (what the book earns), averaged over dates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..evaluation.costs import cost_model

BOOKS = ("long", "short", "long_short")


def leg_size(n: int, fraction: float) -> int:
    """Tickers per leg among ``n`` ranked: ``max(1, floor(n * fraction))`` (0 when nothing is ranked)."""
    return 0 if n <= 0 else max(1, int(math.floor(n * fraction + 1e-9)))


def ranked(scores: pd.Series) -> list[str]:
    """Tickers with a score, best first: descending P(up), ties by ticker name."""
    s = scores.dropna()
    return [t for _, t in sorted(zip((-s).tolist(), s.index.astype(str), strict=True))]


def rank_weights(scores: pd.Series, fraction: float, book: str) -> pd.Series:
    """Target weights of one rebalance for ``book`` (long | short | long_short); tickers not held get 0."""
    order = ranked(scores)
    k = leg_size(len(order), fraction)
    w = pd.Series(0.0, index=scores.index)
    if k == 0 or (book != "long" and 2 * k > len(order)):
        return w
    if book in ("long", "long_short"):
        w[order[:k]] = 1.0 / k
    if book in ("short", "long_short"):
        w[order[-k:]] = -1.0 / k
    return w


@dataclass(frozen=True)
class BookResult:
    """One book over the calendar: equity at each close, and its rebalances' turnover and weights."""

    equity: np.ndarray
    turnover: np.ndarray  # traded notional / equity, per executed rebalance
    weights: pd.DataFrame  # decision dates x tickers (target weights)
    fees: float  # cost paid in cash (fees + slippage), in currency


@dataclass(frozen=True)
class RankResult:
    """Every book of a rank portfolio, the calendar, the rank IC per date and where each rebalance was traded."""

    dates: pd.DatetimeIndex
    books: dict[str, BookResult]
    ic: pd.Series  # rank IC per decision date (NaN where undefined)
    executed: pd.DatetimeIndex  # the open each decision date's weights were traded at


def _panel(frames: dict[str, pd.DataFrame], dates: pd.DatetimeIndex) -> tuple[np.ndarray, np.ndarray]:
    """(open, close) as dates x tickers arrays; a missing bar trades and marks at the last close."""
    close = pd.DataFrame({t: df["Close"] for t, df in frames.items()}).reindex(dates)
    opn = pd.DataFrame({t: df["Open"] for t, df in frames.items()}).reindex(dates)
    last = close.ffill()
    prev = last.shift(1)
    opn = opn.fillna(prev)  # no bar today: the last close is the price
    return opn.to_numpy(dtype="float64"), last.to_numpy(dtype="float64")


def simulate_book(opn: np.ndarray, close: np.ndarray, targets: dict[int, np.ndarray], initial: float, fees_bps: float,
                  slippage_bps: float) -> tuple[np.ndarray, list[float], float]:
    """Run one book: ``targets[k]`` = weights traded at the open of calendar row k. Returns (equity at each close,
    turnover per rebalance, costs paid)."""
    costs = cost_model(fees_bps, slippage_bps)
    buy, sell = costs.buy_mult, costs.sell_mult
    n_dates, n_tickers = close.shape
    cash, shares = float(initial), np.zeros(n_tickers)
    equity, turnover, paid = np.empty(n_dates), [], 0.0
    for k in range(n_dates):
        w = targets.get(k)
        if w is not None:
            px = opn[k]
            held = np.nan_to_num(px)  # a ticker with no price yet holds nothing
            eq_open = cash + float(shares @ held)
            ok = np.isfinite(px)
            target = np.where(ok, w * eq_open / np.where(ok, px, 1.0), 0.0)
            delta = target - shares
            up, down = np.clip(delta, 0, None), np.clip(-delta, 0, None)
            cash -= float(up @ (held * buy)) - float(down @ (held * sell))
            paid += float(up @ (held * (buy - 1))) + float(down @ (held * (1 - sell)))
            turnover.append(float(np.abs(delta) @ held) / eq_open if eq_open > 0 else 0.0)
            shares = target
        equity[k] = cash + float(shares @ np.nan_to_num(close[k]))
    return equity, turnover, paid


def rank_ic(scores: pd.Series, forward: pd.Series) -> float:
    """Spearman correlation of scores and forward returns over the tickers that have both (NaN if undefined)."""
    both = pd.concat([scores, forward], axis=1).dropna()
    if len(both) < 3 or both.iloc[:, 0].nunique() < 2 or both.iloc[:, 1].nunique() < 2:
        return math.nan
    r = both.rank()
    return float(np.corrcoef(r.iloc[:, 0], r.iloc[:, 1])[0, 1])


def simulate_rank(frames: dict[str, pd.DataFrame], scores: pd.DataFrame, fraction: float, mode: str,
                  start: pd.Timestamp, end: pd.Timestamp | None, initial: float, fees_bps: float,
                  slippage_bps: float) -> RankResult:
    """Every book of the rank portfolio over the calendar ``[start, end]`` of the universe (see the module doc)."""
    end = end if end is not None else max(df.index[-1] for df in frames.values())
    dates = pd.DatetimeIndex(sorted(set().union(*(df.index[(df.index >= start) & (df.index <= end)]
                                                   for df in frames.values()))))
    tickers = list(frames)
    scores = scores.reindex(columns=tickers)
    scores = scores[(scores.index >= dates[0]) & (scores.index <= dates[-1])]
    opn, close = _panel(frames, dates)
    pos = dates.get_indexer(scores.index)
    rows = {d: int(p) + 1 for d, p in zip(scores.index, pos, strict=True) if p >= 0 and p + 1 < len(dates)}
    decided = [d for d in scores.index if d in rows]
    executed = pd.DatetimeIndex([dates[rows[d]] for d in decided])
    books = {}
    for book in (("long",) if mode == "long_only" else BOOKS):
        w = pd.DataFrame([rank_weights(scores.loc[d], fraction, book) for d in decided], index=decided,
                         columns=tickers) if decided else pd.DataFrame(columns=tickers, dtype="float64")
        targets = {rows[d]: w.loc[d].to_numpy(dtype="float64") for d in decided}
        eq, turn, paid = simulate_book(opn, close, targets, initial, fees_bps, slippage_bps)
        books[book] = BookResult(eq, np.asarray(turn), w, paid)
    # forward return of each ticker from its traded open to the next rebalance's traded open (the last: the end)
    ic = {}
    for i, d in enumerate(decided):
        a = rows[d]
        b = rows[decided[i + 1]] if i + 1 < len(decided) else None
        exit_px = opn[b] if b is not None else close[-1]
        fwd = pd.Series(exit_px / opn[a] - 1.0, index=tickers)
        ic[d] = rank_ic(scores.loc[d], fwd)
    return RankResult(dates, books, pd.Series(ic, dtype="float64"), executed)


def ic_summary(ic: pd.Series) -> dict[str, float]:
    """Mean rank IC over dates, its standard error, t statistic and the dates counted."""
    v = ic.dropna().to_numpy()
    n = len(v)
    if n == 0:
        return {"ic_mean": math.nan, "ic_se": math.nan, "ic_t": math.nan, "ic_dates": 0}
    mean = float(v.mean())
    se = float(v.std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan
    return {"ic_mean": mean, "ic_se": se, "ic_t": mean / se if se and se > 0 else math.nan, "ic_dates": n}


def rebalance_dates(frames: dict[str, pd.DataFrame], start: pd.Timestamp, end: pd.Timestamp | None,
                    every: int) -> pd.DatetimeIndex:
    """Every ``every``-th date of the universe's calendar from ``start`` to ``end``."""
    cal = pd.DatetimeIndex(sorted(set().union(*(df.index for df in frames.values()))))
    cal = cal[(cal >= start) & ((cal <= end) if end is not None else True)]
    return cal[::every]
