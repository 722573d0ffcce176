"""Console summary of an optimizer run (rich): sweep top-3, Analyst patterns, proposals, winner, honesty, comparison.

Everything is rendered from :func:`load_run`'s plain dict, which is read back from the history database, so a
live run and ``--show RUN_ID`` print the same report.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

from ..storage.history import History

SHOWN = ("sharpe", "total_return", "max_drawdown", "trades")


def load_run(history: History, run_id: str) -> dict[str, Any]:
    """A run with its rounds and proposals, as plain data."""
    run = history.run(run_id)
    rounds = history.rounds(run_id)
    props = history.proposals(run_id)
    return {"run": run, "rounds": rounds, "sweep": [p for p in props if p["source"] == "sweep"],
            "proposals": [p for p in props if p["source"] == "agent"], "summary": run.get("summary") or {},
            "objective": run["config"]["optimizer"]["objective"]}


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


def comparison_rows(rows: Sequence[Mapping[str, Any]]) -> list[list[str]]:
    """Rows of the optimizer comparison table: name, configs, IS Sharpe, OOS Sharpe, OOS return, DSR, params."""
    return [[r["optimizer"], str(r["configs"]), fmt("sharpe", r["metrics_is"].get("sharpe")),
             fmt("sharpe", r["metrics_oos"].get("sharpe")), fmt("total_return", r["metrics_oos"].get("total_return")),
             f"{r['dsr']:.3f}", _params(r["params"])] for r in rows]


COMPARISON_HEADER = ["optimizer", "backtests", "IS Sharpe", "OOS Sharpe", "OOS return", "DSR", "winner"]


def _params(p: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in p.items())


def _table(title: str, header: Sequence[str], rows: Sequence[Sequence[str]]) -> Table:
    t = Table(title=title, title_justify="left", header_style="bold")
    for h in header:
        t.add_column(h, overflow="fold")
    for r in rows:
        t.add_row(*r)
    return t


def print_report(data: Mapping[str, Any], console: Console | None = None) -> None:
    """Print the whole summary."""
    c = console or Console()
    run, s, obj = data["run"], data["summary"], data["objective"]
    c.rule(f"[bold]multi-LLM optimizer — {run['strategy']} — run {run['run_id']}")
    c.print("models: " + ", ".join(f"{k}={v}" for k, v in run["models"].items()) + f"; status {run['status']}")
    top = sorted(data["sweep"], key=lambda p: -float(p["metrics_is"].get(obj, float("-inf"))))[:3]
    c.print(_table(f"Top 3 of the in-sample sweep ({len(data['sweep'])} configs)", ["params", *SHOWN],
                   [[_params(p["params"]), *(fmt(m, p["metrics_is"].get(m)) for m in SHOWN)] for p in top]))
    for rd in data["rounds"][1:]:
        rn = rd["round_no"]
        c.rule(f"round {rn}")
        report = rd["state"].get("report") or {}
        for line in report.get("patterns", [])[:5]:
            c.print(f"  [cyan]Analyst[/]: {line}")
        for line in report.get("recommendations", [])[:3]:
            c.print(f"  [cyan]Analyst recommends[/]: {line}")
        rows = [[p["name"], changes(p["params"] or p["raw_params"], rd["baseline"]), _status(p),
                 fmt(obj, (p["metrics_is"] or {}).get(obj)), fmt(obj, (p["metrics_oos"] or {}).get(obj)),
                 fmt("max_drawdown", (p["metrics_oos"] or {}).get("max_drawdown"))]
                for p in data["proposals"] if p["round_no"] == rn]
        c.print(_table(f"Strategist proposals, round {rn}", ["proposal", "changes vs baseline", "outcome",
                                                             f"IS {obj}", f"OOS {obj}", "OOS max DD"], rows))
        if rd["state"].get("review"):
            c.print(f"  [magenta]Risk Manager[/]: {rd['state']['review']}")
        votes = rd["state"].get("votes") or []
        dissent = [v for v in votes if not v["support"]]
        if votes:
            c.print(f"  debate: {len(votes)} votes, {len(dissent)} against")
    if s:
        _print_summary(c, s, obj)


def _status(p: Mapping[str, Any]) -> str:
    text = p["status"] + (f" ({p['reason']})" if p["reason"] else "")
    if p["notes"]:
        text += "; " + "; ".join(p["notes"][:3])
    if p["metrics_oos"] is not None and p["status"] in ("ok", "repaired"):
        text += f" — {p.get('label') or ''}".rstrip(" —")
    return text


def _print_summary(c: Console, s: Mapping[str, Any], obj: str) -> None:
    w, i = s["winner"], s["initial"]
    c.rule("[bold]result")
    c.print(f"best configuration: [bold]{_params(w['params'])}[/] ({w['name']}); changes vs initial: "
            f"{changes(w['params'], i['params'])}")
    rows = []
    for m in ("sharpe", "total_return", "max_drawdown", "trades"):
        for part in ("is", "oos"):
            a, b = i[f"metrics_{part}"].get(m), w[f"metrics_{part}"].get(m)
            delta = None if a is None or b is None else float(b) - float(a)
            rows.append([f"{m} ({part.upper()})", fmt(m, a), fmt(m, b), "-" if delta is None else
                         ("+" if delta >= 0 else "") + fmt(m, delta)])
    c.print(_table("initial baseline vs best (IS and OOS)", ["metric", "initial", "best", "delta"],
                   rows))
    imp = s.get("improvement_pct")
    c.print(f"out-of-sample {obj} improvement: {'n/a' if imp is None else f'{imp:+.1f}%'}; verdict: [bold]"
            f"{s['label']}[/]")
    c.print(f"configurations tried: {s['configs_tried']} ({s['sweep_configs']} sweep + {s['agent_backtests']} agent "
            f"backtests, {s['proposals']} proposals); rounds {s['rounds']} (stopped: {s['stop_reason']}); "
            f"DSR of the winner {s['dsr']:.3f}; PBO over all trials {s['pbo']:.2f}")
    for warn in s.get("warnings", []):
        c.print(f"[yellow]warning[/]: {warn}")
    if s.get("compare"):
        c.print(_table("optimizers with the same backtest budget on the same split", COMPARISON_HEADER,
                       comparison_rows(s["compare"])))
