"""Page "Sweeps": a stage 05 results file and its metadata (heatmap, IS vs OOS, DSR/PBO, top N)."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from . import common, data

DSR_TEXT = ("**DSR** (deflated Sharpe ratio): the probability that the best configuration's Sharpe ratio is above "
            "zero once the number of configurations tried and the non-normal returns are accounted for; near 1 is "
            "convincing, below 0.95 is not.")
PBO_TEXT = ("**PBO** (probability of backtest overfitting, CSCV): how often the configuration that is best on one "
            "half of the history ranks below the median on the other half; 0 is good, 0.5 or more means the "
            "in-sample winner is no better than a random pick out of sample.")


def render() -> None:
    """Draw the page."""
    st.title("Sweeps")
    cfg = common.settings()
    path = common.pick_file("Sweep results", ["results"], [".csv", ".parquet"],
                            default=cfg.dashboard.sweep or cfg.sweep.output, key="sweep_file")
    if path is None:
        return
    stamp = common.mtime(path)
    header = common.sweep_header(str(path), stamp)
    metrics = data.metric_columns(header)
    metric = st.selectbox("Metric", metrics, index=metrics.index("sharpe") if "sharpe" in metrics else 0,
                          key="sweep_metric")
    df = common.sweep_frame(str(path), stamp, tuple(data.view_columns(header, metric)))
    meta_file = data.sweep_meta_path(path)
    meta = common.sweep_meta(str(path), common.mtime(meta_file))
    tickers = sorted(df["ticker"].astype(str).unique()) if "ticker" in df.columns else []
    if len(tickers) > 1:
        chosen = st.selectbox("Ticker", tickers, key="sweep_ticker")
        df = df[df["ticker"].astype(str) == chosen]
    strategy = (meta or {}).get("strategy") or (df["strategy"].iloc[0] if "strategy" in df.columns else "")
    st.caption(f"{path.name}: {len(df):,} configurations {strategy}")
    _overfitting(meta, meta_file.name)
    params = data.param_columns(df)
    _heatmap(df, params, metric)
    _scatter(df, params, common.settings().dashboard.max_points)
    n = common.settings().dashboard.top_n
    st.subheader(f"Top {n} by {metric}")
    st.dataframe(data.top_table(df, metric, n), hide_index=True, width="stretch")


def _overfitting(meta: dict | None, meta_name: str) -> None:
    st.subheader("Overfitting checks")
    if meta is None:
        st.warning(f"no metadata ({meta_name}) beside this file: DSR and PBO are unknown; rerun "
                   "python 05_sweep_backtest.py to write it")
        return
    rows = data.overfitting_rows(meta)
    if not rows:
        st.info("the metadata holds no DSR/PBO figures")
        return
    cols = st.columns(2 * len(rows[:3]))
    for i, r in enumerate(rows[:3]):
        cols[2 * i].metric(f"DSR {r['ticker']}", "-" if r["DSR"] is None else f"{r['DSR']:.3f}")
        cols[2 * i + 1].metric(f"PBO {r['ticker']}", "-" if r["PBO"] is None else f"{r['PBO']:.2f}")
    st.markdown(DSR_TEXT + "  \n" + PBO_TEXT)
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")


def _heatmap(df: pd.DataFrame, params: list[str], metric: str) -> None:
    st.subheader(f"{metric} heatmap")
    if len(params) < 2:
        st.info("a heatmap needs two parameters; this sweep varies fewer")
        return
    c1, c2, c3 = st.columns(3)
    x = c1.selectbox("x parameter", params, index=0, key="sweep_x")
    y = c2.selectbox("y parameter", params, index=1, key="sweep_y")
    mode = c3.radio("Other parameters", ["best of", "fixed"], horizontal=True, key="sweep_mode")
    fixed = {}
    if mode == "fixed":
        others = [p for p in params if p not in (x, y)]
        for col, p in zip(st.columns(max(len(others), 1)), others, strict=False):
            fixed[p] = col.selectbox(p, sorted(df[p].astype(str).unique()), key=f"sweep_fix_{p}")
    if x == y:
        st.info("pick two different parameters")
        return
    cells = data.heatmap(df, x, y, metric, fixed)
    if cells.empty:
        st.info("no configuration matches the fixed values")
        return
    chart = alt.Chart(cells).mark_rect().encode(
        x=alt.X(f"{x}:O"), y=alt.Y(f"{y}:O", sort="descending"),
        color=alt.Color("value:Q", title=metric, scale=alt.Scale(scheme="redyellowgreen")),
        tooltip=[x, y, alt.Tooltip("value:Q", title=metric, format=".3f")])
    st.altair_chart(chart.properties(height=min(600, max(160, 24 * cells[y].nunique()))), width="stretch")
    st.caption(f"{len(cells):,} cells; each is the {'best over the other parameters' if mode == 'best of' else 'value'}"
               " of its configurations")


def _scatter(df: pd.DataFrame, params: list[str], max_points: int) -> None:
    st.subheader("In-sample vs out-of-sample Sharpe")
    if not {"is_sharpe", "oos_sharpe"} <= set(df.columns):
        st.info("this file has no is_sharpe / oos_sharpe columns")
        return
    pts = data.scatter_sample(df, "is_sharpe", "oos_sharpe", max_points)
    chart = alt.Chart(pts[["is_sharpe", "oos_sharpe", *params]]).mark_circle(size=25, opacity=0.6).encode(
        x=alt.X("is_sharpe:Q", title="in-sample Sharpe", scale=alt.Scale(zero=False)),
        y=alt.Y("oos_sharpe:Q", title="out-of-sample Sharpe", scale=alt.Scale(zero=False)),
        tooltip=params + [alt.Tooltip("is_sharpe:Q", format=".3f"), alt.Tooltip("oos_sharpe:Q", format=".3f")])
    st.altair_chart(chart.interactive(), width="stretch")
    shown = f"{len(pts):,} of {len(df):,} points shown (the top tenth by in-sample Sharpe and a seeded sample)" \
        if len(pts) < len(df) else f"{len(pts):,} points"
    st.caption(shown + "; points on the diagonal kept their in-sample Sharpe out of sample")
