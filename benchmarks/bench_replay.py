"""Replay benchmark (stage 04 ``--replay``). Prints figures and ratios against the goals, same run.

1. Builtin engine, one ticker (offline AAPL), the last ``--n`` daily bars decided one by one (render + chart
   reader + lexicon + fusion, journaled), ``--workers`` processes: wall seconds (goal <= 60 s for ~2,500 on 2
   cores) and decisions/s.
2. Share of the trade simulation in the whole command (goal < 5 %), and of simulation + baselines/intervals.
3. The same command again: every decision comes from the journal (what a resumed run costs), decisions/s.
4. Cached decisions/s (goal >= 200/s) needs the model-call cache (``alphasignal/providers/cache.py``): measured
   when it is present, else said.

    python benchmarks/bench_replay.py [--n 2500] [--workers 2]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from alphasignal.market import load_ohlcv  # noqa: E402
from alphasignal.replay.report import write_outputs  # noqa: E402
from alphasignal.replay.run import run_replay  # noqa: E402
from config import Config, PipelineConfig, ReplayConfig  # noqa: E402


def _cpu() -> float:
    t = os.times()  # worker processes count once the pool has joined them
    return t.user + t.system + t.children_user + t.children_system


def _once(cfg: Config, rc: ReplayConfig) -> tuple[float, float, object]:
    t0, c0 = time.perf_counter(), _cpu()
    outcome = run_replay(cfg, PipelineConfig(provider="builtin"), rc, quiet=True)
    write_outputs(outcome, Path(rc.output_dir))
    return time.perf_counter() - t0, _cpu() - c0, outcome


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2500, help="decisions (daily bars of offline AAPL)")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    df = load_ohlcv("AAPL", source="offline")
    cfg = Config()
    warm = 19 + cfg.dataset.window
    n = min(args.n, len(df) - warm)
    start = str(df.index[-n].date())
    with tempfile.TemporaryDirectory() as tmp:
        rc = ReplayConfig(tickers=("AAPL",), start=start, workers=args.workers, output_dir=tmp)
        cfg = replace(cfg, dataset=replace(cfg.dataset, source="offline"), replay=rc)
        load0 = os.getloadavg()[0]
        wall, cpu, o = _once(cfg, rc)
        s = o.seconds
        made = o.meter.decisions
        print(f"1. builtin replay, AAPL {start}..{df.index[-1].date()}: {made} decisions in {wall:.1f} s wall "
              f"({made / s['decide']:.1f} decisions/s while deciding, {args.workers} workers); goal <= 60 s for "
              f"2,500: {'met' if wall * 2500 / max(made, 1) <= 60 else 'NOT met'} "
              f"({wall * 2500 / max(made, 1):.1f} s scaled to 2,500); load average {load0:.1f} -> "
              f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; CPU time {cpu:.1f} s "
              f"({1000 * cpu / max(made, 1):.1f} ms per decision)")
        print(f"2. simulation {s['simulate']:.3f} s = {100 * s['simulate'] / wall:.2f} % of the run (goal < 5 %); "
              f"with baselines and intervals {s['simulate'] + s['compare']:.2f} s = "
              f"{100 * (s['simulate'] + s['compare']) / wall:.1f} %; {len(o.sim.trades)} trades")
        wall2, _, o2 = _once(cfg, rc)
        print(f"3. the same command again: {o2.reused} decisions from the journal, {wall2:.1f} s wall "
              f"({o2.reused / wall2:.0f} decisions/s end to end)")
    if importlib.util.find_spec("alphasignal.providers.cache") is None:
        print("4. cached replay: the model-call cache is not on this branch yet: not measured")
    else:
        print("4. cached replay: the cache module is present; wire its --cache mode in here to measure it")


if __name__ == "__main__":
    main()
