"""GPU engine: the CPU kernel's own code, compiled for CUDA by numba-cuda, one GPU thread per configuration.

The kernel's body is :func:`kernels.advance` -- the same function the Numba CPU kernels inline, with the rule
functions it calls (``target_position``, ``cross_target``, the fills and costs of ``fill_trade``, the bust rule, the
accumulators and the long-run tables ``span_stats``). Each rule is written once, in ``kernels.py``: numba-cuda compiles
inlined twins of those functions into the kernel (:func:`python_twins`, :func:`_gpu_advance`). CuPy stays the array
library: it moves the data to the device, and the numba-cuda kernel reads CuPy's arrays in place (the CUDA array
interface).

Under numba-cuda's simulator (``NUMBA_ENABLE_CUDASIM=1``, set before Numba is imported) the same kernel runs on the
CPU, thread by thread, on NumPy arrays: the device functions are then the Python source of those rule functions
(:func:`python_twins`), so CI checks the GPU kernel's logic, launch and host side on machines with no GPU
(tests/test_gpu_kernel.py). Real GPUs run the GPU-marked tests and ``benchmarks/gpu_check.sh``.
"""

from __future__ import annotations

import functools
import types
from collections.abc import Callable, Mapping
from typing import Any

import numba as nb
import numpy as np
from numba import cuda  # a module global: the simulator swaps it for its own in the kernel's globals
from numba.core.registry import CPUDispatcher

from . import kernels
from .xp import get_cupy, simulated

THREADS = 128  # threads per CUDA block: one configuration each


def python_twins(namespace: Mapping[str, Any], inline: bool = False) -> dict[str, Any]:
    """A copy of ``namespace`` (a module's globals) where each Numba CPU function is its Python source, rebound to the
    copy, so the functions it calls are Python too: what the CUDA simulator can run on its simulated arrays. With
    ``inline`` each is instead that source as a Numba function that Numba inlines where it is called."""
    twins = dict(namespace)
    for name, value in namespace.items():
        if isinstance(value, CPUDispatcher):
            src = value.py_func
            twin = types.FunctionType(src.__code__, twins, src.__name__, src.__defaults__, src.__closure__)
            twins[name] = nb.njit(inline="always")(twin) if inline else twin
    return twins


def _gpu_advance() -> Any:
    """kernels.advance as the CUDA kernel calls it: under the simulator its Python twin; on a GPU its inlined twin,
    whose rule functions numba-cuda compiles into the kernel itself (the CPU kernels leave some to LLVM to inline,
    typed once there, and numba-cuda compiles a separate device function only where a device exists, so
    ahead-of-time PTX -- precompile, the checks without a GPU -- needs them inlined)."""
    return python_twins(vars(kernels), inline=not simulated())["advance"]


# A module global, not a closure variable, so that numba-cuda's disk cache keys on constants only.
_ADVANCE = _gpu_advance()


@functools.cache
def gpu_kernel(kind: int, short_ok: bool) -> Any:
    """The CUDA kernel of one signal rule (``kind``) and short mode: :func:`kernels.advance` per configuration, with
    the rule and mode compile-time constants, as in the CPU kernels."""

    @cuda.jit(cache=True)  # on disk, as the CPU kernels: the closure holds plain constants only
    def sweep(close, open_, pre, table, cfg_ints, cfg_floats, next_open, exact, t0, t1, lo, buy_mult, sell_mult,
              rf_bar, edges, state, blocks, rets, no_hold, no_words):
        """Thread ``j`` advances configuration ``j`` over bars ``t0..t1-1`` (the arguments of the CPU kernels; no hold
        codes: ``no_hold`` and ``no_words`` are empty, and runs are scanned one bar at a time)."""
        j = cuda.grid(1)
        if j < cfg_ints.shape[0]:
            _ADVANCE(kind, short_ok, next_open, exact, close, open_, pre, table[cfg_ints[j, 0]], table[cfg_ints[j, 1]],
                     cfg_ints[j, 2], cfg_floats[j, 0], cfg_floats[j, 1], t0, t1, lo, buy_mult, sell_mult, rf_bar,
                     edges, state[j], blocks[j], rets, j, no_hold, no_words)

    return sweep


def signature() -> tuple[Any, ...]:
    """The argument types :func:`run_gpu` launches the kernel with (C-contiguous float64/int64 arrays, Python bools,
    ints and floats), for compiling ahead of the first launch."""
    from numba import types as nt

    f1, f2, i2 = nt.float64[::1], nt.float64[:, ::1], nt.int64[:, ::1]
    return (f1, f1, f2, f2, i2, f2, nt.boolean, nt.boolean, nt.int64, nt.int64, nt.int64, nt.float64, nt.float64,
            nt.float64, nt.int64[::1], f2, nt.float64[:, :, ::1], f2, nt.uint8[::1], nt.uint64[::1])


