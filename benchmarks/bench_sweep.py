"""Benchmark: the 10,948-configuration MA-crossover sweep (short 2..50 x long 10..250, short < long) over ~5,000 real
daily AAPL bars with all metrics, for this engine and for vectorbt in the same run; then scaling to 500,000 bars.

Each measurement runs in its own subprocess so peak memory (max RSS) is per engine; "extra" is the peak minus the
process's RSS after imports and data loading. vectorbt is run in chunks of configurations (--vbt-chunk), each
chunk's objects freed (they hold reference cycles: without gc.collect() memory grows to ~7 GB), so it does not
take ~8 GB of a shared machine; its figures are per configuration-bar and comparable anyway. Our engine's time is
the best of 7 runs (the median is printed too: this machine's 2 shared vCPUs are noisy).
The scaling rows extend real AAPL daily returns synthetically (a seeded block bootstrap of 250-bar blocks of
recent AAPL log returns, re-centred to ~5 % a year of drift).

Beside the plain sweep, the same child times walk-forward optimisation (``walk_forward_optimize``, K=5 folds,
rolling and anchored) on the same grid and bars and prints it as a ratio to the plain sweep's time.

`--grid 1m` runs the GPU goal's sweep of over a million configurations instead: Bollinger_Breakout, period 5..200 x
num_std 0.5..4.0 in steps of 0.001 x both modes = 1,372,392 configurations (MA_Crossover's PARAM_SPECS allow only
~119,000) over the same bars, without vectorbt or the scaling rows; with --engine cupy it also runs Numba on the same
grid and prints the largest Sharpe difference.

First it times the README's default stage 05 command end to end from the shell (``python 05_sweep_backtest.py``,
its output in a temporary directory): cold (an empty Numba cache of its own, NUMBA_CACHE_DIR: start fast runs the
NumPy engine while a background process compiles), then warm (once that compile has filled the cache: the Numba
kernel loads), and cold without start fast (``--set sweep.start_fast=false``: compiling first, the old behaviour).
``--start-fast`` prints only these rows.

`--kernels blocks,lanes,scalar@e6eda67` runs our engine once per Numba kernel (``sweep.kernel``: blocks, lanes) in the
same run on the same data, and prints each one's rows (the first one's feed the goal, walk-forward and scaling rows)
and their ratios to the last one, engine alone and end to end. ``KERNEL@REV`` runs the project as it was at git
revision REV (a temporary worktree; its child compiles its own kernels before timing): ``scalar@e6eda67`` is the
one-bar-at-a-time kernel before the SIMD block scans, the baseline of the blocks kernel's speed-up. ``--rounds N``
runs the kernels in turn N times (A, B, A, B, ...) and takes the best and the median over all rounds, so that a
change in the shared machine's load between two children does not favour one kernel.
`--no-start-fast` skips the start-fast rows.

usage: python -m benchmarks.bench_sweep [--bars 5000] [--scale 50000,500000] [--skip-vectorbt]
                                        [--engine numba|numpy|cupy] [--grid benchmark|1m] [--start-fast]
                                        [--kernels blocks,lanes,scalar@e6eda67] [--rounds 1] [--no-start-fast]
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]

GRIDS = {"benchmark": ("MA_Crossover", {"short_period": {"min": 2, "max": 50},
                                        "long_period": {"min": 10, "max": 250}}),
         "1m": ("Bollinger_Breakout", {"period": {"min": 5, "max": 200},
                                       "num_std": {"min": 0.5, "max": 4.0, "step": 0.001},
                                       "mean_reversion": [False, True]})}
REPEATS = 7
WFO_FOLDS = 5
ANCHORS = {"vectorbt 1.2 (anchor, S&P 500, unchunked)": (28.7, 1.9e6, 7.7e9),
           "fused Numba loop, 2 threads (anchor)": (0.049, 1124e6, 288e6)}


def _rss() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024.0


def _current_rss() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _prices(bars: int) -> pd.DataFrame:
    from alphasignal.market import load_ohlcv

    real = load_ohlcv("AAPL", source="offline")
    if bars <= len(real):
        return real.iloc[-bars:]
    logret = np.diff(np.log(real["Close"].to_numpy()))[-8000:]  # the recent, liquid part of the history
    logret = logret - logret.mean() + 2e-4  # keep ~5 % a year of drift so prices stay in a sane range
    rng = np.random.default_rng(0)
    starts = rng.integers(0, len(logret) - 250, bars // 250 + 1)
    path = np.concatenate([logret[s:s + 250] for s in starts])[:bars - 1]
    close = 100 * np.exp(np.concatenate([[0.0], np.cumsum(path)]))
    return pd.DataFrame({"Open": close, "High": close, "Low": close, "Close": close},
                        index=pd.bdate_range("1900-01-01", periods=bars))


def _child_ours(bars: int, engine: str, grid_name: str, kernel: str = "") -> dict:
    from alphasignal.backtest import PARAM_SPECS, run_sweep
    from alphasignal.config import SweepConfig

    df, (strategy, grid) = _prices(bars), GRIDS[grid_name]
    opts = SweepConfig(device="gpu" if engine == "cupy" else "cpu", engine=engine, max_memory_mb=256,
                       **({"kernel": kernel} if kernel else {}))
    defaults = {k: [spec.default] for k, spec in PARAM_SPECS[strategy].items()}
    run_sweep(df.iloc[:300], strategy, defaults, options=opts)  # JIT compile / disk-cache load
    base = _current_rss()
    walls, cpu, res = [], float("inf"), None
    for _ in range(_repeats(bars, grid_name)):
        t0, c0 = time.perf_counter(), time.process_time()
        res = run_sweep(df, strategy, grid, options=opts)
        walls.append(time.perf_counter() - t0)
        cpu = min(cpu, time.process_time() - c0)
    engine_s, engine_cpu, engine_med = _engine_only(df, strategy, grid, opts, _repeats(bars, grid_name))
    wfo = _wfo_times(df, strategy, grid, opts, REPEATS) if grid_name == "benchmark" and bars <= 10_000 else {}
    return {"seconds": min(walls), "median_seconds": float(np.median(walls)), "cpu_seconds": cpu,
            "configs": len(res), "bars": len(df), "peak": _rss(), "extra": _rss() - base,
            "sharpe": res["sharpe"].tolist(), "engine_seconds": engine_s, "engine_cpu_seconds": engine_cpu,
            "engine_median_seconds": engine_med, "wfo_seconds": wfo}


def _wfo_times(df: pd.DataFrame, strategy: str, grid: dict, opts, repeats: int) -> dict[str, float]:
    """Best wall seconds of ``walk_forward_optimize`` with K=5 folds, rolling and anchored, on the sweep's grid."""
    from alphasignal.backtest.wfo import walk_forward_optimize

    out = {}
    for anchored in (False, True):
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            walk_forward_optimize(df, strategy, grid, options=opts, folds=WFO_FOLDS, anchored=anchored)
            best = min(best, time.perf_counter() - t0)
        out["anchored" if anchored else "rolling"] = best
    return out


