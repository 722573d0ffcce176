"""``--eval --compare``: the ladder's rungs on stage 01's test windows, all scored on the same windows.

- ``majority``: the train split's most frequent label, always; its probabilities are the train split's label
  frequencies (the prior every model has to beat on log-loss).
- ``momentum``: time-series momentum, the sign of the window's own return (last close / first close drawn - 1):
  BUY when up, SELL when down, HOLD when ``|return| < pipeline.momentum_hold`` (default 0: never HOLD).
  One-hot probabilities (its log-loss is clipped at ``classification.LOG_LOSS_EPS``).
- ``builtin``: the builtin chart reader (``charts/read.py``) through the builtin provider.
- ``cnn``: the chart CNN trained by stage 02 (``pipeline.vlm_provider = "cnn"``).
- ``vlm``: the configured vision model (``pipeline.vlm_provider`` or ``pipeline.provider``: ollama, llamacpp,
  openai); a run whose configuration resolves to the builtin reader is refused rather than scored twice.

Model rungs read the same PNGs with no news (only the chart signal is scored); their probabilities are the
provider's confidence in its action with the rest split evenly over the other two classes.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from ..config import Config, PipelineConfig
from ..errors import DataError, UsageError
from ..evaluation.classification import encode, from_confidence, one_hot, prior
from ..evaluation.ladder import (
    REFERENCE,
    Ladder,
    Rung,
    build_ladder,
    ladder_paths,
    parse_rungs,
    to_csv,
    to_markdown,
    to_text,
)
from ..fileio import write_atomic
from ..progress import progress_bar
from .evaluate import ACTIONS, Sample, load_test_samples, train_label_counts
from .ladder_sceptic import ladder_sceptic
from .schemas import FinalDecision

CNN_MODEL = "models/chart_cnn"  # the CNN rung's model folder (training.cnn_output_dir) unless vlm_provider is cnn


def majority_rung(counts: dict[str, int], n: int) -> Rung:
    """The train split's majority class, with the train label frequencies as probabilities."""
    best = max(ACTIONS, key=lambda a: counts.get(a, 0))  # ties: BUY, SELL, HOLD order
    pred = encode([best] * n)
    freq = [counts.get(a, 0) for a in ACTIONS]
    return Rung(REFERENCE, (best,) * n, prior(pred, freq), "train prior", f"always {best}")


def momentum_actions(returns: Sequence[float], hold: float = 0.0) -> tuple[str, ...]:
    """BUY for a positive window return, SELL for a negative one, HOLD when ``|r| < hold`` (or r == 0)."""
    return tuple("HOLD" if abs(r) < hold or r == 0 else "BUY" if r > 0 else "SELL" for r in returns)


def momentum_rung(returns: Sequence[float], hold: float = 0.0) -> Rung:
    """Time-series momentum over the window, one-hot."""
    actions = momentum_actions(returns, hold)
    return Rung("momentum", actions, one_hot(encode(actions)), "one-hot",
                f"sign of the window return, HOLD below {hold:g}" if hold else "sign of the window return")


def window_frames(cfg: Config, samples: Sequence[Sample]) -> list[pd.DataFrame]:
    """Each window's bars (first to last bar drawn: what its chart shows) from the market data the dataset was
    built from; a missing bar, or a close that does not match the dataset's entry price, raises DataError (other
    data, other settings)."""
    from ..market.universe import load_from_config

    frames: dict[str, pd.DataFrame] = {}
    out = []
    for s in samples:
        if s.ticker not in frames:
            frames[s.ticker] = load_from_config(cfg.dataset, s.ticker)
        first, last = pd.Timestamp(s.window_start), pd.Timestamp(s.window_end)
        part = frames[s.ticker].loc[first:last]
        if part.empty or part.index[0] != first or part.index[-1] != last:
            raise DataError(f"the market data of {s.ticker} has no bar at {s.window_start} or {s.window_end}: run "
                            "--eval with the dataset.* settings the dataset was built with")
        if not math.isclose(float(part["Close"].iloc[-1]) * s.price_scale, s.last_close, rel_tol=1e-5):
            raise DataError(f"{s.ticker} {s.window_end}: the market data's close differs from the dataset's entry "
                            "price: run --eval with the dataset.* settings (source, csv_path) it was built with")
        out.append(part)
    return out


