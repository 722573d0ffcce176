"""Stage 05 honesty: vectorbt parity, no look-ahead (hypothesis), train/test and walk-forward windows, DSR and PBO on
known cases, and the sweep command end to end (outputs, metadata, exit codes)."""

from __future__ import annotations

import importlib.util
import itertools
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alphasignal.backtest import (
    STRATEGIES,
    backtest,
    deflated_sharpe_ratio,
    positions,
    probability_of_backtest_overfitting,
    returns_matrix,
    run_sweep,
    split_train_test,
    train_test,
    walk_forward,
)
from alphasignal.config import SweepConfig
from alphasignal.evaluation.overfitting import dsr_of_best, expected_max_sharpe

ROOT = Path(__file__).resolve().parents[1]
OPTS = SweepConfig(device="cpu", periods_per_year=252.0, fees_bps=0.0)


@pytest.mark.slow  # importing vectorbt compiles its numba code: ~40 s here
@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("fees_bps", [0.0, 10.0])
def test_vectorbt_parity(strategy, fees_bps, goog, reference, configs_for):
    vbt = pytest.importorskip("vectorbt")
    refs = [(c, reference(goog, strategy, c)) for c in configs_for(strategy, np.random.default_rng(7), 16)]
    refs = [(c, r) for c, r in refs if r["trades"] > 0][:4]  # vectorbt calls a flat config's Sharpe inf, we NaN
    assert len(refs) >= 2
    configs = [c for c, _ in refs]
    opts = SweepConfig(device="cpu", periods_per_year=252.0, fees_bps=fees_bps)
    ours = backtest(goog, strategy, configs, options=opts)
    held = pd.DataFrame({i: r["positions"] == 1 for i, (_, r) in enumerate(refs)},
                        index=goog.index)  # the reference's own signals, long-only
    pf = vbt.Portfolio.from_signals(goog["Close"], entries=held, exits=~held, init_cash=1.0, fees=fees_bps / 1e4,
                                    freq="1D")
    theirs = {"sharpe": pf.sharpe_ratio(year_freq="252 days").to_numpy(), "total_return": pf.total_return().to_numpy(),
              "max_drawdown": -pf.max_drawdown().to_numpy(), "trades": pf.trades.count().to_numpy(),
              "win_rate": pf.trades.win_rate().to_numpy()}
    for name, value in theirs.items():
        np.testing.assert_allclose(ours[name].to_numpy(float), value.astype(float), rtol=1e-9, atol=1e-9,
                                   equal_nan=True, err_msg=name)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(strategy=st.sampled_from(STRATEGIES), seed=st.integers(0, 2**31 - 1), cut=st.integers(60, 560),
       mode=st.sampled_from(["long_only", "long_short"]), fill=st.sampled_from(["close", "next_open"]),
       entry=st.sampled_from(["state", "cross"]))
def test_no_look_ahead(strategy, seed, cut, mode, fill, entry, aapl, configs_for):
    """Changing every price after bar ``cut`` changes no position and no equity value up to ``cut``."""
    df = aapl.iloc[:600]
    rng = np.random.default_rng(seed)
    configs = configs_for(strategy, rng, 2, max_window=50)
    shock = np.exp(rng.normal(0, 0.05, (len(df) - cut - 1, 1)))
    future = df.copy()
    future.iloc[cut + 1:, :4] = df.iloc[cut + 1:, :4].to_numpy() * shock
    opts = SweepConfig(device="cpu", mode=mode, fill=fill, fees_bps=5.0, entry=entry)
    _, eq_a = backtest(df, strategy, configs, options=opts, return_curves=True)
    _, eq_b = backtest(future, strategy, configs, options=opts, return_curves=True)
    np.testing.assert_array_equal(eq_a.iloc[:cut + 1].to_numpy(), eq_b.iloc[:cut + 1].to_numpy())
    pos_a, pos_b = positions(df, strategy, configs, options=opts), positions(future, strategy, configs, options=opts)
    np.testing.assert_array_equal(pos_a.iloc[:cut + 1].to_numpy(), pos_b.iloc[:cut + 1].to_numpy())


