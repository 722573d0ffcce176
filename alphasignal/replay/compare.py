"""``--replay --compare momentum,builtin,cnn``: every rung traded through the same portfolio rules in one run, and
``--replay --portfolio rank``: every rung's P(up) ranked across a universe (``rank.py``).

Signals portfolio: each rung decides at the same (ticker, bar) jobs as a plain replay (model rungs through the
journaled ``SignalPipeline``, so a re-run decides nothing twice); ``portfolio.simulate`` trades each rung's
decisions with the same sizing, levels, costs and exits; one table has a column per rung beside buy & hold and
the seeded random baseline (matched to the first rung's trades). The DSR counts the rungs as trials:
``replay.trials x rungs``, with the variance of the rungs' own per-bar Sharpe ratios (the random runs' when fewer
than two are finite).

Rank portfolio: decision dates are every ``replay.every``-th date of the universe's calendar; each ticker with a
bar that day is scored by the rung (bars <= t only) and ``rank.simulate_rank`` trades the legs. One row per rung and
book (long, short, long-short) beside an equal-weight buy & hold of the universe; the DSR of each rung's headline
book (long-short, or long in long-only mode) counts the rungs as trials the same way.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from ..config import Config, DatasetConfig, PipelineConfig, ReplayConfig
from ..errors import UsageError
from ..evaluation.metrics import periods_per_year, sharpe
from ..evaluation.psr import table_extras
from ..fileio import check_output_dir
from ..signals.ladder import rung_pipeline
from ..signals.pipeline import SignalPipeline
from .journal import Journal
from .outcome import Job, ReplayData
from .portfolio import Signal, SimResult, simulate
from .rank import RankResult, ic_summary, rebalance_dates, simulate_rank
from .run import JOURNAL, decide_all, fingerprint, load_data, plan_jobs, signal_of
from .rungs import cnn_decisions, momentum_decisions, p_up, score_frame
from .sceptic import Cutoff, analyse, cutoffs_of
from .stats import (
    bootstrap_interval,
    buy_and_hold,
    curve_metrics,
    dsr,
    random_runs,
    returns_of,
    trade_metrics,
)


@dataclass
class RungRun:
    """One rung's decisions at the jobs: signals to trade and P(up) scores, plus what it took."""

    name: str
    signals: dict[str, dict[int, Signal]]
    scores: dict[tuple[str, int], float]
    detail: str = ""
    decided: int = 0
    reused: int = 0
    seconds: float = 0.0
    cutoffs: list[Cutoff] = field(default_factory=list)  # the rung's models' knowledge cut-offs (model rungs)


@dataclass
class CompareOutcome:
    """Everything the comparison's outputs are made of."""

    rc: ReplayConfig
    data: ReplayData
    rungs: list[RungRun]
    portfolio: str  # signals | rank
    columns: dict[str, dict] = field(default_factory=dict)  # name -> metrics (with "interval")
    equity: pd.DataFrame | None = None  # date x column equity curves
    sims: dict[str, SimResult] = field(default_factory=dict)
    ranks: dict[str, RankResult] = field(default_factory=dict)
    trials: int = 1
    notes: list[str] = field(default_factory=list)
    sceptic: dict[str, dict] = field(default_factory=dict)  # rung -> sceptic.analyse (regimes, cut-offs)


