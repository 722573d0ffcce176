"""The bridge to the stage 05 engine: three time-ordered segments, backtests on each, return matrices, DSR, PBO.

The bars are split once, in time order, into **exploration** (the first ``1 - sweep.test_fraction`` of the bars
before the hold-out: the sweep and every metric an agent or comparator sees), **selection** (the rest of those
bars: chooses each round's baseline and each optimizer's winner; with ``oos_method=walk_forward`` its objective is
the mean over ``folds`` consecutive windows of it) and, after an embargo of ``optimizer.holdout_embargo`` bars, the
final **hold-out** (the last ``optimizer.holdout_fraction`` of the bars). Exploration and selection backtests run
on a frame that ends before the embargo, so nothing can read a hold-out bar; :meth:`Evaluator.holdout` scores
winners on it once, at the end of a run. In stored records ``metrics_is`` are exploration metrics and
``metrics_oos`` selection metrics.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from ..backtest.distributed import Executor
from ..config import Config, SweepConfig
from ..errors import UsageError
from ..evaluation.metrics import METRICS, periods_per_year, rf_per_bar


def _bt():
    from .. import backtest

    return backtest


def _task(frame: pd.DataFrame, job: tuple[str, Any, list[dict[str, Any]], Any, Any, Any]) -> pd.DataFrame:
    """One cluster task: stage 05's ``run_sweep``, ``backtest`` or ``returns_matrix`` on a block of configurations
    (each configuration's figures depend on it alone, so a block gives the rows the whole call would)."""
    fn, strategy, plist, options, start, end = job
    if fn == "run_sweep":
        return _bt().run_sweep(frame, strategy, plist, options=options, progress=False)
    return getattr(_bt(), fn)(frame, strategy, plist, options=options, start=start, end=end)


def _wfo_task(frame: pd.DataFrame, job: tuple[Any, list[dict[str, Any]], Any, int]) -> Any:
    """One cluster task: stage 05's walk-forward optimisation of a candidate list (rolling folds)."""
    strategy, plist, options, folds = job
    return _bt().walk_forward_optimize(frame, strategy, plist, options=options, folds=folds, anchored=False)


def data_hash(data: pd.DataFrame) -> str:
    """Short sha256 of the OHLCV values and dates (recorded with each run; a resume must match it)."""
    h = hashlib.sha256(pd.util.hash_pandas_object(data, index=True).to_numpy().tobytes())
    return h.hexdigest()[:12]


def _row_metrics(row: Mapping[str, Any]) -> dict[str, float]:
    return {k: float(row[k]) for k in METRICS if k in row}


@dataclass(frozen=True)
class Segments:
    """Bar positions ``[start, end)`` of the three segments (the embargo lies between selection and hold-out)."""

    bars: int
    exploration: tuple[int, int]
    selection: tuple[int, int]
    holdout: tuple[int, int]
    embargo: int

    @classmethod
    def of(cls, n: int, test_fraction: float, holdout_fraction: float, embargo: int) -> Segments:
        """Split ``n`` bars; too few bars in any segment is a usage error naming the setting to change."""
        ho = int(round(n * holdout_fraction))
        dev_end = n - ho - embargo
        if ho < 3 or dev_end < 6:
            raise UsageError(f"optimizer.holdout_fraction={holdout_fraction} with optimizer.holdout_embargo={embargo}"
                             f" leaves {ho} hold-out and {max(dev_end, 0)} other bars of {n}: change them")
        from ..backtest.validation import split_point

        cut = split_point(dev_end, test_fraction)
        return cls(n, (0, cut), (cut, dev_end), (n - ho, n), embargo)

    def to_dict(self, index: pd.Index | None = None) -> dict[str, Any]:
        """Plain data for the history; with ``index`` also each segment's first and last date."""
        d: dict[str, Any] = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}
        if index is not None:
            d["dates"] = {k: [str(index[a].date()), str(index[b - 1].date())]
                          for k, (a, b) in (("exploration", self.exploration), ("selection", self.selection),
                                            ("holdout", self.holdout))}
        return d


