"""Market regimes from trailing buy & hold returns: bull, bear or sideways at each date, causally.

The regime at date t is set by the equal-weight buy & hold return over the ``window`` bars that end at t's close:
``mean over tickers of close[t] / close[t - window] - 1`` (each ticker on its own bars, the last close at or before
t). Above ``up``: bull; below ``down``: bear; otherwise sideways. Dates with fewer than ``window`` earlier bars
are ``warm-up``. Only closes at or before t are read, so the label is known when the decision at t's close is made.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

REGIMES = ("bull", "bear", "sideways")
WARMUP = "warm-up"


def trailing_return(close: pd.Series, window: int) -> pd.Series:
    """``close[t] / close[t - window] - 1`` on the series' own bars (NaN for the first ``window`` bars)."""
    c = close.astype("float64")
    return c / c.shift(window) - 1.0


def label(trailing: np.ndarray, up: float, down: float) -> np.ndarray:
    """Regime names for trailing returns (NaN: warm-up)."""
    t = np.asarray(trailing, dtype="float64")
    out = np.full(len(t), "sideways", dtype=object)
    out[t > up] = "bull"
    out[t < down] = "bear"
    out[~np.isfinite(t)] = WARMUP
    return out


def classify(frames: dict[str, pd.DataFrame], dates: pd.DatetimeIndex, window: int, up: float, down: float
             ) -> pd.Series:
    """The regime of each of ``dates`` from the tickers' closes (see the module doc)."""
    parts = [trailing_return(df["Close"], window).reindex(dates, method="ffill") for df in frames.values()]
    mean = pd.concat(parts, axis=1).mean(axis=1, skipna=False) if parts else pd.Series(np.nan, index=dates)
    return pd.Series(label(mean.to_numpy(), up, down), index=dates, name="regime")
