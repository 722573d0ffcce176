"""Register the offline engines with the builtin provider: chart reader -> TradingSignal, lexicon -> NewsSentiment.

Engines read structured ``context`` (news text, last close), never the prompt text, so a hostile news string
is only ever data for the lexicon.
"""

from __future__ import annotations

import functools
from importlib.metadata import version

from ..fileio import source_digest
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


# every module whose code shapes a chart reading (tests check that the reader imports no other project code)
CHART_READER_CODE = (__name__, "alphasignal.signals.rules", "alphasignal.charts.read", "alphasignal.charts.render",
                     "alphasignal.charts.style", "alphasignal.market.indicators", "alphasignal.signals.schemas",
                     "alphasignal.grounding")


@functools.cache
def chart_engine_id() -> str:
    """Identity of the chart reader's code (its replies are cached under it when the call cache is on)."""
    return source_digest(CHART_READER_CODE, [version(d) for d in ("numpy", "pillow", "pydantic")])


def register_builtin_engines() -> None:
    """Idempotent: (re)register both engines. The chart reader (~20 ms a chart) is cached with the call cache;
    the lexicon answers in microseconds and is not."""
    register_engine(NewsSentiment, _news_engine)
    register_engine(TradingSignal, _chart_engine, code_id=chart_engine_id)
