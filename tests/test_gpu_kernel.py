"""The GPU engine (alphasignal/backtest/gpu.py: numba-cuda compiling the CPU kernel's own rule functions) against the
Numba CPU engine, to 1e-12 on every accumulator, block sum and return: every built-in rule, mode, fill and entry, a
user's Numba ``rule`` strategy, a launch of several CUDA blocks, block sums (PBO) and stops (anchored walk-forward).

On the CPU the kernel runs under numba-cuda's simulator (a real part of numba-cuda, not a fake: it executes the kernel
thread by thread on the CPU, calling the Python source of the rule functions) in a process of its own
(tests/gpu_kernel_worker.py). The same comparisons run on a real GPU where one is usable (marked ``gpu``). A compile
test builds the real CUDA kernel to PTX with numba-cuda's NVVM, which needs no GPU.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

from alphasignal.backtest import STRATEGIES, kernels
from alphasignal.backtest.xp import gpu_status, simulated

ROOT = Path(__file__).resolve().parents[1]
WORKER = Path(__file__).with_name("gpu_kernel_worker.py")
GPU_OK, GPU_WHY = gpu_status()
GPU_OK = GPU_OK and not simulated()  # a real device, not this process under the simulator
MODES = [("long_only", "close"), ("long_only", "next_open"), ("long_short", "close"), ("long_short", "next_open")]
BARS, LO = 420, 60


def _cases(aapl, configs_for) -> dict[str, dict]:
    frame = aapl.iloc[-BARS:]
    cases = {}
    for strategy in STRATEGIES:
        entries = ("state", "cross") if strategy in ("MA_Crossover", "MACD") else ("state",)
        rng = np.random.default_rng(zlib.crc32(strategy.encode()))
        configs = configs_for(strategy, rng, 5, max_window=50)
        for entry in entries:
            for mode, fill in MODES:
                opts = dict(mode=mode, fill=fill, entry=entry, fees_bps=10.0, slippage_bps=5.0)
                cases[f"{strategy}-{entry}-{mode}-{fill}"] = dict(
                    strategy=strategy, strategy_file="", configs=configs, frame=frame, opts=opts, lo=LO, n_blocks=4,
                    want_rets=True, stops=())
    rule_file = str(ROOT / "examples" / "ma_crossover_rule.py")
    user = [{"short_period": s, "long_period": lp} for s, lp in [(3, 12), (5, 30), (8, 21), (2, 40)]]
    cases["user-rule-long_short-next_open"] = dict(
        strategy="RuleMACrossover", strategy_file=rule_file, configs=user, frame=frame, lo=LO, n_blocks=3,
        opts=dict(mode="long_short", fill="next_open", fees_bps=10.0), want_rets=True, stops=())
    many = configs_for("Bollinger_Breakout", np.random.default_rng(3), 300, max_window=50)  # 3 CUDA blocks of 128
    cases["three-cuda-blocks-and-stops"] = dict(
        strategy="Bollinger_Breakout", strategy_file="", configs=many, frame=frame, lo=0, n_blocks=0,
        opts=dict(mode="long_short", fill="close"), want_rets=False, stops=(150, 300, BARS))
    return cases


def _run_worker(tmp: Path, cases: dict, env: dict[str, str]) -> dict:
    (tmp / "cases.pkl").write_bytes(pickle.dumps(cases))
    proc = subprocess.run([sys.executable, str(WORKER), str(tmp / "cases.pkl"), str(tmp / "results.pkl")],
                          env={**os.environ, "PYTHONPATH": str(ROOT), **env}, capture_output=True, text=True,
                          cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return pickle.loads((tmp / "results.pkl").read_bytes())


@pytest.fixture(scope="module")
def simulated(tmp_path_factory, aapl_module, configs_for):
    cases = _cases(aapl_module, configs_for)
    return cases, _run_worker(tmp_path_factory.mktemp("gpu_sim"), cases, {"NUMBA_ENABLE_CUDASIM": "1"})


@pytest.fixture(scope="module")
def on_device(tmp_path_factory, aapl_module, configs_for):
    if not GPU_OK:
        pytest.skip(GPU_WHY)
    cases = _cases(aapl_module, configs_for)
    return cases, _run_worker(tmp_path_factory.mktemp("gpu_dev"), cases, {"NUMBA_ENABLE_CUDASIM": "0"})


@pytest.fixture(scope="module")
def aapl_module():
    from alphasignal.market import load_ohlcv

    return load_ohlcv("AAPL", source="offline")


def _assert_same(name: str, got: tuple, want: tuple) -> None:
    for part, a, b in zip(("accumulators", "block sums", "returns"), got, want, strict=True):
        assert a.shape == b.shape, (name, part)
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-12, err_msg=f"{name}: {part}")


def test_simulated_gpu_kernel_equals_the_numba_engine_on_every_rule_mode_fill_and_entry(simulated):
    cases, out = simulated
    assert out["engine"].startswith("numba-cuda simulator")
    assert set(out["results"]) == set(cases) and len(cases) == 4 * (len(STRATEGIES) + 2) + 2
    trades = kernels.ACC.index("trades")
    for name, res in out["results"].items():
        _assert_same(name, res["cupy"], res["numba"])
        assert res["numba"][0][..., trades].sum() > 0, name  # the configurations trade: the comparison bites
    shorts = [n for n in cases if "long_short" in n]
    assert any(out["results"][n]["numba"][0][:, kernels.ACC.index("turnover")].max() > 0 for n in shorts)


def test_simulated_gpu_kernel_snapshots_at_stops_and_spans_several_cuda_blocks(simulated):
    cases, out = simulated
    acc = out["results"]["three-cuda-blocks-and-stops"]["cupy"][0]
    assert acc.shape == (3, 300, kernels.NACC)  # one set of accumulators per stop, 300 configurations
    assert not np.array_equal(acc[0], acc[2])  # the windows differ: the snapshots are not one state copied


@pytest.mark.gpu
def test_gpu_kernel_on_a_real_device_equals_the_numba_engine(on_device):
    cases, out = on_device
    assert out["engine"] == "CUDA GPU available"
    for name, res in out["results"].items():
        _assert_same(name, res["cupy"], res["numba"])


def _nvvm_ok() -> bool:
    try:
        from numba.cuda.cudadrv.nvvm import NVVM

        NVVM()
        return True
    except Exception:  # noqa: BLE001 - numba-cuda or its NVVM library absent
        return False


@pytest.mark.skipif(not _nvvm_ok(), reason="numba-cuda's NVVM not installed (pip install -r requirements-gpu.txt)")
def test_the_cuda_kernel_compiles_to_ptx_without_a_gpu():
    """The real numba-cuda compile of the GPU kernel (kernels.advance and every rule function it calls, as device
    functions) for one rule: what a GPU would run, checked where none exists."""
    from numba import cuda

    from alphasignal.backtest.gpu import gpu_kernel, signature
    from alphasignal.backtest.strategies import CROSSOVER

    ptx, _ = cuda.compile_ptx(gpu_kernel(CROSSOVER, True).py_func, signature(), cc=(8, 0))
    assert ".visible .entry" in ptx and "div.rn.f64" in ptx  # a kernel entry, with the fills' divisions in it


@pytest.mark.slow
@pytest.mark.skipif(not _nvvm_ok(), reason="numba-cuda's NVVM not installed (pip install -r requirements-gpu.txt)")
def test_the_prepared_gpu_check_dry_runs_on_the_cpu(tmp_path):
    """benchmarks/gpu_check.sh --dry-run: all 12 rule kernels compile to PTX, the simulator parity tests pass, and the
    GPU benchmark runs at small size with results equal to the Numba engine's -- the script is ready for a GPU."""
    out = tmp_path / "out"
    proc = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--dry-run"], cwd=ROOT,
                          env={**os.environ, "OUT": str(out)}, capture_output=True, text=True)
    log = (out / "gpu_check.log").read_text()
    assert proc.returncode == 0, log
    for step in ("precompile", "parity", "bench_small"):
        assert f"end {step}: exit 0" in log, log
    assert "12 kernels compiled to PTX" in (out / "precompile.log").read_text()
    small = json.loads((out / "bench_small.json").read_text())["results"][0]
    assert small["configs"] == 550 and small["max_abs_accumulator_difference"] <= 1e-12
