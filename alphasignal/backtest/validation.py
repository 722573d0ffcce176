"""Honest evaluation: time-ordered train/test, walk-forward (rolling and anchored) with in-sample and out-of-sample
metrics per configuration, the Deflated Sharpe Ratio and the Probability of Backtest Overfitting (CSCV).

Out-of-sample windows are backtested on the full price history with metrics taken over the window only:
indicators at bar t use bars <= t, so earlier (training) bars may warm indicators up, never the reverse, and
each window starts flat.

References: Bailey & López de Prado (2014), "The Deflated Sharpe Ratio", J. Portfolio Management 40(5);
Bailey, Borwein, López de Prado & Zhu (2015), "The Probability of Backtest Overfitting", J. Computational Finance.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numba as nb
import numpy as np
import pandas as pd

from ..config import SweepConfig

from ..errors import UsageError
from .engine import as_frames, prepare_prices
from .metrics import METRICS
from .strategies import StrategyLike, get_strategy
from .sweep import check_all_valid, run_window
from .xp import resolve

EULER_GAMMA = 0.5772156649015329
_NORMAL = statistics.NormalDist()  # the standard normal (not scipy.stats: a second of import time)


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


def expected_max_sharpe(n_trials: int, sharpe_var: float) -> float:
    """E[max SR] of ``n_trials`` zero-skill trials whose Sharpe ratios have variance ``sharpe_var`` (per bar)."""
    if n_trials < 2:
        return 0.0
    z1 = _NORMAL.inv_cdf(1.0 - 1.0 / n_trials)
    z2 = _NORMAL.inv_cdf(1.0 - 1.0 / (n_trials * math.e))
    return math.sqrt(max(sharpe_var, 0.0)) * ((1.0 - EULER_GAMMA) * z1 + EULER_GAMMA * z2)


def deflated_sharpe_ratio(sharpe: float, n_trials: int, n_obs: int, sharpe_var: float, skew: float = 0.0,
                          kurtosis: float = 3.0) -> float:
    """P(true SR > 0 | best of ``n_trials``): the Probabilistic Sharpe Ratio of the selected per-bar ``sharpe``
    against the expected maximum of zero-skill trials. ``kurtosis`` is the raw (not excess) kurtosis of the
    selected strategy's returns; ``sharpe_var`` the variance of the trials' per-bar Sharpe ratios."""
    if n_obs < 2 or not np.isfinite(sharpe):
        return float("nan")
    sr0 = expected_max_sharpe(n_trials, sharpe_var)
    denom = 1.0 - skew * sharpe + (kurtosis - 1.0) / 4.0 * sharpe * sharpe
    if denom <= 0:
        return float("nan")
    z = (sharpe - sr0) * math.sqrt(n_obs - 1) / math.sqrt(denom)
    return 0.5 * math.erfc(-z / math.sqrt(2.0))  # the normal CDF, accurate in both tails


def dsr_of_best(best_returns: np.ndarray, trial_sharpes: np.ndarray) -> dict[str, float]:
    """DSR of the selected configuration, from its per-bar returns and all trials' per-bar Sharpe ratios."""
    r = np.asarray(best_returns, dtype="float64")
    sr = np.asarray(trial_sharpes, dtype="float64")
    sr = sr[np.isfinite(sr)]
    sd = r.std(ddof=1)
    best = float(r.mean() / sd) if sd > 0 else float("nan")
    d = r - r.mean()
    m2 = float(np.mean(d * d))
    skew = float(np.mean(d * d * d)) / m2**1.5 if sd > 0 else 0.0  # biased moments, as scipy.stats' defaults
    kurt = float(np.mean((d * d) ** 2)) / m2**2 if sd > 0 else 3.0  # raw (not excess) kurtosis
    var = float(sr.var(ddof=1)) if len(sr) > 1 else 0.0
    return {"dsr": deflated_sharpe_ratio(best, len(sr), len(r), var, skew, kurt), "sharpe_per_bar": best,
            "expected_max_sharpe_per_bar": expected_max_sharpe(len(sr), var), "n_trials": len(sr), "n_obs": len(r),
            "skew": skew, "kurtosis": kurt}


@dataclass(frozen=True)
class PBOResult:
    """Probability of backtest overfitting and the CSCV logits it is computed from."""

    pbo: float
    logits: np.ndarray
    n_combinations: int  # combinations evaluated
    n_configs: int
    of_combinations: int  # all C(S, S/2); more than n_combinations when they were sampled


@nb.njit(inline="always", cache=True)
def _sharpe(s1: float, s2: float, n: float) -> float:
    var = (s2 - s1 * s1 / n) / (n - 1)
    if not var > 1e-300:  # flat (or NaN) returns cannot be chosen
        return -np.inf
    sr = (s1 / n) / np.sqrt(var)
    return sr if np.isfinite(sr) else -np.inf


@nb.njit(inline="always", cache=True)
def _logit(is_sr: np.ndarray, oos_sr: np.ndarray) -> float:
    chosen = oos_sr[np.argmax(is_sr)]
    below = ties = 0
    for v in oos_sr:
        below += v < chosen
        ties += v == chosen
    omega = (below + (ties + 1) / 2.0) / (len(oos_sr) + 1)
    return np.log(omega / (1.0 - omega))


