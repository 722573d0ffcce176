"""CuPy backend: the fused per-configuration kernel of ``kernels.py`` in CUDA C, one GPU thread per configuration.

A bar-by-bar port of the rules of ``kernels.py`` (same signal rules, by the rule ids of ``strategies``, fills, costs,
bust rule and accumulators); a thread keeps its state, and the current block's return sums, in registers. cupy
itself is reached only through ``xp.get_cupy()``. NOTE: written without access to a GPU. Its source is compiled for
the CPU by gcc and checked against the Numba kernel, and :func:`run_cupy` is run through the engine with a CPU
stand-in for cupy, everywhere (tests/test_backtest_cuda_source.py); the engine tests (tests/test_backtest.py) run it
on the GPU against the reference loop wherever ``xp.gpu_status()`` finds a usable one.
"""

from __future__ import annotations

import functools

import numpy as np

from . import strategies
from .kernels import NACC
from .xp import get_cupy

_RULE_NAMES = ("CROSSOVER", "BOLLINGER", "RSI", "DONCHIAN", "CROSS", "POSITIONS")  # every rule of ``strategies``
_SOURCE = "".join(f"#define RULE_{name} {getattr(strategies, name)}\n" for name in _RULE_NAMES) + r"""
__device__ int target_position(int kind, int pos, double c, double x0, double x1, int flag, double f0, double f1,
                               int short_ok) {
    if (isnan(x0) || isnan(x1)) return 0;
    int neg = short_ok ? -1 : 0;
    if (kind == RULE_CROSSOVER) return x0 > x1 ? 1 : (x0 < x1 ? neg : 0);
    if (kind == RULE_POSITIONS) return x0 > 0.0 ? 1 : (x0 < 0.0 ? neg : 0);
    if (kind == RULE_BOLLINGER) {
        double up = x0 + f0 * x1, dn = x0 - f0 * x1;
        if (flag == 0) {
            if (c > up) return 1;
            if (c < dn) return neg;
            if ((pos == 1 && c < x0) || (pos == -1 && c > x0)) return 0;
            return pos;
        }
        if (c < dn) return 1;
        if (c > up) return neg;
        if ((pos == 1 && c > x0) || (pos == -1 && c < x0)) return 0;
        return pos;
    }
    if (kind == RULE_RSI) return x0 < f0 ? 1 : (x0 > f1 ? neg : pos);
    if (kind == RULE_DONCHIAN) return c > x0 ? 1 : (c < x1 ? neg : pos);
    return 0;
}

__device__ int cross_target(int pos, const double* a, const double* b, long long t, int short_ok) {
    if (t == 0) return pos;
    if (a[t - 1] < b[t - 1] && a[t] > b[t]) return 1;
    if (a[t - 1] > b[t - 1] && a[t] < b[t]) return short_ok ? -1 : 0;
    return pos;
}

__device__ void fill(double* cash, double* units, int tgt, double price, double buy_mult, double sell_mult,
                     double* entry_eq, double* trades, double* wins, double* gw, double* gl) {
    if (*units != 0.0) {
        if (*units > 0.0) *cash += *units * price * sell_mult;
        else *cash -= -*units * price * buy_mult;
        *units = 0.0;
        double pnl = *cash - *entry_eq;
        if (pnl > 0.0) { *wins += 1.0; *gw += pnl; }
        else if (pnl < 0.0) { *gl -= pnl; }
    }
    if (tgt != 0 && *cash > 0.0) {
        *entry_eq = *cash;
        double q = *cash / (price * buy_mult);
        if (tgt > 0) { *units = q; *cash = 0.0; }
        else { *units = -q; *cash += q * price * sell_mult; }
        *trades += 1.0;
    }
}

extern "C" __global__ void sweep_kernel(
        const int kind, const double* close, const double* open_, const double* table, const long long n,
        const long long* cfg_ints, const double* cfg_floats, const int k, const int short_ok, const int next_open,
        const int lo, const int hi, const double buy_mult, const double sell_mult, const double rf_bar,
        const long long* edges, const int n_blocks, double* out, double* blocks, double* rets, const int want_rets) {
    int j = blockDim.x * blockIdx.x + threadIdx.x;
    if (j >= k) return;
    const double* row0 = table + cfg_ints[3 * j] * n;
    const double* row1 = table + cfg_ints[3 * j + 1] * n;
    int flag = (int)cfg_ints[3 * j + 2];
    double f0 = cfg_floats[2 * j], f1 = cfg_floats[2 * j + 1];
    double cash = 1.0, units = 0.0, entry_eq = 1.0, eq_prev = 1.0, peak = 1.0, mdd = 0.0;
    double s1 = 0.0, s2 = 0.0, sd2 = 0.0, trades = 0.0, wins = 0.0, gw = 0.0, gl = 0.0, exposed = 0.0;
    double turnover = 0.0;
    int pos = 0, pending = 0, bust = 0, b = 0;
    long long next_edge = n_blocks > 0 ? edges[1] : (long long)hi + 1;
    double b1 = 0.0, b2 = 0.0;  // the current block's sums, kept in registers and stored once per block
    double* my_blocks = blocks + (long long)j * n_blocks * 2;
    for (int t = lo; t < hi; ++t) {
        double c = close[t];
        if (next_open && pending != pos) {
            fill(&cash, &units, pending, open_[t], buy_mult, sell_mult, &entry_eq, &trades, &wins, &gw, &gl);
            turnover += abs(pending - pos);
            pos = pending;
        }
        exposed += units != 0.0;
        double eq = cash + units * c;
        if (eq <= 0.0 && !bust) {
            if (units != 0.0) gl += entry_eq;
            turnover += abs(pos);
            eq = 0.0; cash = 0.0; units = 0.0; pos = 0; bust = 1;
        }
        int tgt = bust ? 0 : (kind == RULE_CROSS ? cross_target(pos, row0, row1, t, short_ok)
                                         : target_position(kind, pos, c, row0[t], row1[t], flag, f0, f1, short_ok));
        if (next_open) {
            pending = tgt;
        } else if (tgt != pos) {
            fill(&cash, &units, tgt, c, buy_mult, sell_mult, &entry_eq, &trades, &wins, &gw, &gl);
            turnover += abs(tgt - pos);
            pos = tgt;
            eq = cash + units * c;
        }
        double r = eq_prev > 0.0 ? eq / eq_prev - 1.0 : 0.0;
        eq_prev = eq;
        s1 += r;
        s2 += r * r;
        double d = fmin(r - rf_bar, 0.0);
        sd2 += d * d;
        peak = fmax(peak, eq);
        if (peak - eq > mdd * peak) mdd = 1.0 - eq / peak;
        if (n_blocks > 0) {
            while (t >= next_edge) {
                my_blocks[2 * b] = b1; my_blocks[2 * b + 1] = b2; b1 = 0.0; b2 = 0.0;
                b += 1; next_edge = edges[b + 1];
            }
            b1 += r;
            b2 += r * r;
        }
        if (want_rets) rets[(long long)(t - lo) * k + j] = r;
    }
    if (n_blocks > 0) { my_blocks[2 * b] = b1; my_blocks[2 * b + 1] = b2; }
    if (units != 0.0) {
        double pnl = eq_prev - entry_eq;
        if (pnl > 0.0) { wins += 1.0; gw += pnl; }
        else if (pnl < 0.0) { gl -= pnl; }
    }
    double* o = out + (long long)j * 11;
    o[0] = eq_prev; o[1] = s1; o[2] = s2; o[3] = sd2; o[4] = mdd; o[5] = trades; o[6] = wins; o[7] = gw;
    o[8] = gl; o[9] = exposed; o[10] = turnover;
}
"""