def test_train_test_and_walk_forward_windows(goog, reference):
    cfgs = [{"short_period": 10, "long_period": 50, "use_ema": False}, {"short_period": 20, "long_period": 100,
                                                                        "use_ema": True}]
    train, test = split_train_test(goog, 0.25)
    assert len(train) + len(test) == len(goog) and train.index[-1] < test.index[0]
    tt = train_test(goog, "MA_Crossover", cfgs, test_fraction=0.25, options=OPTS)
    cut = len(train)
    want_oos = reference(goog, "MA_Crossover", cfgs[1], lo=cut)
    want_is = reference(goog, "MA_Crossover", cfgs[1], hi=cut)
    assert tt["oos_sharpe"][1] == pytest.approx(want_oos["sharpe"], rel=1e-9)
    assert tt["is_total_return"][1] == pytest.approx(want_is["total_return"], rel=1e-9)
    assert tt["split_date"][0] == test.index[0]
    for anchored in (False, True):
        wf = walk_forward(goog, "MA_Crossover", cfgs, n_splits=4, anchored=anchored, options=OPTS)
        assert len(wf) == 4 * 2 and list(wf["fold"].unique()) == [0, 1, 2, 3]
        assert (wf["train_start"] < wf["test_start"]).all() and (wf["test_start"] <= wf["test_end"]).all()
        assert (wf["train_start"] == goog.index[0]).all() == anchored
        assert wf["test_start"].is_monotonic_increasing
        last = wf[wf["fold"] == 3].iloc[1]
        lo = goog.index.get_loc(last["test_start"])
        assert last["oos_sharpe"] == pytest.approx(reference(goog, "MA_Crossover", cfgs[1], lo=lo)["sharpe"], rel=1e-9)


def test_pbo_and_dsr_flag_pure_noise():
    rng = np.random.default_rng(0)
    noise = rng.normal(0, 0.01, (1000, 200))
    res = probability_of_backtest_overfitting(noise, n_splits=10)
    assert res.n_combinations == 252 and 0.3 < res.pbo <= 1.0
    sharpes = noise.mean(0) / noise.std(0, ddof=1)
    best = int(np.argmax(sharpes))
    dsr = dsr_of_best(noise[:, best], sharpes)
    assert dsr["sharpe_per_bar"] > 0.05  # the best noise column looks good in sample ...
    assert dsr["dsr"] < 0.95  # ... and the deflated Sharpe ratio rejects it


def test_pbo_matches_cscv_written_out_combination_by_combination():
    """CSCV from its definition (Bailey et al. 2015): join the chosen blocks' bars, Sharpe per config, the in-sample
    best's relative rank out of sample, logit; one loop per combination over the raw return matrix."""
    rng = np.random.default_rng(3)
    rets = rng.normal(0, 0.01, (240, 30)) + rng.normal(0, 0.002, 30)  # some configs better than others
    rets[:, 4] = rets[:, 5]  # two identical configurations: ties are ranked as the midpoint
    blocks = np.array_split(np.arange(len(rets)), 8)
    logits = []
    for ins in itertools.combinations(range(8), 4):
        is_rows = np.concatenate([blocks[b] for b in ins])
        oos_rows = np.concatenate([blocks[b] for b in range(8) if b not in ins])
        is_sr = rets[is_rows].mean(0) / rets[is_rows].std(0, ddof=1)
        oos_sr = rets[oos_rows].mean(0) / rets[oos_rows].std(0, ddof=1)
        chosen = oos_sr[np.argmax(is_sr)]
        omega = ((oos_sr < chosen).sum() + ((oos_sr == chosen).sum() + 1) / 2) / (rets.shape[1] + 1)
        logits.append(np.log(omega / (1 - omega)))
    res = probability_of_backtest_overfitting(rets, n_splits=8)
    assert res.n_combinations == 70
    np.testing.assert_allclose(np.sort(res.logits), np.sort(logits), rtol=1e-9)
    assert res.pbo == np.mean(np.array(logits) <= 0)