def _repeats(bars: int, grid_name: str) -> int:
    return 1 if bars > 100_000 else (3 if bars > 10_000 or grid_name != "benchmark" else REPEATS)


def _engine_only(df: pd.DataFrame, strategy: str, grid: dict, opts, repeats: int) -> tuple[float, float, float]:
    """Best wall and CPU seconds, and median wall seconds, of the engine alone (``engine.simulate``: indicator
    table + kernel + accumulators), without run_sweep's grid expansion, validation and metrics DataFrame."""
    from alphasignal.backtest.engine import prepare_prices, simulate
    from alphasignal.backtest.strategies import get_strategy, grid_frame, split_valid
    from alphasignal.backtest.xp import resolve

    prices = prepare_prices(df, "AAPL")
    configs, _ = split_valid(strategy, grid_frame(strategy, grid), prices.n)
    strat, backend = get_strategy(strategy), resolve(opts.device, opts.engine)
    walls, cpu = [], float("inf")
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        simulate(prices, strat, configs, opts, backend)
        walls.append(time.perf_counter() - t0)
        cpu = min(cpu, time.process_time() - c0)
    return min(walls), cpu, float(np.median(walls))


def _child_vectorbt(bars: int, chunk: int) -> dict:
    import vectorbt as vbt

    from alphasignal.backtest import expand_grid


    df = _prices(bars)
    close = df["Close"]
    pairs = [(c["short_period"], c["long_period"]) for c in expand_grid(*GRIDS["benchmark"])
             if c["short_period"] < c["long_period"]]
    base = _current_rss()
    sharpe = []
    t0 = time.perf_counter()
    for lo in range(0, len(pairs), chunk):
        part = pairs[lo:lo + chunk]
        fast = vbt.MA.run(close, window=[s for s, _ in part], short_name="fast")
        slow = vbt.MA.run(close, window=[w for _, w in part], short_name="slow")
        entries = pd.DataFrame(fast.ma.to_numpy() > slow.ma.to_numpy(), index=close.index)  # NaN -> flat
        pf = vbt.Portfolio.from_signals(close, entries, ~entries, init_cash=1.0, fees=1e-4, freq="1D")
        sharpe += pf.sharpe_ratio(year_freq="252 days").tolist()
        pf.total_return(), pf.max_drawdown(), pf.trades.count(), pf.trades.win_rate()
        del fast, slow, entries, pf
        gc.collect()  # vectorbt's objects hold reference cycles: free each chunk before the next
    return {"seconds": time.perf_counter() - t0, "configs": len(pairs), "bars": len(df), "peak": _rss(),
            "extra": _rss() - base, "sharpe": sharpe}


