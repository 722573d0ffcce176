"""The backtest half of the notebook API (``from alphasignal import Strategy, backtest, sweep``): thin wrappers over
:func:`~alphasignal.backtest.sweep.backtest` and :func:`~alphasignal.backtest.sweep.run_sweep`.

* :class:`Strategy` -- the base of a strategy of your own: the same class a ``--strategy-file`` holds.
* :func:`backtest` -- one configuration (its parameters as keywords) -> :class:`BacktestResult`.
* :func:`sweep` -- a grid of configurations -> the results frame stage 05 writes.

A ``strategy`` argument is a built-in name (``"MA_Crossover"``), a strategy class (checked and registered on first
use, see ``user_strategy.from_class``) or a strategy object of the registry. ``options`` is a
:class:`~alphasignal.config.SweepConfig` or a mapping of its fields (``{"fees_bps": 5, "mode": "long_only"}``).
"""

from __future__ import annotations

import dataclasses
import inspect
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import pandas as pd

from ..config import SweepConfig
from ..configio import suggest
from ..errors import UsageError
from . import strategies
from .strategies import ParamSpec, StrategyLike
from .sweep import backtest as backtest_configs
from .sweep import run_sweep
from .user_strategy import from_class

_BUILT: weakref.WeakKeyDictionary[type, strategies.Strategy] = weakref.WeakKeyDictionary()


class Strategy:
    """Base of a strategy of your own (subclassing it is optional: the engine reads only these attributes).

    Set ``PARAM_SPECS`` (``{name: ParamSpec(min, max, step, type, default)}``) and give either
    ``positions(self, indicators, params)`` -- vectorised: ``params`` maps each parameter to an array of one value
    per configuration, and the result is bars x configurations of 1 (long), -1 (short), 0 or NaN (flat) -- or a
    static ``rule(open, high, low, close, <one value of each parameter>)`` that Numba compiles and that returns
    one configuration's positions. Optional: ``CONSTRAINTS`` (``{message: predicate(params)}``), ``NEEDS`` (price
    columns read) and ``warmup(params)`` (bars before the first position). The class is checked when it is first
    used, including that its positions do not look ahead."""

    PARAM_SPECS: ClassVar[Mapping[str, ParamSpec]] = {}
    CONSTRAINTS: ClassVar[Mapping[str, Callable[[Any], Any]]] = {}
    NEEDS: ClassVar[tuple[str, ...]] = ("Close",)

    def warmup(self, params: Mapping[str, Any]) -> Any:
        """Bars before the first position, per configuration (0: the positions say NaN where undefined)."""
        return 0


@dataclass(frozen=True)
class BacktestResult:
    """One configuration's backtest: its ``params`` (defaults filled in), ``metrics`` (the stage 05 columns:
    sharpe, total_return, max_drawdown, trades, ...) and ``equity`` (the equity curve by date, starting at 1)."""

    strategy: str
    params: dict[str, Any]
    metrics: pd.Series
    equity: pd.Series


def as_strategy(strategy: StrategyLike | type) -> strategies.Strategy:
    """The registry's strategy for a name, a strategy object or a strategy class (a class is built once)."""
    if not inspect.isclass(strategy):
        return strategies.get_strategy(strategy)
    built = _BUILT.get(strategy)
    if built is None:
        built = _BUILT[strategy] = from_class(strategy)
    return built


def sweep_options(options: SweepConfig | Mapping[str, Any] | None) -> SweepConfig:
    """A ``SweepConfig`` from one, from a mapping of its fields (validated as a config file's) or the defaults."""
    if options is None or isinstance(options, SweepConfig):
        return options or SweepConfig()
    fields = [f.name for f in dataclasses.fields(SweepConfig)]
    for key in options:
        if key not in fields:
            raise UsageError(f"unknown sweep option {key!r}: {suggest(key, fields)}")
    return dataclasses.replace(SweepConfig(), **options)


def backtest(prices: pd.DataFrame, strategy: StrategyLike | type, *,
             options: SweepConfig | Mapping[str, Any] | None = None, start: Any = None, end: Any = None,
             **params: Any) -> BacktestResult:
    """Backtest one configuration of ``strategy`` (parameters as keywords; missing ones take their defaults) on
    one price frame (Open/High/Low/Close columns, a date index). ``start``/``end`` (dates or bar positions) bound
    the evaluated window; earlier bars only warm the indicators up."""
    if not isinstance(prices, pd.DataFrame):
        raise UsageError("backtest(prices, ...): give one price frame (Open, High, Low, Close columns); use sweep() "
                         "for several tickers")
    strat = as_strategy(strategy)
    config = {k: s.default for k, s in strat.specs.items()} | params
    metrics, curves = backtest_configs(prices, strat, [config], options=sweep_options(options),
                                       return_curves=True, start=start, end=end)
    row = metrics.iloc[0]
    used = {k: strategies.json_value(row[k]) for k in strat.specs}
    return BacktestResult(strat.name, used, row.drop(["ticker", *strat.specs]), curves[0].rename("equity"))


def sweep(prices: pd.DataFrame | Mapping[str, pd.DataFrame], strategy: StrategyLike | type,
          grid: Mapping[str, Any] | list[Mapping[str, Any]], *,
          options: SweepConfig | Mapping[str, Any] | None = None) -> pd.DataFrame:
    """Backtest every configuration of ``grid`` (value lists, ``{min, max, step}`` ranges or a list of
    configurations) on one price frame or ``{ticker: frame}``: one row per (ticker, configuration) with the
    parameters and the metrics (``alphasignal.backtest.METRICS``); invalid configurations are skipped
    and counted in ``attrs``."""
    return run_sweep(prices, as_strategy(strategy), grid, options=sweep_options(options))


__all__ = ["BacktestResult", "Strategy", "as_strategy", "backtest", "sweep", "sweep_options"]
