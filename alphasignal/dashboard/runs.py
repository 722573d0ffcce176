"""Page "Optimizer runs": the stage 06 history database, opened read-only (``mode=ro``)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence

import altair as alt
import pandas as pd
import streamlit as st

from ..reporting.tables import COMPARISON_HEADER, SEGMENTS, comparison_rows, fmt, headline, result_table, segments_text
from ..storage.history import History, HistoryError
from ..storage.records import OptimizerResult, Round, Run, RunDetails
from . import common, data, equity

ORDER = [name for _, name in SEGMENTS]
SEGMENT_COLOURS = alt.Scale(domain=ORDER, range=["#4C72B0", "#DD8452", "#55A868"])  # as in the stage 06 PNGs


@st.cache_data(show_spinner=False, max_entries=16)
def _runs(path: str, stamp: int) -> list[Run]:
    with History(path, create=False) as h:
        try:
            return h.runs()
        except sqlite3.DatabaseError as exc:  # e.g. an empty file: SQLite, but no history tables
            raise HistoryError(f"history database {path!r} cannot be listed ({exc}): point the picker at the "
                               "file python 06_multi_llm_optimize.py wrote") from None


@st.cache_data(show_spinner=False, max_entries=16)
def _run(path: str, stamp: int, run_id: str) -> RunDetails:
    from dataclasses import replace

    from ..reporting.tables import load_run

    with History(path, create=False) as h:
        d = load_run(h, run_id, messages=True)
    # the page shows who answered, how fast and any error: the replies themselves stay in the database
    return replace(d, messages=tuple(replace(m, raw="", parsed=None) for m in d.messages))


def render() -> None:
    """Draw the page."""
    st.title("Optimizer runs")
    cfg = common.settings()
    db = common.pick_file("History databases", ["results"], [".sqlite", ".sqlite3", ".db"],
                          default=cfg.dashboard.history_db or cfg.optimizer.history_db, key="runs_db")
    if db is None:
        return
    if not db.is_file():
        st.info(f"no history database at {str(db)!r} yet: run python 06_multi_llm_optimize.py first")
        return
    stamp = common.mtime(db)
    try:
        runs = _runs(str(db), stamp)
    except HistoryError as exc:
        st.error(str(exc))
        return
    if not runs:
        st.info(f"{db.name} holds no runs yet: run python 06_multi_llm_optimize.py")
        return
    st.subheader(f"{len(runs)} runs in {db.name}")
    st.dataframe(data.run_rows(runs), hide_index=True, width="stretch")
    run_id = st.selectbox("Run", [r.run_id for r in runs], key="runs_id")
    if run_id:
        _show_run(_run(str(db), stamp, run_id))


def _show_run(d: RunDetails) -> None:
    run, s, obj = d.run, d.summary, d.objective
    st.header(f"{run.strategy} — run {run.run_id}")
    st.caption(f"status {run.status}; config {run.config_hash}, data {run.data_hash}; models: "
               + ", ".join(f"{k}={v}" for k, v in run.models.items()))
    st.write(segments_text(d.segments))
    if s:
        st.subheader("Initial baseline vs best: exploration | selection | hold-out")
        header, rows = result_table(s)
        st.dataframe(pd.DataFrame(rows, columns=header), hide_index=True, width="stretch")
        st.write(headline(s, obj))
        st.caption(f"configurations tried {s.configs_tried}; rounds {s.rounds} (stopped: {s.stop_reason}); "
                   f"DSR of the winner's selection {obj} {s.dsr:.3f}; PBO over all trials {s.pbo:.2f}")
        for warn in s.warnings:
            st.warning(warn)
        if s.compare:
            _comparison(s.compare)
        if st.toggle("Equity curves (re-runs three backtests on the run's config and data)", key="runs_equity"):
            _equity(d)
    else:
        st.info("this run has no summary yet (still running, interrupted or failed)")
    _proposal_chart(d, obj)
    for rd in d.rounds[1:]:
        _round(d, rd, obj)


def _comparison(rows: Sequence[OptimizerResult]) -> None:
    st.subheader("Optimizers with the same backtest budget on the same segments")
    st.dataframe(pd.DataFrame(comparison_rows(rows), columns=COMPARISON_HEADER), hide_index=True, width="stretch")
    long = pd.DataFrame([{"optimizer": r.optimizer, "segment": name, "sharpe": r.metrics(part).get("sharpe")}
                         for r in rows for part, name in SEGMENTS])
    chart = alt.Chart(long.dropna()).mark_bar().encode(
        x=alt.X("optimizer:N", title=None), xOffset=alt.XOffset("segment:N", sort=ORDER),
        y=alt.Y("sharpe:Q", title="Sharpe"), color=alt.Color("segment:N", scale=SEGMENT_COLOURS),
        tooltip=["optimizer", "segment", alt.Tooltip("sharpe:Q", format=".3f")])
    st.altair_chart(chart.interactive(), width="stretch")


@st.cache_data(show_spinner="re-running the backtests of this run ...", max_entries=8)
def _curves(run_id: str, created: float, _run: Run, max_points: int) -> pd.DataFrame:
    return equity.run_equity(_run, max_points)


def _equity(d: RunDetails) -> None:
    run = d.run
    long = _curves(run.run_id, run.created, run, common.settings().dashboard.max_points)
    dates = ((d.summary.segments if d.summary else None) or {}).get("dates") or {}
    spans = pd.DataFrame([{"segment": name, "start": pd.Timestamp(dates[key][0]), "end": pd.Timestamp(dates[key][1])}
                          for key, name in (("exploration", "exploration"), ("selection", "selection"),
                                            ("holdout", "hold-out")) if key in dates])
    lines = alt.Chart(long).mark_line().encode(
        x=alt.X("date:T", title=None), y=alt.Y("equity:Q", scale=alt.Scale(type="log"), title="equity (log, start 1)"),
        color="curve:N", tooltip=["curve", "date:T", alt.Tooltip("equity:Q", format=".3f")])
    layers = [lines]
    if not spans.empty:
        layers.insert(0, alt.Chart(spans).mark_rect(opacity=0.12).encode(x="start:T", x2="end:T", color=alt.Color(
            "segment:N", scale=SEGMENT_COLOURS)))
    st.subheader("Equity: initial baseline vs best vs buy & hold")
    st.altair_chart(alt.layer(*layers).resolve_scale(color="independent").interactive(bind_y=False),
                    width="stretch")


def _proposal_chart(d: RunDetails, obj: str) -> None:
    pts = [{"round": p.round_no, "proposal": p.name, "status": p.status,
            "exploration": p.metrics("is").get(obj), "selection": p.metrics("oos").get(obj)}
           for p in d.agent_proposals if p.backtested]
    if not pts:
        return
    st.subheader(f"Backtested proposals: exploration vs selection {obj}")
    chart = alt.Chart(pd.DataFrame(pts).dropna(subset=["exploration", "selection"])).mark_circle(size=70).encode(
        x=alt.X("exploration:Q", title=f"exploration {obj}"), y=alt.Y("selection:Q", title=f"selection {obj}"),
        color="status:N", tooltip=["round", "proposal", "status", alt.Tooltip("exploration:Q", format=".3f"),
                                   alt.Tooltip("selection:Q", format=".3f")])
    st.altair_chart(chart.interactive(), width="stretch")


def _round(d: RunDetails, rd: Round, obj: str) -> None:
    rn = rd.round_no
    props = d.round_proposals(rn)
    with st.expander(f"Round {rn}: {len(props)} proposals" + (" — improved" if rd.improved else "")):
        report = rd.state.report
        for line in report.patterns if report else ():
            st.markdown(f"**Analyst**: {line}")
        for line in report.recommendations if report else ():
            st.markdown(f"**Analyst recommends**: {line}")
        rows = [{"proposal": p.name, "raw params": json.dumps(p.raw_params),
                 "params (repaired)": json.dumps(p.params) if p.params is not None else "-",
                 "status": p.status, "reason": p.reason, "notes": "; ".join(p.notes),
                 **{f"{name} {obj}": fmt(obj, p.metrics(part).get(obj)) for part, name in SEGMENTS[:2]},
                 "label": p.label, "rationale": p.rationale} for p in props]
        st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
        if rd.state.review:
            st.markdown(f"**Risk Manager**: {rd.state.review}")
        votes = rd.state.votes or ()
        if votes:
            st.markdown(f"**Debate**: {len(votes)} votes, {sum(not v.support for v in votes)} against")
            st.dataframe(pd.DataFrame([v.to_json() for v in votes]), hide_index=True, width="stretch")
        msgs = d.round_messages(rn)
        if msgs:
            st.caption("agent calls: " + "; ".join(
                f"{m.agent} ({m.provider}/{m.model}, {m.latency_s:.2f} s"
                + (f", error: {m.error}" if m.error else "") + ")" for m in msgs))
