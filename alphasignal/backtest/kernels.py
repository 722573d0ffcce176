"""Fused per-configuration kernel: signal -> fills -> equity -> metric accumulators, bar by bar, with all
configurations advanced together in passes over blocks of bars (state carried between passes).

Execution conventions (identical in every engine and in the tests' reference loop):

* the signal of bar t uses data up to the close of t; the resulting trade fills at the close of t
  (``fill="close"``) or the open of t+1 (``fill="next_open"``), so the position earns from bar t+1 on;
* every entry commits the whole equity: ``shares = equity / (price * (1 + slippage) * (1 + fee))``;
  selling receives ``price * (1 - slippage) * (1 - fee)`` per share (shorts: the same sizing, sold short);
* bars where an indicator is still NaN (warm-up) are flat; equity is marked at every close and the bar
  return is ``equity_t / equity_{t-1} - 1``; a short whose equity reaches 0 is closed and stays flat;
* crossover rules (MA_Crossover: short vs long MA; MACD: line vs signal) follow ``entry``: ``state`` (the default)
  holds the side the fast line is on from the first bar both lines exist (long above, short or flat below, flat on
  a tie); ``cross`` starts flat (also in each evaluation window) and changes position only on a crossover event at
  bar t, fast below slow at t-1 and above at t (long) or the reverse (short, or flat when long-only), as
  backtesting.py's ``crossover()`` (bar t-1 may precede the window); a touch (equal values) is no event. The other
  strategies' rules are unaffected by ``entry``.

Accumulators per configuration (columns of ``out``, :data:`ACC`) are turned into metrics by
``evaluation.metrics.finalise``.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable
from contextlib import AbstractContextManager

import numba as nb
import numpy as np
from numba.core import event

from ..evaluation.metrics import ACC, NACC  # noqa: F401 - ACC: the columns the kernels fill (kernels.ACC)
from .strategies import BOLLINGER, CROSS, CROSSOVER, DONCHIAN, POSITIONS, RSI

log = logging.getLogger(__name__)


@nb.njit(inline="always", cache=True)
def target_position(kind, pos, c, x0, x1, flag, f0, f1, short_ok):
    """Desired position (-1, 0, 1) at a bar's close from indicator values ``x0``/``x1`` and the current ``pos``,
    under the signal rule ``kind`` (a rule id of ``strategies``: each Strategy names its rule; the ids are constants
    when compiled, so each kernel keeps only its own rule's branch)."""
    if np.isnan(x0) or np.isnan(x1):
        return 0
    if kind == CROSSOVER:  # MA crossover (short vs long MA), MACD (line vs signal)
        if x0 > x1:
            return 1
        if short_ok and x0 < x1:
            return -1
        return 0
    if kind == POSITIONS:  # a user strategy's wanted position, x0 (= x1)
        if x0 > 0.0:
            return 1
        if short_ok and x0 < 0.0:
            return -1
        return 0
    if kind == BOLLINGER:  # Bollinger: x0 = middle band, x1 = std
        up = x0 + f0 * x1
        dn = x0 - f0 * x1
        if flag == 0:  # breakout: enter beyond a band, exit back through the middle
            if c > up:
                return 1
            if c < dn:
                return -1 if short_ok else 0
            if (pos == 1 and c < x0) or (pos == -1 and c > x0):
                return 0
            return pos
        if c < dn:  # mean reversion: fade the band, exit at the middle
            return 1
        if c > up:
            return -1 if short_ok else 0
        if (pos == 1 and c > x0) or (pos == -1 and c < x0):
            return 0
        return pos
    if kind == RSI:  # RSI reversion: x0 = RSI, f0 = lower, f1 = upper
        if x0 < f0:
            return 1
        if x0 > f1:
            return -1 if short_ok else 0
        return pos
    if kind == DONCHIAN:  # Donchian: x0 = previous highest high, x1 = previous lowest low
        if c > x0:
            return 1
        if c < x1:
            return -1 if short_ok else 0
        return pos
    return 0  # pragma: no cover - every Strategy names one of the rules above


@nb.njit(inline="always", cache=True)
def cross_target(pos, a0, b0, a1, b1, short_ok):
    """Position after bar t under ``entry="cross"``: ``a``/``b`` are the fast/slow lines at t-1 (``a0``, ``b0``) and
    t (``a1``, ``b1``); no event (a NaN compares False) keeps ``pos``."""
    if a0 < b0 and a1 > b1:
        return 1
    if a0 > b0 and a1 < b1:
        return -1 if short_ok else 0
    return pos


@nb.njit(inline="always", cache=True)
def fill_trade(cash, units, tgt, price, buy_mult, sell_mult, entry_eq, acc_trades, acc_wins, gw, gl):
    """Close the current position (if any) and open ``tgt``; returns the updated state."""
    if units != 0.0:
        if units > 0.0:
            cash += units * price * sell_mult
        else:
            cash -= -units * price * buy_mult
        units = 0.0
        pnl = cash - entry_eq
        if pnl > 0.0:
            acc_wins += 1.0
            gw += pnl
        elif pnl < 0.0:
            gl -= pnl
    if tgt != 0 and cash > 0.0:
        entry_eq = cash
        q = cash / (price * buy_mult)
        if tgt > 0:
            units = q
            cash = 0.0
        else:
            units = -q
            cash += q * price * sell_mult
        acc_trades += 1.0
    return cash, units, entry_eq, acc_trades, acc_wins, gw, gl


@nb.njit(inline="always", cache=True)
def bust_rule(short_ok, eq, cash, units, pos, bust, entry_eq, gl, turnover):
    """A short that lost everything (equity ``eq`` <= 0) is closed and stays flat from here on; returns the updated
    (eq, cash, units, pos, bust, gl, turnover), the open trade's whole entry equity counted as lost."""
    if short_ok and eq <= 0.0 and not bust:
        if units != 0.0:
            gl += entry_eq
        return 0.0, 0.0, 0.0, 0, True, gl, turnover + abs(pos)
    return eq, cash, units, pos, bust, gl, turnover


# Per-configuration state carried between blocks of bars (columns of ``state``); the first NACC are the
# accumulators in ACC order, so the result is a plain slice of the state.
NSTATE = 20
(EQ, S1, S2, SD2, MDD, TRADES, WINS, GW, GL, EXPOSED, TURNOVER, CASH, UNITS, POS, PENDING, ENTRY,
 PEAK, BUST, BLOCK, EDGE) = range(NSTATE)
BAR_BLOCK = 16384  # bars per pass: one pass's indicator rows stay in cache (L3) for every configuration
GROUP = 32  # configurations per group; a kernel deals the groups to its threads in turn: group g to thread g % T.
# Not a prange over the groups: Numba's OpenMP layer gives each thread one contiguous share of a prange whatever the
# chunk size, and the configurations run sorted by their rows (engine._plan_chunks), so on the 10,948-configuration
# MA grid the first half held 1.85x the second's work and the kernel ran 1.54x faster on 2 threads than on 1, not 2x.


@nb.njit(inline="always", cache=True)
def hold_bytes(m):
    """Bytes of scratch for the hold codes of ``m`` bars: whole 64-bit words, and four more, which :func:`_hold_end`
    reads without a branch to skip them (from bar ``m``, where a run ends on the pass's last bar, and in its steps of
    four words; what it finds at bar ``m`` and beyond is cut to ``stop``)."""
    return m // 8 * 8 + 32


@nb.njit(inline="always", cache=True)
def signal_rule(kind, pos, c, x0, x1, flag, f0, f1, short_ok):
    """:func:`target_position`, with crossovers reduced to two comparisons (a NaN compares False)."""
    if kind == CROSSOVER:
        return 1 if x0 > x1 else (-1 if short_ok and x0 < x1 else 0)
    return target_position(kind, pos, c, x0, x1, flag, f0, f1, short_ok)


@nb.njit(cache=True)  # not inline="always": Numba types it once, not once per call site (40 s to 16 s of compile)
def _holds(kind, pos, close, xa, xb, u, v, flag, f0, f1, short_ok):
    """Whether the signal at bar ``u`` keeps position ``pos`` (a constant at each call site); ``v = u - 1`` (of
    ``u``'s type: unsigned in scans), read by the CROSS rule only. LLVM inlines it where it is called, where
    ``kind`` and ``pos`` are constants, so the hold codes' loop is still packed SIMD."""
    c, x0, x1 = close[u], xa[u], xb[u]
    if kind == CROSS:
        return cross_target(pos, xa[v], xb[v], x0, x1, short_ok) == pos
    if kind == CROSSOVER:
        if pos == 1:
            return x0 > x1
        if pos == -1:
            return short_ok and x0 < x1
        return not (x0 > x1) and not (short_ok and x0 < x1)
    return target_position(kind, pos, c, x0, x1, flag, f0, f1, short_ok) == pos


@nb.njit(inline="always", cache=True)
def _run_end(kind, pos, close, xa, xb, flag, f0, f1, short_ok, i, stop):
    """First bar in ``i..stop-1`` (``i`` >= 1) whose signal leaves ``pos`` (``stop`` if none), one bar at a time: the
    GPU's scan (per-thread hold codes would not fit its memory) and the reference the hold codes are tested against.
    Unsigned indices spare every load Numba's negative-index wraparound check."""
    u, end, one = np.uint64(i), np.uint64(stop), np.uint64(1)
    while u < end and _holds(kind, pos, close, xa, xb, u, u - one, flag, f0, f1, short_ok):
        u += one
    return np.int64(u)


HOLD_CODES = True  # CPU kernels: steady runs end where the hold codes say (False: one bar at a time, as the GPU)
HOLD_LONG, HOLD_FLAT, HOLD_SHORT = 1, 2, 4  # bits of a bar's hold code: its signal keeps a long / flat / short


@nb.njit(inline="always", cache=True)
def _code(kind, close, xa, xb, u, v, flag, f0, f1, short_ok):
    """The hold code of bar ``u`` (``v = u - 1``): the bits of the positions that its signal keeps."""
    code = np.uint8(HOLD_LONG) if _holds(kind, 1, close, xa, xb, u, v, flag, f0, f1, short_ok) else np.uint8(0)
    code |= np.uint8(HOLD_FLAT) if _holds(kind, 0, close, xa, xb, u, v, flag, f0, f1, short_ok) else np.uint8(0)
    if short_ok:
        keeps_short = _holds(kind, -1, close, xa, xb, u, v, flag, f0, f1, short_ok)
        code |= np.uint8(HOLD_SHORT) if keeps_short else np.uint8(0)
    return code


@nb.njit(inline="always", cache=True)
def _fill_holds(kind, close, xa, xb, flag, f0, f1, short_ok, m, hold):
    """``hold[u]`` (u = 1..m-1): the bits of the positions that the signal at bar ``u`` keeps. One branch-free pass
    over the bars, which LLVM packs into SIMD compares."""
    one = np.uint64(1)
    for k in range(np.uint64(m) - one):
        u = np.uint64(k) + one
        hold[u] = _code(kind, close, xa, xb, u, u - one, flag, f0, f1, short_ok)


@nb.njit(inline="always", cache=True)
def _crossover_code(x0, x1, short_ok):
    """The CROSSOVER rule's hold code, the signal's one position: long above, short (or flat) below, else flat."""
    return np.uint8(HOLD_LONG) if x0 > x1 else (np.uint8(HOLD_SHORT) if short_ok and x0 < x1 else np.uint8(HOLD_FLAT))


@nb.njit(inline="always", cache=True)
def _fill_hold_pair(xa, xa2, xb, short_ok, m, hold, hold2):
    """:func:`_fill_holds` of two CROSSOVER configurations that share their second row ``xb`` (rows ``xa``/``xa2``,
    codes to ``hold``/``hold2``) in one pass, which loads the shared row once: the memory-bound pass of the
    10,948-configuration MA grid takes 22 % less time. Written out for the one rule (through ``_holds`` LLVM left
    the two configurations' loop unpacked; ``test_the_hold_codes_are_packed_simd`` checks the assembly)."""
    for u in range(1, m):
        x1 = xb[u]
        hold[u] = _crossover_code(xa[u], x1, short_ok)
        hold2[u] = _crossover_code(xa2[u], x1, short_ok)


@nb.njit(inline="always", cache=True)
def pairs(kind):
    """Whether ``kind``'s kernel fills the hold codes of neighbours that share their second row in one pass."""
    return kind == CROSSOVER


@nb.njit(inline="always", cache=True)
def fill_codes(kind, short_ok, close, table, cfg_ints, cfg_floats, t0, t1, j, pair, hold, hb):
    """The hold codes of configuration ``j`` over bars ``t0..t1-1`` into ``hold[:hb]`` and, with ``pair``, those of
    ``j + 1`` (the same second row) into ``hold[hb:]``, in one pass (:func:`_fill_hold_pair`; a lone CROSSOVER
    configuration goes as its own pair, so a kernel compiles one such loop)."""
    xa, xb = table[cfg_ints[j, 0], t0:t1], table[cfg_ints[j, 1], t0:t1]
    if pairs(kind):
        xa2 = table[cfg_ints[j + 1 if pair else j, 0], t0:t1]
        _fill_hold_pair(xa, xa2, xb, short_ok, t1 - t0, hold[:hb], hold[hb:])
    else:
        _fill_holds(kind, close[t0:t1], xa, xb, cfg_ints[j, 2], cfg_floats[j, 0], cfg_floats[j, 1], short_ok, t1 - t0,
                    hold[:hb])


@nb.njit(inline="always", cache=True)
def _hold_end(words, shift, i, stop):
    """First bar in ``i..stop-1`` whose hold code lacks bit ``1 << shift`` (``stop`` if none), from the codes read
    eight bars per 64-bit word (``words``), four words per step after the first; the first such bar of a word is
    found by arithmetic and the first such word of a step by selects, so a run costs one branch per 32 bars and one
    mispredicted at its end."""
    u, end, three, one = np.uint64(i), np.uint64(stop), np.uint64(3), np.uint64(1)
    ones = np.uint64(0x0101010101010101) << np.uint64(shift)  # the bit, in each byte
    w = u >> three
    lacks = ~words[w] & ones & (np.uint64(0xFFFFFFFFFFFFFFFF) << ((u & np.uint64(7)) << three))  # bars >= u only
    if lacks == np.uint64(0):
        while True:  # words w+1..w+4 (the scratch has 4 spare words: hold_bytes)
            w += one
            if w << three >= end:
                return np.int64(end)
            l0, l1 = ~words[w] & ones, ~words[w + one] & ones
            l2, l3 = ~words[w + np.uint64(2)] & ones, ~words[w + np.uint64(3)] & ones
            if (l0 | l1 | l2 | l3) != np.uint64(0):
                break
            w += three
        zero = np.uint64(0)
        lacks = l0 if l0 != zero else (l1 if l1 != zero else (l2 if l2 != zero else l3))
        w += zero if l0 != zero else (one if l1 != zero else (np.uint64(2) if l2 != zero else three))
    lowest = (lacks & (~lacks + one)) >> np.uint64(shift)  # 1 << (8 * b): b, the first bar in the word
    bar = (w << three) + ((lowest * np.uint64(0x0001020304050607)) >> np.uint64(56))  # b, in the product's top byte
    return np.int64(min(bar, end))


# advance is long on purpose (speed): it is inlined into each kernel's per-configuration loop and keeps every
# accumulator in local variables for the whole bar loop; split into helpers, that state would be packed into arrays
# or tuples and unpacked on every bar. cfg_ints rows are (signal row a, signal row b, flag) and cfg_floats rows
# (f0, f1): a configuration's parameters as the rule reads them (Strategy.chunk_arrays); buy_mult and sell_mult
# are the price multipliers of the cost model (evaluation.costs).
@nb.njit(inline="always")
def advance(kind, short_ok, next_open, exact, close, open_, pre, xa, xb, flag, f0, f1, t0, t1, lo, buy_mult,
            sell_mult, rf_bar, edges, st, blk, rets, j, hold, words):
    """Advance one configuration (state row ``st``) over bars ``t0..t1-1``. Inlined into :func:`sweep_kernel`'s
    loop, where ``kind`` and ``short_ok`` are constants, so each (strategy, mode) pair gets its own loops; ``hold``:
    the pass's hold codes, written by the caller (:func:`fill_codes`; :func:`hold_bytes` long) and ``words`` the
    same memory as 64-bit words (a view made by the caller: numba-cuda cannot compile one without a GPU), or both
    empty to scan the runs one bar at a time (:func:`_run_end`).

    Bars alternate between one full step (fills, bust, block edges: the general rules above) and a steady run
    of bars where the position stays as it is. Flat and long runs only scan the signal for the run's end: a
    flat bar returns 0, and a long run's return sums and drawdown come from the tables ``pre``
    (:func:`market_tables`; its returns are the market's, equal to ``eq_t / eq_{t-1} - 1`` up to rounding,
    ~1e-16). With ``exact`` (return series wanted) long bars divide one by one; short runs always do
    (``eq_t / eq_{t-1} - 1``; a bust ends the run). Block sums are differences of the running sums at the
    block edges, so the runs do no block bookkeeping."""
    cash = st[CASH]
    units = st[UNITS]
    pos = int(st[POS])
    pending = int(st[PENDING])
    entry_eq = st[ENTRY]
    eq_prev = st[EQ]
    peak = st[PEAK]
    mdd = st[MDD]
    s1 = st[S1]
    s2 = st[S2]
    sd2 = st[SD2]
    trades = st[TRADES]
    wins = st[WINS]
    gw = st[GW]
    gl = st[GL]
    exposed = 0
    turnover = st[TURNOVER]
    bust = st[BUST] != 0.0
    b = int(st[BLOCK])
    next_edge = int(st[EDGE])
    has_blocks = blk.shape[0] > 0
    want_rets = rets.shape[0] > 0
    if has_blocks:
        blk[b, 0] -= s1
        blk[b, 1] -= s2
    m = t1 - t0
    pa, pb = (xa[t0 - 1], xb[t0 - 1]) if t0 > 0 else (np.nan, np.nan)  # the lines before the pass (CROSS)
    close, open_, xa, xb = close[t0:t1], open_[t0:t1], xa[t0:t1], xb[t0:t1]
    p1, p2, p3 = pre[0, t0:t1 + 1], pre[1, t0:t1 + 1], pre[2, t0:t1 + 1]
    d0 = min(-rf_bar, 0.0)
    use_hold = hold.shape[0] > 0
    i = 0
    while i < m:
        # one full step at bar i
        t = t0 + i
        c = close[i]
        if next_open and pending != pos:
            cash, units, entry_eq, trades, wins, gw, gl = fill_trade(cash, units, pending, open_[i], buy_mult,
                                                                     sell_mult, entry_eq, trades, wins, gw, gl)
            turnover += abs(pending - pos)
            pos = pending
        exposed += units != 0.0
        eq, cash, units, pos, bust, gl, turnover = bust_rule(short_ok, cash + units * c, cash, units, pos, bust,
                                                             entry_eq, gl, turnover)
        if kind == CROSS:
            a0, b0 = (xa[i - 1], xb[i - 1]) if i > 0 else (pa, pb)
            tgt = 0 if bust else cross_target(pos, a0, b0, xa[i], xb[i], short_ok)
        else:
            tgt = 0 if bust else signal_rule(kind, pos, c, xa[i], xb[i], flag, f0, f1, short_ok)
        if next_open:
            pending = tgt
        elif tgt != pos:
            cash, units, entry_eq, trades, wins, gw, gl = fill_trade(cash, units, tgt, c, buy_mult, sell_mult,
                                                                     entry_eq, trades, wins, gw, gl)
            turnover += abs(tgt - pos)
            pos = tgt
            eq = cash + units * c
        r = eq / eq_prev - 1.0 if eq_prev > 0.0 else 0.0
        eq_prev = eq
        if has_blocks:
            while t >= next_edge:
                blk[b, 0] += s1
                blk[b, 1] += s2
                b += 1
                next_edge = edges[b + 1]
                blk[b, 0] -= s1
                blk[b, 1] -= s2
        s1 += r
        s2 += r * r
        d = min(r - rf_bar, 0.0)
        sd2 += d * d
        peak = max(peak, eq)
        if peak - eq > mdd * peak:
            mdd = 1.0 - eq / peak
        if want_rets:
            rets[t - lo, j] = r
        i += 1
        # steady run: no fill due, the signal keeps the position, no block edge
        if pending != pos and next_open:
            continue
        stop = min(m, next_edge - t0)
        if units > 0.0 and not exact:  # long (cash is 0): sums of market returns from the prefix sums
            i0 = i
            if use_hold:
                i = _hold_end(words, 0, i, stop)
            else:
                i = _run_end(kind, 1, close, xa, xb, flag, f0, f1, short_ok, i, stop)
            if i > i0:
                s1 += p1[i] - p1[i0]
                s2 += p2[i] - p2[i0]
                sd2 += p3[i] - p3[i0]
                exposed += i - i0
                eq_prev = units * close[i - 1]
                mx, mn, dd = span_stats(pre, t0 + i0, t0 + i)
                mdd = max(mdd, dd, 1.0 - units * mn / peak)
                peak = max(peak, units * mx)
        elif units != 0.0:  # short, or long with exact returns: a division per bar (long: cash is 0)
            while i < stop:
                c = close[i]
                eq = cash + units * c
                if use_hold:
                    keeps = (hold[i] & (HOLD_LONG if pos == 1 else HOLD_SHORT)) != 0
                else:
                    keeps = _holds(kind, pos, close, xa, xb, i, i - 1, flag, f0, f1, short_ok)
                if eq <= 0.0 or not keeps:
                    break
                r = eq / eq_prev - 1.0
                eq_prev = eq
                s1 += r
                s2 += r * r
                d = min(r - rf_bar, 0.0)
                sd2 += d * d
                peak = max(peak, eq)
                mdd = max(mdd, 1.0 - eq / peak)
                if want_rets:
                    rets[t0 + i - lo, j] = r
                exposed += 1
                i += 1
        elif bust or (cash > 0.0 and pos == 0):  # flat: equity and peak unchanged, return 0
            i0 = i
            if bust:
                i = stop
            elif use_hold:
                i = _hold_end(words, 1, i, stop)
            else:
                i = _run_end(kind, 0, close, xa, xb, flag, f0, f1, short_ok, i, stop)
            sd2 += (i - i0) * (d0 * d0)
            if want_rets:
                rets[t0 + i0 - lo:t0 + i - lo, j] = 0.0
    if has_blocks:
        blk[b, 0] += s1
        blk[b, 1] += s2
    st[CASH] = cash
    st[UNITS] = units
    st[POS] = pos
    st[PENDING] = pending
    st[ENTRY] = entry_eq
    st[EQ] = eq_prev
    st[PEAK] = peak
    st[MDD] = mdd
    st[S1] = s1
    st[S2] = s2
    st[SD2] = sd2
    st[TRADES] = trades
    st[WINS] = wins
    st[GW] = gw
    st[GL] = gl
    st[EXPOSED] += exposed
    st[TURNOVER] = turnover
    st[BUST] = 1.0 if bust else 0.0
    st[BLOCK] = b
    st[EDGE] = next_edge


# ALPHASIGNAL_NUMBA_KERNELS=generic: one kernel for every signal rule and short mode, both passed as arguments, on
# one thread -- one compile (about one rule's) instead of one per rule and mode, slower to run; the fast test tier.
GENERIC = os.environ.get("ALPHASIGNAL_NUMBA_KERNELS", "") == "generic"


def sweep_kernel(kind: int, short_ok: bool) -> Callable[..., None]:
    """The fused kernel of one signal rule (``kind``) and short mode: its own compiled kernel, or with
    :data:`GENERIC` the one kernel that takes both as arguments (same code, same results bit for bit)."""
    return functools.partial(sweep_generic, kind, short_ok) if GENERIC else _rule_kernel(kind, short_ok)


@nb.njit(cache=True, nogil=True)
def sweep_generic(kind, short_ok, close, open_, pre, table, cfg_ints, cfg_floats, next_open, exact, t0, t1, lo,
                  buy_mult, sell_mult, rf_bar, edges, state, blocks, rets, use_hold, threads):
    """:func:`sweep_kernel`'s kernel with the rule and short mode as arguments, configurations one after another
    (no parallel loop: it halves the compile; see :data:`GENERIC`)."""
    k = cfg_ints.shape[0]
    groups = (k + GROUP - 1) // GROUP
    slots = max(min(threads, groups), 1)
    hb = hold_bytes(t1 - t0) if use_hold else 0
    for s in range(slots):
        hold = np.empty(2 * hb, np.uint8)
        words = hold.view(np.uint64)
        for g in range(s, groups, slots):
            j, last = g * GROUP, min(k, g * GROUP + GROUP)
            while j < last:
                pair = pairs(kind) and j + 1 < last and cfg_ints[j, 1] == cfg_ints[j + 1, 1]
                if use_hold:
                    fill_codes(kind, short_ok, close, table, cfg_ints, cfg_floats, t0, t1, j, pair, hold, hb)
                for q in range(j, j + 2 if pair else j + 1):
                    h = (q - j) * hb  # this configuration's codes
                    advance(kind, short_ok, next_open, exact, close, open_, pre, table[cfg_ints[q, 0]],
                            table[cfg_ints[q, 1]], cfg_ints[q, 2], cfg_floats[q, 0], cfg_floats[q, 1], t0, t1, lo,
                            buy_mult, sell_mult, rf_bar, edges, state[q], blocks[q], rets, q, hold[h:h + hb],
                            words[h // 8:(h + hb) // 8])
                j += 2 if pair else 1


@functools.cache
def _rule_kernel(kind: int, short_ok: bool) -> Callable[..., None]:
    """The fused kernel of one signal rule (``kind``) and short mode, compiled on first use (each pair once per
    machine: Numba's disk cache keys on the closure's values, so the closure holds plain constants only -- a
    captured dispatcher pickles differently in every process and would recompile each run)."""

    @nb.njit(parallel=True, cache=True, nogil=True)
    def sweep(close, open_, pre, table, cfg_ints, cfg_floats, next_open, exact, t0, t1, lo, buy_mult, sell_mult,
              rf_bar, edges, state, blocks, rets, use_hold, threads):
        """Advance every configuration (row of ``cfg_ints``/``cfg_floats``/``state``) over bars ``t0..t1-1``; accumulate
        per-block return sums in ``blocks`` (k x S x 2, S = len(edges) - 1) and returns in ``rets`` (bars x k)
        when non-empty. ``pre`` = :func:`market_tables`; ``exact`` makes every bar's return ``eq_t / eq_{t-1} - 1``;
        ``use_hold``: the steady runs' ends from hold codes (:data:`HOLD_CODES`). Configurations run in groups of
        :data:`GROUP`, dealt in turn to ``threads`` tasks (one per thread), each with its own scratch for the codes;
        two neighbours that share their second row get their codes from one pass (:func:`fill_codes`)."""
        k = cfg_ints.shape[0]
        groups = (k + GROUP - 1) // GROUP
        slots = max(min(threads, groups), 1)
        hb = hold_bytes(t1 - t0) if use_hold else 0
        for s in nb.prange(slots):
            hold = np.empty(2 * hb, np.uint8)
            words = hold.view(np.uint64)
            for g in range(s, groups, slots):
                j, last = g * GROUP, min(k, g * GROUP + GROUP)
                while j < last:
                    pair = pairs(kind) and j + 1 < last and cfg_ints[j, 1] == cfg_ints[j + 1, 1]
                    if use_hold:
                        fill_codes(kind, short_ok, close, table, cfg_ints, cfg_floats, t0, t1, j, pair, hold, hb)
                    for q in range(j, j + 2 if pair else j + 1):
                        h = (q - j) * hb  # this configuration's codes
                        advance(kind, short_ok, next_open, exact, close, open_, pre, table[cfg_ints[q, 0]],
                                table[cfg_ints[q, 1]], cfg_ints[q, 2], cfg_floats[q, 0], cfg_floats[q, 1], t0, t1, lo,
                                buy_mult, sell_mult, rf_bar, edges, state[q], blocks[q], rets, q, hold[h:h + hb],
                                words[h // 8:(h + hb) // 8])
                    j += 2 if pair else 1

    return sweep


DD_BLOCK = 32  # bars per block of the drawdown tables
WINDOW_ROW, WINDOW_LEVELS = 12, 5  # rows of the window tables: windows of 1, 2, 4, 8 and 16 bars


@nb.njit(cache=True, nogil=True)
def market_tables(close, rf_bar):
    """Per-series tables (27 x n+1) that let a long run be summed without a per-bar loop.

    Rows 0-2: running sums (leading 0) of the market return ``r_t = close_t / close_{t-1} - 1`` (r_0 = 0), of
    ``r_t**2`` and of ``min(r_t - rf, 0)**2``. Rows 3-11: (max, min, drawdown) of the close over aligned blocks of
    ``DD_BLOCK`` bars -- from the block's start to bar t (rows 3-5), from bar t to the block's end (rows 6-8), and
    the whole block at its first bar (rows 9-11); drawdown = max of ``1 - c_t / max(c_start..t)``. Rows 12-26: the
    same three over the window of ``2**w`` bars from bar t, w = 0..4 (rows ``WINDOW_ROW + 3 * w`` on; set where the
    window ends by bar n): a span within one block is two such windows (:func:`_short_span`)."""
    n = close.shape[0]
    tab = np.zeros((WINDOW_ROW + 3 * WINDOW_LEVELS, n + 1))
    for t in range(n):
        r = close[t] / close[t - 1] - 1.0 if t > 0 else 0.0
        d = min(r - rf_bar, 0.0)
        tab[0, t + 1] = tab[0, t] + r
        tab[1, t + 1] = tab[1, t] + r * r
        tab[2, t + 1] = tab[2, t] + d * d
    for s0 in range(0, n, DD_BLOCK):
        e = min(s0 + DD_BLOCK, n)
        mx, mn, dd = close[s0], close[s0], 0.0
        for t in range(s0, e):
            mx, mn, dd = _join(mx, mn, dd, close[t], close[t], 0.0)
            tab[3, t], tab[4, t], tab[5, t] = mx, mn, dd
        tab[9, s0], tab[10, s0], tab[11, s0] = mx, mn, dd
        mx, mn, dd = close[e - 1], close[e - 1], 0.0
        for t in range(e - 1, s0 - 1, -1):
            mx, mn, dd = _join(close[t], close[t], 0.0, mx, mn, dd)
            tab[6, t], tab[7, t], tab[8, t] = mx, mn, dd
    tab[WINDOW_ROW, :n], tab[WINDOW_ROW + 1, :n] = close, close  # windows of one bar: no drawdown
    for w in range(1, WINDOW_LEVELS):
        r, h = WINDOW_ROW + 3 * w, 1 << (w - 1)  # two windows of h bars each
        for t in range(n - 2 * h + 1):
            tab[r, t], tab[r + 1, t], tab[r + 2, t] = _join(tab[r - 3, t], tab[r - 2, t], tab[r - 1, t],
                                                            tab[r - 3, t + h], tab[r - 2, t + h], tab[r - 1, t + h])
    return tab


@nb.njit(inline="always", cache=True)
def _join(mx, mn, dd, mx2, mn2, dd2):
    """(max, min, drawdown) of a span followed by another span."""
    return max(mx, mx2), min(mn, mn2), max(dd, dd2, 1.0 - mn2 / mx)


@nb.njit(inline="always", cache=True)
def _level(bars):
    """The window level of a span of ``bars`` (1..32): the largest w <= 4 with 2**w <= bars (no branch; int() for
    the GPU's Python twin, where NumPy adds booleans as a logical or)."""
    return int(bars >= 2) + int(bars >= 4) + int(bars >= 8) + int(bars >= 16)


@nb.njit(inline="always", cache=True)
def _short_span(tab, a, e):
    """(max, min, drawdown) of the close over bars ``a..e-1`` (1 to 32 bars) from two windows of 2**w bars, the first
    from ``a``, the last to ``e`` (they overlap or meet), and a drawdown from the first's high ground to the last's
    low ground: the lowest close after the first window over the highest before the last (both windows again), so
    every pair of bars is counted and only in its order -- the same maximum as bar by bar, bit for bit."""
    w = _level(e - a)
    r, size = WINDOW_ROW + 3 * w, 1 << w
    mx = max(tab[r, a], tab[r, e - size])
    mn = min(tab[r + 1, a], tab[r + 1, e - size])
    dd = max(tab[r + 2, a], tab[r + 2, e - size])
    rest = e - a - size  # bars a..e-size-1 lie in the first window only, a+size..e-1 in the last only
    if rest > 0:
        r2, size2 = WINDOW_ROW + 3 * _level(rest), 1 << _level(rest)
        high = max(tab[r2, a], tab[r2, e - size - size2])
        low = min(tab[r2 + 1, a + size], tab[r2 + 1, e - size2])
        dd = max(dd, 1.0 - low / high)
    return mx, mn, dd


@nb.njit(inline="always", cache=True)
def span_stats(tab, a, e):
    """(max, min, drawdown) of the close over bars ``a..e-1`` (a < e) from :func:`market_tables`."""
    ba, be = a // DD_BLOCK, (e - 1) // DD_BLOCK
    if ba == be:  # within one block: two windows
        return _short_span(tab, a, e)
    mx, mn, dd = tab[6, a], tab[7, a], tab[8, a]
    for b in range(ba + 1, be):
        s0 = b * DD_BLOCK
        mx, mn, dd = _join(mx, mn, dd, tab[9, s0], tab[10, s0], tab[11, s0])
    return _join(mx, mn, dd, tab[3, e - 1], tab[4, e - 1], tab[5, e - 1])


class _CompileNotice(event.Listener):
    def __init__(self) -> None:
        self.said = False

    def on_start(self, ev: event.Event) -> None:
        if not self.said:
            self.said = True
            log.warning("compiling the Numba backtest kernel for this strategy and mode (first run on this machine: "
                        "~15 s; cached on disk afterwards)")

    def on_end(self, ev: event.Event) -> None:
        pass


def compile_notice() -> AbstractContextManager[None]:
    """Within it, a Numba compilation (a disk-cache miss; cache loads are silent) is announced once, before the
    wait, so a first run does not look hung."""
    return event.install_listener("numba:compile", _CompileNotice())


def run_numba(kind: int, close: np.ndarray, open_: np.ndarray, table: np.ndarray, cfg_ints: np.ndarray,
              cfg_floats: np.ndarray, *, short_ok: bool, next_open: bool, lo: int, hi: int, buy_mult: float,
              sell_mult: float, rf_bar: float,
              edges: np.ndarray, want_rets: bool, stops: tuple[int, ...] = (), kernel: str = "blocks"
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Run :func:`sweep_kernel` pass by pass over blocks of bars; returns (acc k x NACC, blocks k x S x 2,
    rets bars x k). The accumulation order per configuration is the plain bar order, whatever the blocking.

    With ``stops`` (bars ``lo < s <= hi``, increasing) ``acc`` is instead ``len(stops) x k x NACC``: the
    accumulators as if the run had ended before each stop (open trades marked at that bar's previous close), all
    from one pass -- e.g. the anchored walk-forward training windows ``lo..s-1``. ``kernel``: "blocks" runs one
    configuration at a time (its steady runs ended where the hold codes say: :func:`_fill_holds`), "lanes" groups
    of configurations in SIMD lanes (:mod:`lanes`; "blocks" for a rule they do not fit)."""
    from . import lanes

    k = k_in = cfg_ints.shape[0]
    sweep = sweep_kernel(kind, short_ok)
    if kernel == "lanes" and lanes.lanes_fit(kind):  # the last group padded with copies of the last configuration
        pad = -k % lanes.LANES
        k, cfg_ints, cfg_floats = k + pad, lanes.padded(cfg_ints, pad), lanes.padded(cfg_floats, pad)
        sweep = lanes.lane_kernel(kind, short_ok, table, k)
    n_blocks = max(len(edges) - 1, 0)
    state = initial_state(k, edges, hi)
    blocks = np.zeros((k, n_blocks, 2))
    rets = np.empty((hi - lo, k) if want_rets else (0, 0))
    cuts = sorted({*range(lo, hi, BAR_BLOCK), *stops, hi})
    snaps = []
    threads = nb.get_num_threads()  # an argument: a kernel that asks Numba for it cannot be cached on disk
    with compile_notice():
        pre = market_tables(close, rf_bar)
        for t0, t1 in zip(cuts[:-1], cuts[1:], strict=True):
            sweep(close, open_, pre, table, cfg_ints, cfg_floats, next_open, want_rets, t0, t1, lo, buy_mult,
                  sell_mult, rf_bar, edges, state, blocks, rets, HOLD_CODES, threads)
            if t1 in stops:
                snaps.append(mark_open_trades(state.copy()))
    out = np.stack(snaps) if stops else mark_open_trades(state)
    if k != k_in:  # the padding lanes dropped
        return out[..., :k_in, :], blocks[:k_in], rets[:, :k_in]
    return out, blocks, rets


def initial_state(k: int, edges: np.ndarray, hi: int) -> np.ndarray:
    """The state rows (k x NSTATE) of ``k`` configurations before their first bar: all cash, flat, in the first
    block of ``edges`` (none: ``hi + 1``)."""
    start = np.zeros(NSTATE)
    start[[CASH, ENTRY, EQ, PEAK]] = 1.0
    start[EDGE] = edges[1] if len(edges) > 1 else hi + 1
    state = np.empty((k, NSTATE))
    state[:] = start  # one broadcast pass (column-wise fancy writes cost ~0.4 s per million configurations)
    return state


@nb.njit(cache=True, nogil=True)
def mark_open_trades(state):
    """The accumulators (k x NACC) of ``state``, an open trade counted as won or lost at the last close (compiled: one
    pass over the rows, where NumPy's column expressions took 0.3 ms per 10,948 configurations)."""
    for j in range(state.shape[0]):
        if state[j, UNITS] != 0.0:  # open trade, marked at the last close
            pnl = state[j, EQ] - state[j, ENTRY]
            if pnl > 0.0:
                state[j, WINS] += 1.0
                state[j, GW] += pnl
            elif pnl < 0.0:
                state[j, GL] -= pnl
    return state[:, :NACC]
