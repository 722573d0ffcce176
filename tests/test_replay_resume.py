"""The replay command end to end (subprocess, offline): every output is written, and after a kill -9 the same
command continues from its journal, loses at most the decision in flight and ends with the same results."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
ARGS = ["--replay", "--tickers", "AAPL,GOOG", "--start", "2012-03-01", "--end", "2012-12-31", "--every", "3",
        "--provider", "builtin", "--set", "dataset.source=offline", "--set", "replay.workers=1",
        "--set", "replay.random_runs=3", "--set", "replay.bootstrap=200"]
OUTPUTS = ("decisions.jsonl", "trades.csv", "equity.csv", "replay_report.md", "replay.png")


def _cmd(out: Path) -> list[str]:
    return [sys.executable, str(ROOT / "04_signal_pipeline.py"), *ARGS, "--set", f"replay.output_dir={out}"]


def _env() -> dict[str, str]:
    return {**os.environ, "MPLBACKEND": "Agg"}


def _lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


@pytest.mark.slow  # an integration test (subprocess or a real model/replay): ~3-13 s
def test_replay_writes_everything_and_resumes_after_kill_9(tmp_path) -> None:
    clean = tmp_path / "clean"
    proc = subprocess.run(_cmd(clean), cwd=tmp_path, capture_output=True, text=True, timeout=600, env=_env())
    assert proc.returncode == 0, proc.stderr
    for name in OUTPUTS:
        assert (clean / name).stat().st_size > 0, name
    decisions = [json.loads(x) for x in (clean / "decisions.jsonl").read_text().splitlines()]
    assert {d["ticker"] for d in decisions} == {"AAPL", "GOOG"}
    assert all(d["ok"] and d["decision"]["meta"]["engine"] == "builtin" for d in decisions)
    assert [d["date"] for d in decisions] == sorted(d["date"] for d in decisions)
    trades = pd.read_csv(clean / "trades.csv")
    assert set(trades["exit_reason"]) <= {"stop", "target", "signal", "time", "open"}
    report = (clean / "replay_report.md").read_text()
    assert "| Sharpe |" in report and "buy & hold" in report and "news: **none**" in report

    killed = tmp_path / "killed"
    journal = killed / "journal.jsonl"
    victim = subprocess.Popen(_cmd(killed), cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              env=_env())
    deadline = time.time() + 300
    while _lines(journal) < 15 and victim.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert victim.poll() is None, "the replay finished before it could be killed: give it more work"
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    done_at_kill = _lines(journal)  # complete lines: every decision committed before the kill
    assert 15 <= done_at_kill < len(decisions)
    assert not (killed / "trades.csv").exists()  # nothing half-written: outputs come at the end

    resumed = subprocess.run(_cmd(killed), cwd=tmp_path, capture_output=True, text=True, timeout=600, env=_env())
    assert resumed.returncode == 0, resumed.stderr
    assert f"{done_at_kill} from the journal" in resumed.stderr  # all committed decisions kept
    made = int(resumed.stderr.split("decisions: ")[1].split(" made")[0])
    assert made == len(decisions) - done_at_kill
    for name in ("trades.csv", "equity.csv"):
        assert (killed / name).read_bytes() == (clean / name).read_bytes(), name


def test_the_meter_stops_on_the_token_budget_and_counts_what_the_run_sent() -> None:
    from alphasignal.providers import CallUsage
    from alphasignal.replay.run import Meter

    meter = Meter(max_calls=0, max_tokens_total=10)
    meter.add({"calls": 1, "tokens_in": 4, "tokens_out": 3, "latency_s": 0.5})
    assert not meter.stopped and meter.tokens_total == 7
    sent = CallUsage(calls=3, tokens_in=9, tokens_out=2)  # the run's request counter: cache hits spent nothing
    meter.add({"calls": 2, "tokens_in": 50, "tokens_out": 50, "latency_s": 0.25}, sent)
    assert (meter.decisions, meter.calls, meter.tokens_total, meter.latency_s) == (2, 3, 11, 0.75)
    assert meter.stopped == "replay.max_tokens_total=10 reached (11 tokens)"


def test_max_calls_stops_cleanly_keeps_what_is_done_and_the_next_run_continues(tmp_path) -> None:
    from dataclasses import replace

    from alphasignal.config import Config, PipelineConfig, ReplayConfig
    from alphasignal.replay.run import run_replay

    cfg = Config()
    cfg = replace(cfg, dataset=replace(cfg.dataset, source="offline"))
    rc = ReplayConfig(tickers=("GOOG",), start="2012-06-01", end="2012-07-31", workers=1, fsync=False,
                      max_calls=12, random_runs=2, bootstrap=100, output_dir=str(tmp_path))
    pc = PipelineConfig(provider="builtin")
    first = run_replay(cfg, pc, rc, quiet=True)
    n = first.meter.decisions  # one call each (no news): the limit is never passed, even with calls in flight
    assert first.meter.stopped.startswith("replay.max_calls=12 reached") and 8 <= first.meter.calls == n <= 12
    assert len(first.records) == n and _lines(tmp_path / "journal.jsonl") == n
    undecided = next(j for j in first.jobs if j.key not in first.records)
    assert first.sim.dates[-1] < pd.Timestamp(undecided.date) and any("stopped early" in x for x in first.notes)
    second = run_replay(cfg, pc, replace(rc, max_calls=0), quiet=True)
    assert second.reused == n and second.meter.decisions == len(second.jobs) - n and not second.meter.stopped
    assert str(second.sim.dates[-1].date()) == "2012-07-31"
