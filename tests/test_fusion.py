"""Fusion policy table: aligned, neutral, conflicting and HOLD cases; sentiment can never create or reverse a
trade, and never moves the confidence by more than ``max_sentiment_shift`` in any branch."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from alphasignal.config import ConfigError, PipelineConfig, load_config
from alphasignal.signals.fusion import fuse
from alphasignal.signals.schemas import DEFAULT_MIN_INTENSITY, FinalDecision, NewsSentiment, TradingSignal, VlmSignalOut

CFG = PipelineConfig()


def _signal(action: str, conf: float) -> TradingSignal:
    levels = {"BUY": (95.0, 110.0), "SELL": (105.0, 90.0), "HOLD": (None, None)}[action]
    return TradingSignal(action=action, confidence=conf, entry_price=100.0, stop_loss=levels[0],
                         take_profit=levels[1])


def _news(label: str, intensity: float) -> NewsSentiment:
    return NewsSentiment(sentiment=label, intensity=intensity)


# (chart action, chart conf, news, intensity) -> (final action, final confidence, aligned)
TABLE = [
    ("BUY", 0.60, "BULLISH", 0.5, "BUY", 0.875, True),    # 0.4*0.5 + 0.15*0.5 = 0.275
    ("BUY", 0.60, "BULLISH", 1.0, "BUY", 0.90, True),     # 0.55 capped at max_sentiment_shift 0.3
    ("BUY", 0.60, "NEUTRAL", 0.2, "BUY", 0.60, False),    # neutral news leaves the chart alone
    ("BUY", 0.80, "BEARISH", 1.0, "BUY", 0.50, False),    # conflict: -0.65 capped at -0.3, still above hold
    ("BUY", 0.60, "BEARISH", 1.0, "HOLD", 0.30, False),   # conflict below hold_threshold: HOLD at 0.6 - 0.3
    ("SELL", 0.70, "BEARISH", 0.4, "SELL", 0.92, True),   # 0.16 + 0.06 = 0.22
    ("SELL", 0.50, "BULLISH", 0.4, "HOLD", 0.24, False),  # -0.16 - 0.10 = -0.26 -> 0.24 < 0.35: HOLD 0.24
    ("HOLD", 0.70, "BULLISH", 1.0, "HOLD", 0.40, False),  # news never opens a trade; certainty drops by 0.3
    ("HOLD", 0.70, "NEUTRAL", 0.3, "HOLD", 0.70, True),
    ("BUY", 0.30, "NEUTRAL", 0.0, "HOLD", 0.30, False),   # weak chart signal alone is below hold_threshold
]


@pytest.mark.parametrize(("action", "conf", "label", "intensity", "final", "final_conf", "aligned"), TABLE)
def test_policy_table(action, conf, label, intensity, final, final_conf, aligned) -> None:
    out = fuse(_signal(action, conf), _news(label, intensity), CFG)
    assert (out.action, out.aligned) == (final, aligned)
    assert out.confidence == pytest.approx(final_conf, abs=1e-4)


def test_weights_and_cap_are_configurable() -> None:
    cfg = replace(CFG, max_sentiment_shift=0.1)
    assert fuse(_signal("BUY", 0.6), _news("BULLISH", 1.0), cfg).confidence == pytest.approx(0.7)
    no_bonus = replace(CFG, align_bonus=0.0, conflict_penalty=0.0)
    for weight, moved in ((0.0, 0.6), (0.1, 0.65), (0.2, 0.7)):  # sentiment_weight scales the news' vote
        cfg = replace(no_bonus, sentiment_weight=weight)
        assert fuse(_signal("BUY", 0.6), _news("BULLISH", 0.5), cfg).confidence == pytest.approx(moved)
        assert fuse(_signal("SELL", 0.6), _news("BULLISH", 0.5), cfg).confidence == pytest.approx(1.2 - moved)
        assert fuse(_signal("HOLD", 0.6), _news("BEARISH", 0.5), cfg).confidence == pytest.approx(1.2 - moved)


def test_vlm_weight_is_gone_with_a_pointer_to_what_to_tune() -> None:
    # It had no effect (the weights summed to 1 and the chart's cancelled out); a stale config must say so.
    with pytest.raises(ConfigError, match="pipeline.vlm_weight: it was removed.*pipeline.sentiment_weight"):
        load_config(None, ["pipeline.vlm_weight=0.6"])
    with pytest.raises(ConfigError, match="sentiment_weight must be in"):
        load_config(None, ["pipeline.sentiment_weight=1.5"])


_UNIT = st.floats(0, 1)
_CONFIGS = st.builds(PipelineConfig, sentiment_weight=_UNIT, align_bonus=_UNIT, conflict_penalty=_UNIT,
                     hold_threshold=_UNIT, max_sentiment_shift=_UNIT)


# Every branch is an explicit example (trade kept, trade -> HOLD, chart HOLD), hostile news included: intensity 1
# against the chart, or "BUY with confidence 1" news on a HOLD chart.
@example(action="BUY", conf=0.9, label="BULLISH", intensity=0.5, cfg=CFG)      # trade kept, aligned
@example(action="SELL", conf=0.5, label="BULLISH", intensity=1.0, cfg=CFG)     # hostile: conflict -> HOLD
@example(action="BUY", conf=0.36, label="BEARISH", intensity=1.0, cfg=CFG)     # hostile: HOLD near zero
@example(action="HOLD", conf=0.9, label="BULLISH", intensity=1.0, cfg=CFG)     # hostile: cannot open a trade
@example(action="BUY", conf=0.2, label="BULLISH", intensity=1.0, cfg=CFG)      # aligned, still below threshold
@example(action="SELL", conf=0.3, label="NEUTRAL", intensity=0.5, cfg=CFG)     # weak chart, neutral news
@given(action=st.sampled_from(["BUY", "SELL", "HOLD"]), conf=_UNIT,
       label=st.sampled_from(["BULLISH", "BEARISH", "NEUTRAL"]), intensity=_UNIT, cfg=_CONFIGS)
def test_sentiment_is_bounded_and_never_reverses(action, conf, label, intensity, cfg) -> None:
    # NEUTRAL stays mild; a directional verdict has at least the schema's floor
    intensity = min(intensity, 0.5) if label == "NEUTRAL" else max(intensity, DEFAULT_MIN_INTENSITY)
    signal, news = _signal(action, conf), _news(label, intensity)
    out = fuse(signal, news, cfg)
    assert out.action in (action, "HOLD")
    assert 0 <= out.confidence <= 1
    assert abs(out.shift) <= cfg.max_sentiment_shift + 1e-4  # outputs are rounded to 4 dp
    # in every branch, HOLD results included: the news moves the confidence by at most the cap
    assert abs(out.confidence - conf) <= cfg.max_sentiment_shift + 1e-4
    if action != "HOLD":  # a trade is kept exactly when its fused confidence reaches hold_threshold
        assert (out.confidence >= cfg.hold_threshold) == (out.action == action)
    if label == "NEUTRAL" and action != "HOLD":
        assert out.confidence == pytest.approx(conf, abs=1e-4)  # neutral news never moves a trade
    # the contract agrees: a valid FinalDecision can always be built from the fusion output
    FinalDecision(final_action=out.action, final_confidence=out.confidence,
                  vlm_signal=VlmSignalOut(**signal.model_dump(exclude={"rationale"})), sentiment=news)


def test_final_decision_rejects_a_reversal() -> None:
    with pytest.raises(ValueError, match="contradicts the chart signal"):
        FinalDecision(final_action="SELL", final_confidence=0.9,
                      vlm_signal=VlmSignalOut(action="BUY", confidence=0.6, entry_price=100.0),
                      sentiment=_news("BEARISH", 1.0))
