"""Newey-West (HAC) interval of the Sharpe ratio, beside the bootstrap one (Lo 2002, serially correlated returns).

The Sharpe ratio g(mu, s2) = (mu - rf) / sqrt(s2) is a function of the mean and variance of the returns; its
standard error comes from the delta method over the long-run covariance of the moment conditions
``psi_t = (r_t - mu, (r_t - mu)^2 - s2)``, estimated by Newey & West (1987): Bartlett weights ``1 - j / (L + 1)``
for lags ``j = 1..L``, autocovariances divided by ``n``, no small-sample correction. The default lag is
``floor(4 * (n / 100) ** (2 / 9))`` (Newey & West 1994's rule of thumb). With ``L = 0`` the variance reduces to the
i.i.d. one, ``(1 - skew * SR + (kurtosis - 1) / 4 * SR^2) / n`` (Mertens 2002; the DSR's denominator).

The interval is centred on the project's Sharpe ratio (:func:`.metrics.sharpe`, ddof=1); the standard error is
evaluated at the moment estimates (variance with ddof=0, as GMM gives it), annualised with ``sqrt(ppy)``. The
standard error of the mean alone (:func:`hac_se_mean`) equals statsmodels' ``OLS(x, 1)`` HAC ``bse`` (tested).
"""

from __future__ import annotations

import math
import statistics

import numpy as np

from ..errors import UsageError
from .metrics import sharpe


def newey_west_lags(n: int) -> int:
    """The default number of lags for ``n`` observations: ``floor(4 * (n / 100) ** (2 / 9))``."""
    return int(math.floor(4.0 * (n / 100.0) ** (2.0 / 9.0)))


def long_run_covariance(psi: np.ndarray, lags: int) -> np.ndarray:
    """Newey-West long-run covariance (k x k) of the centred moment series ``psi`` (n x k): ``G0 + sum_j w_j (Gj +
    Gj')`` with ``Gj = sum_t psi_t psi_{t-j}' / n`` and ``w_j = 1 - j / (lags + 1)``."""
    psi = np.asarray(psi, dtype="float64")
    if psi.ndim == 1:
        psi = psi[:, None]
    n = psi.shape[0]
    if lags < 0 or lags >= n:
        raise UsageError(f"Newey-West lags={lags} must be in 0..{n - 1} for {n} observations")
    omega = psi.T @ psi / n
    for j in range(1, lags + 1):
        gamma = psi[j:].T @ psi[:-j] / n
        omega += (1.0 - j / (lags + 1.0)) * (gamma + gamma.T)
    return omega


def hac_se_mean(x: np.ndarray, lags: int | None = None) -> float:
    """Newey-West standard error of the mean of ``x`` (``lags`` default :func:`newey_west_lags`)."""
    x = np.asarray(x, dtype="float64")
    n = len(x)
    omega = long_run_covariance(x - x.mean(), newey_west_lags(n) if lags is None else lags)
    return math.sqrt(omega[0, 0] / n)


def sharpe_hac_se(returns: np.ndarray, ppy: float = 1.0, rf_bar: float = 0.0, lags: int | None = None) -> float:
    """Newey-West standard error of the Sharpe ratio of ``returns`` (annualised with ``ppy``; 1: per bar); NaN
    with fewer than 3 bars or no variance."""
    r = np.asarray(returns, dtype="float64")
    n = len(r)
    if n < 3:
        return math.nan
    mu = r.mean()
    d = r - mu
    s2 = float(np.mean(d * d))
    if not s2 > 0:
        return math.nan
    sd = math.sqrt(s2)
    psi = np.column_stack([d, d * d - s2])
    omega = long_run_covariance(psi, newey_west_lags(n) if lags is None else lags)
    grad = np.array([1.0 / sd, -(mu - rf_bar) / (2.0 * s2 * sd)])
    var = float(grad @ omega @ grad) / n
    return math.sqrt(max(var, 0.0) * ppy)


def sharpe_hac_ci(returns: np.ndarray, ppy: float, *, rf_bar: float = 0.0, level: float = 0.95,
                  lags: int | None = None) -> tuple[float, float]:
    """Normal ``level`` interval of the annualised Sharpe ratio of ``returns`` (1-D, NaN bars dropped) with the
    Newey-West standard error; (nan, nan) with fewer than 3 bars or no variance."""
    r = np.asarray(returns, dtype="float64")
    r = r[np.isfinite(r)]
    se = sharpe_hac_se(r, ppy, rf_bar, lags)
    centre = float(sharpe(r, ppy, rf_bar)) if len(r) > 1 else math.nan
    if not (math.isfinite(se) and math.isfinite(centre)):
        return math.nan, math.nan
    z = statistics.NormalDist().inv_cdf(0.5 + level / 2.0)
    return centre - z * se, centre + z * se
