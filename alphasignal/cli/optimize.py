"""Stage 06 entry (``06_multi_llm_optimize.py``, ``alphasignal optimize``): run/resume, list history, reprint a run."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from ..backtest.distributed import Executor
from ..backtest.user_strategy import load_strategy
from .common import add_cache_option, add_strategy_options, with_cache_mode
from ..fileio import check_output_dir
from ..market import load_from_config
from ..reporting.plots import comparison_png, equity_png
from ..reporting.report import write_report
from ..reporting.tables import load_run, print_report
from ..storage.history import History
from ..agents.curves import equity_curves
from ..agents.evaluate import Evaluator
from ..agents.honesty import finalise
from ..agents.loop import build_agents, optimize, sweep_grid

log = logging.getLogger(__name__)

REPORT, COMPARISON, EQUITY = "multi_llm_report.md", "multi_llm_comparison.png", "multi_llm_equity.png"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Stage 06 options (each one a shortcut for an ``optimizer.*`` config value)."""
    g = parser.add_argument_group("optimizer")
    add_strategy_options(g, "optimizer", "strategy to optimise, e.g. MA_Crossover or Bollinger_Breakout")
    g.add_argument("--provider", help="model provider for every agent: auto, builtin, ollama, openai, llamacpp")
    g.add_argument("--rounds", type=int, help="maximum number of agent rounds")
    g.add_argument("--budget", type=int, help="maximum number of agent backtests in total")
    g.add_argument("--debate", type=int, metavar="N", help="debate N rounds and vote before backtesting proposals")
    g.add_argument("--compare", metavar="random,tpe,wfo",
                   help="also run these optimizers (random search, Optuna TPE, walk-forward optimisation) with the "
                   "same backtest budget")
    g.add_argument("--output-dir", help="where the report and PNGs go")
    g.add_argument("--cluster", help="run the backtests on Dask: local[:N] (N worker processes here) or "
                   "tcp://HOST:8786 (a running scheduler); default in-process (sweep.cluster)")
    h = g.add_mutually_exclusive_group()
    h.add_argument("--resume", metavar="RUN_ID", help="continue an interrupted run after its last complete round")
    h.add_argument("--history", action="store_true", help="list past runs and exit")
    h.add_argument("--show", metavar="RUN_ID", help="reprint the report of a past run and exit")
    add_cache_option(g)


def with_args(cfg: Any, args: argparse.Namespace) -> Any:
    """``cfg`` with the command-line shortcuts applied (validated by the config's own checks)."""
    updates: dict[str, Any] = {}
    for name, field in (("strategy", "strategy"), ("strategy_file", "strategy_file"), ("provider", "provider"),
                        ("rounds", "rounds"), ("budget", "budget"), ("debate", "debate_rounds"),
                        ("output_dir", "output_dir")):
        if getattr(args, name, None) is not None:
            updates[field] = getattr(args, name)
    if getattr(args, "compare", None):
        updates["compare"] = tuple(x.strip() for x in args.compare.split(",") if x.strip())
    if getattr(args, "cluster", None) is not None:
        cfg = dataclasses.replace(cfg, sweep=dataclasses.replace(cfg.sweep, cluster=args.cluster))
    return dataclasses.replace(cfg, optimizer=dataclasses.replace(cfg.optimizer, **updates)) if updates else cfg


def main(args: argparse.Namespace, cfg: Any) -> int:
    """Dispatch ``--history`` / ``--show`` / a run (new or ``--resume``); returns the exit code."""
    cfg = with_args(with_cache_mode(cfg, args), args)
    optimizer = cfg.optimizer
    console = Console() if sys.stdout.isatty() or "COLUMNS" in os.environ else Console(width=160)
    show = getattr(args, "show", None)
    listing = getattr(args, "history", False) or show is not None
    resume = getattr(args, "resume", None)
    if not listing:  # bad input, the cluster, data or model servers fail before the history database is written
        # a strategy file joins the registry: checked before any work
        load_strategy(optimizer.strategy, optimizer.strategy_file)
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
            done = resume and history.run(resume)["status"] == "finished"  # an unknown id is an error here
            run_id = optimize(data, cfg, history, agents=agents, resume=resume,
                              progress=not getattr(args, "quiet", False), executor=ex)
            ev = Evaluator.from_config(data, cfg, ex)
            if done:  # a finished run keeps its stored summary: its hold-out was scored once already
                summary = history.run(run_id)["summary"]
            else:
                # winners fixed first, then scored on the hold-out once
                summary = finalise(ev, history, run_id, optimizer)
                history.finish_run(run_id, "finished", summary)
            data_run = load_run(history, run_id)
            ev.executor = None  # the plots' few backtests run here, after the cluster is closed
    out = Path(optimizer.output_dir)
    comparison_png(data_run, out / COMPARISON)
    equity_png(equity_curves(ev, data, summary), summary["segments"]["dates"], out / EQUITY,
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
        s = r["summary"] or {}
        obj = r["config"]["optimizer"]["objective"]
        best = (s.get("winner", {}).get("metrics_holdout") or {}).get(obj)
        t.add_row(r["run_id"], r["status"], r["strategy"], str(r["rounds"]),
                  ", ".join(sorted(set(r["models"].values()))), "-" if best is None else f"{obj} {best:.3f}",
                  str(s.get("configs_tried", "-")))
    console.print(t)
