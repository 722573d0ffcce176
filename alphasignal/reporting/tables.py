"""The text of an optimizer run's summary (segments, sweep top-3, proposals' outcomes, winner on exploration /
selection / hold-out, honesty figures, comparison), shared by the console report (``alphasignal.cli.optimize``), the
Markdown report and the dashboard.

Everything is made from :func:`load_run`'s records (:class:`RunDetails`), read back from the history database, so a
live run and ``--show RUN_ID`` show the same report.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..storage.history import History
from ..storage.records import ELIGIBLE, OptimizerResult, Proposal, RunDetails, RunSummary

SHOWN = ("sharpe", "total_return", "max_drawdown", "trades")


def load_run(history: History, run_id: str, *, messages: bool = False) -> RunDetails:
    """A run with its rounds and proposals (and, with ``messages``, its agent messages)."""
    return history.details(run_id, messages=messages)


def fmt(metric: str, value: Any) -> str:
    """A metric for display: returns and drawdowns as %, counts as integers."""
    if value is None:
        return "-"
    v = float(value)
    if metric in {"total_return", "max_drawdown", "cagr", "volatility", "exposure", "win_rate"}:
        return f"{v:.1%}"
    if metric == "trades":
        return f"{v:.0f}"
    return f"{v:.3f}"


def changes(params: Mapping[str, Any] | None, base: Mapping[str, Any]) -> str:
    """``name old->new`` for each changed parameter."""
    if not params:
        return "-"
    diff = [f"{k} {base.get(k)}->{v}" for k, v in params.items() if base.get(k) != v]
    return ", ".join(diff) or "(same as baseline)"


SEGMENTS = (("is", "exploration"), ("oos", "selection"), ("holdout", "hold-out"))


def ci_text(m: Mapping[str, Any]) -> str:
    """``[lo, hi]`` of a hold-out Sharpe interval, or ``-``."""
    ci = m.get("sharpe_ci")
    if not ci or ci[0] is None:
        return "-"
    return f"[{fmt('sharpe', ci[0])}, {fmt('sharpe', ci[1])}]"


def segments_text(seg: Mapping[str, Any] | None) -> str:
    """One line naming the three segments, their dates and sizes."""
    if not seg:
        return "segments: not recorded (run made before the hold-out split)"
    parts = []
    for key, name in (("exploration", "exploration"), ("selection", "selection"), ("holdout", "hold-out")):
        a, b = seg[key]
        dates = seg.get("dates", {}).get(key)
        parts.append(f"{name} {dates[0]}..{dates[1]} ({b - a} bars)" if dates else f"{name} {b - a} bars")
        if key == "selection":
            parts.append(f"embargo {seg['embargo']} bars")
    return "segments: " + " | ".join(parts)


def result_table(s: RunSummary) -> tuple[list[str], list[list[str]]]:
    """Initial baseline vs best on the three segments side by side (header, rows)."""
    w, i = s.winner, s.initial
    header = ["metric"] + [f"{name}: {who}" for _, name in SEGMENTS for who in ("initial", "best")]
    rows = [[m] + [fmt(m, d.metrics(part).get(m)) for part, _ in SEGMENTS for d in (i, w)] for m in SHOWN]
    rows.append(["sharpe 95% CI", "", "", "", "", ci_text(i.metrics("holdout")), ci_text(w.metrics("holdout"))])
    return header, rows


def headline(s: RunSummary, obj: str) -> str:
    """The improvement % (hold-out, the headline; selection in brackets) and the verdicts."""
    def pct(v: Any) -> str:
        return "n/a" if v is None else f"{v:+.1f}%"

    if not s.holdout_scored:  # a run made before the hold-out split: its only figure was OOS
        return (f"no hold-out (run made before the split); out-of-sample {obj} improvement, selection-biased: "
                f"{pct(s.improvement_pct)}; verdict: {s.label}")
    text = (f"hold-out {obj} improvement over the initial baseline: {pct(s.improvement_pct)} (selection: "
            f"{pct(s.improvement_selection_pct)}); verdict: {s.label}")
    return text + (f"; {s.holdout_label}" if s.holdout_label else "")


def comparison_rows(rows: Sequence[OptimizerResult]) -> list[list[str]]:
    """Rows of the optimizer comparison table: Sharpe on each segment, the hold-out CI and return, DSR, winner."""
    return [[r.optimizer, str(r.configs), *(fmt("sharpe", r.metrics(part).get("sharpe")) for part, _ in SEGMENTS),
             ci_text(r.metrics("holdout")), fmt("total_return", r.metrics("holdout").get("total_return")),
             f"{r.dsr:.3f}", params_text(r.params)] for r in rows]


COMPARISON_HEADER = ["optimizer", "backtests", "exploration Sharpe", "selection Sharpe", "hold-out Sharpe",
                     "hold-out Sharpe 95% CI", "hold-out return", "DSR (selection)", "winner"]


def params_text(p: Mapping[str, Any]) -> str:
    """``name=value, ...`` of a configuration."""
    return ", ".join(f"{k}={v}" for k, v in p.items())


def top_sweep(data: RunDetails, n: int = 3) -> list[Proposal]:
    """The ``n`` best exploration-sweep rows by the run's objective."""
    obj = data.objective
    return sorted(data.sweep, key=lambda p: -float(p.metrics("is").get(obj, float("-inf"))))[:n]


def proposal_status(p: Proposal) -> str:
    """What became of a proposal: its status, the reason, its first notes and its label."""
    text = p.status + (f" ({p.reason})" if p.reason else "")
    if p.notes:
        text += "; " + "; ".join(p.notes[:3])
    if p.metrics_oos is not None and p.status in ELIGIBLE:
        text += f" — {p.label or ''}".rstrip(" —")
    return text