@functools.cache
def _kernel():
    return get_cupy().RawKernel(_SOURCE, "sweep_kernel")


def run_cupy(kind: int, close: np.ndarray, open_: np.ndarray, table: np.ndarray, cfg_ints: np.ndarray,
             cfg_floats: np.ndarray, *, short_ok: bool, next_open: bool, lo: int, hi: int, buy_mult: float,
             sell_mult: float, rf_bar: float,
             edges: np.ndarray, want_rets: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Copy one chunk to the GPU, run one thread per configuration, copy the accumulators back."""
    cp = get_cupy()
    k = cfg_ints.shape[0]
    n_blocks = max(len(edges) - 1, 0)
    d_out = cp.empty((k, NACC))
    d_blocks = cp.zeros((k, n_blocks, 2)) if n_blocks else cp.zeros(1)
    d_rets = cp.empty((hi - lo, k)) if want_rets else cp.zeros(1)
    threads = 128
    _kernel()(((k + threads - 1) // threads,), (threads,), (
        np.int32(kind), cp.asarray(close), cp.asarray(open_), cp.asarray(np.ascontiguousarray(table)),
        np.int64(table.shape[1]), cp.asarray(np.ascontiguousarray(cfg_ints, dtype=np.int64)),
        cp.asarray(np.ascontiguousarray(cfg_floats)), np.int32(k), np.int32(short_ok), np.int32(next_open),
        np.int32(lo), np.int32(hi), np.float64(buy_mult), np.float64(sell_mult), np.float64(rf_bar),
        cp.asarray(np.ascontiguousarray(edges, dtype=np.int64)), np.int32(n_blocks), d_out, d_blocks, d_rets,
        np.int32(want_rets)))
    blocks = cp.asnumpy(d_blocks) if n_blocks else np.zeros((k, 0, 2))
    rets = cp.asnumpy(d_rets) if want_rets else np.empty((0, 0))
    return cp.asnumpy(d_out), blocks, rets
