"""The Numba kernels (``sweep.kernel``): "blocks" (the default: steady runs ended where the hold codes say,
kernels._fill_holds and kernels._hold_end) against the same kernel testing one bar at a time (HOLD_CODES = False, as
the GPU), and configuration lanes (backtest/lanes.py, "lanes") against "blocks". With every built-in rule, mode, fill
and entry each gives its reference's accumulators, block sums, return series and metrics within 1e-12, on real prices
and on random grids and prices (hypothesis); the generic lane kernel is each rule's kernel with the rule as an
argument; the lane scans and the hold codes are packed SIMD. The kernels' results against an independent reference
loop: tests/test_backtest_parity.py."""

from __future__ import annotations

import ast
import inspect
import textwrap

import numba as nb
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alphasignal.backtest import kernels, lanes
from alphasignal.backtest.engine import prepare_prices, simulate
from alphasignal.backtest.strategies import as_config_frame, get_strategy
from alphasignal.backtest.xp import Backend
from alphasignal.config import ConfigError, SweepConfig
from alphasignal.evaluation.metrics import ACC, finalise_matrix

TOL = 1e-12
EXACT = [ACC.index(c) for c in ("trades", "wins", "exposed", "turnover")]  # counts: equal, not close


def _both(prices, strategy, configs, opts, kernel="lanes", **kw):
    """simulate() with ``kernel`` and with its reference: "lanes" against "blocks", and "blocks" against itself
    scanning one bar at a time."""
    strat = get_strategy(strategy)

    def run(name: str):
        return simulate(prices, strat, configs, SweepConfig(**{**opts, "kernel": name}), Backend("numba", "cpu"), **kw)

    if kernel == "lanes":
        return [run("lanes"), run("blocks")]
    fast = run("blocks")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(kernels, "HOLD_CODES", False)
        return [fast, run("blocks")]


def _assert_same(lane, ref, n: int) -> None:
    for a, b in zip(lane, ref, strict=True):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=TOL, atol=TOL)
    acc_l, acc_s = lane[0].reshape(-1, len(ACC)), ref[0].reshape(-1, len(ACC))
    assert np.array_equal(acc_l[:, EXACT], acc_s[:, EXACT])
    ml, ms = finalise_matrix(acc_l, n, 252.0, 0.0), finalise_matrix(acc_s, n, 252.0, 0.0)
    assert np.array_equal(np.isnan(ml), np.isnan(ms))
    np.testing.assert_allclose(ml, ms, rtol=TOL, atol=TOL)


@pytest.mark.parametrize("strategy,entry", [("MA_Crossover", "state"), ("MA_Crossover", "cross"),
                                            ("Bollinger_Breakout", "state"), ("RSI_Reversion", "state"),
                                            ("MACD", "cross"), ("Donchian_Breakout", "state")])
@pytest.mark.parametrize("mode,fill", [("long_only", "close"), ("long_short", "next_open"),
                                       ("long_short", "close"), ("long_only", "next_open")])
@pytest.mark.parametrize("kernel", ["lanes", "blocks"])
def test_kernels_equal_their_reference_on_every_rule_mode_fill_and_entry(kernel, strategy, entry, mode, fill, goog,
                                                                         configs_for):
    strat = get_strategy(strategy)
    configs = as_config_frame(strategy, configs_for(strategy, np.random.default_rng(11), 2 * lanes.LANES + 3))
    prices = prepare_prices(goog, "GOOG", strat.needs)
    opts = dict(mode=mode, fill=fill, entry=entry, fees_bps=5.0, slippage_bps=2.0)
    for kw in (dict(lo=100, n_blocks=16, want_rets=True), dict(lo=50), dict(lo=100, stops=(400, 1200, 2000))):
        got, ref = _both(prices, strategy, configs, opts, kernel, **kw)
        _assert_same(got, ref, prices.n - kw["lo"])
    assert (ref[0][..., ACC.index("trades")] > 0).any()


