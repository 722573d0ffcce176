"""Stage 01: sliding chart windows -> PNG images + chat-format JSONL for Qwen2.5-VL fine-tuning.

Steps: load validated OHLCV per ticker -> plan windows (window, stride, horizon; enough warm-up bars for the
overlays) -> time-ordered train/val/test split by window-end date with a purge of ``effective_embargo`` bars
(>= horizon) between the last label bar of one split and the first label bar of the next -> labels (labels.py)
-> render the images in parallel (resumable: each PNG is written atomically and skipped when present) ->
write ``training_data.jsonl``, ``dataset_card.md`` and ``demo_chart.png`` atomically.

With ``hide_context`` (default) the chart has no dates, ticker or price axis, and all prices in the text
(prompt last close, label levels, price indicators) are rebased so that the last close is 100; each line keeps
``price_scale`` (rebased = real * price_scale) to convert back.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..charts.render import render_chart
from ..errors import UsageError
from ..fileio import write_atomic
from ..market.indicators import atr, indicator_frame
from ..market.universe import check_tickers, load_universe
from ..progress import progress_bar
from ..prompts import load_prompt
from ..workers import exit_with_parent
from .card import dataset_card
from .labels import LabelInputs, make_signal, rationale

log = logging.getLogger(__name__)

JSONL_NAME = "training_data.jsonl"
MANIFEST_NAME = "manifest.json"
SPLITS = ("train", "val", "test")
REBASE_TO = 100.0
_PRICE_KEYS = ("close", "sma_20", "sma_50", "ema_12", "macd", "macd_signal", "bb_lower", "bb_upper", "atr_14")
_NOT_HASHED = {"workers", "output_dir", "cache_dir", "download_retries"}
FORMAT_VERSION = 1  # part of the config hash: bump when images or lines change for the same settings


@dataclass(frozen=True)
class Window:
    """One sample: bars [end - window + 1, end] are drawn, bars (end, end + horizon] decide the label."""

    ticker: str
    end: int
    split: str = ""


def warmup_bars(ds) -> int:
    """Bars before each window that feed the chart overlays (MAs, Bollinger) but are not drawn."""
    periods = [*ds.moving_averages, *([20] if ds.bollinger else [])]
    return max(periods, default=1) - 1


def plan_windows(frames: dict[str, pd.DataFrame], ds) -> list[Window]:
    """All windows of every ticker with a full window, warm-up and horizon, ordered by (end date, ticker)."""
    warm = warmup_bars(ds)
    out = []
    for ticker, df in frames.items():
        first = warm + ds.window - 1
        last = len(df) - 1 - ds.horizon
        if last < first:
            raise UsageError(f"{ticker}: {len(df)} bars are too few for window {ds.window} + horizon {ds.horizon} "
                             f"+ {warm} warm-up bars: lower dataset.window/horizon or widen dataset.start/end")
        out += [Window(ticker, i) for i in range(first, last + 1, ds.stride)]
    out.sort(key=lambda w: (frames[w.ticker].index[w.end], w.ticker))
    if ds.limit:
        out = out[-ds.limit:]
    return out


def assign_splits(windows: list[Window], frames: dict[str, pd.DataFrame], ds) -> list[Window]:
    """Time-ordered split by window-end date, purging earlier-split windows whose labels reach the embargo."""
    if not windows:
        return []
    ends = sorted(frames[w.ticker].index[w.end] for w in windows)
    n = len(ends)
    cut_idx = (round(n * (1 - ds.val_fraction - ds.test_fraction)), round(n * (1 - ds.test_fraction)))
    cuts = [ends[k] for k in cut_idx if k < n]  # first window-end date of val, then of test (absent if empty)
    gap = ds.effective_embargo
    out = []
    for w in windows:
        idx = frames[w.ticker].index
        date = idx[w.end]
        rank = sum(date >= c for c in cuts)
        # first bar of each later split's period in this ticker's calendar; labels must end `gap` bars before it
        later_bounds = [int(idx.searchsorted(c)) for c in cuts[rank:]]
        if any(w.end + ds.horizon + gap > b for b in later_bounds):
            continue
        out.append(Window(w.ticker, w.end, SPLITS[rank]))
    return out


def _safe(ticker: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in ticker.upper())


@dataclass(frozen=True)
class TickerData:
    """Per-ticker arrays computed once: dates as text, closes, indicator matrix, ATR for the stops."""

    ticker: str
    dates: list[str]  # YYYY-MM-DD (ISO timestamp for intraday bars)
    stamps: list[str]  # the id part: YYYYMMDD (YYYYMMDDHHMM intraday)
    close: np.ndarray
    ind_names: tuple[str, ...]
    ind: np.ndarray  # bars x indicators
    atr: np.ndarray

    @classmethod
    def of(cls, ticker: str, df: pd.DataFrame, atr_period: int) -> TickerData:
        """Precompute everything ``make_record`` reads (all causal: row t uses bars <= t)."""
        intraday = bool((df.index != df.index.normalize()).any())
        dates = list(df.index.strftime("%Y-%m-%dT%H:%M:%S" if intraday else "%Y-%m-%d"))
        stamps = list(df.index.strftime("%Y%m%d%H%M" if intraday else "%Y%m%d"))
        frame = indicator_frame(df)
        a = atr(df["High"].to_numpy(), df["Low"].to_numpy(), df["Close"].to_numpy(), atr_period)
        return cls(ticker, dates, stamps, df["Close"].to_numpy(dtype="float64"), tuple(frame.columns),
                   frame.to_numpy(), a)

    def sample_id(self, i: int) -> str:
        """Stable file-safe id of the window ending at bar i: TICKER-YYYYMMDD."""
        return f"{_safe(self.ticker)}-{self.stamps[i]}"


def make_record(w: Window, td: TickerData, ds, prompt) -> dict:
    """The JSONL object of one window (see the README's stage 01 section for the format)."""
    i, h = w.end, ds.horizon
    close = td.close
    real_entry = float(close[i])
    scale = REBASE_TO / real_entry if ds.hide_context else 1.0
    win = close[i - ds.window + 1:i + 1]
    sigma = float(np.std(np.diff(np.log(win)), ddof=1)) if len(win) > 2 else 0.0
    snap = {k: (None if math.isnan(v) else round(float(v) * (scale if k in _PRICE_KEYS else 1.0), 6))
            for k, v in zip(td.ind_names, td.ind[i].tolist(), strict=True)}
    # ATR needs atr_period bars; before that, the window's daily volatility stands in for it
    atr_val = float(td.atr[i]) if not math.isnan(td.atr[i]) else real_entry * sigma
    inp = LabelInputs(entry=real_entry * scale, forward_return=float(close[i + h] / close[i] - 1), sigma=sigma,
                      atr=atr_val * scale, horizon=h)
    sig = make_signal(inp, mode=ds.label_mode, buy_threshold=ds.buy_threshold, sell_threshold=ds.sell_threshold,
                      stop_atr=ds.stop_atr, take_profit_atr=ds.take_profit_atr,
                      rationale=rationale(snap, sigma, float(win[-1] / win[0] - 1)))
    sid = td.sample_id(i)
    return {
        "id": sid,
        "messages": [
            {"role": "system", "content": [{"type": "text", "text": prompt.system}]},
            {"role": "user", "content": [{"type": "image", "image": f"images/{sid}.png"},
                                         {"type": "text", "text": prompt.format(last_close=sig.entry_price)}]},
            {"role": "assistant", "content": [{"type": "text", "text": sig.model_dump_json()}]},
        ],
        "split": w.split,
        "ticker": w.ticker,
        "window_start": td.dates[i - ds.window + 1],
        "window_end": td.dates[i],
        "label_end": td.dates[i + h],
        "horizon": h,
        "forward_return": round(inp.forward_return, 6),
        "price_scale": round(scale, 12),
        "indicators": snap,
        "label": sig.model_dump(),
        "prompt_version": prompt.id,
    }


def config_hash(ds, frames: dict[str, pd.DataFrame]) -> str:
    """sha256 (12 hex) of the output-relevant settings and the data itself."""
    h = hashlib.sha256(f"format{FORMAT_VERSION}".encode())
    settings = {k: v for k, v in asdict(ds).items() if k not in _NOT_HASHED}
    if settings.get("renderer") == "fast":  # the default renderer keeps the hashes of datasets built before it
        del settings["renderer"]
    h.update(json.dumps(settings, sort_keys=True, default=list).encode())
    for t, df in frames.items():
        h.update(t.encode())
        h.update(df.index.asi8.tobytes())
        h.update(np.ascontiguousarray(df.to_numpy(dtype="float64")).tobytes())
    return h.hexdigest()[:12]


# ---- rendering (worker side) -------------------------------------------------------------------------------

_FRAMES: dict[str, pd.DataFrame] = {}


def _init_worker(frames: dict[str, pd.DataFrame]) -> None:
    exit_with_parent()
    _FRAMES.clear()
    _FRAMES.update(frames)


_PNG_HEAD, _PNG_TAIL = b"\x89PNG\r\n\x1a\n", b"\x00\x00\x00\x00IEND\xaeB`\x82"


def complete_png(path: Path) -> bool:
    """A resumable chart: a file that starts with the PNG signature and ends with the IEND chunk (a truncated or
    overwritten file is rendered again)."""
    try:
        with path.open("rb") as fh:
            head = fh.read(8)
            fh.seek(0, os.SEEK_END)
            if fh.tell() < 8 + len(_PNG_TAIL):
                return False
            fh.seek(-len(_PNG_TAIL), os.SEEK_END)
            return head == _PNG_HEAD and fh.read() == _PNG_TAIL
    except OSError:
        return False


def _render_batch(jobs: list[tuple[str, str, int]], out_dir: str, opts: dict, window: int, warm: int) -> int:
    for sid, ticker, end in jobs:
        path = Path(out_dir) / f"{sid}.png"
        if complete_png(path):
            continue
        df = _FRAMES[ticker]
        start = max(end - window + 1 - warm, 0)
        png = render_chart(df.iloc[start:end + 1], warmup=end - window + 1 - start, **opts,
                           title=None if opts["hide_context"] else ticker)
        write_atomic(path, png)
    return len(jobs)


# ---- orchestration -------------------------------------------------------------------------------------------

def _prepare_output(out: Path, chash: str, overwrite: bool) -> Path:
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=out, prefix=".probe", delete=True)  # noqa: SIM115
        probe.close()
    except OSError as exc:
        raise UsageError(f"output dir {str(out)!r} is not writable ({exc.strerror}): choose another "
                         "--output-dir or fix its permissions") from None
    images = out / "images"
    manifest = out / MANIFEST_NAME
    old = None
    if manifest.exists():
        try:
            old = json.loads(manifest.read_text(encoding="utf-8")).get("config_hash")
        except (OSError, ValueError):
            old = "unreadable"
    stale = (old is not None and old != chash) or (old is None and images.exists() and any(images.iterdir()))
    if stale and not overwrite:
        raise UsageError(f"{str(out)!r} holds a dataset built from another config or data (hash {old}, now "
                         f"{chash}): pass --overwrite to replace it, or choose another --output-dir")
    if stale:
        shutil.rmtree(images, ignore_errors=True)
        for name in (JSONL_NAME, MANIFEST_NAME, "dataset_card.md", "demo_chart.png"):
            (out / name).unlink(missing_ok=True)
    images.mkdir(exist_ok=True)
    for tmp in images.glob(".*.tmp"):  # leftovers of an interrupted run: never complete files
        tmp.unlink(missing_ok=True)
    return images


