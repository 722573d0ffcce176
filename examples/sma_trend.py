import numpy as np

from alphasignal.backtest import ParamSpec


class SmaTrend:
    """Long while the close is above its simple moving average, short (flat when long-only) below it."""

    PARAM_SPECS = {"period": ParamSpec(5, 300, 1, int, 50),         # min, max, step, type, default
                   "band": ParamSpec(0.0, 0.05, 0.005, float, 0.0)}  # dead zone around the average, a fraction
    CONSTRAINTS = {"band must be below 0.04 for periods under 20": lambda p: (p["period"] >= 20) | (p["band"] < 0.04)}

    def warmup(self, p):
        return p["period"] - 1  # bars before the first average

    def positions(self, indicators, p):
        sma = indicators.sma(p["period"])  # bars x configurations: one column per configuration
        close = indicators.close[:, None]
        pos = np.where(close > sma * (1 + p["band"]), 1.0, np.where(close < sma * (1 - p["band"]), -1.0, 0.0))
        return np.where(np.isnan(sma), np.nan, pos)  # NaN = flat (the warm-up)
