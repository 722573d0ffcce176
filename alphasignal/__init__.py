"""alphasignal: chart + news -> validated trading decisions, and honest strategy optimisation.

The notebook API (docs/api.md), loaded on first use so ``import alphasignal`` stays light::

    from alphasignal import Strategy, backtest, sweep, SignalPipeline, replay

``Strategy`` (base of a strategy of your own), ``sweep(prices, strategy, grid)`` and ``SignalPipeline`` are looked
up here; ``backtest`` and ``replay`` are the ``alphasignal.backtest`` and ``alphasignal.replay`` packages, which are
callable: ``backtest(prices, strategy, **params)`` runs one configuration, ``replay(tickers, start, end)`` the
stage 04 replay (a function of the same name here would be hidden by the package once it is imported).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {"Strategy": "alphasignal.backtest.notebook", "sweep": "alphasignal.backtest.notebook",
         "SignalPipeline": "alphasignal.signals.pipeline"}
__all__ = ["SignalPipeline", "Strategy", "backtest", "replay", "sweep"]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'alphasignal' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
