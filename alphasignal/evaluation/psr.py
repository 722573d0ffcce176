"""Probabilistic Sharpe ratio (Bailey & López de Prado 2012) and the Sharpe ratio's two intervals side by side.

``PSR(SR*) = Phi((SR - SR*) * sqrt(n - 1) / sqrt(1 - skew * SR + (kurt - 1) / 4 * SR^2))`` with the per-bar Sharpe
ratio ``SR``, the skewness and raw kurtosis of the returns (:func:`.metrics.moments`, the DSR's moments) and a
benchmark ``SR*`` per bar: 0 (is there any skill?) or buy & hold's Sharpe ratio over the same bars (treated as a
known number, as the paper treats its benchmark). It is the probability that the true Sharpe ratio exceeds SR*.
"""

from __future__ import annotations

import math

import numpy as np

from .bootstrap import circular_block_indices, percentile_interval
from .hac import sharpe_hac_ci
from .metrics import moments, sharpe


def probabilistic_sharpe(returns: np.ndarray, benchmark_per_bar: float = 0.0) -> float:
    """P(true per-bar Sharpe > ``benchmark_per_bar``) of the 1-D ``returns`` (NaN bars dropped); NaN with fewer
    than 3 bars, no variance or a non-finite benchmark."""
    r = np.asarray(returns, dtype="float64")
    r = r[np.isfinite(r)]
    if len(r) < 3 or not math.isfinite(benchmark_per_bar):
        return math.nan
    sr, skew, kurt = moments(r)
    if not math.isfinite(sr):
        return math.nan
    denom = 1.0 - skew * sr + (kurt - 1.0) / 4.0 * sr * sr
    if denom <= 0:
        return math.nan
    z = (sr - benchmark_per_bar) * math.sqrt(len(r) - 1) / math.sqrt(denom)
    return 0.5 * math.erfc(-z / math.sqrt(2.0))


def block_sharpe_ci(returns: np.ndarray, ppy: float, *, seed: int = 0, n_boot: int = 1000, block: int = 20
                    ) -> tuple[float, float]:
    """95 % circular block-bootstrap interval of the annualised Sharpe ratio (the replay's resampling); the block
    shortens to keep at least 10 blocks; (nan, nan) with fewer than 3 bars or no variance."""
    r = np.asarray(returns, dtype="float64")
    r = r[np.isfinite(r)]
    if len(r) < 3 or not math.isfinite(float(sharpe(r))):
        return math.nan, math.nan
    idx = circular_block_indices(len(r), n_boot, max(1, min(block, len(r) // 10)), np.random.default_rng(seed))
    return percentile_interval(sharpe(r[idx], ppy), 0.95)


def sharpe_evidence(returns: np.ndarray, ppy: float, benchmark: np.ndarray | None = None, *, seed: int = 0,
                    n_boot: int = 1000, block: int = 20) -> dict[str, float | tuple[float, float]]:
    """The Sharpe ratio's evidence in one dict: ``boot`` (circular block bootstrap) and ``hac`` (Newey-West) 95 %
    intervals, ``psr_0`` and ``psr_bh`` (against ``benchmark``'s per-bar Sharpe over the same bars; NaN without
    one)."""
    r = np.asarray(returns, dtype="float64")
    r = r[np.isfinite(r)]
    out: dict[str, float | tuple[float, float]] = {
        "boot": block_sharpe_ci(r, ppy, seed=seed, n_boot=n_boot, block=block),
        "hac": sharpe_hac_ci(r, ppy), "psr_0": probabilistic_sharpe(r, 0.0), "psr_bh": math.nan}
    if benchmark is not None:
        b = np.asarray(benchmark, dtype="float64")
        b = b[np.isfinite(b)]
        out["psr_bh"] = probabilistic_sharpe(r, moments(b)[0]) if len(b) >= 3 else math.nan
    return out


def table_extras(returns: np.ndarray, ppy: float, benchmark: np.ndarray | None) -> tuple[dict[str, float],
                                                                                       tuple[float, float]]:
    """For a metrics table's column: (``{"sharpe_hac": Sharpe, "psr_0": ..., "psr_bh": ...}``, the HAC interval
    to put under ``interval["sharpe_hac"]``)."""
    r = np.asarray(returns, dtype="float64")
    r = r[np.isfinite(r)]
    psr_bh = math.nan
    if benchmark is not None:
        b = np.asarray(benchmark, dtype="float64")
        b = b[np.isfinite(b)]
        psr_bh = probabilistic_sharpe(r, moments(b)[0]) if len(b) >= 3 else math.nan
    values = {"sharpe_hac": float(sharpe(r, ppy)) if len(r) > 1 else math.nan,
              "psr_0": probabilistic_sharpe(r, 0.0), "psr_bh": psr_bh}
    return values, sharpe_hac_ci(r, ppy)
