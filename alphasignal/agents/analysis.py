"""Pure statistics over the trials tried so far: marginal effects, interactions, plateau robustness, predictions.

The builtin Analyst reports these numbers; the builtin Strategist moves along them; the LLM roles get the same
figures as a compact, size-limited text (:func:`summary_text`). Input: a DataFrame with one row per configuration,
the parameter columns and in-sample metric columns.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd

from . import space

NEIGHBOURS = 6


def normalised(df: pd.DataFrame, sp: Mapping[str, Any]) -> np.ndarray:
    """Parameters scaled to [0, 1] by their spec range (booleans as 0/1), shape (rows, params)."""
    cols = []
    for name, spec in sp.items():
        lo, hi = _range(spec)
        cols.append((df[name].to_numpy(dtype=float) - lo) / ((hi - lo) or 1.0))
    return np.column_stack(cols) if cols else np.zeros((len(df), 0))


def point(params: Mapping[str, Any], sp: Mapping[str, Any]) -> np.ndarray:
    """One configuration in the normalised space."""
    out = []
    for name, spec in sp.items():
        lo, hi = _range(spec)
        out.append((float(params[name]) - lo) / ((hi - lo) or 1.0))
    return np.array(out)


def _range(spec: Any) -> tuple[float, float]:
    return (0.0, 1.0) if space.kind(spec) == "bool" else (float(spec.min), float(spec.max))


def marginal_effects(df: pd.DataFrame, sp: Mapping[str, Any], objective: str) -> dict[str, dict[str, Any]]:
    """Per parameter: mean objective by value, best value, and the standardised slope (correlation)."""
    out = {}
    y = df[objective].to_numpy(float)
    for name in sp:
        x = df[name].astype(float).to_numpy()
        means = df.groupby(name, sort=True)[objective].mean()
        slope = float(np.corrcoef(x, y)[0, 1]) if np.std(x) > 0 and np.std(y) > 0 else 0.0
        spread = float(means.max() - means.min()) if len(means) > 1 else 0.0
        out[name] = {"by_value": {_fmt(k): round(float(v), 4) for k, v in means.items()},
                     "best_value": means.idxmax() if len(means) else None, "slope": round(slope, 3),
                     "spread": round(spread, 4)}
    return out


def interactions(df: pd.DataFrame, sp: Mapping[str, Any], objective: str, top: int = 3) -> list[dict[str, Any]]:
    """Pairs whose joint effect is not additive: share of objective variance left by an additive two-way model."""
    y = df[objective].to_numpy(float)
    total = float(((y - y.mean()) ** 2).sum())
    if total <= 0:
        return []
    grand = y.mean()
    out = []
    for a, b in combinations(sp, 2):
        binned = df[[a, b, objective]].copy()
        for c in (a, b):
            if binned[c].nunique() > 8:
                binned[c] = pd.qcut(binned[c].astype(float), 5, duplicates="drop").cat.codes
        cell = binned.groupby([a, b])[objective].agg(["mean", "size"])
        ma = binned.groupby(a)[objective].mean()
        mb = binned.groupby(b)[objective].mean()
        additive = np.array([ma[i] + mb[j] - grand for i, j in cell.index])
        ss = float((cell["size"].to_numpy() * (cell["mean"].to_numpy() - additive) ** 2).sum())
        out.append({"params": [a, b], "share": round(ss / total, 3)})
    return sorted(out, key=lambda d: -d["share"])[:top]


def neighbours(df: pd.DataFrame, sp: Mapping[str, Any], params: Mapping[str, Any], k: int = NEIGHBOURS) -> pd.DataFrame:
    """The ``k`` tried configurations nearest to ``params`` (excluding itself), nearest first."""
    x = normalised(df, sp)
    d = np.sqrt(((x - point(params, sp)) ** 2).sum(axis=1))
    order = [i for i in np.argsort(d, kind="stable") if d[i] > 1e-12][:k]
    return df.iloc[order].assign(_distance=d[order])


def plateau(df: pd.DataFrame, sp: Mapping[str, Any], objective: str, k: int = NEIGHBOURS) -> dict[str, Any]:
    """Robustness of the best configuration, and the centre of the most robust plateau (best smoothed objective)."""
    best_i = int(df[objective].to_numpy(float).argmax())
    best = df.iloc[best_i]
    nb = neighbours(df, sp, best[list(sp)].to_dict(), k)
    best_val = float(best[objective])
    nb_mean = float(nb[objective].mean()) if len(nb) else best_val
    smooth = smoothed(df, sp, objective, k)
    centre = df.iloc[int(smooth.argmax())]
    return {"best": _params(best, sp), "best_value": round(best_val, 4), "neighbours": len(nb),
            "neighbour_mean": round(nb_mean, 4), "neighbour_min": round(float(nb[objective].min()), 4) if len(nb)
            else round(best_val, 4), "robustness": round(nb_mean / best_val, 3) if best_val > 0 else 0.0,
            "centre": _params(centre, sp), "centre_smoothed": round(float(smooth.max()), 4)}


def smoothed(df: pd.DataFrame, sp: Mapping[str, Any], objective: str, k: int = NEIGHBOURS) -> np.ndarray:
    """Each configuration's objective averaged with its ``k`` nearest neighbours (a plateau score)."""
    x = normalised(df, sp)
    y = df[objective].to_numpy(float)
    d = np.sqrt(((x[:, None, :] - x[None, :, :]) ** 2).sum(axis=2))
    idx = np.argsort(d, axis=1, kind="stable")[:, : k + 1]
    return y[idx].mean(axis=1)


