"""Replay benchmark (stage 04 ``--replay``). Prints figures and ratios against the goals, same run.

1. Builtin engine, one ticker (offline AAPL), the last ``--n`` daily bars decided one by one (render + chart
   reader + lexicon + fusion, journaled), ``--workers`` processes: wall seconds (goal <= 60 s for ~2,500 on 2
   cores) and decisions/s.
2. Share of the trade simulation in the whole command (goal < 5 %), and of simulation + baselines/intervals.
3. The same command again: every decision comes from the journal (what a resumed run costs), decisions/s.
4. Cached replay (goal >= 200 decisions/s): the last ``--cached-n`` bars, one headline a day, the chart read by
   the builtin engine and the news judged by a model behind the loopback Ollama-API server
   (``tests/ollama_compat_server.py``) that answers every request with one CANNED grounded reply over real HTTP
   (no inference: the packaged small models seldom pass the grounding checks, and what is timed is the cache).
   A first run with ``--cache use`` fills the call cache (model replies, rendered charts, chart readings); a
   second run into a fresh output folder (no journal to reuse) takes everything from it: its decisions/s, the
   server's request count during it (must be 0), whether its outputs are byte-identical, and its simulation share.

    python -m benchmarks.bench_replay [--n 2500] [--workers 2] [--cached-n 500]   (0 skips a part)
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import httpx
import pandas as pd

from alphasignal.config import Config, PipelineConfig, ReplayConfig
from alphasignal.market import load_ohlcv
from alphasignal.replay.report import write_outputs
from alphasignal.replay.run import run_replay


def _cpu() -> float:
    t = os.times()  # worker processes count once the pool has joined them
    return t.user + t.system + t.children_user + t.children_system


def _once(cfg: Config, rc: ReplayConfig) -> tuple[float, float, object]:
    t0, c0 = time.perf_counter(), _cpu()
    outcome = run_replay(cfg, PipelineConfig(provider="builtin"), rc, quiet=True)
    write_outputs(outcome, Path(rc.output_dir))
    return time.perf_counter() - t0, _cpu() - c0, outcome


CANNED_NEWS = json.dumps({"sentiment": "NEUTRAL", "intensity": 0.1, "key_factors": ["estimates"]})


def _served(url: str) -> int:
    """Chat requests the loopback server has answered so far."""
    counts = httpx.get(f"{url}/_test/requests", timeout=10).json()["requests"]
    return sum(counts.get(f"POST {p}", 0) for p in ("/api/chat", "/api/generate", "/v1/chat/completions"))


def _cached_replay(cfg: Config, dates: list[str], tmp: str) -> dict[str, object]:
    """Fill the cache, then re-run from it into a fresh folder: the figures of both runs."""
    from benchmarks import load_test_helper

    start_ollama_compat = load_test_helper("fixtures_llm").start_ollama_compat

    news = Path(tmp) / "news.csv"
    news.write_text("timestamp,ticker,headline\n" + "".join(  # a different headline every day: no repeated question
        f"{d}T13:00:00Z,AAPL,Apple {'beats' if i % 2 else 'misses'} estimates for quarter {i}\n"
        for i, d in enumerate(dates)), encoding="utf-8")
    out: dict[str, object] = {}
    with start_ollama_compat({}, canned={"news:canned": CANNED_NEWS}) as server:
        pc = PipelineConfig(provider="builtin", llm_provider="ollama", llm_model="news:canned",
                            ollama_host=server.url, max_retries=1, call_cache=str(Path(tmp) / "calls.sqlite"),
                            cache_mode="use")
        for name in ("fill", "cached"):
            rc = ReplayConfig(tickers=("AAPL",), start=dates[0], news_file=str(news),
                              output_dir=str(Path(tmp) / name), fsync=False)
            sent0, t0 = _served(server.url), time.perf_counter()
            outcome = run_replay(replace(cfg, replay=rc), pc, rc, quiet=True)
            t1 = time.perf_counter()
            write_outputs(outcome, Path(rc.output_dir))
            out[name] = {"wall": time.perf_counter() - t0, "write": time.perf_counter() - t1, "sent": _served(
                server.url) - sent0, "decisions": outcome.meter.decisions, **outcome.seconds}
    names = ("decisions.jsonl", "trades.csv", "equity.csv", "replay_report.md", "replay.png")
    out["identical"] = all((Path(tmp) / "fill" / n).read_bytes() == (Path(tmp) / "cached" / n).read_bytes()
                           for n in names)
    return out


def _builtin(cfg: Config, df: pd.DataFrame, n_wanted: int, workers: int) -> None:
    """Parts 1-3: the builtin replay, its simulation share, the same command from the journal."""
    n = min(n_wanted, len(df) - 19 - cfg.dataset.window)
    start = str(df.index[-n].date())
    with tempfile.TemporaryDirectory() as tmp:
        rc = ReplayConfig(tickers=("AAPL",), start=start, workers=workers, output_dir=tmp)
        cfg = replace(cfg, replay=rc)
        load0 = os.getloadavg()[0]
        wall, cpu, o = _once(cfg, rc)
        s = o.seconds
        made = o.meter.decisions
        print(f"1. builtin replay, AAPL {start}..{df.index[-1].date()}: {made} decisions in {wall:.1f} s wall "
              f"({made / s['decide']:.1f} decisions/s while deciding, {workers} workers); goal <= 60 s for "
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


def _cached(cfg: Config, dates: list[str]) -> None:
    """Part 4: the cached replay."""
    load0 = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        r = _cached_replay(cfg, dates, tmp)
    fill, cached = r["fill"], r["cached"]
    rate = cached["decisions"] / cached["decide"]
    print(f"4. cached replay (builtin chart reader + news from the loopback Ollama-API server's CANNED grounded "
          f"reply, --cache use), {len(dates)} decisions: filling the cache {fill['wall']:.1f} s wall with "
          f"{fill['sent']} server requests; the re-run into a fresh folder {cached['wall']:.2f} s wall with "
          f"{cached['sent']} server requests and {cached['decisions']} decisions made: {rate:.0f} decisions/s "
          f"while deciding (goal >= 200/s: {'met' if rate >= 200 else 'NOT met'}), "
          f"{cached['decisions'] / cached['wall']:.0f}/s end to end; outputs byte-identical to the first run: "
          f"{'yes' if r['identical'] else 'NO'}; load average {load0:.1f} -> {os.getloadavg()[0]:.1f}")
    print(f"   re-run time: deciding {cached['decide']:.2f} s, simulation {cached['simulate']:.3f} s = "
          f"{100 * cached['simulate'] / cached['wall']:.1f} % (goal < 5 %), baselines and intervals "
          f"{cached['compare']:.2f} s, writing the outputs {cached['write']:.2f} s")
    if cached["sent"]:
        raise SystemExit(f"the cached re-run sent {cached['sent']} requests to the server: the cache missed")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2500, help="decisions (daily bars of offline AAPL; 0 = skip 1-3)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--cached-n", type=int, default=500, help="decisions for the cached-replay figure (0 = skip)")
    args = ap.parse_args()
    df = load_ohlcv("AAPL", source="offline")
    cfg = Config()
    cfg = replace(cfg, dataset=replace(cfg.dataset, source="offline"))
    if args.n > 0:
        _builtin(cfg, df, args.n, args.workers)
    if args.cached_n > 0:
        _cached(cfg, [str(d.date()) for d in df.index[-args.cached_n:]])

if __name__ == "__main__":
    main()