def _prices(returns: list[float]) -> pd.DataFrame:
    close = 50.0 * np.exp(np.cumsum(returns))
    open_ = close * np.exp(np.roll(returns, 1) * 0.5)
    return pd.DataFrame({"Open": open_, "High": np.maximum(close, open_) * 1.01,
                         "Low": np.minimum(close, open_) * 0.99, "Close": close},
                        index=pd.bdate_range("2001-01-01", periods=len(close)))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(returns=st.lists(st.floats(-0.6, 0.6), min_size=40, max_size=300),
       strategy=st.sampled_from(["MA_Crossover", "Bollinger_Breakout", "RSI_Reversion", "Donchian_Breakout"]),
       entry=st.sampled_from(["state", "cross"]), mode=st.sampled_from(["long_only", "long_short"]),
       fill=st.sampled_from(["close", "next_open"]), k=st.integers(1, 3 * lanes.LANES), seed=st.integers(0, 99),
       blocks=st.sampled_from([0, 4]), want_rets=st.booleans())
def test_lanes_equal_the_blocks_kernel_on_random_grids_and_prices(returns, strategy, entry, mode, fill, k, seed,
                                                                   blocks, want_rets, configs_for):
    df = _prices(returns)
    prices = prepare_prices(df, "X", get_strategy(strategy).needs)
    configs = as_config_frame(strategy, configs_for(strategy, np.random.default_rng(seed), k, max_window=30))
    opts = dict(mode=mode, fill=fill, entry=entry, fees_bps=10.0)
    lane, ref = _both(prices, strategy, configs, opts, lo=3, n_blocks=blocks, want_rets=want_rets)
    _assert_same(lane, ref, prices.n - 3)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(returns=st.lists(st.floats(-0.03, 0.03), min_size=40, max_size=700),
       strategy=st.sampled_from(["MA_Crossover", "Bollinger_Breakout", "RSI_Reversion", "Donchian_Breakout"]),
       entry=st.sampled_from(["state", "cross"]), mode=st.sampled_from(["long_only", "long_short"]),
       fill=st.sampled_from(["close", "next_open"]), k=st.integers(1, 12), seed=st.integers(0, 99),
       lo=st.integers(1, 40), stops=st.booleans())
def test_hold_codes_equal_one_bar_at_a_time_on_random_grids_and_prices(returns, strategy, entry, mode, fill, k, seed,
                                                                        lo, stops, configs_for):
    """Gentle random walks up to 700 bars: runs long enough to skip whole words of hold codes, ending anywhere in a
    word, with spans (``lo``, stops) that start and end off the words' grid."""
    df = _prices(returns)
    prices = prepare_prices(df, "X", get_strategy(strategy).needs)
    configs = as_config_frame(strategy, configs_for(strategy, np.random.default_rng(seed), k, max_window=30))
    cuts = tuple(range(lo + 37, prices.n, 97)) if stops else ()
    opts = dict(mode=mode, fill=fill, entry=entry, fees_bps=10.0)
    fast, ref = _both(prices, strategy, configs, opts, "blocks", lo=lo, stops=cuts)
    _assert_same(fast, ref, prices.n - lo)


@pytest.mark.parametrize("kernel", ["blocks", "lanes"])
def test_every_configuration_runs_once_whatever_the_thread_count(kernel, goog, configs_for):
    """The kernels deal their groups of configurations to the threads in turn (kernels.GROUP): on one thread, on
    two and on more threads than groups, each configuration runs exactly once -- the same accumulators as the NumPy
    engine's, which has no groups (a group dealt twice, or never, changes them)."""
    strategy = "MA_Crossover"
    configs = as_config_frame(strategy, configs_for(strategy, np.random.default_rng(5), 2 * kernels.GROUP + 7))
    prices = prepare_prices(goog, "GOOG")
    opts = SweepConfig(kernel=kernel, fees_bps=5.0)
    strat = get_strategy(strategy)
    ref = simulate(prices, strat, configs, opts, Backend("numpy", "cpu"), lo=50)[0]
    before = nb.get_num_threads()
    results = []
    try:
        for threads in sorted({1, nb.config.NUMBA_NUM_THREADS}):
            nb.set_num_threads(threads)
            results.append(simulate(prices, strat, configs, opts, Backend("numba", "cpu"), lo=50)[0])
    finally:
        nb.set_num_threads(before)
    with pytest.MonkeyPatch.context() as mp:  # more threads than groups: a group each, the rest idle
        mp.setattr(nb, "get_num_threads", lambda: 64)
        results.append(simulate(prices, strat, configs, opts, Backend("numba", "cpu"), lo=50)[0])
    assert (ref[:, ACC.index("trades")] > 0).all()
    for acc in results:
        np.testing.assert_allclose(acc, ref, rtol=1e-9, atol=1e-12)
        assert np.array_equal(acc[:, EXACT], ref[:, EXACT])


