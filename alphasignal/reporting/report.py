"""Markdown report of an optimizer run, written atomically; the same facts as the console summary."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..fileio import write_atomic
from ..storage.records import Analysis, Round, RunDetails, RunSummary
from .tables import (
    COMPARISON_HEADER,
    SHOWN,
    changes,
    comparison_rows,
    fmt,
    headline,
    result_table,
    segments_text,
    top_sweep,
)


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    esc = [[str(c).replace("|", "\\|") for c in r] for r in rows]
    return "\n".join(["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
                     + ["| " + " | ".join(r) + " |" for r in esc])


def _params(p: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in p.items())


def markdown(data: RunDetails, images: Mapping[str, str] | None = None) -> str:
    """The report text; ``images`` maps captions to relative PNG paths."""
    run, s, obj = data.run, data.summary, data.objective
    out = [f"# Multi-LLM optimizer report — {run.strategy}", "",
           f"Run `{run.run_id}` · status {run.status} · data {run.data_hash} · config {run.config_hash} "
           f"· seed {run.seed}", "",
           "Models: " + ", ".join(f"{k} = `{v}`" for k, v in run.models.items()), "",
           "The sweep and everything the agents and comparators saw are **exploration** metrics; each round's "
           f"baseline and each optimizer's winner are chosen by the **selection** {obj}; the **hold-out** (after an "
           "embargo) scores the winners once, after the run.", "", segments_text(data.segments) + ".", ""]
    if s:
        out += _result(s, obj)
    out += ["## Initial sweep (exploration), top 3", "",
            _md_table(["params", *SHOWN], [[_params(p.params), *(fmt(m, p.metrics("is").get(m)) for m in SHOWN)]
                                           for p in top_sweep(data)]), ""]
    for rd in data.rounds[1:]:
        out += _round(data, rd, obj)
    for caption, rel in (images or {}).items():
        out += [f"![{caption}]({rel})", ""]
    return "\n".join(out)


def _result(s: RunSummary, obj: str) -> list[str]:
    w, i = s.winner, s.initial
    out = ["## Result", "", f"**Best configuration:** `{_params(w.params)}` ({w.name}); changes vs the "
           f"initial baseline: {changes(w.params, i.params)}.", "", f"**Verdict:** {headline(s, obj)}.", ""]
    out += [_md_table(*result_table(s)), "",
            f"Configurations tried: **{s.configs_tried}** ({s.sweep_configs} sweep + {s.agent_backtests} "
            f"agent backtests from {s.proposals} proposals); rounds: {s.rounds} (stopped: "
            f"{s.stop_reason}). Deflated Sharpe Ratio of the winner's selection Sharpe given "
            f"{s.configs_tried} trials: **{s.dsr:.3f}**; PBO over all trials: **{s.pbo:.2f}**.", ""]
    out += [f"> **Warning:** {warn}" for warn in s.warnings] + [""]
    if s.compare:
        out += ["## Optimizers with the same backtest budget", "",
                _md_table(COMPARISON_HEADER, comparison_rows(s.compare)), ""]
    return out


def _round(data: RunDetails, rd: Round, obj: str) -> list[str]:
    rn = rd.round_no
    rep = rd.state.report or Analysis()
    out = [f"## Round {rn}", "", f"Baseline: `{_params(rd.baseline)}`", "", "**Analyst patterns**", ""]
    out += [f"- {x}" for x in rep.patterns] + ["", "**Analyst recommendations**", ""]
    out += [f"- {x}" for x in rep.recommendations] + ["", "**Strategist proposals**", ""]
    rows = [[p.name, changes(p.params or p.raw_params, rd.baseline), p.status,
             "; ".join(filter(None, [p.reason, *p.notes])) or "-", p.label or "-",
             fmt(obj, p.metrics("is").get(obj)), fmt(obj, p.metrics("oos").get(obj)),
             p.rationale or "-"] for p in data.round_proposals(rn)]
    out += [_md_table(["proposal", "changes", "outcome", "notes", "label", f"exploration {obj}", f"selection {obj}",
                       "rationale"], rows), ""]
    if rd.state.review:
        out += [f"Risk Manager: {rd.state.review}", ""]
    if rd.state.votes:
        out += ["**Debate votes**", "", _md_table(["round", "agent", "proposal", "vote", "argument"], [
            [str(v.round), v.agent, v.proposal, "for" if v.support else "against", v.argument]
            for v in rd.state.votes]), ""]
    return out


def write_report(data: RunDetails, path: str | Path, images: Mapping[str, str] | None = None) -> Path:
    """Write :func:`markdown` to ``path`` atomically."""
    return write_atomic(path, markdown(data, images))
