"""Page "Signals": run the stage 04 pipeline on one chart and news text; browse stage 04 replay results."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import altair as alt
import pandas as pd
import streamlit as st

from ..errors import AlphaSignalError
from ..signals.pipeline import SignalPipeline, decision_json, make_item
from . import common, data
from .paths import PathRefused, confined, find_files, guard


@st.cache_resource(show_spinner="resolving the model providers ...")
def _pipeline(pipeline_cfg: object) -> SignalPipeline:
    return SignalPipeline.from_config(pipeline_cfg)  # type: ignore[arg-type]


def render() -> None:
    """Draw the page."""
    st.title("Signals")
    tab_run, tab_ladder, tab_replay, tab_rungs = st.tabs(["Run the pipeline", "Ladder", "Replay results",
                                                          "Rungs traded"])
    with tab_run:
        common.guarded(_run_tab)
    with tab_ladder:
        common.guarded(_ladder_tab)
    with tab_replay:
        common.guarded(_replay_tab)
    with tab_rungs:
        common.guarded(_rungs_tab)


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


def _ladder_tab() -> None:
    """The ladder table written by ``04_signal_pipeline.py --eval --compare`` (read-only)."""
    from ..evaluation.ladder import display_rows, ladder_paths, read_csv

    cfg = common.settings()
    r = common.roots()
    found = [str(f) for f in find_files(r, ["results"], ["_ladder.csv"])]
    if not found:
        st.info(f"no ladder table yet (no *_ladder.csv under {str(r['results'])!r}): run python "
                "04_signal_pipeline.py --eval --compare majority,momentum,builtin (it writes the table next to "
                "pipeline.eval_output)")
        return
    name = ladder_paths(cfg.pipeline.eval_output)[0].name
    found.sort(key=lambda f: Path(f).name != name)  # the configured table first, then the newest
    path = guard(st.selectbox("Ladder table", found, key="ladder_csv"), r)
    md = confined(ladder_paths(path.with_name(path.name.removesuffix("_ladder.csv") + ".json"))[1], path.parent)
    if md.is_file():
        st.caption(md.read_text(encoding="utf-8").split("\n\n", 1)[0])
    st.dataframe(pd.DataFrame(display_rows(read_csv(path))), hide_index=True, width="stretch")
    st.caption("Each rung is scored on the same test windows; p compares it with majority on the same bootstrap "
               "resamples (lower is better for log-loss, Brier and ECE). See docs/ladder.md.")


def _replay_tab() -> None:
    cfg = common.settings()
    r = common.roots()
    try:
        default = str(guard(cfg.dashboard.replay_dir or cfg.replay.output_dir, r))
    except PathRefused:  # replay.output_dir outside the roots: look in the results root
        default = str(r["results"] / "replay")
    found = list(dict.fromkeys(str(f.parent) for f in find_files(r, ["results"], ["equity.csv"])
                               if f.name == "equity.csv"))  # not compare_equity.csv / rank_equity.csv
    if default not in found and not (Path(default) / "equity.csv").is_file():
        if not found:
            st.info(f"no replay results yet (no equity.csv under {str(r['results'])!r}): run python "
                    "04_signal_pipeline.py --replay ... (it writes equity.csv, trades.csv and decisions.jsonl to "
                    "replay.output_dir)")
            return
        default = found[0]
    options = [default, *(f for f in found if f != default)]
    folder = guard(st.selectbox("Replay results", options, key="replay_dir"), r)
    frames = common.replay_frames(str(folder), common.mtime(folder / "equity.csv"))
    eq, trades = frames["equity"], frames["trades"]
    eq = eq.iloc[:: max(1, -(-len(eq) // cfg.dashboard.max_points))]  # at most max_points dates to the browser
    curves = [c for c in ("equity", "buy_hold", "random") if c in eq.columns]
    st.subheader("Equity and drawdown")
    st.line_chart(eq, x="date", y=curves, height=280)
    st.area_chart(eq, x="date", y="drawdown", height=160)
    st.subheader(f"Trades ({len(trades)})")
    if trades.empty:
        st.info("the replay made no trades")
        return
    tickers = sorted(trades["ticker"].astype(str).unique()) if "ticker" in trades.columns else []
    ticker = st.selectbox("Ticker", tickers, key="replay_ticker") if len(tickers) > 1 else (tickers or [""])[0]
    shown = trades[trades["ticker"].astype(str) == ticker] if ticker else trades
    _trades_on_price(shown, ticker, cfg)
    st.dataframe(shown, hide_index=True, width="stretch")


def _rungs_tab() -> None:
    """The table and equity curves written by ``--replay --compare`` or ``--portfolio rank`` (read-only)."""
    r = common.roots()
    found = [str(f) for f in find_files(r, ["results"], ["compare_equity.csv", "rank_equity.csv"])]
    if not found:
        st.info(f"no rungs traded yet (no compare_equity.csv or rank_equity.csv under {str(r['results'])!r}): run "
                "python 04_signal_pipeline.py --replay --compare momentum,builtin (or --portfolio rank "
                "--tickers-file FILE); see docs/universe.md")
        return
    path = guard(st.selectbox("Comparison", found, key="rungs_csv"), r)
    report = confined(path.with_name(path.name.removesuffix("_equity.csv") + ".md"), path.parent)
    if report.is_file():  # the table and how it was made; the PNG is the chart below
        lines = report.read_text(encoding="utf-8").splitlines()
        st.subheader(lines[0].lstrip("# ") if lines else path.parent.name)
        st.markdown("\n".join(line for line in lines[1:] if not line.startswith("![")))
    eq = pd.read_csv(path)
    eq = eq.iloc[:: max(1, -(-len(eq) // common.settings().dashboard.max_points))]
    st.subheader("Equity (start = initial cash)")
    st.line_chart(eq, x="date", y=[c for c in eq.columns if c != "date"], height=320)


@st.cache_data(show_spinner=False, max_entries=8)
def _close(ticker: str, start: str, end: str, ds: object) -> pd.DataFrame:
    from ..market import load_from_config

    data = load_from_config(dataclasses.replace(ds, tickers=(ticker,), start=start, end=end), ticker)  # type: ignore
    return pd.DataFrame({"date": data.index, "close": data["Close"].to_numpy()})


def _trades_on_price(trades: pd.DataFrame, ticker: str, cfg: object) -> None:
    """The close (from the configured data source) with each trade drawn from its entry to its exit."""
    pts = data.trade_points(trades)
    segs = trades.assign(entry_date=pd.to_datetime(trades["entry_date"]), exit_date=pd.to_datetime(trades["exit_date"]))
    layers = []
    if ticker and not pts.empty:
        lo, hi = pts["date"].min() - pd.Timedelta(days=10), pts["date"].max() + pd.Timedelta(days=3)
        try:
            close = _close(ticker, str(lo.date()), str(hi.date()), cfg.dataset)  # type: ignore[attr-defined]
            layers.append(alt.Chart(close).mark_line(color="grey", strokeWidth=1).encode(
                x=alt.X("date:T", title=None),
                y=alt.Y("close:Q", title=f"{ticker} price", scale=alt.Scale(zero=False))))
        except AlphaSignalError as exc:
            st.caption(f"price line not drawn: {exc}")
    tips = [c for c in ("side", "entry_date", "exit_date", "exit_reason", "return", "r_multiple") if c in segs.columns]
    layers.append(alt.Chart(segs).mark_rule(strokeWidth=2).encode(
        x="entry_date:T", x2="exit_date:T", y=alt.Y("entry_price:Q", scale=alt.Scale(zero=False)), y2="exit_price:Q",
        color=alt.Color("exit_reason:N" if "exit_reason" in segs.columns else "side:N", title="exit"), tooltip=tips))
    layers.append(alt.Chart(pts).mark_point(filled=True, size=40).encode(
        x="date:T", y="price:Q", shape=alt.Shape("kind:N", title="fill"),
        tooltip=["date:T", "kind", alt.Tooltip("price:Q", format=".2f"), "reason"]))
    st.altair_chart(alt.layer(*layers).interactive(), width="stretch")
