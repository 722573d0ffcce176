"""Trade the replay's decisions as one portfolio: a plain loop over bars, one function per order type.

Conventions (each is tested against hand-computed fills):

* A decision made at the close of bar t is executed at the open of bar t+1.
* Fills move against the order by ``slippage_bps``; fees are ``fees_bps`` of the filled notional, per side
  (``evaluation.costs``, stage 05's cost model: buying costs ``price * (1 + slippage) * (1 + fee)`` per share).
* The decision's stop-loss and take-profit are live orders from the entry bar on, checked against every bar's
  high and low. An open already beyond a level (a gap) fills at the open. When one bar reaches both levels the
  stop fills: the bar does not say which came first, so we assume the worse one.
* An entry whose next open is already beyond its stop or its target is not taken (counted as skipped).
* Exits at the next open: an opposite decision (which then reverses the position; long_only: SELL only
  closes), a HOLD when ``hold_policy=close``, or ``max_hold`` bars held (reason ``time``). A decision in the
  direction already held keeps the position and its original levels.
* Size is set at the decision's close from the equity then: ``fixed`` = fraction, ``confidence`` = fraction x
  confidence, ``volatility`` = vol_target / realised volatility (past ``vol_lookback`` bars), each capped at
  ``max_position``; a long never spends more than the cash there is (fractional shares).
* One cash account for every ticker; a short credits its proceeds and is marked at each close. Positions still
  open at the end are marked at the last close and listed with exit reason ``open``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..config import ReplayConfig
from ..evaluation.costs import CostModel, cost_model

SIDE = {"BUY": 1, "SELL": -1}


@dataclass(frozen=True)
class Signal:
    """What the simulator needs of one decision (levels in real prices; action "" = no usable decision)."""

    action: str
    confidence: float = 0.0
    stop: float | None = None
    target: float | None = None


@dataclass
class Position:
    ticker: str
    side: int  # +1 long, -1 short
    shares: float
    entry_date: pd.Timestamp
    entry_price: float
    stop: float
    target: float
    risk: float  # |entry - stop| per share: the R unit
    fees: float
    confidence: float
    decision_date: pd.Timestamp
    bars: int = 0


@dataclass(frozen=True)
class Order:
    kind: str  # enter | exit
    reason: str = ""  # exit: signal | time
    side: int = 0
    notional: float = 0.0
    stop: float = 0.0
    target: float = 0.0
    confidence: float = 0.0
    decision_date: pd.Timestamp | None = None


@dataclass
class Book:
    """The account while the loop runs: cash, open positions, pending orders and everything that happened."""

    cash: float
    costs: CostModel
    positions: dict[str, Position] = field(default_factory=dict)
    pending: dict[str, list[Order]] = field(default_factory=dict)
    trades: list[dict] = field(default_factory=list)
    fills: list[dict] = field(default_factory=list)
    skipped: int = 0
    traded: float = 0.0  # sum of |filled notional| / equity at the time (turnover numerator)


@dataclass(frozen=True)
class SimResult:
    dates: pd.DatetimeIndex
    equity: np.ndarray
    exposed: np.ndarray  # any position open at the close
    trades: pd.DataFrame
    fills: list[dict]
    skipped: int
    turnover: float  # traded notional / equity, per year


def simulate(frames: dict[str, pd.DataFrame], signals: dict[str, dict[int, Signal]], rc: ReplayConfig,
             start: pd.Timestamp, end: pd.Timestamp | None = None, ppy: float = 252.0) -> SimResult:
    """Run the book over every bar of every ticker in ``[start, end]``; ``signals[ticker][bar]`` is the decision
    made at that bar's close (bars index ``frames[ticker]``)."""
    end = end if end is not None else max(df.index[-1] for df in frames.values())
    dates = pd.DatetimeIndex(sorted(set().union(*(df.index[(df.index >= start) & (df.index <= end)]
                                                   for df in frames.values()))))
    arrays = {t: {k: df[k].to_numpy(dtype="float64") for k in ("Open", "High", "Low", "Close")}
              for t, df in frames.items()}
    bar_at = {t: df.index.get_indexer(dates) for t, df in frames.items()}  # bar of each date, -1 = none
    book = Book(rc.initial_cash, cost_model(rc.fees_bps, rc.slippage_bps))
    last_close: dict[str, float] = {}
    equity = np.empty(len(dates))
    exposed = np.zeros(len(dates), dtype=bool)
    prev_equity = rc.initial_cash
    for k, d in enumerate(dates):
        today = [(t, int(bar_at[t][k])) for t in frames if bar_at[t][k] >= 0]
        if book.pending:
            for t, j in today:  # the open: exits first, so their cash is there for the entries
                for order in [o for o in book.pending.get(t, []) if o.kind == "exit"]:
                    exit_position(book, t, arrays[t]["Open"][j], order.reason, d, prev_equity)
            for t, j in today:
                for order in [o for o in book.pending.pop(t, []) if o.kind == "enter"]:
                    enter_position(book, t, order, arrays[t]["Open"][j], d, prev_equity)
        for t, j in today:  # during the bar: live stop and target orders
            a = arrays[t]
            if t in book.positions:
                check_levels(book, t, a["Open"][j], a["High"][j], a["Low"][j], d, prev_equity)
            last_close[t] = a["Close"][j]
        equity[k] = mark(book, last_close)
        exposed[k] = bool(book.positions)
        for t, j in today:  # the close: decisions become orders for the next open
            sig = signals.get(t, {}).get(j)
            if sig is not None:
                vol = _ann_vol(arrays[t]["Close"], j, rc.vol_lookback, ppy) if rc.sizing == "volatility" else 0.0
                decide(book, t, sig, d, equity[k], vol, rc)
            pos = book.positions.get(t)
            if pos is not None:
                pos.bars += 1
                if rc.max_hold and pos.bars >= rc.max_hold and not book.pending.get(t):
                    book.pending[t] = [Order("exit", "time")]
        prev_equity = equity[k]
    for t, pos in list(book.positions.items()):  # still open: marked at the last close
        book.trades.append(_trade(pos, dates[-1], last_close[t], "open", 0.0))
    years = max(len(dates), 1) / ppy
    return SimResult(dates, equity, exposed, pd.DataFrame(book.trades, columns=TRADE_COLUMNS), book.fills,
                     book.skipped, book.traded / years)


