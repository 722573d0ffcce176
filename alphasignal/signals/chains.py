"""LCEL chains: the chart call and the news call run concurrently, then fusion builds the FinalDecision.

``build_chain(...)`` returns ``RunnableParallel(signal=chart, sentiment=news) | RunnableLambda(assemble)``;
``await chain.ainvoke(item)`` runs both provider calls with ``asyncio.gather`` (RunnableParallel's async
path), so the wall time is that of the slower call plus a little bookkeeping.
"""

from __future__ import annotations

import platform
import time
from dataclasses import dataclass
from typing import Any

from langchain_core.runnables import Runnable, RunnableLambda, RunnableParallel, RunnablePassthrough

from ..config import PipelineConfig
from ..errors import AlphaSignalError
from ..prompts import Prompt
from ..providers import Provider, Reply
from .engines import CHART_ENGINE, NEWS_ENGINE
from .fusion import fuse
from .inputs import ChartInput, NewsInput
from .schemas import FinalDecision, NewsSentiment, TradingSignal, VlmSignalOut

_PLATFORM = f"{platform.system()}-{platform.machine()} Python {platform.python_version()}"


@dataclass(frozen=True)
class DecisionItem:
    """One chart + news pair to decide on; ``last_close`` fills the chart prompt when the chart hides prices;
    ``atr`` (the data's ATR at the last bar, in the same units) bounds the levels when known."""

    chart: ChartInput
    news: NewsInput
    last_close: float | None = None
    notes: tuple[str, ...] = ()
    atr: float | None = None


def build_chain(vlm: Provider, llm: Provider, chart_prompt: Prompt, news_prompt: Prompt, cfg: PipelineConfig
                ) -> Runnable:
    """The pipeline as one Runnable: ``DecisionItem -> FinalDecision`` (use ``ainvoke``)."""

    # Each branch returns its error instead of raising: both calls always finish, the error reported is the
    # chart's when both fail, and asyncio never prints the other branch's error as "never retrieved".
    async def _chart(item: DecisionItem) -> Reply[TradingSignal] | AlphaSignalError:
        close = f"{item.last_close:.4f}" if item.last_close else "not given (read it from the chart)"
        try:
            return await vlm.astructured(TradingSignal, chart_prompt.system, chart_prompt.format(last_close=close),
                                         images=[item.chart.data], context={"last_close": item.last_close},
                                         timeout=cfg.timeout)
        except AlphaSignalError as exc:
            return exc

    async def _news(item: DecisionItem) -> Reply[NewsSentiment] | AlphaSignalError | None:
        if item.news.empty:
            return None  # nothing to judge: NEUTRAL, intensity 0, without a model call
        # The news is quoted data in the prompt; a triple quote inside it must not close the quote.
        text = item.news.text.replace('"""', "'''")
        try:
            return await llm.astructured(NewsSentiment, news_prompt.system, news_prompt.format(news=text),
                                         context={"news": item.news.text, "min_intensity": cfg.min_intensity,
                                                  "min_overlap": cfg.min_overlap}, timeout=cfg.timeout)
        except AlphaSignalError as exc:
            return exc

    prompts = {"vlm": chart_prompt.id, "sentiment": news_prompt.id}

    def _assemble(out: dict[str, Any]) -> FinalDecision:
        for key in ("signal", "sentiment"):
            if isinstance(out[key], AlphaSignalError):
                raise out[key]
        return assemble(out["item"], out["signal"], out["sentiment"], prompts, cfg)

    async def _aassemble(out: dict[str, Any]) -> FinalDecision:  # microseconds: no worker thread for it
        return _assemble(out)

    return (RunnableParallel(item=RunnablePassthrough(), signal=RunnableLambda(_chart, name="chart_signal"),
                             sentiment=RunnableLambda(_news, name="news_sentiment"))
            | RunnableLambda(_assemble, afunc=_aassemble, name="fusion"))


