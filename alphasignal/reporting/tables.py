"""Console summary of an optimizer run (rich): segments, sweep top-3, Analyst patterns, proposals, winner on
exploration / selection / hold-out, honesty figures, comparison.

Everything is rendered from :func:`load_run`'s records (:class:`RunDetails`), read back from the history
database, so a live run and ``--show RUN_ID`` print the same report.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

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
             f"{r.dsr:.3f}", _params(r.params)] for r in rows]


COMPARISON_HEADER = ["optimizer", "backtests", "exploration Sharpe", "selection Sharpe", "hold-out Sharpe",
                     "hold-out Sharpe 95% CI", "hold-out return", "DSR (selection)", "winner"]


def _params(p: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in p.items())


def _table(title: str, header: Sequence[str], rows: Sequence[Sequence[str]]) -> Table:
    t = Table(title=title, title_justify="left", header_style="bold")
    for h in header:
        t.add_column(h, overflow="fold")
    for r in rows:
        t.add_row(*r)
    return t


def top_sweep(data: RunDetails, n: int = 3) -> list[Proposal]:
    """The ``n`` best exploration-sweep rows by the run's objective."""
    obj = data.objective
    return sorted(data.sweep, key=lambda p: -float(p.metrics("is").get(obj, float("-inf"))))[:n]


def print_report(data: RunDetails, console: Console | None = None) -> None:
    """Print the whole summary."""
    c = console or Console()
    run, s, obj = data.run, data.summary, data.objective
    c.rule(f"[bold]multi-LLM optimizer — {run.strategy} — run {run.run_id}")
    c.print("models: " + ", ".join(f"{k}={v}" for k, v in run.models.items()) + f"; status {run.status}")
    c.print(segments_text(data.segments))
    c.print(_table(f"Top 3 of the exploration sweep ({len(data.sweep)} configs)", ["params", *SHOWN],
                   [[_params(p.params), *(fmt(m, p.metrics("is").get(m)) for m in SHOWN)] for p in top_sweep(data)]))
    for rd in data.rounds[1:]:
        rn = rd.round_no
        c.rule(f"round {rn}")
        report = rd.state.report
        for line in report.patterns[:5] if report else ():
            c.print(f"  [cyan]Analyst[/]: {line}")
        for line in report.recommendations[:3] if report else ():
            c.print(f"  [cyan]Analyst recommends[/]: {line}")
        rows = [[p.name, changes(p.params or p.raw_params, rd.baseline), _status(p),
                 fmt(obj, p.metrics("is").get(obj)), fmt(obj, p.metrics("oos").get(obj)),
                 fmt("max_drawdown", p.metrics("oos").get("max_drawdown"))] for p in data.round_proposals(rn)]
        c.print(_table(f"Strategist proposals, round {rn}", ["proposal", "changes vs baseline", "outcome",
                                                             f"exploration {obj}", f"selection {obj}",
                                                             "selection max DD"], rows))
        if rd.state.review:
            c.print(f"  [magenta]Risk Manager[/]: {rd.state.review}")
        votes = rd.state.votes or ()
        dissent = [v for v in votes if not v.support]
        if votes:
            c.print(f"  debate: {len(votes)} votes, {len(dissent)} against")
    if s:
        _print_summary(c, s, obj)


def _status(p: Proposal) -> str:
    text = p.status + (f" ({p.reason})" if p.reason else "")
    if p.notes:
        text += "; " + "; ".join(p.notes[:3])
    if p.metrics_oos is not None and p.status in ELIGIBLE:
        text += f" — {p.label or ''}".rstrip(" —")
    return text


def _print_summary(c: Console, s: RunSummary, obj: str) -> None:
    w, i = s.winner, s.initial
    c.rule("[bold]result")
    c.print(f"best configuration: [bold]{_params(w.params)}[/] ({w.name}); changes vs initial: "
            f"{changes(w.params, i.params)}")
    c.print(_table("initial baseline vs best: exploration | selection | hold-out", *result_table(s)))
    c.print(headline(s, obj))
    c.print(f"configurations tried: {s.configs_tried} ({s.sweep_configs} sweep + {s.agent_backtests} agent "
            f"backtests, {s.proposals} proposals); rounds {s.rounds} (stopped: {s.stop_reason}); "
            f"DSR of the winner's selection Sharpe {s.dsr:.3f}; PBO over all trials {s.pbo:.2f}")
    for warn in s.warnings:
        c.print(f"[yellow]warning[/]: {warn}")
    if s.compare:
        c.print(_table("optimizers with the same backtest budget on the same segments", COMPARISON_HEADER,
                       comparison_rows(s.compare)))
