"""Honest evaluation: time-ordered train/test and walk-forward (rolling and anchored) with in-sample and
out-of-sample metrics per configuration. The Deflated Sharpe Ratio and PBO are ``evaluation.overfitting``.

Out-of-sample windows are backtested on the full price history with metrics taken over the window only:
indicators at bar t use bars <= t, so earlier (training) bars may warm indicators up, never the reverse, and
each window starts flat.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from ..config import SweepConfig
from ..errors import UsageError
from ..evaluation.metrics import METRICS
from .engine import as_frames, prepare_prices
from .strategies import StrategyLike, get_strategy
from .sweep import check_all_valid, run_window
from .xp import resolve


def split_train_test(df: pd.DataFrame, test_fraction: float = 0.3) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Time-ordered split: the first ``1 - test_fraction`` of the bars, then the rest (no shuffling)."""
    if not 0 < test_fraction < 1:
        raise UsageError(f"test_fraction={test_fraction} must be in (0, 1)")
    cut = split_point(len(df), test_fraction)
    return df.iloc[:cut], df.iloc[cut:]


def split_point(n: int, test_fraction: float) -> int:
    """First out-of-sample bar of an ``n``-bar series."""
    cut = int(round(n * (1 - test_fraction)))
    if cut < 3 or n - cut < 3:
        raise UsageError(f"test_fraction={test_fraction} leaves fewer than 3 bars on one side of {n}: change it")
    return cut


def _paired(is_frame: pd.DataFrame, oos_frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    out = is_frame[keys].copy()
    for m in METRICS:
        out[f"is_{m}"] = is_frame[m].to_numpy()
    for m in METRICS:
        out[f"oos_{m}"] = oos_frame[m].to_numpy()
    return out


def _setup(strategy: StrategyLike, params_list: list[dict[str, Any]], options: SweepConfig | None):
    """Options, strategy, checked configurations and backend shared by the split helpers."""
    opts, strat = options or SweepConfig(), get_strategy(strategy)
    return opts, strat, check_all_valid(strat, params_list), resolve(opts.device, opts.engine)


def train_test(data: pd.DataFrame | Mapping[str, pd.DataFrame], strategy: StrategyLike,
               params_list: list[dict[str, Any]], *, test_fraction: float | None = None,
               options: SweepConfig | None = None) -> pd.DataFrame:
    """In-sample (``is_*``) and out-of-sample (``oos_*``) metrics per (ticker, config) for a time-ordered split."""
    opts, strat, configs, backend = _setup(strategy, params_list, options)
    frac = opts.test_fraction if test_fraction is None else test_fraction
    frames = []
    for ticker, df in as_frames(data).items():
        prices = prepare_prices(df, ticker, strat.needs)
        cut = split_point(prices.n, frac)
        is_f, _, _ = run_window(prices, strat, configs, opts, backend, lo=0, hi=cut)
        oos_f, _, _ = run_window(prices, strat, configs, opts, backend, lo=cut, hi=prices.n)
        out = _paired(is_f, oos_f, ["ticker", *strat.specs])
        out["split_date"] = prices.index[cut]
        frames.append(out)
    return pd.concat(frames, ignore_index=True)


def fold_windows(n: int, n_splits: int, *, train_bars: int | None = None, test_bars: int | None = None,
                 anchored: bool = False, what: str = "data", fix: str = "lower n_splits or the window sizes"
                 ) -> list[tuple[int, int, int, int]]:
    """Walk-forward folds over ``n`` bars as ``(train_lo, train_hi, test_lo, test_hi)`` bar positions: the last
    ``n_splits`` windows of ``test_bars`` (default ``n // (n_splits + 1)``) are tested, each right after a training
    window that rolls (``train_bars``, default ``n - n_splits * test_bars``) or is anchored at bar 0."""
    if n_splits < 1:
        raise UsageError(f"n_splits={n_splits} must be >= 1")
    test = test_bars or n // (n_splits + 1)
    train = train_bars or n - n_splits * test
    if test < 3 or train < 3 or train + n_splits * test > n:
        raise UsageError(f"{what}: walk-forward needs train ({train}) + {n_splits} x test ({test}) bars within {n} "
                         f"(each >= 3): {fix}")
    folds = []
    for fold in range(n_splits):
        t_lo = n - (n_splits - fold) * test
        folds.append((0 if anchored else t_lo - train, t_lo, t_lo, t_lo + test))
    return folds


def walk_forward(data: pd.DataFrame | Mapping[str, pd.DataFrame], strategy: StrategyLike,
                 params_list: list[dict[str, Any]], *, n_splits: int = 5, train_bars: int | None = None,
                 test_bars: int | None = None,
                 anchored: bool = False, options: SweepConfig | None = None) -> pd.DataFrame:
    """Walk-forward folds (:func:`fold_windows`) of fixed configurations: each tests ``test_bars`` right after a
    training window that either rolls (fixed ``train_bars``) or is anchored at the first bar. One row per (ticker,
    fold, config) with ``is_*``/``oos_*``. :func:`~.wfo.walk_forward_optimize` re-chooses the configuration per fold."""
    if n_splits < 1:
        raise UsageError(f"n_splits={n_splits} must be >= 1")
    opts, strat, configs, backend = _setup(strategy, params_list, options)
    frames = []
    for ticker, df in as_frames(data).items():
        prices = prepare_prices(df, ticker, strat.needs)
        windows = fold_windows(prices.n, n_splits, train_bars=train_bars, test_bars=test_bars, anchored=anchored,
                               what=ticker)
        for fold, (tr_lo, tr_hi, t_lo, t_hi) in enumerate(windows):
            is_f, _, _ = run_window(prices, strat, configs, opts, backend, lo=tr_lo, hi=tr_hi)
            oos_f, _, _ = run_window(prices, strat, configs, opts, backend, lo=t_lo, hi=t_hi)
            out = _paired(is_f, oos_f, ["ticker", *strat.specs])
            out.insert(1, "fold", fold)
            out.insert(2, "train_start", prices.index[tr_lo])
            out.insert(3, "test_start", prices.index[t_lo])
            out.insert(4, "test_end", prices.index[t_hi - 1])
            frames.append(out)
    return pd.concat(frames, ignore_index=True)