def assemble(item: DecisionItem, signal_reply: Reply[TradingSignal], news_reply: Reply[NewsSentiment] | None,
             prompts: dict[str, str], cfg: PipelineConfig) -> FinalDecision:
    """Fuse the two replies and record how the decision was made in ``meta``."""
    start = time.perf_counter()
    signal = signal_reply.value
    notes = list(item.notes) + list(item.chart.notes) + list(item.news.notes)
    sentiment = news_reply.value if news_reply else NewsSentiment(sentiment="NEUTRAL", intensity=0.0)
    atr, atr_source = level_atr(item, signal_reply)
    problems = signal.check_levels(atr, cfg.max_level_atr, cfg.max_level_pct)
    if item.last_close and abs(signal.entry_price - item.last_close) > cfg.max_level_pct * item.last_close:
        problems.append(f"entry_price {signal.entry_price:g} is far from the last close {item.last_close:g}")
    if atr_source == "unreadable chart":
        notes.append("ATR unknown (no candles read from the chart): levels checked against max_level_pct only")
    effective = signal
    if problems and signal.action != "HOLD":
        # Out-of-bounds levels from a model: never trade on them; keep the raw signal visible.
        notes.append("chart signal ignored, levels out of bounds: " + "; ".join(problems))
        effective = TradingSignal(action="HOLD", confidence=signal.confidence, entry_price=signal.entry_price)
    fused = fuse(effective, sentiment, cfg)
    calls = {"vlm": _call_meta(signal_reply, CHART_ENGINE)}
    if news_reply:
        calls["sentiment"] = _call_meta(news_reply, NEWS_ENGINE)
    else:
        calls["sentiment"] = {"provider": "none", "engine": "none", "model": "none", "latency_s": 0.0,
                              "skipped": "empty news"}
    engines = {c["engine"] for c in calls.values() if c["engine"] != "none"}
    meta = {
        "engine": "builtin" if engines <= {"builtin"} else ("mixed" if "builtin" in engines else "model"),
        "vlm_model": calls["vlm"]["model"],
        "sentiment_model": calls["sentiment"]["model"],
        "signals_aligned": fused.aligned,
        "platform": _PLATFORM,
        "providers": {k: c["provider"] for k, c in calls.items()},
        "calls": calls,
        "latency_s": {k: c["latency_s"] for k, c in calls.items()},
        "prompt_versions": prompts,
        "image_sha256": item.chart.sha256,
        "news_sha256": item.news.sha256,
        "last_close": item.last_close,
        "level_atr": {"atr": atr, "source": atr_source},
        "fusion": {"shift": fused.shift, "reason": fused.reason, "policy": _policy(cfg)},
        "rationale": signal.rationale,
        "notes": notes,
    }
    decision = FinalDecision(
        final_action=fused.action, final_confidence=fused.confidence,
        vlm_signal=VlmSignalOut(action=signal.action, confidence=signal.confidence, entry_price=signal.entry_price,
                                stop_loss=signal.stop_loss, take_profit=signal.take_profit),
        sentiment=sentiment, meta=meta)
    meta["latency_s"]["fusion"] = round(time.perf_counter() - start, 6)
    return decision


def level_atr(item: DecisionItem, signal_reply: Reply[TradingSignal]) -> tuple[float | None, str]:
    """The ATR that ``pipeline.max_level_atr`` is measured in, and where it came from: the data's when the item
    carries it ("data"); else, for a model's trade, that of the candles the chart reader recovers from the image
    ("chart"); None for a HOLD ("no levels"), for the builtin engine, whose levels are 1.5 / 3 ATR of that same
    reading by construction ("builtin levels"), and when the image yields no candles ("unreadable chart")."""
    signal = signal_reply.value
    if item.atr:
        return item.atr, "data"
    if signal.action == "HOLD":
        return None, "no levels"
    if signal_reply.is_builtin:
        return None, "builtin levels"
    from .rules import chart_atr  # the chart reader pulls in numpy work: load it when first used

    atr = chart_atr(item.chart.data, item.last_close or signal.entry_price)
    return (None, "unreadable chart") if atr is None else (round(atr, 6), "chart")


def _call_meta(reply: Reply, builtin_name: str) -> dict[str, Any]:
    out = reply.meta()
    out["engine"] = "builtin" if reply.is_builtin else reply.provider
    if reply.is_builtin:
        out["model"] = builtin_name
    return out


def _policy(cfg: PipelineConfig) -> dict[str, float]:
    return {k: getattr(cfg, k) for k in ("sentiment_weight", "align_bonus", "conflict_penalty", "hold_threshold",
                                          "max_sentiment_shift")}
