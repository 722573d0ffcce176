"""Grounding and consistency validators: the bad replies real small models gave must fail, good ones pass."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from alphasignal.agents.schemas import AnalystReport, StrategistReply, strategist_schema
from alphasignal.grounding import copied_line, copies_description, is_grounded, is_prose
from alphasignal.providers.base import ReplyError, parse_reply
from alphasignal.signals.schemas import NewsSentiment, TradingSignal

HEADLINES = ["Apple beats estimates and raises guidance; shares jump 8%",
             "Apple misses on revenue, cuts outlook; stock falls 9% after hours",
             "Apple to hold annual shareholder meeting on March 1"]
# Gemma 3 270M's three replies (all BULLISH 0.0, factors = the schema's own descriptions), quoted from issue 18.
GEMMA = {"sentiment": "BULLISH", "intensity": 0.0,
         "key_factors": ["up to 5 short phrases from the news that drove the sentiment", "0 (none) to 1 (extreme)"]}
SUMMARY = """24 configurations tried; objective: in-sample sharpe.
Top:
  short_period=10, long_period=50 -> sharpe 1.032
Marginal effect (mean objective by value; slope = correlation):
  short_period: slope -0.41, best 10; 10: 0.9, 20: 0.5"""


def _news(reply: dict, news: str) -> NewsSentiment:
    return NewsSentiment.model_validate(reply, context={"news": news})


@pytest.mark.parametrize("news", HEADLINES)
def test_gemma_replies_are_rejected_for_every_headline(news) -> None:
    with pytest.raises(ReplyError) as err:
        parse_reply(json.dumps(GEMMA), NewsSentiment, {"news": news})
    assert "intensity of at least 0.2" in str(err.value) and "own field description" in str(err.value)


def test_bullish_at_zero_fails_even_without_news_context() -> None:
    with pytest.raises(ValidationError, match="BULLISH needs intensity of at least 0.2"):
        NewsSentiment(sentiment="BULLISH", intensity=0.0)
    with pytest.raises(ValidationError, match="BEARISH needs intensity of at least 0.5"):
        NewsSentiment.model_validate({"sentiment": "BEARISH", "intensity": 0.3}, context={"min_intensity": 0.5})
    with pytest.raises(ValidationError, match="NEUTRAL sentiment cannot"):
        NewsSentiment(sentiment="NEUTRAL", intensity=0.8)
    assert NewsSentiment(sentiment="NEUTRAL", intensity=0.0).intensity == 0.0


def test_copied_field_descriptions_fail_as_key_factors() -> None:
    for factor in GEMMA["key_factors"]:
        with pytest.raises(ValidationError, match="repeats the schema's own field description"):
            NewsSentiment(sentiment="BULLISH", intensity=0.7, key_factors=[factor])


def test_ungrounded_factor_fails_and_grounded_ones_pass() -> None:
    with pytest.raises(ValidationError, match="not in the news"):
        _news({"sentiment": "BULLISH", "intensity": 0.7, "key_factors": ["strong iPhone demand"]}, HEADLINES[0])
    with pytest.raises(ValidationError, match="needs at least one key factor"):
        _news({"sentiment": "BEARISH", "intensity": 0.7, "key_factors": []}, HEADLINES[1])
    ok = _news({"sentiment": "BULLISH", "intensity": 0.7,
                "key_factors": ["beats estimates", "Raises guidance", "shares jumped 8%"]}, HEADLINES[0])
    assert ok.key_factors[1] == "Raises guidance"  # exact phrase up to case; "jumped" passes by token overlap (2/3)
    assert _news({"sentiment": "NEUTRAL", "intensity": 0.1, "key_factors": []}, HEADLINES[2]).sentiment == "NEUTRAL"


def test_rules_as_stated() -> None:
    assert not is_prose("1.032") and not is_prose("flat") and is_prose("short period near ten")
    assert copies_description("0 (none) to 1 (extreme)", ["strength of the sentiment, 0 (none) to 1 (extreme)"])
    assert copies_description("the sentiment", ["strength of the sentiment, 0 (none) to 1 (extreme)"]) is None
    assert is_grounded("revenue misses", HEADLINES[1])  # both content words present
    assert not is_grounded("revenue misses", HEADLINES[1], min_overlap=1.01)
    assert not is_grounded("the of and", HEADLINES[0])  # stop words only: nothing to trace
    assert copied_line("short_period=10, long_period=50 -> sharpe 1.032", SUMMARY.splitlines())
    assert copied_line("short periods near 10 beat longer ones on sharpe", SUMMARY.splitlines()) is None


def test_signal_rationale_must_be_prose() -> None:
    base = {"action": "HOLD", "confidence": 0.5, "entry_price": 100.0}
    for bad in ("1.032", "flat", "one or two sentences naming the evidence"):
        with pytest.raises(ValidationError, match="rationale"):
            TradingSignal(**base, rationale=bad)
    assert TradingSignal(**base, rationale="price flat between the moving averages").action == "HOLD"


def test_analyst_patterns_copied_from_the_summary_fail() -> None:
    copied = {"patterns": ["short_period=10, long_period=50 -> sharpe 1.032",
                           "short_period: slope -0.41, best 10; 10: 0.9, 20: 0.5"],
              "recommendations": ["try short_period 5 to 10"]}
    with pytest.raises(ValidationError, match="patterns copy summary lines"):
        AnalystReport.model_validate(copied, context={"summary": SUMMARY})
    # Gemma 3 270M's analyst replies: bare parameter names and key: value rows are not sentences
    for items in (["short_period", "long_period", "use_ema"],
                  ["short_period: 15, long_period: 100, use_ema: true/false"]):
        with pytest.raises(ValidationError, match="are not sentences"):
            AnalystReport.model_validate({"patterns": items, "recommendations": items})
    # Gemma 3 270M's analyst replies: a summary row re-punctuated (key: value for key=value) is still a copy
    gemma = {"patterns": ["short_period: 10, long_period: 50 -> sharpe: 1.032"], "recommendations": ["try 5 to 10"]}
    with pytest.raises(ValidationError, match="patterns copy summary lines"):
        AnalystReport.model_validate(gemma, context={"summary": SUMMARY})
    described = {"patterns": [AnalystReport.model_fields["patterns"].description], "recommendations": ["x y z"]}
    with pytest.raises(ValidationError, match="field description"):
        AnalystReport.model_validate(described)
    good = {"patterns": ["short_period near 10 gives the best sharpe; 20 is worse"],
            "recommendations": ["try short_period between 5 and 15"]}
    assert AnalystReport.model_validate(good, context={"summary": SUMMARY}).patterns == good["patterns"]


NAMES = ["Conservative", "Aggressive", "Exploratory"]


def _reply(rationales: list[str], shorts: list[int]) -> dict:
    return {"proposals": [{"name": n, "params": {"short_period": s, "long_period": 50}, "rationale": r}
                          for n, s, r in zip(NAMES, shorts, rationales, strict=True)]}


def test_strategist_bare_number_rationale_and_all_tried_fail() -> None:
    schema = strategist_schema("Fake", (("short_period", "int from 5 to 50"), ("long_period", "int from 20 to 200")))
    words = ["small step below the best short period"] * 3
    with pytest.raises(ValidationError, match="rationale must be a sentence"):
        schema.model_validate(_reply(["1.032", *words[1:]], [10, 15, 20]))
    tried = {10, 15, 20}
    ctx = {"is_tried": lambda p: p["short_period"] in tried}
    with pytest.raises(ValidationError, match="all 3 proposals repeat configurations already backtested"):
        schema.model_validate(_reply(words, [10, 15, 20]), context=ctx)
    ok = schema.model_validate(_reply(words, [10, 15, 30]), context=ctx)  # one untried: the loop drops the rest
    assert isinstance(ok, StrategistReply) and len(ok.proposals) == 3


def test_shape_only_context_skips_the_reply_checks() -> None:
    assert NewsSentiment.model_validate(GEMMA, context={"shape_only": True}).intensity == 0.0


def test_llamacpp_names_the_gguf_that_runs_not_the_label(tmp_path) -> None:
    from alphasignal.providers import ProviderSettings, get_provider

    gguf = tmp_path / "gemma-3-270m-q4_k_m.gguf"
    gguf.write_bytes(b"GGUF")  # never loaded: the name is all this test reads
    provider = get_provider("llamacpp", model="qwen2.5:3b", cfg=ProviderSettings(gguf_path=str(gguf)))
    assert provider.model == gguf.name
    msg = str(provider._timeout(60))
    assert gguf.name in msg and "qwen2.5" not in msg and "timed out after 60s" in msg
