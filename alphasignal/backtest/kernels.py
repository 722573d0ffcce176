"""Fused per-configuration kernels: signal -> fills -> equity -> metric accumulators in one pass over the bars.

Execution conventions (identical in every engine and in the tests' reference loop):

* the signal of bar t uses data up to the close of t; the resulting trade fills at the close of t
  (``fill="close"``) or the open of t+1 (``fill="next_open"``), so the position earns from bar t+1 on;
* every entry commits the whole equity: ``shares = equity / (price * (1 + slippage) * (1 + fee))``;
  selling receives ``price * (1 - slippage) * (1 - fee)`` per share (shorts: the same sizing, sold short);
* bars where an indicator is still NaN (warm-up) are flat; equity is marked at every close and the bar
  return is ``equity_t / equity_{t-1} - 1``; a short whose equity reaches 0 is closed and stays flat.

Accumulators per configuration (columns of ``out``) are turned into metrics by ``metrics.finalise``.
"""

from __future__ import annotations

import numba as nb
import numpy as np

ACC = ("final_equity", "sum_r", "sum_r2", "sum_down2", "max_dd", "trades", "wins", "gross_win", "gross_loss",
       "exposed", "turnover")
NACC = len(ACC)


@nb.njit(inline="always", cache=True)
def target_position(kind, pos, c, x0, x1, flag, f0, f1, short_ok):
    """Desired position (-1, 0, 1) at a bar's close from indicator values ``x0``/``x1`` and the current ``pos``."""
    if np.isnan(x0) or np.isnan(x1):
        return 0
    if kind == 0 or kind == 3:  # MA crossover (short vs long MA), MACD (line vs signal)
        if x0 > x1:
            return 1
        if short_ok and x0 < x1:
            return -1
        return 0
    if kind == 1:  # Bollinger: x0 = middle band, x1 = std
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
    if kind == 2:  # RSI reversion: x0 = RSI, f0 = lower, f1 = upper
        if x0 < f0:
            return 1
        if x0 > f1:
            return -1 if short_ok else 0
        return pos
    # kind == 4, Donchian: x0 = previous highest high, x1 = previous lowest low
    if c > x0:
        return 1
    if c < x1:
        return -1 if short_ok else 0
    return pos


@nb.njit(inline="always", cache=True)
def _fill(cash, units, tgt, price, kb, ks, entry_eq, acc_trades, acc_wins, gw, gl):
    """Close the current position (if any) and open ``tgt``; returns the updated state."""
    if units != 0.0:
        if units > 0.0:
            cash += units * price * ks
        else:
            cash -= -units * price * kb
        units = 0.0
        pnl = cash - entry_eq
        if pnl > 0.0:
            acc_wins += 1.0
            gw += pnl
        elif pnl < 0.0:
            gl -= pnl
    if tgt != 0 and cash > 0.0:
        entry_eq = cash
        q = cash / (price * kb)
        if tgt > 0:
            units = q
            cash = 0.0
        else:
            units = -q
            cash += q * price * ks
        acc_trades += 1.0
    return cash, units, entry_eq, acc_trades, acc_wins, gw, gl


@nb.njit(parallel=True, cache=True, nogil=True)
def sweep_kernel(kind, close, open_, table, ia, fa, short_ok, next_open, lo, hi, kb, ks, rf_bar,
                 edges, out, blocks, rets):
    """Run every configuration (row of ``ia``/``fa``) over bars ``lo..hi-1``; fill ``out`` (k x NACC),
    per-block return sums ``blocks`` (k x S x 2, S = len(edges) - 1) and ``rets`` (bars x k) when non-empty."""
    k = ia.shape[0]
    n_blocks = edges.shape[0] - 1
    want_rets = rets.shape[0] > 0
    for j in nb.prange(k):
        r0 = ia[j, 0]
        r1 = ia[j, 1]
        flag = ia[j, 2]
        f0 = fa[j, 0]
        f1 = fa[j, 1]
        cash = 1.0
        units = 0.0
        pos = 0
        pending = 0
        entry_eq = 1.0
        eq_prev = 1.0
        peak = 1.0
        mdd = 0.0
        s1 = 0.0
        s2 = 0.0
        sd2 = 0.0
        trades = 0.0
        wins = 0.0
        gw = 0.0
        gl = 0.0
        exposed = 0.0
        turnover = 0.0
        bust = False
        b = 0
        next_edge = edges[1] if n_blocks > 0 else hi + 1
        for t in range(lo, hi):
            c = close[t]
            if next_open and pending != pos:
                cash, units, entry_eq, trades, wins, gw, gl = _fill(cash, units, pending, open_[t], kb, ks,
                                                                    entry_eq, trades, wins, gw, gl)
                turnover += abs(pending - pos)
                pos = pending
            exposed += units != 0.0
            eq = cash + units * c
            if eq <= 0.0 and not bust:  # a short lost everything: closed, flat from here on
                if units != 0.0:
                    gl += entry_eq
                turnover += abs(pos)
                eq = 0.0
                cash = 0.0
                units = 0.0
                pos = 0
                bust = True
            tgt = 0 if bust else target_position(kind, pos, c, table[r0, t], table[r1, t], flag, f0, f1, short_ok)
            if next_open:
                pending = tgt
            elif tgt != pos:
                cash, units, entry_eq, trades, wins, gw, gl = _fill(cash, units, tgt, c, kb, ks,
                                                                    entry_eq, trades, wins, gw, gl)
                turnover += abs(tgt - pos)
                pos = tgt
                eq = cash + units * c
            r = eq / eq_prev - 1.0 if eq_prev > 0.0 else 0.0
            eq_prev = eq
            s1 += r
            s2 += r * r
            d = min(r - rf_bar, 0.0)  # branch-free: the sign of a return is unpredictable
            sd2 += d * d
            peak = max(peak, eq)
            if peak - eq > mdd * peak:
                mdd = 1.0 - eq / peak
            if n_blocks > 0:
                while t >= next_edge:
                    b += 1
                    next_edge = edges[b + 1]
                blocks[j, b, 0] += r
                blocks[j, b, 1] += r * r
            if want_rets:
                rets[t - lo, j] = r
        if units != 0.0:  # open trade: marked at the last close, no exit cost
            pnl = eq_prev - entry_eq
            if pnl > 0.0:
                wins += 1.0
                gw += pnl
            elif pnl < 0.0:
                gl -= pnl
        out[j, 0] = eq_prev
        out[j, 1] = s1
        out[j, 2] = s2
        out[j, 3] = sd2
        out[j, 4] = mdd
        out[j, 5] = trades
        out[j, 6] = wins
        out[j, 7] = gw
        out[j, 8] = gl
        out[j, 9] = exposed
        out[j, 10] = turnover


def run_numba(kind: int, close: np.ndarray, open_: np.ndarray, table: np.ndarray, ia: np.ndarray, fa: np.ndarray,
              *, short_ok: bool, next_open: bool, lo: int, hi: int, kb: float, ks: float, rf_bar: float,
              edges: np.ndarray, want_rets: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Allocate outputs and call :func:`sweep_kernel`; returns (acc k x NACC, blocks k x S x 2, rets bars x k)."""
    k = ia.shape[0]
    out = np.empty((k, NACC))
    blocks = np.zeros((k, max(len(edges) - 1, 0), 2))
    rets = np.empty((hi - lo, k) if want_rets else (0, 0))
    sweep_kernel(kind, close, open_, table, ia, fa, short_ok, next_open, lo, hi, kb, ks, rf_bar,
                 edges, out, blocks, rets)
    return out, blocks, rets