@nb.njit
def _spans_that_differ(close, tab, longest):
    """How many spans ``a..e-1`` of up to ``longest`` bars get another (max, min, drawdown) from span_stats than bar
    by bar (the drawdown: the largest ``1 - c_t / max(c_a..c_t)``)."""
    wrong = 0
    for a in range(close.shape[0]):
        mx, mn, dd = close[a], close[a], 0.0
        for e in range(a + 1, min(close.shape[0], a + longest) + 1):
            c = close[e - 1]
            mx, mn = max(mx, c), min(mn, c)
            dd = max(dd, 1.0 - c / mx)
            wrong += kernels.span_stats(tab, a, e) != (mx, mn, dd)
    return wrong



def test_span_stats_equal_bar_by_bar_for_every_span_bit_for_bit():
    """A long run's high, low and drawdown come from market_tables: blocks of DD_BLOCK bars, and within a block two
    windows of 2**w bars and a drawdown across them. Every span up to 100 bars (within a block, across one, across
    several), on a random walk and on rounded prices (ties), in series shorter and longer than a block."""
    rng = np.random.default_rng(8)
    for n, step in ((700, 0.02), (33, 0.02), (5, 0.02), (1, 0.02), (900, 0.0)):
        close = 100.0 * np.exp(np.cumsum(rng.normal(0, 0.02, n)))
        close = np.round(close, 1) if step == 0.0 else close
        assert _spans_that_differ(close, kernels.market_tables(close, 0.0), 100) == 0


def test_hold_codes_find_the_first_bar_that_leaves_wherever_it_is():
    """kernels._fill_hold_pair and kernels._hold_end directly, against a plain loop: the first bar in ``i..stop-1``
    that leaves a long run and a flat one, for two configurations whose codes one pass writes, on runs that end on the
    first bar, inside a word of codes, on a word's edge, in any word of a four-word step, in the last partial word or
    never, with spans shorter than a word, and series shorter than one; compiled with bounds checks, from the series'
    last bar too (a run that ends on a pass's last bar), so no read leaves the scratch that kernels.hold_bytes
    sizes."""

    @nb.njit(boundscheck=True)
    def run_ends(xa, xb, i, stop):  # the codes of xa > xb, and in the same pass those of -xa > xb (its pair)
        hb = kernels.hold_bytes(len(xa))
        hold = np.empty(2 * hb, np.uint8)
        kernels._fill_hold_pair(xa, -xa, xb, False, len(xa), hold[:hb], hold[hb:])
        words, words2 = hold[:hb].view(np.uint64), hold[hb:].view(np.uint64)
        return (kernels._hold_end(words, 0, i, stop), kernels._hold_end(words, 1, i, stop),
                kernels._hold_end(words2, 0, i, stop), kernels._hold_end(words2, 1, i, stop))

    rng = np.random.default_rng(7)
    for n in (2, 3, 7, 8, 9, 16, 17, 5 * 8 + 3, 64, 12 * 8 + 5, 300):
        for _ in range(60):
            xa = np.where(rng.random(n) < rng.choice([0.0, 0.02, 0.2, 0.9]), -1.0, 1.0)  # -1: a long run ends there
            xa[rng.integers(0, n)] = np.nan if rng.random() < 0.2 else xa[0]  # a NaN ends a long run, not a flat one
            i = int(rng.integers(1, n + 1))
            stop = int(rng.integers(i, n + 1))
            want = (next((t for t in range(i, stop) if not xa[t] > 0.0), stop),
                    next((t for t in range(i, stop) if xa[t] > 0.0), stop),
                    next((t for t in range(i, stop) if not -xa[t] > 0.0), stop),
                    next((t for t in range(i, stop) if -xa[t] > 0.0), stop))
            assert run_ends(xa, np.zeros(n), i, stop) == want, (n, i, stop)
        assert run_ends(xa, np.zeros(n), n, n) == (n, n, n, n)  # from the last bar: nothing left to scan


