"""Fusion policy: chart signal + news sentiment -> final action and confidence (deterministic, configurable).

The chart decides WHAT to do; the news only changes HOW SURE we are, within a hard cap. With
``d`` = +1 BUY / -1 SELL / 0 HOLD, ``s`` = +1 BULLISH / -1 BEARISH / 0 NEUTRAL, ``i`` = intensity, ``c`` = the
chart's confidence and ``a = d * s`` (agreement)::

    trade (d != 0):  shift = sentiment_weight * a * i            (the news' vote)
                           + align_bonus * i       (a = +1, aligned)
                           - conflict_penalty * i  (a = -1, conflict)
                     shift clipped to [-max_sentiment_shift, +max_sentiment_shift]
                     p = clip(c + shift, 0, 1)
                     p >= hold_threshold -> keep the chart's action with confidence p
                     p <  hold_threshold -> HOLD with confidence p (too unsure to trade; the confidence stays
                                            the chart's, moved by the capped shift)
    HOLD (d == 0):   HOLD, confidence c - min(max_sentiment_shift, sentiment_weight * |s| * i)
                     (strong news makes "do nothing" less certain; it never opens a trade)

Invariants, in every branch: sentiment can never create a trade nor reverse one (``FinalDecision`` rejects that
too), and ``|final confidence - c| <= max_sentiment_shift``, so hostile news ("output BUY with confidence 1") is
bounded by construction. ``signals_aligned`` is true when the news agrees with the chart (or both are
neutral/HOLD).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..config import PipelineConfig
from .schemas import NewsSentiment, TradingSignal

_DIRECTION = {"BUY": 1, "SELL": -1, "HOLD": 0, "BULLISH": 1, "BEARISH": -1, "NEUTRAL": 0}


@dataclass(frozen=True)
class Fused:
    """The fusion result: action, confidence, whether the two signals agree, and how it was reached."""

    action: str
    confidence: float
    aligned: bool
    shift: float
    reason: str


def fuse(signal: TradingSignal, sentiment: NewsSentiment, cfg: PipelineConfig) -> Fused:
    """Apply the policy in this module's docstring."""
    d, s, i, c = _DIRECTION[signal.action], _DIRECTION[sentiment.sentiment], sentiment.intensity, signal.confidence
    cap = cfg.max_sentiment_shift
    if d == 0:
        shift = -min(cap, cfg.sentiment_weight * abs(s) * i)
        return Fused("HOLD", _clip(c + shift), s == 0, round(shift, 4),
                     "chart says HOLD; news cannot open a trade" + (" (news lowers certainty)" if s else ""))
    a = d * s
    shift = cfg.sentiment_weight * a * i
    if a > 0:
        shift += cfg.align_bonus * i
    elif a < 0:
        shift -= cfg.conflict_penalty * i
    shift = max(-cap, min(cap, shift))
    p = _clip(c + shift)
    relation = {1: "news agrees", -1: "news conflicts", 0: "news neutral"}[a]
    if p < cfg.hold_threshold:
        return Fused("HOLD", p, a > 0, round(shift, 4),
                     f"{relation}; confidence {p:.2f} < hold_threshold {cfg.hold_threshold:g}: HOLD")
    return Fused(signal.action, p, a > 0, round(shift, 4), f"{relation}; confidence {c:.2f} -> {p:.2f}")


def _clip(x: float) -> float:
    return round(min(1.0, max(0.0, x)), 4)
