"""The notebook API (``from alphasignal import Strategy, backtest, sweep, SignalPipeline, replay``): loaded on first
use, the same numbers as the library functions it wraps, a strategy class used with no file. docs/api.md's example
runs in tests/test_docs.py (slow)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from alphasignal.config import SweepConfig
from alphasignal.errors import UsageError

ROOT = Path(__file__).resolve().parents[1]


def test_importing_alphasignal_loads_nothing_else():
    probe = "import sys, alphasignal; print(sorted(m for m in sys.modules if m.startswith('alphasignal')))"
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['alphasignal']"


def test_backtest_and_replay_are_the_packages_made_callable_whichever_import_comes_first():
    probe = ("import alphasignal.backtest as bt, alphasignal.replay as rp\n"
             "from alphasignal import Strategy, SignalPipeline, backtest, replay, sweep\n"
             "import alphasignal\n"
             "assert backtest is bt is alphasignal.backtest and replay is rp and callable(bt) and callable(rp)\n"
             "assert bt.run_sweep and rp.__name__ == 'alphasignal.replay' and sweep.__module__.endswith('notebook')\n"
             "assert SignalPipeline.__module__ == 'alphasignal.signals.pipeline' and isinstance(Strategy, type)\n"
             "print(sorted(set(dir(alphasignal)) & {'Strategy', 'backtest', 'sweep', 'SignalPipeline', 'replay'}))")
    for first in (probe, "from alphasignal import backtest, replay\n" + probe):
        res = subprocess.run([sys.executable, "-c", first], cwd=ROOT, capture_output=True, text=True)
        assert res.returncode == 0, res.stderr
        assert res.stdout.split() == ["['SignalPipeline',", "'Strategy',", "'backtest',", "'replay',", "'sweep']"]
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        import alphasignal

        alphasignal.nothing  # noqa: B018


@pytest.fixture(scope="module")
def prices(aapl) -> pd.DataFrame:
    return aapl.iloc[-800:]


def test_backtest_is_one_configuration_of_the_library_backtest_with_defaults_filled(prices):
    from alphasignal import backtest

    got = backtest(prices, "MA_Crossover", short_period=10, long_period=50, options={"fees_bps": 5})
    config = {"short_period": 10, "long_period": 50, "use_ema": False}
    want, curves = backtest.backtest(prices, "MA_Crossover", [config], options=SweepConfig(fees_bps=5),
                                     return_curves=True)
    assert got.strategy == "MA_Crossover" and got.params == config
    assert got.metrics.to_dict() == want.drop(columns=["ticker", *config]).iloc[0].to_dict()
    pd.testing.assert_series_equal(got.equity, curves[0].rename("equity"))
    assert got.equity.index[-1] == prices.index[-1] and got.metrics["trades"] > 0


def test_sweep_is_the_library_sweep_and_options_are_checked(prices):
    from alphasignal import backtest, sweep

    grid = {"short_period": [5, 10], "long_period": [50, 100]}
    pd.testing.assert_frame_equal(sweep(prices, "MA_Crossover", grid), backtest.run_sweep(prices, "MA_Crossover", grid),
                                  check_like=True)
    with pytest.raises(UsageError, match="unknown sweep option 'fee_bps'.*fees_bps"):
        sweep(prices, "MA_Crossover", grid, options={"fee_bps": 5})
    with pytest.raises(UsageError, match="one price frame"):
        backtest({"AAPL": prices}, "MA_Crossover")


def test_a_strategy_class_runs_with_no_file_and_equals_the_same_class_from_a_file(prices):
    from alphasignal import Strategy, backtest, sweep
    from alphasignal.backtest import ParamSpec, load_strategy

    class NotebookSmaTrend(Strategy):  # examples/sma_trend.py's rule, defined here
        PARAM_SPECS = {"period": ParamSpec(5, 300, 1, int, 50), "band": ParamSpec(0.0, 0.05, 0.005, float, 0.0)}

        def warmup(self, p):
            return p["period"] - 1

        def positions(self, indicators, p):
            sma = indicators.sma(p["period"])
            close = indicators.close[:, None]
            pos = np.where(close > sma * (1 + p["band"]), 1.0, np.where(close < sma * (1 - p["band"]), -1.0, 0.0))
            return np.where(np.isnan(sma), np.nan, pos)

    grid = {"period": [20, 50], "band": [0.0, 0.01]}
    mine = sweep(prices, NotebookSmaTrend, grid)
    shipped = sweep(prices, load_strategy("SmaTrend", str(ROOT / "examples" / "sma_trend.py")), grid)
    metrics = [c for c in mine.columns if c != "ticker"]
    pd.testing.assert_frame_equal(mine[metrics], shipped[metrics])
    assert backtest(prices, NotebookSmaTrend, period=20).params == {"period": 20, "band": 0.0}


def test_a_strategy_class_that_looks_ahead_is_refused_on_first_use(prices):
    from alphasignal import Strategy, sweep
    from alphasignal.backtest import ParamSpec

    class Peeks(Strategy):
        PARAM_SPECS = {"period": ParamSpec(2, 50, 1, int, 10)}

        def positions(self, indicators, p):
            sma = indicators.sma(p["period"])
            return np.sign(np.roll(sma, -1, axis=0) - sma)  # tomorrow's average

    with pytest.raises(UsageError, match="looks ahead"):
        sweep(prices, Peeks, {"period": [5]})
    with pytest.raises(UsageError, match="built-in name"):
        sweep(prices, type("MACD", (Strategy,), {"PARAM_SPECS": {"p": ParamSpec(1, 2, 1, int, 1)}}), {"p": [1]})