def decide(book: Book, ticker: str, sig: Signal, date: pd.Timestamp, equity: float, vol: float,
           rc: ReplayConfig) -> None:
    """Turn the decision at this close into orders for the next open."""
    side = SIDE.get(sig.action, 0)
    pos = book.positions.get(ticker)
    orders: list[Order] = []
    if pos is not None:
        if side == pos.side:
            return  # same direction: keep the position and its levels
        if side == -pos.side or (sig.action == "HOLD" and rc.hold_policy == "close"):
            orders.append(Order("exit", "signal"))
    may_open = side == 1 or (side == -1 and rc.mode == "long_short")
    if may_open and (pos is None or side == -pos.side) and sig.stop is not None and sig.target is not None:
        notional = position_size(rc, equity, sig.confidence, vol)
        if notional > 0:
            orders.append(Order("enter", side=side, notional=notional, stop=sig.stop, target=sig.target,
                                confidence=sig.confidence, decision_date=date))
    if orders:
        book.pending[ticker] = orders


def position_size(rc: ReplayConfig, equity: float, confidence: float, vol: float) -> float:
    """Notional of a new position: the sizing rule's share of equity, capped at ``max_position``."""
    if rc.sizing == "fixed":
        frac = rc.fraction
    elif rc.sizing == "confidence":
        frac = rc.fraction * confidence
    else:
        frac = rc.vol_target / vol if vol > 0 else 0.0
    return max(0.0, min(frac, rc.max_position)) * max(equity, 0.0)