def test_pbo_of_a_huge_sweep_is_estimated_from_drawn_combinations_reproducibly():
    from alphasignal.evaluation.overfitting import pbo_from_blocks

    rng = np.random.default_rng(4)
    k, s = 400, 12
    r = rng.normal(0, 0.01, (1200, k))
    edges = np.linspace(0, len(r), s + 1).astype(int)
    blocks = np.stack([np.stack([r[a:b].sum(0), (r[a:b] ** 2).sum(0)], axis=1)
                       for a, b in itertools.pairwise(edges)], axis=1)
    full = pbo_from_blocks(blocks, np.diff(edges))
    part = pbo_from_blocks(blocks, np.diff(edges), max_work=k * 200)
    assert full.n_combinations == full.of_combinations == 924 and part.of_combinations == 924
    assert part.n_combinations == 200  # 100 complementary pairs
    assert np.isin(part.logits, full.logits).all()  # the same logits, for a subset of the combinations
    again = pbo_from_blocks(blocks, np.diff(edges), max_work=k * 200)
    assert again.pbo == part.pbo and np.array_equal(again.logits, part.logits)  # seeded: reproducible
    assert abs(part.pbo - full.pbo) < 4 * 0.5 / np.sqrt(200)


def test_pbo_and_dsr_accept_a_real_edge():
    rng = np.random.default_rng(1)
    rets = rng.normal(0, 0.01, (1000, 50))
    rets[:, 7] += 0.003  # a persistent edge of 0.3 SD per bar
    assert probability_of_backtest_overfitting(rets, n_splits=10).pbo < 0.05
    sharpes = rets.mean(0) / rets.std(0, ddof=1)
    assert dsr_of_best(rets[:, 7], sharpes)["dsr"] > 0.99


def test_dsr_formula_known_values():
    # one trial: no deflation, PSR against 0 for normal returns
    assert expected_max_sharpe(1, 0.01) == 0.0
    assert deflated_sharpe_ratio(0.1, 1, 101, 0.0) == pytest.approx(0.5 + 0.5 * 0.682689, abs=1e-3)  # z = 1 / ~1
    more = deflated_sharpe_ratio(0.1, 100, 101, 0.0025)
    assert more < deflated_sharpe_ratio(0.1, 10, 101, 0.0025) < deflated_sharpe_ratio(0.1, 1, 101, 0.0025)


def test_sweep_on_random_walk_prices_reports_overfitting():
    """MA crossovers on driftless random walks: the in-sample winner is noise, PBO about 0.5 on average."""
    grid = {"short_period": {"min": 2, "max": 30, "step": 2}, "long_period": {"min": 20, "max": 200, "step": 20}}
    opts = SweepConfig(device="cpu", fees_bps=0.0, mode="long_short")
    pbos = []
    for seed in range(6):  # one path's PBO is noisy (0.3..0.7): average a few
        r = np.random.default_rng(seed).normal(0, 0.01, 3000)
        close = 100 * np.exp(np.cumsum(r - r.mean()))
        df = pd.DataFrame({"Open": close, "High": close, "Low": close, "Close": close},
                          index=pd.bdate_range("2000-01-03", periods=len(close)))
        res = run_sweep(df, "MA_Crossover", grid, options=opts)
        rets = returns_matrix(df, "MA_Crossover", res[["short_period", "long_period", "use_ema"]].to_dict("records"),
                              options=opts)
        pbos.append(probability_of_backtest_overfitting(rets.to_numpy(), n_splits=10).pbo)
    assert np.mean(pbos) > 0.4


