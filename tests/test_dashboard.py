"""Stage 07 dashboard: the path guard, the server-side reductions, and every page through Streamlit's AppTest on
real stage 01/05/06 outputs (missing, empty, corrupt and foreign inputs show a message, never a traceback)."""

from __future__ import annotations

import json
import os
import sqlite3
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fixtures_dashboard import dashboard_config
from streamlit.testing.v1 import AppTest

from alphasignal.config import Config, load_config
from alphasignal.dashboard import data
from alphasignal.dashboard.equity import run_config
from alphasignal.dashboard.paths import PathRefused, Roots, find_files, guard
from alphasignal.errors import UsageError

VIEWS = Path(__file__).resolve().parents[1] / "alphasignal" / "dashboard" / "views"
APP = VIEWS.parent / "app.py"


# --- path guard -----------------------------------------------------------------------------------------------
@pytest.fixture
def roots(tmp_path) -> Roots:
    for sub in ("results", "dataset", "models"):
        (tmp_path / sub).mkdir()
    (tmp_path / "results" / "ok.csv").write_text("a\n1\n")
    (tmp_path / "secret.txt").write_text("outside")
    return Roots.from_config(dashboard_config(tmp_path).dashboard)


def test_guard_accepts_files_inside_the_roots(roots, tmp_path):
    assert guard(tmp_path / "results" / "ok.csv", roots) == tmp_path / "results" / "ok.csv"
    assert guard("ok.csv", roots, base=tmp_path / "results") == tmp_path / "results" / "ok.csv"
    assert guard(tmp_path / "models" / "not_yet.gguf", roots) == tmp_path / "models" / "not_yet.gguf"


@pytest.mark.parametrize("bad, needle", [
    ("results/../secret.txt", "'..'"),
    ("results/../results/ok.csv", "'..'"),  # refused even where it would land inside again
    ("/etc/passwd", "outside"),
    ("", "no path given"),
])
def test_guard_refuses_dot_dot_outside_and_empty(roots, tmp_path, bad, needle):
    with pytest.raises(PathRefused, match=needle):
        guard(bad if not bad or bad.startswith("/") else tmp_path / bad, roots)


def test_guard_refuses_symlinks_that_lead_out_but_not_those_that_stay_in(roots, tmp_path):
    (tmp_path / "results" / "link.txt").symlink_to(tmp_path / "secret.txt")
    (tmp_path / "dataset" / "linkdir").symlink_to(tmp_path, target_is_directory=True)
    (tmp_path / "results" / "inner.csv").symlink_to(tmp_path / "results" / "ok.csv")
    for bad in (tmp_path / "results" / "link.txt", tmp_path / "dataset" / "linkdir" / "secret.txt"):
        with pytest.raises(PathRefused, match="symlink"):
            guard(bad, roots)
    assert guard(tmp_path / "results" / "inner.csv", roots).name == "inner.csv"
    listed = {p.name for p in find_files(roots, ["results", "dataset"], [".txt", ".csv"])}
    assert listed == {"ok.csv", "inner.csv"}  # the links out are not offered either


# --- server-side reductions -----------------------------------------------------------------------------------
@pytest.fixture
def sweep_frame() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = 5000
    return pd.DataFrame({"ticker": "AAPL", "a": rng.integers(0, 10, n), "b": rng.integers(0, 7, n),
                         "c": rng.integers(0, 3, n), "sharpe": rng.normal(size=n), "is_sharpe": rng.normal(size=n),
                         "oos_sharpe": rng.normal(size=n)})


def test_heatmap_best_of_and_fixed(sweep_frame):
    best = data.heatmap(sweep_frame, "a", "b", "sharpe")
    assert len(best) == sweep_frame.groupby(["a", "b"]).ngroups
    row = best.iloc[3]
    cell = sweep_frame[(sweep_frame.a == row.a) & (sweep_frame.b == row.b)]
    assert row.value == cell.sharpe.max()
    fixed = data.heatmap(sweep_frame, "a", "b", "sharpe", {"c": 1})
    sub = sweep_frame[sweep_frame.c == 1]
    assert fixed.value.sum() == pytest.approx(sub.groupby(["a", "b"]).sharpe.max().sum())
    assert data.param_columns(sweep_frame) == ["a", "b", "c"]
    with pytest.raises(UsageError):
        data.heatmap(sweep_frame, "a", "a", "sharpe")


