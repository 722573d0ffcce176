"""Stage 05: vectorised strategy parameter sweep (CPU Numba/NumPy or GPU CuPy) with out-of-sample, DSR and PBO.

Backtests every configuration of sweep.grid on every ticker of dataset.tickers and writes one row per
(ticker, config) with parameters, full-sample, in-sample (is_*) and out-of-sample (oos_*) metrics to
sweep.output (.csv or .parquet) plus a metadata JSON beside it; prints the top-N table, the deflated Sharpe
ratio of the best configuration and the probability of backtest overfitting. With --walk-forward K it also
re-chooses the best configuration on each of K training windows, trades it on the window after, and reports the
chosen parameters per fold, the stitched out-of-sample metrics, walk-forward efficiency and parameter stability
(folds in <output stem>_wfo.csv/.parquet, summary in the metadata JSON).

Conventions: signal at the close of bar t, position held from bar t+1 (--fill next_open: filled at the next
open); fees and slippage in bps of traded value; warm-up bars flat; crossover strategies hold the side of the cross
(--entry cross: they enter only on a crossover event).

examples:
  python 05_sweep_backtest.py                                   # MA crossover grid, AAPL (offline fallback)
  python 05_sweep_backtest.py --tickers AAPL,GOOG --mode long_short --fees-bps 5
  python 05_sweep_backtest.py --strategy RSI_Reversion --grid '{period=[7, 14], lower=[20, 30], upper=[70, 80]}'
  python 05_sweep_backtest.py --grid '{short_period={min=2, max=50}, long_period={min=10, max=250}}' --device cpu
  python 05_sweep_backtest.py --walk-forward 5 --anchored                # walk-forward optimisation, 5 folds
  python 05_sweep_backtest.py --strategy-file examples/ma_crossover_user.py --strategy MyMACrossover  # your own
  python 05_sweep_backtest.py --cluster local:2 --tickers-file tickers.txt --output results/u.parquet  # Dask
  python 05_sweep_backtest.py --csv universe.parquet     # long format (Date, Ticker, OHLCV): every ticker in it
"""

# Stage 05 entry: ``add_arguments(parser)`` and ``main(args, cfg)`` (``05_sweep_backtest.py``, ``alphasignal sweep``):
# run :func:`alphasignal.backtest.run.sweep_stage` and print its top-N table, DSR/PBO and walk-forward folds. The
# sweep itself is imported when ``main`` runs, so ``--help`` and bad flags answer without loading the engines.

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from ..config import Config, SweepConfig
from .flags import add_flags

if TYPE_CHECKING:
    import pandas as pd

    from ..backtest.run import SweepRun
    from ..backtest.wfo import WFOResult

SUMMARY = ("sharpe", "total_return", "cagr", "max_drawdown", "trades", "win_rate")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Stage 05 options (each one a shortcut for a ``sweep.*`` or ``dataset.*`` config value)."""
    add_flags(parser, "sweep", container=parser.add_argument_group("sweep"))


def main(args: argparse.Namespace, cfg: Config) -> int:
    """Run the sweep and print what it found."""
    from ..backtest.run import sweep_stage

    print_sweep(sweep_stage(cfg, progress=not args.quiet))
    return 0


def print_sweep(run: SweepRun) -> None:
    """The top-N table with DSR and PBO per ticker, the walk-forward folds, and where the files went."""
    _print_table(run.top, run.params, run.opts, run.reports, run.n_run)
    if run.wfo:
        _print_wfo(run.wfo, run.params)
    skipped = f", {run.n_skipped} invalid configurations skipped" if run.n_skipped else ""
    folds = f", walk-forward folds {run.wfo_path}" if run.wfo else ""
    print(f"{sum(run.n_run.values())} backtests ({run.engine} on {run.device}{run.where}{skipped}) -> "
          f"{run.output} (metadata {run.meta_path}{folds})")


def _print_table(results: pd.DataFrame, params: list[str], opts: SweepConfig, reports: dict[str, dict],
                 counts: dict[str, int]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(file=sys.stdout, width=160)
    for ticker, group in results.groupby("ticker", sort=False):
        top = group.sort_values(opts.sort_by, ascending=opts.sort_by == "max_drawdown", na_position="last")
        table = Table(title=f"{ticker}: top {min(opts.top_n, len(top))} of {counts[ticker]} by {opts.sort_by} "
                            f"(out-of-sample = last {opts.test_fraction:.0%})")
        for col in [*params, *SUMMARY, "oos_sharpe", "oos_total_return"]:
            table.add_column(col, justify="right")
        for _, row in top.head(opts.top_n).iterrows():
            table.add_row(*[_fmt(row[c]) for c in [*params, *SUMMARY, "oos_sharpe", "oos_total_return"]])
        console.print(table)
        rep = reports[ticker]
        dsr, pbo = rep.get("dsr"), rep.get("pbo")
        used, total = rep.get("pbo_combinations"), rep.get("pbo_combinations_total")
        sampled = f", {used:,} of {total:,} combinations drawn" if used and total and used < total else ""
        console.print(f"{ticker}: deflated Sharpe ratio of the best = {_fmt(dsr)} over {rep.get('n_trials')} trials "
                      f"({'passes' if dsr is not None and dsr >= 0.95 else 'REJECTS'} at 0.95); "
                      f"PBO (CSCV, {opts.pbo_splits} splits{sampled}) = {_fmt(pbo)}"
                      f"{' - likely overfit' if pbo is not None and pbo >= 0.5 else ''}")


def _print_wfo(runs: dict[str, WFOResult], params: list[str]) -> None:
    import pandas as pd
    from rich.console import Console
    from rich.table import Table

    console = Console(file=sys.stdout, width=160)
    for ticker, res in runs.items():
        sort_by = res.sort_by
        table = Table(title=f"{ticker}: walk-forward optimisation, {len(res.folds)} "
                            f"{'anchored' if res.anchored else 'rolling'} folds, chosen by in-sample {sort_by}")
        cols = ["fold", "train_start", "test_start", "test_end", *params, f"is_{sort_by}", f"oos_{sort_by}",
                "oos_total_return", "oos_trades"]
        for col in cols:
            table.add_column(col, justify="right")
        for _, row in res.folds.iterrows():
            table.add_row(*[str(row[c].date()) if isinstance(row[c], pd.Timestamp) else _fmt(row[c]) for c in cols])
        console.print(table)
        m, stab = res.metrics, res.stability
        console.print(f"{ticker}: stitched out-of-sample ({len(res.returns)} bars): "
                      + ", ".join(f"{k} {_fmt(m[k])}" for k in SUMMARY))
        console.print(f"{ticker}: walk-forward efficiency (OOS / mean IS CAGR) {_fmt(res.efficiency)}; parameter "
                      "stability (share of folds on the modal value): "
                      + ", ".join(f"{k} {_fmt(stab[k]['modal_fraction'])}" for k in stab))


def _fmt(v: Any) -> str:
    import numpy as np

    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return "-"
    return f"{v:.4g}" if isinstance(v, (float, np.floating)) else str(v)