def precompile(kind: int, short_ok: bool, ptx_only: bool = False) -> None:
    """Compile one rule's kernel into numba-cuda's disk cache without launching it, so that several processes can
    fill the cache at once before a benchmark or a test run; ``ptx_only`` stops at PTX, which needs NVVM but no GPU
    or driver (a check on machines without one). Nothing to do under the simulator."""
    if ptx_only:
        cuda.compile_ptx(gpu_kernel(kind, bool(short_ok)).py_func, signature(), cc=(8, 0))
    elif not simulated():
        gpu_kernel(kind, bool(short_ok)).compile(signature())


def _transfers() -> tuple[Callable[[np.ndarray], Any], Callable[[Any], np.ndarray]]:
    """(to device, to host): CuPy on a GPU; the simulator's stand-in device arrays under the simulator."""
    if simulated():
        return (lambda a: cuda.to_device(np.ascontiguousarray(a))), (lambda d: d.copy_to_host())
    cp = get_cupy()
    return (lambda a: cp.asarray(np.ascontiguousarray(a))), cp.asnumpy


class DeviceRun:
    """One chunk on the device: its inputs, state, block sums and returns, and the launch that advances every
    configuration over a span of bars (what :func:`run_gpu` runs, and what the benchmark times with CUDA events)."""

    def __init__(self, kind: int, close: np.ndarray, open_: np.ndarray, table: np.ndarray, cfg_ints: np.ndarray,
                 cfg_floats: np.ndarray, *, short_ok: bool, next_open: bool, lo: int, hi: int, buy_mult: float,
                 sell_mult: float, rf_bar: float, edges: np.ndarray, want_rets: bool) -> None:
        k = cfg_ints.shape[0]
        to_device, self.to_host = _transfers()
        self.inputs = [to_device(a) for a in (close, open_, kernels.market_tables(close, rf_bar), table,
                                              cfg_ints.astype(np.int64), cfg_floats.astype(np.float64))]
        self.outputs = [to_device(edges.astype(np.int64)), to_device(kernels.initial_state(k, edges, hi)),
                        to_device(np.zeros((k, max(len(edges) - 1, 0), 2))),
                        to_device(np.zeros((hi - lo, k) if want_rets else (0, 0))), to_device(np.zeros(0, np.uint8)),
                        to_device(np.zeros(0, np.uint64))]
        self.launch = gpu_kernel(kind, short_ok)[(k + THREADS - 1) // THREADS, THREADS]
        self.flags, self.lo, self.costs = (next_open, want_rets), lo, (buy_mult, sell_mult, rf_bar)

    def advance(self, t0: int, t1: int) -> None:
        """Launch the kernel over bars ``t0..t1-1`` (asynchronous on a GPU)."""
        self.launch(*self.inputs, *self.flags, t0, t1, self.lo, *self.costs, *self.outputs)

    def accumulators(self) -> np.ndarray:
        """The accumulators so far (k x NACC), open trades marked at the last close."""
        return kernels.mark_open_trades(self.to_host(self.outputs[1]))


def run_gpu(kind: int, close: np.ndarray, open_: np.ndarray, table: np.ndarray, cfg_ints: np.ndarray,
            cfg_floats: np.ndarray, *, short_ok: bool, next_open: bool, lo: int, hi: int, buy_mult: float,
            sell_mult: float, rf_bar: float, edges: np.ndarray, want_rets: bool, stops: tuple[int, ...] = ()
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`kernels.run_numba` on the GPU, same arguments and results: one launch per span between ``stops`` (a
    GPU needs no bar blocks for its caches), the state kept on the device between launches."""
    run = DeviceRun(kind, close, open_, table, cfg_ints, cfg_floats, short_ok=short_ok, next_open=next_open, lo=lo,
                    hi=hi, buy_mult=buy_mult, sell_mult=sell_mult, rf_bar=rf_bar, edges=edges, want_rets=want_rets)
    cuts = sorted({lo, *stops, hi})
    snaps = []
    for t0, t1 in zip(cuts[:-1], cuts[1:], strict=True):
        run.advance(t0, t1)
        if t1 in stops:
            snaps.append(run.accumulators())
    out = np.stack(snaps) if stops else run.accumulators()
    _, _, blocks, rets, _, _ = run.outputs
    return out, run.to_host(blocks), run.to_host(rets) if want_rets else np.empty((0, 0))
