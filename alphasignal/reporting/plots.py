"""PNG figures of an optimizer run: baseline vs proposals (exploration, selection and hold-out bars) and equity
curves with the three segments shaded. Written atomically."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from ..errors import UsageError  # noqa: E402
from ..fileio import write_atomic  # noqa: E402
from ..storage.records import Proposal, RunDetails  # noqa: E402

_PANELS = (("sharpe", "Sharpe ratio", 1.0), ("cagr", "Annualised return (%)", 100.0),
           ("max_drawdown", "Max drawdown (%)", 100.0))
_COLOURS = {"is": "#4C72B0", "oos": "#DD8452", "holdout": "#55A868"}
_NAMES = {"is": "exploration", "oos": "selection", "holdout": "hold-out (winners only, scored once)"}


def _save(fig: plt.Figure, path: str | Path) -> Path:
    try:
        return write_atomic(path, lambda tmp: fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png"))
    finally:
        plt.close(fig)


def comparison_png(data: RunDetails, path: str | Path) -> Path:
    """``multi_llm_comparison.png``: Sharpe, annualised return (comparable across periods of different length) and
    max drawdown of the initial baseline, every backtested proposal and each comparator's winner, on exploration,
    selection and (initial baseline and winners only) hold-out side by side; the winner is shaded."""
    s = data.summary
    if s is None:
        raise UsageError(f"run {data.run.run_id} has no summary (status {data.run.status}): nothing to compare")

    def label(p: Proposal) -> str:
        return f"R{p.round_no} {p.name}"

    items: list[tuple[str, Any]] = [("initial baseline", s.initial)]
    items += [(label(p) + ("" if p.eligible else f" ({p.status})"), p) for p in data.agent_proposals if p.backtested]
    win_label = next((label(p) for p in data.agent_proposals if p.params == s.winner.params and p.eligible),
                     "initial baseline")
    items = [(lab, s.winner if lab == win_label else d) for lab, d in items]  # the winner's hold-out figures
    items += [(f"{r.optimizer} winner", r) for r in s.compare or () if r.optimizer != "agents"]
    labels = [i[0] for i in items]
    x = np.arange(len(items))
    fig, axes = plt.subplots(3, 1, figsize=(max(8.0, 0.65 * len(items) + 3), 10), sharex=True)
    for ax, (metric, title, scale) in zip(axes, _PANELS, strict=True):
        for k, part in enumerate(_COLOURS):
            vals = np.array([float(d.metrics(part).get(metric, np.nan)) * scale for _, d in items])
            if metric == "max_drawdown":  # drawdowns as negative bars whatever the engine's sign convention
                vals = -np.abs(vals)
            ax.bar(x + (k - 1) * 0.27, vals, 0.27, label=_NAMES[part], color=_COLOURS[part], zorder=2)
            if np.isfinite(vals[0]):
                ax.axhline(vals[0], color=_COLOURS[part], lw=0.8, ls="--", alpha=0.7)
        ax.axhline(0, color="black", lw=0.6)
        ax.set_ylabel(title)
        ax.grid(axis="y", alpha=0.3)
        w = labels.index(win_label)
        ax.axvspan(w - 0.45, w + 0.45, color="gold", alpha=0.3, lw=0, zorder=0)
    axes[0].legend(loc="upper right", fontsize=8)
    axes[0].set_title(f"{data.run.strategy}: baseline vs proposals (dashed: initial baseline; shaded: winner)")
    axes[-1].set_xticks(x, labels, rotation=45, ha="right", fontsize=8)
    return _save(fig, path)


def equity_png(curves: Mapping[str, pd.Series], segments: Mapping[str, Sequence[str]], path: str | Path,
               title: str = "") -> Path:
    """Equity curves (start 1.0, log scale) with the exploration, selection and hold-out segments shaded;
    ``segments`` maps ``exploration``/``selection``/``holdout`` to their first and last date."""
    fig, ax = plt.subplots(figsize=(10, 5))
    for key, part in (("exploration", "is"), ("selection", "oos"), ("holdout", "holdout")):
        first, last = (pd.Timestamp(d) for d in segments[key])
        ax.axvspan(first, last, color=_COLOURS[part], alpha=0.08, lw=0)
        ax.text(first, 0.99, " " + _NAMES[part].split(" (")[0], transform=ax.get_xaxis_transform(), va="top",
                fontsize=9, color="grey")
    for name, eq in curves.items():
        ax.plot(eq.index, eq.to_numpy(), label=name, lw=1.2)
    ax.set_yscale("log")
    ax.set_ylabel("equity (log scale, start = 1)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=9, loc="lower right")
    ax.set_title(title or "equity curves")
    return _save(fig, path)
