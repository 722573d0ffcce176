"""Pydantic v2 contracts for every model output of the signal pipeline.

Field descriptions double as the model's instructions (they end up in the JSON schema sent to it).
Cross-field rules live in validators so an invalid decision can never be constructed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..grounding import DEFAULT_MIN_OVERLAP, CheckedReply, is_grounded, is_prose

Action = Literal["BUY", "SELL", "HOLD"]
Sentiment = Literal["BULLISH", "BEARISH", "NEUTRAL"]

# Sanity bound on levels when no ATR is known: stop/take-profit within this fraction of entry.
DEFAULT_MAX_LEVEL_PCT = 0.5
# A BULLISH/BEARISH verdict needs at least this intensity (pipeline.min_intensity overrides it through the
# validation context); the builtin engine's weakest directional verdict is 1 - exp(-0.25) = 0.221.
DEFAULT_MIN_INTENSITY = 0.2


class TradingSignal(CheckedReply):
    """A chart-based trading signal."""

    model_config = ConfigDict(extra="forbid")

    action: Action = Field(description="BUY, SELL or HOLD for the next few bars after the last candle")
    confidence: float = Field(ge=0.0, le=1.0, description="probability-like confidence in the action, 0 to 1")
    entry_price: float = Field(gt=0, description="entry price: the last close on the chart")
    stop_loss: float | None = Field(default=None, gt=0,
                                    description="stop-loss price: below entry for BUY, above entry for SELL")
    take_profit: float | None = Field(default=None, gt=0,
                                      description="take-profit price: above entry for BUY, below entry for SELL")
    rationale: str = Field(default="", max_length=600, description="one or two sentences naming the evidence")

    @model_validator(mode="after")
    def _levels_consistent(self) -> TradingSignal:
        e, s, t = self.entry_price, self.stop_loss, self.take_profit
        if self.action in ("BUY", "SELL") and (s is None or t is None):
            raise ValueError(f"{self.action} needs both stop_loss and take_profit")
        if self.action == "BUY" and not (s < e < t):
            raise ValueError(f"BUY needs stop_loss < entry_price < take_profit (got {s} / {e} / {t})")
        if self.action == "SELL" and not (t < e < s):
            raise ValueError(f"SELL needs take_profit < entry_price < stop_loss (got {t} / {e} / {s})")
        for name, level in (("stop_loss", s), ("take_profit", t)):
            if level is not None and abs(level - e) > DEFAULT_MAX_LEVEL_PCT * e:
                raise ValueError(f"{name}={level} is more than {DEFAULT_MAX_LEVEL_PCT:.0%} away from entry {e}")
        return self

    def reply_problems(self, ctx: Mapping[str, Any]) -> list[str]:
        """A rationale, when given, is prose naming the evidence, not a bare number."""
        if self.rationale.strip() and not is_prose(self.rationale):
            return [f"rationale must be a sentence naming the evidence (at least 3 words), not {self.rationale!r}"]
        return []

    def check_levels(self, atr: float | None = None, max_atr: float = 10.0, max_pct: float = DEFAULT_MAX_LEVEL_PCT
                     ) -> list[str]:
        """Problems with level distances under configurable bounds (empty list when fine)."""
        problems = []
        for name, level in (("stop_loss", self.stop_loss), ("take_profit", self.take_profit)):
            if level is None:
                continue
            dist = abs(level - self.entry_price)
            if dist > max_pct * self.entry_price:
                problems.append(f"{name} is {dist / self.entry_price:.1%} from entry (max {max_pct:.0%})")
            if atr and dist > max_atr * atr:
                problems.append(f"{name} is {dist / atr:.1f} ATR from entry (max {max_atr:g})")
        return problems


class NewsSentiment(CheckedReply):
    """Sentiment of market news for the instrument."""

    model_config = ConfigDict(extra="forbid")

    sentiment: Sentiment = Field(description="BULLISH, BEARISH or NEUTRAL for the instrument's price")
    intensity: float = Field(ge=0.0, le=1.0, description="strength of the sentiment, 0 (none) to 1 (extreme)")
    key_factors: list[str] = Field(default_factory=list, max_length=5,
                                   description="up to 5 short phrases from the news that drove the sentiment")

    @field_validator("key_factors")
    @classmethod
    def _short_factors(cls, v: list[str]) -> list[str]:
        cleaned = [f.strip()[:120] for f in v if f and f.strip()]
        return cleaned[:5]

    def reply_problems(self, ctx: Mapping[str, Any]) -> list[str]:
        """NEUTRAL is mild, BULLISH/BEARISH at least ``min_intensity``; with the news in the validation context
        (``context={"news": text, "min_overlap": x}``) every key factor must be traceable to it and a directional
        verdict must name one."""
        problems = []
        if self.sentiment == "NEUTRAL" and self.intensity > 0.5:
            problems.append("NEUTRAL sentiment cannot have intensity above 0.5")
        floor = float(ctx.get("min_intensity", DEFAULT_MIN_INTENSITY))
        if self.sentiment != "NEUTRAL" and self.intensity < floor:
            problems.append(f"{self.sentiment} needs intensity of at least {floor:g} (got {self.intensity:g}): "
                            "raise it, or answer NEUTRAL when the news moves nothing")
        if "news" in ctx:
            news, overlap = str(ctx["news"]), float(ctx.get("min_overlap", DEFAULT_MIN_OVERLAP))
            loose = [f for f in self.key_factors if not is_grounded(f, news, overlap)]
            if loose:
                problems.append(f"key_factors {loose} are not in the news: quote short phrases from the news text")
            elif self.sentiment != "NEUTRAL" and not self.key_factors:
                problems.append(f"{self.sentiment} needs at least one key factor quoted from the news")
        return problems


class VlmSignalOut(BaseModel):
    """The part of a TradingSignal kept in the final JSON (the original tool's shape)."""

    action: Action
    confidence: float = Field(ge=0.0, le=1.0)
    entry_price: float = Field(gt=0)
    stop_loss: float | None = None
    take_profit: float | None = None


class FinalDecision(BaseModel):
    """The fused decision written to decision.json."""

    model_config = ConfigDict(extra="forbid")

    final_action: Action = Field(description="the fused action")
    final_confidence: float = Field(ge=0.0, le=1.0, description="the fused confidence")
    vlm_signal: VlmSignalOut
    sentiment: NewsSentiment
    meta: dict[str, Any] = Field(default_factory=dict,
                                 description="models, providers, engine, latencies, prompt version, input hashes")

    @model_validator(mode="after")
    def _hold_without_conflict(self) -> FinalDecision:
        if self.final_action != "HOLD" and self.final_action != self.vlm_signal.action:
            # Sentiment may dampen or veto a chart signal, never reverse it on its own.
            raise ValueError(f"final_action {self.final_action} contradicts the chart signal "
                             f"{self.vlm_signal.action}: fusion may only keep it or fall back to HOLD")
        return self