def _body(fn) -> tuple[list[str], str]:
    """Parameters and body (docstring dropped, ``nb.prange`` read as ``range``) of a kernel's source."""
    src = textwrap.dedent(inspect.getsource(fn)).replace("nb.prange(", "range(")
    tree = ast.parse(src).body[0]
    return [a.arg for a in tree.args.args], ast.dump(ast.Module(tree.body[1:], []))


def test_the_generic_lane_kernel_is_every_rules_lane_kernel_with_the_rule_as_an_argument():
    g_params, g_body = _body(lanes.lanes_generic.py_func)
    assert g_params[:2] == ["kind", "short_ok"]
    for kind in range(6):
        for short_ok in (False, True):
            prod = lanes._rule_lanes(kind, short_ok).py_func
            assert _body(prod) == (g_params[2:], g_body)
            assert "nb.prange(" in inspect.getsource(prod)
            consts = dict(zip(prod.__code__.co_freevars, (c.cell_contents for c in prod.__closure__), strict=True))
            assert consts == {"kind": kind, "short_ok": short_ok}
    assert not lanes.lanes_fit(kernels.POSITIONS)  # a user strategy's positions run on "blocks"


def test_sweep_kernel_is_validated_and_blocks_by_default():
    assert SweepConfig().kernel == "blocks"  # measured faster than lanes (docs/performance.md)
    assert SweepConfig(kernel="lanes").kernel == "lanes"
    with pytest.raises(ConfigError, match="sweep.kernel"):
        SweepConfig(kernel="simd")


def _has_avx2() -> bool:
    try:
        with open("/proc/cpuinfo") as fh:
            return " avx2" in fh.read()
    except OSError:
        return False


@pytest.mark.slow
@pytest.mark.skipif(not _has_avx2(), reason="packed 256-bit SIMD needs AVX2")
def test_the_lane_scan_is_packed_simd(goog):
    """The production MA-crossover lane kernel, compiled here without the disk cache (whose code cannot be
    inspected), compares 4 or 8 doubles per instruction (ymm or zmm registers) in its per-bar scan."""
    prod = lanes._rule_lanes(kernels.CROSSOVER, False)
    fresh = nb.njit(parallel=True, error_model="numpy")(prod.py_func)
    prices = prepare_prices(goog, "GOOG")
    configs = as_config_frame("MA_Crossover", [{"short_period": 5 + i, "long_period": 50, "use_ema": False}
                                               for i in range(lanes.LANES)])
    strat = get_strategy("MA_Crossover")
    table, cfg_ints, cfg_floats = strat.chunk_arrays(strat.config_parts(configs), configs, prices)
    state = np.zeros((lanes.LANES, kernels.NSTATE))
    state[:, [kernels.CASH, kernels.ENTRY, kernels.EQ, kernels.PEAK]] = 1.0
    state[:, kernels.EDGE] = prices.n + 1
    pre = kernels.market_tables(prices.close, 0.0)
    work = np.empty((1, lanes.NROWS, lanes.LANES))
    args = (prices.close, prices.open, pre, np.ascontiguousarray(table.T), cfg_ints, cfg_floats, False, False, 0,
            prices.n, 0, 1.0001, 0.9999, 0.0, np.zeros(1, np.int64), state, np.zeros((lanes.LANES, 0, 2)),
            np.empty((0, 0)), 2, work)  # 2 threads
    for phase, a, b in ((0, 0, 0), (1, 0, prices.n), (2, prices.n, prices.n)):  # load, advance, store
        fresh(*args, phase, a, b)
    assert (state[:, kernels.ACC.index("trades")] > 0).all()
    lines = "\n".join(fresh.inspect_asm().values()).splitlines()
    packed = [ln for ln in lines if ("%ymm" in ln or "%zmm" in ln) and "pd" in ln.split()[0] if ln.split()]
    assert any(ln.split()[0].startswith("vcmp") for ln in packed)
    assert any(ln.split()[0] in ("vmovupd", "vmovapd") for ln in packed)