def decide_rung(name: str, jobs: list[Job], data: ReplayData, cfg: Config, pc: PipelineConfig, rc: ReplayConfig,
                out: Path, quiet: bool) -> RungRun:
    """One rung at every job (``jobs`` planned for the momentum rung's keys are re-keyed for a model rung)."""
    ds = cfg.dataset
    t0 = time.perf_counter()
    if name == "momentum":
        signals, scores = momentum_decisions(data, jobs, ds, pc.momentum_hold)
        return RungRun(name, signals, scores, "sign of the window return", len(jobs), 0, time.perf_counter() - t0)
    rpc = rung_pipeline(name, pc, cfg.training.cnn_output_dir)
    pipe = SignalPipeline.from_config(rpc)
    if name == "vlm" and pipe.vlm.is_builtin:
        raise UsageError("the vlm rung found no vision model (the configuration resolves to the builtin reader): "
                         "set --provider ollama|llamacpp|openai and start its server, or leave vlm out of --compare")
    if name == "cnn" and not rc.news_file:  # no headlines to fuse: the model on the bars, not through a PNG
        signals, scores = cnn_decisions(data, jobs, ds, rpc, rpc.vlm_model)
        return RungRun(name, signals, scores, _cnn_detail(pipe, jobs[0].date) + "; decided on the bars", len(jobs),
                       0, time.perf_counter() - t0, cutoffs_of(pipe, rpc.chart_knowledge_cutoff,
                                                               rpc.news_knowledge_cutoff))
    fp = fingerprint(ds, rpc, rc, [f"{p.name}:{p.model}" for p in (pipe.vlm, pipe.llm)])
    keyed = {(j.ticker, j.bar): j for j in plan_jobs(data, ds, replace(rc, every=1), fp)}
    mine = [keyed[(j.ticker, j.bar)] for j in jobs]
    records, meter, reused = decide_all(mine, pipe, data, ds, rc, Journal(out / JOURNAL, rc.fsync), quiet)
    missing = [j for j in mine if j.key not in records]
    if missing:
        raise UsageError(f"{meter.stopped or 'stopped'}: rung {name} decided {len(mine) - len(missing)} of "
                         f"{len(mine)} dates; a comparison needs them all: raise replay.max_calls / "
                         "replay.max_tokens_total and run the same command again (decisions made are kept)")
    signals: dict[str, dict[int, Signal]] = {t: {} for t in data.frames}
    scores = {}
    detail = _cnn_detail(pipe, mine[0].date) if name == "cnn" else (
        pipe.vlm.name if pipe.vlm.model == pipe.vlm.name else f"{pipe.vlm.name} {pipe.vlm.model}")
    for j in mine:
        signals[j.ticker][j.bar] = signal_of(records[j.key])
        scores[(j.ticker, j.bar)] = p_up(records[j.key])
    return RungRun(name, signals, scores, detail, meter.decisions, reused, time.perf_counter() - t0,
                   cutoffs_of(pipe, rpc.chart_knowledge_cutoff, rpc.news_knowledge_cutoff))


def _cnn_detail(pipe: SignalPipeline, first: str) -> str:
    """The cnn rung's model, the last date of its training data and whether the replay starts before it."""
    cutoff = str(pipe.vlm.cnn().meta.get("knowledge_cutoff") or "")
    detail = f"{pipe.vlm.name} {pipe.vlm.model}, trained on data to {cutoff or 'an unknown date'}"
    if not cutoff or cutoff >= first:
        detail += f" (NOT before the first decision {first}: in-sample there)"
    return detail


def _sharpe_of(r: np.ndarray, ppy: float) -> float:
    return float(sharpe(r, ppy)) if len(r) > 1 else math.nan


def _row(r: np.ndarray, rc: ReplayConfig, ppy: float) -> dict:
    return {**curve_metrics(r, ppy), "interval": bootstrap_interval(r, rc, ppy)}


def _dsr_all(returns: dict[str, np.ndarray], rc: ReplayConfig, ppy: float, fallback: np.ndarray
             ) -> tuple[dict[str, float], int]:
    """DSR of each rung with the rungs counted as trials (see the module doc)."""
    trials = rc.trials * len(returns)
    per_bar = np.array([_sharpe_of(r, ppy) for r in returns.values()]) / math.sqrt(ppy)
    finite = per_bar[np.isfinite(per_bar)]
    spread = finite if len(finite) >= 2 else fallback
    deflate = replace(rc, trials=trials)
    return {n: dsr(r, deflate, spread) for n, r in returns.items()}, trials


