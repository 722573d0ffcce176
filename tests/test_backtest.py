"""Stage 05 engine: every backend against the per-configuration reference loop, the interface stage 06 uses,
backend resolution and bad inputs. One suite, every backend (cupy runs only where a GPU is usable)."""

from __future__ import annotations

import zlib

import numpy as np
import pandas as pd
import pytest

from alphasignal.backtest import (
    METRICS,
    PARAM_SPECS,
    STRATEGIES,
    backtest,
    expand_grid,
    get_strategy,
    returns_matrix,
    run_sweep,
    validate_params,
)
from alphasignal.backtest.xp import gpu_status, resolve
from alphasignal.config import SweepConfig
from alphasignal.errors import DeviceError, UsageError

GPU_OK, GPU_WHY = gpu_status()
ENGINES = ["numba", "numpy", pytest.param("cupy", marks=pytest.mark.skipif(not GPU_OK, reason=GPU_WHY))]


def _opts(engine: str, **kw) -> SweepConfig:
    return SweepConfig(engine=engine, device="gpu" if engine == "cupy" else "cpu", periods_per_year=252.0, **kw)


def _assert_matches(got: pd.DataFrame, want: list[dict]) -> None:
    for m in METRICS:
        a = got[m].to_numpy(dtype=float)
        b = np.array([w[m] for w in want], dtype=float)
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9, equal_nan=True, err_msg=m)


@pytest.fixture(scope="module")
def prices(aapl):
    return aapl.iloc[-900:]


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("mode,fill,fees,slip", [("long_only", "close", 0.0, 0.0),
                                                  ("long_short", "next_open", 10.0, 5.0)])
def test_engine_matches_reference(engine, strategy, mode, fill, fees, slip, prices, reference, configs_for):
    configs = configs_for(strategy, np.random.default_rng(zlib.crc32(f"{strategy}{mode}".encode())), 6)
    opts = _opts(engine, mode=mode, fill=fill, fees_bps=fees, slippage_bps=slip, risk_free=0.02)
    got = backtest(prices, strategy, configs, options=opts)
    want = [reference(prices, strategy, c, mode=mode, fill=fill, fees_bps=fees, slippage_bps=slip, risk_free=0.02)
            for c in configs]
    assert (got["trades"] > 0).any()  # the random configs actually trade
    _assert_matches(got, want)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("strategy", ["MA_Crossover", "MACD"])
@pytest.mark.parametrize("mode,fill,fees,start", [("long_only", "close", 0.0, None),
                                                  ("long_short", "next_open", 10.0, 300)])
def test_crossover_entries_match_reference(engine, strategy, mode, fill, fees, start, prices, reference, configs_for):
    """entry="cross": flat until the first crossover event, then a position change at each event only; with an
    evaluation window, an event at its first bar compares with the bar before it."""
    configs = configs_for(strategy, np.random.default_rng(zlib.crc32(f"{strategy}{mode}x".encode())), 6)
    opts = _opts(engine, mode=mode, fill=fill, fees_bps=fees, entry="cross")
    got = backtest(prices, strategy, configs, options=opts, start=start)
    want = [reference(prices, strategy, c, mode=mode, fill=fill, fees_bps=fees, lo=start or 0, entry="cross")
            for c in configs]
    state = [reference(prices, strategy, c, mode=mode, fill=fill, fees_bps=fees, lo=start or 0) for c in configs]
    assert (got["trades"] > 0).all()
    assert any(w["total_return"] != s["total_return"] for w, s in zip(want, state, strict=True))  # not the default
    _assert_matches(got, want)


@pytest.mark.parametrize("engine", ENGINES)
def test_evaluation_window_and_curves_match_reference(engine, goog, reference):
    configs = [{"short_period": 5, "long_period": 40, "use_ema": True}, {"short_period": 20, "long_period": 90,
                                                                         "use_ema": False}]
    opts = _opts(engine, mode="long_short", fees_bps=3.0)
    got, curves = backtest(goog, "MA_Crossover", configs, options=opts, return_curves=True, start=800, end=1900)
    want = [reference(goog, "MA_Crossover", c, mode="long_short", fees_bps=3.0, lo=800, hi=1900) for c in configs]
    _assert_matches(got, want)
    assert curves.shape == (1100, 2) and curves.index[0] == goog.index[800]
    np.testing.assert_allclose(curves[1].to_numpy(), want[1]["equity"], rtol=1e-12)
    rets = returns_matrix(goog, "MA_Crossover", configs, options=opts, start=800, end=1900)
    np.testing.assert_allclose(rets[0].to_numpy(), want[0]["returns"], atol=1e-12)


