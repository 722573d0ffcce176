"""Stage 06: multi-LLM strategy optimizer (Analyst -> Strategist -> Risk Manager rounds over validated backtests).

Runs offline by default (builtin engines, real offline market data), writes a Markdown report, two PNGs and an
SQLite history. Examples:
  python 06_multi_llm_optimize.py
  python 06_multi_llm_optimize.py --strategy Bollinger_Breakout --rounds 8 --compare random,tpe
  python 06_multi_llm_optimize.py --strategy-file examples/sma_trend.py --strategy SmaTrend   # your own strategy
  python 06_multi_llm_optimize.py --provider ollama --set optimizer.strategist_model=deepseek-r1:7b
  python 06_multi_llm_optimize.py --cluster local:2 --compare random,tpe   # backtests on a Dask cluster
  python 06_multi_llm_optimize.py --history | --show RUN_ID | --resume RUN_ID
"""

# Stage 06 entry (``06_multi_llm_optimize.py``, ``alphasignal optimize``): run/resume, list history, reprint a run.

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.table import Table

from ..agents.curves import equity_curves
from ..agents.evaluate import Evaluator
from ..agents.honesty import finalise
from ..agents.loop import build_agents, optimize, sweep_grid
from ..backtest.distributed import Executor
from ..backtest.user_strategy import load_strategy
from ..config import Config
from ..fileio import check_output_dir
from ..market import load_from_config
from ..reporting.plots import comparison_png, equity_png
from ..reporting.report import write_report
from ..reporting.tables import (
    COMPARISON_HEADER,
    SHOWN,
    changes,
    comparison_rows,
    fmt,
    headline,
    load_run,
    params_text,
    proposal_status,
    result_table,
    segments_text,
    top_sweep,
)
from ..storage.history import History
from ..storage.records import RunDetails, RunSummary
from .flags import add_flags

log = logging.getLogger(__name__)