def test_scatter_sample_is_bounded_keeps_the_top_and_is_seeded(sweep_frame):
    pts = data.scatter_sample(sweep_frame, "is_sharpe", "oos_sharpe", 500)
    assert len(pts) == 500
    assert sweep_frame.is_sharpe.idxmax() in pts.index
    assert pts.index.equals(data.scatter_sample(sweep_frame, "is_sharpe", "oos_sharpe", 500).index)
    assert len(data.scatter_sample(sweep_frame.head(100), "is_sharpe", "oos_sharpe", 500)) == 100
    top = data.top_table(sweep_frame, "sharpe", 7)
    assert list(top.sharpe) == sorted(sweep_frame.sharpe, reverse=True)[:7]


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_the_sweeps_page_reads_only_its_columns(sweep_frame, tmp_path, suffix):
    full = sweep_frame.assign(cagr=1.0, is_cagr=2.0, oos_cagr=3.0, trades=4, oos_trades=5)
    path = tmp_path / f"s{suffix}"
    full.to_csv(path, index=False) if suffix == ".csv" else full.to_parquet(path)
    header = data.sweep_header(path)
    assert header == list(full.columns)
    cols = data.view_columns(header, "is_cagr")
    assert cols == ["ticker", "a", "b", "c", "sharpe", "is_sharpe", "oos_sharpe", "is_cagr", "trades", "oos_trades"]
    narrow = data.read_sweep(path, cols)
    assert list(narrow.columns) == cols and len(narrow) == len(full)
    assert np.allclose(narrow.is_sharpe, full.is_sharpe) and (narrow.a == full.a).all()
    (tmp_path / f"nosharpe{suffix}").write_bytes(b"")
    full.drop(columns="sharpe").to_csv(tmp_path / "nosharpe.csv", index=False)
    with pytest.raises(UsageError, match="no sharpe column|cannot be read"):
        data.sweep_header(tmp_path / f"nosharpe{suffix}")


def test_a_csv_sweep_is_kept_as_parquet_in_the_apps_cache(sweep_frame, tmp_path):
    path, cache = tmp_path / "s.csv", tmp_path / "cache"
    sweep_frame.to_csv(path, index=False)
    cols = ["a", "b", "sharpe"]
    first = data.read_sweep_cached(path, cols, cache)
    data.wait_for_cache_writes()  # the copy is written in the background
    kept = list((cache / "sweeps").glob("*.parquet"))
    assert len(kept) == 1 and pd.read_parquet(kept[0]).equals(first)
    pd.DataFrame({"a": [1], "b": [2], "sharpe": [9.0]}).to_parquet(kept[0])  # stands in for the cached copy
    assert data.read_sweep_cached(path, cols, cache).sharpe.tolist() == [9.0]  # read from the cache
    sweep_frame.head(10).to_csv(path, index=False)  # a changed file is read again
    assert len(data.read_sweep_cached(path, cols, cache)) == 10
    data.wait_for_cache_writes()
    assert len(list((cache / "sweeps").glob("*.parquet"))) == 2
    (tmp_path / "file").write_text("")
    assert len(data.read_sweep_cached(path, cols, tmp_path / "file")) == 10  # an unusable cache is skipped
    data.wait_for_cache_writes()
    assert len(data.read_sweep_cached(path, cols, "")) == 10


def test_readers_name_the_problem(tmp_path):
    with pytest.raises(UsageError, match="05_sweep_backtest"):
        data.read_sweep(tmp_path / "none.csv")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(UsageError, match="cannot be read|no results"):
        data.read_sweep(tmp_path / "empty.csv")
    (tmp_path / "bad.parquet").write_bytes(b"not parquet")
    with pytest.raises(UsageError, match="cannot be read"):
        data.read_sweep(tmp_path / "bad.parquet")
    assert data.read_meta(tmp_path / "none.csv") is None
    with pytest.raises(UsageError, match="04_signal_pipeline.py --replay"):
        data.read_replay(tmp_path / "replay")
    (tmp_path / "d.jsonl").write_text('{"id": 1}\n')
    with pytest.raises(UsageError, match="line 1"):
        data.read_dataset(tmp_path / "d.jsonl")


