"""Stationary (Politis & Romano, 1994) bootstrap confidence interval of an annualised Sharpe ratio.

Resamples blocks of consecutive per-bar returns whose lengths are geometric with mean ``mean_block`` (default
``n ** (1/3)``), wrapping around the end, so serial correlation inside a block is kept. Seeded: the same inputs
give the same interval. The Sharpe ratio follows ``metrics.py``: mean(r - rf) / std(r, ddof=1) * sqrt(ppy).
"""

from __future__ import annotations

import numpy as np


def sharpe_of(returns: np.ndarray, ppy: float, rf_bar: float = 0.0) -> np.ndarray:
    """Annualised Sharpe ratio along the last axis (NaN where the returns have no variance)."""
    r = np.asarray(returns, dtype="float64")
    sd = r.std(axis=-1, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(sd > 0, (r.mean(axis=-1) - rf_bar) / sd * np.sqrt(ppy), np.nan)


def stationary_indices(n: int, n_boot: int, mean_block: float, rng: np.random.Generator) -> np.ndarray:
    """``(n_boot, n)`` resampling indices: a block continues with probability ``1 - 1/mean_block``."""
    p_new = 1.0 / max(mean_block, 1.0)
    idx = np.empty((n_boot, n), dtype=np.int64)
    idx[:, 0] = rng.integers(0, n, n_boot)
    jumps = rng.random((n_boot, n)) < p_new
    starts = rng.integers(0, n, (n_boot, n))
    for t in range(1, n):
        idx[:, t] = np.where(jumps[:, t], starts[:, t], (idx[:, t - 1] + 1) % n)
    return idx


def sharpe_ci(returns: np.ndarray, ppy: float, *, rf_bar: float = 0.0, seed: int = 0, n_boot: int = 2000,
              level: float = 0.95, mean_block: float | None = None) -> tuple[float, float]:
    """Percentile interval of the annualised Sharpe ratio of ``returns`` (1-D, NaN bars dropped); (nan, nan)
    with fewer than 3 bars or no variance."""
    r = np.asarray(returns, dtype="float64")
    r = r[np.isfinite(r)]
    if len(r) < 3 or not r.std(ddof=1) > 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    idx = stationary_indices(len(r), n_boot, mean_block or len(r) ** (1 / 3), rng)
    sr = sharpe_of(r[idx], ppy, rf_bar)
    sr = sr[np.isfinite(sr)]
    if not len(sr):
        return float("nan"), float("nan")
    tail = (1.0 - level) / 2.0 * 100.0
    lo, hi = np.percentile(sr, [tail, 100.0 - tail])
    return float(lo), float(hi)
