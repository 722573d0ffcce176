"""PNG figures of an optimizer run: baseline vs proposals (IS and OOS bars) and equity curves. Written atomically."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from ..fileio import write_atomic  # noqa: E402

_PANELS = (("sharpe", "Sharpe ratio", 1.0), ("cagr", "Annualised return (%)", 100.0),
           ("max_drawdown", "Max drawdown (%)", 100.0))
_IS, _OOS = "#4C72B0", "#DD8452"


def _save(fig: plt.Figure, path: str | Path) -> Path:
    try:
        return write_atomic(path, lambda tmp: fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png"))
    finally:
        plt.close(fig)


def comparison_png(data: Mapping[str, Any], path: str | Path) -> Path:
    """``multi_llm_comparison.png``: Sharpe, annualised return (comparable across periods of different length) and
    max drawdown of the initial baseline and every backtested
    proposal, in-sample and out-of-sample side by side; the winner is marked."""
    s = data["summary"]
    items = [("initial baseline", s["initial"]["metrics_is"], s["initial"]["metrics_oos"])]
    items += [(f"R{p['round_no']} {p['name']}" + ("" if p["status"] in ("ok", "repaired") else f" ({p['status']})"),
               p["metrics_is"], p["metrics_oos"]) for p in data["proposals"] if p["metrics_is"] is not None]
    winner_params = s["winner"]["params"]
    win_label = next((f"R{p['round_no']} {p['name']}" for p in data["proposals"] if p["params"] == winner_params
                      and p["status"] in ("ok", "repaired")), "initial baseline")
    labels = [i[0] for i in items]
    x = np.arange(len(items))
    fig, axes = plt.subplots(3, 1, figsize=(max(8.0, 0.55 * len(items) + 3), 10), sharex=True)
    for ax, (metric, title, scale) in zip(axes, _PANELS, strict=True):
        iv = np.array([float(i[1].get(metric, np.nan)) * scale for i in items])
        ov = np.array([float(i[2].get(metric, np.nan)) * scale for i in items])
        if metric == "max_drawdown":  # drawdowns as negative bars whatever the engine's sign convention
            iv, ov = -np.abs(iv), -np.abs(ov)
        ax.bar(x - 0.2, iv, 0.4, label="in-sample", color=_IS, zorder=2)
        ax.bar(x + 0.2, ov, 0.4, label="out-of-sample", color=_OOS, zorder=2)
        for part, vals in (("IS", iv), ("OOS", ov)):
            ax.axhline(vals[0], color=_IS if part == "IS" else _OOS, lw=0.8, ls="--", alpha=0.7)
        ax.axhline(0, color="black", lw=0.6)
        ax.set_ylabel(title)
        ax.grid(axis="y", alpha=0.3)
        w = labels.index(win_label)
        ax.axvspan(w - 0.45, w + 0.45, color="gold", alpha=0.3, lw=0, zorder=0)
    axes[0].legend(loc="upper right", fontsize=8)
    axes[0].set_title(f"{data['run']['strategy']}: baseline vs proposals (dashed: baseline; shaded: winner)")
    axes[-1].set_xticks(x, labels, rotation=45, ha="right", fontsize=8)
    return _save(fig, path)


def equity_png(curves: Mapping[str, pd.Series], split: Any, path: str | Path, title: str = "") -> Path:
    """Equity curves (start 1.0, log scale) with the in-sample / out-of-sample boundary marked."""
    fig, ax = plt.subplots(figsize=(10, 5))
    for name, eq in curves.items():
        ax.plot(eq.index, eq.to_numpy(), label=name, lw=1.2)
    ax.axvline(split, color="grey", ls="--", lw=1)
    ymax = ax.get_ylim()[1]
    ax.text(split, ymax, "  out-of-sample →", va="top", fontsize=9, color="grey")
    ax.text(split, ymax, "← in-sample  ", va="top", ha="right", fontsize=9, color="grey")
    ax.set_yscale("log")
    ax.set_ylabel("equity (log scale, start = 1)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=9)
    ax.set_title(title or "equity curves")
    return _save(fig, path)
