"""The signal pipeline: resolve providers, run the chain on one item or a batch, write results atomically."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
from collections.abc import Callable, Coroutine, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from ..config import PipelineConfig
from ..errors import AlphaSignalError, UsageError
from ..fileio import input_file
from ..prompts import load_prompt
from ..providers import CallUsage, Provider, get_provider, replay_timings, usage_scope
from ..workers import exit_with_parent
from .chains import DecisionItem, build_chain
from .engines import register_builtin_engines
from .inputs import load_image, prepare_news, read_image_file, read_news_file
from .schemas import FinalDecision

log = logging.getLogger(__name__)

T = TypeVar("T")
CHART_PROMPT = "chart_signal"
NEWS_PROMPT = "news_sentiment"


class SignalPipeline:
    """Chart + news -> ``FinalDecision`` with two providers (chart/VLM and news/LLM) and the fusion policy."""

    def __init__(self, cfg: PipelineConfig, vlm: Provider, llm: Provider) -> None:
        register_builtin_engines()
        self.cfg, self.vlm, self.llm = cfg, vlm, llm
        self._loop: asyncio.AbstractEventLoop | None = None
        self.chain = build_chain(vlm, llm, load_prompt(CHART_PROMPT), load_prompt(NEWS_PROMPT), cfg)

    @classmethod
    def from_config(cls, cfg: PipelineConfig) -> SignalPipeline:
        """Resolve both providers (``auto`` falls back to builtin with one warning line each)."""
        vlm_name = cfg.vlm_provider or cfg.provider
        vlm = get_provider(vlm_name, model=cfg.vlm_model, cfg=cfg, role="vlm")
        if not vlm.supports_vision:
            if vlm_name != "auto":
                raise UsageError(f"{vlm.name} model {cfg.vlm_model!r} cannot read images: give a vision model "
                                 "(--vlm-model, pipeline.mmproj_path for llamacpp) or --set pipeline.vlm_provider="
                                 "builtin")
            log.warning("auto: %s model %r cannot read images; using the builtin chart reader", vlm.name,
                        cfg.vlm_model)
            vlm = get_provider("builtin", cfg=cfg, role="vlm")
        llm = get_provider(cfg.llm_provider or cfg.provider, model=cfg.llm_model, cfg=cfg, role="sentiment")
        return cls(cfg, vlm, llm)

    @property
    def offline(self) -> bool:
        """True when the builtin engine answers both calls."""
        return self.vlm.is_builtin and self.llm.is_builtin

    def item(self, image: bytes | str | Path, news: str | None, last_close: float | None = None,
             notes: Sequence[str] = ()) -> DecisionItem:
        """``make_item`` with this pipeline's config."""
        return make_item(self.cfg, image, news, last_close, notes)

    async def adecide(self, item: DecisionItem) -> FinalDecision:
        """Run both calls concurrently and fuse them; ``meta["usage"]`` sums the model calls."""
        start = time.perf_counter()
        with usage_scope() as usage:
            decision: FinalDecision = await self.chain.ainvoke(item)
        decision.meta["latency_s"]["total"] = round(time.perf_counter() - start, 4)
        _cached_timings(usage, decision.meta)
        return decision

    def decide(self, item: DecisionItem) -> FinalDecision:
        """Synchronous ``adecide``."""
        return self.run(self.adecide(item))

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on this pipeline's own event loop. Model clients cache async HTTP connections bound to
        the loop that opened them, so every synchronous call must reuse one loop (``asyncio.run`` would not)."""
        if self._loop is None or self._loop.is_closed():
            self._loop = asyncio.new_event_loop()
        return self._loop.run_until_complete(coro)

    async def adecide_many(self, items: Iterable[Callable[[], DecisionItem]], *, concurrency: int | None = None,
                           on_done: Callable[[], None] | None = None) -> list[FinalDecision | AlphaSignalError]:
        """Decide on many lazily built items, at most ``concurrency`` at once, in input order; a failing item
        yields its error in place of a decision (the caller decides what to do with it)."""
        sem = asyncio.Semaphore(concurrency or self.cfg.concurrency)

        async def _one(build: Callable[[], DecisionItem]) -> FinalDecision | AlphaSignalError:
            async with sem:
                try:
                    return await self.adecide(build())
                except AlphaSignalError as exc:
                    return exc
                finally:
                    if on_done:
                        on_done()

        return list(await asyncio.gather(*(_one(b) for b in items)))


def _cached_timings(usage: CallUsage, meta: dict[str, Any]) -> None:
    """A decision whose every model call came from the call cache reports the timings recorded when those calls
    were made (so a cached re-run writes the same bytes); then ``meta["usage"]`` sums the model calls."""
    calls = meta["calls"]
    measured = {"latency_s": meta["latency_s"], "calls": {k: c["latency_s"] for k, c in calls.items()}}
    timings = replay_timings(usage, f"{meta['image_sha256']} {meta['news_sha256']}", measured)
    meta["latency_s"] = timings["latency_s"]
    for role, latency in timings["calls"].items():
        calls[role]["latency_s"] = latency
    models = [c for c in calls.values() if c["engine"] not in ("builtin", "none")]
    meta["usage"] = {"model_calls": sum(c["attempts"] for c in models),
                     "tokens_in": sum(c["tokens_in"] for c in models),
                     "tokens_out": sum(c["tokens_out"] for c in models),
                     "model_latency_s": round(float(sum(c["latency_s"] for c in models)), 4)}


def make_item(cfg: PipelineConfig, image: bytes | str | Path, news: str | None, last_close: float | None = None,
              notes: Sequence[str] = (), atr: float | None = None) -> DecisionItem:
    """Validate one input pair (image bytes or a path; news text) into a ``DecisionItem``; ``atr`` is the data's
    ATR at the last bar when known (else the levels are bounded by the ATR the chart reader recovers)."""
    side = cfg.max_image_side
    chart = load_image(image, side) if isinstance(image, bytes) else read_image_file(image, side)
    for name, value in (("last_close", last_close), ("atr", atr)):
        if value is not None and not (isinstance(value, (int, float)) and value > 0):
            raise UsageError(f"{name}={value!r} must be a positive number")
    return DecisionItem(chart, prepare_news(news, cfg.max_news_chars), last_close, tuple(notes), atr)


def decision_json(decision: FinalDecision) -> str:
    """The decision as pretty JSON (what ``decision.json`` holds)."""
    return decision.model_dump_json(indent=2)


@dataclasses.dataclass(frozen=True)
class ManifestRow:
    """One ``--batch`` line: ``{"image": PATH, "news": TEXT | "news_file": PATH, "last_close": X, "id": ...}``."""

    id: str
    image: Path
    news: str | None
    news_file: Path | None
    last_close: float | None


def read_manifest(path: str | Path) -> list[ManifestRow]:
    """Parse a batch manifest (JSONL; relative paths are relative to the manifest's folder)."""
    p = input_file(path, "batch manifest", "check the --batch path")
    rows = []
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise UsageError(f"batch manifest {str(p)!r} is not UTF-8 JSONL: re-save it as UTF-8") from None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec: dict[str, Any] = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UsageError(f"{p.name} line {n} is not JSON ({exc.msg}): one JSON object per line") from None
        if not isinstance(rec, dict) or not isinstance(rec.get("image"), str):
            raise UsageError(f'{p.name} line {n} has no "image" path: each line needs {{"image": "chart.png", '
                             '"news": "..."}')
        news_file = rec.get("news_file")
        close = rec.get("last_close")
        rows.append(ManifestRow(str(rec.get("id", n)), p.parent / rec["image"], rec.get("news"),
                                p.parent / news_file if news_file else None,
                                float(close) if isinstance(close, (int, float)) else None))
    if not rows:
        raise UsageError(f"batch manifest {str(p)!r} has no lines: add one JSON object per chart")
    return rows


def row_item(pipe: SignalPipeline, row: ManifestRow) -> DecisionItem:
    """Build the ``DecisionItem`` of one manifest row (reads its files)."""
    news = read_news_file(row.news_file) if row.news_file else row.news
    return pipe.item(row.image, news, row.last_close)


_WORKER: dict[str, Any] = {}


def _init_worker(cfg: PipelineConfig) -> None:
    exit_with_parent()
    _WORKER["pipe"] = SignalPipeline.from_config(cfg)
    _WORKER["loop"] = asyncio.new_event_loop()


def _decide_in_worker(job: ManifestRow | tuple[bytes | Path, str | None, float | None]
                      ) -> FinalDecision | AlphaSignalError:
    pipe: SignalPipeline = _WORKER["pipe"]
    try:
        item = row_item(pipe, job) if isinstance(job, ManifestRow) else make_item(pipe.cfg, *job)
        return _WORKER["loop"].run_until_complete(pipe.adecide(item))
    except AlphaSignalError as exc:
        return exc


def decide_offline_batch(cfg: PipelineConfig, jobs: Sequence[ManifestRow | tuple[bytes | Path, str | None,
                                                                                     float | None]],
                         workers: int, on_done: Callable[[], None] | None = None
                         ) -> list[FinalDecision | AlphaSignalError]:
    """Builtin-only batches in ``workers`` processes: the offline engines are CPU-bound Python, so threads would
    share one core. Results come back in input order; a failing job yields its error."""
    from concurrent.futures import ProcessPoolExecutor

    if cfg.provider != "builtin" or (cfg.vlm_provider or "builtin") != "builtin" or (
            cfg.llm_provider or "builtin") != "builtin":
        raise UsageError("decide_offline_batch needs pipeline.provider=builtin (model calls use adecide_many)")
    out = []
    with ProcessPoolExecutor(max_workers=workers, initializer=_init_worker, initargs=(cfg,)) as pool:
        for res in pool.map(_decide_in_worker, jobs, chunksize=max(1, min(16, len(jobs) // (4 * workers)))):
            out.append(res)
            if on_done:
                on_done()
    return out