class Evaluator:
    """Runs backtests of one strategy on the fixed :class:`Segments` of ``data``.

    Selection (and hold-out) backtests start their evaluation window at the segment's first bar, so indicators
    warm up on earlier bars, nothing after a bar is used for it, and each window starts flat.
    """

    def __init__(self, data: pd.DataFrame, strategy: Any, sweep_cfg: SweepConfig, *, test_fraction: float,
                 oos_method: str = "holdout", folds: int = 4, holdout_fraction: float = 0.2, embargo: int = 5,
                 executor: Executor | None = None):
        self.strategy, self.options, self.oos_method, self.folds = strategy, sweep_cfg, oos_method, folds
        # a Dask cluster (stage 05's seam) runs the backtests in blocks; None (or an in-process Executor): here
        self.executor = executor if executor is not None and executor.client is not None else None
        self.data = data
        self.seg = Segments.of(len(data), test_fraction, holdout_fraction, embargo)
        self.split, dev_end = self.seg.selection
        self.dev = data.iloc[:dev_end]  # everything before the embargo: all that exploration and selection read
        self.train = self.dev.iloc[: self.split]
        edges = np.linspace(self.split, dev_end, folds + 1).round().astype(int)
        self.windows = [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:], strict=True)] \
            if oos_method == "walk_forward" and dev_end - self.split >= 3 * folds else [(self.split, dev_end)]
        self.holdout_calls = 0

    @classmethod
    def from_config(cls, data: pd.DataFrame, cfg: Config, executor: Executor | None = None) -> Evaluator:
        """The evaluator of a stage 06 run: ``cfg.optimizer`` strategy (an object: built-in, or loaded from
        ``optimizer.strategy_file``), segments and objective method; its backtests run on ``executor`` (a cluster,
        see ``sweep.cluster``) when given."""
        from ..backtest.user_strategy import load_strategy

        optimizer = cfg.optimizer
        strat = load_strategy(optimizer.strategy, optimizer.strategy_file, cfg.sweep.user_code_timeout_s)
        return cls(data, strat, cfg.sweep, test_fraction=cfg.sweep.test_fraction, oos_method=optimizer.oos_method,
                   folds=optimizer.folds, holdout_fraction=optimizer.holdout_fraction,
                   embargo=optimizer.holdout_embargo, executor=executor)

    def _run(self, fn: str, part: str, plist: list[dict[str, Any]], start: Any = None, end: Any = None
             ) -> pd.DataFrame:
        """``fn`` (run_sweep | backtest | returns_matrix) of ``plist`` on ``part`` (train | dev | data): in-process,
        or on the cluster in blocks of configurations (two per worker), put back together in order."""
        frames = {"train": self.train, "dev": self.dev, "data": self.data}
        ex = self.executor
        if ex is None:
            return _task(frames[part], (fn, self.strategy, plist, self.options, start, end))
        blocks = np.array_split(np.arange(len(plist)), min(len(plist), 2 * ex.workers))
        chunks = [(part, (fn, self.strategy, [plist[i] for i in b], self.options, start, end)) for b in blocks]
        parts = list(ex.map_chunks(_task, chunks, {part: frames[part]}))
        if fn == "returns_matrix":
            out = pd.concat(parts, axis=1)
            out.columns = range(out.shape[1])
            return out
        return pd.concat(parts, ignore_index=True)

    def walk_forward(self, plist: list[dict[str, Any]], objective: str) -> Any:
        """Stage 05's walk-forward optimisation (``WFOResult``) of ``plist`` on the exploration and selection bars,
        picking by ``objective``: in-process, or as one task on the cluster (its folds depend on each other's
        windows only through the data, which travels once)."""
        job = (self.strategy, plist, replace(self.options, sort_by=objective), max(self.folds, 2))
        if self.executor is None:
            return _wfo_task(self.dev, job)
        (res,) = self.executor.map_chunks(_wfo_task, [("dev", job)], {"dev": self.dev})
        return res

    def segments(self) -> dict[str, Any]:
        """The segment boundaries (bar positions and dates), as recorded with a run."""
        return self.seg.to_dict(self.data.index)

    def sweep(self, grid: Mapping[str, Sequence[Any]]) -> pd.DataFrame:
        """The exploration sweep: one row per valid grid configuration, parameter and metric columns."""
        if self.executor is not None:
            from ..backtest.strategies import grid_frame, split_valid

            valid, _ = split_valid(self.strategy, grid_frame(self.strategy, dict(grid)), len(self.train))
            if not valid.empty:  # none valid: the in-process sweep below raises its one-line UsageError
                return self._run("run_sweep", "train", valid.to_dict("records"))
        df = _bt().run_sweep(self.train, self.strategy, dict(grid), options=self.options, progress=False)
        return df.reset_index(drop=True)

    def evaluate(self, params_list: Sequence[Mapping[str, Any]]) -> list[tuple[dict[str, float], dict[str, float]]]:
        """(exploration metrics, selection metrics) for each configuration, in order. With walk-forward, the
        selection metrics are means over consecutive windows of the selection segment."""
        if not params_list:
            return []
        plist = [dict(p) for p in params_list]
        ins = self._run("backtest", "train", plist)
        folds = [self._run("backtest", "dev", plist, a, b) for a, b in self.windows]
        out = []
        for i in range(len(plist)):
            m_is = _row_metrics(ins.iloc[i])
            per = [_row_metrics(f.iloc[i]) for f in folds]
            m_oos = per[0] if len(per) == 1 else {k: float(np.nanmean([p[k] for p in per])) for k in per[0]}
            out.append((m_is, m_oos))
        return out

    def returns(self, params_list: Sequence[Mapping[str, Any]], part: str) -> np.ndarray:
        """Per-bar strategy returns, shape (bars, configs), over the ``exploration``, ``selection`` or
        ``development`` (both) bars; ``holdout`` and ``full`` read the hold-out: only for end-of-run figures."""
        frame = self.data if part in ("holdout", "full") else self.dev
        start, end = {"full": (None, None), "development": (None, None), "exploration": (None, self.split),
                      "selection": (self.split, None), "holdout": (self.seg.holdout[0], None)}[part]
        m = self._run("returns_matrix", "data" if frame is self.data else "dev", [dict(p) for p in params_list],
                      start, end)
        return np.asarray(m, dtype=float)

    def holdout(self, params_list: Sequence[Mapping[str, Any]], *, seed: int = 0,
                level: float = 0.95) -> list[dict[str, Any]]:
        """Hold-out metrics of each configuration, with a stationary-bootstrap ``level`` interval of its Sharpe
        ratio (``sharpe_ci``). Call it once, at the end of a run, with every winner (``holdout_calls`` counts)."""
        from ..evaluation.bootstrap import sharpe_ci

        self.holdout_calls += 1
        plist = [dict(p) for p in params_list]
        if not plist:
            return []
        frame = self._run("backtest", "data", plist, self.seg.holdout[0])
        rets = self.returns(plist, "holdout")
        ppy = float(getattr(self.options, "periods_per_year", 0.0) or periods_per_year(self.data.index))
        rf = rf_per_bar(float(getattr(self.options, "risk_free", 0.0)), ppy)
        out = []
        for i in range(len(plist)):
            lo, hi = sharpe_ci(rets[:, i], ppy, rf_bar=rf, seed=seed, level=level)
            out.append({**_row_metrics(frame.iloc[i]), "sharpe_ci": [lo, hi], "ci_level": level})
        return out

    def equity(self, params: Mapping[str, Any]) -> pd.Series:
        """Equity curve (start 1.0) of one configuration over all bars, for the end-of-run plot."""
        r = self.returns([params], "full")[:, 0]
        return pd.Series(np.cumprod(1 + np.nan_to_num(r)), index=self.data.index[-len(r):])

    def dsr(self, winner: Mapping[str, Any], trials: Sequence[Mapping[str, Any]]) -> float:
        """Deflated Sharpe Ratio of the winner's selection-segment returns, deflated by every configuration tried
        (``trials``) and the spread of their selection-segment per-bar Sharpe ratios."""
        from ..evaluation.metrics import sharpe
        from ..evaluation.overfitting import dsr_of_best

        r = self.returns([winner, *trials], "selection")
        return float(dsr_of_best(r[:, 0], sharpe(r[:, 1:], axis=0))["dsr"])

    def pbo(self, params_list: Sequence[Mapping[str, Any]]) -> float:
        """Probability of backtest overfitting (CSCV) over every configuration tried, on the exploration and
        selection bars (the hold-out stays out of it)."""
        if len(params_list) < 2:
            return float("nan")
        return float(_bt().probability_of_backtest_overfitting(self.returns(params_list, "development")).pbo)


def objective_of(metrics: Mapping[str, float], objective: str) -> float:
    """The objective value, with NaN (no trades, flat equity) read as -inf so it never wins."""
    v = float(metrics.get(objective, float("nan")))
    return v if np.isfinite(v) else float("-inf")
