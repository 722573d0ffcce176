"""Selection bias: the Deflated Sharpe Ratio and the Probability of Backtest Overfitting (CSCV).

References: Bailey & López de Prado (2014), "The Deflated Sharpe Ratio", J. Portfolio Management 40(5);
Bailey, Borwein, López de Prado & Zhu (2015), "The Probability of Backtest Overfitting", J. Computational Finance.
Sharpe ratios here are per bar, by :func:`.metrics.sharpe_from_sums` (the one definition).
"""

from __future__ import annotations

import itertools
import math
import statistics
from dataclasses import dataclass

import numba as nb
import numpy as np
import pandas as pd

from ..errors import UsageError
from .metrics import moments, sharpe_from_sums, sharpe_from_sums_np

EULER_GAMMA = 0.5772156649015329
_NORMAL = statistics.NormalDist()  # the standard normal (not scipy.stats: a second of import time)


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


def dsr_of_returns(returns: np.ndarray, n_trials: int, sharpe_var: float) -> dict[str, float]:
    """DSR of one return series selected among ``n_trials`` trials whose per-bar Sharpe ratios have variance
    ``sharpe_var``, with the series' own skewness and kurtosis."""
    r = np.asarray(returns, dtype="float64")
    best, skew, kurt = moments(r)
    return {"dsr": deflated_sharpe_ratio(best, n_trials, len(r), sharpe_var, skew, kurt), "sharpe_per_bar": best,
            "expected_max_sharpe_per_bar": expected_max_sharpe(n_trials, sharpe_var), "n_trials": n_trials,
            "n_obs": len(r), "skew": skew, "kurtosis": kurt}


def dsr_of_best(best_returns: np.ndarray, trial_sharpes: np.ndarray) -> dict[str, float]:
    """DSR of the selected configuration, from its per-bar returns and all trials' per-bar Sharpe ratios (the
    non-finite ones left out)."""
    sr = np.asarray(trial_sharpes, dtype="float64")
    sr = sr[np.isfinite(sr)]
    return dsr_of_returns(best_returns, len(sr), float(sr.var(ddof=1)) if len(sr) > 1 else 0.0)


@dataclass(frozen=True)
class PBOResult:
    """Probability of backtest overfitting and the CSCV logits it is computed from."""

    pbo: float
    logits: np.ndarray
    n_combinations: int  # combinations evaluated
    n_configs: int
    of_combinations: int  # all C(S, S/2); more than n_combinations when they were sampled


@nb.njit(inline="always", cache=True)
def _chosen_sharpe(s1: float, s2: float, n: float) -> float:
    """A configuration's Sharpe ratio as CSCV ranks it: flat (or NaN) returns cannot be chosen (-inf)."""
    sr = sharpe_from_sums(s1, s2, n, 0.0)
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
                sr[side, j] = _chosen_sharpe(s1[j], s2[j], n)
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
            r = sharpe_from_sums_np(s1, s2, n, 0.0)
            sr.append(np.where(np.isfinite(r), r, -np.inf))
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
