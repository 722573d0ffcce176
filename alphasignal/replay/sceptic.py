"""What a sceptic asks of a replay: did it only work in one market regime, or only on dates the model may have
memorised? (issue 27; docs/sceptic.md explains how to read the sections.)

* Regimes: each date is bull, bear or sideways from the trailing equal-weight buy & hold return
  (``evaluation.regimes``, ``replay.regime_window/regime_up/regime_down``), read causally.
* Knowledge cut-off: decisions on or before a model's cut-off (the last date of its training data) could have been
  recalled rather than read; the metrics are split before/after it.

Every split row gives its share of the decisions, the days it covers, the replay's total return and Sharpe ratio
with its two 95 % intervals (circular block bootstrap and Newey-West HAC), the probabilistic Sharpe ratio against 0
and against buy & hold over the same days, buy & hold's Sharpe and the decisions' direction hit rate (a BUY is a
hit when the next close is higher, a SELL when it is lower). A daily return belongs to the group of the previous
date, whose close the position it earns was decided at.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..config import ReplayConfig
from ..evaluation.metrics import sharpe
from ..evaluation.psr import sharpe_evidence
from ..evaluation.regimes import REGIMES, WARMUP, classify
from .portfolio import SIDE, Signal

BEFORE, AFTER = "before", "after"


@dataclass(frozen=True)
class Cutoff:
    """A model's knowledge cut-off: ``role`` (chart or news), ``model`` (its name), ``date`` (YYYY-MM-DD or "" when
    unknown) and ``source`` (where the date came from)."""

    role: str
    model: str
    date: str
    source: str


def decision_table(signals: dict[str, dict[int, Signal]], frames: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """One row per decision: date, ticker, action and hit (BUY/SELL against the next close; NaN otherwise)."""
    rows = []
    for t, sig in signals.items():
        close = frames[t]["Close"].to_numpy(dtype="float64")
        idx = frames[t].index
        for j, s in sig.items():
            hit = math.nan
            if s.action in SIDE and j + 1 < len(close):
                move = close[j + 1] - close[j]
                hit = float(move * SIDE[s.action] > 0) if move != 0 else math.nan
            rows.append((idx[j], t, s.action, hit))
    return pd.DataFrame(rows, columns=["date", "ticker", "action", "hit"]).sort_values(["date", "ticker"],
                                                                                        kind="stable")


def _group_row(mask_days: np.ndarray, mask_dec: np.ndarray, r: np.ndarray, r_bh: np.ndarray, dec: pd.DataFrame,
               rc: ReplayConfig, ppy: float) -> dict:
    rm, bm = r[mask_days], r_bh[mask_days]
    ev = sharpe_evidence(rm, ppy, bm, seed=rc.seed, n_boot=rc.bootstrap, block=rc.block)
    hits = dec["hit"].to_numpy()[mask_dec]
    hits = hits[np.isfinite(hits)]
    return {"decisions": int(mask_dec.sum()), "share": float(mask_dec.mean()) if len(mask_dec) else math.nan,
            "days": int(mask_days.sum()), "total_return": float(np.prod(1 + rm) - 1) if len(rm) else math.nan,
            "sharpe": float(sharpe(rm, ppy)) if len(rm) > 1 else math.nan, **ev,
            "bh_sharpe": float(sharpe(bm, ppy)) if len(bm) > 1 else math.nan,
            "bh_return": float(np.prod(1 + bm) - 1) if len(bm) else math.nan,
            "hit_rate": float(hits.mean()) if len(hits) else math.nan, "directional": int(len(hits))}


def _day_labels(dates: pd.DatetimeIndex, labels: pd.Series) -> np.ndarray:
    """The label each daily return belongs to: the previous date's (the first day: its own)."""
    lab = labels.reindex(dates).to_numpy()
    return np.concatenate([lab[:1], lab[:-1]])


def split(dates: pd.DatetimeIndex, r: np.ndarray, r_bh: np.ndarray, dec: pd.DataFrame, day_label: pd.Series,
          dec_label: np.ndarray, groups: tuple[str, ...], rc: ReplayConfig, ppy: float) -> dict[str, dict]:
    """Metrics per group of ``groups`` (see the module doc); groups with neither days nor decisions are left out."""
    days = _day_labels(dates, day_label)
    out = {}
    for g in groups:
        md, mdec = days == g, dec_label == g
        if md.any() or mdec.any():
            out[g] = _group_row(md, mdec, r, r_bh, dec, rc, ppy)
    return out


