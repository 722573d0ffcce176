"""Offline chart engine: recovered candles -> TradingSignal through a transparent technical rule set.

Each rule votes -1, 0 or +1 with a fixed weight; the weighted mean is the score in [-1, 1]:

==============  ======  ===============================================================
rule            weight  vote
==============  ======  ===============================================================
trend           2       sign of the 20-bar regression slope when it moved > 1 ATR
ma_cross        1.5     SMA10 above (+1) / below (-1) SMA20
ma_recent       0.5     SMA10 crossed SMA20 within the last 5 bars, in that direction
rsi             1       RSI14 < 30 (+1, oversold) / > 70 (-1, overbought)
bollinger       1       close below the lower band (+1) / above the upper band (-1)
breakout        1       close at a 20-bar high (+1) / low (-1)
==============  ======  ===============================================================

BUY when score >= 0.3, SELL when <= -0.3, else HOLD. Confidence = 0.5 + 0.45 * |score| for trades and
0.5 + 0.45 * (1 - |score| / 0.3) for HOLD. Stop-loss / take-profit are 1.5 / 3 ATR from the entry (the last
close). All inputs are bars up to the last candle: nothing after it exists in the image.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..charts.read import Candles, read_chart
from ..errors import UsageError
from ..market import indicators as ind
from .schemas import TradingSignal

THRESHOLD = 0.3
STOP_ATR = 1.5
TAKE_ATR = 3.0
DEFAULT_CLOSE = 100.0
_WEIGHTS = {"trend": 2.0, "ma_cross": 1.5, "ma_recent": 0.5, "rsi": 1.0, "bollinger": 1.0, "breakout": 1.0}


def _last(a: np.ndarray) -> float:
    return float(a[-1]) if len(a) else float("nan")


def candle_atr(c: Candles) -> float:
    """ATR(14) at the last candle (a shorter period on short series), in the candles' units; NaN when unknown."""
    n = len(c.close)
    return _last(ind.atr(c.high, c.low, c.close, min(14, max(n - 1, 1))))


def rule_votes(c: Candles) -> dict[str, int]:
    """Vote of each rule (-1, 0, +1) on the candle series; rules without enough bars vote 0."""
    close = c.close
    n = len(close)
    atr = candle_atr(c)
    votes = dict.fromkeys(_WEIGHTS, 0)
    m = min(20, n)
    slope = np.polyfit(np.arange(m), close[-m:], 1)[0] if m >= 3 else 0.0
    if np.isfinite(atr) and abs(slope * m) > atr:
        votes["trend"] = int(np.sign(slope))
    if n >= 20:
        fast, slow = ind.sma(close, 10), ind.sma(close, 20)
        diff = fast - slow
        votes["ma_cross"] = int(np.sign(diff[-1]))
        recent = diff[-6:]
        if np.all(np.isfinite(recent)) and np.sign(recent[0]) != np.sign(recent[-1]) and recent[-1] != 0:
            votes["ma_recent"] = int(np.sign(recent[-1]))
        lower, _, upper = ind.bollinger(close, 20, 2.0)
        votes["bollinger"] = 1 if close[-1] < lower[-1] else (-1 if close[-1] > upper[-1] else 0)
        window = close[-20:]
        votes["breakout"] = 1 if close[-1] >= window.max() else (-1 if close[-1] <= window.min() else 0)
    if n > 15:
        r = _last(ind.rsi(close, 14))
        votes["rsi"] = 1 if r < 30 else (-1 if r > 70 else 0)
    return votes


def signal_from_candles(c: Candles, *, last_close: float, price_range: tuple[float, float] | None = None,
                        span_fraction: float = 0.2, relative: bool = False) -> TradingSignal:
    """Apply the rule set to candles (chart units) and return a validated TradingSignal at ``last_close``.

    ``relative=True`` says in the rationale that ``last_close`` is a stand-in (prices in relative units).
    """
    prices = c.to_prices(last_close, price_range=price_range, span_fraction=span_fraction)
    votes = rule_votes(prices)
    score = sum(_WEIGHTS[k] * v for k, v in votes.items()) / sum(_WEIGHTS.values())
    action = "BUY" if score >= THRESHOLD else ("SELL" if score <= -THRESHOLD else "HOLD")
    conf = 0.5 + 0.45 * (abs(score) if action != "HOLD" else 1 - abs(score) / THRESHOLD)
    n = len(prices)
    atr = candle_atr(prices)
    if not np.isfinite(atr) or atr <= 0:
        atr = 0.01 * last_close
    atr = min(atr, 0.1 * last_close)  # keeps both levels within the contract's distance bounds
    stop = take = None
    if action == "BUY":
        stop, take = last_close - STOP_ATR * atr, last_close + TAKE_ATR * atr
    elif action == "SELL":
        stop, take = last_close + STOP_ATR * atr, last_close - TAKE_ATR * atr
    fired = ", ".join(f"{k} {v:+d}" for k, v in votes.items() if v) or "none"
    scale = "exact price range" if price_range else f"price scale assumed (drawn range = {span_fraction:.0%} of close)"
    if relative:
        scale += f"; last close unknown, so prices are relative units with last close = {last_close:g}"
    rationale = (f"builtin rules on {n} candles read from the chart: score {score:+.2f} "
                 f"(fired: {fired}); levels {STOP_ATR:g}/{TAKE_ATR:g} ATR, {scale}.")
    return TradingSignal(action=action, confidence=round(conf, 4), entry_price=last_close,
                         stop_loss=None if stop is None else round(stop, 6),
                         take_profit=None if take is None else round(take, 6), rationale=rationale)


def chart_atr(png: bytes | str | Path, last_close: float) -> float | None:
    """ATR of the candles the chart reader recovers, in prices with the last close at ``last_close`` (the drawn
    range assumed to be 20% of it, as ``analyze_chart`` assumes); None when the image yields no candles."""
    try:
        atr = candle_atr(read_chart(png).to_prices(last_close))
    except UsageError:
        return None
    return atr if np.isfinite(atr) and atr > 0 else None


def analyze_chart(png: bytes | str | Path, *, last_close: float | None = None,
                  price_range: tuple[float, float] | None = None) -> TradingSignal:
    """Read a chart image and apply the rules; without ``last_close`` prices are relative (last close = 100)."""
    candles = read_chart(png)
    return signal_from_candles(candles, last_close=float(last_close or DEFAULT_CLOSE), price_range=price_range,
                               relative=not last_close)
