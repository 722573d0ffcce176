"""Array-module engines (NumPy reference/fallback, CuPy's position step): positions for many configurations at
once (each configuration a column), then a portfolio pass vectorised across configurations.

Applies the rules of ``kernels.py`` bar by bar (the Numba kernel's fills, costs, bust rule and accumulators;
the kernel sums steady runs from tables instead): the tests hold every engine to the reference loop at 1e-9.
"""

from __future__ import annotations

from types import ModuleType

import numpy as np

from .strategies import CROSS, POSITIONS, Strategy, positions_step


def _target(xp: ModuleType, step, pos, c, x0, x1, flag, f0, f1, short_ok: bool):
    """A strategy's vectorised ``step`` over configurations (int8 arrays), flat where an indicator is NaN."""
    nan = xp.isnan(x0) | xp.isnan(x1)
    out = step(xp, pos, c, x0, x1, flag, f0, f1, xp.int8(-1) if short_ok else xp.int8(0))
    return xp.where(nan, xp.int8(0), out).astype(xp.int8)


def _cross(xp: ModuleType, pos, a0, b0, a1, b1, short_ok: bool):
    """Vectorised ``kernels.cross_target``: lines at t-1 (``a0``, ``b0``) and t; no event keeps ``pos``."""
    neg = xp.int8(-1) if short_ok else xp.int8(0)
    return xp.where((a0 < b0) & (a1 > b1), xp.int8(1), xp.where((a0 > b0) & (a1 < b1), neg, pos)).astype(xp.int8)


def positions(xp: ModuleType, strat: Strategy, rule: int, close, table, cfg_ints, cfg_floats, *, short_ok: bool,
              lo: int, hi: int):
    """Target position (-1/0/1) decided at each close ``lo..hi-1`` for every configuration: (bars x configs) int8,
    by ``strat``'s rule (``rule``: ``strat.kernel_rule(entry)``; POSITIONS reads ``table``'s rows as positions).

    Bars before ``lo`` only feed the indicators; the strategy state starts flat at ``lo``.
    """
    r0, r1, flag = cfg_ints[:, 0], cfg_ints[:, 1], cfg_ints[:, 2]
    f0, f1 = cfg_floats[:, 0], cfg_floats[:, 1]
    k, m = cfg_ints.shape[0], hi - lo
    if rule == POSITIONS or (strat.stateless and rule != CROSS):  # stateless: one 2-D comparison
        x0, x1 = table[r0, lo:hi].T, table[r1, lo:hi].T
        step = positions_step if rule == POSITIONS else strat.step
        return _target(xp, step, None, None, x0, x1, None, None, None, short_ok)
    out = xp.empty((m, k), dtype=xp.int8)
    pos = xp.zeros(k, dtype=xp.int8)
    if rule == CROSS:  # events compare each bar with the one before (which may precede lo); none before bar 1
        for t in range(lo, hi):
            if t > 0:
                pos = _cross(xp, pos, table[r0, t - 1], table[r1, t - 1], table[r0, t], table[r1, t], short_ok)
            out[t - lo] = pos
        return out
    for t in range(lo, hi):
        pos = _target(xp, strat.step, pos, close[t], table[r0, t], table[r1, t], flag, f0, f1, short_ok)
        out[t - lo] = pos
    return out


