"""Bootstrap resampling of return series: i.i.d., circular block and stationary, and percentile intervals.

Every scheme returns ``(n_boot, n)`` indices into a series of ``n`` bars, drawn from a seeded generator (the same
seed gives the same interval):

* :func:`iid_indices`: bars drawn independently (no serial correlation kept);
* :func:`circular_block_indices`: blocks of ``block`` consecutive bars from random starts, wrapping around the
  end (Politis & Romano 1992), cut to ``n`` bars;
* :func:`stationary_indices`: blocks of geometric length with mean ``mean_block`` (Politis & Romano 1994),
  wrapping around the end.

:func:`sharpe_ci` is the Sharpe ratio's interval of the optimizer's hold-out report (stationary, mean block
``n ** (1/3)``); its Newey-West twin is :func:`.hac.sharpe_hac_ci`.
"""

from __future__ import annotations

import numpy as np

from .metrics import sharpe


def iid_indices(n: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """``(n_boot, n)`` indices drawn uniformly with replacement."""
    return rng.integers(0, n, (n_boot, n))


def circular_block_indices(n: int, n_boot: int, block: int, rng: np.random.Generator) -> np.ndarray:
    """``(n_boot, n)`` indices: ``ceil(n / block)`` blocks of ``block`` (at most ``n``) consecutive bars per row,
    each from a uniform start, wrapping around the end."""
    block = max(1, min(int(block), n))
    nblocks = -(-n // block)
    starts = rng.integers(0, n, size=(n_boot, nblocks))
    return ((starts[:, :, None] + np.arange(block)) % n).reshape(n_boot, -1)[:, :n]


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


def percentile_interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Central ``level`` percentile interval of the finite ``values``; (nan, nan) when there are none."""
    v = np.asarray(values, dtype="float64")
    v = v[np.isfinite(v)]
    if not len(v):
        return float("nan"), float("nan")
    tail = round((1.0 - level) / 2.0 * 100.0, 12)  # 2.5 for 0.95, not 2.5000000000000027
    lo, hi = np.percentile(v, [tail, 100.0 - tail])
    return float(lo), float(hi)


def sharpe_ci(returns: np.ndarray, ppy: float, *, rf_bar: float = 0.0, seed: int = 0, n_boot: int = 2000,
              level: float = 0.95, mean_block: float | None = None) -> tuple[float, float]:
    """Stationary-bootstrap percentile interval of the annualised Sharpe ratio of ``returns`` (1-D, NaN bars
    dropped); (nan, nan) with fewer than 3 bars or no variance."""
    r = np.asarray(returns, dtype="float64")
    r = r[np.isfinite(r)]
    if len(r) < 3 or not np.isfinite(sharpe(r)):  # NaN: no variance
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    idx = stationary_indices(len(r), n_boot, mean_block or len(r) ** (1 / 3), rng)
    return percentile_interval(sharpe(r[idx], ppy, rf_bar), level)
