"""The bridge to the stage 05 engine: in-sample sweep, in/out-of-sample backtests, return matrices, DSR and PBO.

The data is split once, in time order; the sweep and everything the agents see use the in-sample part only. The
out-of-sample objective is the hold-out part (``oos_method=holdout``) or the mean over walk-forward test folds.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..backtest.metrics import METRICS


def _bt():
    from .. import backtest

    return backtest


def data_hash(data: pd.DataFrame) -> str:
    """Short sha256 of the OHLCV values and dates (recorded with each run; a resume must match it)."""
    h = hashlib.sha256(pd.util.hash_pandas_object(data, index=True).to_numpy().tobytes())
    return h.hexdigest()[:12]


def _row_metrics(row: Mapping[str, Any]) -> dict[str, float]:
    return {k: float(row[k]) for k in METRICS if k in row}


class Evaluator:
    """Runs backtests of one strategy on a fixed time-ordered split.

    In-sample = bars before the split; out-of-sample backtests run on the full frame with the evaluation window
    starting at the split, so indicators warm up on earlier bars and nothing after a bar is used for it.
    """

    def __init__(self, data: pd.DataFrame, strategy: str, sweep_cfg: Any, *, test_fraction: float,
                 oos_method: str = "holdout", folds: int = 4):
        self.strategy, self.options, self.oos_method, self.folds = strategy, sweep_cfg, oos_method, folds
        self.data = data
        train, _ = _bt().split_train_test(data, test_fraction)
        self.split = len(train)
        self.train, self.test = data.iloc[: self.split], data.iloc[self.split:]
        n_test = len(data) - self.split
        edges = np.linspace(self.split, len(data), folds + 1).round().astype(int)
        self.windows = [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:], strict=True)] \
            if oos_method == "walk_forward" and n_test >= 3 * folds else [(self.split, len(data))]

    def sweep(self, grid: Mapping[str, Sequence[Any]]) -> pd.DataFrame:
        """The in-sample sweep: one row per valid grid configuration, parameter and metric columns."""
        df = _bt().run_sweep(self.train, self.strategy, dict(grid), options=self.options, progress=False)
        return df.reset_index(drop=True)

    def evaluate(self, params_list: Sequence[Mapping[str, Any]]) -> list[tuple[dict[str, float], dict[str, float]]]:
        """(in-sample metrics, out-of-sample metrics) for each configuration, in order. With walk-forward, the
        out-of-sample metrics are means over consecutive windows of the out-of-sample part."""
        if not params_list:
            return []
        plist = [dict(p) for p in params_list]
        bt = _bt()
        ins = bt.backtest(self.train, self.strategy, plist, options=self.options)
        folds = [bt.backtest(self.data, self.strategy, plist, options=self.options, start=a, end=b)
                 for a, b in self.windows]
        out = []
        for i in range(len(plist)):
            m_is = _row_metrics(ins.iloc[i])
            per = [_row_metrics(f.iloc[i]) for f in folds]
            m_oos = per[0] if len(per) == 1 else {k: float(np.nanmean([p[k] for p in per])) for k in per[0]}
            out.append((m_is, m_oos))
        return out

    def returns(self, params_list: Sequence[Mapping[str, Any]], part: str = "full") -> np.ndarray:
        """Per-bar strategy returns, shape (bars, configs), over ``full``, ``is`` or ``oos`` bars."""
        start, end = {"full": (None, None), "is": (None, self.split), "oos": (self.split, None)}[part]
        m = _bt().returns_matrix(self.data, self.strategy, [dict(p) for p in params_list], options=self.options,
                                 start=start, end=end)
        return np.asarray(m, dtype=float)

    def equity(self, params: Mapping[str, Any]) -> pd.Series:
        """Equity curve (start 1.0) of one configuration over the full period, for the plot."""
        r = self.returns([params], "full")[:, 0]
        return pd.Series(np.cumprod(1 + np.nan_to_num(r)), index=self.data.index[-len(r):])

    def dsr(self, winner: Mapping[str, Any], trials: Sequence[Mapping[str, Any]]) -> float:
        """Deflated Sharpe Ratio of the winner's out-of-sample returns, deflated by the number of configurations
        tried and the spread of their out-of-sample per-bar Sharpe ratios."""
        from ..backtest.validation import dsr_of_best

        r = self.returns([winner, *trials], "oos")
        with np.errstate(divide="ignore", invalid="ignore"):
            sharpes = r[:, 1:].mean(axis=0) / r[:, 1:].std(axis=0, ddof=1)
        return float(dsr_of_best(r[:, 0], sharpes)["dsr"])

    def pbo(self, params_list: Sequence[Mapping[str, Any]]) -> float:
        """Probability of backtest overfitting (CSCV) over every configuration tried, on the full period."""
        if len(params_list) < 2:
            return float("nan")
        return float(_bt().probability_of_backtest_overfitting(self.returns(params_list, "full")).pbo)


def objective_of(metrics: Mapping[str, float], objective: str) -> float:
    """The objective value, with NaN (no trades, flat equity) read as -inf so it never wins."""
    v = float(metrics.get(objective, float("nan")))
    return v if np.isfinite(v) else float("-inf")
