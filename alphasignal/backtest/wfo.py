"""Walk-forward optimisation (WFO): for each fold, choose the best configuration of a grid on the fold's training
window by ``sort_by``, trade it on the test window right after, and stitch the test windows' returns.

Folds are :func:`~.validation.fold_windows`: K test windows of ``n // (K + 1)`` bars at the end of the data, each
after a training window of the same length (rolling) or from the first bar (anchored). Every window is a backtest
of its own on the prices up to its last bar only (no later bar can be read): indicators at bar t use bars <= t
(earlier bars warm them up), the position starts flat at the window's first bar, and the bars per year are those of
the whole calendar. A configuration whose warm-up does not fit before a fold's training window ends cannot be chosen
in that fold.

Selection: the highest ``sort_by`` (the lowest for ``max_drawdown``) among configurations whose training metric is
defined; NaN never wins; ties go to the first configuration in grid order. A fold where no configuration has a
defined metric stays flat (zero returns) and reports no parameters.

Costs: one kernel pass over every configuration per training window, one single-configuration pass per test window.

Reported:

* stitched out-of-sample metrics: ``metrics.METRICS`` of the test windows' per-bar returns concatenated in time
  order, as one account (trade counts, wins, exposure and turnover summed over folds; each fold's gross wins and
  losses scaled by the stitched equity at its start; drawdown over the stitched equity curve);
* walk-forward efficiency: stitched out-of-sample CAGR / mean in-sample CAGR of the chosen configurations (NaN when
  that mean is <= 0: the ratio has no meaning without an in-sample gain);
* parameter stability, over the folds that chose: per parameter the number of distinct values, the modal value
  (ties: the one chosen first) and the fraction of folds that chose it; the same for whole configurations.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import numba as nb
import numpy as np
import pandas as pd

from ..config import SweepConfig
from ..errors import UsageError
from ..evaluation.metrics import ACC, METRICS, NACC, finalise_matrix, rf_per_bar
from .engine import Prices, annualisation, as_frames, prepare_prices, simulate
from .strategies import Strategy, StrategyLike, config_at, get_strategy, grid_frame, json_value, split_valid
from .validation import fold_windows
from .xp import Backend, resolve, uses_jit

FIX = "lower --walk-forward (sweep.walk_forward) or use more data"


@dataclass(frozen=True)
class WFOResult:
    """Walk-forward optimisation of one ticker (see the module docstring for every definition)."""

    ticker: str
    strategy: str
    sort_by: str
    anchored: bool
    folds: pd.DataFrame  # one row per fold: windows, candidates, chosen parameters, is_* and oos_* metrics
    returns: pd.Series  # stitched out-of-sample per-bar returns, indexed like the data
    metrics: dict[str, float]  # stitched out-of-sample METRICS
    efficiency: float  # walk-forward efficiency: stitched OOS CAGR / mean IS CAGR of the chosen configurations
    stability: dict[str, Any]  # per parameter {distinct, modal, modal_fraction}; "configuration": the same

    def summary(self) -> dict[str, Any]:
        """JSON-ready: settings, stitched metrics, efficiency, stability and the folds (dates as ISO strings)."""
        folds = self.folds.astype(object).where(self.folds.notna(), None)
        return {"folds": len(self.folds), "anchored": self.anchored, "sort_by": self.sort_by,
                "oos_bars": len(self.returns), "oos_start": str(self.returns.index[0]),
                "oos_end": str(self.returns.index[-1]),
                "stitched_oos": {k: json_value(v) for k, v in self.metrics.items()},
                "efficiency": json_value(self.efficiency), "stability": self.stability,
                "per_fold": [{k: json_value(v) for k, v in row.items()} for row in folds.to_dict("records")]}


def choose(score: np.ndarray, sort_by: str) -> int | None:
    """Index of the best defined score (highest; lowest for ``max_drawdown``), the first on ties; None if all NaN."""
    key = -np.asarray(score, dtype="float64") if sort_by == "max_drawdown" else np.asarray(score, dtype="float64")
    ok = ~np.isnan(key)
    if not ok.any():
        return None
    return int(np.flatnonzero(key == key[ok].max())[0])


def parameter_stability(chosen: pd.DataFrame) -> dict[str, Any]:
    """Per parameter (and ``configuration``, all parameters together): distinct values chosen, the modal value
    (ties: the one chosen first) and the fraction of folds that chose it. ``chosen``: one row per choosing fold."""
    out: dict[str, Any] = {}
    n = len(chosen)
    columns = {k: [json_value(v) for v in chosen[k]] for k in chosen}
    columns["configuration"] = [dict(zip(columns, vals, strict=True)) for vals in zip(*columns.values(), strict=True)]
    for k, vals in columns.items():
        counts = Counter(repr(v) for v in vals)  # insertion order = order chosen: max() keeps the first on ties
        modal = max(counts, key=counts.__getitem__)
        out[k] = {"distinct": len(counts), "modal": vals[[repr(v) for v in vals].index(modal)],
                  "modal_fraction": counts[modal] / n} if n else {"distinct": 0, "modal": None, "modal_fraction": None}
    return out


def _stitched_acc(fold_accs: list[np.ndarray], rets: np.ndarray, bounds: list[int], rf_bar: float) -> np.ndarray:
    """Accumulators (1 x NACC) of the stitched account: return sums and drawdown from ``rets``, trade counts,
    exposure and turnover summed, gross PnL of each fold scaled by the stitched equity at its start."""
    acc = np.zeros((1, NACC))
    eq = np.cumprod(1.0 + rets)
    peak = np.maximum.accumulate(np.concatenate([[1.0], eq]))[1:]
    acc[0, :5] = eq[-1], rets.sum(), (rets * rets).sum(), (np.minimum(rets - rf_bar, 0.0) ** 2).sum(), \
        (1.0 - eq / peak).max()
    at = {name: ACC.index(name) for name in ("trades", "wins", "gross_win", "gross_loss", "exposed", "turnover")}
    for fold_acc, start in zip(fold_accs, bounds, strict=True):
        scale = eq[start - 1] if start else 1.0
        for name, i in at.items():
            acc[0, i] += fold_acc[i] * (scale if name.startswith("gross") else 1.0)
    return acc


def _training_metrics(prices: Prices, strat: Strategy, configs: pd.DataFrame, windows: list[tuple[int, ...]],
                      opts: SweepConfig, backend: Backend, rf_bar: float) -> list[np.ndarray]:
    """Per fold, METRICS x configs over its training window (NaN where the warm-up does not fit): one kernel pass
    per window, or with a fused kernel (numba, cupy) and anchored windows (all starting at bar 0) one pass that records
    every window."""
    warm = np.asarray(strat.warmup(configs))
    ppy, out = opts.periods_per_year, []
    if backend.engine != "numpy" and all(w[0] == 0 for w in windows) and len(windows) > 1:
        his = tuple(w[1] for w in windows)
        fits = np.flatnonzero(warm < his[-1] - 1)
        acc, _, _ = simulate(upto(prices, his[-1]), strat, configs.iloc[fits].reset_index(drop=True), opts, backend,
                             stops=his)
        for hi, acc_f in zip(his, acc, strict=True):
            is_m = np.full((len(METRICS), len(configs)), np.nan)
            with one_thread():
                is_m[:, fits] = finalise_matrix(acc_f, hi, ppy, rf_bar, jit=uses_jit(backend))
            is_m[:, warm >= hi - 1] = np.nan  # not warmed up within this window: not a candidate
            out.append(is_m)
        return out
    for a, b, _, _ in windows:
        fits = np.flatnonzero(warm < b - 1)
        acc, _, _ = simulate(upto(prices, b), strat, configs.iloc[fits].reset_index(drop=True), opts, backend, lo=a)
        is_m = np.full((len(METRICS), len(configs)), np.nan)
        with one_thread():
            is_m[:, fits] = finalise_matrix(acc, b - a, ppy, rf_bar, jit=uses_jit(backend))
        out.append(is_m)
    return out


@contextmanager
def one_thread() -> Iterator[None]:
    """Numba's parallel loops on the calling thread only, for small work (one configuration, metric finalising): a
    parallel launch that wakes the other threads costs ~10-20 ms on busy shared cores, the work itself < 1 ms."""
    before = nb.get_num_threads()
    nb.set_num_threads(1)
    try:
        yield
    finally:
        nb.set_num_threads(before)


def upto(prices: Prices, hi: int) -> Prices:
    """Bars ``0..hi-1`` only: a window simulated on them cannot read a later bar (indicators are causal, so their
    values up to ``hi`` are those of the full series)."""
    return Prices(prices.ticker, prices.index[:hi], prices.open[:hi], prices.high[:hi], prices.low[:hi],
                  prices.close[:hi])


def _fold_row(f: int, window: tuple[int, int, int, int], prices: Prices) -> dict[str, Any]:
    a, b, c, d = window
    return {"fold": f, "train_start": prices.index[a], "train_end": prices.index[b - 1], "test_start": prices.index[c],
            "test_end": prices.index[d - 1], "train_bars": b - a, "test_bars": d - c}


def wfo_windows(prices: Prices, strat: Strategy, configs: pd.DataFrame, sort_by: str, folds: int, anchored: bool
                ) -> list[tuple[int, int, int, int]]:
    """The folds' (train_lo, train_hi, test_lo, test_hi), after checking that WFO can run (UsageError if not):
    ``sort_by`` a metric, >= 2 folds of >= 3 bars, and a configuration that warms up in the first training window."""
    if sort_by not in METRICS:
        raise UsageError(f"sweep.sort_by={sort_by!r} is not a metric: use one of {', '.join(METRICS)}")
    if folds < 2:
        raise UsageError(f"walk-forward optimisation needs >= 2 folds (got {folds}): set --walk-forward 2 or more")
    windows = fold_windows(prices.n, folds, anchored=anchored, what=prices.ticker, fix=FIX)
    a, b = windows[0][:2]
    if not (np.asarray(strat.warmup(configs)) < b - 1).any():
        raise UsageError(f"{prices.ticker}: no configuration warms up within the first training window (bars "
                         f"{a}..{b - 1}): {FIX}")
    return windows


def run_wfo(prices: Prices, strat: Strategy, configs: pd.DataFrame, opts: SweepConfig, backend: Backend,
            folds: int, anchored: bool) -> WFOResult:
    """Walk-forward optimisation of valid configurations (a frame, grid order) over one ticker's prices."""
    windows = wfo_windows(prices, strat, configs, opts.sort_by, folds, anchored)
    ppy = annualisation(prices, opts)
    rf_bar = rf_per_bar(opts.risk_free, ppy)
    opts = replace(opts, periods_per_year=ppy)  # the whole calendar's bars per year, in every window
    is_cols = list(dict.fromkeys([opts.sort_by, "cagr", "sharpe"]))
    rows, accs, rets, chosen = [], [], [], []
    for f, ((a, b, c, d), is_m) in enumerate(zip(windows, _training_metrics(prices, strat, configs, windows, opts,
                                                                            backend, rf_bar), strict=True)):
        pick = choose(is_m[METRICS.index(opts.sort_by)], opts.sort_by)
        row = _fold_row(f, (a, b, c, d), prices)
        row["candidates"] = int((~np.isnan(is_m[METRICS.index(opts.sort_by)])).sum())
        if pick is None:
            acc, r = np.zeros((1, NACC)), np.zeros(d - c)
            acc[0, 0] = 1.0
            row.update(dict.fromkeys(strat.specs))
            row.update({f"is_{m}": np.nan for m in is_cols})
        else:
            with one_thread():
                acc, _, r2 = simulate(upto(prices, d), strat, configs.iloc[[pick]].reset_index(drop=True), opts,
                                      backend, lo=c, want_rets=True)
            r = r2[:, 0]
            row.update(config_at(configs, pick))
            row.update({f"is_{m}": is_m[METRICS.index(m), pick] for m in is_cols})
            chosen.append(config_at(configs, pick))
        rows.append(row)
        accs.append(acc[0])
        rets.append(r)
    r_all = np.concatenate(rets)
    bounds = list(np.cumsum([0] + [len(r) for r in rets[:-1]]))
    jit = uses_jit(backend)
    with one_thread():
        stitched = finalise_matrix(_stitched_acc(accs, r_all, bounds, rf_bar), len(r_all), ppy, rf_bar, jit=jit)[:, 0]
        oos = finalise_matrix(np.array(accs), windows[0][3] - windows[0][2], ppy, rf_bar, jit=jit)  # equal windows
    metrics = dict(zip(METRICS, (float(v) for v in stitched), strict=True))
    frame = pd.DataFrame(rows)
    frame = frame.assign(**{f"oos_{m}": v for m, v in zip(METRICS, oos, strict=True)}).astype({"oos_trades": "int64"})
    metrics["trades"] = int(metrics["trades"])
    is_cagr = frame["is_cagr"].dropna()
    mean_is = float(is_cagr.mean()) if len(is_cagr) else np.nan
    wfe = metrics["cagr"] / mean_is if mean_is > 0 else np.nan
    return WFOResult(prices.ticker, strat.name, opts.sort_by, anchored, frame,
                     pd.Series(r_all, index=prices.index[windows[0][2]:windows[-1][3]], name="oos_return"),
                     metrics, float(wfe), parameter_stability(pd.DataFrame(chosen, columns=list(strat.specs))))