def enter_position(book: Book, ticker: str, order: Order, open_: float, date: pd.Timestamp, equity: float) -> None:
    """Open at this bar's open, unless the open is already beyond the stop or the target."""
    s = order.side
    if (s == 1 and not order.stop < open_ < order.target) or (s == -1 and not order.target < open_ < order.stop):
        book.skipped += 1
        return
    price = book.costs.fill_price(open_, s)
    shares = order.notional / price
    if s == 1:  # a long spends cash: never more than there is
        shares = min(shares, max(book.cash, 0.0) / (price * (1 + book.costs.fee)))
    if shares <= 0:
        book.skipped += 1
        return
    fees = book.costs.fee_on(shares * price)
    book.cash -= s * shares * price + fees
    book.traded += shares * price / max(equity, 1e-12)
    book.positions[ticker] = Position(ticker, s, shares, date, price, order.stop, order.target,
                                      abs(price - order.stop), fees, order.confidence, order.decision_date)
    book.fills.append({"date": date, "ticker": ticker, "kind": "enter", "side": s, "price": price, "shares": shares})


def exit_position(book: Book, ticker: str, raw_price: float, reason: str, date: pd.Timestamp,
                  equity: float) -> None:
    """Close the ticker's position at ``raw_price`` (slippage against us, fees) and record the trade."""
    pos = book.positions.pop(ticker, None)
    if pos is None:
        return
    price = book.costs.fill_price(raw_price, -pos.side)
    fee = book.costs.fee_on(pos.shares * price)
    book.cash += pos.side * pos.shares * price - fee
    book.traded += pos.shares * price / max(equity, 1e-12)
    book.trades.append(_trade(pos, date, price, reason, fee))
    book.fills.append({"date": date, "ticker": ticker, "kind": reason, "side": -pos.side, "price": price,
                       "shares": pos.shares})


def check_levels(book: Book, ticker: str, open_: float, high: float, low: float, date: pd.Timestamp,
                 equity: float) -> None:
    """Live stop and target on one bar: a gap through a level fills at the open; both reached: the stop."""
    pos = book.positions[ticker]
    if pos.side == 1:
        gap_stop, gap_target = open_ <= pos.stop, open_ >= pos.target
        hit_stop, hit_target = low <= pos.stop, high >= pos.target
    else:
        gap_stop, gap_target = open_ >= pos.stop, open_ <= pos.target
        hit_stop, hit_target = high >= pos.stop, low <= pos.target
    if gap_stop or gap_target:
        exit_position(book, ticker, open_, "stop" if gap_stop else "target", date, equity)
    elif hit_stop:
        exit_position(book, ticker, pos.stop, "stop", date, equity)
    elif hit_target:
        exit_position(book, ticker, pos.target, "target", date, equity)


def mark(book: Book, last_close: dict[str, float]) -> float:
    """Equity: cash plus every position at its last close (shorts count negative)."""
    return book.cash + sum(p.side * p.shares * last_close[t] for t, p in book.positions.items())


TRADE_COLUMNS = ["ticker", "side", "decision_date", "entry_date", "entry_price", "exit_date", "exit_price",
                 "exit_reason", "shares", "stop", "target", "bars_held", "confidence", "pnl", "return",
                 "r_multiple"]


def _trade(pos: Position, date: pd.Timestamp, price: float, reason: str, exit_fee: float) -> dict:
    gross = pos.side * pos.shares * (price - pos.entry_price)
    pnl = gross - pos.fees - exit_fee
    return {"ticker": pos.ticker, "side": "long" if pos.side == 1 else "short",
            "decision_date": pos.decision_date.date().isoformat(), "entry_date": pos.entry_date.date().isoformat(),
            "entry_price": pos.entry_price, "exit_date": date.date().isoformat(), "exit_price": price,
            "exit_reason": reason, "shares": pos.shares, "stop": pos.stop, "target": pos.target,
            "bars_held": pos.bars, "confidence": pos.confidence, "pnl": pnl,
            "return": pnl / (pos.shares * pos.entry_price),
            "r_multiple": pos.side * (price - pos.entry_price) / pos.risk if pos.risk > 0 else math.nan}


def _ann_vol(close: np.ndarray, j: int, lookback: int, ppy: float) -> float:
    """Annualised volatility of the log returns of the ``lookback`` bars up to ``j`` (past only)."""
    if j < 2:
        return 0.0
    seg = np.log(close[max(0, j - lookback):j + 1])
    r = np.diff(seg)
    return float(r.std(ddof=1) * math.sqrt(ppy)) if len(r) > 1 else 0.0
