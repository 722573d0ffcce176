"""Start fast: Numba's disk cache is probed without compiling; a cold cache and a small sweep run the NumPy engine
(metric and PBO passes bit-identical to Numba's, the sweep equal to the Numba kernel's within the parity tests'
1e-9) and say so in the metadata; a scheduler that cannot be reached fails before any data is loaded."""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numba as nb
import numpy as np
import pandas as pd
import pytest

from alphasignal.backtest import startfast
from alphasignal.backtest.engine import prepare_prices
from alphasignal.backtest.strategies import get_strategy, grid_frame, split_valid
from alphasignal.backtest.xp import Backend
from alphasignal.config import SweepConfig
from alphasignal.evaluation.metrics import finalise_matrix
from alphasignal.evaluation.overfitting import pbo_from_blocks

ROOT = Path(__file__).resolve().parents[1]
GRID = "{short_period=[5, 10, 20], long_period=[50, 100], use_ema=[false, true]}"


def _import_file(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_probe_sees_the_disk_cache_and_never_compiles(tmp_path):
    src = tmp_path / "jit_probe_mod.py"
    src.write_text("import numba\n\n\n@numba.njit(cache=True)\ndef plus(x):\n    return x + 1.0\n")
    first = _import_file(src, "jit_probe_a")
    assert startfast.kernels_cached(lambda: first.plus(1.0)) is False  # nothing compiled, nothing cached
    assert not first.plus.signatures  # the probe stopped before compiling
    assert first.plus(1.0) == 2.0  # compiles and writes the cache
    assert startfast.kernels_cached(lambda: first.plus(1.0)) is True  # in memory
    second = _import_file(src, "jit_probe_b")  # a fresh dispatcher: only the disk cache can serve it
    assert startfast.kernels_cached(lambda: second.plus(2.0)) is True
    assert second.plus.stats.cache_hits and not second.plus.stats.cache_misses
    assert startfast.kernels_cached(lambda: second.plus(np.ones(2))) is False  # another signature: not cached


def _jobs(aapl, k_repeat: int = 1):
    prices = prepare_prices(aapl, "AAPL", ("Close",))
    valid, _ = split_valid("MA_Crossover", grid_frame("MA_Crossover", {"short_period": [5, 10],
                                                                       "long_period": [50]}), prices.n)
    return {"AAPL": (prices, valid.loc[valid.index.repeat(k_repeat)].reset_index(drop=True))}


def test_choose_numpy_only_for_the_default_engine_a_cold_cache_and_small_work(aapl):
    numba_be = Backend("numba", "cpu", "auto: no GPU")
    cold = nb.njit(lambda x: x + 1)  # never compiled, no cache: the probe misses
    opts = SweepConfig()
    backend, background = startfast.choose(numba_be, opts, _jobs(aapl), lambda: cold(1))
    assert (backend.engine, background) == ("numpy", True)
    assert "start fast" in backend.note and backend.note.startswith("auto: no GPU")
    warm = SweepConfig(pbo_splits=0)  # nothing to probe but the given warm-up, which compiles nothing
    assert startfast.choose(numba_be, warm, _jobs(aapl), lambda: None) == (numba_be, False)
    for kept in (replace(opts, engine="numba"), replace(opts, start_fast=False), replace(opts, cluster="local:1")):
        assert startfast.choose(numba_be, kept, _jobs(aapl), lambda: cold(1)) == (numba_be, False)
    big = _jobs(aapl, k_repeat=20_000)  # 40,000 configurations: NumPy would take longer than a compile
    assert startfast.numpy_seconds(big, opts) > startfast.COMPILE_S > startfast.numpy_seconds(_jobs(aapl), opts)
    assert startfast.choose(numba_be, opts, big, lambda: cold(1)) == (numba_be, False)
    assert not cold.signatures


def test_background_job_keeps_read_only_price_arrays_read_only(aapl):
    """pandas hands out read-only price arrays, a Numba signature of their own; pickling loses the flag, so the
    background compile would fill the cache with a kernel the next run cannot use unless the job restores it."""
    import pickle

    from alphasignal.backtest.sweep_tasks import warm_up

    jobs = _jobs(aapl)
    warm = warm_up(jobs, get_strategy("MA_Crossover"), SweepConfig(), Backend("numba", "cpu"))
    arrays = startfast._price_arrays(warm)
    assert len(arrays) == 4 and not any(a.flags.writeable for a in arrays)  # as prepare_prices gives them
    assert all(a.flags.writeable for a in startfast._price_arrays(pickle.loads(pickle.dumps(warm))))  # the trap
    job = startfast.write_job(warm, 16)
    back, splits = startfast.read_job(job)
    assert splits == 16 and not Path(job).exists()
    assert [a.flags.writeable for a in startfast._price_arrays(back)] == [False] * 4
    assert np.array_equal(startfast._price_arrays(back)[3], jobs["AAPL"][0].close)


def test_numpy_metric_and_pbo_passes_are_bit_identical_to_numba():
    rng = np.random.default_rng(3)
    acc = np.abs(rng.normal(1.0, 0.5, (500, 11)))
    acc[::7, 8] = 0.0  # no losses
    acc[::5, 3] = 0.0  # no downside
    acc[::3, 5] = 0.0  # no trades
    acc[::11, 0] = 0.0  # bust
    for n in (1, 2, 2520):
        assert np.array_equal(finalise_matrix(acc, n, 252.0, 1e-4), finalise_matrix(acc, n, 252.0, 1e-4, jit=False),
                              equal_nan=True)
    blocks = rng.normal(0.0, 0.01, (300, 16, 2))
    blocks[..., 1] = blocks[..., 0] ** 2 + 1e-5
    blocks[:40, 5] = 0.0  # flat blocks: those configurations cannot be chosen there
    bars = rng.integers(100, 200, 16)
    a, b = pbo_from_blocks(blocks, bars), pbo_from_blocks(blocks, bars, jit=False)
    assert np.array_equal(a.logits, b.logits) and a.pbo == b.pbo and 0 < a.pbo < 1
    small = pbo_from_blocks(blocks, bars, max_work=2e5, jit=False)  # sampled combinations, batched
    assert small.n_combinations < 12_870 and np.array_equal(small.logits,
                                                            pbo_from_blocks(blocks, bars, max_work=2e5).logits)


def _cli(*argv: str) -> int:
    from alphasignal.cli import run_stage

    spec = importlib.util.spec_from_file_location("sweep_script", ROOT / "05_sweep_backtest.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return run_stage(mod.stage, mod.__doc__, ["--quiet", "--source", "offline", *argv])


def _numeric(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.drop(columns=["ticker"]).astype("float64")


def test_cold_cache_runs_numpy_with_the_numba_results_and_says_so(tmp_path, monkeypatch):
    started = []
    monkeypatch.setattr(startfast, "kernels_cached", lambda warm: False)  # fake: the cache is cold
    monkeypatch.setattr(startfast, "compile_in_background", lambda warm, splits: started.append(splits))  # fake
    args = ["--tickers", "AAPL", "--grid", GRID, "--set", "dataset.start=2016-01-01"]
    assert _cli(*args, "--output", str(tmp_path / "fast.csv")) == 0
    assert _cli(*args, "--engine", "numba", "--output", str(tmp_path / "jit.csv")) == 0
    fast, jit = (json.loads((tmp_path / f"{n}.meta.json").read_text()) for n in ("fast", "jit"))
    assert fast["engine"] == "numpy" and "start fast" in fast["backend_note"] and started == [16]
    assert jit["engine"] == "numba" and "start fast" not in jit["backend_note"]
    got, want = (pd.read_csv(tmp_path / f"{n}.csv") for n in ("fast", "jit"))
    pd.testing.assert_frame_equal(_numeric(got), _numeric(want), rtol=1e-9, atol=1e-12)
    for key in ("dsr", "pbo", "sharpe_per_bar", "n_trials"):
        assert fast["overfitting"]["AAPL"][key] == pytest.approx(jit["overfitting"]["AAPL"][key], rel=1e-9)
    assert fast["overfitting"]["AAPL"]["best_config"] == jit["overfitting"]["AAPL"]["best_config"]


def test_unreachable_scheduler_fails_before_any_data_is_loaded(tmp_path, capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    missing = tmp_path / "no_such_prices.csv"  # loading it would be an input error (exit 2), not exit 3
    code = _cli("--cluster", f"tcp://127.0.0.1:{port}", "--set", "sweep.connect_timeout=1", "--csv", str(missing),
                "--tickers", "X", "--output", str(tmp_path / "r.csv"))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 3, err
    assert len(err) == 1 and "cannot reach the Dask scheduler" in err[0] and "sweep.cluster" in err[0]
    assert not (tmp_path / "r.csv").exists()


@pytest.mark.slow
def test_real_cold_cache_first_run_numpy_then_the_background_compile_serves_numba(tmp_path):
    """The default command with an empty Numba cache (its own NUMBA_CACHE_DIR): NumPy at once, a background process
    fills the cache, a later run loads the Numba kernel; the results agree. Run as a user runs it, with no
    PYTHONPATH: the background process finds the package on its own."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"NUMBA_CACHE_DIR": str(tmp_path / "nc")}
    base = [sys.executable, str(ROOT / "05_sweep_backtest.py"), "--quiet", "--source", "offline", "--grid", GRID]

    def run(name: str) -> dict:
        subprocess.run([*base, "--output", str(tmp_path / f"{name}.csv")], env=env, cwd=ROOT, check=True,
                       capture_output=True, timeout=300)
        return json.loads((tmp_path / f"{name}.meta.json").read_text())

    first = run("first")
    assert first["engine"] == "numpy" and "start fast" in first["backend_note"]
    later = None
    for i in range(40):  # the background compile takes 15-60 s on 2 shared cores
        time.sleep(10)
        later = run(f"later{i}")
        if later["engine"] == "numba":
            break
    assert later is not None and later["engine"] == "numba" and "start fast" not in later["backend_note"]
    got, want = pd.read_csv(tmp_path / "first.csv"), pd.read_csv(tmp_path / f"later{i}.csv")
    pd.testing.assert_frame_equal(_numeric(got), _numeric(want), rtol=1e-9, atol=1e-12)
    assert first["overfitting"]["AAPL"]["pbo"] == later["overfitting"]["AAPL"]["pbo"]


def _kernel_loop(fn) -> tuple[list[str], str, str]:
    """(parameters, the outer loop's iterator function, the statements before it, and its target and body as an AST
    dump) of a sweep kernel."""
    import ast
    import inspect
    import textwrap

    tree = ast.parse(textwrap.dedent(inspect.getsource(fn))).body[0]
    loops = [n for n in tree.body if isinstance(n, ast.For)]
    assert len(loops) == 1
    loop = loops[0]
    before = [n for n in tree.body[:tree.body.index(loop)] if not isinstance(n, ast.Expr)]  # the docstring left out
    return ([a.arg for a in tree.args.args], ast.unparse(loop.iter.func),
            ast.dump(ast.Module([*before, ast.Assign([loop.target], loop.iter.args[0]), *loop.body], [])))


def test_the_generic_kernel_is_every_rules_kernel_with_the_rule_as_an_argument():
    """The fast tier runs the generic kernel (tests/conftest.py): every production kernel (one per rule and short
    mode) must be its loop, word for word, with the rule and short mode fixed -- compile-time constants there,
    arguments here -- and the configurations split over threads (prange) instead of run in turn. Compiling the 12
    production kernels takes many times the generic one's CPU time from a cold cache, so their bit-for-bit equality
    on every rule is the slow test below; this one, fast, fails as soon as one kernel's code drifts from the other's."""
    from alphasignal.backtest import kernels

    g_params, g_iter, g_body = _kernel_loop(kernels.sweep_generic.py_func)
    assert g_iter == "range" and g_params[:2] == ["kind", "short_ok"]
    for kind in range(6):  # every rule id of backtest.strategies
        for short_ok in (False, True):
            prod = kernels._rule_kernel(kind, short_ok).py_func  # not compiled: only its Python source is read
            params, it, body = _kernel_loop(prod)
            assert (params, it, body) == (g_params[2:], "nb.prange", g_body)
            consts = dict(zip(prod.__code__.co_freevars, (c.cell_contents for c in prod.__closure__), strict=True))
            assert consts == {"kind": kind, "short_ok": short_ok}
    assert kernels.GENERIC  # the fast tier runs the generic kernel ...
    part = kernels.sweep_kernel(3, True)
    assert part.func is kernels.sweep_generic and part.args == (3, True)  # ... with the rule and mode as arguments


@pytest.mark.slow
@pytest.mark.parametrize("strategy,entry", [("MA_Crossover", "state"), ("MA_Crossover", "cross"),
                                            ("Bollinger_Breakout", "state"), ("RSI_Reversion", "state"),
                                            ("MACD", "state"), ("MACD", "cross"), ("Donchian_Breakout", "state")])
@pytest.mark.parametrize("mode,fill", [("long_only", "close"), ("long_short", "next_open")])
def test_each_rules_own_kernel_equals_the_generic_kernel_bit_for_bit(strategy, entry, mode, fill, goog, configs_for,
                                                                     monkeypatch):
    """The fast tier runs every rule through the one generic kernel (tests/conftest.py); production compiles a
    kernel per rule and mode. Same code, constants folded or not: every accumulator, block sum and return equal."""
    from alphasignal.backtest import kernels
    from alphasignal.backtest.engine import simulate
    from alphasignal.backtest.strategies import as_config_frame, get_strategy

    strat = get_strategy(strategy)
    configs = as_config_frame(strategy, configs_for(strategy, np.random.default_rng(7), 8))
    prices = prepare_prices(goog, "GOOG", strat.needs)
    opts = SweepConfig(mode=mode, fill=fill, entry=entry, fees_bps=5.0)
    out = {}
    for generic in (True, False):
        monkeypatch.setattr(kernels, "GENERIC", generic)
        out[generic] = simulate(prices, strat, configs, opts, Backend("numba", "cpu"), lo=100, n_blocks=16,
                                want_rets=True)
    for a, b in zip(out[True], out[False], strict=True):
        assert a.tobytes() == b.tobytes()
    assert (out[False][0][:, kernels.ACC.index("trades")] > 0).any()
