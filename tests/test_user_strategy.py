"""Strategies written by users (``--strategy-file``): parity of MA_Crossover re-written as one with the built-in,
the example of docs/strategies.md run as it says, PARAM_SPECS validation in sweeps, walk-forward and the optimizer, and
one ``error:`` line (exit 2) for each kind of bad strategy file."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alphasignal.agents import space
from alphasignal.backtest import METRICS, backtest, positions, run_sweep, validate_params, walk_forward_optimize
from alphasignal.backtest.user_strategy import load_strategy
from alphasignal.config import SweepConfig
from alphasignal.errors import UsageError

ROOT = Path(__file__).resolve().parents[1]
MA_FILE = ROOT / "examples" / "ma_crossover_user.py"
GRID = {"short_period": [3, 10, 20], "long_period": [30, 60, 120], "use_ema": [False, True]}


@pytest.fixture(scope="module")
def user_ma():
    return load_strategy("MyMACrossover", str(MA_FILE))


def _same(a: pd.DataFrame, b: pd.DataFrame) -> None:
    for m in METRICS:
        np.testing.assert_allclose(a[m].to_numpy(float), b[m].to_numpy(float), rtol=0, atol=1e-12, equal_nan=True,
                                   err_msg=m)


@pytest.mark.parametrize("engine", ["numba", "numpy"])
@pytest.mark.parametrize("mode,fill,fees", [("long_only", "close", 0.0), ("long_short", "next_open", 10.0)])
def test_ma_crossover_as_a_user_strategy_matches_the_builtin(engine, mode, fill, fees, user_ma, aapl):
    opts = SweepConfig(engine=engine, device="cpu", mode=mode, fill=fill, fees_bps=fees, slippage_bps=2.0)
    data = aapl.iloc[-1500:]
    want = run_sweep(data, "MA_Crossover", GRID, options=opts)
    got = run_sweep(data, user_ma, GRID, options=opts)
    assert len(got) == len(want) == 18 and (want["trades"] > 0).all()
    _same(got, want)
    configs = want[list(GRID)].to_dict("records")
    _same(backtest(data, user_ma, configs, options=opts, start=400), backtest(data, "MA_Crossover", configs,
                                                                              options=opts, start=400))
    np.testing.assert_array_equal(positions(data, user_ma, configs[:4], options=opts),
                                  positions(data, "MA_Crossover", configs[:4], options=opts))


@pytest.mark.slow  # an integration test (subprocess or a real model/replay): ~3-13 s
def test_a_numba_rule_matches_the_builtin(aapl):
    """examples/ma_crossover_rule.py: MA_Crossover (simple averages) as a Numba-compiled per-configuration rule."""
    rule_ma = load_strategy("RuleMACrossover", str(ROOT / "examples" / "ma_crossover_rule.py"))
    opts = SweepConfig(device="cpu", engine="numba", mode="long_short", fill="next_open", fees_bps=3.0)
    grid = {k: v for k, v in GRID.items() if k != "use_ema"}
    got = run_sweep(aapl.iloc[-1200:], rule_ma, grid, options=opts)
    want = run_sweep(aapl.iloc[-1200:], "MA_Crossover", {**grid, "use_ema": [False]}, options=opts)
    assert len(got) == 9 and (want["trades"] > 0).all()
    _same(got, want)


def test_walk_forward_of_the_user_strategy_matches_the_builtin(user_ma, aapl):
    opts = SweepConfig(device="cpu", engine="numba", mode="long_short")
    want = walk_forward_optimize(aapl.iloc[-2000:], "MA_Crossover", GRID, options=opts, folds=3, anchored=True)
    got = walk_forward_optimize(aapl.iloc[-2000:], user_ma, GRID, options=opts, folds=3, anchored=True)
    pd.testing.assert_frame_equal(got.folds, want.folds, check_exact=False, rtol=0, atol=1e-12)
    np.testing.assert_allclose(got.returns.to_numpy(), want.returns.to_numpy(), rtol=0, atol=1e-12)


def test_param_specs_apply_in_sweeps_and_the_optimizer(user_ma, aapl):
    assert validate_params(user_ma, {"short_period": 50, "long_period": 20, "use_ema": False}) == [
        "short_period must be < long_period (got {'short_period': 50, 'long_period': 20, 'use_ema': False})"]
    with pytest.raises(UsageError, match=r"long_period=999 outside \[5, 400\]"):
        run_sweep(aapl, user_ma, {"long_period": [999]})
    with pytest.raises(UsageError, match="did you mean 'short_period'"):
        run_sweep(aapl, user_ma, {"short_perod": [5]})
    res = run_sweep(aapl.iloc[-600:], user_ma, {"short_period": [10, 80], "long_period": [50]})
    assert res.attrs["n_skipped"] == 1 and len(res) == 1  # 80 >= 50 breaks the constraint: skipped and counted
    # stage 06 finds the user strategy in the one registry: its specs repair proposals, its constraint rejects
    checked = space.check_proposal("MyMACrossover", {"short_period": 10.4, "long_period": 500, "use_ema": 0}, {})
    assert checked.status == "repaired" and checked.params == {"short_period": 10, "long_period": 400,
                                                               "use_ema": False}
    assert space.check_proposal("MyMACrossover", {"short_period": 60, "long_period": 40, "use_ema": True},
                                {}).status == "rejected"


def test_a_user_strategy_pickles_by_its_source(user_ma, aapl):
    """Dask ships strategies to workers: a user strategy travels as its file's text and is rebuilt there."""
    again = pickle.loads(pickle.dumps(user_ma))
    assert again.name == "MyMACrossover" and again.origin == user_ma.origin
    configs = [{"short_period": 5, "long_period": 40, "use_ema": True}]
    _same(backtest(aapl.iloc[-500:], again, configs), backtest(aapl.iloc[-500:], "MA_Crossover", configs))