@pytest.mark.slow  # an integration test (subprocess or a real model/replay): ~3-13 s
def test_replay_reader_and_trade_points_on_a_real_replay(dashboard_project, tmp_path):
    root, _ = dashboard_project
    frames = data.read_replay(root / "results" / "replay")
    eq, trades = frames["equity"], frames["trades"]
    assert len(eq) > 100 and (eq.drawdown <= 0).all() and eq.date.is_monotonic_increasing
    pts = data.trade_points(trades)
    assert (pts.kind == "entry").sum() == (pts.kind == "exit").sum() == len(trades) > 0
    assert set(pts.reason[pts.kind == "exit"]) == set(trades.exit_reason.astype(str))
    (tmp_path / "equity.csv").write_text("date,cash\n2020-01-01,1\n")  # no equity column
    with pytest.raises(UsageError, match="no equity column"):
        data.read_replay(tmp_path)


def test_run_config_round_trips_a_stored_config():
    cfg = load_config(None, ["dataset.tickers=AAPL,GOOG", "optimizer.compare=random,tpe", "dashboard.port=9001"])
    stored = json.loads(json.dumps(cfg.to_dict()))
    stored["optimizer"]["a_key_removed_since"] = 1
    assert run_config(stored) == cfg
    assert run_config({}) == Config()


# --- pages through AppTest --------------------------------------------------------------------------------------
def _page(name: str, cfg: Config, timeout: float = 120) -> AppTest:
    at = AppTest.from_file(str(VIEWS / f"{name}.py"), default_timeout=timeout)
    at.session_state["alphasignal_config"] = cfg
    return at.run()


def _text(at: AppTest) -> str:
    parts = [e.value for kind in ("title", "header", "subheader", "markdown", "caption", "info", "warning", "error")
             for e in getattr(at, kind)]
    return "\n".join(str(p) for p in parts)


