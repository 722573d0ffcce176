"""``04_signal_pipeline.py --replay --audit``: does the decision respond to its inputs the way it should?

A seeded sample of ``replay.audit_n`` decision dates (of the replay's own jobs) is decided again under each
perturbation, and each answer is compared with the unperturbed one (decided the same way, so a cache hit):

* ``no_news``: the headlines removed;
* ``swapped_news``: the headlines of another replayed ticker on the same date (the first other ticker, in order,
  with headlines then);
* ``masked_names``: every replayed ticker symbol and the company names in :data:`NAMES` replaced by "the company";
* ``mirrored``: the chart window reflected in log price about its last close (``p -> c^2 / p``; highs and lows
  swap), which turns an uptrend into a downtrend: a chart reader should flip BUY and SELL (the flip rate);
* ``rebased``: every price times :data:`REBASE_FACTOR`: the decision should not change.

The news perturbations count only dates whose decision had headlines (none: not applicable). Decisions go through
the same pipeline, chart renderer and call cache as the replay, in worker processes for the builtin engine; the
whole audit must fit ``replay.max_calls`` (refused before any work otherwise).
"""

from __future__ import annotations

import asyncio
import math
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..config import Config, DatasetConfig, PipelineConfig, ReplayConfig
from ..dataset.build import REBASE_TO
from ..errors import AlphaSignalError, ModelError, UsageError
from ..fileio import check_output_dir, write_atomic
from ..signals.pipeline import SignalPipeline, make_item
from . import run as _run
from .outcome import CALLS_PER_DECISION, Job, ReplayData

PERTURBATIONS = ("no_news", "swapped_news", "masked_names", "mirrored", "rebased")
NEWS_PERTURBATIONS = frozenset({"no_news", "swapped_news", "masked_names"})
NAMES = {"AAPL": ("Apple",), "GOOG": ("Alphabet", "Google"), "GOOGL": ("Alphabet", "Google"), "MSFT": ("Microsoft",),
         "IBM": ("International Business Machines", "IBM"), "FB": ("Meta Platforms", "Facebook", "Meta"),
         "AMZN": ("Amazon",), "NVDA": ("Nvidia", "NVIDIA"), "TSLA": ("Tesla",)}
REBASE_FACTOR = 3.7
OPPOSITE = {"BUY": "SELL", "SELL": "BUY"}


@dataclass(frozen=True)
class Probe:
    """One decision to make: ``job`` under ``variant`` ("original" or one of :data:`PERTURBATIONS`)."""

    job: Job
    variant: str


def sample_jobs(jobs: list[Job], n: int, seed: int) -> list[Job]:
    """``n`` of ``jobs`` (all when fewer), drawn without replacement with ``seed``, in time order."""
    if len(jobs) <= n:
        return list(jobs)
    pick = np.random.default_rng(seed).choice(len(jobs), size=n, replace=False)
    return [jobs[i] for i in sorted(pick)]


def mirror(win: pd.DataFrame) -> pd.DataFrame:
    """The window reflected in log price about its last close (module doc)."""
    ref2 = float(win["Close"].iloc[-1]) ** 2
    out = win.copy()
    out["Open"], out["Close"] = ref2 / win["Open"], ref2 / win["Close"]
    out["High"], out["Low"] = ref2 / win["Low"], ref2 / win["High"]
    return out


def rebase(win: pd.DataFrame, factor: float = REBASE_FACTOR) -> pd.DataFrame:
    """Every price of the window times ``factor`` (volume unchanged)."""
    out = win.copy()
    for c in ("Open", "High", "Low", "Close"):
        out[c] = win[c] * factor
    return out


def mask_names(text: str, tickers: list[str]) -> str:
    """``text`` with every ticker symbol (``$AAPL`` too) and known company name replaced by "the company"."""
    words = sorted({*tickers, *(n for t in tickers for n in NAMES.get(t, ()))}, key=len, reverse=True)
    if not words:
        return text
    pattern = r"\$?\b(?:" + "|".join(re.escape(w) for w in words) + r")\b(?:'s)?"
    return re.sub(pattern, "the company", text, flags=re.IGNORECASE)