def run_compare(cfg: Config, pc: PipelineConfig, rc: ReplayConfig, rungs: tuple[str, ...], quiet: bool = True
                ) -> CompareOutcome:
    """Every rung through the signals portfolio (the module doc); the output folder is checked before any work."""
    out = check_output_dir(rc.output_dir, what="replay output folder")
    ds = cfg.dataset
    data, notes = load_data(rc.tickers, ds, rc)
    jobs = _jobs_or_fail(plan_jobs(data, ds, rc, "compare"), data, ds, rc)
    runs = [decide_rung(n, jobs, data, cfg, pc, rc, out, quiet) for n in rungs]
    start, end = pd.Timestamp(jobs[0].date), (pd.Timestamp(rc.end) if rc.end else None)
    union = pd.DatetimeIndex(sorted(set().union(*(df.index for df in data.frames.values()))))
    ppy = periods_per_year(union)

    def run(signals: dict[str, dict[int, Signal]]) -> SimResult:
        return simulate(data.frames, signals, rc, start, end, ppy)

    sims = {r.name: run(r.signals) for r in runs}
    first = sims[runs[0].name]
    closes = {t: df["Close"].to_numpy(dtype="float64") for t, df in data.frames.items()}
    rand = random_runs(run, runs[0].signals, closes, len(first.trades), rc)
    returns = {n: returns_of(s.equity, rc.initial_cash) for n, s in sims.items()}
    rand_sharpes = np.array([_sharpe_of(returns_of(s.equity, rc.initial_cash), ppy) for s in rand])
    finite_rand = rand_sharpes[np.isfinite(rand_sharpes)]
    dsrs, trials = _dsr_all(returns, rc, ppy, finite_rand / math.sqrt(ppy))
    cols: dict[str, dict] = {}
    for n, s in sims.items():
        own = _sharpe_of(returns[n], ppy)
        rank = float(np.mean(finite_rand < own)) if len(finite_rand) and math.isfinite(own) else math.nan
        cols[n] = {**_row(returns[n], rc, ppy), **trade_metrics(s), "dsr": dsrs[n], "random_rank": rank}
    bh = buy_and_hold(data.frames, first.dates, rc)
    cols["buy & hold"] = {**_row(returns_of(bh, rc.initial_cash), rc, ppy), "trades": len(data.frames),
                          "exposure": 1.0}
    cols["random"] = {**_row(returns_of(rand[0].equity, rc.initial_cash), rc, ppy), **trade_metrics(rand[0])}
    equity = pd.DataFrame({**{n: s.equity for n, s in sims.items()}, "buy & hold": bh, "random": rand[0].equity},
                          index=first.dates)
    add_evidence(cols, equity, rc.initial_cash, "buy & hold", ppy)
    r_bh = returns_of(bh, rc.initial_cash)
    sceptic = {r.name: analyse(data.frames, r.signals, first.dates, returns[r.name], r_bh, rc, ppy, r.cutoffs)
               for r in runs}
    return CompareOutcome(rc, data, runs, "signals", cols, equity, sims, {}, trials, notes, sceptic)


def add_evidence(cols: dict[str, dict], equity: pd.DataFrame, initial: float, benchmark: str, ppy: float) -> None:
    """Each column's Sharpe ratio gets its Newey-West interval (``interval["sharpe_hac"]``) and the probabilistic
    Sharpe ratio against 0 and against the ``benchmark`` column's Sharpe over the same days."""
    r_bh = returns_of(equity[benchmark].to_numpy(), initial)
    for name, col in cols.items():
        extra, hac = table_extras(returns_of(equity[name].to_numpy(), initial), ppy, r_bh)
        col.update(extra)
        col.setdefault("interval", {})["sharpe_hac"] = hac