def _spawn(*args: str, cwd: Path = ROOT) -> dict:
    out = subprocess.run([sys.executable, "-m", "benchmarks.bench_sweep", "--child", *args], cwd=cwd,
                         capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"benchmark child {args} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _row(name: str, r: dict) -> str:
    rate = r["configs"] * r["bars"] / r["seconds"]
    return (f"{name:<46} {r['configs']:>9,} {r['bars']:>8,} {r['seconds']:>9.3f} {rate / 1e9:>10.4f} "
            f"{r['peak'] / 2**20:>9.0f} {r['extra'] / 2**20:>9.0f}")


def _command(env: dict[str, str], out: Path, *extra: str) -> tuple[float, dict]:
    """Wall seconds of ``python 05_sweep_backtest.py`` (the README's default) from the shell, and its metadata."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "05_sweep_backtest.py", "--output", str(out), *extra], cwd=ROOT, env=env,
                   check=True, capture_output=True)
    return time.perf_counter() - t0, json.loads(out.with_suffix(".meta.json").read_text())


def _wait_for_background_compile(env: dict[str, str], tmp: Path) -> float:
    """Seconds until a run finds the Numba kernel cached (the background compile holds its lock meanwhile)."""
    import fcntl

    from alphasignal.backtest.startfast import lock_path

    t0 = time.perf_counter()
    for i in range(120):
        with open(lock_path(env["NUMBA_CACHE_DIR"]), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # waits while the compile runs
        if _command(env, tmp / f"poll{i}.csv")[1]["engine"] == "numba":
            return time.perf_counter() - t0
        time.sleep(2)
    raise SystemExit("the background compile did not fill the Numba cache within the polling time")


def start_fast_rows() -> None:
    """Cold and warm end-to-end times of the README's default stage 05 command (see the module docstring)."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="bench_start_fast_") as name:
        tmp = Path(name)
        env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp / "numba_cache")}
        cold, meta = _command(env, tmp / "cold.csv")
        print(f"start fast: `python 05_sweep_backtest.py`, empty Numba cache: {cold:.2f} s end to end, engine "
              f"{meta['engine']} (goal <= 5 s; load average {os.getloadavg()[0]:.2f})", flush=True)
        waited = _wait_for_background_compile(env, tmp)
        warm = sorted(_command(env, tmp / f"warm{i}.csv")[0] for i in range(3))
        print(f"start fast: warm (the background compile filled the cache {waited:.0f} s after the cold run ended): "
              f"{warm[0]:.2f} s end to end, engine numba (best of 3, median {warm[1]:.2f})", flush=True)
        env_old = {**env, "NUMBA_CACHE_DIR": str(tmp / "numba_cache_old")}
        old, meta = _command(env_old, tmp / "old.csv", "--set", "sweep.start_fast=false")
        print(f"start fast: without it (--set sweep.start_fast=false), empty cache: {old:.2f} s end to end, engine "
              f"{meta['engine']} (compiling first)", flush=True)


