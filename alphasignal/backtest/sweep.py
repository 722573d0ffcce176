"""Library entry points: ``run_sweep`` (grid -> tidy metrics), ``backtest`` (explicit configs, optional equity
curves) and ``returns_matrix`` (per-bar returns, bars x configs, for PBO and plots)."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from ..config import SweepConfig
from ..errors import UsageError
from ..evaluation.metrics import METRICS, finalise_matrix, rf_per_bar
from ..progress import progress_bar
from . import vector
from .engine import Prices, annualisation, as_frames, prepare_prices, simulate
from .strategies import (
    Strategy,
    StrategyLike,
    as_config_frame,
    config_at,
    get_strategy,
    grid_frame,
    normalise,
    split_valid,
    validate_params,
)
from .xp import Backend, resolve, uses_jit

Data = pd.DataFrame | Mapping[str, pd.DataFrame]


def bar_position(prices: Prices, when: Any, default: int) -> int:
    """A bar position from an int (negative counts from the end), a date-like, or None (``default``)."""
    if when is None:
        return default
    if isinstance(when, (int, np.integer)):
        pos = int(when) + (prices.n if when < 0 else 0)
    else:
        pos = int(prices.index.searchsorted(pd.Timestamp(when)))
    if not 0 <= pos <= prices.n:
        raise UsageError(f"{prices.ticker}: bar {when!r} is outside the data (0..{prices.n})")
    return pos


def _window(prices: Prices, start: Any, end: Any) -> tuple[int, int]:
    lo, hi = bar_position(prices, start, 0), bar_position(prices, end, prices.n)
    if hi - lo < 3:
        raise UsageError(f"{prices.ticker}: evaluation window {start!r}..{end!r} has {max(hi - lo, 0)} bars; need >= 3")
    return lo, hi


def _metrics_frame(prices: Prices, configs: pd.DataFrame, acc: np.ndarray, n: int, opts: SweepConfig,
                   backend: Backend) -> pd.DataFrame:
    ppy = annualisation(prices, opts)
    metrics = pd.DataFrame(finalise_matrix(acc, n, ppy, rf_per_bar(opts.risk_free, ppy), jit=uses_jit(backend)).T,
                           columns=list(METRICS), copy=False)  # one float block, not copied
    metrics["trades"] = metrics["trades"].astype("int64")
    params = pd.DataFrame({"ticker": prices.ticker, **{k: configs[k].to_numpy() for k in configs}})
    return pd.concat([params, metrics], axis=1)


def check_all_valid(strat: Strategy, params_list: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``params_list`` cast to their spec types; an invalid configuration raises UsageError."""
    if not params_list:
        raise UsageError("params_list is empty: give at least one configuration")
    for i, p in enumerate(params_list):
        problems = validate_params(strat, p)
        if problems:
            raise UsageError(f"{strat.name} configuration #{i}: {problems[0]}")
    return [normalise(strat, p) for p in params_list]


