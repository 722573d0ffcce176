"""Replay news files: causal look-ups, and one-line errors (exit 2) for bad files, before any work is done."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from alphasignal.errors import UsageError
from alphasignal.replay.journal import Journal
from alphasignal.replay.news import load_news
from alphasignal.replay.run import decision_times

ROOT = Path(__file__).resolve().parents[1]
NOW = pd.Timestamp("2025-01-01T00:00:00Z")


def _csv(tmp_path: Path, text: str, name: str = "news.csv") -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def test_decision_times_are_utc_nanoseconds_whatever_the_index_unit() -> None:
    for unit in ("s", "us", "ns"):
        idx = pd.DatetimeIndex(["2012-03-05", "2012-03-06"]).as_unit(unit)
        assert list(decision_times(idx, "20:00")) == [pd.Timestamp("2012-03-05T20:00Z").value,
                                                      pd.Timestamp("2012-03-06T20:00Z").value]
    hourly = pd.DatetimeIndex(["2012-03-05 14:30", "2012-03-05 15:30", "2012-03-05 16:30"]).as_unit("s")
    assert decision_times(hourly, "20:00")[0] == pd.Timestamp("2012-03-05T15:30Z").value  # the bar's close


def test_csv_and_jsonl_give_the_same_causal_index(tmp_path) -> None:
    csv_path = _csv(tmp_path, "Timestamp,Ticker,Headline\n2024-03-01T14:00:00Z,aapl,Apple beats estimates\n"
                              "2024-03-01T21:00:00+01:00,AAPL,\"Apple, Inc. raises guidance\"\n"
                              "2024-03-02 09:00,GOOG,Google misses\n")
    rows = [{"timestamp": "2024-03-01T14:00:00Z", "ticker": "AAPL", "headline": "Apple beats estimates"},
            {"time": "2024-03-01T20:00:00Z", "symbol": "AAPL", "title": "Apple, Inc. raises guidance"}]
    jl = _csv(tmp_path, "\n".join(json.dumps({"timestamp": r.get("timestamp", r.get("time")),
                                              "ticker": r.get("ticker", r.get("symbol")),
                                              "headline": r.get("headline", r.get("title"))}) for r in rows),
              "news.jsonl")
    a = load_news(csv_path, ["AAPL", "GOOG"], now=NOW)
    b = load_news(jl, ["AAPL"], now=NOW)
    assert a.headlines["AAPL"] == b.headlines["AAPL"]
    assert list(a.stamps["AAPL"]) == list(b.stamps["AAPL"])
    t = pd.Timestamp("2024-03-01T20:00:00Z").value
    day = 86_400 * 10**9
    assert a.before("AAPL", t, day) == ["Apple beats estimates"]  # 20:00 itself is not before 20:00
    assert a.before("AAPL", t + 1, day) == ["Apple beats estimates", "Apple, Inc. raises guidance"]
    assert a.before("AAPL", t + 2 * day, day) == []  # older than the window
    assert a.before("GOOG", pd.Timestamp("2024-03-02T09:00:01Z").value, day) == ["Google misses"]  # naive = UTC
    assert a.before("MSFT", t, day) == []


@pytest.mark.parametrize(("text", "needle"), [
    ("ticker,headline\nAAPL,Apple beats\n", "no timestamp column"),
    ("timestamp,ticker,headline\nyesterday,AAPL,Apple beats\n", "line 2: timestamp 'yesterday'"),
    ("timestamp,ticker,headline\n2024-01-02,AAPL,ok\n,AAPL,no time\n", "line 3: timestamp ''"),
    ("timestamp,ticker,headline\n2024-01-02,AAPL,ok\n2031-05-01T10:00:00Z,AAPL,late\n", "line 3 is dated 2031"),
    ("timestamp,ticker,headline\n2024-01-02,AAPL,ok\n2024-01-03,MSFT,Microsoft\n", "tickers not replayed: MSFT"),
    ("timestamp,ticker,headline\n2024-01-02,AAPL,\n", "empty headline"),
    ("timestamp,ticker,headline\n", "has no rows"),
])
def test_bad_news_files_fail_with_one_line_naming_the_row(tmp_path, text, needle) -> None:
    with pytest.raises(UsageError) as exc:
        load_news(_csv(tmp_path, text), ["AAPL"], now=NOW)
    msg = str(exc.value)
    assert needle in msg and "\n" not in msg


def test_cli_bad_news_file_exits_2_before_any_work(tmp_path) -> None:
    news = _csv(tmp_path, "timestamp,ticker,headline\n2099-01-01T00:00:00Z,AAPL,from the future\n")
    out = tmp_path / "replay_out"
    proc = subprocess.run([sys.executable, str(ROOT / "04_signal_pipeline.py"), "--replay", "--tickers", "AAPL",
                           "--start", "2020-01-01", "--news-file", str(news), "--provider", "builtin",
                           "--set", "dataset.source=offline", "--set", f"replay.output_dir={out}"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "MPLBACKEND": "Agg"})
    assert proc.returncode == 2
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "in the future" in errors[0] and "line 2" in errors[0]
    assert not out.exists()  # the folder was checked (creating nothing), nothing was decided or written


def test_output_location_is_checked_first(tmp_path) -> None:
    blocker = tmp_path / "taken"
    blocker.write_text("not a folder")
    proc = subprocess.run([sys.executable, str(ROOT / "04_signal_pipeline.py"), "--replay", "--provider", "builtin",
                           "--set", "dataset.source=offline", "--set", f"replay.output_dir={blocker}"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "is a file, not a folder" in proc.stderr
    assert blocker.read_text() == "not a folder"


def test_journal_drops_a_torn_last_line_and_rejects_corruption(tmp_path) -> None:
    j = Journal(tmp_path / "journal.jsonl")
    j.append({"key": "a", "v": 1})
    j.append({"key": "b", "v": 2})
    j.close()
    with (tmp_path / "journal.jsonl").open("ab") as fh:
        fh.write(b'{"key": "c", "v"')  # a kill -9 in the middle of a write
    assert sorted(j.load()) == ["a", "b"]
    assert (tmp_path / "journal.jsonl").read_bytes().endswith(b'"v":2}\n')  # the torn bytes are cut off
    j.append({"key": "c", "v": 3})
    j.close()
    assert sorted(j.load()) == ["a", "b", "c"]
    (tmp_path / "journal.jsonl").write_bytes(b'{"key": "a"}\nnot json\n{"key": "b"}\n')
    with pytest.raises(UsageError, match="line 2 is corrupt"):
        j.load()


def test_a_decision_sees_the_headlines_before_its_decision_time(tmp_path, goog) -> None:
    from alphasignal.config import ReplayConfig
    from alphasignal.replay.run import ReplayData, news_text

    news = load_news(_csv(tmp_path, "timestamp,ticker,headline\n2012-03-05T13:00:00Z,GOOG,first\n"
                                    "2012-03-06T21:30:00Z,GOOG,after the close\n"
                                    "2012-03-07T10:00:00-05:00,GOOG,third\n"), ["GOOG"])
    rc = ReplayConfig(news_days=3.0, decision_time="20:00")
    data = ReplayData({"GOOG": goog}, news, {"GOOG": decision_times(goog.index, rc.decision_time)})
    seen = {d: news_text(data, rc, "GOOG", int(goog.index.get_loc(pd.Timestamp(d))))
            for d in ("2012-03-02", "2012-03-05", "2012-03-06", "2012-03-07", "2012-03-08", "2012-03-12")}
    assert seen == {"2012-03-02": "", "2012-03-05": "first", "2012-03-06": "first",
                    "2012-03-07": "third\nafter the close\nfirst", "2012-03-08": "third\nafter the close",
                    "2012-03-12": ""}