def _report_large(args: argparse.Namespace, ours: dict) -> None:
    """The GPU goal's sweep: throughput against 50 G cfg·bar/s, and (for cupy) Sharpe parity with the Numba kernel
    on every one of the ~1M configurations."""
    eng = ours["configs"] * ours["bars"]
    print(f"goal >= 50 G cfg·bar/s on a GPU: {eng / ours['seconds'] / 1e9:.2f} G cfg·bar/s end to end (best of 3, "
          f"median {eng / ours['median_seconds'] / 1e9:.2f}); engine alone {eng / ours['engine_seconds'] / 1e9:.2f} "
          f"G cfg·bar/s; peak RSS {ours['peak'] / 2**20:.0f} MB")
    if args.engine != "numba":
        ref = _spawn("ours", str(args.bars), "numba", args.grid)
        print(_row("alphasignal numba (same grid)", ref))
        diff = np.nanmax(np.abs(np.array(ours["sharpe"]) - np.array(ref["sharpe"])))
        print(f"max |Sharpe difference| {args.engine} vs numba over {ours['configs']:,} configs: {diff:.2e}")


@contextlib.contextmanager
def _checkout(rev: str) -> Iterator[Path]:
    """A temporary git worktree of revision ``rev`` of this repository (removed afterwards)."""
    tmp = Path(tempfile.mkdtemp(prefix="bench-sweep-"))
    tree = tmp / rev
    made = subprocess.run(["git", "worktree", "add", "--detach", str(tree), rev], cwd=ROOT, capture_output=True,
                          text=True, check=False)
    if made.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise SystemExit(f"error: cannot check out {rev!r} for a baseline ({made.stderr.strip()[-300:]}): give a "
                         "revision of this git repository, e.g. scalar@e6eda67")
    try:
        yield tree
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, capture_output=True,
                       check=False)
        shutil.rmtree(tmp, ignore_errors=True)


def _run_kernel(spec: str, args: argparse.Namespace, trees: dict[str, Path]) -> dict:
    """One ``--kernels`` entry: ``KERNEL`` in this checkout, ``KERNEL@REV`` in ``trees[REV]``, a worktree of REV."""
    kern, _, rev = spec.partition("@")
    return _spawn("ours", str(args.bars), args.engine, args.grid, kern, cwd=trees[rev] if rev else ROOT)


def _merge_rounds(rounds: list[dict]) -> dict:
    """One kernel's results over ``--rounds``: the best of the bests, the median of the medians, the largest peak."""
    out = dict(rounds[0])
    for key in ("seconds", "cpu_seconds", "engine_seconds", "engine_cpu_seconds"):
        out[key] = min(r[key] for r in rounds)
    for key in ("median_seconds", "engine_median_seconds"):
        out[key] = float(np.median([r[key] for r in rounds]))
    out["wfo_seconds"] = {k: min(r["wfo_seconds"][k] for r in rounds) for k in rounds[0]["wfo_seconds"]}
    out["peak"], out["extra"] = max(r["peak"] for r in rounds), max(r["extra"] for r in rounds)
    return out


