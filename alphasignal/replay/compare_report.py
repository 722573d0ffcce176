"""The outputs of ``--replay --compare`` and ``--portfolio rank`` in ``replay.output_dir``, each written atomically:
``compare.md``/``rank.md`` (the table and how it was made), ``compare.csv``/``rank.csv`` (the same figures, one
row per column of the table), ``compare_equity.csv``/``rank_equity.csv``, ``compare.png``/``rank.png`` (every
equity curve on one plot) and, for the rank portfolio, ``rank_weights.csv`` (rung, decision date, ticker, target
weight of the headline book). Only facts of the decisions and the simulation go into them, so the same decisions
give the same bytes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from ..fileio import write_atomic
from .compare import CompareOutcome
from .report import cell
from .sceptic import markdown as sceptic_markdown

PALETTE = ("#1f77b4", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf")  # no grey/orange: anchors
SIGNAL_ROWS = (("total_return", "total return", "pct"), ("cagr", "CAGR", "pct"), ("sharpe", "Sharpe", "num"),
               ("sharpe_hac", "Sharpe [HAC 95 %]", "num"), ("psr_0", "PSR: P(Sharpe > 0)", "pct"),
               ("psr_bh", "PSR: P(Sharpe > buy & hold's)", "pct"),
               ("sortino", "Sortino", "num"), ("max_drawdown", "max drawdown", "pct"), ("trades", "trades", "int"),
               ("hit_rate", "hit rate", "pct"), ("avg_r", "average R", "num"), ("exposure", "exposure", "pct"),
               ("turnover", "turnover (x equity / year)", "num"), ("dsr", "DSR (rungs = trials)", "num"),
               ("random_rank", "beats random runs", "pct"))
RANK_COLS = (("total_return", "total return", "pct"), ("cagr", "CAGR", "pct"), ("sharpe", "Sharpe", "num"),
             ("sharpe_hac", "Sharpe [HAC]", "num"), ("psr_0", "PSR > 0", "pct"), ("psr_bh", "PSR > B&H", "pct"),
             ("max_drawdown", "max DD", "pct"), ("turnover_rebalance", "turnover / rebalance", "num"),
             ("turnover", "turnover / year", "num"), ("costs", "costs (x initial)", "pct"),
             ("ic_mean", "rank IC", "num"), ("ic_t", "IC t", "num"), ("dsr", "DSR", "num"))


def table(o: CompareOutcome) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of the comparison: metrics x columns (signals) or strategies x metrics (rank)."""
    if o.portfolio == "signals":
        names = list(o.columns)
        return ["metric", *names], [[label, *(cell(o.columns[n], k, kind) for n in names)]
                                    for k, label, kind in SIGNAL_ROWS]
    return ["portfolio", *(label for _, label, _ in RANK_COLS)], [
        [name, *(cell(col, k, kind) if k in col else "" for k, _, kind in RANK_COLS)]
        for name, col in o.columns.items()]


def markdown_table(o: CompareOutcome) -> str:
    head, rows = table(o)
    return "\n".join(["| " + " | ".join(head) + " |", "|---|" + "---|" * (len(head) - 1),
                      *("| " + " | ".join(r) + " |" for r in rows)])


def title(o: CompareOutcome) -> str:
    assert o.equity is not None
    d = o.equity.index
    kind = "rank portfolio" if o.portfolio == "rank" else "rungs compared"
    return f"{kind}: {', '.join(o.data.frames)}, {d[0].date()} to {d[-1].date()}"


def markdown(o: CompareOutcome) -> str:
    """``compare.md`` / ``rank.md``."""
    rc = o.rc
    rungs = "; ".join(f"`{r.name}` ({r.detail})" for r in o.rungs)
    warn = [f"> **Warning:** rung `{n}`: {w}\n" for n, a in o.sceptic.items() for w in a["warnings"]]
    lines = [f"# {title(o)}", "", *warn, f"- rungs: {rungs}", f"- costs: fees {rc.fees_bps:g} bps and slippage "
             f"{rc.slippage_bps:g} bps per side (stage 05's cost model); initial cash {rc.initial_cash:,.0f}"]
    if o.portfolio == "signals":
        lines += [f"- the same portfolio rules for every rung: decision at the close, fill at the next open, "
                  f"stop/target live from the entry bar, {rc.mode}, sizing {rc.sizing} (fraction {rc.fraction:g}), "
                  f"max hold {rc.max_hold or 'unlimited'} bars; a decision every {rc.every} bar(s) per ticker",
                  "- random: seeded random BUY/SELL on the same dates with the first rung's stop/target distances, "
                  f"as many as give its number of trades; {rc.random_runs} runs rank each rung"]
    else:
        lines += [f"- every {rc.every} date(s) of the universe's calendar the tickers are ranked by each rung's "
                  f"P(up) (bars <= t only); long the top {rc.rank_fraction:g}"
                  + ("" if rc.mode == "long_only" else ", short the bottom")
                  + " (at least one ticker a leg), equal-weighted, traded at the next open; long-short holds one "
                  "unit of capital in each leg",
                  "- rank IC: Spearman correlation of the scores with each ticker's return from the traded open to "
                  "the next rebalance's, averaged over dates (t = mean / standard error)",
                  "- equal-weight buy & hold: equal cash in every ticker at its first open in the period"]
    lines += [f"- DSR: the rungs count as trials (replay.trials x {len(o.rungs)} = {o.trials})",
              f"- 95 % circular block-bootstrap intervals ({rc.bootstrap} resamples of {rc.block}-bar blocks, "
              f"seed {rc.seed}); Sharpe [HAC]: the Newey-West interval of the same Sharpe ratio; PSR: the "
              "probabilistic Sharpe ratio against 0 and against buy & hold's Sharpe over the same days",
              *(f"- note: {n}" for n in o.notes), "", markdown_table(o), "",
              *(line for n, a in o.sceptic.items() for line in sceptic_markdown(a, f"rung `{n}`: ")),
              f"![equity]({'rank' if o.portfolio == 'rank' else 'compare'}.png)", ""]
    return "\n".join(lines)