def _readme_example() -> tuple[str, str]:
    text = (ROOT / "docs" / "strategies.md").read_text(encoding="utf-8")
    section = text[text.index("## Write your own strategy"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    command = re.search(r"```bash\n(python 05_sweep_backtest.py --strategy-file .*?)\n", section, re.S).group(1)
    return code, command


def test_readme_example_is_the_shipped_file_and_runs_as_written(tmp_path):
    code, command = _readme_example()
    argv = shlex.split(command)
    file = argv[argv.index("--strategy-file") + 1]
    assert code == (ROOT / file).read_text(encoding="utf-8")
    out = tmp_path / "mine.csv"
    res = subprocess.run([sys.executable, *argv[1:], "--source", "offline", "--quiet", "--output", str(out)],
                         cwd=ROOT, capture_output=True, text=True, timeout=600, env={**os.environ, "COLUMNS": "160"})
    assert res.returncode == 0, res.stderr
    rows = pd.read_csv(out)
    assert len(rows) >= 4 and (rows["trades"] > 0).all() and rows["sharpe"].notna().all()
    assert "walk-forward" in res.stdout and (tmp_path / "mine_wfo.csv").exists()
    meta = json.loads((tmp_path / "mine.meta.json").read_text())
    source = (ROOT / file).read_text(encoding="utf-8").encode()
    assert meta["strategy"] == "SmaTrend" and meta["strategy_file"]["sha256"] == hashlib.sha256(source).hexdigest()


_GOOD = """
import numpy as np
from alphasignal.backtest import ParamSpec

class Mine:
    PARAM_SPECS = {"period": ParamSpec(2, 50, 1, int, 10)}

    def positions(self, indicators, p):
        return np.sign(indicators.close[:, None] - BODY)
"""
_RULE = """
import numpy as np
from alphasignal.backtest import ParamSpec

class Mine:
    PARAM_SPECS = {"period": ParamSpec(2, 50, 1, int, 10)}

    @staticmethod
    def rule(open_, high, low, close, period):
        out = np.full(close.shape[0], np.nan)
        for t in range(period, close.shape[0]):
            out[t] = 1.0 if READ > close[t - period] else -1.0
        return out
"""
BAD_FILES = {
    "syntax error": ("class Mine:\n    PARAM_SPECS = {\n", r"mine\.py:\d+: syntax error"),
    "missing specs": ("class Mine:\n    def positions(self, indicators, p):\n        return 0\n", "has no PARAM_SPECS"),
    "wrong shape": (_GOOD.replace("np.sign(indicators.close[:, None] - BODY)", "indicators.sma(p['period']).T"),
                    r"returned an array of shape \(\d+, 5000\), want \(bars, configurations\) = \(5000, \d+\)"),
    "peeks ahead": (_GOOD.replace("BODY", "np.roll(indicators.sma(p['period']), -1, axis=0)"), "looks ahead"),
    "whole-series statistic": (_GOOD.replace("BODY", "indicators.close.mean() + 0 * p['period']"), "looks ahead"),
    "values not -1/0/1": (_GOOD.replace("np.sign(indicators.close[:, None] - BODY)",
                                        "indicators.close[:, None] / 100 + 0 * p['period']"), "positions must be 1"),
    "rule raises": (_GOOD.replace("BODY", "indicators.vwap(p['period'])"), "positions raised AttributeError"),
    "no such class": (_GOOD.replace("class Mine", "class Mien").replace("BODY", "indicators.sma(p['period'])"),
                      "has no class 'Mine' .*did you mean 'Mien'"),
    "bad spec": (_GOOD.replace("ParamSpec(2, 50, 1, int, 10)", "(2, 50, 1, str, 10)").replace("BODY", "0"),
                 "type .* must be int, float or bool"),
    "built-in name": (_GOOD.replace("class Mine", "class MACD").replace("BODY", "0"), "is a built-in name"),
    "rule reads the next bar": (_RULE.replace("READ", "close[t + 1]"), r"Mine\.rule read outside the price arrays"),
    "rule reads the last bar": (_RULE.replace("READ", "close[-1]"), "looks ahead"),
    "rule does not compile": (_RULE.replace("READ", "close[t] + undefined_name"), "could not be compiled by Numba"),
    "rule arguments": (_RULE.replace("READ", "close[t]").replace("period):", "periods):"),
                       r"arguments must be \(open, high, low, close, period\)"),
    "rule result length": (_RULE.replace("READ", "close[t]").replace("return out", "return out[1:]"),
                           "one position per bar"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_a_bad_strategy_file_is_one_usage_error(case, tmp_path):
    source, match = BAD_FILES[case]
    path = tmp_path / "mine.py"
    path.write_text(source)
    name = "MACD" if case == "built-in name" else "Mine"
    with pytest.raises(UsageError, match=match) as info:
        load_strategy(name, str(path))
    assert "\n" not in str(info.value)


def test_a_missing_strategy_file_or_class_is_one_usage_error(tmp_path):
    with pytest.raises(UsageError, match="strategy file .* not found"):
        load_strategy("Mine", str(tmp_path / "nope.py"))
    with pytest.raises(UsageError, match="has no class 'RuleMA' .*strategy classes in it: RuleMACrossover"):
        load_strategy("RuleMA", str(ROOT / "examples" / "ma_crossover_rule.py"))


@pytest.mark.parametrize("case", ["syntax error", "missing specs", "wrong shape", "peeks ahead"])
@pytest.mark.parametrize("script", ["05_sweep_backtest.py", "06_multi_llm_optimize.py"])
def test_a_bad_strategy_file_exits_2_with_one_error_line(case, script, tmp_path):
    path = tmp_path / "mine.py"
    path.write_text(BAD_FILES[case][0])
    out = tmp_path / "out"
    extra = ["--output", str(out / "r.csv")] if script.startswith("05") else ["--output-dir", str(out), "--set",
                                                                              f"optimizer.history_db={out / 'h.db'}"]
    res = subprocess.run([sys.executable, script, "--strategy-file", str(path), "--strategy", "Mine", "--set",
                          "dataset.source=offline", *extra], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 2, res.stderr
    assert res.stderr.startswith("error: ") and res.stderr.count("\n") == 1, res.stderr
    assert re.search(BAD_FILES[case][1], res.stderr)
    assert not out.exists()  # nothing written before the file was checked


_SHIFTED = textwrap.dedent("""
    import numpy as np
    from alphasignal.backtest import ParamSpec

    class Shifted:
        PARAM_SPECS = {{"period": ParamSpec(2, 60, 1, int, {period})}}

        def positions(self, indicators, p):
            sma = indicators.sma(p["period"])
            lag = {lag}  # > 0 reads past bars only; < 0 reads the future
            moved = np.full_like(sma, np.nan)
            if lag > 0:
                moved[lag:] = sma[:-lag]
            elif lag < 0:
                moved[:lag] = sma[-lag:]
            else:
                moved = sma
            return np.sign(indicators.close[:, None] - moved)
""")


@settings(max_examples=12, deadline=None)
@given(period=st.integers(2, 60), lag=st.integers(-40, 40))
def test_the_look_ahead_check_flags_exactly_the_rules_that_read_the_future(tmp_path_factory, period, lag):
    path = tmp_path_factory.mktemp("shifted") / "shifted.py"
    path.write_text(_SHIFTED.format(period=period, lag=lag))
    if lag < 0:
        with pytest.raises(UsageError, match="looks ahead"):
            load_strategy("Shifted", str(path))
    else:
        assert load_strategy("Shifted", str(path)).name == "Shifted"


@pytest.mark.slow
def test_a_user_strategy_sweeps_on_a_dask_cluster_as_in_process(tmp_path):
    """Workers rebuild the strategy from the file's text that travels with each task: the same rows, bit for bit,
    as in-process, and as the built-in it re-writes."""
    grid = ["--grid", "{short_period=[5, 20], long_period=[50, 100], use_ema=[false, true]}", "--tickers", "AAPL,GOOG"]
    runs = {"inproc": ["--strategy-file", str(MA_FILE), "--strategy", "MyMACrossover"],
            "cluster": ["--strategy-file", str(MA_FILE), "--strategy", "MyMACrossover", "--cluster", "local:1"],
            "builtin": []}
    frames = {}
    for name, extra in runs.items():
        out = tmp_path / f"{name}.csv"
        res = subprocess.run([sys.executable, "05_sweep_backtest.py", "--source", "offline", "--quiet", *grid, *extra,
                              "--output", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=600)
        assert res.returncode == 0, res.stderr
        frames[name] = pd.read_csv(out)
    pd.testing.assert_frame_equal(frames["cluster"], frames["inproc"], check_exact=True)
    _same(frames["inproc"], frames["builtin"])
