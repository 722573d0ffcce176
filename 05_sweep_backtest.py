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

import sys
from pathlib import Path

from alphasignal.backtest.command import sweep_command
from alphasignal.cli import build_parser, run
from alphasignal.market.universe import ALL, is_long_table, read_tickers_file

# command-line flag -> sweep/dataset config key (each also settable with --set section.key=value)
_FLAGS = {"strategy": "sweep.strategy", "strategy_file": "sweep.strategy_file", "grid": "sweep.grid",
          "tickers": "dataset.tickers", "mode": "sweep.mode",
          "fill": "sweep.fill", "entry": "sweep.entry", "fees_bps": "sweep.fees_bps",
          "slippage_bps": "sweep.slippage_bps", "device": "sweep.device", "engine": "sweep.engine",
          "max_memory": "sweep.max_memory_mb",
          "output": "sweep.output", "top": "sweep.top_n", "source": "dataset.source", "csv": "dataset.csv_path",
          "walk_forward": "sweep.walk_forward", "anchored": "sweep.anchored", "cluster": "sweep.cluster"}


def _parser():
    parser = build_parser(__doc__)
    g = parser.add_argument_group("sweep")
    g.add_argument("--strategy", help="MA_Crossover | Bollinger_Breakout | RSI_Reversion | MACD | Donchian_Breakout, "
                   "or the class name of a strategy in --strategy-file")
    g.add_argument("--strategy-file", metavar="FILE.py", help="a Python file with your own strategy class "
                   "(sweep.strategy_file; see the README's \"Write your own strategy\")")
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
    return parser


def _main(args, cfg) -> int:
    from config import load_config

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


if __name__ == "__main__":
    sys.exit(run(_main, _parser()))
