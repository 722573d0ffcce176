"""Register the offline engines with the builtin provider: chart reader -> TradingSignal, lexicon -> NewsSentiment.

Engines read structured ``context`` (news text, last close), never the prompt text, so a hostile news string
is only ever data for the lexicon.
"""

from __future__ import annotations

from ..providers import EngineRequest, register_engine
from .schemas import NewsSentiment, TradingSignal
from .sentiment import score_news

CHART_ENGINE = "builtin-chart-reader"
NEWS_ENGINE = "builtin-lm-lexicon"


def _news_engine(req: EngineRequest) -> NewsSentiment:
    return score_news(str(req.context.get("news", "")))


def _chart_engine(req: EngineRequest) -> TradingSignal:
    from .rules import analyze_chart  # the chart reader pulls in numpy/scipy work; load it when first used

    if not req.images:
        raise ValueError("the builtin chart engine needs the chart image")
    return analyze_chart(req.images[0], last_close=req.context.get("last_close"))


def register_builtin_engines() -> None:
    """Idempotent: (re)register both engines."""
    register_engine(NewsSentiment, _news_engine)
    register_engine(TradingSignal, _chart_engine)
