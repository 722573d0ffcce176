"""``--eval``: score the configured providers on the stage-01 dataset's test split.

Metrics, for the chart signal alone and for the fused decision: action accuracy and macro-F1 against the
dataset labels; calibration of the confidence in the chosen action (ECE over 10 bins, and the top-label Brier
score mean((confidence - correct)^2)); a follow-the-signal backtest (+1 BUY / -1 SELL / 0 HOLD held for the
label horizon, no costs): Sharpe annualised by sqrt(252 / horizon), hit rate over trades, total return. Anchors
in the same run: the majority-class predictor ("always X") and buy-and-hold on the same samples.

News per sample (``pipeline.eval_news``): ``trailing`` writes a one-line headline from the sample's indicators
at the window end (distance from the 20-bar average, RSI: past bars only), so the sentiment path is exercised
without look-ahead; ``none`` sends empty news. No labelled finance news ships in any package, so sentiment
itself is not scored against a ground truth.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..config import Config, PipelineConfig
from ..errors import UsageError
from ..evaluation.metrics import sharpe
from ..fileio import write_atomic
from ..progress import progress_bar
from .demo import DATASET_FILE, sample_image
from .pipeline import SignalPipeline, make_item
from .schemas import FinalDecision

ACTIONS = ("BUY", "SELL", "HOLD")
_POSITION = {"BUY": 1.0, "SELL": -1.0, "HOLD": 0.0}


@dataclass(frozen=True)
class Sample:
    """One test-split chart, its label, last close (rebased units, as in the prompt) and realised forward return
    (for scoring only)."""

    image: Path
    label: str
    last_close: float
    forward_return: float
    news: str
    atr: float | None = None  # the data's ATR(14) at the window end (rebased units), bounds the model's levels
    id: str = ""
    ticker: str = ""
    window_start: str = ""  # first and last bar drawn (the ladder's momentum rung and date blocks use them)
    window_end: str = ""
    price_scale: float = 1.0  # rebased price = real price * price_scale


def load_test_samples(cfg: Config, limit: int = 0) -> list[Sample]:
    """Test-split samples of ``dataset/training_data.jsonl`` (stage 01 format), in time order."""
    path = Path(cfg.dataset.output_dir) / DATASET_FILE
    if not path.is_file():
        raise UsageError(f"no dataset at {path}: build one first with `python 01_generate_dataset.py --limit 200`")
    samples = []
    with path.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                raise UsageError(f"{path} line {n} is not JSON: rebuild the dataset with 01_generate_dataset.py"
                                 ) from None
            if rec.get("split") == "test":
                samples.append((str(rec.get("ticker")), str(rec.get("window_end")), _sample(rec, path, n,
                                                                                            cfg.pipeline)))
    if not samples:
        raise UsageError(f"{path} has no test-split samples: rebuild it with dataset.test_fraction > 0")
    samples.sort(key=lambda x: x[:2])
    return [s for *_, s in samples[:limit or None]]


def _sample(rec: dict[str, Any], path: Path, n: int, pc: PipelineConfig) -> Sample:
    label = rec.get("label")
    action = label.get("action") if isinstance(label, dict) else label
    ind = rec.get("indicators") or {}
    close = (label.get("entry_price") if isinstance(label, dict) else None) or ind.get("close")
    image = sample_image(rec, path.parent)
    fwd = rec.get("forward_return")
    if action not in ACTIONS or not close or image is None or not isinstance(fwd, (int, float)):
        raise UsageError(f"{path} line {n} lacks label/entry price/image/forward_return: rebuild the dataset with "
                         "01_generate_dataset.py")
    news = ""
    if pc.eval_news == "trailing" and ind.get("sma_20"):
        # Indicators at the window end use bars <= window_end only: no look-ahead in the news.
        d = (ind["close"] / ind["sma_20"] - 1) * 100
        news = (f"{rec.get('ticker', 'The')} shares are {'up' if d >= 0 else 'down'} {abs(d):.1f}% against their "
                f"20-day average; RSI stands at {ind.get('rsi_14') or 50:.0f}.")
    atr = ind.get("atr_14")
    return Sample(image, action, float(close), float(fwd), news, float(atr) if atr and atr > 0 else None,
                  str(rec.get("id", "")), str(rec.get("ticker", "")), str(rec.get("window_start", "")),
                  str(rec.get("window_end", "")), float(rec.get("price_scale") or 1.0))


def train_label_counts(cfg: Config) -> dict[str, int]:
    """Label counts of the dataset's train split (the ladder's majority rung learns from these alone)."""
    path = Path(cfg.dataset.output_dir) / DATASET_FILE
    counts = Counter()
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            rec = json.loads(line)
            label = rec.get("label")
            if rec.get("split") == "train":
                counts[label.get("action") if isinstance(label, dict) else label] += 1
    if not counts:
        raise UsageError(f"{path} has no train-split samples: the majority rung needs them; rebuild the dataset "
                         "with python 01_generate_dataset.py")
    return {a: counts.get(a, 0) for a in ACTIONS}


def classification(pred: list[str], conf: list[float], label: list[str]) -> dict[str, float]:
    """Accuracy, macro-F1 (over the classes present in labels or predictions), ECE (10 bins), top-label Brier."""
    p, y, c = np.array(pred), np.array(label), np.clip(np.array(conf, dtype=float), 0, 1)
    correct = (p == y).astype(float)
    f1s = []
    for k in sorted(set(pred) | set(label)):
        tp = float(np.sum((p == k) & (y == k)))
        fp, fn = float(np.sum((p == k) & (y != k))), float(np.sum((p != k) & (y == k)))
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
    bins = np.minimum((c * 10).astype(int), 9)
    ece = sum(abs(correct[bins == b].mean() - c[bins == b].mean()) * np.mean(bins == b)
              for b in range(10) if np.any(bins == b))
    return {"accuracy": float(correct.mean()), "macro_f1": float(np.mean(f1s)), "ece": float(ece),
            "brier": float(np.mean((c - correct) ** 2))}


def follow_the_signal(pred: list[str], forward: list[float], horizon: int) -> dict[str, float]:
    """Hold +1/-1/0 per sample for ``horizon`` bars: Sharpe (annualised), hit rate over trades, total return."""
    r = np.array([_POSITION[a] for a in pred]) * np.array(forward)
    trades = np.array([a != "HOLD" for a in pred])
    sr = float(sharpe(r, 252 / horizon))
    return {"sharpe": sr if math.isfinite(sr) else 0.0,
            "hit_rate": float(np.mean(r[trades] > 0)) if trades.any() else 0.0,
            "total_return": float(np.prod(1 + r) - 1), "trades": int(trades.sum())}


def evaluate(cfg: Config, pc: PipelineConfig, samples: list[Sample], quiet: bool = True) -> dict[str, Any]:
    """Run the pipeline on ``samples`` and compute every metric (chart alone, fused, anchors)."""
    pipe = SignalPipeline.from_config(pc)
    with progress_bar(not quiet, len(samples), "eval") as advance:
        out = pipe.run(pipe.adecide_many(
            [lambda s=s: make_item(pc, s.image, s.news, s.last_close, atr=s.atr) for s in samples],
            on_done=advance))
    failed = [o for o in out if not isinstance(o, FinalDecision)]
    if failed:
        raise failed[0]
    decisions: list[FinalDecision] = out  # type: ignore[assignment]
    labels = [s.label for s in samples]
    fwd = [s.forward_return for s in samples]
    h = cfg.dataset.horizon
    rows: dict[str, dict[str, float]] = {}
    for name, acts, confs in (
            ("chart", [d.vlm_signal.action for d in decisions], [d.vlm_signal.confidence for d in decisions]),
            ("fused", [d.final_action for d in decisions], [d.final_confidence for d in decisions])):
        rows[name] = {**classification(acts, confs, labels), **follow_the_signal(acts, fwd, h)}
    majority = max(ACTIONS, key=labels.count)
    rows[f"always {majority}"] = {**classification([majority] * len(labels), [1.0] * len(labels), labels),
                                           **follow_the_signal([majority] * len(labels), fwd, h)}
    rows["buy & hold"] = follow_the_signal(["BUY"] * len(labels), fwd, h)
    meta = decisions[0].meta
    return {"samples": len(samples), "label_counts": {a: labels.count(a) for a in ACTIONS}, "horizon": h,
            "engine": meta["engine"], "vlm_model": meta["vlm_model"], "sentiment_model": meta["sentiment_model"],
            "providers": meta["providers"], "eval_news": pc.eval_news, "metrics": rows,
            "level_atr_sources": dict(Counter(d.meta["level_atr"]["source"] for d in decisions)),
            "levels_rejected": sum(any("levels out of bounds" in n for n in d.meta["notes"]) for d in decisions),
            "pipeline": {k: v for k, v in asdict(pc).items() if k != "api_key"},
            "mean_latency_s": float(np.mean([d.meta["latency_s"]["total"] for d in decisions]))}


def run_eval(cfg: Config, pc: PipelineConfig, output: str, limit: int = 0,
             quiet: bool = False) -> tuple[dict[str, Any], Path]:
    """The ``--eval`` command: evaluate and save the JSON atomically; returns the result and its path (the caller
    prints :func:`eval_table`)."""
    result = evaluate(cfg, pc, load_test_samples(cfg, limit), quiet=quiet)
    return result, write_atomic(output, json.dumps(result, indent=2) + "\n")


def eval_table(result: dict[str, Any]) -> str:
    """The ``--eval`` result as a text table: one row per predictor."""
    cols = {"accuracy": "acc", "macro_f1": "F1", "ece": "ECE", "brier": "Brier", "sharpe": "Sharpe",
            "hit_rate": "hit", "total_return": "return", "trades": "n"}
    names = list(result["metrics"])
    w = max(len("predictor"), *(len(n) for n in names)) + 2
    lines = [f"signal eval: {result['samples']} test samples, chart={result['vlm_model']}, "
             f"news={result['sentiment_model']}",
             f"{'predictor':<{w}}" + "".join(f"{c:>8}" for c in cols.values())]
    for name, m in result["metrics"].items():
        lines.append(f"{name:<{w}}" + "".join(
            f"{'' if c not in m else m[c] if isinstance(m[c], int) else format(m[c], '.3f'):>8}" for c in cols))
    return "\n".join(lines)
