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

from alphasignal.cli import run_stage
from alphasignal.cli import sweep as stage

if __name__ == "__main__":
    sys.exit(run_stage(stage, __doc__))
