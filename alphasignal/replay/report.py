"""The replay's outputs in ``replay.output_dir``, each written atomically: decisions.jsonl, trades.csv,
equity.csv, replay_report.md and replay.png; and the summary table on stdout.

Only facts of the decisions and the simulation go into the files (no wall-clock times, no counts of what this
particular run reused), so the same decisions always give the same bytes; timings go to stderr.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..fileio import write_all
from .outcome import Outcome
from .sceptic import markdown as sceptic_markdown
from .sceptic import warning_lines

COLUMNS = ("replay", "buy & hold", "random")
ROWS = (("total_return", "total return", "pct"), ("cagr", "CAGR", "pct"), ("sharpe", "Sharpe", "num"),
        ("sharpe_hac", "Sharpe [HAC 95 %]", "num"), ("psr_0", "PSR: P(Sharpe > 0)", "pct"),
        ("psr_bh", "PSR: P(Sharpe > buy & hold's)", "pct"),
        ("sortino", "Sortino", "num"), ("max_drawdown", "max drawdown", "pct"), ("trades", "trades", "int"),
        ("hit_rate", "hit rate", "pct"), ("avg_r", "average R", "num"), ("exposure", "exposure", "pct"),
        ("turnover", "turnover (x equity / year)", "num"))
EXIT_REASONS = ("stop", "target", "signal", "time", "open")


def fmt(value: Any, kind: str) -> str:
    """A table cell's number: percent, integer or two decimals; missing values as an en dash."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if kind == "pct":
        return f"{100 * value:.1f} %"
    if kind == "int":
        return f"{int(value):d}"
    return f"{value:.2f}"


def cell(col: dict[str, Any], key: str, kind: str) -> str:
    """A value with its 95 % interval in brackets where there is one."""
    text = fmt(col.get(key), kind)
    lo, hi = col.get("interval", {}).get(key, (None, None))
    if lo is not None and math.isfinite(lo):
        text += f" [{fmt(lo, kind).replace(' %', '')}, {fmt(hi, kind)}]"
    return text


def metric_rows(o: Outcome) -> list[list[str]]:
    """The comparison table: one row per metric, one column per strategy (95 % intervals in brackets)."""
    cols = o.comparison["columns"]
    return [[label, *(cell(cols[c], key, kind) for c in COLUMNS)] for key, label, kind in ROWS]


def usage_summary(o: Outcome) -> dict[str, float]:
    """Mean calls, tokens and model latency per decision, over the decisions the results use."""
    used = [o.records[j.key] for j in o.jobs if j.key in o.records]
    n = max(len(used), 1)
    tot = {k: sum(r.get("usage", {}).get(k, 0) for r in used) for k in ("calls", "tokens_in", "tokens_out",
                                                                          "latency_s")}
    return {"decisions": len(used), **{k: v / n for k, v in tot.items()}}


def markdown(o: Outcome) -> str:
    """``replay_report.md``."""
    rc, sim, cmp_ = o.rc, o.sim, o.comparison
    t = sim.trades
    reasons = ", ".join(f"{r} {int((t['exit_reason'] == r).sum())}" for r in EXIT_REASONS)
    use = usage_summary(o)
    news = (f"news: `{o.data.news.source}` ({o.data.news.rows} headlines; each decision sees those of the last "
            f"{rc.news_days:g} days before {rc.decision_time} UTC of its date)" if o.data.news.source else
            "news: **none** (no `--news-file`): every decision saw empty news, so the sentiment is NEUTRAL and "
            "the chart alone decides")
    failed = sum(1 for r in o.records.values() if not r.get("ok"))
    sceptic = cmp_.get("sceptic") or {"regimes": {}, "cutoffs": [], "warnings": [], "regime_settings": (0, 0, 0)}
    lines = [
        f"# Replay: {', '.join(o.data.frames)}, {sim.dates[0].date()} to {sim.dates[-1].date()}",
        "",
        *(w + "\n" for w in warning_lines(sceptic)),
        f"- decisions: {use['decisions']} (a decision every {rc.every} bar(s) per ticker; {failed} failed on bad "
        "input, traded as no decision); providers: " + ", ".join(f"`{p}`" for p in o.providers),
        f"- {news}",
        f"- execution: decision at the close, fill at the next open; stop-loss and take-profit live from the entry "
        f"bar (gap: fill at the open; both in one bar: the stop); exit on the opposite decision, on HOLD "
        f"({rc.hold_policy}), after {rc.max_hold or 'unlimited'} bars; {rc.mode}",
        f"- sizing: {rc.sizing} (fraction {rc.fraction:g}, vol target {rc.vol_target:g}), cap {rc.max_position:g} "
        f"of equity per ticker; fees {rc.fees_bps:g} bps and slippage {rc.slippage_bps:g} bps per side; one cash "
        f"account of {rc.initial_cash:,.0f}",
        "",
        "| metric | " + " | ".join(COLUMNS) + " |",
        "|---|" + "---|" * len(COLUMNS),
        *("| " + " | ".join(r) + " |" for r in metric_rows(o)),
        "",
        f"Brackets: 95 % circular block-bootstrap intervals ({rc.bootstrap} resamples of {rc.block}-bar blocks, "
        f"seed {rc.seed}); the HAC row: Newey-West interval of the same Sharpe ratio. PSR: the probabilistic "
        "Sharpe ratio (Bailey & Lopez de Prado), P(true Sharpe > 0) and P(true Sharpe > buy & hold's over the same "
        f"days). Buy & hold: equal cash per ticker at its first open. Random: seed {rc.seed}, random "
        "BUY/SELL on the same decision dates with the model's stop/target distances, as many as give the same "
        "number of trades.",
        "",
        f"- DSR: {fmt(cmp_['dsr'], 'num')} (trials = {cmp_['trials']}; with 1 trial it is the probabilistic "
        "Sharpe ratio: set `replay.trials` to the number of configurations you tried)",
        f"- the replay's Sharpe beats {fmt(cmp_['random_rank'], 'pct')} of {cmp_['random_runs']} seeded random "
        f"runs (their trades: median {int(np.median(cmp_['random_trades']))})",
        f"- exits: {reasons}; entries not taken (open already beyond a level, or no cash): {sim.skipped}",
        f"- per decision: {use['calls']:.2f} provider calls, {use['tokens_in']:.0f} tokens in and "
        f"{use['tokens_out']:.0f} out, {use['latency_s'] * 1000:.1f} ms",
        *(f"- note: {n}" for n in o.notes),
        "",
        *sceptic_markdown(sceptic),
        "![replay](replay.png)",
        "",
    ]
    return "\n".join(lines)