def _write_manifest(out: Path, chash: str, n: int, status: str) -> None:
    data = {"config_hash": chash, "samples": n, "status": status, "jsonl": JSONL_NAME}
    write_atomic(out / MANIFEST_NAME, (json.dumps(data, indent=2) + "\n").encode())


def build_dataset(ds, *, quiet: bool = False, overwrite: bool = False,
                  on_progress: Callable[[int], None] | None = None) -> dict:
    """Build the dataset described by ``ds`` (a DatasetConfig) in ``ds.output_dir``; returns a summary dict."""
    check_tickers(ds.tickers, ds, "dataset.tickers (--tickers / --tickers-file)")  # before any download or write
    frames = load_universe(ds)  # every ticker (or a long-format table's); split below by date across all at once
    windows = assign_splits(plan_windows(frames, ds), frames, ds)
    if not windows:
        raise UsageError("no samples left after the split and embargo: lower dataset.val_fraction/test_fraction "
                         "or dataset.limit, or widen the date range")
    data = {t: TickerData.of(t, df, ds.atr_period) for t, df in frames.items()}
    prompt = load_prompt("chart_signal")
    records = [make_record(w, data[w.ticker], ds, prompt) for w in windows]
    chash = config_hash(ds, frames)
    out = Path(ds.output_dir).expanduser()
    images = _prepare_output(out, chash, overwrite)
    _write_manifest(out, chash, len(records), "rendering")

    opts = {"size": ds.image_size, "volume": ds.volume_panel, "moving_averages": tuple(ds.moving_averages),
            "bollinger": ds.bollinger, "hide_context": ds.hide_context, "style": ds.style,
            "renderer": ds.renderer}
    jobs = [(r["id"], w.ticker, w.end) for r, w in zip(records, windows, strict=True)]
    todo = [j for j in jobs if not complete_png(images / f"{j[0]}.png")]
    _render_all(todo, frames, str(images), opts, ds, quiet=quiet, total=len(jobs), on_progress=on_progress)

    lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    write_atomic(out / JSONL_NAME, lines.encode("utf-8"))
    last = windows[-1]
    demo = frames[last.ticker].iloc[max(last.end - ds.window + 1 - warmup_bars(ds), 0):last.end + 1]
    # for a human eye: dates, prices and the ticker (they need room), drawn by mplfinance itself
    demo_opts = {**opts, "hide_context": False, "size": max(ds.image_size, 448), "renderer": "mplfinance"}
    write_atomic(out / "demo_chart.png", render_chart(demo, **demo_opts, title=last.ticker,
                                                      warmup=len(demo) - ds.window))
    summary = summarise(records, chash, ds)
    write_atomic(out / "dataset_card.md", dataset_card(summary, ds).encode("utf-8"))
    _write_manifest(out, chash, len(records), "complete")
    summary.update(output_dir=str(out), rendered=len(todo), reused=len(jobs) - len(todo))
    return summary