def csv_frame(o: CompareOutcome) -> pd.DataFrame:
    """One row per column of the table, every figure and its interval."""
    rows = []
    for name, col in o.columns.items():
        row: dict[str, Any] = {"name": name}
        for k, v in col.items():
            if k == "interval":
                for m, (lo, hi) in v.items():
                    row[f"{m}_lo"], row[f"{m}_hi"] = lo, hi
            else:
                row[k] = v
        rows.append(row)
    return pd.DataFrame(rows)


def weights_frame(o: CompareOutcome) -> pd.DataFrame:
    """``rank_weights.csv``: the headline book's target weights per rung, decision date and ticker (non-zero)."""
    book = "long" if o.rc.mode == "long_only" else "long_short"
    parts = []
    for name, res in o.ranks.items():
        w = res.books[book].weights.stack()
        w = w[w != 0]
        parts.append(pd.DataFrame({"rung": name, "date": [d.date().isoformat() for d in w.index.get_level_values(0)],
                                   "ticker": w.index.get_level_values(1), "weight": w.to_numpy()}))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["rung", "date", "ticker", "weight"])


def write_compare(o: CompareOutcome, out: Path) -> dict[str, Path]:
    """Write every output (each atomically); returns their paths."""
    import matplotlib.pyplot as plt

    stem = "rank" if o.portfolio == "rank" else "compare"
    paths = {"report": out / f"{stem}.md", "table": out / f"{stem}.csv", "equity": out / f"{stem}_equity.csv",
             "plot": out / f"{stem}.png"}
    assert o.equity is not None
    eq = o.equity.copy()
    eq.insert(0, "date", [d.date().isoformat() for d in eq.index])
    write_atomic(paths["table"], csv_frame(o).to_csv(index=False, float_format="%.6g"))
    write_atomic(paths["equity"], eq.to_csv(index=False, float_format="%.6g"))
    if o.portfolio == "rank":
        paths["weights"] = out / "rank_weights.csv"
        write_atomic(paths["weights"], weights_frame(o).to_csv(index=False, float_format="%.6g"))
    fig = figure(o)
    try:
        write_atomic(paths["plot"], lambda tmp: fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png"))
    finally:
        plt.close(fig)
    write_atomic(paths["report"], markdown(o))
    return paths


def figure(o: CompareOutcome):
    """Every equity curve (start = 1) on one axis; anchors in grey and orange, legs dashed."""
    import matplotlib.pyplot as plt

    assert o.equity is not None
    fig, ax = plt.subplots(figsize=(11, 4.5))
    colour = {r.name: PALETTE[k % len(PALETTE)] for k, r in enumerate(o.rungs)}  # one colour a rung, legs included
    for name in o.equity.columns:
        y = o.equity[name].to_numpy() / o.rc.initial_cash
        style: dict[str, Any] = {"lw": 1.2, "color": colour.get(name.split(" ")[0])}
        if name in ("buy & hold", "equal-weight buy & hold"):
            style.update(color="#7f7f7f", lw=1.6)
        elif name == "random":
            style.update(color="#ff7f0e", ls=":")
        elif name.endswith((" long", " short")):
            style.update(ls="--" if name.endswith(" long") else ":", lw=0.9)
        ax.plot(o.equity.index, y, label=name, **style)
    ax.set_ylabel("equity (start = 1)")
    ax.set_title(title(o))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    return fig


def compare_command(cfg, pc, rc, quiet: bool = True) -> str:
    """``--replay --compare`` / ``--portfolio rank``: check the universe, run, write every output; returns the text
    to print (the table and where the files are)."""
    from ..market.universe import check_tickers
    from .compare import run_compare, run_rank
    from .rungs import default_rungs, parse_replay_rungs

    rungs = parse_replay_rungs(",".join(pc.compare)) if pc.compare else default_rungs(pc)
    check_tickers(rc.tickers, cfg.dataset, "the replay's universe (--tickers / --tickers-file)")
    o = (run_rank if rc.portfolio == "rank" else run_compare)(cfg, pc, rc, rungs, quiet)
    paths = write_compare(o, Path(rc.output_dir).expanduser())
    return "\n".join([title(o), "", markdown_table(o), "", *(f"note: {n}" for n in o.notes),
                      f"wrote {paths['report']} (+ {', '.join(p.name for k, p in paths.items() if k != 'report')})"])