REPORT, COMPARISON, EQUITY = "multi_llm_report.md", "multi_llm_comparison.png", "multi_llm_equity.png"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Stage 06 options (the table's shortcuts for ``optimizer.*`` values, and what to do: run, resume, list, show)."""
    g = parser.add_argument_group("optimizer")
    add_flags(parser, "optimize", container=g)
    h = g.add_mutually_exclusive_group()
    h.add_argument("--resume", metavar="RUN_ID", help="continue an interrupted run after its last complete round")
    h.add_argument("--history", action="store_true", help="list past runs and exit")
    h.add_argument("--show", metavar="RUN_ID", help="reprint the report of a past run and exit")


def main(args: argparse.Namespace, cfg: Config) -> int:
    """Dispatch ``--history`` / ``--show`` / a run (new or ``--resume``); returns the exit code."""
    optimizer = cfg.optimizer
    console = Console() if sys.stdout.isatty() or "COLUMNS" in os.environ else Console(width=160)
    show = getattr(args, "show", None)
    listing = getattr(args, "history", False) or show is not None
    resume = getattr(args, "resume", None)
    if not listing:  # bad input, the cluster, data or model servers fail before the history database is written
        # a strategy file joins the registry: checked before any work
        load_strategy(optimizer.strategy, optimizer.strategy_file, cfg.sweep.user_code_timeout_s)
        sweep_grid(cfg)
        check_output_dir(optimizer.output_dir, what="--output-dir")
    with Executor("" if listing else cfg.sweep.cluster, connect_timeout=cfg.sweep.connect_timeout) as ex:
        if not listing:
            data = load_from_config(cfg.dataset)
            agents = None if resume else build_agents(cfg)
        if resume:  # an unknown id fails before the database is opened for writing
            with History(optimizer.history_db, create=False) as history:
                history.run(resume)
        with History(optimizer.history_db, create=not listing) as history:  # --history/--show never create a database
            if getattr(args, "history", False):
                _print_history(history, console)
                return 0
            if show is not None:
                print_report(load_run(history, args.show), console)
                return 0
            done = resume and history.run(resume).status == "finished"  # an unknown id is an error here
            run_id = optimize(data, cfg, history, agents=agents, resume=resume,
                              progress=not getattr(args, "quiet", False), executor=ex)
            ev = Evaluator.from_config(data, cfg, ex)
            if done:  # a finished run keeps its stored summary: its hold-out was scored once already
                summary = history.run(run_id).summary
            else:
                # winners fixed first, then scored on the hold-out once
                summary = finalise(ev, history, run_id, optimizer)
                history.finish_run(run_id, "finished", summary)
            data_run = load_run(history, run_id)
            ev.executor = None  # the plots' few backtests run here, after the cluster is closed
    out = Path(optimizer.output_dir)
    comparison_png(data_run, out / COMPARISON)
    equity_png(equity_curves(ev, data, summary), summary.segments["dates"], out / EQUITY,
               title=f"{optimizer.strategy}: initial baseline vs best vs buy & hold")
    write_report(data_run, out / REPORT, {"baseline vs proposals": COMPARISON, "equity curves": EQUITY})
    print_report(data_run, console)
    console.print(f"run {run_id}: report {out / REPORT}, plots {out / COMPARISON}, {out / EQUITY}; "
                  f"history {optimizer.history_db}")
    return 0


def _print_history(history: History, console: Console) -> None:
    t = Table(title=f"runs in {history.path}", title_justify="left", header_style="bold")
    for col in ("run id", "status", "strategy", "rounds", "models", "best: hold-out", "configs"):
        t.add_column(col, no_wrap=col == "run id", overflow="fold")
    for r in history.runs():
        s, obj = r.summary, r.objective
        best = s.winner.metrics("holdout").get(obj) if s else None
        t.add_row(r.run_id, r.status, r.strategy, str(r.rounds), ", ".join(sorted(set(r.models.values()))),
                  "-" if best is None else f"{obj} {best:.3f}", str(s.configs_tried) if s else "-")
    console.print(t)


def print_report(data: RunDetails, console: Console | None = None) -> None:
    """Print a run's whole summary (a live run and ``--show RUN_ID`` alike: both read it from the history)."""
    c = console or Console()
    run, s, obj = data.run, data.summary, data.objective
    c.rule(f"[bold]multi-LLM optimizer — {run.strategy} — run {run.run_id}")
    c.print("models: " + ", ".join(f"{k}={v}" for k, v in run.models.items()) + f"; status {run.status}")
    c.print(segments_text(data.segments))
    top = [[params_text(p.params), *(fmt(m, p.metrics("is").get(m)) for m in SHOWN)] for p in top_sweep(data)]
    c.print(_table(f"Top 3 of the exploration sweep ({len(data.sweep)} configs)", ["params", *SHOWN], top))
    for rd in data.rounds[1:]:
        rn = rd.round_no
        c.rule(f"round {rn}")
        report = rd.state.report
        for line in report.patterns[:5] if report else ():
            c.print(f"  [cyan]Analyst[/]: {line}")
        for line in report.recommendations[:3] if report else ():
            c.print(f"  [cyan]Analyst recommends[/]: {line}")
        rows = [[p.name, changes(p.params or p.raw_params, rd.baseline), proposal_status(p),
                 fmt(obj, p.metrics("is").get(obj)), fmt(obj, p.metrics("oos").get(obj)),
                 fmt("max_drawdown", p.metrics("oos").get("max_drawdown"))] for p in data.round_proposals(rn)]
        c.print(_table(f"Strategist proposals, round {rn}", ["proposal", "changes vs baseline", "outcome",
                                                             f"exploration {obj}", f"selection {obj}",
                                                             "selection max DD"], rows))
        if rd.state.review:
            c.print(f"  [magenta]Risk Manager[/]: {rd.state.review}")
        votes = rd.state.votes or ()
        dissent = [v for v in votes if not v.support]
        if votes:
            c.print(f"  debate: {len(votes)} votes, {len(dissent)} against")
    if s:
        _print_summary(c, s, obj)



def _print_summary(c: Console, s: RunSummary, obj: str) -> None:
    w, i = s.winner, s.initial
    c.rule("[bold]result")
    c.print(f"best configuration: [bold]{params_text(w.params)}[/] ({w.name}); changes vs initial: "
            f"{changes(w.params, i.params)}")
    c.print(_table("initial baseline vs best: exploration | selection | hold-out", *result_table(s)))
    c.print(headline(s, obj))
    c.print(f"configurations tried: {s.configs_tried} ({s.sweep_configs} sweep + {s.agent_backtests} agent "
            f"backtests, {s.proposals} proposals); rounds {s.rounds} (stopped: {s.stop_reason}); "
            f"DSR of the winner's selection Sharpe {s.dsr:.3f}; PBO over all trials {s.pbo:.2f}")
    for warn in s.warnings:
        c.print(f"[yellow]warning[/]: {warn}")
    if s.compare:
        c.print(_table("optimizers with the same backtest budget on the same segments", COMPARISON_HEADER,
                       comparison_rows(s.compare)))


def _table(title: str, header: Sequence[str], rows: Sequence[Sequence[str]]) -> Table:
    t = Table(title=title, title_justify="left", header_style="bold")
    for h in header:
        t.add_column(h, overflow="fold")
    for r in rows:
        t.add_row(*r)
    return t
