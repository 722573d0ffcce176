"""The ladder's rungs as replay decision-makers: what each one decides at a (ticker, bar), from bars <= that bar.

The rungs are the ones ``--eval --compare`` scores (``alphasignal.signals.ladder``), with the same decision rules:

- ``momentum``: the sign of the window's own return (last close / first close drawn - 1; ``momentum_actions``),
  traded with ATR levels as stage 01 labels set them (``dataset.stop_atr`` / ``take_profit_atr`` x ATR at t). For
  ranking, its score is that window return itself (its one-hot P(up) would tie every winner).
- ``builtin``, ``cnn``, ``vlm``: the chart provider the ladder configures for the rung (``rung_pipeline``),
  deciding through the replay's ``SignalPipeline`` with the replay's news, journaled like any replay decision; the
  replay trades the pipeline's final decision and ranks by ``p_up``: ``0.5 + 0.5 x confidence`` for the chart's
  BUY, ``0.5 - 0.5 x confidence`` for SELL, 0.5 for HOLD or a failed decision.
- ``majority`` has no per-date decision in a replay (always one class): buy & hold is its column.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from ..config import DatasetConfig, PipelineConfig
from ..errors import UsageError
from ..evaluation.ladder import RUNGS
from ..market.indicators import atr
from ..signals.ladder import momentum_actions
from .outcome import Job, ReplayData
from .portfolio import SIDE, Signal

REPLAY_RUNGS = tuple(r for r in RUNGS if r != "majority")
MODEL_RUNGS = ("builtin", "cnn", "vlm")


def parse_replay_rungs(text: str) -> tuple[str, ...]:
    """Rung names of ``--compare`` for a replay, in the ladder's order; an unknown name (or ``majority``, which has
    no per-date decision) raises ``UsageError`` listing the valid ones."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in REPLAY_RUNGS]
    if unknown or not names:
        what = f"unknown rung {', '.join(map(repr, unknown))}" if unknown else "no rung named"
        extra = " (majority has no per-date decision in a replay: buy & hold is its column)" \
            if "majority" in unknown else ""
        raise UsageError(f"--compare: {what}{extra}: use a comma-separated list of {', '.join(REPLAY_RUNGS)}")
    return tuple(r for r in REPLAY_RUNGS if r in names)


def default_rungs(pc: PipelineConfig) -> tuple[str, ...]:
    """The rung of the configured chart provider when ``--compare`` names none: cnn, vlm for a model server, else
    builtin (``auto`` counts as builtin here: name ``--compare vlm`` to rank by a served model)."""
    chart = pc.vlm_provider or pc.provider
    return ("cnn",) if chart == "cnn" else ("builtin",) if chart in ("builtin", "auto") else ("vlm",)


def window_return(close: np.ndarray, i: int, window: int) -> float:
    """Return over the ``window`` bars drawn for a decision at bar ``i`` (NaN before a full window)."""
    if i - window + 1 < 0:
        return math.nan
    return float(close[i] / close[i - window + 1] - 1.0)


def momentum_decisions(data: ReplayData, jobs: list[Job], ds: DatasetConfig, hold: float = 0.0
                       ) -> tuple[dict[str, dict[int, Signal]], dict[tuple[str, int], float]]:
    """The momentum rung at every job: (signals to trade, score per (ticker, bar) = the window return)."""
    signals: dict[str, dict[int, Signal]] = {t: {} for t in data.frames}
    scores: dict[tuple[str, int], float] = {}
    arrays = {t: (df["High"].to_numpy(dtype="float64"), df["Low"].to_numpy(dtype="float64"),
                  df["Close"].to_numpy(dtype="float64")) for t, df in data.frames.items()}
    atrs = {t: np.asarray(atr(h, lo, c, ds.atr_period)) for t, (h, lo, c) in arrays.items()}  # row t: bars <= t
    for j in jobs:
        close = arrays[j.ticker][2]
        r = window_return(close, j.bar, ds.window)
        scores[(j.ticker, j.bar)] = r
        action = momentum_actions([0.0 if math.isnan(r) else r], hold)[0]
        c = float(close[j.bar])
        a = float(atrs[j.ticker][j.bar])
        if not math.isfinite(a) or a <= 0:  # before the ATR warms up: the window's daily volatility
            win = close[max(0, j.bar - ds.window + 1):j.bar + 1]
            a = c * float(np.std(np.diff(np.log(win)), ddof=1)) if len(win) > 2 else 0.0
        side = SIDE.get(action, 0)
        stop, target = c - side * ds.stop_atr * a, c + side * ds.take_profit_atr * a
        signals[j.ticker][j.bar] = Signal(action, 1.0, stop, target) if side and a > 0 else Signal("HOLD")
    return signals, scores


