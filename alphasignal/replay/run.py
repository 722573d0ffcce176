"""``04_signal_pipeline.py --replay``: dates x tickers -> decisions -> one portfolio -> results/replay/.

For each ticker and decision bar t (from ``replay.start``, every ``replay.every`` bars): the chart window that ends
at t is rendered exactly as stage 01 renders its samples (``dataset`` window, size, overlays, hidden context with
prices rebased so the last close is 100); the headlines published before t's decision time are the news; the
configured providers decide through the normal ``SignalPipeline``. Nothing after t is read for the decision at t,
and the portfolio (``portfolio.py``) trades it from the open of t+1.

Each decision is appended to ``journal.jsonl`` (fsynced) as it is made, keyed by a hash of its inputs, so the same
command after a kill -9 continues where it stopped and a changed setting re-decides only what it changes.
``replay.max_calls`` / ``replay.max_tokens_total`` stop the deciding cleanly; the outputs then cover the dates
before the first undecided one. What ``max_calls`` counts (``Meter.add``): with a model provider, the model
requests actually sent (retries count; call-cache hits and the builtin engine's answers are free); with the builtin
engine alone (no model to spend on), the engine's answers, so a limit still bounds an offline run: one chart
reading per decision plus one news score when the decision has headlines.

With the call cache on (``--cache use``), the charts (``chart_png``) and the builtin chart reader's readings are
cached too, so a re-run whose inputs did not change neither draws, reads nor calls anything.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..charts.render import render_chart, render_key
from ..config import Config, DatasetConfig, PipelineConfig, ReplayConfig
from ..dataset.build import REBASE_TO, warmup_bars
from ..errors import AlphaSignalError, ModelError, UsageError
from ..evaluation.metrics import periods_per_year
from ..fileio import check_output_dir
from ..market.universe import load_frames
from ..progress import progress_bar
from ..prompts import load_prompt
from ..providers.cache import open_cache, usage_scope
from ..signals.pipeline import CHART_PROMPT, NEWS_PROMPT, SignalPipeline, make_item
from ..workers import exit_with_parent
from .journal import Journal
from .news import NewsIndex, load_news
from .outcome import Job, Meter, Outcome, ReplayData
from .portfolio import SIDE, Signal, simulate
from .sceptic import analyse, cutoffs_of
from .stats import compare

log = logging.getLogger(__name__)

JOURNAL = "journal.jsonl"
_NOT_DECIDING = {"output", "eval_output", "eval_news", "concurrency", "timeout", "max_retries", "api_key",
                 "require_server", "call_cache", "cache_mode", "chart_knowledge_cutoff",
                 "news_knowledge_cutoff"}  # pipeline settings that cannot change a decision


def call_usage(meta: dict[str, Any]) -> dict[str, Any]:
    """Provider calls, tokens and latency behind one decision, from its ``meta`` (skipped calls do not count; the
    meta cannot tell a cache hit from a call, so the run's budget counts requests sent instead: ``Meter.add``)."""
    calls = [c for c in meta.get("calls", {}).values() if c.get("engine") != "none"]
    return {"calls": len(calls), "tokens_in": sum(int(c.get("tokens_in") or 0) for c in calls),
            "tokens_out": sum(int(c.get("tokens_out") or 0) for c in calls),
            "latency_s": float(meta.get("latency_s", {}).get("total") or 0.0)}


def decision_times(index: pd.DatetimeIndex, hhmm: str) -> np.ndarray:
    """Decision time of every bar in UTC ns: daily bars at ``hhmm`` UTC on their date, intraday bars at their
    close (timestamp + the median bar spacing)."""
    index = pd.DatetimeIndex(index).as_unit("ns")  # news stamps are ns; price indexes may be in s or us
    if len(index) and (index == index.normalize()).all():
        hh, mm = (int(x) for x in hhmm.split(":"))
        return (index + pd.Timedelta(hours=hh, minutes=mm)).asi8
    step = pd.Timedelta(np.median(np.diff(index.asi8))) if len(index) > 1 else pd.Timedelta(0)
    return (index + step).asi8


def load_data(tickers: tuple[str, ...], ds: DatasetConfig, rc: ReplayConfig) -> tuple[ReplayData, list[str]]:
    """Prices for every ticker up to ``rc.end`` (earlier bars warm the first charts up), the news, and notes
    on tickers left out for lack of bars in the period."""
    news = load_news(rc.news_file, list(tickers)) if rc.news_file else NewsIndex()
    frames, notes = {}, []
    for t, df in load_frames(tickers, ds, None, rc.end or None).items():  # a long-format file's tickers too
        if not (df.index >= pd.Timestamp(rc.start)).any():
            where = (f"no bars in {rc.start}..{rc.end} (no trading day in it; the last bar before is "
                     f"{df.index[-1].date()})" if rc.end else f"no bars from {rc.start} on (its data ends "
                     f"{df.index[-1].date()})")
            notes.append(f"{t}: {where}: left out")
            continue
        frames[t] = df
    if not frames:
        raise UsageError(f"no ticker has bars in the replay period ({'; '.join(notes)}): widen --start/--end "
                         "or pick other --tickers")
    return ReplayData(frames, news, {t: decision_times(df.index, rc.decision_time) for t, df in frames.items()}), notes


def fingerprint(ds: DatasetConfig, pc: PipelineConfig, rc: ReplayConfig, providers: list[str]) -> str:
    """Hash of the settings every decision depends on (chart rendering, pipeline, providers, prompts)."""
    render = {k: getattr(ds, k) for k in ("window", "image_size", "volume_panel", "moving_averages", "bollinger",
                                          "hide_context", "style")}
    if ds.renderer != "fast":  # stage 01's renderer; journals written before the setting existed keep their hash
        render["renderer"] = ds.renderer
    pipe = {k: v for k, v in asdict(pc).items() if k not in _NOT_DECIDING}
    blob = json.dumps({"render": render, "pipeline": pipe, "providers": providers, "news_days": rc.news_days,
                       "prompts": [load_prompt(CHART_PROMPT).id, load_prompt(NEWS_PROMPT).id]},
                      sort_keys=True, default=list)
    return hashlib.sha256(blob.encode()).hexdigest()


def _window(data: ReplayData, ds: DatasetConfig, ticker: str, i: int) -> tuple[pd.DataFrame, int]:
    """The bars drawn for a decision at bar ``i`` (plus the overlays' warm-up bars) and the warm-up length."""
    start = max(i - ds.window + 1 - warmup_bars(ds), 0)
    return data.frames[ticker].iloc[start:i + 1], i - ds.window + 1 - start


def news_text(data: ReplayData, rc: ReplayConfig, ticker: str, i: int) -> str:
    """Headlines before the decision time of bar ``i``, newest first (a length cap then drops the oldest)."""
    heads = data.news.before(ticker, int(data.decision_ns[ticker][i]), int(rc.news_days * 86_400e9))
    return "\n".join(reversed(heads))


def plan_jobs(data: ReplayData, ds: DatasetConfig, rc: ReplayConfig, fp: str) -> list[Job]:
    """Every (ticker, bar) to decide, in time order (date, then ticker)."""
    first_drawable = warmup_bars(ds) + ds.window - 1
    end = pd.Timestamp(rc.end) if rc.end else None
    jobs = []
    for t, df in data.frames.items():
        ok = (df.index >= pd.Timestamp(rc.start)) & (end is None or df.index <= end)
        bars = [i for i in np.flatnonzero(ok) if i >= first_drawable][::rc.every]
        for i in bars:
            win, _ = _window(data, ds, t, int(i))
            h = hashlib.sha256(f"{fp}|{t}|".encode())
            h.update(np.ascontiguousarray(win.to_numpy(dtype="float64")).tobytes())
            h.update(news_text(data, rc, t, int(i)).encode())
            jobs.append(Job(t, int(i), df.index[i].date().isoformat(), h.hexdigest()[:24]))
    jobs.sort(key=lambda j: (j.date, j.ticker))
    return jobs


def chart_png(win: pd.DataFrame, ds: DatasetConfig, warm: int, title: str | None, pc: PipelineConfig) -> bytes:
    """The chart of one decision, drawn as stage 01 draws it; with the call cache on (``pipeline.cache_mode``) it is
    kept there under its ``render_key`` (bars, timestamps, settings, renderer code), so a changed bar or setting
    misses and ``use`` never draws the same chart twice."""
    settings = {"size": ds.image_size, "volume": ds.volume_panel, "moving_averages": tuple(ds.moving_averages),
                "bollinger": ds.bollinger, "hide_context": ds.hide_context, "style": ds.style, "warmup": warm,
                "title": title, "renderer": ds.renderer}
    if pc.cache_mode == "off":
        return render_chart(win, **settings)
    cache, key = open_cache(pc.call_cache), render_key(win, **settings)
    png = cache.chart(key) if pc.cache_mode == "use" else None
    if png is None:
        png = render_chart(win, **settings)
        cache.put_chart(key, png)
    return png


async def decide_job(pipe: SignalPipeline, data: ReplayData, ds: DatasetConfig, rc: ReplayConfig, job: Job
                     ) -> dict[str, Any]:
    """Render the chart, collect the news, decide through the pipeline: the journal record. A bad input gives a
    failed record (``ok: false``, traded as no decision); a model or server failure raises ``ModelError``."""
    win, warm = _window(data, ds, job.ticker, job.bar)
    close = float(win["Close"].iloc[-1])
    scale = REBASE_TO / close if ds.hide_context else 1.0
    news = news_text(data, rc, job.ticker, job.bar)
    rec: dict[str, Any] = {"key": job.key, "ticker": job.ticker, "date": job.date, "close": close,
                           "price_scale": scale, "headlines": news.count("\n") + 1 if news else 0}
    try:
        png = chart_png(win, ds, warm, None if ds.hide_context else job.ticker, pipe.cfg)
        decision = await pipe.adecide(make_item(pipe.cfg, png, news, close * scale))
    except ModelError:
        raise
    except AlphaSignalError as exc:
        return {**rec, "ok": False, "error": str(exc), "usage": call_usage({})}
    return {**rec, "ok": True, "decision": decision.model_dump(mode="json"), "usage": call_usage(decision.meta)}


# ---- deciding: in worker processes (builtin engine) or in this process (model calls, bounded concurrency) -----

_WORKER: dict[str, Any] = {}


def _init_worker(pc: PipelineConfig, data: ReplayData, ds: DatasetConfig, rc: ReplayConfig) -> None:
    _WORKER.update(pipe=SignalPipeline.from_config(pc), data=data, ds=ds, rc=rc, loop=asyncio.new_event_loop())
    exit_with_parent()


def _worker_job(job: Job) -> dict[str, Any]:
    w = _WORKER
    return w["loop"].run_until_complete(decide_job(w["pipe"], w["data"], w["ds"], w["rc"], job))


def _decide_pool(todo: list[Job], pc: PipelineConfig, data: ReplayData, ds: DatasetConfig, rc: ReplayConfig,
                 workers: int, commit: Callable[[dict], None], may_start: Callable[[int], bool]) -> None:
    """Builtin engine in ``workers`` processes, a few jobs in flight each; results committed as they arrive.
    A job starts only while ``may_start(jobs in flight)`` allows it."""
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    offline = replace(pc, provider="builtin", vlm_provider="", llm_provider="")
    queue = iter(todo)
    with ProcessPoolExecutor(workers, initializer=_init_worker, initargs=(offline, data, ds, rc)) as pool:
        running: set = set()
        while True:
            while len(running) < 3 * workers and may_start(len(running)):
                job = next(queue, None)
                if job is None:
                    break
                running.add(pool.submit(_worker_job, job))
            if not running:
                return
            finished, running = wait(running, return_when=FIRST_COMPLETED)
            for f in finished:
                commit(f.result())


def _decide_here(todo: list[Job], pipe: SignalPipeline, data: ReplayData, ds: DatasetConfig, rc: ReplayConfig,
                 commit: Callable[[dict], None], may_start: Callable[[int], bool]) -> None:
    """In this process, ``pipeline.concurrency`` decisions at once (model calls overlap); each committed when it
    completes. A decision starts only while ``may_start(decisions in flight)`` allows it."""
    sem = asyncio.Semaphore(pipe.cfg.concurrency)
    state = {"in_flight": 0}

    async def _one(job: Job) -> None:
        async with sem:
            if not may_start(state["in_flight"]):
                return
            state["in_flight"] += 1
            try:
                rec = await decide_job(pipe, data, ds, rc, job)
            finally:
                state["in_flight"] -= 1
            commit(rec)

    async def _all() -> None:
        tasks = [asyncio.ensure_future(_one(j)) for j in todo]
        try:
            await asyncio.gather(*tasks)
        finally:  # a model failure: stop the others, keep what was committed
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    pipe.run(_all())


# ---- the command ----------------------------------------------------------------------------------------------

def replay_config(cfg: Config, tickers: str | None = None, start: str | None = None, end: str | None = None,
                  every: int | None = None, news_file: str | None = None) -> ReplayConfig:
    """``cfg.replay`` with the command-line options applied (validated like the config file)."""
    changes: dict[str, Any] = {k: v for k, v in (("start", start), ("end", end), ("every", every),
                                                 ("news_file", news_file)) if v is not None}
    if tickers is not None:
        changes["tickers"] = tuple(dict.fromkeys(t.strip().upper() for t in tickers.split(",") if t.strip()))
    rc = replace(cfg.replay, **changes)
    for name in ("start", "end"):
        value = getattr(rc, name)
        try:
            if value:
                pd.Timestamp(value)
        except ValueError:
            raise UsageError(f"--{name} {value!r} is not a date: use YYYY-MM-DD, e.g. 2022-01-01") from None
    if rc.end and pd.Timestamp(rc.end) < pd.Timestamp(rc.start):
        raise UsageError(f"--end {rc.end} is before --start {rc.start}: swap them")
    return rc


def decide_all(jobs: list[Job], pipe: SignalPipeline, data: ReplayData, ds: DatasetConfig, rc: ReplayConfig,
               journal: Journal, quiet: bool = True) -> tuple[dict[str, dict], Meter, int]:
    """Every job's record: from the journal when its inputs were decided before, else decided now and
    journaled at once. Returns (records by key, this run's meter, how many came from the journal)."""
    done = journal.load()
    todo = [j for j in jobs if j.key not in done]
    meter = Meter(rc.max_calls, rc.max_tokens_total)

    with progress_bar(not quiet, len(jobs), "replay decisions") as advance, usage_scope() as sent:
        advance(len(jobs) - len(todo))

        def commit(rec: dict) -> None:
            journal.append(rec)
            done[rec["key"]] = rec
            meter.add(rec["usage"], sent if not pipe.offline else None)
            advance(1)

        workers = min(rc.workers or os.cpu_count() or 1, max(1, len(todo) // 8))
        try:
            if todo and pipe.offline and workers > 1:
                _decide_pool(todo, pipe.cfg, data, ds, rc, workers, commit, meter.may_start)
            elif todo:
                _decide_here(todo, pipe, data, ds, rc, commit, meter.may_start)
        finally:
            journal.close()
    return done, meter, len(jobs) - len(todo)


def signal_of(rec: dict[str, Any]) -> Signal:
    """The portfolio's view of one journal record (levels back in real prices)."""
    if not rec.get("ok"):
        return Signal("")
    d, scale = rec["decision"], rec["price_scale"]
    v = d["vlm_signal"]
    if d["final_action"] in SIDE:
        return Signal(d["final_action"], d["final_confidence"], v["stop_loss"] / scale, v["take_profit"] / scale)
    return Signal(d["final_action"], d["final_confidence"])


def simulate_records(data: ReplayData, jobs: list[Job], records: dict[str, dict], rc: ReplayConfig
                     ) -> tuple[Callable, dict[str, dict[int, Signal]], pd.Timestamp | None]:
    """The portfolio runner over the decided prefix of ``jobs``: (run(signals) -> SimResult, the model's signals,
    the date of the first undecided job or None)."""
    signals: dict[str, dict[int, Signal]] = {t: {} for t in data.frames}
    cutoff = next((pd.Timestamp(j.date) for j in jobs if j.key not in records), None)
    for j in jobs:
        if cutoff is not None and pd.Timestamp(j.date) >= cutoff:
            break
        signals[j.ticker][j.bar] = signal_of(records[j.key])
    start = pd.Timestamp(jobs[0].date)
    end = pd.Timestamp(rc.end) if rc.end else None
    if cutoff is not None:
        end = cutoff - pd.Timedelta(1, "ns")
    union = pd.DatetimeIndex(sorted(set().union(*(df.index for df in data.frames.values()))))
    ppy = periods_per_year(union)
    return (lambda s: simulate(data.frames, s, rc, start, end, ppy)), signals, cutoff


def run_replay(cfg: Config, pc: PipelineConfig, rc: ReplayConfig, quiet: bool = False) -> Outcome:
    """The replay: check the output folder, load and validate inputs, decide (journaled), trade, compare."""
    out = check_output_dir(rc.output_dir, what="replay output folder")  # before any work; creates nothing
    ds = cfg.dataset
    data, notes = load_data(rc.tickers, ds, rc)
    pipe = SignalPipeline.from_config(pc)
    providers = [f"{p.name}:{p.model}" for p in (pipe.vlm, pipe.llm)]
    jobs = plan_jobs(data, ds, rc, fingerprint(ds, pc, rc, providers))
    if not jobs:
        raise UsageError(f"no decision dates: {', '.join(data.frames)} need {warmup_bars(ds) + ds.window} bars "
                         f"of history before {rc.start} and bars up to {rc.end or 'the end'}: widen the period")
    t0 = time.perf_counter()
    records, meter, reused = decide_all(jobs, pipe, data, ds, rc, Journal(out / JOURNAL, rc.fsync), quiet)
    t1 = time.perf_counter()
    run, signals, cutoff = simulate_records(data, jobs, records, rc)
    if cutoff is not None and cutoff <= pd.Timestamp(jobs[0].date):
        raise UsageError(f"{meter.stopped or 'stopped'} before the first date was decided: raise the limit "
                         "(replay.max_calls / replay.max_tokens_total) and run the same command again")
    sim = run(signals)
    t2 = time.perf_counter()
    if meter.stopped:
        notes.append(f"stopped early: {meter.stopped} after {meter.decisions} new decisions; the results cover "
                     f"the dates before {cutoff.date() if cutoff is not None else 'the end'}. Run the same command "
                     "again (with a higher limit) to continue")
    ppy = periods_per_year(sim.dates)
    comparison = compare(sim, data.frames, signals, run, rc, ppy)
    r = comparison["returns"]
    comparison["sceptic"] = analyse(data.frames, signals, sim.dates, r["replay"], r["buy & hold"], rc, ppy,
                                    cutoffs_of(pipe, pc.chart_knowledge_cutoff, pc.news_knowledge_cutoff))
    t3 = time.perf_counter()
    return Outcome(rc, data, jobs, records, meter, reused, sim, comparison, notes, providers,
                   {"decide": t1 - t0, "simulate": t2 - t1, "compare": t3 - t2})


def replay_to_files(cfg: Config, pc: PipelineConfig, rc: ReplayConfig, quiet: bool = False
                    ) -> tuple[Outcome, dict[str, Path]]:
    """``--replay``: run and write every output atomically; returns the outcome and where each file went."""
    from .report import write_outputs

    outcome = run_replay(cfg, pc, rc, quiet)
    return outcome, write_outputs(outcome, Path(rc.output_dir).expanduser())
