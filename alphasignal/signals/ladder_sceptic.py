"""The ladder split the way a sceptic asks (issue 27): every rung's scores by market regime of the window's end
date, and before/after each model rung's knowledge cut-off, each part with its own bootstrap intervals.

* Regime of a test window: its ticker's trailing buy & hold return over ``replay.regime_window`` bars to the
  window-end close (``evaluation.regimes``; ``replay.regime_up``/``regime_down``), from the market data the dataset
  was built from. Bars after the window's end are never read.
* Cut-offs: the ``cnn`` rung's is ``pipeline.chart_knowledge_cutoff`` or the last date of its training data (its
  model folder says); the ``vlm`` rung's is ``pipeline.chart_knowledge_cutoff`` (unknown when unset: a warning).
  Rules (majority, momentum, builtin) have learned no period.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..config import Config, PipelineConfig
from ..evaluation.ladder import REFERENCE, Rung, build_ladder
from ..evaluation.regimes import REGIMES, WARMUP, label, trailing_return
from .evaluate import Sample


def sample_regimes(cfg: Config, samples: Sequence[Sample]) -> np.ndarray:
    """The regime of each sample's window-end date (module doc)."""
    from ..market.universe import load_from_config

    rc = cfg.replay
    trailing: dict[str, pd.Series] = {}
    out = []
    for s in samples:
        if s.ticker not in trailing:
            trailing[s.ticker] = trailing_return(load_from_config(cfg.dataset, s.ticker)["Close"], rc.regime_window)
        t = trailing[s.ticker]
        when = pd.Timestamp(s.window_end)
        value = float(t.loc[when]) if when in t.index else math.nan
        out.append(label(np.array([value]), rc.regime_up, rc.regime_down)[0])
    return np.array(out, dtype=object)


def rung_cutoffs(cfg: Config, pc: PipelineConfig, names: Sequence[str]) -> dict[str, tuple[str, str]]:
    """rung -> (cut-off date or "", where it came from) for the model rungs among ``names``."""
    out = {}
    if "cnn" in names:
        if pc.chart_knowledge_cutoff:
            out["cnn"] = (pc.chart_knowledge_cutoff, "pipeline.chart_knowledge_cutoff")
        else:
            from ..providers.cnn import load_model

            folder = pc.vlm_model if pc.vlm_provider == "cnn" else cfg.training.cnn_output_dir
            own = str(load_model(Path(folder)).meta.get("knowledge_cutoff") or "")
            out["cnn"] = (own, "its training data's last date" if own else "not in its model folder")
    if "vlm" in names:
        out["vlm"] = ((pc.chart_knowledge_cutoff, "pipeline.chart_knowledge_cutoff") if pc.chart_knowledge_cutoff
                      else ("", "not set"))
    return out


def _subset(rungs: Sequence[Rung], mask: np.ndarray) -> list[Rung]:
    return [Rung(r.name, tuple(a for a, m in zip(r.actions, mask, strict=True) if m), r.prob[mask], r.prob_source,
                 r.detail) for r in rungs]


def _scores(labels: np.ndarray, dates: np.ndarray, rungs: Sequence[Rung], mask: np.ndarray, pc: PipelineConfig
            ) -> dict | None:
    if mask.sum() < 2:
        return None
    lad = build_ladder(list(labels[mask]), list(dates[mask]), _subset(rungs, mask), block=pc.eval_block,
                       n_boot=pc.eval_bootstrap, seed=pc.eval_seed)
    return {"n": int(mask.sum()), "share": float(mask.mean()),
            "rows": {r: {m: vars(iv) for m, iv in row.items()} for r, row in lad.rows.items()}}


def ladder_sceptic(cfg: Config, pc: PipelineConfig, samples: Sequence[Sample], rungs: Sequence[Rung]) -> dict:
    """The regime split, the split at each model rung's cut-off, and the warnings (module doc), JSON-ready (the
    ladder's files render it with ``evaluation.splits``)."""
    labels = np.array([s.label for s in samples], dtype=object)
    dates = np.array([s.window_end for s in samples], dtype=object)
    reg = sample_regimes(cfg, samples)
    regimes = {g: sc for g in (*REGIMES, WARMUP) if (sc := _scores(labels, dates, rungs, reg == g, pc))}
    splits, warnings = [], []
    names = [r.name for r in rungs]
    for name, (date, source) in rung_cutoffs(cfg, pc, names).items():
        if not date:
            warnings.append(f"the {name} rung's knowledge cut-off is unknown ({source}): its scores may be memory "
                            "of the test period; set pipeline.chart_knowledge_cutoff=YYYY-MM-DD")
            continue
        before = dates <= date
        if before.mean() > 0.5:
            warnings.append(f"{100 * before.mean():.0f} % of the test windows end on or before the {name} rung's "
                            f"knowledge cut-off {date}: there it may recall the outcome; judge it on the 'after' rows")
        keep = [r for r in rungs if r.name in (REFERENCE, name)]
        groups = {g: sc for g, m in (("before", before), ("after", ~before))
                  if (sc := _scores(labels, dates, keep, m, pc))}
        splits.append({"rung": name, "date": date, "source": source, "groups": groups})
    return {"regimes": regimes, "cutoffs": splits, "warnings": warnings,
            "regime_settings": [cfg.replay.regime_window, cfg.replay.regime_up, cfg.replay.regime_down]}
