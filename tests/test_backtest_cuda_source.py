"""The CuPy backend's CUDA C, compiled by gcc for the CPU and run one configuration ("thread") per call, against the
Numba kernel: checks the kernel's logic (signals, fills, costs, bust rule, accumulators, block sums, returns) on
machines with no GPU. Not a GPU test: execution on a GPU (and cupy's host wrapper) is covered by the cupy-engine
cases of tests/test_backtest.py, which run wherever a GPU is usable."""

from __future__ import annotations

import ctypes
import shutil
import subprocess
import zlib

import numpy as np
import pytest

from alphasignal.backtest import STRATEGIES, get_strategy, kernels
from alphasignal.backtest.cuda import _SOURCE
from alphasignal.backtest.engine import config_arrays, config_parts, cost_factors, prepare_prices
from alphasignal.backtest.metrics import rf_per_bar
from alphasignal.backtest.strategies import as_config_frame
from config import SweepConfig

# CUDA's qualifiers and thread index as plain C: one "thread" (configuration) per call, chosen by set_thread().
_HOST_PRELUDE = r"""#include <math.h>
#include <stdlib.h>
#define __device__ static
#define __global__
struct dim_ { int x; };
static struct dim_ blockDim = {1}, threadIdx = {0}, blockIdx = {0};
void set_thread(int j) { blockIdx.x = j; }
"""
_D, _I64 = ctypes.POINTER(ctypes.c_double), ctypes.POINTER(ctypes.c_longlong)


@pytest.fixture(scope="module")
def cpu_kernel(tmp_path_factory):
    if shutil.which("gcc") is None:
        pytest.skip("gcc not found: it compiles the CUDA kernel's source for the CPU")
    folder = tmp_path_factory.mktemp("cuda_src")
    (folder / "kernel.c").write_text(_HOST_PRELUDE + _SOURCE.replace('extern "C" ', ""))
    subprocess.run(["gcc", "-std=c99", "-O2", "-Wall", "-Werror", "-shared", "-fPIC", "-o", str(folder / "kernel.so"),
                    str(folder / "kernel.c"), "-lm"], check=True, capture_output=True, text=True)
    lib = ctypes.CDLL(str(folder / "kernel.so"))
    c_int, c_ll, c_dbl = ctypes.c_int, ctypes.c_longlong, ctypes.c_double
    lib.sweep_kernel.argtypes = [c_int, _D, _D, _D, c_ll, _I64, _D, c_int, c_int, c_int, c_int, c_int, c_dbl, c_dbl,
                                 c_dbl, _I64, c_int, _D, _D, _D, c_int]
    lib.sweep_kernel.restype = None
    return lib


def _ptr(a: np.ndarray, kind=_D):
    return a.ctypes.data_as(kind)


def _run_source(lib, kind, close, open_, table, ia, fa, *, short_ok, next_open, lo, hi, kb, ks, rf_bar, edges):
    k, n_blocks = len(ia), len(edges) - 1
    out, blocks, rets = np.zeros((k, kernels.NACC)), np.zeros((k, n_blocks, 2)), np.zeros((hi - lo, k))
    for j in range(k):
        lib.set_thread(j)
        lib.sweep_kernel(kind, _ptr(close), _ptr(open_), _ptr(table), table.shape[1], _ptr(ia, _I64), _ptr(fa), k,
                         int(short_ok), int(next_open), lo, hi, kb, ks, rf_bar, _ptr(edges, _I64), n_blocks,
                         _ptr(out), _ptr(blocks), _ptr(rets), 1)
    return out, blocks, rets


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("mode,fill,fees,slip", [("long_only", "close", 0.0, 0.0),
                                                  ("long_short", "next_open", 10.0, 5.0)])
def test_cuda_kernel_source_matches_the_numba_kernel(strategy, mode, fill, fees, slip, cpu_kernel, aapl, configs_for):
    strat = get_strategy(strategy)
    prices = prepare_prices(aapl.iloc[-900:], "AAPL", strat.needs)
    configs = as_config_frame(strategy, configs_for(strategy, np.random.default_rng(zlib.crc32(strategy.encode())), 8))
    table, ia, fa = config_arrays(config_parts(strat, configs), prices)
    opts = SweepConfig(mode=mode, fill=fill, fees_bps=fees, slippage_bps=slip, risk_free=0.02)
    kb, ks = cost_factors(opts)
    lo, hi = 120, prices.n
    args = dict(short_ok=mode == "long_short", next_open=fill == "next_open", lo=lo, hi=hi, kb=kb, ks=ks,
                rf_bar=rf_per_bar(0.02, 252.0), edges=np.linspace(lo, hi, 7).round().astype(np.int64))
    want = kernels.run_numba(strat.kind, prices.close, prices.open, table, ia, fa, want_rets=True, **args)
    got = _run_source(cpu_kernel, strat.kind, prices.close, prices.open, np.ascontiguousarray(table),
                      np.ascontiguousarray(ia, dtype=np.int64), np.ascontiguousarray(fa), **args)
    assert want[0][:, kernels.ACC.index("trades")].sum() > 0  # the configurations trade
    for name, a, b in zip(("accumulators", "block sums", "returns"), got, want, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12, err_msg=name)
