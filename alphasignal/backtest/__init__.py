"""Vectorised backtest engine and parameter sweep (stage 05).

Public interface (stable; stage 06 calls it):

* ``Strategy`` objects, one registry: ``get_strategy(name)`` (``UsageError`` with a suggestion for unknown names),
  ``load_strategy(name, path)`` (a built-in, or the class ``name`` of a user's strategy file, checked and
  registered: see ``user_strategy.py``). ``STRATEGIES`` -- the built-in names; ``PARAM_SPECS[strategy][param] =
  ParamSpec(min, max, step, type, default)`` with ``type`` in int | float | bool; ``validate_params(strategy,
  params) -> list[str]`` (empty = valid; covers unknown or missing names with suggestions, types, ranges and
  constraints such as short_period < long_period). Every ``strategy`` argument below is a name or a Strategy.
* ``run_sweep(data, strategy, grid, *, options=None, progress=False) -> DataFrame``: ``data`` is a DataFrame
  (OHLC columns) or ``{ticker: DataFrame}``; ``grid`` a dict of lists / scalars / ``{min, max, step}`` ranges
  (missing parameters take their defaults) or a list of config dicts. One row per (ticker, config): ``ticker``,
  parameter columns, then ``METRICS``. Invalid configs are skipped and counted: ``attrs['n_skipped']``,
  ``attrs['skipped']`` (reason -> count); ``attrs['engine']``, ``attrs['device']``, ``attrs['seconds']``.
* ``backtest(data, strategy, params_list, *, options=None, return_curves=False, start=None, end=None)``: the same
  rows for explicit configs (an invalid one raises ``UsageError``); ``start``/``end`` (bar positions or dates)
  bound the evaluated window while earlier bars warm the indicators up. ``return_curves=True`` returns
  ``(metrics, curves)``, ``curves[i]`` the equity curve (starting at 1) of metrics row ``i``.
* ``returns_matrix(df, strategy, params_list, *, options=None, start=None, end=None) -> DataFrame`` (bars x
  configs) of per-bar returns, e.g. for ``probability_of_backtest_overfitting``.
* ``positions(df, strategy, params_list, ...) -> DataFrame`` (bars x configs) of target positions decided at
  each close (held from the next bar).
* validation: ``split_train_test``, ``train_test``, ``walk_forward`` (see ``validation.py``); the selection-bias
  statistics ``deflated_sharpe_ratio`` and ``probability_of_backtest_overfitting`` live in
  ``alphasignal.evaluation.overfitting`` and are re-exported here.
* ``walk_forward_optimize(data, strategy, grid, *, options=None, folds=None, anchored=None) -> WFOResult``: for
  each of K folds choose the best configuration of ``grid`` on the training window by ``options.sort_by`` and trade
  it on the next window; ``WFOResult`` holds the folds (chosen parameters, is_/oos_ metrics), the stitched
  out-of-sample returns and metrics, walk-forward efficiency and parameter stability (see ``wfo.py``).

``options`` is ``config.SweepConfig`` (mode long_only|long_short, fill close|next_open, entry state|cross for the
crossover strategies, fees_bps, slippage_bps, risk_free, device, engine, max_memory_mb, periods_per_year). Execution
conventions and metric definitions: the docstrings of ``kernels.py`` and ``alphasignal/evaluation/metrics.py``;
``max_drawdown`` is a positive fraction (0.25 = -25 %).
"""

import sys
from types import ModuleType
from typing import Any

from ..evaluation.metrics import METRICS
from ..evaluation.overfitting import deflated_sharpe_ratio, probability_of_backtest_overfitting
from .strategies import PARAM_SPECS, STRATEGIES, ParamSpec, Strategy, expand_grid, get_strategy, validate_params
from .sweep import backtest, positions, returns_matrix, run_sweep
from .user_strategy import load_strategy
from .validation import split_train_test, train_test, walk_forward
from .wfo import WFOResult, walk_forward_optimize
from .xp import resolve

__all__ = ["METRICS", "PARAM_SPECS", "STRATEGIES", "ParamSpec", "Strategy", "WFOResult", "backtest",
           "deflated_sharpe_ratio", "expand_grid", "get_strategy", "load_strategy", "positions",
           "probability_of_backtest_overfitting", "resolve", "returns_matrix", "run_sweep", "split_train_test",
           "train_test", "validate_params", "walk_forward", "walk_forward_optimize"]


class _NotebookModule(ModuleType):
    """This package is also the notebook API's ``backtest`` (``from alphasignal import backtest``): calling it runs
    one configuration, ``backtest(prices, strategy, **params)`` (see ``notebook.py``)."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from .notebook import backtest as backtest_one

        return backtest_one(*args, **kwargs)


sys.modules[__name__].__class__ = _NotebookModule
