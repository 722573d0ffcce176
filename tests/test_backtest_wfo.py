"""Stage 05 walk-forward optimisation: against a reference written fold by fold, a planted edge kept out of sample
vs pure noise, no look-ahead (hypothesis), selection rules (NaN, ties, empty folds), stability, config and CLI."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alphasignal.backtest import STRATEGIES, backtest, get_strategy, returns_matrix, walk_forward_optimize
from alphasignal.backtest.wfo import choose, parameter_stability
from alphasignal.config import ConfigError, SweepConfig
from alphasignal.evaluation.metrics import from_returns

ROOT = Path(__file__).resolve().parents[1]
OPTS = SweepConfig(device="cpu", periods_per_year=252.0, fees_bps=1.0)
GRID = {"short_period": [3, 5, 10, 20, 40], "long_period": [30, 60, 120, 200], "use_ema": [False, True]}
PARAMS = ["short_period", "long_period", "use_ema"]


def _frame(close: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({"Open": close, "High": close, "Low": close, "Close": close},
                        index=pd.bdate_range("1990-01-01", periods=len(close)))


def _reference_wfo(df: pd.DataFrame, strategy: str, configs: list[dict], k: int, anchored: bool, opts: SweepConfig):
    """WFO written out fold by fold: windows from their definition, a backtest of every configuration on the
    training window, a plain loop for the best (first on ties, NaN skipped), a backtest of it on the test window."""
    n = len(df)
    test = n // (k + 1)
    train = n - k * test
    warm = get_strategy(strategy).warmup
    chosen, rets, trades = [], [], 0
    for fold in range(k):
        t_lo = n - (k - fold) * test
        tr_lo = 0 if anchored else t_lo - train
        fits = [c for c in configs if warm(pd.DataFrame([c])).item() < t_lo - 1]
        scores = backtest(df, strategy, fits, options=opts, start=tr_lo, end=t_lo)[opts.sort_by].to_numpy()
        best = None
        for i, v in enumerate(scores):
            v = -v if opts.sort_by == "max_drawdown" else v
            if not np.isnan(v) and (best is None or v > best[1]):
                best = (i, v)
        chosen.append(fits[best[0]])
        rets.append(returns_matrix(df, strategy, [fits[best[0]]], options=opts, start=t_lo, end=t_lo + test)[0])
        trades += int(backtest(df, strategy, [fits[best[0]]], options=opts, start=t_lo, end=t_lo + test)["trades"][0])
    return chosen, pd.concat(rets), trades


@pytest.mark.parametrize("anchored", [False, True])
@pytest.mark.parametrize("sort_by,mode,entry", [("sharpe", "long_only", "state"),
                                                ("total_return", "long_short", "state"),
                                                ("max_drawdown", "long_short", "state"),
                                                ("sharpe", "long_short", "cross")])
def test_wfo_matches_a_reference_written_fold_by_fold(goog, reference, anchored, sort_by, mode, entry):
    opts = SweepConfig(device="cpu", periods_per_year=252.0, fees_bps=2.0, mode=mode, sort_by=sort_by, entry=entry)
    configs = [c for c in _grid_configs() if c["short_period"] < c["long_period"]]
    res = walk_forward_optimize(goog, "MA_Crossover", GRID, options=opts, folds=4, anchored=anchored)
    want_params, want_rets, want_trades = _reference_wfo(goog, "MA_Crossover", configs, 4, anchored, opts)
    assert res.folds[PARAMS].to_dict("records") == want_params
    assert res.returns.index.equals(want_rets.index)
    np.testing.assert_allclose(res.returns.to_numpy(), want_rets.to_numpy(), rtol=0, atol=1e-12)
    ref = from_returns(want_rets.to_numpy(), 252.0)
    for name in ("sharpe", "total_return", "cagr", "max_drawdown", "sortino"):
        assert res.metrics[name] == pytest.approx(float(ref[name][0]), rel=1e-9, abs=1e-12), name
    assert res.metrics["trades"] == want_trades == res.folds["oos_trades"].sum()
    # the last fold's test window against the independent bar-by-bar reference loop
    last = res.folds.iloc[-1]
    lo = goog.index.get_loc(last["test_start"])
    loop = reference(goog, "MA_Crossover", want_params[-1], mode=mode, fees_bps=2.0, lo=lo, entry=entry)
    assert last["oos_sharpe"] == pytest.approx(loop["sharpe"], rel=1e-9)
    assert (res.folds["train_start"] == goog.index[0]).all() == anchored


def _grid_configs() -> list[dict]:
    return [{"short_period": s, "long_period": w, "use_ema": e} for s in GRID["short_period"]
            for w in GRID["long_period"] for e in GRID["use_ema"]]


def test_wfo_keeps_a_planted_edge_out_of_sample():
    """Returns with momentum (AR(1), phi = 0.25): the fastest crossover has a real edge, which every fold finds and
    keeps out of sample (the full-sample Sharpe ratios: 1.5 for (2, 10), <= 0.6 once long_period >= 30)."""
    rng = np.random.default_rng(11)
    eps = rng.normal(0, 0.01, 6000)
    r = np.empty_like(eps)
    r[0] = eps[0]
    for t in range(1, len(r)):
        r[t] = 0.25 * r[t - 1] + eps[t]
    df = _frame(100 * np.exp(np.cumsum(r - r.mean())))
    opts = SweepConfig(device="cpu", fees_bps=0.0, mode="long_short", periods_per_year=252.0)
    grid = {"short_period": [2, 3, 5, 10, 20], "long_period": [10, 30, 60, 120]}
    res = walk_forward_optimize(df, "MA_Crossover", grid, options=opts, folds=5)
    assert res.metrics["sharpe"] > 1.0  # > 4 standard errors (sqrt(252 / 5000) = 0.22)
    assert (res.folds["oos_sharpe"] > 0.5).all()
    assert res.efficiency > 0.5
    assert res.stability["configuration"]["modal"] == {"short_period": 2, "long_period": 10, "use_ema": False}
    assert res.stability["configuration"]["modal_fraction"] >= 0.8


def test_wfo_reports_about_zero_out_of_sample_for_pure_noise():
    """Driftless random walk, 30,000 bars: every in-sample winner is luck. The stitched out-of-sample Sharpe ratio
    is within 3 standard errors (sqrt(252 / 25,000 oos bars) = 0.10) of zero (measured: -0.055), the winners'
    in-sample Sharpe ratios (mean 0.33) are not, and walk-forward efficiency says so (measured: -0.51)."""
    r = np.random.default_rng(5).normal(0, 0.01, 30_000)
    df = _frame(100 * np.exp(np.cumsum(r - r.mean())))
    opts = SweepConfig(device="cpu", fees_bps=0.0, mode="long_short", periods_per_year=252.0)
    grid = {"short_period": {"min": 2, "max": 40, "step": 2}, "long_period": {"min": 20, "max": 200, "step": 20}}
    res = walk_forward_optimize(df, "MA_Crossover", grid, options=opts, folds=5)
    se = np.sqrt(252.0 / len(res.returns))
    assert abs(res.metrics["sharpe"]) < 3 * se
    assert res.folds["is_sharpe"].mean() - res.metrics["sharpe"] > 2 * se  # looked good in sample only
    assert res.efficiency < 0.5
    assert res.stability["configuration"]["distinct"] >= 3  # and the "best" configuration keeps changing


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(strategy=st.sampled_from(STRATEGIES), seed=st.integers(0, 2**31 - 1), fold=st.integers(0, 1),
       anchored=st.booleans(), mode=st.sampled_from(["long_only", "long_short"]))
def test_wfo_fold_ignores_every_bar_after_its_test_window(strategy, seed, fold, anchored, mode, aapl, configs_for):
    """Changing every price after fold k's test window changes neither fold k's choice nor its returns."""
    df = aapl.iloc[:900]
    rng = np.random.default_rng(seed)
    configs = configs_for(strategy, rng, 12, max_window=60)
    opts = SweepConfig(device="cpu", mode=mode, fees_bps=5.0)
    base = walk_forward_optimize(df, strategy, configs, options=opts, folds=3, anchored=anchored)
    end = df.index.get_loc(base.folds["test_end"].iloc[fold]) + 1
    future = df.copy()
    future.iloc[end:, :4] = df.iloc[end:, :4].to_numpy() * np.exp(rng.normal(0, 0.05, (len(df) - end, 1)))
    other = walk_forward_optimize(future, strategy, configs, options=opts, folds=3, anchored=anchored)
    pd.testing.assert_frame_equal(base.folds.iloc[:fold + 1], other.folds.iloc[:fold + 1])
    until = base.returns.index <= base.folds["test_end"].iloc[fold]
    np.testing.assert_array_equal(base.returns[until].to_numpy(), other.returns[until].to_numpy())
    held = (other.folds["oos_exposure"].iloc[fold + 1:] > 0).any()
    assert not held or not base.returns[~until].equals(other.returns[~until])  # later folds saw the change


def test_choose_skips_nan_breaks_ties_by_grid_order_and_minimises_drawdown():
    assert choose(np.array([np.nan, 1.0, 2.0, 2.0, np.nan]), "sharpe") == 2
    assert choose(np.array([np.nan, np.nan]), "sharpe") is None
    assert choose(np.array([0.3, np.nan, 0.1, 0.1]), "max_drawdown") == 2
    assert choose(np.array([1.0, np.inf, np.inf]), "profit_factor") == 1


def test_fold_without_a_defined_metric_stays_flat():
    """Constant prices through the first training window: no configuration has a Sharpe ratio there."""
    close = np.r_[np.full(600, 50.0), 50 * np.exp(np.cumsum(np.random.default_rng(2).normal(0, 0.01, 1400)))]
    res = walk_forward_optimize(_frame(close), "MA_Crossover", {"short_period": [5, 10], "long_period": [20, 50]},
                                options=OPTS, folds=3)
    first = res.folds.iloc[0]
    assert first["candidates"] == 0 and pd.isna(first["short_period"]) and first["oos_trades"] == 0
    assert (res.returns.iloc[:int(first["test_bars"])] == 0).all()
    assert (res.folds["candidates"].iloc[1:] == 4).all() and res.stability["short_period"]["distinct"] >= 1


def test_parameter_stability_definition():
    chosen = pd.DataFrame({"a": [5, 10, 5, 10, 5], "b": [True, True, True, False, True]})
    stab = parameter_stability(chosen)
    assert stab["a"] == {"distinct": 2, "modal": 5, "modal_fraction": 0.6}
    assert stab["b"] == {"distinct": 2, "modal": True, "modal_fraction": 0.8}
    assert stab["configuration"] == {"distinct": 3, "modal": {"a": 5, "b": True}, "modal_fraction": 0.6}
    tie = parameter_stability(pd.DataFrame({"a": [7, 3, 3, 7]}))
    assert tie["a"]["modal"] == 7  # ties: the value chosen first


def test_config_validates_walk_forward():
    with pytest.raises(ConfigError, match="use 0 \\(off\\) or >= 2 folds"):
        SweepConfig(walk_forward=1)
    assert SweepConfig(walk_forward=5, anchored=True).walk_forward == 5


def _run_cli(*argv: str) -> int:
    from alphasignal.cli import run_stage

    spec = importlib.util.spec_from_file_location("sweep_script", ROOT / "05_sweep_backtest.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return run_stage(mod.stage, mod.__doc__, ["--quiet", "--source", "offline", *argv])


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_cli_walk_forward_writes_folds_metadata_and_table(tmp_path, capsys, suffix):
    out = tmp_path / f"res{suffix}"
    assert _run_cli("--tickers", "AAPL,GOOG", "--grid", "{short_period=[5, 20], long_period=[50, 100]}",
                    "--walk-forward", "3", "--anchored", "--output", str(out), "--set", "dataset.start=2005-01-01",
                    "--set", "dataset.end=2013-01-01") == 0
    folds = pd.read_csv(tmp_path / "res_wfo.csv") if suffix == ".csv" else pd.read_parquet(tmp_path / "res_wfo.parquet")
    assert len(folds) == 6 and list(folds["fold"]) == [0, 1, 2] * 2 and set(folds["ticker"]) == {"AAPL", "GOOG"}
    assert {"short_period", "long_period", "is_sharpe", "oos_sharpe", "oos_total_return"} <= set(folds.columns)
    wf = json.loads(out.with_suffix(".meta.json").read_text())["walk_forward"]
    goog = wf["tickers"]["GOOG"]
    assert goog["folds"] == 3 and goog["anchored"] is True and len(goog["per_fold"]) == 3
    assert {"sharpe", "total_return", "cagr", "max_drawdown", "trades"} <= set(goog["stitched_oos"])
    assert set(goog["stability"]) == {"short_period", "long_period", "use_ema", "configuration"}
    assert "walk-forward efficiency" in wf["definitions"]
    printed = capsys.readouterr().out
    assert "walk-forward optimisation, 3 anchored folds" in printed and "stitched out-of-sample" in printed


@pytest.mark.parametrize("argv,message", [
    (["--walk-forward", "1"], "sweep.walk_forward=1 is invalid"),
    (["--walk-forward", "400", "--set", "dataset.start=2024-01-01"], "lower --walk-forward"),
    (["--walk-forward", "5", "--grid", "{short_period=[5], long_period=[200]}", "--set", "dataset.start=2024-01-01"],
     "no configuration warms up"),
])
def test_cli_walk_forward_bad_input_exits_2_before_writing(argv, message, tmp_path, capsys):
    out = tmp_path / "r.csv"
    assert _run_cli(*argv, "--output", str(out)) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("strategy,entry", [(s, "state") for s in STRATEGIES] + [("MA_Crossover", "cross"),
                                                                                  ("MACD", "cross")])
def test_one_pass_with_stops_equals_a_run_per_window(strategy, entry, goog, configs_for, monkeypatch):
    """Anchored training windows come from one kernel pass recording the accumulators at each stop; they must equal
    one run per window (kernel passes cut across the stops too)."""
    from alphasignal.backtest import kernels
    from alphasignal.backtest.engine import prepare_prices, simulate
    from alphasignal.backtest.strategies import as_config_frame
    from alphasignal.backtest.wfo import upto
    from alphasignal.backtest.xp import resolve

    monkeypatch.setattr(kernels, "BAR_BLOCK", 97)
    prices = prepare_prices(goog, "GOOG", get_strategy(strategy).needs)
    configs = as_config_frame(strategy, configs_for(strategy, np.random.default_rng(3), 24, max_window=60))
    opts = SweepConfig(device="cpu", mode="long_short", fill="next_open", fees_bps=3.0, entry=entry)
    stops = (400, 777, 1500, 2000)
    backend = resolve("cpu", "numba")
    acc, _, _ = simulate(upto(prices, stops[-1]), get_strategy(strategy), configs, opts, backend, stops=stops)
    assert acc.shape == (len(stops), len(configs), kernels.NACC)
    for s, got in zip(stops, acc, strict=True):
        want, _, _ = simulate(upto(prices, s), get_strategy(strategy), configs, opts, backend)
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_numpy_engine_gives_the_same_walk_forward(goog):
    """The numpy engine runs one pass per anchored window (no stops): the same choices and returns."""
    grid = {"short_period": [5, 10, 20], "long_period": [50, 100]}
    runs = [walk_forward_optimize(goog, "MA_Crossover", grid, options=SweepConfig(device="cpu", engine=e), folds=3,
                                  anchored=True) for e in ("numba", "numpy")]
    assert runs[0].folds[PARAMS].equals(runs[1].folds[PARAMS])
    np.testing.assert_allclose(runs[0].returns.to_numpy(), runs[1].returns.to_numpy(), rtol=0, atol=1e-12)


def test_cli_walk_forward_folds_path_is_checked_before_any_work(tmp_path, capsys):
    (tmp_path / "r_wfo.csv").mkdir()  # where the folds would go
    assert _run_cli("--walk-forward", "3", "--output", str(tmp_path / "r.csv")) == 2
    assert "walk-forward folds" in capsys.readouterr().err and not (tmp_path / "r.csv").exists()
