"""The CuPy backend's CUDA C, compiled by gcc for the CPU and launched through ``run_cupy`` with a CPU stand-in for
the cupy module (a fake, named as such: it runs the CPU build thread by thread over the launch grid and checks every
argument's C type), against the Numba kernel: the kernel's logic (signals, fills, costs, bust rule, accumulators,
block sums, returns) and the host side (argument types, launch shape, chunks) on machines with no GPU. Not a GPU
test: execution on a GPU is covered by the cupy-engine cases of tests/test_backtest.py wherever a GPU is usable."""

from __future__ import annotations

import ctypes
import shutil
import subprocess
import zlib

import numpy as np
import pytest

from alphasignal.backtest import STRATEGIES, cuda, get_strategy, kernels
from alphasignal.backtest.cuda import _SOURCE
from alphasignal.backtest.engine import cost_factors, prepare_prices, simulate
from alphasignal.backtest.strategies import as_config_frame
from alphasignal.backtest.xp import Backend
from alphasignal.config import SweepConfig
from alphasignal.evaluation.metrics import rf_per_bar

# CUDA's qualifiers and thread index as plain C: one "thread" (configuration) per call, chosen by set_thread().
_HOST_PRELUDE = r"""#include <math.h>
#include <stdlib.h>
#define __device__ static
#define __global__
struct dim_ { int x; };
static struct dim_ blockDim = {1}, threadIdx = {0}, blockIdx = {0};
void set_thread(int dim, int block, int thread) { blockDim.x = dim; blockIdx.x = block; threadIdx.x = thread; }
"""
_D, _I64 = ctypes.POINTER(ctypes.c_double), ctypes.POINTER(ctypes.c_longlong)
_INT, _LL, _DBL = ctypes.c_int, ctypes.c_longlong, ctypes.c_double
_C_ARGS = [_INT, _D, _D, _D, _LL, _I64, _D, _INT, _INT, _INT, _INT, _INT, _DBL, _DBL, _DBL, _I64, _INT, _D, _D, _D,
           _INT]  # sweep_kernel's parameters, in order
_NUMPY_TYPE = {_INT: np.int32, _LL: np.int64, _DBL: np.float64, _D: np.float64, _I64: np.int64}


@pytest.fixture(scope="module")
def cpu_kernel(tmp_path_factory):
    if shutil.which("gcc") is None:
        pytest.skip("gcc not found: it compiles the CUDA kernel's source for the CPU")
    folder = tmp_path_factory.mktemp("cuda_src")
    (folder / "kernel.c").write_text(_HOST_PRELUDE + _SOURCE.replace('extern "C" ', ""))
    subprocess.run(["gcc", "-std=c99", "-O2", "-Wall", "-Werror", "-shared", "-fPIC", "-o", str(folder / "kernel.so"),
                    str(folder / "kernel.c"), "-lm"], check=True, capture_output=True, text=True)
    lib = ctypes.CDLL(str(folder / "kernel.so"))
    lib.sweep_kernel.argtypes = _C_ARGS
    lib.sweep_kernel.restype = None
    return lib


