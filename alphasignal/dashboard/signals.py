"""Page "Signals": run the stage 04 pipeline on one chart and news text; browse stage 04 replay results."""

from __future__ import annotations

from pathlib import Path

import altair as alt
import pandas as pd
import streamlit as st

from ..signals.pipeline import SignalPipeline, decision_json, make_item
from . import common, data
from .paths import find_files, guard


@st.cache_resource(show_spinner="resolving the model providers ...")
def _pipeline(pipeline_cfg: object) -> SignalPipeline:
    return SignalPipeline.from_config(pipeline_cfg)  # type: ignore[arg-type]


def render() -> None:
    """Draw the page."""
    st.title("Signals")
    tab_run, tab_replay = st.tabs(["Run the pipeline", "Replay results"])
    with tab_run:
        common.guarded(_run_tab)
    with tab_replay:
        common.guarded(_replay_tab)


def _run_tab() -> None:
    cfg = common.settings()
    upload = st.file_uploader("Upload a chart image (PNG or JPEG)", type=["png", "jpg", "jpeg"], key="sig_upload")
    image: bytes | None = upload.getvalue() if upload is not None else None
    if image is None:
        path = common.pick_file("Chart images", ["dataset", "results"], [".png", ".jpg", ".jpeg"], key="sig_image")
        if path is not None:
            if not path.is_file():
                st.error(f"image {str(path)!r} not found: pick another file")
            else:
                image = path.read_bytes()
    news = st.text_area("News (optional)", key="sig_news", max_chars=cfg.pipeline.max_news_chars,
                        placeholder="e.g. The company raised its full-year guidance after record iPhone sales.")
    pipe = _pipeline(cfg.pipeline)
    st.caption(f"providers: chart {pipe.vlm.name}, news {pipe.llm.name}"
               + (" (builtin offline engine)" if pipe.offline else ""))
    if not st.button("Run the pipeline", type="primary", disabled=image is None, key="sig_run"):
        if image is None:
            st.info("upload or pick a chart image first")
        return
    decision = pipe.decide(make_item(cfg.pipeline, image, news or None))
    left, right = st.columns([3, 2])
    left.image(image, caption="chart", width="stretch")
    with right:
        st.metric("Decision", decision.final_action, f"confidence {decision.final_confidence:.2f}",
                  delta_color="off")
        v = decision.vlm_signal
        st.write(f"chart signal: **{v.action}** ({v.confidence:.2f}); entry {v.entry_price:g}, stop "
                 f"{v.stop_loss if v.stop_loss is not None else '-'}, take-profit "
                 f"{v.take_profit if v.take_profit is not None else '-'}")
        st.write(f"news sentiment: **{decision.sentiment.sentiment}** ({decision.sentiment.intensity:.2f})"
                 + (": " + ", ".join(decision.sentiment.key_factors) if decision.sentiment.key_factors else ""))
        st.markdown(f"**Rationale**: {decision.meta.get('rationale') or '-'}")
        st.caption(f"fusion: {decision.meta.get('fusion', {}).get('reason', '')}")
    with st.expander("decision JSON"):
        st.code(decision_json(decision), language="json")


def _replay_tab() -> None:
    cfg = common.settings()
    r = common.roots()
    default = cfg.dashboard.replay_dir or str(r["results"] / "replay")
    found = [str(f.parent) for f in find_files(r, ["results"], ["equity.csv"])]
    if not found and not (Path(default) / "equity.csv").is_file():
        st.info(f"no replay results yet (looked for equity.csv under {str(r['results'])!r}): run python "
                "04_signal_pipeline.py --replay ... (it writes equity.csv, trades.csv and decisions.jsonl)")
        return
    options = found if default in found or not (Path(default) / "equity.csv").is_file() else [default, *found]
    folder = guard(st.selectbox("Replay results", options, key="replay_dir"), r)
    frames = common.replay_frames(str(folder), common.mtime(folder / "equity.csv"))
    eq, trades = frames["equity"], frames["trades"]
    eq = eq.iloc[:: max(1, len(eq) // cfg.dashboard.max_points)]  # at most ~max_points points to the browser
    st.subheader("Equity and drawdown")
    st.line_chart(eq, x="date", y="equity", height=260)
    st.area_chart(eq, x="date", y="drawdown", height=160)
    price_col = next((c for c in eq.columns if c.lower() in ("close", "price")), None)
    pts = data.trade_points(trades) if not trades.empty else pd.DataFrame()
    st.subheader(f"Trades ({len(trades)})")
    layers = []
    if price_col:
        layers.append(alt.Chart(eq).mark_line(color="grey").encode(x="date:T", y=alt.Y(f"{price_col}:Q",
                                                                                         title="price")))
    if not pts.empty:
        layers.append(alt.Chart(pts).mark_point(filled=True, size=70).encode(
            x="date:T", y=alt.Y("price:Q", title="price"), color="kind:N", shape="kind:N",
            tooltip=["date:T", "kind", alt.Tooltip("price:Q", format=".2f"), "reason"]))
    if layers:
        st.altair_chart(alt.layer(*layers).interactive(), width="stretch")
    st.dataframe(trades, hide_index=True, width="stretch")