def _script():
    spec = importlib.util.spec_from_file_location("sweep_script", ROOT / "05_sweep_backtest.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _run_cli(*argv: str) -> int:
    from alphasignal.cli import run_stage

    mod = _script()
    return run_stage(mod.stage, mod.__doc__, ["--quiet", "--source", "offline", *argv])


def test_cli_several_tickers_writes_results_and_metadata(tmp_path, capsys):
    out = tmp_path / "res.parquet"
    code = _run_cli("--tickers", "AAPL,GOOG", "--grid", "{short_period=[5, 20, 60], long_period=[20, 100]}",
                    "--output", str(out), "--set", "dataset.start=2004-01-01", "--set", "dataset.end=2014-01-01")
    assert code == 0
    res = pd.read_parquet(out)
    assert set(res["ticker"]) == {"AAPL", "GOOG"} and len(res) == 2 * 4  # 4 valid (short, long) pairs per ticker
    assert {"sharpe", "is_sharpe", "oos_sharpe", "oos_max_drawdown"} <= set(res.columns)
    meta = json.loads(out.with_suffix(".meta.json").read_text())
    assert meta["engine"] == "numba" and len(meta["data_hash"]) == 12 and meta["n_skipped"] == {"AAPL": 2, "GOOG": 2}
    assert 0 <= meta["overfitting"]["GOOG"]["pbo"] <= 1 and 0 <= meta["overfitting"]["AAPL"]["dsr"] <= 1
    assert "close of t" in meta["conventions"]
    printed = capsys.readouterr().out
    assert "GOOG: top" in printed and "PBO" in printed and "deflated Sharpe" in printed


@pytest.mark.parametrize("argv,message", [
    (["--strategy", "RSI_Reversal"], "did you mean 'RSI_Reversion'"),
    (["--grid", "{short_period=[60], long_period=[20]}"], "short_period must be < long_period"),
    (["--grid", "{short_period=[-2], long_period=[20]}"], "outside"),
    (["--grid", "{short_period=[5], long_period=[9000]}"], "outside"),
    (["--grid", "{short_period=[5], long_period=[390]}", "--set", "dataset.start=2026-01-01"], "needs 391 bars"),
    (["--grid", "{}"], "grid is empty"),
    (["--grid", "{windw=[5]}"], "unknown parameter"),
    (["--set", "sweep.sort_by=sharp"], "not a metric"),
])
def test_cli_bad_input_exits_2_with_one_line(argv, message, tmp_path, capsys):
    out = tmp_path / "r.csv"
    assert _run_cli(*argv, "--output", str(out)) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not out.exists() and not list(tmp_path.iterdir())  # nothing half-written


def test_cli_forced_gpu_without_a_usable_one_exits_3_with_one_line(tmp_path, capsys):
    if __import__("alphasignal.backtest.xp").backtest.xp.gpu_status()[0]:
        pytest.skip("a GPU is usable here")
    out = tmp_path / "r.csv"
    assert _run_cli("--device", "gpu", "--output", str(out)) == 3
    err = capsys.readouterr().err.strip()
    assert "GPU backend requested but unusable" in err and "--device cpu" in err and len(err.splitlines()) == 1
    assert not list(tmp_path.iterdir())


def test_cli_zero_price_in_csv_exits_2(tmp_path, capsys, goog):
    bad = goog.copy()
    bad.iloc[-50, 3] = 0.0  # inside the default date range
    path = tmp_path / "bad.csv"
    bad.to_csv(path)
    assert _run_cli("--csv", str(path), "--source", "csv", "--output", str(tmp_path / "o.csv")) == 2
    assert "non-positive price" in capsys.readouterr().err


def test_kernel_block_sums_give_the_same_pbo_as_the_return_matrix(goog, monkeypatch):
    """The sweep's PBO comes from per-block sums accumulated in the kernel; they must equal the matrix route."""
    from alphasignal.backtest import kernels
    from alphasignal.backtest.engine import prepare_prices
    from alphasignal.backtest.strategies import get_strategy
    from alphasignal.backtest.sweep import run_window
    from alphasignal.backtest.xp import resolve
    from alphasignal.evaluation.overfitting import pbo_from_blocks

    cfgs = [{"short_period": s, "long_period": w, "use_ema": False} for s in (3, 8, 15) for w in (30, 60, 120)]
    prices = prepare_prices(goog, "GOOG")
    monkeypatch.setattr(kernels, "BAR_BLOCK", 97)  # kernel passes that cut across the CSCV blocks
    _, blocks, rets = run_window(prices, get_strategy("MA_Crossover"), cfgs, OPTS, resolve("cpu", "numba"), n_blocks=8,
                                 want_rets=True)
    edges = np.linspace(0, prices.n, 9).round().astype(int)
    via_blocks = pbo_from_blocks(blocks, np.diff(edges))
    via_matrix = probability_of_backtest_overfitting(rets, n_splits=8)
    np.testing.assert_allclose(via_blocks.logits, via_matrix.logits, rtol=1e-9)
    assert via_blocks.pbo == via_matrix.pbo