def _clean(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def test_runs_page_shows_the_run_segments_and_equity(dashboard_project):
    root, cfg = dashboard_project
    at = _page("runs", cfg)
    _clean(at)
    run_id = at.selectbox(key="runs_id").value
    assert run_id and run_id in at.dataframe[0].value["run id"].tolist()
    assert f"run {run_id}" in _text(at)
    result = at.dataframe[1].value
    assert {"hold-out: initial", "hold-out: best", "selection: best", "exploration: best"} <= set(result.columns)
    comparison = at.dataframe[2].value
    assert list(comparison["optimizer"]) == ["agents", "random"] and "hold-out Sharpe" in comparison.columns
    assert "hold-out" in _text(at) and "Round 1" in " ".join(e.label for e in at.expander)
    at.toggle(key="runs_equity").set_value(True).run()
    _clean(at)
    assert "Equity: initial baseline vs best vs buy & hold" in _text(at)


@pytest.mark.parametrize("content, needle", [
    (None, "no history database"),
    (b"", "cannot be listed"),
    (b"garbage that is not sqlite" * 10, "not an SQLite file"),
    ("foreign", "another program"),
])
def test_runs_page_missing_empty_corrupt_or_foreign_db_is_a_message(tmp_path, content, needle):
    (tmp_path / "results").mkdir()
    db = tmp_path / "results" / "history.sqlite"
    if content == "foreign":
        con = sqlite3.connect(db)
        con.execute("CREATE TABLE runs (x)")
        con.commit()
        con.close()
    elif content is not None:
        db.write_bytes(content)
    before = db.read_bytes() if db.exists() else None
    at = _page("runs", dashboard_config(tmp_path))
    assert not at.exception
    assert needle in _text(at)
    assert (db.read_bytes() if db.exists() else None) == before  # read-only: nothing created or changed
    assert sorted(p.name for p in (tmp_path / "results").iterdir()) == ([] if content is None else ["history.sqlite"])


def test_a_typed_path_outside_the_roots_is_refused(dashboard_project):
    _, cfg = dashboard_project
    at = _page("runs", cfg)
    at.text_input(key="runs_db_typed").set_value("/etc/passwd").run()
    assert not at.exception and "outside the dashboard's folders" in _text(at)
    at.text_input(key="runs_db_typed").set_value("results/../../etc/passwd").run()
    assert "contains '..'" in _text(at)


def test_sweeps_page_heatmap_scatter_dsr_pbo_and_top(dashboard_project):
    _, cfg = dashboard_project
    at = _page("sweeps", cfg)
    _clean(at)
    text = _text(at)
    assert "sharpe heatmap" in text and "In-sample vs out-of-sample Sharpe" in text
    assert {m.label for m in at.metric} == {"DSR AAPL", "PBO AAPL"} and "deflated Sharpe ratio" in text
    results = pd.read_csv(cfg.sweep.output)
    top = at.dataframe[-1].value
    assert len(top) == len(results) == 12  # the whole grid fits in the top 20
    assert top.sharpe.iloc[0] == results.sharpe.max()
    at.radio(key="sweep_mode").set_value("fixed").run()
    _clean(at)
    assert at.selectbox(key="sweep_fix_use_ema").value in ("False", "True")


def test_sweeps_page_without_meta_says_so(dashboard_project, tmp_path):
    root, cfg = dashboard_project
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "s.csv").write_bytes(Path(cfg.sweep.output).read_bytes())
    at = _page("sweeps", dashboard_config(tmp_path, f"dashboard.sweep={tmp_path / 'results' / 's.csv'}"))
    _clean(at)
    assert "no metadata" in _text(at) and "sharpe heatmap" in _text(at)


def test_signals_page_says_when_there_are_no_replay_results(tmp_path):
    at = _page("signals", dashboard_config(tmp_path))
    _clean(at)
    assert "no replay results yet" in _text(at) and "04_signal_pipeline.py --replay" in _text(at)


def test_signals_page_runs_the_offline_pipeline(dashboard_project):
    root, cfg = dashboard_project
    at = _page("signals", cfg)
    _clean(at)
    assert at.selectbox(key="sig_image_pick").value.endswith(".png")
    at.text_area(key="sig_news").set_value("Record profits and raised guidance; analysts upgrade the stock.")
    at.button(key="sig_run").click().run()
    _clean(at)
    decision = [m for m in at.metric if m.label == "Decision"]
    assert decision and decision[0].value in ("BUY", "SELL", "HOLD")
    assert "**Rationale**" in _text(at) and "news sentiment: **BULLISH**" in _text(at)


def test_signals_page_browses_real_replay_results(dashboard_project):
    root, cfg = dashboard_project
    at = _page("signals", cfg)
    _clean(at)
    trades = pd.read_csv(root / "results" / "replay" / "trades.csv")
    assert f"Trades ({len(trades)})" in _text(at) and "Equity and drawdown" in _text(at)
    assert at.selectbox(key="replay_dir").value == str(root / "results" / "replay")
    assert len(at.dataframe[-1].value) == len(trades)


def test_signals_page_shows_the_rungs_traded_side_by_side(tmp_path):
    import dataclasses

    from alphasignal.replay.compare import run_compare
    from alphasignal.replay.compare_report import write_compare

    cfg = dashboard_config(tmp_path)
    at = _page("signals", cfg)
    _clean(at)
    assert "no rungs traded yet" in _text(at)
    out = tmp_path / "results" / "cmp"
    rc = dataclasses.replace(cfg.replay, tickers=("AAPL",), start="2019-06-01", end="2019-12-31", every=5,
                             random_runs=2, bootstrap=100, fsync=False, output_dir=str(out))
    write_compare(run_compare(cfg, cfg.pipeline, rc, ("momentum",)), out)  # the real outputs of --replay --compare
    at = _page("signals", cfg)
    _clean(at)
    assert at.selectbox(key="rungs_csv").value == str(out / "compare_equity.csv")
    text = _text(at)
    assert "rungs compared: AAPL" in text and "| metric | momentum | buy & hold | random |" in text
    assert "![" not in text