def run_window(prices: Prices, strat: Strategy, configs: pd.DataFrame | list[dict], opts: SweepConfig,
               backend: Backend, *, lo: int = 0, hi: int | None = None, n_blocks: int = 0, want_rets: bool = False,
               on_chunk: Callable[[int], None] | None = None) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Metrics frame over bars ``lo..hi-1`` (earlier bars feed indicators only), block sums and returns of valid
    configurations (a frame, see :func:`~.strategies.as_config_frame`, or a list of dicts)."""
    hi = prices.n if hi is None else hi
    configs = as_config_frame(strat, configs)
    warm = np.asarray(strat.warmup(configs))
    if (warm >= hi - 1).any():
        i = int(np.argmax(warm >= hi - 1))
        raise UsageError(f"{prices.ticker}: {strat.name} {config_at(configs, i)} needs {warm[i] + 2} bars but the data "
                         f"ends at bar {hi}: use shorter windows or more data")
    acc, blocks, rets = simulate(prices, strat, configs, opts, backend, lo=lo, hi=hi, n_blocks=n_blocks,
                                 want_rets=want_rets, on_chunk=on_chunk)
    return _metrics_frame(prices, configs, acc, hi - lo, opts, backend), blocks, rets


def backtest(data: Data, strategy: StrategyLike, params_list: list[dict[str, Any]], *,
             options: SweepConfig | None = None, return_curves: bool = False, start: Any = None, end: Any = None
             ) -> pd.DataFrame | tuple[pd.DataFrame, pd.DataFrame]:
    """Metrics of explicit configurations (any invalid one raises UsageError), one row per (ticker, config).

    ``start``/``end`` (bar positions or dates) bound the evaluated window; earlier bars only warm the indicators
    up. With ``return_curves`` also returns equity curves: a frame indexed by date whose column ``i`` belongs to
    row ``i`` of the metrics frame.
    """
    opts = options or SweepConfig()
    strat = get_strategy(strategy)
    configs = check_all_valid(strat, params_list)
    backend = resolve(opts.device, opts.engine)
    frames, curves = [], []
    for ticker, df in as_frames(data).items():
        prices = prepare_prices(df, ticker, strat.needs)
        lo, hi = _window(prices, start, end)
        frame, _, rets = run_window(prices, strat, configs, opts, backend, lo=lo, hi=hi, want_rets=return_curves)
        frames.append(frame)
        if return_curves:
            curves.append(pd.DataFrame(np.cumprod(1.0 + rets, axis=0), index=prices.index[lo:hi]))
    out = pd.concat(frames, ignore_index=True)
    out.attrs.update(engine=backend.engine, device=backend.device, n_skipped=0)
    if not return_curves:
        return out
    curve = pd.concat(curves, axis=1)
    curve.columns = range(curve.shape[1])
    return out, curve


def _one_frame(data: pd.DataFrame, strategy: StrategyLike, params_list: list[dict[str, Any]],
               options: SweepConfig | None, start: Any, end: Any):
    """Shared set-up of the single-frame helpers: options, strategy, checked configs, prices, bar window."""
    opts = options or SweepConfig()
    strat = get_strategy(strategy)
    configs = check_all_valid(strat, params_list)
    prices = prepare_prices(data, str(data.attrs.get("ticker", "data")), strat.needs)
    lo, hi = _window(prices, start, end)
    return opts, strat, configs, prices, lo, hi


def returns_matrix(data: pd.DataFrame, strategy: StrategyLike, params_list: list[dict[str, Any]], *,
                   options: SweepConfig | None = None, start: Any = None, end: Any = None) -> pd.DataFrame:
    """Per-bar strategy returns (bars x configs, column ``i`` = ``params_list[i]``) for one price frame."""
    opts, strat, configs, prices, lo, hi = _one_frame(data, strategy, params_list, options, start, end)
    _, _, rets = run_window(prices, strat, configs, opts, resolve(opts.device, opts.engine), lo=lo, hi=hi,
                            want_rets=True)
    return pd.DataFrame(rets, index=prices.index[lo:hi])


def positions(data: pd.DataFrame, strategy: StrategyLike, params_list: list[dict[str, Any]], *,
              options: SweepConfig | None = None, start: Any = None, end: Any = None) -> pd.DataFrame:
    """Target position (-1/0/1) decided at each close (held from the next bar), bars x configs, for one frame."""
    opts, strat, configs, prices, lo, hi = _one_frame(data, strategy, params_list, options, start, end)
    frame = as_config_frame(strat, configs)
    table, cfg_ints, cfg_floats = strat.chunk_arrays(strat.config_parts(frame), frame, prices, hi=hi)
    pos = vector.positions(np, strat, strat.kernel_rule(opts.entry), prices.close, table, cfg_ints, cfg_floats,
                           short_ok=opts.mode == "long_short", lo=lo, hi=hi)
    return pd.DataFrame(pos, index=prices.index[lo:hi])


def run_sweep(data: Data, strategy: StrategyLike, grid: Mapping[str, Any] | list[Mapping[str, Any]], *,
              options: SweepConfig | None = None, progress: bool = False) -> pd.DataFrame:
    """Backtest every configuration of ``grid`` on every ticker: one row per (ticker, config), parameter and
    metric columns. Invalid configurations (constraints, warm-up longer than the data) are skipped and counted
    in ``attrs['n_skipped']`` / ``attrs['skipped']``; ``attrs`` also holds the engine, device and timings."""
    opts = options or SweepConfig()
    strat = get_strategy(strategy)
    backend = resolve(opts.device, opts.engine)
    configs = grid_frame(strat, grid)
    frames_in = {t: prepare_prices(df, t, strat.needs) for t, df in as_frames(data).items()}
    plan = {}
    skipped: Counter[str] = Counter()
    for ticker, prices in frames_in.items():
        valid, bad = split_valid(strat, configs, prices.n)
        if valid.empty:
            raise UsageError(f"{ticker}: none of the {len(configs)} {strat.name} configurations is valid "
                             f"({bad[0][1]}): fix the grid or use more data")
        plan[ticker] = valid
        skipped.update(reason.split(" (got")[0] for _, reason in bad)
    total = sum(len(v) for v in plan.values())
    timings, frames = {}, []
    with progress_bar(progress, total, f"{strat.name} sweep [{backend.engine}]") as advance:
        for ticker, valid in plan.items():
            t0 = time.perf_counter()
            frame, _, _ = run_window(frames_in[ticker], strat, valid, opts, backend, on_chunk=advance)
            timings[ticker] = round(time.perf_counter() - t0, 4)
            frames.append(frame)
    out = pd.concat(frames, ignore_index=True)
    out.attrs.update(engine=backend.engine, device=backend.device, backend_note=backend.note,
                     n_configs=len(configs), n_run=total, n_skipped=sum(skipped.values()), skipped=dict(skipped),
                     bars={t: p.n for t, p in frames_in.items()}, seconds=timings)
    return out