def predict(df: pd.DataFrame, sp: Mapping[str, Any], params: Mapping[str, Any], column: str,
            k: int = NEIGHBOURS) -> float:
    """Inverse-distance weighted k-nearest-neighbour estimate of ``column`` at an untried configuration."""
    x = normalised(df, sp)
    d = np.sqrt(((x - point(params, sp)) ** 2).sum(axis=1))
    idx = np.argsort(d, kind="stable")[:k]
    w = 1.0 / (d[idx] + 1e-3)
    return float((df[column].to_numpy(float)[idx] * w).sum() / w.sum())


def local_gradient(df: pd.DataFrame, sp: Mapping[str, Any], params: Mapping[str, Any], objective: str,
                   k: int = 12) -> np.ndarray:
    """Least-squares slope of the objective around ``params`` in the normalised space (one entry per parameter)."""
    x = normalised(df, sp)
    d = np.sqrt(((x - point(params, sp)) ** 2).sum(axis=1))
    idx = np.argsort(d, kind="stable")[: max(k, len(sp) + 2)]
    a = np.column_stack([x[idx] - point(params, sp), np.ones(len(idx))])
    coef, *_ = np.linalg.lstsq(a, df[objective].to_numpy(float)[idx], rcond=None)
    return coef[:-1]


def analyse(df: pd.DataFrame, sp: Mapping[str, Any], objective: str) -> dict[str, Any]:
    """Everything the Analyst needs, as plain JSON-able data."""
    ranked = df.sort_values(objective, ascending=False)
    cols = list(sp) + [c for c in (objective, "total_return", "max_drawdown", "trades") if c in df and c != objective]
    return {"objective": objective, "configs": len(df),
            "top": _rows(ranked.head(5), cols), "bottom": _rows(ranked.tail(3), cols),
            "effects": marginal_effects(df, sp, objective), "interactions": interactions(df, sp, objective),
            "plateau": plateau(df, sp, objective)}


def summary_text(stats: Mapping[str, Any], max_chars: int = 2500) -> str:
    """A compact text of :func:`analyse` for a model prompt, cut to ``max_chars`` at a line boundary."""
    obj = stats["objective"]
    lines = [f"{stats['configs']} configurations tried; objective: in-sample {obj}.", "Top:"]
    lines += [f"  {_row_text(r)}" for r in stats["top"]]
    lines += ["Bottom:"] + [f"  {_row_text(r)}" for r in stats["bottom"]]
    lines.append("Marginal effect (mean objective by value; slope = correlation):")
    for name, e in stats["effects"].items():
        vals = ", ".join(f"{k}: {v}" for k, v in list(e["by_value"].items())[:8])
        lines.append(f"  {name}: slope {e['slope']}, best {e['best_value']}; {vals}")
    for it in stats["interactions"]:
        lines.append(f"Interaction {it['params'][0]} x {it['params'][1]}: {it['share']:.0%} of variance")
    p = stats["plateau"]
    lines.append(f"Best {p['best']} = {p['best_value']}; its {p['neighbours']} neighbours average "
                 f"{p['neighbour_mean']} (robustness {p['robustness']}); most robust plateau centre {p['centre']}.")
    out: list[str] = []
    for line in lines:
        if sum(len(s) + 1 for s in out) + len(line) > max_chars:
            break
        out.append(line)
    return "\n".join(out)


def _fmt(v: Any) -> Any:
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v)).lower()
    return str(int(v)) if float(v).is_integer() else str(round(float(v), 4))


def _params(row: pd.Series, sp: Mapping[str, Any]) -> dict[str, Any]:
    return {n: py_value(row[n]) for n in sp}


def py_value(v: Any) -> Any:
    """A numpy/pandas scalar as the plain Python bool, int or float."""
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    return round(float(v), 6)


def _rows(df: pd.DataFrame, cols: Sequence[str]) -> list[dict[str, Any]]:
    return [{c: py_value(r[c]) for c in cols} for _, r in df.iterrows()]


def _row_text(row: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in row.items())
