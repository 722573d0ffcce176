"""Benchmark: the stage 05 sweep (10,948 MA-crossover configurations: short 2..50 x long 10..250, short < long;
full-sample, in-sample and out-of-sample metrics, PBO block sums, and each ticker's DSR/PBO report) over many
tickers, three ways through the one seam (alphasignal.backtest.distributed): in-process, LocalCluster(1) and
LocalCluster(2) worker processes.

Tickers are seeded block bootstraps (250-bar blocks) of real daily AAPL log returns, one seed per ticker. Each row
prints the start-up time (cluster start, workers importing, the WorkerPlugin warming the Numba kernel: the wait
before a first sweep can begin) and the sweep time (all tickers, results reduced on the client one ticker at a
time). Threads: in-process Numba uses the machine's cores; each LocalCluster worker gets --threads Numba threads.
Ratios printed: cluster overhead = LocalCluster(2) / in-process (equal cores when --threads 1 on 2 cores) and
scaling = LocalCluster(1) / LocalCluster(2) (one worker vs two, the same threads each).
Every cluster run is also checked bit for bit against the in-process results.
Each ticker also gets its DSR and PBO report, as stage 05 makes them (inside the task when a ticker is one block,
which is always the case here), and the reports are checked for equality too; --sweep-only leaves them out.

usage: python -m benchmarks.bench_distributed [--tickers 100] [--bars 2520] [--threads 1] [--sweep-only]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import pandas as pd

GRID = {"short_period": {"min": 2, "max": 50}, "long_period": {"min": 10, "max": 250}}


def universe(n_tickers: int, bars: int) -> dict[str, pd.DataFrame]:
    """Seeded block bootstraps of real AAPL daily log returns (re-centred to ~5 % a year of drift)."""
    from alphasignal.market import load_ohlcv

    real = load_ohlcv("AAPL", source="offline")
    logret = np.diff(np.log(real["Close"].to_numpy()))[-8000:]
    logret = logret - logret.mean() + 2e-4
    out = {}
    for i in range(n_tickers):
        rng = np.random.default_rng(i)
        starts = rng.integers(0, len(logret) - 250, bars // 250 + 1)
        close = 100 * np.exp(np.concatenate([[0.0], np.cumsum(np.concatenate([logret[s:s + 250]
                                                                            for s in starts])[:bars - 1])]))
        out[f"T{i:03d}"] = pd.DataFrame({"Open": close, "High": close, "Low": close, "Close": close},
                                        index=pd.bdate_range("2000-01-03", periods=bars))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tickers", type=int, default=100)
    ap.add_argument("--bars", type=int, default=2520)
    ap.add_argument("--threads", type=int, default=1, help="Numba threads per LocalCluster worker")
    ap.add_argument("--sweep-only", action="store_true", help="leave out each ticker's DSR/PBO report (stage 05 "
                    "makes one)")
    args = ap.parse_args()

    from alphasignal.backtest.distributed import Executor
    from alphasignal.backtest.engine import prepare_prices
    from alphasignal.backtest.strategies import get_strategy, grid_frame, split_valid
    from alphasignal.backtest.sweep_tasks import sweep_tickers, warm_up
    from alphasignal.backtest.xp import resolve
    from alphasignal.config import SweepConfig

    opts = SweepConfig()
    backend = resolve(opts.device, opts.engine)
    strat = get_strategy("MA_Crossover")
    configs = grid_frame(strat, GRID)
    plan = {}
    for t, df in universe(args.tickers, args.bars).items():
        prices = prepare_prices(df, t)
        plan[t] = (prices, split_valid(strat, configs, prices.n)[0])
    k = sum(len(v) for _, v in plan.values())
    print(f"{args.tickers} tickers x {k // args.tickers:,} valid MA configs x {args.bars} bars = {k:,} backtests "
          f"(+ is/oos windows{', DSR and PBO' if not args.sweep_only else ''}); {os.cpu_count()} cores, load average "
          f"{os.getloadavg()[0]:.2f}")

    rows, ref = {}, None
    for label, cluster in (("in-process", ""), ("LocalCluster(1)", "local:1"), ("LocalCluster(2)", "local:2")):
        t0 = time.perf_counter()
        with Executor(cluster, warm=warm_up(plan, strat, opts, backend), numba_threads=args.threads) as ex:
            if not cluster:  # in-process: the warm-up is the first call of the kernel in this process
                warm_up(plan, strat, opts, backend)()
            start = time.perf_counter() - t0
            t1 = time.perf_counter()
            frames = {r.ticker: (r.frame.select_dtypes("float").to_numpy().tobytes(), r.report) for r in
                      sweep_tickers(ex, plan, strat, opts, backend, reports=not args.sweep_only)}
            sweep = time.perf_counter() - t1
        same = "reference" if ref is None else ("bit-identical" if frames == ref else "DIFFERENT")
        ref = ref or frames
        rows[label] = sweep
        print(f"{label:16s} start-up {start:6.2f} s   sweep {sweep:7.2f} s   {k * args.bars / sweep / 1e6:8.1f} M "
              f"config-bars/s   {same}")
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    print(f"cluster overhead, LocalCluster(2) / in-process: {rows['LocalCluster(2)'] / rows['in-process']:.2f}x "
          "(goal <= 1.10)")
    print(f"scaling, LocalCluster(1) / LocalCluster(2): {rows['LocalCluster(1)'] / rows['LocalCluster(2)']:.2f}x "
          "(goal >= 1.70)")


if __name__ == "__main__":
    main()
