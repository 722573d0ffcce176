"""Configuration lanes (``sweep.kernel = "lanes"``): the fused sweep kernel of :mod:`kernels`, stepping
:data:`LANES` configurations through each bar together, one packed (SIMD) scan per bar.

The blocks kernel alternates, per configuration, full steps (fills, busts, block edges) with steady runs in which
the position stays: flat and long runs only scan the signal for the run's end, then sum the run from prefix-sum
tables; short runs (and every run when return series are wanted) step bar by bar. Lanes keep that algorithm and
its arithmetic, and change the loop order: a group's state is held structure-of-arrays (``W[row, lane]``: the
:mod:`kernels` state columns, the lane's current run and parameters), and at each bar one branch-free pass over
the lanes (:func:`_scan`: loads and compares, vectorised by LLVM) finds the lanes whose run ends there, as a bit
mask. Only those lanes (and lanes stepping bar by bar) then take the blocks kernel's code: the run is
closed from the tables (:func:`_close_run`), the full step runs (:func:`_full_step`, statement for statement
that kernel's) and the next run starts. Runs begin and end at the same bars as in the blocks kernel, so
results are equal to it bit for bit (tests/test_lanes.py holds them to 1e-12).

Inputs: the indicator table transposed (bars x rows), so that the lanes' values at a bar sit side by side -- one
vector load and one broadcast when the group reads consecutive rows against one shared row (an MA sweep in plan
order: fast MAs side by side, one slow MA), gathers otherwise -- and walked in tiles of bars that stay in cache. Every
built-in rule runs in lanes; a user strategy's POSITIONS rule stays on the blocks kernel. The last group is padded
with copies of the last configuration (dropped by :func:`kernels.run_numba`).

Measured (docs/performance.md): slower than the blocks kernel on the benchmark sweeps, whose time goes mostly to
run ends (a fill, a prefix-sum close and a branch miss per trade), not to the scans that lanes vectorise; hence
``sweep.kernel`` defaults to "blocks".
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numba as nb
import numpy as np

from . import kernels
from .kernels import (
    BLOCK,
    BUST,
    CASH,
    EDGE,
    ENTRY,
    EQ,
    EXPOSED,
    GL,
    GW,
    MDD,
    NSTATE,
    PEAK,
    PENDING,
    POS,
    S1,
    S2,
    SD2,
    TRADES,
    TURNOVER,
    UNITS,
    WINS,
    bust_rule,
    cross_target,
    fill_trade,
    signal_rule,
    span_stats,
)
from .strategies import CROSS, POSITIONS

LANES = 8  # configurations per group (<= 64: bits of one mask), a multiple of the SIMD width


def lanes_fit(kind: int) -> bool:
    """Whether rule ``kind`` runs in lanes (every built-in rule; a user strategy's POSITIONS runs on "blocks")."""
    return kind != POSITIONS


def padded(a: np.ndarray, pad: int) -> np.ndarray:
    """``a`` with its last row repeated ``pad`` times (the last group's spare lanes)."""
    return np.concatenate([a, np.repeat(a[-1:], pad, axis=0)]) if pad else a


@nb.njit(inline="always")
def _target(kind, short_ok, pos, bust, c, x0, x1, p0, p1, flag, f0, f1):
    """The blocks kernel's target at a bar: 0 once bust, else the rule's signal (``p0``/``p1``: the lines at the
    previous bar, read by CROSS only)."""
    if kind == CROSS:
        tgt = cross_target(pos, p0, p1, x0, x1, short_ok)
    else:
        tgt = signal_rule(kind, pos, c, x0, x1, flag, f0, f1, short_ok)
    return 0 if bust else tgt


# _full_step is long on purpose: it is kernels.advance's full step, statement for statement (the same arithmetic
# in the same order, so the same results), on lane ``q`` of the group state V; split, it would diverge from it.
@nb.njit(inline="always")
def _full_step(kind, short_ok, next_open, V, q, t, c, o, x0, x1, p0, p1, flag, f0, f1, buy_mult, sell_mult,
               rf_bar, edges, blk, rets, lo, j):
    """One bar of lane ``q`` (configuration ``j``) with fills, bust and block edges, as the blocks kernel."""
    cash, units, entry_eq = V[CASH, q], V[UNITS, q], V[ENTRY, q]
    pos, pending, bust = int(V[POS, q]), int(V[PENDING, q]), V[BUST, q] != 0.0
    trades, wins, gw, gl, turnover = V[TRADES, q], V[WINS, q], V[GW, q], V[GL, q], V[TURNOVER, q]
    if next_open and pending != pos:
        cash, units, entry_eq, trades, wins, gw, gl = fill_trade(cash, units, pending, o, buy_mult, sell_mult, entry_eq,
                                                                 trades, wins, gw, gl)
        turnover += abs(pending - pos)
        pos = pending
    V[EXPOSED, q] += 1.0 if units != 0.0 else 0.0
    eq, cash, units, pos, bust, gl, turnover = bust_rule(short_ok, cash + units * c, cash, units, pos, bust,
                                                         entry_eq, gl, turnover)
    tgt = _target(kind, short_ok, pos, bust, c, x0, x1, p0, p1, flag, f0, f1)
    if next_open:
        pending = tgt
    elif tgt != pos:
        cash, units, entry_eq, trades, wins, gw, gl = fill_trade(cash, units, tgt, c, buy_mult, sell_mult, entry_eq,
                                                                 trades, wins, gw, gl)
        turnover += abs(tgt - pos)
        pos = tgt
        eq = cash + units * c
    eq_prev = V[EQ, q]
    r = eq / eq_prev - 1.0 if eq_prev > 0.0 else 0.0
    s1, s2 = V[S1, q], V[S2, q]
    if blk.shape[1] > 0:
        b, next_edge = int(V[BLOCK, q]), int(V[EDGE, q])
        while t >= next_edge:
            blk[j, b, 0] += s1
            blk[j, b, 1] += s2
            b += 1
            next_edge = edges[b + 1]
            blk[j, b, 0] -= s1
            blk[j, b, 1] -= s2
        V[BLOCK, q], V[EDGE, q] = b, next_edge
    d = min(r - rf_bar, 0.0)
    V[S1, q], V[S2, q], V[SD2, q] = s1 + r, s2 + r * r, V[SD2, q] + d * d
    peak, mdd = max(V[PEAK, q], eq), V[MDD, q]
    if peak - eq > mdd * peak:
        mdd = 1.0 - eq / peak
    if rets.shape[0] > 0:
        rets[t - lo, j] = r
    V[CASH, q], V[UNITS, q], V[ENTRY, q], V[EQ, q], V[PEAK, q], V[MDD, q] = cash, units, entry_eq, eq, peak, mdd
    V[POS, q], V[PENDING, q], V[BUST, q] = pos, pending, 1.0 if bust else 0.0
    V[TRADES, q], V[WINS, q], V[GW, q], V[GL, q], V[TURNOVER, q] = trades, wins, gw, gl, turnover


# Rows of a group's work array W (NROWS x LANES) beyond the state columns: the lane's current run (its type and
# first bar) and its parameters. Run types, as the blocks kernel's steady runs: a full step is due (_FULL), a long
# run summed from the prefix-sum tables (_LONG), a run stepped bar by bar (_EXACT: shorts, or return series wanted),
# a flat run (_FLAT).
_TYPE, _I0, _RA, _RB, _FLAG, _F0, _F1 = range(NSTATE, NSTATE + 7)
NROWS = NSTATE + 7
_FULL, _LONG, _EXACT, _FLAT = 0.0, 1.0, 2.0, 3.0


@nb.njit(inline="always")
def _scan(kind, short_ok, W, tT, t, c, a0, b0, sa, sb, L):
    """The lanes whose run ends at bar ``t`` or steps bar by bar (bit q: lane q): one packed pass over the lanes,
    loads and compares only. ``sa``/``sb`` (constants at each call site): 1 when the lanes read consecutive rows
    (one vector load), 0 when they share one row (a broadcast), -1 otherwise (gathers). Two variants are compiled:
    (1, 0) and (-1, -1)."""
    n = 0
    u = np.uint64(t)  # unsigned indices: no wraparound select per index, so consecutive rows are one vector load
    for q in range(L):
        uq = np.uint64(q)
        ia = a0 + uq if sa == 1 else (a0 if sa == 0 else np.uint64(W[_RA, q]))
        ib = b0 + uq if sb == 1 else (b0 if sb == 0 else np.uint64(W[_RB, q]))
        p0, p1 = (tT[u - np.uint64(1), ia], tT[u - np.uint64(1), ib]) if kind == CROSS and t > 0 else (np.nan, np.nan)
        pos = W[POS, q]
        tgt = _target(kind, short_ok, int(pos), W[BUST, q] != 0.0, c, tT[u, ia], tT[u, ib], p0, p1,
                      int(W[_FLAG, q]), W[_F0, q], W[_F1, q])
        typ = W[_TYPE, q]
        n |= np.int64((typ == _FULL) | (typ == _EXACT) | (tgt != pos)) << q
    return n


@nb.njit(inline="always")
def _close_run(W, q, t, pre, close, rf_bar, rets, lo, j):
    """End lane ``q``'s run before bar ``t`` (its bars ``I0..t-1``), as the blocks kernel ends its steady runs."""
    typ, i0 = W[_TYPE, q], int(W[_I0, q])
    if typ == _LONG and t > i0:
        W[S1, q] += pre[0, t] - pre[0, i0]
        W[S2, q] += pre[1, t] - pre[1, i0]
        W[SD2, q] += pre[2, t] - pre[2, i0]
        W[EXPOSED, q] += t - i0
        units, peak = W[UNITS, q], W[PEAK, q]
        W[EQ, q] = units * close[t - 1]
        mx, mn, dd = span_stats(pre, i0, t)
        W[MDD, q] = max(W[MDD, q], dd, 1.0 - units * mn / peak)
        W[PEAK, q] = max(peak, units * mx)
    elif typ == _FLAT:
        d0 = min(-rf_bar, 0.0)
        W[SD2, q] += (t - i0) * (d0 * d0)
        if rets.shape[0] > 0:
            rets[i0 - lo:t - lo, j] = 0.0


@nb.njit(inline="always")
def _exact_bar(W, q, t, c, rf_bar, rets, lo, j):
    """One bar of lane ``q``'s bar-by-bar run (the signal holds); False, with nothing changed, when the equity is
    gone (the run ends: a full step follows)."""
    eq = W[CASH, q] + W[UNITS, q] * c
    if eq <= 0.0:
        return False
    r = eq / W[EQ, q] - 1.0
    W[EQ, q] = eq
    W[S1, q] += r
    W[S2, q] += r * r
    d = min(r - rf_bar, 0.0)
    W[SD2, q] += d * d
    peak = max(W[PEAK, q], eq)
    W[PEAK, q] = peak
    W[MDD, q] = max(W[MDD, q], 1.0 - eq / peak)
    if rets.shape[0] > 0:
        rets[t - lo, j] = r
    W[EXPOSED, q] += 1.0
    return True


@nb.njit(inline="always")
def _run_type(next_open, exact, W, q):
    """The run that follows a full step, as the blocks kernel chooses it."""
    units, pos = W[UNITS, q], W[POS, q]
    if next_open and W[PENDING, q] != pos:
        return _FULL
    if units > 0.0 and not exact:
        return _LONG
    if units != 0.0:
        return _EXACT
    if W[BUST, q] != 0.0 or (W[CASH, q] > 0.0 and pos == 0.0):
        return _FLAT
    return _FULL


@nb.njit(inline="always")
def _row_step(W, row):
    """1 when the lanes read consecutive rows (``W[row]``), 0 when one shared row, -1 otherwise."""
    same, step = True, True
    for q in range(1, W.shape[1]):
        same &= W[row, q] == W[row, 0]
        step &= W[row, q] == W[row, 0] + q
    return 0 if same else (1 if step else -1)


@nb.njit(inline="always")
def _open_lanes(W, state, cfg_ints, cfg_floats, blk, j0, t0):
    """Load configurations ``j0..j0+LANES-1`` into the work array at the start of a pass (a full step due)."""
    for q in range(LANES):
        for v in range(NSTATE):
            W[v, q] = state[j0 + q, v]
        W[_RA, q], W[_RB, q], W[_FLAG, q] = cfg_ints[j0 + q, 0], cfg_ints[j0 + q, 1], cfg_ints[j0 + q, 2]
        W[_F0, q], W[_F1, q], W[_TYPE, q], W[_I0, q] = cfg_floats[j0 + q, 0], cfg_floats[j0 + q, 1], _FULL, t0
        if blk.shape[1] > 0:
            blk[j0 + q, int(W[BLOCK, q]), 0] -= W[S1, q]
            blk[j0 + q, int(W[BLOCK, q]), 1] -= W[S2, q]


@nb.njit(inline="always")
def _close_lanes(W, state, blk, j0):
    """Store the state back at the end of a pass (the runs ended by :func:`_advance_lanes`)."""
    for q in range(LANES):
        if blk.shape[1] > 0:
            blk[j0 + q, int(W[BLOCK, q]), 0] += W[S1, q]
            blk[j0 + q, int(W[BLOCK, q]), 1] += W[S2, q]
        for v in range(NSTATE):
            state[j0 + q, v] = W[v, q]


# _advance_lanes is long on purpose (speed): one packed scan per bar, and the blocks kernel's code for the lanes
# whose run ends, behind one branch.
@nb.njit(inline="always")
def _advance_lanes(kind, short_ok, next_open, exact, close, open_, pre, tT, W, a, b, end, lo, buy_mult, sell_mult,
                   rf_bar, edges, blk, rets, j0):
    """Advance the group in work array ``W`` (configurations ``j0..``) over bars ``a..b-1``; when ``b`` is the
    pass's ``end``, end every lane's run there."""
    L = W.shape[1]  # = LANES, unknown to LLVM: the lane loops stay loops, which it vectorises
    has_blocks, next_edge = blk.shape[1] > 0, int(W[EDGE, 0])  # block edges are the same for every lane
    sa, sb = _row_step(W, _RA), _row_step(W, _RB)
    a0, b0 = np.uint64(W[_RA, 0]), np.uint64(W[_RB, 0])
    stop = b + 1 if b == end else b  # the pass's end: one more round, closing every lane's run
    for t in range(a, stop):
        last = t == end
        c, n, edge = 0.0, -1, False
        if not last:
            c = close[t]
            if sa == 1 and sb == 0:  # e.g. MA crossover: fast MAs side by side, one slow MA
                n = _scan(kind, short_ok, W, tT, t, c, a0, b0, 1, 0, L)
            else:
                n = _scan(kind, short_ok, W, tT, t, c, a0, b0, -1, -1, L)
            edge = has_blocks and t >= next_edge
            if n == 0 and not edge:
                continue
        for q in range(L):  # some lane ends its run or steps bar by bar: the blocks kernel's code, lane by lane
            if not edge and (n >> q) & 1 == 0:
                continue
            ia, ib = int(W[_RA, q]), int(W[_RB, q])
            x0 = x1 = p0 = p1 = np.nan
            pos, typ, flag, f0, f1 = W[POS, q], W[_TYPE, q], int(W[_FLAG, q]), W[_F0, q], W[_F1, q]
            ev = last
            if not last:
                x0, x1 = tT[t, ia], tT[t, ib]
                if t > 0:
                    p0, p1 = tT[t - 1, ia], tT[t - 1, ib]
                ev = edge or typ == _FULL or _target(kind, short_ok, int(pos), W[BUST, q] != 0.0, c, x0, x1, p0,
                                                     p1, flag, f0, f1) != pos
                if not ev and typ == _EXACT:
                    ev = not _exact_bar(W, q, t, c, rf_bar, rets, lo, j0 + q)
            if ev:
                _close_run(W, q, t, pre, close, rf_bar, rets, lo, j0 + q)
            if ev and not last:
                _full_step(kind, short_ok, next_open, W, q, t, c, open_[t], x0, x1, p0, p1, flag, f0, f1, buy_mult,
                           sell_mult, rf_bar, edges, blk, rets, lo, j0 + q)
                W[_TYPE, q], W[_I0, q] = _run_type(next_open, exact, W, q), t + 1
        next_edge = int(W[EDGE, 0])


@nb.njit(cache=True, nogil=True, error_model="numpy")
def lanes_generic(kind, short_ok, close, open_, pre, tT, cfg_ints, cfg_floats, next_open, exact, t0, t1, lo,
                  buy_mult, sell_mult, rf_bar, edges, state, blocks, rets, threads, work, phase, a, b):
    """:func:`lane_kernel`'s kernel with the rule and short mode as arguments, groups one after another (the fast
    test tier's one compile: see :data:`kernels.GENERIC`)."""
    slots = max(min(threads, work.shape[0]), 1)
    for s in range(slots):
        for g in range(s, work.shape[0], slots):
            if phase == 0:
                _open_lanes(work[g], state, cfg_ints, cfg_floats, blocks, g * LANES, t0)
            elif phase == 1:
                _advance_lanes(kind, short_ok, next_open, exact, close, open_, pre, tT, work[g], a, b, t1, lo,
                               buy_mult, sell_mult, rf_bar, edges, blocks, rets, g * LANES)
            else:
                _close_lanes(work[g], state, blocks, g * LANES)


@functools.cache
def _rule_lanes(kind: int, short_ok: bool) -> Callable[..., None]:
    """The lane kernel of one rule and short mode (a closure over plain constants: see ``kernels._rule_kernel``)."""

    @nb.njit(parallel=True, cache=True, nogil=True, error_model="numpy")
    def lanes(close, open_, pre, tT, cfg_ints, cfg_floats, next_open, exact, t0, t1, lo, buy_mult, sell_mult, rf_bar,
              edges, state, blocks, rets, threads, work, phase, a, b):
        """One phase of a pass over bars ``t0..t1-1`` for every group of LANES configurations (``work``: the groups'
        work arrays; ``tT``: the table transposed): 0 loads the groups, 1 advances them over bars ``a..b-1``, 2
        stores them; the other arguments are ``kernels.sweep_kernel``'s. One parallel loop, three calls: a third
        of the compile of three loops. The groups are dealt to the ``threads`` in turn (see ``kernels.GROUP``)."""
        slots = max(min(threads, work.shape[0]), 1)
        for s in nb.prange(slots):
            for g in range(s, work.shape[0], slots):
                if phase == 0:
                    _open_lanes(work[g], state, cfg_ints, cfg_floats, blocks, g * LANES, t0)
                elif phase == 1:
                    _advance_lanes(kind, short_ok, next_open, exact, close, open_, pre, tT, work[g], a, b, t1, lo,
                                   buy_mult, sell_mult, rf_bar, edges, blocks, rets, g * LANES)
                else:
                    _close_lanes(work[g], state, blocks, g * LANES)

    return lanes


TILE_BYTES = 2**18  # one tile of the transposed table: well within L2


def lane_kernel(kind: int, short_ok: bool, table: np.ndarray, k: int) -> Callable[..., None]:
    """A kernel with :func:`kernels.sweep_kernel`'s arguments that runs ``k`` configurations (a multiple of LANES) in
    groups over ``table``'s rows: the rule's own compiled kernel, or with :data:`kernels.GENERIC` the generic one.
    The transposed table and the groups' work arrays are built once here, for every pass over ``table``."""
    kernel = functools.partial(lanes_generic, kind, short_ok) if kernels.GENERIC else _rule_lanes(kind, short_ok)
    table_t, work = np.ascontiguousarray(table.T), np.empty((k // LANES, NROWS, LANES))
    tile = int(np.clip(TILE_BYTES // (8 * max(table.shape[0], 1)), 16, 1024))  # bars: all groups, then the next

    def sweep(close, open_, pre, _table, cfg_ints, cfg_floats, next_open, exact, t0, t1, *rest):  # noqa: ANN001, ANN202
        # rest[-2], run_numba's HOLD_CODES, is for the one-configuration kernel only; rest[-1]: the threads
        args = (close, open_, pre, table_t, cfg_ints, cfg_floats, next_open, exact, t0, t1, *rest[:-2], rest[-1], work)
        kernel(*args, 0, t0, t0)
        for a in range(t0, t1, tile):
            kernel(*args, 1, a, min(a + tile, t1))
        kernel(*args, 2, t1, t1)

    return sweep