def _kernel_rows(runs: dict[str, dict]) -> None:
    """Each Numba kernel's engine-alone and end-to-end times (best, median), and each one's speed-up over the last
    one (the baseline, e.g. scalar@e6eda67 in ``--kernels blocks,scalar@e6eda67``)."""
    base_name, base = list(runs.items())[-1]
    for kern, r in runs.items():
        cb = r["configs"] * r["bars"]
        print(f"kernel {kern:<15} engine alone {r['engine_seconds']:.3f} s best, {r['engine_median_seconds']:.3f} s "
              f"median ({cb / r['engine_seconds'] / 1e9:.3f} G cfg·bar/s); end to end {r['seconds']:.3f} s best, "
              f"{r['median_seconds']:.3f} s median; speed-up over {base_name}: "
              f"{base['engine_seconds'] / r['engine_seconds']:.2f}x engine alone (median "
              f"{base['engine_median_seconds'] / r['engine_median_seconds']:.2f}x), "
              f"{base['seconds'] / r['seconds']:.2f}x end to end", flush=True)
    sharpe = [np.array(r["sharpe"]) for r in runs.values()]
    diff = max(float(np.nanmax(np.abs(a - sharpe[-1]))) for a in sharpe)
    print(f"max |Sharpe difference| between kernels over {base['configs']:,} configs: {diff:.2e}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bars", type=int, default=5000)
    ap.add_argument("--scale", default="50000,500000", help="bar counts for the scaling rows ('' to skip)")
    ap.add_argument("--engine", default="numba", choices=["numba", "numpy", "cupy"])
    ap.add_argument("--grid", default="benchmark", choices=list(GRIDS), help="'1m': the GPU goal's 1M configs")
    ap.add_argument("--skip-vectorbt", action="store_true")
    ap.add_argument("--vbt-chunk", type=int, default=500)
    ap.add_argument("--start-fast", action="store_true", help="only the cold/warm rows of the default command")
    ap.add_argument("--no-start-fast", action="store_true", help="skip the cold/warm rows of the default command")
    ap.add_argument("--kernels", default="", help="Numba kernels to run and compare, e.g. blocks,lanes,scalar@e6eda67 "
                    "(sweep.kernel, KERNEL@REV: at git revision REV; default: the configured one)")
    ap.add_argument("--rounds", type=int, default=1, help="run the --kernels in turn this many times (best and "
                    "median over all rounds)")
    ap.add_argument("--child", nargs="*")
    args = ap.parse_args()
    if args.rounds < 1:
        ap.error(f"--rounds must be at least 1 (got {args.rounds})")
    if args.child:
        kind, bars, *extra = args.child
        res = _child_ours(int(bars), *extra) if kind == "ours" else _child_vectorbt(int(bars), int(extra[0]))
        print(json.dumps(res))
        return
    import numba

    print(f"machine: {os.cpu_count()} CPUs, numba threads {numba.config.NUMBA_NUM_THREADS}, "
          f"load average {os.getloadavg()[0]:.2f} (shared with other work: figures are noisy)")
    if args.start_fast or not args.no_start_fast:
        start_fast_rows()
    if args.start_fast:
        return
    header = (f"{'method':<46} {'configs':>9} {'bars':>8} {'seconds':>9} {'G cfg·bar/s':>10} {'peak MB':>9} "
              f"{'extra MB':>9}")
    print(header)
    kernels = [k for k in args.kernels.split(",") if k] or [""]
    label = "(real AAPL)" if args.grid == "benchmark" else GRIDS[args.grid][0]
    rounds: dict[str, list[dict]] = {kern: [] for kern in kernels}
    with contextlib.ExitStack() as stack:
        trees = {rev: stack.enter_context(_checkout(rev)) for rev in {k.partition("@")[2] for k in kernels} - {""}}
        for n in range(args.rounds):  # kernels in turn, round after round: a shift in the machine's load hits all
            for kern in kernels:
                rounds[kern].append(r := _run_kernel(kern, args, trees))
                tag = f" {kern}" if kern else ""
                print(_row(f"alphasignal {args.engine}{tag} {label}" + (f" #{n + 1}" if args.rounds > 1 else ""), r),
                      flush=True)
    runs = {kern: _merge_rounds(rs) for kern, rs in rounds.items()}
    for kern, r in runs.items():
        for kind, sec in r["wfo_seconds"].items():
            label = f"walk-forward optimisation K={WFO_FOLDS}, {kind}" + (f" ({kern})" if kern else "")
            print(f"{label:<46} {r['configs']:>9,} {r['bars']:>8,} "
                  f"{sec:>9.3f}   = {sec / r['seconds']:.2f}x the plain sweep (goal <= 3x; best of "
                  f"{REPEATS * args.rounds} each)", flush=True)
    ours = runs[kernels[0]]
    if len(kernels) > 1:
        _kernel_rows(runs)
    if args.grid != "benchmark":
        _report_large(args, ours)
        return
    if not args.skip_vectorbt:
        vbt = _spawn("vectorbt", str(args.bars), str(args.vbt_chunk))
        print(_row(f"vectorbt (chunks of {args.vbt_chunk})", vbt))
        diff = np.nanmax(np.abs(np.array(ours["sharpe"]) - np.array(vbt["sharpe"])))
        print(f"speed ratio alphasignal / vectorbt: {vbt['seconds'] / ours['seconds']:.0f}x (median "
              f"{vbt['seconds'] / ours['median_seconds']:.0f}x); "
              f"max |Sharpe difference| over {ours['configs']:,} configs: {diff:.2e}")
        for kern, r in list(runs.items())[1:]:
            print(f"speed ratio alphasignal {kern} / vectorbt: {vbt['seconds'] / r['seconds']:.0f}x (median "
                  f"{vbt['seconds'] / r['median_seconds']:.0f}x), end to end")
    for name, (sec, rate, peak) in ANCHORS.items():
        print(f"{name:<46} {10948:>9,} {5031:>8,} {sec:>9.3f} {rate / 1e9:>10.4f} {peak / 2**20:>9.0f} {'':>9}")
    rate = ours["configs"] * ours["bars"] / ours["seconds"]
    med = ours["configs"] * ours["bars"] / ours["median_seconds"]
    print(f"goal >= 0.8 G cfg·bar/s and <= 512 MB: {rate / 1e9:.3f} G cfg·bar/s wall clock, best of {REPEATS} "
          f"(median {med / 1e9:.3f}; {rate / 1124e6:.2f}x the fused-loop anchor), "
          f"peak RSS {ours['peak'] / 2**20:.0f} MB")
    per_cpu = ours["configs"] * ours["bars"] / ours["cpu_seconds"]
    print(f"CPU time {ours['cpu_seconds']:.3f} s (all threads): {per_cpu / 1e9:.3f} G cfg·bar per CPU-second, "
          f"i.e. ~{2 * per_cpu / 1e9:.2f} G cfg·bar/s on 2 idle cores (an estimate; wall clock is what was measured)")
    eng = ours["configs"] * ours["bars"]
    print(f"engine alone (simulate: indicator table + kernel): {ours['engine_seconds']:.3f} s wall = "
          f"{eng / ours['engine_seconds'] / 1e9:.3f} G cfg·bar/s, {ours['engine_cpu_seconds']:.3f} s CPU = "
          f"{eng / ours['engine_cpu_seconds'] / 1e9:.3f} G cfg·bar per CPU-second; the rest of run_sweep's time is "
          "grid expansion, validation and the metrics DataFrame")
    for bars in [int(b) for b in args.scale.split(",") if b]:
        r = _spawn("ours", str(bars), args.engine, args.grid)
        print(_row(f"alphasignal {args.engine}, synthetic ext. of AAPL", r), flush=True)


if __name__ == "__main__":
    main()