def test_dataset_page_distribution_sample_and_missing_image(dashboard_project, tmp_path):
    root, cfg = dashboard_project
    at = _page("dataset", cfg)
    _clean(at)
    lines = [json.loads(x) for x in (root / "dataset" / "training_data.jsonl").read_text().splitlines()]
    counts = Counter((r["split"], r["label"]["action"]) for r in lines)
    dist = at.dataframe[0].value
    assert all(dist.loc[s, a] == n for (s, a), n in counts.items())
    assert at.metric[0].label == "Label" and at.metric[0].value in ("BUY", "SELL", "HOLD")
    (tmp_path / "dataset").mkdir()
    (tmp_path / "dataset" / "training_data.jsonl").write_text("\n".join(map(json.dumps, lines[:3])))
    at = _page("dataset", dashboard_config(tmp_path))
    _clean(at)
    assert "is missing" in _text(at)


def test_app_navigates_between_the_four_pages(dashboard_project):
    _, cfg = dashboard_project
    at = AppTest.from_file(str(APP), default_timeout=120)
    at.session_state["alphasignal_config"] = cfg
    at.run()
    assert [t.value for t in at.title] == ["Optimizer runs"]
    for view, title in (("sweeps", "Sweeps"), ("signals", "Signals"), ("dataset", "Dataset")):
        at.switch_page(f"views/{view}.py").run()
        assert not at.exception and [t.value for t in at.title] == [title]


def test_launcher_refuses_a_busy_port_or_a_foreign_address_before_starting():
    import socket
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        proc = subprocess.run([sys.executable, "07_dashboard.py", "--port", str(port)], capture_output=True,
                              text=True, timeout=60, cwd=APP.parents[2], env={**os.environ})
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"error: port {port} on 127.0.0.1 is in use: stop what uses it or "
                                                f"pass --port {port + 1}"]
    proc = subprocess.run([sys.executable, "07_dashboard.py", "--host", "192.0.2.1"], capture_output=True, text=True,
                          timeout=60, cwd=APP.parents[2])  # TEST-NET-1: never an address of this machine
    assert proc.returncode == 2 and proc.stderr.startswith("error: cannot listen on 192.0.2.1:8501")
    assert proc.stdout == ""  # no URL printed for a server that never starts


def test_the_configured_default_file_is_preselected_over_newer_ones(dashboard_project, tmp_path):
    root, cfg = dashboard_project
    (tmp_path / "results").mkdir()
    old, new = tmp_path / "results" / "old.csv", tmp_path / "results" / "new.csv"
    old.write_bytes(Path(cfg.sweep.output).read_bytes())
    new.write_bytes(Path(cfg.sweep.output).read_bytes())
    os.utime(old, (1e9, 1e9))
    at = _page("sweeps", dashboard_config(tmp_path, f"dashboard.sweep={old}"))
    assert at.selectbox(key="sweep_file_pick").value == str(old)
    assert at.selectbox(key="sweep_file_pick").options[:2] == [str(new), str(old)]  # newest first otherwise


@pytest.mark.slow
def test_the_launched_server_answers_health_and_stops_on_sigterm(tmp_path):
    import signal
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    from fixtures_llm import find_port

    port = find_port()
    proc = subprocess.Popen([sys.executable, "07_dashboard.py", "--port", str(port), "--set",
                             f"dashboard.results_dir={tmp_path}"], cwd=APP.parents[2], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        assert proc.stdout.readline().strip() == f"alphasignal dashboard: http://127.0.0.1:{port}  (Ctrl-C stops it)"
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
                    assert r.read() == b"ok"
                    break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read()
                time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)  # to the launched process only: no server may outlive it
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # ignores TIME_WAIT, never a live listener
        s.bind(("127.0.0.1", port))
        s.listen()  # nothing listens there any more