class _CpuStandInForCupy:
    """FAKE cupy (tests only): host arrays, and a RawKernel that launches the CPU build of the kernel over the
    launch's grid thread by thread, after checking every argument's type as the CUDA signature needs it."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        self.lib, self.launches = lib, []
        self.asarray, self.empty, self.zeros, self.asnumpy = np.array, np.empty, np.zeros, np.array

    def RawKernel(self, source: str, name: str):  # noqa: N802 - cupy's name
        assert (source, name) == (_SOURCE, "sweep_kernel")
        return self._launch

    def _launch(self, grid: tuple[int], block: tuple[int], args: tuple) -> None:
        assert len(args) == len(_C_ARGS)
        for i, (arg, ctype) in enumerate(zip(args, _C_ARGS, strict=True)):
            want = _NUMPY_TYPE[ctype]
            if ctype in (_D, _I64):
                assert isinstance(arg, np.ndarray) and arg.dtype == want and arg.flags.c_contiguous, i
            else:
                assert type(arg) is want, (i, type(arg))
        c_args = [a.ctypes.data_as(t) if t in (_D, _I64) else a.item() for a, t in zip(args, _C_ARGS, strict=True)]
        self.launches.append((grid[0], block[0], int(args[7])))
        for b in range(grid[0]):
            for t in range(block[0]):
                self.lib.set_thread(block[0], b, t)
                self.lib.sweep_kernel(*c_args)




@pytest.fixture
def fake_cupy(cpu_kernel, monkeypatch):
    fake = _CpuStandInForCupy(cpu_kernel)
    monkeypatch.setattr(cuda, "get_cupy", lambda: fake)
    cuda._kernel.cache_clear()
    yield fake
    cuda._kernel.cache_clear()


@pytest.mark.parametrize("strategy,entry", [(s, "state") for s in STRATEGIES] + [("MA_Crossover", "cross"),
                                                                                  ("MACD", "cross")])
@pytest.mark.parametrize("mode,fill,fees,slip", [("long_only", "close", 0.0, 0.0),
                                                  ("long_short", "next_open", 10.0, 5.0)])
def test_cuda_kernel_source_matches_the_numba_kernel(strategy, entry, mode, fill, fees, slip, fake_cupy, aapl,
                                                     configs_for):
    strat = get_strategy(strategy)
    kind = strat.kernel_rule(entry)  # entry="cross": the CROSS rule for MA_Crossover and MACD
    prices = prepare_prices(aapl.iloc[-900:], "AAPL", strat.needs)
    configs = as_config_frame(strategy, configs_for(strategy, np.random.default_rng(zlib.crc32(strategy.encode())), 8))
    table, cfg_ints, cfg_floats = strat.chunk_arrays(strat.config_parts(configs), configs, prices)
    opts = SweepConfig(mode=mode, fill=fill, fees_bps=fees, slippage_bps=slip, risk_free=0.02)
    buy_mult, sell_mult = cost_factors(opts)
    lo, hi = 120, prices.n
    args = dict(short_ok=mode == "long_short", next_open=fill == "next_open", lo=lo, hi=hi, buy_mult=buy_mult,
                sell_mult=sell_mult,
                rf_bar=rf_per_bar(0.02, 252.0), edges=np.linspace(lo, hi, 7).round().astype(np.int64))
    want = kernels.run_numba(kind, prices.close, prices.open, table, cfg_ints, cfg_floats, want_rets=True, **args)
    got = cuda.run_cupy(kind, prices.close, prices.open, table, cfg_ints, cfg_floats, want_rets=True, **args)
    assert want[0][:, kernels.ACC.index("trades")].sum() > 0  # the configurations trade
    for name, a, b in zip(("accumulators", "block sums", "returns"), got, want, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("mode,fill", [("long_only", "close"), ("long_short", "next_open")])
def test_cupy_host_side_through_the_engine_with_a_cpu_stand_in(mode, fill, fake_cupy, aapl, configs_for):
    strat = get_strategy("Bollinger_Breakout")
    prices = prepare_prices(aapl.iloc[-700:], "AAPL", strat.needs)
    configs = as_config_frame(strat.name, configs_for(strat.name, np.random.default_rng(5), 150))
    opts = SweepConfig(mode=mode, fill=fill, fees_bps=4.0, max_memory_mb=1)  # 1 MB: several chunks
    run = dict(lo=60, n_blocks=6, want_rets=True)
    got = simulate(prices, strat, configs, opts, Backend("cupy", "gpu", "fake"), **run)
    want = simulate(prices, strat, configs, opts, Backend("numba", "cpu"), **run)
    launches = fake_cupy.launches
    assert len(launches) > 1 and sum(k for _, _, k in launches) == len(configs)
    assert all(g * b >= k > (g - 1) * b for g, b, k in launches)  # one thread per configuration
    for name, a, b in zip(("accumulators", "block sums", "returns"), got, want, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12, err_msg=name)


def test_the_cuda_source_has_every_signal_rule():
    """The cupy engine has no fallback: every rule id of ``strategies`` is a rule of the CUDA source."""
    from alphasignal.backtest import strategies

    rules = {getattr(strategies, n) for n in ("CROSSOVER", "BOLLINGER", "RSI", "DONCHIAN", "CROSS", "POSITIONS")}
    defined = {int(line.split()[2]) for line in cuda._SOURCE.splitlines() if line.startswith("#define RULE_")}
    assert rules == defined == set(range(6))
    assert {s.kernel_rule(e) for s in strategies.REGISTRY.values() for e in ("state", "cross")} <= defined


def test_a_user_strategy_runs_on_the_gpu_through_the_positions_rule(fake_cupy, aapl, configs_for):
    """A user strategy runs on the cupy engine as positions read by the CUDA POSITIONS rule: the same results as
    the Numba kernel."""
    from pathlib import Path

    from alphasignal.backtest.user_strategy import load_strategy

    strat = load_strategy("MyMACrossover", str(Path(__file__).parents[1] / "examples" / "ma_crossover_user.py"))
    prices = prepare_prices(aapl.iloc[-700:], "AAPL", strat.needs)
    configs = as_config_frame(strat, configs_for("MA_Crossover", np.random.default_rng(9), 12))
    opts = SweepConfig(mode="long_short", fill="next_open", fees_bps=4.0)
    run = dict(lo=80, n_blocks=4, want_rets=True)
    got = simulate(prices, strat, configs, opts, Backend("cupy", "gpu", "fake"), **run)
    want = simulate(prices, strat, configs, opts, Backend("numba", "cpu"), **run)
    assert fake_cupy.launches and want[0][:, kernels.ACC.index("trades")].sum() > 0
    for name, a, b in zip(("accumulators", "block sums", "returns"), got, want, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12, err_msg=name)