def walk_forward_optimize(data: pd.DataFrame | Mapping[str, pd.DataFrame], strategy: StrategyLike,
                          grid: Mapping[str, Any] | list[Mapping[str, Any]], *, options: SweepConfig | None = None,
                          folds: int | None = None, anchored: bool | None = None) -> WFOResult:
    """Walk-forward optimisation of ``grid`` (as in :func:`~.sweep.run_sweep`) over one price frame (or a one-ticker
    mapping): ``folds``/``anchored`` default to ``options.walk_forward``/``options.anchored``; selection by
    ``options.sort_by``. Configurations invalid on the whole data are left out, as in a sweep."""
    opts = options or SweepConfig()
    k = opts.walk_forward if folds is None else folds
    frames = as_frames(data)
    if len(frames) != 1:
        raise UsageError(f"walk_forward_optimize takes one price frame (got {len(frames)}): call it per ticker")
    (ticker, df), = frames.items()
    strat = get_strategy(strategy)
    prices = prepare_prices(df, ticker, strat.needs)
    valid, bad = split_valid(strat, grid_frame(strat, grid), prices.n)
    if valid.empty:
        raise UsageError(f"{ticker}: none of the {len(bad)} {strat.name} configurations is valid ({bad[0][1]}): "
                         "fix the grid or use more data")
    return run_wfo(prices, strat, valid, opts, resolve(opts.device, opts.engine), k,
                   opts.anchored if anchored is None else anchored)