def window_returns(cfg: Config, samples: Sequence[Sample]) -> list[float]:
    """Each window's return over the bars drawn (first to last close); see :func:`window_frames`."""
    return [float(f["Close"].iloc[-1] / f["Close"].iloc[0] - 1) for f in window_frames(cfg, samples)]


def cnn_rung(cfg: Config, pc: PipelineConfig, samples: Sequence[Sample], cnn_model: str = CNN_MODEL) -> Rung:
    """The chart CNN on every window's own bars (the bars its chart draws), in one onnxruntime call: the model's
    calibrated class probabilities, not a confidence spread over the other classes, and no PNG read back."""
    from ..charts.bitmap import frame_bars
    from ..providers.cnn import load_model

    folder = _model_of("cnn", pc, cnn_model)
    model = load_model(folder)
    frames = window_frames(cfg, samples)
    if len({len(f) for f in frames}) > 1:
        raise DataError("the test windows have different lengths: rebuild the dataset with one dataset.window")
    probs = model.predict_bars(np.stack([frame_bars(f) for f in frames]))
    prob = np.zeros((len(samples), len(ACTIONS)))
    for k, cls in enumerate(model.classes):  # BUY/SELL/HOLD, or up/down (then HOLD stays 0)
        prob[:, ACTIONS.index({"up": "BUY", "down": "SELL"}.get(cls, cls))] = probs[:, k]
    actions = tuple(ACTIONS[i] for i in prob.argmax(axis=1))
    return Rung("cnn", actions, prob, "model", f"cnn {folder}")


def model_rung(name: str, pc: PipelineConfig, samples: Sequence[Sample], quiet: bool = True,
               cnn_model: str = CNN_MODEL) -> Rung:
    """A chart provider's signal on every sample's PNG (no news): actions and confidence-based probabilities.
    ``cnn_model`` is the CNN rung's model folder unless ``pc.vlm_provider`` is already ``cnn``."""
    from .pipeline import SignalPipeline, make_item

    rpc = replace(rung_pipeline(name, pc, cnn_model), llm_provider="builtin", eval_news="none")
    pipe = SignalPipeline.from_config(rpc)
    if name == "vlm" and pipe.vlm.is_builtin:
        raise UsageError("the vlm rung found no vision model (the configuration resolves to the builtin reader): "
                         "set pipeline.provider or pipeline.vlm_provider to ollama, llamacpp or openai and start "
                         "its server, or leave vlm out of --compare")
    with progress_bar(not quiet, len(samples), f"ladder {name}") as advance:
        out = pipe.run(pipe.adecide_many(
            [lambda s=s: make_item(rpc, s.image, "", s.last_close, atr=s.atr) for s in samples], on_done=advance))
    failed = [o for o in out if not isinstance(o, FinalDecision)]
    if failed:
        raise failed[0]
    decisions: list[FinalDecision] = out  # type: ignore[assignment]
    actions = tuple(d.vlm_signal.action for d in decisions)
    prob = from_confidence(encode(actions), [d.vlm_signal.confidence for d in decisions])
    detail = "charts/read.py" if pipe.vlm.is_builtin else f"{pipe.vlm.name} {pipe.vlm.model}"
    return Rung(name, actions, prob, "confidence", detail)


def rung_pipeline(name: str, pc: PipelineConfig, cnn_model: str = CNN_MODEL) -> PipelineConfig:
    """The pipeline settings of a model rung (the ladder's and the replay's): its chart provider and model
    (``cnn_model``: the CNN rung's folder unless ``pc.vlm_provider`` is already cnn), the news model as set."""
    return replace(pc, vlm_provider=_provider_of(name, pc), vlm_model=_model_of(name, pc, cnn_model))


