"""MA_Crossover written as a user strategy: the built-in's parameters, constraint, warm-up and signal, vectorised.

Run it with
    python 05_sweep_backtest.py --strategy-file examples/ma_crossover_user.py --strategy MyMACrossover
Its metrics equal the built-in MA_Crossover's (tests/test_user_strategy.py checks them to 1e-12).
"""

import numpy as np

from alphasignal.backtest import ParamSpec


class MyMACrossover:
    PARAM_SPECS = {
        "short_period": ParamSpec(2, 200, 1, int, 10),
        "long_period": ParamSpec(5, 400, 1, int, 50),
        "use_ema": ParamSpec(0, 1, 1, bool, False),
    }
    CONSTRAINTS = {"short_period must be < long_period": lambda p: p["short_period"] < p["long_period"]}

    def warmup(self, p):
        return p["long_period"] - 1  # bars before the slow average exists

    def positions(self, indicators, p):
        """Long while the fast average is above the slow one, short (flat when long-only) below; NaN = flat."""
        ema = np.asarray(p["use_ema"], dtype=bool)
        fast = np.where(ema, indicators.ema(p["short_period"]), indicators.sma(p["short_period"]))
        slow = np.where(ema, indicators.ema(p["long_period"]), indicators.sma(p["long_period"]))
        return np.sign(fast - slow)
