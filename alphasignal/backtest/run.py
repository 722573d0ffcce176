"""Stage 05 as one library call: load data, sweep a grid on every ticker, add out-of-sample metrics, DSR and PBO,
save the tidy results (CSV/Parquet) with a metadata JSON beside them, and return a :class:`SweepRun` (the top rows,
the overfitting reports, the walk-forward runs and where everything was written; ``alphasignal.cli.sweep`` prints
it)."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..config import Config, SweepConfig
from ..errors import UsageError
from ..evaluation.metrics import METRICS
from ..fileio import check_output_file, write_atomic
from ..market.universe import load_universe
from ..progress import progress_bar
from . import startfast
from .distributed import Executor
from .engine import Prices, annualisation, prepare_prices
from .kernels import __doc__ as CONVENTIONS
from .strategies import Strategy, grid_frame, split_valid
from .sweep_tasks import sweep_tickers, warm_up, write_frames
from .user_strategy import load_strategy
from .wfo import WFOResult, run_wfo, wfo_windows
from .wfo import __doc__ as WFO_DOC_FULL
from .xp import Backend, resolve

log = logging.getLogger(__name__)

WFO_DOC = " ".join(WFO_DOC_FULL.split())


@dataclass
class SweepRun:
    """What a stage 05 run did: the rows the top-N table shows (``top``, per ticker), each ticker's overfitting
    report (DSR, PBO) and count of configurations run, the walk-forward runs, and the files written."""

    opts: SweepConfig
    params: list[str]
    top: pd.DataFrame
    reports: dict[str, dict]
    n_run: dict[str, int]
    n_skipped: int
    engine: str
    device: str
    where: str  # ", cluster SPEC" when it ran on a cluster, else ""
    output: Path
    meta_path: Path
    meta: dict[str, Any]
    wfo: dict[str, WFOResult] = field(default_factory=dict)

    @property
    def wfo_path(self) -> Path | None:
        """The walk-forward folds file, when walk-forward ran."""
        return wfo_path(self.output) if self.wfo else None


def data_hash(frames: dict[str, pd.DataFrame]) -> str:
    """sha256 (12 hex) over tickers, dates and OHLC values."""
    h = hashlib.sha256()
    for ticker, df in frames.items():
        h.update(ticker.encode())
        h.update(np.asarray(df.index.astype("int64")).tobytes())
        h.update(np.ascontiguousarray(df[["Open", "High", "Low", "Close"]].to_numpy("float64")).tobytes())
    return h.hexdigest()[:12]


def wfo_path(output: Path) -> Path:
    """Where the walk-forward folds go: ``<output stem>_wfo<output suffix>`` beside the sweep results."""
    return output.with_name(f"{output.stem}_wfo{output.suffix}")


def _save(meta: dict[str, Any], output: Path, wfo: pd.DataFrame | None = None) -> Path:
    """The walk-forward folds (if any) and the metadata JSON; the results were streamed to ``output`` already."""
    if wfo is not None:
        write_frames(wfo_path(output), iter([wfo]))
    meta_path = output.with_suffix(".meta.json")
    text = json.dumps(meta, indent=2, default=str)
    write_atomic(meta_path, lambda p: Path(p).write_text(text, encoding="utf-8"))
    return meta_path


def sweep_config_hash(cfg: Config) -> str:
    """The hash of what decides the results: where they ran (sweep.cluster, its timeout, start_fast) is left out."""
    d = cfg.to_dict()
    chosen = {"sweep": {k: v for k, v in d["sweep"].items() if k not in {"cluster", "connect_timeout", "start_fast"}},
              "dataset": d["dataset"]}
    return hashlib.sha256(json.dumps(chosen, sort_keys=True).encode()).hexdigest()[:12]


def _top(frame: pd.DataFrame, opts: SweepConfig) -> pd.DataFrame:
    """The rows the printed table shows (kept instead of the whole frame)."""
    return frame.sort_values(opts.sort_by, ascending=opts.sort_by == "max_drawdown", na_position="last",
                             kind="stable").head(opts.top_n)


def _where(cluster: Executor | str) -> str:
    spec = cluster if isinstance(cluster, str) else (cluster.address and f"{cluster.address}:{cluster.workers}")
    return f", cluster {spec}" if spec else ""


def _plan(frames: dict[str, pd.DataFrame], configs: pd.DataFrame, opts: SweepConfig, strat: Strategy
          ) -> dict[str, tuple[Prices, pd.DataFrame, list]]:
    """Per ticker: checked prices, the valid configurations and the skipped ones with their reasons (UsageError
    before any work when a ticker has none valid, or when walk-forward cannot run on it)."""
    plan = {}
    for ticker, df in frames.items():
        prices = prepare_prices(df, ticker, strat.needs)
        valid, bad = split_valid(strat, configs, prices.n)
        if valid.empty:
            raise UsageError(f"{ticker}: none of the {len(configs)} {opts.strategy} configurations is valid "
                             f"({bad[0][1]}): fix sweep.grid or widen the date range")
        if opts.walk_forward:  # fail before any work, not after the sweep
            wfo_windows(prices, strat, valid, opts.sort_by, opts.walk_forward, opts.anchored)
        plan[ticker] = (prices, valid, bad)
    return plan


def _sweep(ex: Executor, jobs: dict[str, tuple[Prices, pd.DataFrame]], strat: Strategy, opts: SweepConfig,
           backend: Backend, progress: bool) -> tuple[dict[str, dict], dict[str, dict], list[pd.DataFrame]]:
    """Sweep every ticker's (prices, valid configurations) on ``ex``, streaming the results to ``opts.output``:
    (overfitting reports, timings, top rows) per ticker."""
    reports, timings, tops = {}, {}, []
    with progress_bar(progress, sum(len(v[1]) for v in jobs.values()),
                      f"{opts.strategy} [{backend.engine}{_where(ex)}]") as adv:
        def reduced():  # one ticker at a time: the client never holds the whole result
            t1 = time.perf_counter()
            for res in sweep_tickers(ex, jobs, strat, opts, backend, on_block=adv, reports=True):
                prices, valid = jobs[res.ticker]
                reports[res.ticker] = res.report
                timings[res.ticker] = {"task_s": round(res.task_s, 4), "dsr_pbo_s": round(res.report_s, 4),
                                       "wall_s": round(time.perf_counter() - t1, 4),
                                       "config_bars_per_s": round(len(valid) * prices.n / max(res.task_s, 1e-9))}
                tops.append(_top(res.frame, opts))
                t1 = time.perf_counter()
                yield res.frame
        write_frames(Path(opts.output), reduced())
    return reports, timings, tops


def sweep_stage(cfg: Config, *, progress: bool = True) -> SweepRun:
    """Run the configured sweep end to end: results, folds and metadata written; returns what to show."""
    opts, ds = cfg.sweep, cfg.dataset
    if opts.sort_by not in METRICS:
        raise UsageError(f"sweep.sort_by={opts.sort_by!r} is not a metric: use one of {', '.join(METRICS)}")
    check_output_file(opts.output, what="sweep output")  # before any work
    check_output_file(Path(opts.output).with_suffix(".meta.json"), what="sweep metadata")
    if opts.walk_forward:
        check_output_file(wfo_path(Path(opts.output)), what="walk-forward folds")
    strat = load_strategy(opts.strategy, opts.strategy_file, opts.user_code_timeout_s)
    backend = resolve(opts.device, opts.engine)
    configs = grid_frame(strat, opts.grid, max_configs=opts.max_configs)
    with Executor(opts.cluster, connect_timeout=opts.connect_timeout) as ex:  # an unreachable scheduler fails first
        t0 = time.perf_counter()
        frames = load_universe(ds)
        load_s = time.perf_counter() - t0
        plan = _plan(frames, configs, opts, strat)
        jobs = {t: (p, v) for t, (p, v, _) in plan.items()}
        jit_warm = warm_up(jobs, strat, opts, backend)
        backend, background = startfast.choose(backend, opts, jobs, jit_warm)
        if background:
            startfast.compile_in_background(jit_warm, opts.pbo_splits)
        ex.warm_workers(warm_up(jobs, strat, opts, backend))
        reports, timings, tops = _sweep(ex, jobs, strat, opts, backend, progress)
    wfo: dict[str, WFOResult] = {}
    for ticker, (prices, valid, _bad) in plan.items() if opts.walk_forward else ():
        t1 = time.perf_counter()
        wfo[ticker] = run_wfo(prices, strat, valid, opts, backend, opts.walk_forward, opts.anchored)
        timings[ticker]["walk_forward_s"] = round(time.perf_counter() - t1, 4)
    skipped = {t: len(v[2]) for t, v in plan.items()}
    meta = {
        "stage": "05_sweep_backtest", "strategy": opts.strategy, "engine": backend.engine, "device": backend.device,
        **({"strategy_file": {"path": strat.origin[0], "sha256": hashlib.sha256(strat.origin[1].encode()).hexdigest()}}
           if strat.origin else {}),
        "backend_note": backend.note, "data_hash": data_hash(frames), "config_hash": sweep_config_hash(cfg),
        "tickers": {t: {"bars": p.n, "start": str(p.index[0]), "end": str(p.index[-1]),
                        "periods_per_year": annualisation(p, opts)} for t, (p, _, _) in plan.items()},
        "n_configs_in_grid": len(configs), "n_run": {t: len(v[1]) for t, v in plan.items()}, "n_skipped": skipped,
        "skipped_reasons": {t: sorted({r.split(" (got")[0] for _, r in v[2]}) for t, v in plan.items()},
        "timings": {"load_s": round(load_s, 4), **timings}, "overfitting": reports,
        **({"walk_forward": {"folds_file": str(wfo_path(Path(opts.output))), "definitions": WFO_DOC,
                             "tickers": {t: r.summary() for t, r in wfo.items()}}} if wfo else {}),
        "conventions": " ".join(" ".join(CONVENTIONS.split("\n\n")[1:3]).split()), "options": asdict(opts),
    }
    folds = pd.concat([r.folds.assign(ticker=t) for t, r in wfo.items()], ignore_index=True) if wfo else None
    meta_path = _save(meta, Path(opts.output), None if folds is None else folds[["ticker", *folds.columns[:-1]]])
    return SweepRun(opts, list(strat.specs), pd.concat(tops, ignore_index=True), reports, meta["n_run"],
                    sum(skipped.values()), backend.engine, backend.device, _where(opts.cluster), Path(opts.output),
                    meta_path, meta, wfo)
