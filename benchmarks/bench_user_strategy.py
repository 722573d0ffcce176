"""Benchmark: a strategy written by a user against the built-in it re-writes, as a ratio of times.

``examples/ma_crossover_user.py`` (MA_Crossover as a user strategy: a vectorised ``positions`` run through the
kernels' positions rule), ``examples/ma_crossover_rule.py`` (the same as a Numba-compiled per-configuration rule) and
the built-in MA_Crossover sweep the same grid -- the 10,948-configuration benchmark grid
of ``bench_sweep.py`` (short 2..50 x long 10..250, short < long) with use_ema false -- over the last ``--bars`` real
daily AAPL bars, with every metric, on the same engine. Both are checked equal (the largest metric difference is
printed), then timed: best and median of ``--repeats`` runs of ``run_sweep`` each, after one warm-up run (compiling
or loading the kernels). The user strategy's extra time is its positions matrix (bars x configurations, computed
in NumPy by its own code) and the kernel reading it, where the built-in compares two shared indicator rows.

usage: python -m benchmarks.bench_user_strategy [--bars 5000] [--repeats 5] [--engine numba|numpy]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

GRID = {"short_period": {"min": 2, "max": 50}, "long_period": {"min": 10, "max": 250}, "use_ema": [False]}


def _times(fn, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bars", type=int, default=5000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--engine", default="numba", choices=["numba", "numpy"])
    args = ap.parse_args()

    from alphasignal.backtest import METRICS, run_sweep
    from alphasignal.backtest.user_strategy import load_strategy
    from alphasignal.config import SweepConfig
    from alphasignal.market import load_ohlcv

    df = load_ohlcv("AAPL", source="offline").iloc[-args.bars:]
    opts = SweepConfig(device="cpu", engine=args.engine)
    user = load_strategy("MyMACrossover", str(ROOT / "examples" / "ma_crossover_user.py"))
    rule = load_strategy("RuleMACrossover", str(ROOT / "examples" / "ma_crossover_rule.py"))
    no_ema = {k: v for k, v in GRID.items() if k != "use_ema"}
    runs = {"built-in MA_Crossover": lambda: run_sweep(df, "MA_Crossover", GRID, options=opts),
            "user positions": lambda: run_sweep(df, user, GRID, options=opts),
            "user Numba rule": lambda: run_sweep(df, rule, no_ema, options=opts)}
    frames = {name: run() for name, run in runs.items()}  # warm-up: compile or load the kernels
    ref = frames["built-in MA_Crossover"]
    print(f"AAPL daily, {len(df):,} bars x {len(ref):,} configurations, engine {args.engine}, "
          f"{args.repeats} runs each; load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    for name, frame in list(frames.items())[1:]:
        diff = max(float(np.nanmax(np.abs(frame[m].to_numpy(float) - ref[m].to_numpy(float)), initial=0.0))
                   for m in METRICS)
        print(f"largest metric difference {name} vs built-in: {diff:.1e}")
    best = {}
    for name, run in runs.items():
        walls = _times(run, args.repeats)
        best[name] = min(walls)
        print(f"{name:<24} best {min(walls):8.3f} s   median {np.median(walls):8.3f} s   "
              f"{len(ref) * len(df) / min(walls) / 1e6:8.1f} M config-bars/s")
    for name in list(runs)[1:]:
        print(f"{name} / built-in time ratio (best runs): {best[name] / best['built-in MA_Crossover']:.2f}x")


if __name__ == "__main__":
    main()
