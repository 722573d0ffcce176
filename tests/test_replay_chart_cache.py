"""The replay's chart cache and the builtin chart reader's reading cache, both in the call cache (a real SQLite file).

A hit is proven without fakes: the stored value is replaced (SQL on the file) by another valid one, and the next
lookup returns the replacement, which drawing or reading anew could not have produced.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import subprocess
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_call_cache import _smashed

from alphasignal.charts.render import render_chart, render_key
from alphasignal.config import DatasetConfig, PipelineConfig, ReplayConfig
from alphasignal.fileio import source_digest
from alphasignal.providers import CacheError, get_provider
from alphasignal.replay.journal import Journal
from alphasignal.replay.news import NewsIndex
from alphasignal.replay.run import ReplayData, chart_png, decide_all, decision_times, fingerprint, plan_jobs
from alphasignal.signals.engines import register_builtin_engines
from alphasignal.signals.pipeline import CHART_PROMPT, SignalPipeline
from alphasignal.signals.schemas import TradingSignal

ROOT = Path(__file__).resolve().parents[1]
DS = DatasetConfig()
WARM = 20


def _rows(path: Path, table: str) -> list[tuple]:
    con = sqlite3.connect(path)
    try:
        return con.execute(f"SELECT * FROM {table} ORDER BY key").fetchall()
    finally:
        con.close()


def _set(path: Path, sql: str, *args: object) -> None:
    con = sqlite3.connect(path)
    con.execute(sql, args)
    con.commit()
    con.close()


def _window(aapl: pd.DataFrame, end: int) -> pd.DataFrame:
    return aapl.iloc[end - DS.window - WARM:end]


def _drawn(win: pd.DataFrame, ds: DatasetConfig = DS) -> bytes:
    return render_chart(win, size=ds.image_size, volume=ds.volume_panel, moving_averages=ds.moving_averages,
                        bollinger=ds.bollinger, hide_context=ds.hide_context, style=ds.style, warmup=WARM,
                        renderer=ds.renderer)


# ------------------------------------------------------------------------------------------------ the keys
def test_render_key_covers_every_bar_timestamp_and_setting(aapl) -> None:
    win = _window(aapl, 400)
    key = render_key(win, warmup=WARM)
    assert key == render_key(win.copy(), warmup=WARM, size=448)  # same inputs (448 is the default): same key
    bumped = []
    for row, col in ((0, "Open"), (WARM - 1, "Close"), (len(win) - 1, "High"), (len(win) - 1, "Volume")):
        w = win.copy()
        w.iloc[row, w.columns.get_loc(col)] += 0.01  # one value of one bar, warm-up bars included (they feed MAs)
        bumped.append(render_key(w, warmup=WARM))
    shifted = win.copy()
    shifted.index = shifted.index + pd.Timedelta(days=1)  # the same bars on other dates (drawn with hide_context=False)
    settings = [{"size": 320}, {"volume": False}, {"moving_averages": (10,)}, {"bollinger": True},
                {"hide_context": False}, {"style": "charles"}, {"title": "AAPL"}, {"warmup": WARM - 1}]
    keys = [key, *bumped, render_key(shifted, warmup=WARM),
            *(render_key(win, **{"warmup": WARM, **s}) for s in settings)]
    assert len(set(keys)) == len(keys)
    with pytest.raises(TypeError, match="no setting colour"):
        render_key(win, colour="red")


def test_source_digest_changes_when_the_code_changes(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "cached_code_probe.py").write_text("X = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    before = source_digest(["cached_code_probe"], ["1.0"])
    assert before == source_digest(["cached_code_probe"], ["1.0"])
    assert before != source_digest(["cached_code_probe"], ["1.1"])  # a library version
    (tmp_path / "cached_code_probe.py").write_text("X = 2\n")
    assert source_digest(["cached_code_probe"], ["1.0"]) != before  # an edit to the source


@pytest.mark.parametrize("entry, module, code", [
    ("alphasignal.charts.render", "alphasignal.charts.render", "RENDERER_CODE"),
    ("alphasignal.signals.rules", "alphasignal.signals.engines", "CHART_READER_CODE"),  # rules: analyze_chart
])
def test_cache_identities_cover_the_project_code_they_run(entry: str, module: str, code: str) -> None:
    # ``entry`` imported alone in a fresh interpreter: every project module it loads is in the code identity, or
    # only names errors, writes files or loads market data (none of which shapes a chart or a reading)
    probe = f"import sys, {entry}; print(' '.join(x for x in sys.modules if x.startswith('alphasignal')))"
    loaded = set(subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True,
                                check=True).stdout.split())
    neutral = {"alphasignal", "alphasignal.charts", "alphasignal.signals", "alphasignal.market",
               "alphasignal.errors", "alphasignal.fileio", "alphasignal.market.data", "alphasignal.market.universe"}
    identity = set(getattr(__import__(module, fromlist=[code]), code))
    assert entry in identity and loaded - neutral - identity == set()


# ------------------------------------------------------------------------------------------------ charts
def test_chart_cache_hit_miss_on_changed_bar_and_setting_refresh_and_off(aapl, tmp_path: Path) -> None:
    path = tmp_path / "calls.sqlite"
    pc = PipelineConfig(provider="builtin", call_cache=str(path), cache_mode="use")
    win, other = _window(aapl, 400), _window(aapl, 900)
    first = chart_png(win, DS, WARM, None, pc)
    assert first == _drawn(win) and len(_rows(path, "charts")) == 1
    substitute = _drawn(other)
    assert substitute != first
    _set(path, "UPDATE charts SET png = ?", substitute)
    assert chart_png(win.copy(), DS, WARM, None, pc) == substitute  # a hit: the stored bytes, nothing drawn

    changed = win.copy()
    changed.iloc[-1, changed.columns.get_loc("Close")] *= 1.001  # one bar
    assert chart_png(changed, DS, WARM, None, pc) == _drawn(changed) and len(_rows(path, "charts")) == 2
    charles = replace(DS, style="charles")  # one render setting
    assert chart_png(win, charles, WARM, None, pc) == _drawn(win, charles) and len(_rows(path, "charts")) == 3

    assert chart_png(win, DS, WARM, None, replace(pc, cache_mode="refresh")) == first  # drawn again, stored
    assert chart_png(win, DS, WARM, None, pc) == first and len(_rows(path, "charts")) == 3
    off = tmp_path / "off.sqlite"
    assert chart_png(win, DS, WARM, None, replace(pc, call_cache=str(off), cache_mode="off")) == first
    assert not off.exists()


# ------------------------------------------------------------------------------------------------ readings
def _read(path: Path, png: bytes, last_close: float, mode: str = "use") -> TradingSignal:
    register_builtin_engines()
    vlm = get_provider("builtin", cfg=PipelineConfig(call_cache=str(path), cache_mode=mode), role="vlm")
    return vlm.structured(TradingSignal, "system", "user", images=[png], context={"last_close": last_close}).value


def test_chart_reading_cache_hit_miss_refresh_off_and_invalid_entry(aapl, tmp_path: Path) -> None:
    path = tmp_path / "calls.sqlite"
    png_a, png_b = _drawn(_window(aapl, 400)), _drawn(_window(aapl, 900))
    a = _read(path, png_a, 100.0)
    (key_a, *_), = _rows(path, "readings")
    b = _read(path, png_b, 100.0)  # another image: a miss
    readings = {r[0]: r for r in _rows(path, "readings")}
    assert len(readings) == 2 and a != b
    _set(path, "UPDATE readings SET reply = ? WHERE key = ?", readings[next(k for k in readings if k != key_a)][2],
         key_a)
    assert _read(path, png_a, 100.0) == b  # a hit: the stored reading, the reader did not run
    c = _read(path, png_a, 101.0)  # another last close: a miss
    assert len(_rows(path, "readings")) == 3 and c.entry_price == 101.0
    assert _read(path, png_a, 100.0, "refresh") == a  # read anew, stored again
    assert _read(path, png_a, 100.0) == a
    off = tmp_path / "off.sqlite"
    assert _read(off, png_a, 100.0, "off") == a and not off.exists()

    _set(path, "UPDATE readings SET reply = '{\"action\": \"FLY\"}' WHERE key = ?", key_a)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(CacheError, match="invalid TradingSignal reading") as err:
        _read(path, png_a, 100.0)
    assert "\n" not in str(err.value) and str(path) in str(err.value)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest  # reported, not repaired


def test_chart_prompt_is_part_of_the_reading_key(aapl, tmp_path: Path) -> None:
    from alphasignal.prompts import load_prompt

    path = tmp_path / "calls.sqlite"
    register_builtin_engines()
    vlm = get_provider("builtin", cfg=PipelineConfig(call_cache=str(path), cache_mode="use"), role="vlm")
    png, system = _drawn(_window(aapl, 400)), load_prompt(CHART_PROMPT).system
    for user in ("last close 100", "last close 100 (reworded)"):
        vlm.structured(TradingSignal, system, user, images=[png], context={"last_close": 100.0})
    assert len(_rows(path, "readings")) == 2


# ------------------------------------------------------------------------------------------------ the replay
def _decide(frame: pd.DataFrame, pc: PipelineConfig, rc: ReplayConfig) -> dict[str, dict]:
    empty = NewsIndex({"AAPL": np.array([], dtype=np.int64)}, {"AAPL": ()}, "test")
    data = ReplayData({"AAPL": frame}, empty, {"AAPL": decision_times(frame.index, rc.decision_time)})
    jobs = plan_jobs(data, DS, rc, fingerprint(DS, pc, rc, ["builtin"]))
    with tempfile.TemporaryDirectory() as tmp:
        records, _, _ = decide_all(jobs, SignalPipeline.from_config(pc), data, DS, rc,
                                   Journal(Path(tmp) / "j.jsonl", fsync=False))
    return {j.date: records[j.key] for j in jobs}


def test_replay_with_the_cache_redraws_only_what_a_changed_bar_touches(aapl, tmp_path: Path) -> None:
    path = tmp_path / "calls.sqlite"
    pc = PipelineConfig(provider="builtin", call_cache=str(path), cache_mode="use")
    frame = aapl.iloc[-150:]
    rc = ReplayConfig(tickers=("AAPL",), start=str(frame.index[-12].date()), workers=1, fsync=False)
    first = _decide(frame, pc, rc)
    assert len(_rows(path, "charts")) == len(_rows(path, "readings")) == 12
    again = _decide(frame, pc, rc)
    assert len(_rows(path, "charts")) == 12  # nothing new drawn
    assert [_signal(r) for r in again.values()] == [_signal(r) for r in first.values()]

    changed = frame.copy()
    changed.iloc[-4, changed.columns.get_loc("High")] *= 1.05  # the 4th-last bar: the last 4 decisions see it
    third = _decide(changed, pc, rc)
    assert len(_rows(path, "charts")) == 12 + 4
    assert [_signal(third[d]) for d in list(third)[:8]] == [_signal(first[d]) for d in list(first)[:8]]
    assert [third[d]["decision"]["meta"]["image_sha256"] for d in list(third)[8:]] != [
        first[d]["decision"]["meta"]["image_sha256"] for d in list(first)[8:]]


def _signal(rec: dict) -> tuple:
    d = rec["decision"]
    return d["final_action"], d["final_confidence"], d["vlm_signal"], d["meta"]["image_sha256"]


def test_replay_refuses_a_corrupt_cache_in_one_line_and_never_modifies_it(tmp_path: Path) -> None:
    path = tmp_path / "calls.sqlite"
    _smashed(path)  # a real cache file with its pages overwritten
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    proc = subprocess.run([sys.executable, str(ROOT / "04_signal_pipeline.py"), "--replay", "--tickers", "GOOG",
                           "--start", "2012-06-01", "--end", "2012-06-15", "--provider", "builtin", "--cache", "use",
                           "--set", f"pipeline.call_cache={path}", "--set", "dataset.source=offline",
                           "--set", f"replay.output_dir={tmp_path / 'out'}", "-q"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "HOME": str(tmp_path)})
    assert proc.returncode == 2, proc.stderr
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: call cache") and str(path) in err[0], proc.stderr
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before
    assert not (tmp_path / "out").exists()


def _child_puts(path: str, parent_cache_id: int, conn) -> None:  # noqa: ANN001 - runs in a forked process
    from alphasignal.providers.cache import open_cache

    cache = open_cache(path)
    cache.put_chart("from-child", b"png")
    conn.send(id(cache) != parent_cache_id)


def test_a_forked_worker_opens_its_own_connection(tmp_path: Path) -> None:
    import multiprocessing

    from alphasignal.providers.cache import open_cache

    path = tmp_path / "calls.sqlite"
    parent = open_cache(path)
    parent.put_chart("from-parent", b"png")
    ctx = multiprocessing.get_context("fork")  # what the replay's worker pool uses on Linux
    recv, send = ctx.Pipe(duplex=False)
    child = ctx.Process(target=_child_puts, args=(str(path), id(parent), send))
    child.start()
    assert recv.recv() is True  # not the parent's connection, copied by the fork
    child.join(30)
    assert child.exitcode == 0
    assert parent.chart("from-child") == b"png" and parent.chart("from-parent") == b"png"
    con = sqlite3.connect(path)
    assert con.execute("PRAGMA quick_check").fetchone()[0] == "ok"
    con.close()


def test_replay_draws_with_stage_01s_renderer(aapl, tmp_path: Path) -> None:
    """dataset.renderer reaches the replay's charts (drawn, cached under their own key) and its fingerprint."""
    mpf_ds = replace(DS, renderer="mplfinance")
    win = _window(aapl, 400)
    pc = PipelineConfig(provider="builtin", call_cache=str(tmp_path / "calls.sqlite"), cache_mode="use")
    fast = chart_png(win, DS, WARM, None, pc)
    drawn = chart_png(win, mpf_ds, WARM, None, pc)
    assert drawn != fast and drawn == _drawn(win, mpf_ds)
    assert len(_rows(tmp_path / "calls.sqlite", "charts")) == 2
    rc = ReplayConfig()
    assert fingerprint(mpf_ds, PipelineConfig(), rc, ["builtin"]) != fingerprint(DS, PipelineConfig(), rc, ["builtin"])