def portfolio(xp: ModuleType, pos_matrix, close, open_, *, next_open: bool, lo: int, hi: int, buy_mult: float,
              sell_mult: float,
              rf_bar: float, edges: np.ndarray, want_rets: bool):
    """Fills, equity and metric accumulators for a (bars x configs) target matrix; see ``kernels`` for the rules."""
    k = pos_matrix.shape[1]
    z = lambda: xp.zeros(k)  # noqa: E731
    cash, units, entry_eq, eq_prev, peak = xp.ones(k), z(), xp.ones(k), xp.ones(k), xp.ones(k)
    mdd, s1, s2, sd2, trades, wins, gw, gl, exposed, turnover = (z() for _ in range(10))
    pos, pending = xp.zeros(k, dtype=xp.int8), xp.zeros(k, dtype=xp.int8)
    bust = xp.zeros(k, dtype=bool)
    n_blocks = len(edges) - 1
    blocks = xp.zeros((k, max(n_blocks, 0), 2))
    rets = xp.empty((hi - lo, k) if want_rets else (0, 0))
    b = 0

    def fill(tgt, price, cash, units, entry_eq, trades, wins, gw, gl):
        trade = tgt != pos
        closing = trade & (units != 0)
        cash = xp.where(closing & (units > 0), cash + units * price * sell_mult, cash)
        cash = xp.where(closing & (units < 0), cash - -units * price * buy_mult, cash)
        pnl = cash - entry_eq
        wins = wins + (closing & (pnl > 0))
        gw = gw + xp.where(closing & (pnl > 0), pnl, 0.0)
        gl = gl - xp.where(closing & (pnl < 0), pnl, 0.0)
        units = xp.where(trade, 0.0, units)
        enter = trade & (tgt != 0) & (cash > 0)
        entry_eq = xp.where(enter, cash, entry_eq)
        with np.errstate(divide="ignore", invalid="ignore"):
            q = cash / (price * buy_mult)
        units = xp.where(enter, xp.where(tgt > 0, q, -q), units)
        cash = xp.where(enter & (tgt > 0), 0.0, xp.where(enter & (tgt < 0), cash + q * price * sell_mult, cash))
        return cash, units, entry_eq, trades + enter, wins, gw, gl

    for t in range(lo, hi):
        c = close[t]
        if next_open:
            cash, units, entry_eq, trades, wins, gw, gl = fill(pending, open_[t], cash, units, entry_eq, trades,
                                                               wins, gw, gl)
            turnover = turnover + xp.abs(pending.astype(xp.float64) - pos)
            pos = pending
        exposed = exposed + (units != 0)
        eq = cash + units * c
        newly = (eq <= 0) & ~bust
        gl = gl + xp.where(newly & (units != 0), entry_eq, 0.0)
        turnover = turnover + xp.where(newly, xp.abs(pos.astype(xp.float64)), 0.0)
        eq, cash, units = (xp.where(newly, 0.0, a) for a in (eq, cash, units))
        pos = xp.where(newly, xp.int8(0), pos)
        bust = bust | newly
        tgt = xp.where(bust, xp.int8(0), pos_matrix[t - lo])
        if next_open:
            pending = tgt
        else:
            cash, units, entry_eq, trades, wins, gw, gl = fill(tgt, c, cash, units, entry_eq, trades, wins, gw, gl)
            turnover = turnover + xp.abs(tgt.astype(xp.float64) - pos)
            pos = tgt
            eq = cash + units * c
        with np.errstate(divide="ignore", invalid="ignore"):
            r = xp.where(eq_prev > 0, eq / eq_prev - 1.0, 0.0)
        eq_prev = eq
        s1, s2 = s1 + r, s2 + r * r
        d = xp.minimum(r - rf_bar, 0.0)
        sd2 = sd2 + d * d
        peak = xp.maximum(peak, eq)
        with np.errstate(divide="ignore", invalid="ignore"):
            mdd = xp.where(peak - eq > mdd * peak, 1.0 - eq / peak, mdd)
        if n_blocks > 0:
            while t >= edges[b + 1]:
                b += 1
            blocks[:, b, 0] += r
            blocks[:, b, 1] += r * r
        if want_rets:
            rets[t - lo] = r
    pnl = eq_prev - entry_eq
    open_tr = units != 0
    wins = wins + (open_tr & (pnl > 0))
    gw = gw + xp.where(open_tr & (pnl > 0), pnl, 0.0)
    gl = gl - xp.where(open_tr & (pnl < 0), pnl, 0.0)
    acc = xp.stack([eq_prev, s1, s2, sd2, mdd, trades, wins, gw, gl, exposed, turnover], axis=1)
    return acc, blocks, rets