def _jobs_or_fail(jobs: list[Job], data: ReplayData, ds: DatasetConfig, rc: ReplayConfig) -> list[Job]:
    if not jobs:
        from ..dataset.build import warmup_bars

        raise UsageError(f"no decision dates: {', '.join(data.frames)} need {warmup_bars(ds) + ds.window} bars "
                         f"of history before {rc.start} and bars up to {rc.end or 'the end'}: widen the period")
    return jobs


def rank_jobs(data: ReplayData, ds: DatasetConfig, rc: ReplayConfig) -> list[Job]:
    """The rank portfolio's jobs: every ticker with a drawable bar at each rebalance date of the universe."""
    every = plan_jobs(data, ds, replace(rc, every=1), "rank")
    if not every:
        return []
    end = pd.Timestamp(rc.end) if rc.end else None
    dates = {d.date().isoformat() for d in rebalance_dates(data.frames, pd.Timestamp(every[0].date), end, rc.every)}
    return [j for j in every if j.date in dates]


def run_rank(cfg: Config, pc: PipelineConfig, rc: ReplayConfig, rungs: tuple[str, ...], quiet: bool = True
             ) -> CompareOutcome:
    """Every rung's rank portfolio over the universe (the module doc)."""
    out = check_output_dir(rc.output_dir, what="replay output folder")
    ds = cfg.dataset
    data, notes = load_data(rc.tickers, ds, rc)
    if len(data.frames) < 2:
        raise UsageError(f"a rank portfolio needs at least 2 tickers with bars in the period, got "
                         f"{', '.join(data.frames)}: pass --tickers-file FILE (or --tickers A,B,...)")
    jobs = _jobs_or_fail(rank_jobs(data, ds, rc), data, ds, rc)
    runs = [decide_rung(n, jobs, data, cfg, pc, rc, out, quiet) for n in rungs]
    start, end = pd.Timestamp(jobs[0].date), (pd.Timestamp(rc.end) if rc.end else None)
    ranks = {r.name: simulate_rank(data.frames, score_frame(r.scores, data), rc.rank_fraction, rc.mode, start, end,
                                   rc.initial_cash, rc.fees_bps, rc.slippage_bps) for r in runs}
    dates = next(iter(ranks.values())).dates
    ppy = periods_per_year(dates)
    headline = "long" if rc.mode == "long_only" else "long_short"
    returns = {n: returns_of(res.books[headline].equity, rc.initial_cash) for n, res in ranks.items()}
    dsrs, trials = _dsr_all(returns, rc, ppy, np.array([]))
    years = max(len(dates), 1) / ppy
    cols: dict[str, dict] = {}
    curves: dict[str, np.ndarray] = {}
    for n, res in ranks.items():
        ic = ic_summary(res.ic)
        for book, b in res.books.items():
            name = f"{n} {book.replace('_', '-')}"
            turn = b.turnover
            cols[name] = {**_row(returns_of(b.equity, rc.initial_cash), rc, ppy),
                          "turnover_rebalance": float(turn.mean()) if len(turn) else math.nan,
                          "turnover": float(turn.sum() / years), "costs": b.fees / rc.initial_cash,
                          **(ic if book == headline else {}), "dsr": dsrs[n] if book == headline else math.nan}
            curves[name] = b.equity
    bh = buy_and_hold(data.frames, dates, rc)
    cols["equal-weight buy & hold"] = _row(returns_of(bh, rc.initial_cash), rc, ppy)
    equity = pd.DataFrame({**curves, "equal-weight buy & hold": bh}, index=dates)
    add_evidence(cols, equity, rc.initial_cash, "equal-weight buy & hold", ppy)
    notes.append("rebalances: " + str(len(next(iter(ranks.values())).executed)) + f", every {rc.every} date(s) of "
                 f"the universe's calendar; {len(data.frames)} tickers ({', '.join(data.frames)})")
    return CompareOutcome(rc, data, runs, "rank", cols, equity, {}, ranks, trials, notes)