@pytest.mark.slow
@pytest.mark.skipif(not _has_avx2(), reason="packed 256-bit SIMD needs AVX2")
def test_the_hold_codes_are_packed_simd(goog):
    """The production MA-crossover kernel, compiled here without the disk cache, compares 4 or 8 doubles per
    instruction when it writes the hold codes (the rest of the kernel has no packed compare: one bar at a time, it had
    none)."""
    prod = kernels._rule_kernel(kernels.CROSSOVER, False)
    fresh = nb.njit(prod.py_func)  # one thread (prange as range): the same loops, a quarter of the compile
    prices = prepare_prices(goog, "GOOG")
    configs = as_config_frame("MA_Crossover", [{"short_period": 5 + i, "long_period": 50, "use_ema": False}
                                               for i in range(3)])
    strat = get_strategy("MA_Crossover")
    table, cfg_ints, cfg_floats = strat.chunk_arrays(strat.config_parts(configs), configs, prices)
    state = kernels.initial_state(3, np.zeros(1, np.int64), prices.n)
    fresh(prices.close, prices.open, kernels.market_tables(prices.close, 0.0), table, cfg_ints, cfg_floats, False,
          False, 0, prices.n, 0, 1.0001, 0.9999, 0.0, np.zeros(1, np.int64), state, np.zeros((3, 0, 2)),
          np.empty((0, 0)), True, 1)
    assert (state[:, kernels.ACC.index("trades")] > 0).all()
    lines = "\n".join(fresh.inspect_asm().values()).splitlines()
    packed = [ln.split()[0] for ln in lines if ln.split() and ("%ymm" in ln or "%zmm" in ln)]
    assert any(op.startswith("vcmp") and op.endswith("pd") for op in packed)


def test_lanes_memory_plan_counts_the_transposed_table_and_the_work_rows():
    """``sweep.max_memory_mb`` bounds the lanes kernel too: its transposed copy of the indicator rows and its work
    rows are planned, so the same budget splits the same grid into more chunks than "blocks" needs."""
    from alphasignal.backtest.engine import kernel_of, per_config_bytes, plan_chunks
    from alphasignal.backtest.strategies import grid_frame

    strat = get_strategy("MA_Crossover")
    configs = grid_frame("MA_Crossover", {"short_period": list(range(2, 40)), "long_period": list(range(50, 250))})
    codes = strat.config_parts(configs)[0]
    n = 200_000  # long enough that the indicator rows dominate: 1.6 MB a row
    plans = {}
    for kernel in ("blocks", "lanes"):
        opts = SweepConfig(kernel=kernel, max_memory_mb=64)
        assert kernel_of(opts, Backend("numba", "cpu")) == kernel
        assert kernel_of(opts, Backend("cupy", "gpu")) == "blocks"
        per_config = per_config_bytes("numba", n, 0, False, kernel)
        plans[kernel] = plan_chunks(strat, codes, n, per_config, opts.max_memory_mb, kernel)
        rows = 2 if kernel == "lanes" else 1
        for idx in plans[kernel]:  # every chunk's rows (each copy) and work memory fit the budget
            assert rows * len(np.unique(codes[idx])) * strat.row_bytes(n) + len(idx) * per_config <= 64 * 2**20
    assert per_config_bytes("numba", n, 0, False, "lanes") == per_config_bytes("numba", n, 0, False) + 8 * lanes.NROWS
    assert len(plans["lanes"]) > len(plans["blocks"])