@nb.njit(parallel=True, cache=True)
def _cscv_logits(b1, b2, bars, halves, out):
    """Logits of each half ``halves[i]`` (in sample, out of sample its complement ``halves[i + m]``) into out[i],
    and of the complement into out[i + m]: one pair of Sharpe vectors serves both combinations."""
    m, k = len(halves) // 2, b1.shape[1]
    for i in nb.prange(m):
        sr = np.empty((2, k))
        for side in range(2):
            s1, s2, n = np.zeros(k), np.zeros(k), 0.0
            for q in halves[i + side * m]:
                n += bars[q]
                for j in range(k):
                    s1[j] += b1[q, j]
                    s2[j] += b2[q, j]
            for j in range(k):
                sr[side, j] = _sharpe(s1[j], s2[j], n)
        out[i] = _logit(sr[0], sr[1])
        out[i + m] = _logit(sr[1], sr[0])


def _cscv_logits_numpy(b1, b2, bars, halves, out, cells: int = 2**21) -> None:
    """:func:`_cscv_logits` in NumPy (nothing to compile; the NumPy engine's PBO), the same sums in the same order,
    a batch of combinations at a time (``cells`` = combinations x configurations per batch)."""
    m, k = len(halves) // 2, b1.shape[1]
    step = max(1, cells // k)
    for a in range(0, m, step):
        sr = []
        for side in range(2):
            h = halves[side * m + a:side * m + min(a + step, m)]
            s1, s2, n = np.zeros((len(h), k)), np.zeros((len(h), k)), np.zeros((len(h), 1))
            for q in h.T:
                n += bars[q][:, None]
                s1 += b1[q]
                s2 += b2[q]
            with np.errstate(divide="ignore", invalid="ignore"):
                var = (s2 - s1 * s1 / n) / (n - 1)
                r = (s1 / n) / np.sqrt(var)
            sr.append(np.where((var > 1e-300) & np.isfinite(r), r, -np.inf))
        for i, (is_sr, oos_sr) in enumerate([(sr[0], sr[1]), (sr[1], sr[0])]):
            chosen = np.take_along_axis(oos_sr, np.argmax(is_sr, axis=1)[:, None], axis=1)
            omega = ((oos_sr < chosen).sum(1) + ((oos_sr == chosen).sum(1) + 1) / 2.0) / (k + 1)
            out[i * m + a:i * m + a + len(omega)] = [math.log(w / (1.0 - w)) for w in omega.tolist()]  # libm's log


def pbo_from_blocks(blocks: np.ndarray, block_bars: np.ndarray, max_work: float = 1e9, seed: int = 0, *,
                    jit: bool = True) -> PBOResult:
    """CSCV from per-block return sums ``blocks`` (configs x S x 2: sum r, sum r^2) and bars per block (S,): every
    way of taking S/2 blocks in sample (Sharpe ratio of the joined blocks) and the rest out of sample. One fused
    parallel pass per complementary pair of combinations (~10x faster than numpy's matrix products and masks).

    When configurations x combinations exceed ``max_work`` (1e9: ~7 s on 2 cores; 10,948 configs x 12,870 is 1.4e8)
    PBO is estimated from complementary pairs drawn without replacement (seeded: reproducible); its standard error
    is at most 0.5 / sqrt(n_combinations). ``jit=False`` computes the same in NumPy (no compile, slower)."""
    k, s, _ = blocks.shape
    if k < 2:
        raise UsageError("PBO needs at least 2 configurations")
    if s < 4 or s % 2:
        raise UsageError(f"PBO needs an even number of splits >= 4 (got {s})")
    firsts = [c for c in itertools.combinations(range(s), s // 2) if c[0] == 0]  # one of each complementary pair
    n_pairs = max(1, min(len(firsts), int(max_work / (2 * k))))
    if n_pairs < len(firsts):
        picked = np.sort(np.random.default_rng(seed).choice(len(firsts), n_pairs, replace=False))
        firsts = [firsts[i] for i in picked]
    halves = np.array(firsts + [tuple(sorted(set(range(s)) - set(c))) for c in firsts], dtype=np.int64)
    logits = np.empty(len(halves))
    (_cscv_logits if jit else _cscv_logits_numpy)(np.ascontiguousarray(blocks[:, :, 0].T),
                                                  np.ascontiguousarray(blocks[:, :, 1].T),
                                                  np.asarray(block_bars, dtype="float64"), halves, logits)
    return PBOResult(float(np.mean(logits <= 0)), logits, len(halves), k, math.comb(s, s // 2))


def probability_of_backtest_overfitting(returns_matrix: np.ndarray | pd.DataFrame, n_splits: int = 16) -> PBOResult:
    """PBO by combinatorially symmetric cross-validation over a (bars x configs) return matrix, Sharpe as the
    performance measure: the share of train/test block combinations where the in-sample best config ranks in the
    bottom half out of sample."""
    r = np.asarray(returns_matrix, dtype="float64")
    if r.ndim != 2 or r.shape[0] < 2 * n_splits:
        raise UsageError(f"PBO needs a bars x configs matrix with at least {2 * n_splits} bars (got {r.shape})")
    edges = np.linspace(0, r.shape[0], n_splits + 1).round().astype(int)
    blocks = np.stack([np.stack([r[a:b].sum(0), (r[a:b] ** 2).sum(0)], axis=1)
                       for a, b in itertools.pairwise(edges)], axis=1)
    return pbo_from_blocks(blocks, np.diff(edges))