def _render_all(todo, frames, images: str, opts: dict, ds, *, quiet: bool, total: int, on_progress) -> None:
    warm = warmup_bars(ds)
    workers = ds.workers or os.cpu_count() or 1
    batch = 16
    chunks = [todo[k:k + batch] for k in range(0, len(todo), batch)]
    with progress_bar(not quiet, total, "rendering charts", completed=total - len(todo)) as advance:
        if workers <= 1 or len(chunks) <= 1:
            _init_worker(frames)
            results = (_render_batch(c, images, opts, ds.window, warm) for c in chunks)
            _consume(results, advance, on_progress)
            return
        import multiprocessing as mp

        ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else None
        with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker, initargs=(frames,)) as pool:
            results = pool.map(_render_batch, chunks, [images] * len(chunks), [opts] * len(chunks),
                               [ds.window] * len(chunks), [warm] * len(chunks))
            _consume(results, advance, on_progress)


def _consume(results, advance: Callable[[int], None], on_progress) -> None:
    for n in results:
        advance(n)
        if on_progress:
            on_progress(n)


def summarise(records: list[dict], chash: str, ds) -> dict:
    """Counts per split and label, date ranges per split, the config hash."""
    per_split = {}
    for s in SPLITS:
        rs = [r for r in records if r["split"] == s]
        labels = Counter(r["label"]["action"] for r in rs)
        per_split[s] = {"samples": len(rs), "labels": {a: labels.get(a, 0) for a in ("BUY", "SELL", "HOLD")},
                        "first_window_end": min((r["window_end"] for r in rs), default=None),
                        "last_window_end": max((r["window_end"] for r in rs), default=None),
                        "tickers": sorted({r["ticker"] for r in rs})}
    return {"samples": len(records), "config_hash": chash, "splits": per_split, "embargo": ds.effective_embargo}