def _provider_of(name: str, pc: PipelineConfig) -> str:
    if name == "vlm":
        configured = pc.vlm_provider or pc.provider
        if configured in ("builtin", "cnn"):
            raise UsageError(f"the vlm rung needs a vision model, not pipeline.vlm_provider={configured!r}: set "
                             "--provider ollama|llamacpp|openai (or pipeline.vlm_provider) and --vlm-model, or "
                             "leave vlm out of --compare")
        return configured
    return name


def _model_of(name: str, pc: PipelineConfig, cnn_model: str) -> str:
    if name == "cnn":
        return pc.vlm_model if pc.vlm_provider == "cnn" else cnn_model
    if name == "builtin":
        return "builtin"
    return pc.vlm_model


def evaluate_ladder(cfg: Config, pc: PipelineConfig, rungs: str | Sequence[str], *, limit: int = 0,
                    quiet: bool = True, extra: Sequence[Rung] = (),
                    samples: Sequence[Sample] | None = None,
                    on_rung: Callable[[str], None] | None = None) -> tuple[Ladder, list[Sample]]:
    """Make every named rung (plus ``extra`` rungs already computed on the same samples) on the test windows and
    score them; returns the ladder and the windows it was scored on."""
    names = parse_rungs(rungs)
    windows = list(samples) if samples is not None else load_test_samples(cfg, limit)
    if not windows:
        raise UsageError("the test split is empty: rebuild the dataset with dataset.test_fraction > 0")
    counts = train_label_counts(cfg)
    made: list[Rung] = []
    for name in names:
        if on_rung:
            on_rung(name)
        if name == REFERENCE:
            made.append(majority_rung(counts, len(windows)))
        elif name == "momentum":
            made.append(momentum_rung(window_returns(cfg, windows), pc.momentum_hold))
        elif name == "cnn":
            made.append(cnn_rung(cfg, pc, windows, getattr(cfg.training, "cnn_output_dir", CNN_MODEL)))
        else:
            made.append(model_rung(name, pc, windows, quiet, getattr(cfg.training, "cnn_output_dir", CNN_MODEL)))
    made += list(extra)
    ladder = build_ladder([s.label for s in windows], [s.window_end for s in windows], made,
                          block=pc.eval_block, n_boot=pc.eval_bootstrap, seed=pc.eval_seed)
    ladder = replace(ladder, sceptic=ladder_sceptic(cfg, pc, windows, made))
    return ladder, windows



def write_ladder(ladder: Ladder, output: str | Path, meta: dict | None = None) -> tuple[Path, Path, Path]:
    """The ladder as JSON at ``output`` and as CSV and Markdown next to it (each file written atomically, all
    three made before the first is written)."""
    csv_path, md_path = ladder_paths(output)
    texts = [(Path(output), json.dumps({**ladder.as_dict(), **(meta or {})}, indent=2) + "\n"),
             (csv_path, to_csv(ladder)), (md_path, to_markdown(ladder))]
    return tuple(write_atomic(p, t) for p, t in texts)  # type: ignore[return-value]


def ladder_command(cfg: Config, pc: PipelineConfig, output: str | Path, *, limit: int = 0,
                   quiet: bool = False) -> str:
    """``--eval --compare``: make and score the rungs of ``pc.compare``, write the JSON, CSV and Markdown files;
    returns the text to print (the Markdown table and where the files are)."""
    ladder, _ = evaluate_ladder(cfg, pc, pc.compare, limit=limit, quiet=quiet)
    paths = write_ladder(ladder, output, {"dataset": str(Path(cfg.dataset.output_dir)),
                                          "momentum_hold": pc.momentum_hold})
    return to_text(ladder) + "\n" + "\n".join(f"saved {p}" for p in paths)