def _news_for(data: ReplayData, rc: ReplayConfig, probe: Probe) -> str:
    job = probe.job
    news = _run.news_text(data, rc, job.ticker, job.bar)
    if probe.variant == "no_news":
        return ""
    if probe.variant == "masked_names":
        return mask_names(news, list(data.frames))
    if probe.variant == "swapped_news":
        when = pd.Timestamp(job.date)
        for other, df in data.frames.items():
            if other != job.ticker and when in df.index:
                text = _run.news_text(data, rc, other, int(df.index.get_loc(when)))
                if text:
                    return text
        return ""
    return news


async def decide_probe(pipe: SignalPipeline, data: ReplayData, ds: DatasetConfig, rc: ReplayConfig, probe: Probe
                       ) -> dict[str, Any]:
    """Decide one probe: {key, variant, news (the original had headlines), ok, final, chart, calls}."""
    job = probe.job
    win, warm = _run._window(data, ds, job.ticker, job.bar)
    if probe.variant == "mirrored":
        win = mirror(win)
    elif probe.variant == "rebased":
        win = rebase(win)
    close = float(win["Close"].iloc[-1])
    scale = REBASE_TO / close if ds.hide_context else 1.0
    rec = {"key": job.key, "ticker": job.ticker, "date": job.date, "variant": probe.variant,
           "news": bool(_run.news_text(data, rc, job.ticker, job.bar))}
    try:
        png = _run.chart_png(win, ds, warm, None if ds.hide_context else job.ticker, pipe.cfg)
        d = await pipe.adecide(make_item(pipe.cfg, png, _news_for(data, rc, probe), close * scale))
    except ModelError:
        raise
    except AlphaSignalError:
        return {**rec, "ok": False, "final": "", "chart": "", "confidence": math.nan}
    return {**rec, "ok": True, "final": d.final_action, "chart": d.vlm_signal.action,
            "confidence": float(d.final_confidence)}


def _worker_probe(probe: Probe) -> dict[str, Any]:
    w = _run._WORKER
    return w["loop"].run_until_complete(decide_probe(w["pipe"], w["data"], w["ds"], w["rc"], probe))