def cnn_decisions(data: ReplayData, jobs: list[Job], ds: DatasetConfig, pc: PipelineConfig, folder: str
                  ) -> tuple[dict[str, dict[int, Signal]], dict[tuple[str, int], float]]:
    """The cnn rung at every job from the bars its chart would draw (``ds.window`` bars up to the decision), in
    batched onnxruntime calls -- no chart rendered and read back -- with the pipeline's rules for a chart signal
    and no headlines: the model's TradingSignal (ATR levels), refused levels outside ``pipeline.max_level_*``,
    fused with a neutral sentiment (so ``pipeline.hold_threshold`` applies). Score: ``0.5 + 0.5 (p(BUY) -
    p(SELL))``, the model's own P(up) ordering."""
    from ..charts.bitmap import frame_bars
    from ..providers.cnn import load_model, signal_json
    from ..signals.fusion import fuse
    from ..signals.schemas import NewsSentiment, TradingSignal

    model = load_model(folder)
    bars = {t: frame_bars(df) for t, df in data.frames.items()}
    atrs = {t: np.asarray(atr(b[:, 1], b[:, 2], b[:, 3], ds.atr_period)) for t, b in bars.items()}
    usable = [j for j in jobs if j.bar >= ds.window - 1]
    probs = np.concatenate([model.predict_bars(np.stack([bars[j.ticker][j.bar - ds.window + 1:j.bar + 1]
                                                         for j in usable[i:i + 4096]]))
                            for i in range(0, len(usable), 4096)]) if usable else np.zeros((0, 3))
    neutral = NewsSentiment(sentiment="NEUTRAL", intensity=0.0)
    col = {c: k for k, c in enumerate(model.classes)}
    buy, sell = ("BUY", "SELL") if "BUY" in col else ("up", "down")
    signals: dict[str, dict[int, Signal]] = {t: {} for t in data.frames}
    scores: dict[tuple[str, int], float] = {}
    for j in jobs:
        signals[j.ticker][j.bar], scores[(j.ticker, j.bar)] = Signal(""), 0.5  # too few bars for a window
    for j, pr in zip(usable, probs, strict=True):
        close, a = float(bars[j.ticker][j.bar, 3]), float(atrs[j.ticker][j.bar])
        ts = TradingSignal.model_validate_json(signal_json(model, pr, close, a, relative=False))
        if ts.action != "HOLD" and ts.check_levels(a, pc.max_level_atr, pc.max_level_pct):
            ts = TradingSignal(action="HOLD", confidence=ts.confidence, entry_price=ts.entry_price)
        f = fuse(ts, neutral, pc)
        signals[j.ticker][j.bar] = (Signal(f.action, f.confidence, ts.stop_loss, ts.take_profit) if f.action in SIDE
                                    else Signal(f.action, f.confidence))
        scores[(j.ticker, j.bar)] = 0.5 + 0.5 * float(pr[col[buy]] - pr[col[sell]])
    return signals, scores


def p_up(rec: dict[str, Any]) -> float:
    """P(up) of a journaled pipeline decision, from its chart signal (see the module doc)."""
    if not rec.get("ok"):
        return 0.5
    v = rec["decision"]["vlm_signal"]
    return 0.5 + 0.5 * SIDE.get(v["action"], 0) * float(v["confidence"])


def score_frame(scores: dict[tuple[str, int], float], data: ReplayData) -> pd.DataFrame:
    """Scores per (ticker, bar) as a frame of dates x tickers (NaN = not scored that date)."""
    cols: dict[str, pd.Series] = {}
    for t, df in data.frames.items():
        mine = {df.index[b]: s for (tk, b), s in scores.items() if tk == t}
        cols[t] = pd.Series(mine, dtype="float64")
    return pd.DataFrame(cols).sort_index()
