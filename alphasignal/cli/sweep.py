"""Stage 05 entry: ``add_arguments(parser)`` and ``main(args, cfg)`` (05_sweep_backtest.py only wires them up).

The sweep itself is imported when ``main`` runs, so ``--help`` and bad flags answer without loading the engines.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..config import Config, load_config

from .common import add_strategy_options

# command-line flag -> sweep/dataset config key (each also settable with --set section.key=value)
_FLAGS = {"strategy": "sweep.strategy", "strategy_file": "sweep.strategy_file", "grid": "sweep.grid",
          "tickers": "dataset.tickers", "mode": "sweep.mode",
          "fill": "sweep.fill", "entry": "sweep.entry", "fees_bps": "sweep.fees_bps",
          "slippage_bps": "sweep.slippage_bps", "device": "sweep.device", "engine": "sweep.engine",
          "max_memory": "sweep.max_memory_mb",
          "output": "sweep.output", "top": "sweep.top_n", "source": "dataset.source", "csv": "dataset.csv_path",
          "walk_forward": "sweep.walk_forward", "anchored": "sweep.anchored", "cluster": "sweep.cluster"}



def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Stage 05 options (each one a shortcut for a ``sweep.*`` or ``dataset.*`` config value)."""
    g = parser.add_argument_group("sweep")
    add_strategy_options(g, "sweep", "MA_Crossover | Bollinger_Breakout | RSI_Reversion | MACD | Donchian_Breakout")
    g.add_argument("--grid", help="TOML table of value lists or {min, max, step} ranges (sweep.grid)")
    g.add_argument("--tickers", help="comma-separated tickers (dataset.tickers)")
    g.add_argument("--mode", help="long_only | long_short")
    g.add_argument("--fill", help="close (signal at close t, held from t+1) | next_open")
    g.add_argument("--entry", help="MA_Crossover/MACD: state (hold the side of the cross, default) | cross (enter "
                   "only on a crossover event, as backtesting.py)")
    g.add_argument("--fees-bps", help="fees in basis points of traded value")
    g.add_argument("--slippage-bps", help="slippage in basis points of the fill price")
    g.add_argument("--device", help="auto | cpu | gpu")
    g.add_argument("--engine", help="numba | numpy | cupy")
    g.add_argument("--max-memory", help="memory bound in MB for one chunk of configurations")
    g.add_argument("--output", help="results file (.csv or .parquet); metadata JSON is written beside it")
    g.add_argument("--top", help="rows in the printed top-N table")
    g.add_argument("--source", help="data source: auto | yfinance | offline | csv")
    g.add_argument("--csv", help="CSV/Parquet OHLCV file (implies --source csv)")
    g.add_argument("--walk-forward", metavar="K", help="also run walk-forward optimisation over K folds (>= 2): "
                   "choose by sweep.sort_by on each training window, trade it on the next; stitched OOS metrics")
    g.add_argument("--anchored", action="store_const", const="true",
                   help="walk-forward training windows start at the first bar (default: they roll)")
    g.add_argument("--cluster", help="Dask: local[:N] (N worker processes here) or tcp://HOST:8786 (a running "
                   "scheduler); default in-process (sweep.cluster)")
    g.add_argument("--tickers-file", metavar="FILE", help="universe: one ticker a line (# comments allowed)")


def main(args: argparse.Namespace, cfg: Config) -> int:
    """Run the sweep with the shortcuts applied."""
    from ..market.universe import ALL, is_long_table, read_tickers_file
    from ..backtest.command import sweep_command

    sets = [f"{key}={getattr(args, flag)}" for flag, key in _FLAGS.items() if getattr(args, flag) is not None]
    if args.tickers_file:
        sets.append(f"dataset.tickers={','.join(read_tickers_file(args.tickers_file))}")
    if args.csv and args.source is None:
        sets.append("dataset.source=csv")
    if args.csv and args.tickers is None and not args.tickers_file:  # results are named by the file, as in stage 01
        sets.append(f"dataset.tickers={ALL if is_long_table(args.csv) else Path(args.csv).stem}")
    if sets:
        cfg = load_config(args.config, [*args.overrides, *sets])
    return sweep_command(cfg, progress=not args.quiet)