def analyse(frames: dict[str, pd.DataFrame], signals: dict[str, dict[int, Signal]], dates: pd.DatetimeIndex,
            r: np.ndarray, r_bh: np.ndarray, rc: ReplayConfig, ppy: float, cutoffs: list[Cutoff]) -> dict:
    """The regime split, the split at each model's cut-off and the warnings for the report's first lines."""
    dec = decision_table(signals, frames)
    union = pd.DatetimeIndex(sorted(set().union(*(df.index for df in frames.values()))))
    reg = classify(frames, union, rc.regime_window, rc.regime_up, rc.regime_down)
    dec_reg = reg.reindex(pd.DatetimeIndex(dec["date"])).to_numpy()
    regimes = split(dates, r, r_bh, dec, reg, dec_reg, (*REGIMES, WARMUP), rc, ppy)
    splits, warnings = [], []
    for c in cutoffs:
        if not c.date:
            warnings.append(f"the {c.role} model `{c.model}`'s knowledge cut-off is unknown ({c.source}): its "
                            "results may be memory of the period, not skill; set pipeline."
                            f"{c.role}_knowledge_cutoff=YYYY-MM-DD")
            continue
        when = pd.Timestamp(c.date)
        side = pd.Series(np.where(union <= when, BEFORE, AFTER), index=union)
        dec_side = np.where(pd.DatetimeIndex(dec["date"]) <= when, BEFORE, AFTER)
        groups = split(dates, r, r_bh, dec, side, dec_side, (BEFORE, AFTER), rc, ppy)
        share = float(np.mean(dec_side == BEFORE)) if len(dec_side) else 0.0
        if share > 0.5:
            warnings.append(f"{100 * share:.0f} % of the decisions fall on or before the {c.role} model `{c.model}`'s "
                            f"knowledge cut-off {c.date}: there it may recall the outcome; judge it on the 'after' "
                            "rows")
        splits.append({"cutoff": c, "groups": groups, "share_before": share})
    return {"regimes": regimes, "cutoffs": splits, "warnings": warnings,
            "regime_settings": (rc.regime_window, rc.regime_up, rc.regime_down)}


def _f(v: float, kind: str = "num") -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    return f"{100 * v:.1f} %" if kind == "pct" else f"{v:.2f}"


def _ci(ci: tuple[float, float]) -> str:
    lo, hi = ci
    return f"[{_f(lo)}, {_f(hi)}]" if math.isfinite(lo) else "–"


HEAD = ("| group | decisions (share) | days | total return | Sharpe | bootstrap 95 % | HAC 95 % | PSR > 0 | "
        "PSR > buy & hold | buy & hold Sharpe | hit rate |")


def rows(groups: dict[str, dict]) -> list[str]:
    """Markdown rows of a split."""
    return [f"| {g} | {m['decisions']} ({_f(m['share'], 'pct')}) | {m['days']} | {_f(m['total_return'], 'pct')} | "
            f"{_f(m['sharpe'])} | {_ci(m['boot'])} | {_ci(m['hac'])} | {_f(m['psr_0'], 'pct')} | "
            f"{_f(m['psr_bh'], 'pct')} | {_f(m['bh_sharpe'])} | {_f(m['hit_rate'], 'pct')} |"
            for g, m in groups.items()]


def markdown(a: dict, prefix: str = "") -> list[str]:
    """The report's sections: by regime and before/after each known cut-off (``prefix`` starts each heading)."""
    if not a["regimes"] and not a["cutoffs"]:
        return []
    w, up, down = a["regime_settings"]
    lines = [f"## {prefix}by market regime" if prefix else "## By market regime", "",
             f"Each date is classed by the equal-weight buy & hold return over the {w} bars to its close: bull above "
             f"{_f(up, 'pct')}, bear below {_f(down, 'pct')}, sideways between (warm-up: fewer than {w} earlier "
             "bars). Hit rate: BUY/SELL decisions whose next close moved their way.", "",
             HEAD, "|---|" + "---|" * 10, *rows(a["regimes"]), ""]
    for s in a["cutoffs"]:
        c = s["cutoff"]
        head = f"{prefix}before" if prefix else "Before"
        lines += [f"## {head} / after the {c.role} model's knowledge cut-off ({c.date}, {c.source})", "",
                  f"`{c.model}`: 'before' holds the decisions on or before {c.date}, which it may have seen the "
                  "outcome of in training; only 'after' is out of its sample.", "",
                  HEAD, "|---|" + "---|" * 10, *rows(s["groups"]), ""]
    return lines


def warning_lines(a: dict) -> list[str]:
    """The warnings for the report's first lines (bold, one a line)."""
    return [f"> **Warning:** {w}" for w in a["warnings"]]


def cutoffs_of(pipe, chart_cutoff: str, news_cutoff: str) -> list[Cutoff]:
    """Each model's cut-off: the configured date, else one the model knows of itself (the CNN: its training data's
    last date), else unknown. The builtin engine has learned nothing, so it has none to report."""
    out = []
    for role, prov, value in (("chart", pipe.vlm, chart_cutoff), ("news", pipe.llm, news_cutoff)):
        model = prov.name if prov.model == prov.name else f"{prov.name} {prov.model}"
        if value:
            out.append(Cutoff(role, model, value, f"pipeline.{role}_knowledge_cutoff"))
        elif not prov.is_builtin:
            own = str(getattr(prov, "knowledge_cutoff", "") or "")
            out.append(Cutoff(role, model, own, "its training data's last date" if own else "not set"))
    return out
