"""Labels for chart windows: the forward return after the window -> a validated TradingSignal.

Only bars after the window end decide the action; the levels, confidence scale and rationale use only bars up
to the window end, so the assistant answer never states anything the chart could not show.

* action: forward return r = Close[t+h] / Close[t] - 1. ``absolute`` mode compares r with the thresholds;
  ``volatility`` mode compares z = r / (sigma * sqrt(h)), sigma = std of the window's daily log returns.
* entry = last close; BUY: stop = entry - stop_atr * ATR, take-profit = entry + take_profit_atr * ATR (SELL
  mirrored; HOLD has no levels). Distances are capped at 45% of entry so the levels always validate.
* confidence from |z| (move size relative to volatility): BUY/SELL |z| / (1 + |z|), HOLD 1 / (1 + |z|),
  clipped to [0.05, 0.95] and rounded to 2 decimals.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..signals.schemas import TradingSignal

_MAX_LEVEL_FRACTION = 0.45


@dataclass(frozen=True)
class LabelInputs:
    """Numbers a label needs, in the (possibly rebased) price units of the sample."""

    entry: float  # last close of the window
    forward_return: float  # Close[t+h] / Close[t] - 1 (scale-free)
    sigma: float  # std of daily log returns over the window
    atr: float  # ATR at the window end
    horizon: int


def classify(inp: LabelInputs, mode: str, buy_threshold: float, sell_threshold: float) -> tuple[str, float]:
    """Action and the volatility-scaled move z."""
    z = inp.forward_return / (inp.sigma * math.sqrt(inp.horizon)) if inp.sigma > 0 else 0.0
    score = z if mode == "volatility" else inp.forward_return
    action = "BUY" if score >= buy_threshold else "SELL" if score <= sell_threshold else "HOLD"
    return action, z


def confidence(action: str, z: float) -> float:
    """Probability-like confidence from the size of the move relative to volatility."""
    a = abs(z)
    raw = 1.0 / (1.0 + a) if action == "HOLD" else a / (1.0 + a)
    return round(min(max(raw, 0.05), 0.95), 2)


def make_signal(inp: LabelInputs, *, mode: str, buy_threshold: float, sell_threshold: float, stop_atr: float,
                take_profit_atr: float, rationale: str) -> TradingSignal:
    """The validated assistant answer for one window."""
    action, z = classify(inp, mode, buy_threshold, sell_threshold)
    e = inp.entry
    stop = take = None
    if action != "HOLD":
        cap = _MAX_LEVEL_FRACTION * e
        d_stop = min(stop_atr * inp.atr, cap)
        d_take = min(take_profit_atr * inp.atr, cap)
        sign = 1.0 if action == "BUY" else -1.0
        stop, take = _round(e - sign * d_stop), _round(e + sign * d_take)
        if stop == _round(e) or take == _round(e):  # ATR too small to show at 6 digits: widen to one step
            step = 1e-5 * e
            stop, take = _round(e - sign * max(d_stop, step)), _round(e + sign * max(d_take, step))
    return TradingSignal(action=action, confidence=confidence(action, z), entry_price=_round(e), stop_loss=stop,
                         take_profit=take, rationale=rationale)


def rationale(ind: dict[str, float | None], sigma: float, window_return: float) -> str:
    """One or two sentences from indicators at the window end (nothing after it)."""
    parts = []
    close, sma20, sma50, rsi_v = ind.get("close"), ind.get("sma_20"), ind.get("sma_50"), ind.get("rsi_14")
    if close and sma20:
        trend = "above" if close >= sma20 else "below"
        parts.append(f"close is {trend} the 20-bar average")
    if sma20 and sma50:
        parts.append("the 20-bar average is " + ("above" if sma20 >= sma50 else "below") + " the 50-bar one")
    if rsi_v is not None:
        zone = "overbought" if rsi_v >= 70 else "oversold" if rsi_v <= 30 else "neutral"
        parts.append(f"RSI {rsi_v:.0f} ({zone})")
    text = "; ".join(parts) if parts else "few bars of history"
    return (f"{text[0].upper()}{text[1:]}. The window moved {window_return:+.1%} with daily volatility "
            f"{sigma:.1%}.")


def _round(x: float) -> float:
    """Six significant digits: exact enough for any price scale, short in the answer text."""
    return float(f"{float(x):.6g}")