def test_short_wipe_out_is_closed_and_stays_flat(reference):
    """A short through a gap that more than doubles the price loses everything once, then stays flat."""
    close = np.concatenate([np.linspace(100, 50, 60), np.full(20, 250.0)])
    df = pd.DataFrame({"Open": close, "High": close, "Low": close, "Close": close},
                      index=pd.bdate_range("2020-01-01", periods=len(close)))
    cfg = [{"short_period": 3, "long_period": 10, "use_ema": False}]
    for engine in ("numba", "numpy"):
        got = backtest(df, "MA_Crossover", cfg, options=_opts(engine, mode="long_short", fees_bps=0.0))
        want = reference(df, "MA_Crossover", cfg[0], mode="long_short")
        assert want["total_return"] == -1.0 and want["max_drawdown"] == 1.0
        _assert_matches(got, [want])


def test_sweep_interface_for_stage06(aapl, goog):
    grid = {"short_period": [5, 20, 60], "long_period": {"min": 20, "max": 60, "step": 20}}
    res = run_sweep({"AAPL": aapl, "GOOG": goog}, "MA_Crossover", grid, options=_opts("numba"))
    assert list(res.columns) == ["ticker", "short_period", "long_period", "use_ema", *METRICS]
    assert res.attrs["n_skipped"] == 2 * 4 and res.attrs["engine"] == "numba"  # 5<20,5<40,5<60,20<40,20<60 valid
    assert set(res["ticker"]) == {"AAPL", "GOOG"} and len(res) == 2 * 5
    assert res["trades"].dtype == np.int64
    assert (res["short_period"] < res["long_period"]).all()
    assert set(STRATEGIES) <= set(PARAM_SPECS)  # the built-ins, plus any user strategy an earlier test registered
    for strategy in STRATEGIES:
        specs = PARAM_SPECS[strategy]
        defaults = {k: s.default for k, s in specs.items()}
        assert validate_params(strategy, defaults) == [], strategy
        assert all(s.type in (int, float, bool) and s.min <= s.max for s in specs.values())


def test_validate_params_reports_problems():
    assert validate_params("MA_Crossover", {"short_period": 10, "long_period": 50, "use_ema": False}) == []
    assert "short_period must be < long_period" in validate_params(
        "MA_Crossover", {"short_period": 50, "long_period": 50, "use_ema": False})[0]
    assert "did you mean 'short_period'" in validate_params("MA_Crossover", {"short_perod": 5, "long_period": 9,
                                                                              "use_ema": False})[0]
    assert "integer" in validate_params("MACD", {"fast": 12.5, "slow": 26, "signal": 9})[0]
    assert "outside" in validate_params("MACD", {"fast": -3, "slow": 26, "signal": 9})[0]
    assert "lower must be < upper" in validate_params("RSI_Reversion", {"period": 14, "lower": 50, "upper": 50})[0]


def test_grid_constraints_and_chunking_do_not_change_results(aapl):
    grid = {"short_period": {"min": 2, "max": 30, "step": 4}, "long_period": {"min": 10, "max": 90, "step": 10},
            "use_ema": [False, True]}
    configs = expand_grid("MA_Crossover", grid)
    one = run_sweep(aapl, "MA_Crossover", grid, options=_opts("numba"))
    tiny = run_sweep(aapl, "MA_Crossover", grid, options=_opts("numba", max_memory_mb=1))
    assert one.attrs["n_skipped"] == sum(c["short_period"] >= c["long_period"] for c in configs) > 0
    merged = one.merge(tiny, on=["short_period", "long_period", "use_ema"], suffixes=("", "_t"))
    assert len(merged) == len(one)
    np.testing.assert_array_equal(merged["sharpe"].to_numpy(), merged["sharpe_t"].to_numpy())


@pytest.mark.parametrize("slots,n_keys", [(2, 40), (1, 7), (2, 5000)])
def test_chunk_plan_covers_every_configuration_within_the_budget(slots, n_keys):
    from alphasignal.backtest.engine import _plan_chunks

    codes = np.sort(np.random.default_rng(slots + n_keys).integers(0, n_keys, (20_000, slots)), axis=1)
    row_bytes, cfg_bytes, budget = 40_000, 88, 2**20
    chunks = _plan_chunks(codes, row_bytes, cfg_bytes, budget)
    assert len(chunks) > 1
    np.testing.assert_array_equal(np.sort(np.concatenate(chunks)), np.arange(len(codes)))
    for idx in chunks:
        assert len(np.unique(codes[idx])) * row_bytes + len(idx) * cfg_bytes <= budget
        assert (np.diff(codes[idx][:, -1]) >= 0).all()  # run order: neighbours share their last row
    with pytest.raises(UsageError, match="raise --max-memory"):
        _plan_chunks(codes, row_bytes, cfg_bytes, slots * row_bytes)


def test_fused_kernels_need_no_per_bar_memory_per_configuration():
    from alphasignal.backtest.engine import per_config_bytes

    for engine in ("numba", "cupy"):
        assert per_config_bytes(engine, 5000, 0, False) == per_config_bytes(engine, 500_000, 0, False) <= 16 * 20
        assert per_config_bytes(engine, 5000, 16, True) >= 8 * (32 + 5000)
    assert per_config_bytes("numpy", 5000, 0, False) > 17 * 5000