def equity_frame(o: Outcome) -> pd.DataFrame:
    """``equity.csv``: the replay's equity, drawdown and exposure beside both anchors, per date."""
    eq = o.sim.equity
    peak = np.maximum.accumulate(np.concatenate([[o.rc.initial_cash], eq]))[1:]
    return pd.DataFrame({"date": o.sim.dates.date, "equity": eq, "drawdown": eq / peak - 1,
                         "exposed": o.sim.exposed.astype(int), "buy_hold": o.comparison["buy_hold_equity"],
                         "random": o.comparison["random_equity"]})


def decisions_jsonl(o: Outcome) -> str:
    """``decisions.jsonl``: one line per ticker and date, in time order, with the decision and its meta."""
    return "".join(json.dumps(o.records[j.key], sort_keys=True) + "\n" for j in o.jobs if j.key in o.records)


def write_outputs(o: Outcome, out: Path) -> dict[str, Path]:
    """Write every output together (:func:`write_all`: all of them or none; the journal keeps the decisions);
    returns their paths."""
    import matplotlib.pyplot as plt

    paths = {"decisions": out / "decisions.jsonl", "trades": out / "trades.csv", "equity": out / "equity.csv",
             "report": out / "replay_report.md", "plot": out / "replay.png"}
    fig = figure(o)
    try:
        write_all({paths["decisions"]: decisions_jsonl(o),
                   paths["trades"]: o.sim.trades.to_csv(index=False, float_format="%.6g"),
                   paths["equity"]: equity_frame(o).to_csv(index=False, float_format="%.6g"),
                   paths["plot"]: lambda tmp: fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png"),
                   paths["report"]: markdown(o)})
    finally:
        plt.close(fig)
    return paths


def figure(o: Outcome):
    """Equity vs buy & hold and random, the drawdown, and each ticker's price with its trades marked."""
    import matplotlib.pyplot as plt

    tickers = list(o.data.frames)[:4]
    fig, axes = plt.subplots(2 + len(tickers), 1, figsize=(11, 3.2 * (2 + len(tickers))), sharex=True)
    d, rc = o.sim.dates, o.rc
    eq = equity_frame(o)
    for col, label, color in (("equity", "replay", "#1f77b4"), ("buy_hold", "buy & hold", "#7f7f7f"),
                              ("random", "random (seeded)", "#ff7f0e")):
        axes[0].plot(d, eq[col].to_numpy() / rc.initial_cash, label=label, color=color, lw=1.2)
    axes[0].set_ylabel("equity (start = 1)")
    axes[0].legend(fontsize=8)
    axes[0].set_title(f"replay of {', '.join(o.data.frames)}")
    axes[1].fill_between(d, 100 * eq["drawdown"].to_numpy(), 0, color="#d62728", alpha=0.4, lw=0)
    axes[1].set_ylabel("drawdown (%)")
    trades = o.sim.trades
    for ax, t in zip(axes[2:], tickers, strict=True):
        px = o.data.frames[t]["Close"]
        px = px[(px.index >= d[0]) & (px.index <= d[-1])]
        ax.plot(px.index, px.to_numpy(), color="black", lw=0.8)
        mine = trades[trades["ticker"] == t]
        for side, marker, color in (("long", "^", "#2ca02c"), ("short", "v", "#d62728")):
            s = mine[mine["side"] == side]
            ax.scatter(pd.to_datetime(s["entry_date"]), s["entry_price"], marker=marker, color=color, s=22,
                       label=f"{side} entry", zorder=3)
        ax.scatter(pd.to_datetime(mine["exit_date"]), mine["exit_price"], marker="x", color="#1f1f1f", s=18,
                   label="exit", zorder=3)
        ax.set_ylabel(f"{t} close")
        ax.legend(fontsize=7, loc="upper left")
    for ax in axes:
        ax.grid(alpha=0.3)
    return fig


def headline(o: Outcome, out: Path) -> str:
    """The line under the comparison table: DSR, the rank among random runs and where the files went."""
    return (f"DSR {fmt(o.comparison['dsr'], 'num')}; beats {fmt(o.comparison['random_rank'], 'pct')} of "
            f"{o.comparison['random_runs']} random runs; wrote {out}/")


def timing_line(o: Outcome) -> str:
    """How many decisions were made and reused, and how long each part took."""
    s, m = o.seconds, o.meter
    rate = m.decisions / s["decide"] if s["decide"] > 0 and m.decisions else 0.0
    return (f"decisions: {m.decisions} made ({rate:.1f}/s, {m.calls} provider calls, {m.tokens_total} tokens), "
            f"{o.reused} from the journal; decide {s['decide']:.1f} s, simulate {s['simulate']:.3f} s, "
            f"baselines and intervals {s['compare']:.1f} s")
