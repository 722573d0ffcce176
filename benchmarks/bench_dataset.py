"""Stage 01 benchmark: chart rendering speed vs a naive mplfinance loop, and a full dataset build's memory.

Same run, same data (real AAPL daily bars, 448x448, volume panel, MAs 10 and 20):
1. anchor: one ``mpf.plot`` + ``savefig`` per chart, serial (what a straightforward script does);
2. alphasignal's renderer, serial (one process), its ``renderer="mplfinance"`` option (``mpf.plot`` into the same
   layout), then the whole ``build_dataset`` with ``--workers`` processes
   (labels + rendering + JSONL; goal >= 50 charts/s on 2 cores) and its peak memory summed over the process tree
   (goal < 1 GB for 10,000 samples).

    python -m benchmarks.bench_dataset [--samples 10000] [--naive 40] [--serial 300] [--workers 2]
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import os
import tempfile
import threading
import time
from pathlib import Path

from alphasignal.charts import render_chart
from alphasignal.config import DatasetConfig
from alphasignal.dataset import build_dataset
from alphasignal.market import load_ohlcv

WINDOW, WARMUP = 60, 19


def _naive(df, n: int, axisoff: bool) -> float:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mplfinance as mpf

    t = time.perf_counter()
    for k in range(n):
        w = df.iloc[k:k + WINDOW]
        fig, _ = mpf.plot(w, type="candle", style="classic", volume=True, mav=(10, 20), figsize=(4.48, 4.48),
                          returnfig=True, axisoff=axisoff)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=100)
        plt.close(fig)
    return n / (time.perf_counter() - t)


def _serial(df, n: int, renderer: str = "fast") -> float:
    render_chart(df.iloc[:WINDOW + WARMUP], warmup=WARMUP, renderer=renderer)  # the fast figure is built once
    t = time.perf_counter()
    for k in range(n):
        render_chart(df.iloc[k:k + WINDOW + WARMUP], warmup=WARMUP, renderer=renderer)
    return n / (time.perf_counter() - t)


def _tree_memory(root: int) -> tuple[int, int]:
    """(RSS, PSS) bytes summed over ``root`` and its descendants (Linux /proc). Forked workers share pages
    copy-on-write, so the RSS sum counts shared memory several times; PSS splits it fairly."""
    parents = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                parents[int(d.name)] = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    tree, frontier = {root}, [root]
    while frontier:
        p = frontier.pop()
        kids = [c for c, pp in parents.items() if pp == p and c not in tree]
        tree.update(kids)
        frontier += kids
    rss = pss = 0
    for pid in tree:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith(("Rss:", "Pss:")):
                    size = int(line.split()[1]) * 1024
                    rss, pss = (rss + size, pss) if line.startswith("Rss:") else (rss, pss + size)
        except (OSError, IndexError, ValueError):
            continue
    return rss, pss


def _build(samples: int, workers: int) -> tuple[float, tuple[int, int], dict]:
    peak = [0, 0]
    done = threading.Event()

    def sample():
        while not done.is_set():
            rss, pss = _tree_memory(os.getpid())
            peak[:] = max(peak[0], rss), max(peak[1], pss)
            done.wait(0.25)

    with tempfile.TemporaryDirectory() as out:
        ds = dataclasses.replace(DatasetConfig(), source="offline", start="1980-01-01", end="2026-12-31", stride=1,
                                 limit=samples, workers=workers, output_dir=out)
        th = threading.Thread(target=sample, daemon=True)
        th.start()
        t = time.perf_counter()
        summary = build_dataset(ds, quiet=True)
        dt = time.perf_counter() - t
        done.set()
        th.join()
    return summary["samples"] / dt, (peak[0], peak[1]), summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=10_000, help="samples in the full build (default 10000)")
    ap.add_argument("--naive", type=int, default=40, help="charts for the naive mplfinance anchor")
    ap.add_argument("--serial", type=int, default=300, help="charts for the serial renderer run")
    ap.add_argument("--workers", type=int, default=2, help="processes for the full build")
    args = ap.parse_args()
    df = load_ohlcv("AAPL", source="offline")
    load = os.getloadavg()[0]
    print(f"machine: {os.cpu_count()} cores, load average {load:.1f} at start (shared machines give noisy figures)")
    naive = _naive(df, args.naive, axisoff=False)
    print(f"naive mpf.plot+savefig, 1 process:     {naive:7.1f} charts/s  ({1000 / naive:.0f} ms/chart)  anchor")
    bare = _naive(df, args.naive, axisoff=True)
    print(f"naive, axisoff=True (no labels):       {bare:7.1f} charts/s  ({1000 / bare:.0f} ms/chart)")
    serial = _serial(df, args.serial)
    print(f"alphasignal renderer, 1 process:       {serial:7.1f} charts/s  ({1000 / serial:.1f} ms/chart)  "
          f"x{serial / naive:.1f} vs anchor, x{serial / bare:.1f} vs axisoff")
    mpf_rate = _serial(df, args.naive, renderer="mplfinance")
    print(f"renderer=mplfinance (mpf.plot), 1 process: {mpf_rate:7.1f} charts/s  ({1000 / mpf_rate:.0f} ms/chart)  "
          f"x{mpf_rate / naive:.1f} vs anchor")
    rate, peak, summary = _build(args.samples, args.workers)
    print(f"full build_dataset, {args.workers} workers, {summary['samples']} samples: {rate:7.1f} samples/s  "
          f"x{rate / naive:.1f} vs anchor (1 process), x{rate / (naive * args.workers):.1f} vs anchor x{args.workers} "
          f"processes  (goal >= 50)")
    print(f"peak memory, process tree: PSS {peak[1] / 2**20:.0f} MiB, RSS sum {peak[0] / 2**20:.0f} MiB "
          "(goal < 1024 MiB for 10,000 samples)")
    print(f"load average at end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