def decide_probes(probes: list[Probe], pipe: SignalPipeline, data: ReplayData, ds: DatasetConfig, rc: ReplayConfig
                  ) -> list[dict[str, Any]]:
    """Every probe, in worker processes for the builtin engine, else ``pipeline.concurrency`` at once here."""
    workers = min(rc.workers or os.cpu_count() or 1, max(1, len(probes) // 8))
    if pipe.offline and workers > 1:
        from concurrent.futures import ProcessPoolExecutor

        offline = replace(pipe.cfg, provider="builtin", vlm_provider="", llm_provider="")
        with ProcessPoolExecutor(workers, initializer=_run._init_worker, initargs=(offline, data, ds, rc)) as pool:
            return list(pool.map(_worker_probe, probes, chunksize=4))
    sem = asyncio.Semaphore(pipe.cfg.concurrency)

    async def one(p: Probe) -> dict[str, Any]:
        async with sem:
            return await decide_probe(pipe, data, ds, rc, p)

    async def every() -> list[dict[str, Any]]:
        return list(await asyncio.gather(*(one(p) for p in probes)))

    return pipe.run(every())


def summarise(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per perturbation: ``n`` dates compared, ``changed`` (share whose final action differs from the original's),
    ``chart_changed`` (the chart reader's action), ``confidence_shift`` (mean absolute change of the final
    confidence), and for ``mirrored`` ``flips`` / ``chart_flips`` (share of the
    original BUY/SELL answers that became the opposite) with ``directional`` (how many there were). News
    perturbations count only dates whose original decision had headlines; failed decisions are left out."""
    orig = {r["key"]: r for r in rows if r["variant"] == "original" and r["ok"]}
    out: dict[str, dict[str, float]] = {}
    for v in PERTURBATIONS:
        pairs = [(orig[r["key"]], r) for r in rows if r["variant"] == v and r["ok"] and r["key"] in orig
                 and (v not in NEWS_PERTURBATIONS or orig[r["key"]]["news"])]
        res: dict[str, float] = {"n": len(pairs),
                                 "changed": _mean([a["final"] != b["final"] for a, b in pairs]),
                                 "chart_changed": _mean([a["chart"] != b["chart"] for a, b in pairs]),
                                 "confidence_shift": _mean([abs(a["confidence"] - b["confidence"])
                                                            for a, b in pairs])}
        if v == "mirrored":
            fin = [(a, b) for a, b in pairs if a["final"] in OPPOSITE]
            cha = [(a, b) for a, b in pairs if a["chart"] in OPPOSITE]
            res.update(flips=_mean([b["final"] == OPPOSITE[a["final"]] for a, b in fin]), directional=len(fin),
                       chart_flips=_mean([b["chart"] == OPPOSITE[a["chart"]] for a, b in cha]),
                       chart_directional=len(cha))
        out[v] = res
    return out


def _mean(xs: list) -> float:
    return float(np.mean(xs)) if xs else math.nan


EXPECTED = {"no_news": "changes when the news moved the decision", "swapped_news": "changes when the two tickers' "
            "news differ in tone", "masked_names": "no change (the names carry no signal)",
            "mirrored": "BUY and SELL flip", "rebased": "no change"}


def markdown(summary: dict[str, dict[str, float]], sampled: int, total: int, rc: ReplayConfig, providers: list[str]
             ) -> str:
    """``audit.md``: one row per perturbation."""
    def _num(x: float) -> str:
        return "–" if not math.isfinite(x) else f"{x:.3f}"

    def pct(x: float) -> str:
        return "–" if not math.isfinite(x) else f"{100 * x:.1f} %"

    lines = [f"# Replay audit: {sampled} of {total} decision dates (seed {rc.seed})", "",
             "providers: " + ", ".join(f"`{p}`" for p in providers), "",
             "| perturbation | dates compared | final action changed | chart action changed | mean abs. confidence "
             "change | BUY<->SELL flips (final / chart) | expected |", "|---|---|---|---|---|---|---|"]
    for v in PERTURBATIONS:
        s = summary[v]
        flips = (f"{pct(s['flips'])} of {s['directional']} / {pct(s['chart_flips'])} of {s['chart_directional']}"
                 if v == "mirrored" else "")
        lines.append(f"| {v.replace('_', ' ')} | {s['n']} | {pct(s['changed'])} | {pct(s['chart_changed'])} | "
                     f"{_num(s['confidence_shift'])} | {flips} | {EXPECTED[v]} |")
    lines += ["", "News rows count only dates whose decision had headlines (0 without --news-file). Mirrored: the "
              "window reflected in log price about its last close; rebased: every price times "
              f"{REBASE_FACTOR:g}.", ""]
    return "\n".join(lines)


def run_audit(cfg: Config, pc: PipelineConfig, rc: ReplayConfig, quiet: bool = True
              ) -> tuple[dict[str, dict[str, float]], str, Path]:
    """The audit (module doc): returns the summary, the Markdown and where it was written (``audit.md`` in
    ``replay.output_dir``)."""
    out = check_output_dir(rc.output_dir, what="replay output folder")
    ds = cfg.dataset
    data, _ = _run.load_data(rc.tickers, ds, rc)
    pipe = SignalPipeline.from_config(pc)
    providers = [f"{p.name}:{p.model}" for p in (pipe.vlm, pipe.llm)]
    jobs = _run.plan_jobs(data, ds, rc, _run.fingerprint(ds, pc, rc, providers))
    if not jobs:
        raise UsageError(f"--audit: no decision dates in {rc.start}..{rc.end or 'the end'} for "
                         f"{', '.join(data.frames)} (each needs {_run.warmup_bars(ds) + ds.window} bars of history): "
                         "widen the period")
    picked = sample_jobs(jobs, rc.audit_n, rc.seed)
    probes = [Probe(j, v) for j in picked for v in ("original", *PERTURBATIONS)]
    need = CALLS_PER_DECISION * len(probes)
    if rc.max_calls and need > rc.max_calls:
        raise UsageError(f"--audit of {len(picked)} dates makes up to {need} calls, over replay.max_calls="
                         f"{rc.max_calls}: lower replay.audit_n or raise replay.max_calls")
    rows = decide_probes(probes, pipe, data, ds, rc)
    summary = summarise(rows)
    text = markdown(summary, len(picked), len(jobs), rc, providers)
    return summary, text, write_atomic(out / "audit.md", text)
