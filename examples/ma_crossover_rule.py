"""MA_Crossover (simple averages) written as a Numba-compiled rule: one configuration's positions per call.

Run it with
    python 05_sweep_backtest.py --strategy-file examples/ma_crossover_rule.py --strategy RuleMACrossover \
        --grid '{short_period=[5, 10, 20], long_period=[50, 100]}'
Its metrics equal the built-in MA_Crossover's with use_ema false (tests/test_user_strategy.py checks them).
"""

import numpy as np

from alphasignal.backtest import ParamSpec


class RuleMACrossover:
    PARAM_SPECS = {"short_period": ParamSpec(2, 200, 1, int, 10), "long_period": ParamSpec(5, 400, 1, int, 50)}
    CONSTRAINTS = {"short_period must be < long_period": lambda p: p["short_period"] < p["long_period"]}

    @staticmethod
    def rule(open_, high, low, close, short_period, long_period):
        """Positions of one configuration (compiled by Numba): at bar t it reads bars 0..t only."""
        n = close.shape[0]
        out = np.full(n, np.nan)
        csum = np.zeros(n + 1)
        for t in range(n):
            csum[t + 1] = csum[t] + close[t]
        for t in range(long_period - 1, n):
            fast = (csum[t + 1] - csum[t + 1 - short_period]) / short_period
            slow = (csum[t + 1] - csum[t + 1 - long_period]) / long_period
            out[t] = 1.0 if fast > slow else (-1.0 if fast < slow else 0.0)
        return out