def test_a_kernel_compilation_is_announced_once_and_cache_hits_are_silent(caplog):
    import numba as nb

    from alphasignal.backtest.kernels import compile_notice

    @nb.njit
    def fresh(x):  # a new function: compiled on its first call
        return x + 1

    with caplog.at_level("WARNING", logger="alphasignal.backtest.kernels"):
        with compile_notice():
            fresh(1)
            fresh(1.5)  # a second signature compiles too: still one notice
        with compile_notice():
            fresh(2)  # already compiled: nothing to say
    assert caplog.text.count("compiling the Numba backtest kernel") == 1


def test_resolver_falls_back_and_forcing_gpu_is_a_clear_error(caplog):
    if GPU_OK:
        pytest.skip("a GPU is usable here: the fallback path is not reachable")
    from alphasignal.backtest import xp

    xp._note_fallback.cache_clear()  # the reason is logged once per process
    with caplog.at_level("INFO", logger="alphasignal.backtest.xp"):
        auto = resolve("auto", "")
        resolve("auto", "")
    assert (auto.engine, auto.device) == ("numba", "cpu") and "auto:" in auto.note
    assert caplog.text.count("no GPU backend") == 1 and "using the CPU" in caplog.text
    with pytest.raises(DeviceError, match="GPU backend requested but unusable") as info:
        resolve("gpu", "")
    assert info.value.exit_code == 3
    with pytest.raises(DeviceError, match="GPU backend requested but unusable"):
        resolve("auto", "cupy")
    with pytest.raises(UsageError, match="runs on the CPU"):
        resolve("gpu", "numba")
    assert resolve("cpu", "numpy").engine == "numpy"


def _frame(close: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({"Open": close, "High": close, "Low": close, "Close": close},
                        index=pd.bdate_range("2020-01-01", periods=len(close)))


@pytest.mark.parametrize("call,match", [
    (lambda df: backtest(df, "MA_Crossover", [{"short_period": 10, "long_period": 300, "use_ema": False}]),
     "needs 301 bars"),
    (lambda df: run_sweep(df, "MA_Crossover", {"short_period": [10], "long_period": [300]}), "needs 301 bars"),
    (lambda df: run_sweep(df, "MA_Crossover", {"short_period": [50, 60], "long_period": [20, 40]}),
     "short_period must be < long_period"),
    (lambda df: run_sweep(df, "MA_Crossover", {"short_period": [-5], "long_period": [20]}), "outside"),
    (lambda df: run_sweep(df, "MA_Crossover", {"short_period": [5.5], "long_period": [20]}), "integer"),
    (lambda df: run_sweep(df, "MA_Crossover", {}), "grid is empty"),
    (lambda df: run_sweep(df, "MA_Crossover", {"short_period": []}), "empty"),
    (lambda df: run_sweep(df, "MA_Crosover", {"short_period": [5]}), "did you mean 'MA_Crossover'"),
    (lambda df: run_sweep(df, "MA_Crossover", {"shortperiod": [5]}), "did you mean 'short_period'"),
    (lambda df: backtest(df.assign(Close=np.where(np.arange(len(df)) == 7, np.nan, df["Close"])), "MA_Crossover",
                         [{"short_period": 2, "long_period": 5, "use_ema": False}]), "NaN/zero"),
    (lambda df: backtest(df.assign(Close=np.where(np.arange(len(df)) == 7, 0.0, df["Close"])), "MA_Crossover",
                         [{"short_period": 2, "long_period": 5, "use_ema": False}]), "NaN/zero"),
    (lambda df: backtest(df.drop(columns=["High"]), "Donchian_Breakout", [{"channel": 5}]), "column 'High' missing"),
])
def test_bad_inputs_raise_one_line_usage_errors(call, match):
    df = _frame(np.linspace(10, 20, 120))
    with pytest.raises(UsageError, match=match) as info:
        call(df)
    assert "\n" not in str(info.value)


def test_unknown_strategy_lists_choices():
    with pytest.raises(UsageError, match="valid: MA_Crossover"):
        get_strategy("zzz")


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_numba_bar_blocks_carry_state_exactly(strategy, prices, reference, configs_for, monkeypatch):
    """The numba engine advances all configurations block by block of bars; tiny blocks change nothing."""
    from alphasignal.backtest import kernels

    configs = configs_for(strategy, np.random.default_rng(11), 4)
    opts = _opts("numba", mode="long_short", fill="next_open", fees_bps=2.0)
    whole = backtest(prices, strategy, configs, options=opts)
    monkeypatch.setattr(kernels, "BAR_BLOCK", 97)
    pieces = backtest(prices, strategy, configs, options=opts)
    pd.testing.assert_frame_equal(whole, pieces)
    _assert_matches(pieces, [reference(prices, strategy, c, mode="long_short", fill="next_open", fees_bps=2.0)
                             for c in configs])
