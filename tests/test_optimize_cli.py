"""``06_multi_llm_optimize.py``: offline end to end, history/show, kill -9 and resume, and bad input."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from PIL import Image

from alphasignal.cli import build_parser, run
from alphasignal.cli.optimize import add_arguments, main

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "06_multi_llm_optimize.py"
DATA = ["--set", "dataset.source=offline", "--set", "dataset.start=2015-01-01", "--set", "dataset.end=2020-12-31",
        "--set", "sweep.grid={short_period=[5, 10, 20, 40], long_period=[50, 100, 150], use_ema=[false, true]}",
        "--set", "optimizer.min_trades=3"]


def _args(tmp_path: Path, *extra: str) -> list[str]:
    return [*DATA, "--set", f"optimizer.history_db={tmp_path / 'h.sqlite'}", "--output-dir", str(tmp_path / "out"),
            *extra]


def _cli(argv: list[str]) -> int:
    parser = build_parser("stage 06")
    add_arguments(parser)
    return run(main, parser, argv)


def _script(*argv: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *argv], capture_output=True, text=True, timeout=timeout,
                          cwd=ROOT, env={**os.environ, "COLUMNS": "160"})


@pytest.mark.slow  # an integration test (subprocess or a real model/replay): ~3-13 s
def test_offline_end_to_end_then_history_and_show(tmp_path, capsys):
    res = _script(*_args(tmp_path, "--provider", "builtin", "--rounds", "3", "--compare", "random,tpe", "-q"))
    assert res.returncode == 0, res.stderr
    out = tmp_path / "out"
    for name in ("multi_llm_comparison.png", "multi_llm_equity.png"):
        with Image.open(out / name) as im:
            assert im.size[0] > 500 and im.size[1] > 300
    md = (out / "multi_llm_report.md").read_text()
    for needle in ("## Result", "Deflated Sharpe Ratio", "PBO", "## Round 1", "Analyst patterns", "random", "tpe",
                   "hold-out: initial", "selection: best", "hold-out Sharpe 95% CI"):
        assert needle in md
    assert "Top 3 of the exploration sweep" in res.stdout and "optimizers with the same backtest budget" in res.stdout
    assert "hold-out sharpe improvement" in res.stdout
    assert not list(out.glob("*.tmp"))
    con = sqlite3.connect(tmp_path / "h.sqlite")
    run_id, status = con.execute("SELECT run_id, status FROM runs").fetchone()
    assert status == "finished" and con.execute("SELECT COUNT(*) FROM rounds").fetchone()[0] >= 2
    con.close()
    capsys.readouterr()
    assert _cli(_args(tmp_path, "--history")) == 0
    hist = capsys.readouterr().out
    assert run_id in hist and "finished" in hist and "hold-out" in hist
    assert _cli(_args(tmp_path, "--show", run_id)) == 0
    show = capsys.readouterr().out
    assert "configurations tried" in show and "round 1" in show
    con = sqlite3.connect(tmp_path / "h.sqlite")
    summary = json.loads(con.execute("SELECT summary FROM runs").fetchone()[0])
    con.close()
    held = summary["winner"]["metrics_holdout"]["sharpe"]
    assert f"{held:.3f}" in show and "hold-out: best" in show  # --show reprints the stored hold-out figures


_SLOW_RUN = """
import os, sys, time
from pathlib import Path
from alphasignal.agents.loop import build_agents, optimize
from alphasignal.market import load_from_config
from alphasignal.storage.history import History
from alphasignal.config import load_config

cfg = load_config(None, sys.argv[1:])
agents = build_agents(cfg)
real = agents.strategist
calls = []

def held_strategist(state, report):  # test double: the real builtin Strategist, held in round 2 (see _hold)
    calls.append(1)
    if len(calls) == 2:
        Path(os.environ["HOLD_MARKER"]).touch()  # the test's state to wait for: inside round 2
        while True:  # held until the test's signal ends it: the run cannot finish first, whatever the load
            time.sleep(0.01)
    return real(state, report)

agents.strategist = held_strategist
with History(cfg.optimizer.history_db) as h:
    optimize(load_from_config(cfg.dataset), cfg, h, agents=agents, progress=False)
"""


def _wait_inside_round_2(proc: subprocess.Popen, marker: Path) -> None:
    """Return once round 1 is committed and round 2's Strategist holds (it touched ``marker`` and waits for the
    signal), so the run cannot end before the test's signal arrives."""
    while not marker.exists():
        assert proc.poll() is None, proc.stderr.read()
        time.sleep(0.05)


_SLOW_CLI = """
import os, sys, time
from pathlib import Path
import alphasignal.cli.optimize as app
from alphasignal.cli import build_parser, run

real_build = app.build_agents

def held(cfg):  # test double: the real builtin agents, the Strategist held in round 2 (see _SLOW_RUN)
    agents = real_build(cfg)
    real, calls = agents.strategist, []

    def strategist(state, report):
        calls.append(1)
        if len(calls) == 2:
            Path(os.environ["HOLD_MARKER"]).touch()
            while True:
                time.sleep(0.01)
        return real(state, report)

    agents.strategist = strategist
    return agents

app.build_agents = held
parser = build_parser("06")
app.add_arguments(parser)
sys.exit(run(app.main, parser))
"""


@pytest.mark.slow  # an integration test (subprocess or a real model/replay): ~3-13 s
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_marks_the_run_interrupted_and_prints_the_resume_command(tmp_path, sig):
    helper = tmp_path / "slow_cli.py"
    helper.write_text(textwrap.dedent(_SLOW_CLI))
    db = tmp_path / "h.sqlite"
    argv = _args(tmp_path, "--provider", "builtin", "--rounds", "5", "--set", "optimizer.patience=20", "-q")
    marker = tmp_path / "inside_round_2"
    proc = subprocess.Popen([sys.executable, str(helper), *argv], cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT), "HOLD_MARKER": str(marker)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_inside_round_2(proc, marker)
        proc.send_signal(sig)  # SIGTERM (kill, a service manager) stops it as Ctrl-C does
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    con = sqlite3.connect(db)
    run_id, status = con.execute("SELECT run_id, status FROM runs").fetchone()
    con.close()
    assert proc.returncode == 130 and status == "interrupted"
    assert err.strip().splitlines()[-1] == (f"interrupted: run {run_id} kept up to its last complete round; "
                                            f"continue it with the same options and --resume {run_id}")
    assert "Traceback" not in err
    res = _script(*_args(tmp_path, "--provider", "builtin", "--rounds", "5", "--set", "optimizer.patience=20",
                         "--resume", run_id, "-q"))
    con = sqlite3.connect(db)
    assert res.returncode == 0 and con.execute("SELECT status FROM runs").fetchone()[0] == "finished", res.stderr
    con.close()


@pytest.mark.slow  # an integration test (subprocess or a real model/replay): ~3-13 s
def test_kill_9_mid_round_loses_at_most_that_round(tmp_path):
    sets = [a for a in DATA if a != "--set"] + [f"optimizer.history_db={tmp_path / 'h.sqlite'}",
                                                  "optimizer.provider=builtin", "optimizer.rounds=5",
                                                  "optimizer.patience=20"]
    helper = tmp_path / "slow_run.py"
    helper.write_text(textwrap.dedent(_SLOW_RUN))
    db = tmp_path / "h.sqlite"
    marker = tmp_path / "inside_round_2"
    proc = subprocess.Popen([sys.executable, str(helper), *sets], cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT), "HOLD_MARKER": str(marker)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_inside_round_2(proc, marker)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    run_id, status = con.execute("SELECT run_id, status FROM runs").fetchone()
    done = [r[0] for r in con.execute("SELECT round_no FROM rounds ORDER BY round_no")]
    assert status == "running" and done == list(range(len(done))) and 2 <= len(done) < 6
    assert {r[0] for r in con.execute("SELECT DISTINCT round_no FROM proposals")} == set(done)
    con.close()
    other = _script(*_args(tmp_path, "--provider", "builtin", "--rounds", "5", "--set", "optimizer.patience=20",
                           "--set", "optimizer.tolerance=0.5", "--resume", run_id, "-q"))
    assert other.returncode == 2 and "optimizer.tolerance=0.01 (now 0.5)" in other.stderr, other.stderr
    res = _script(*_args(tmp_path, "--provider", "builtin", "--rounds", "5", "--set", "optimizer.patience=20",
                         "--resume", run_id, "-q"))
    assert res.returncode == 0, res.stderr
    con = sqlite3.connect(db)
    rounds = [r[0] for r in con.execute("SELECT round_no FROM rounds ORDER BY round_no")]
    assert rounds == list(range(6)) and con.execute("SELECT status FROM runs").fetchone()[0] == "finished"
    con.close()


@pytest.mark.parametrize(("extra", "needle"), [
    (["--strategy", "MA_Crosover"], "did you mean 'MA_Crossover'"),
    (["--set", "sweep.grid={short_perod=[10, 20]}"], "did you mean 'short_period'"),
    (["--set", "sweep.grid={short_period=[]}"], "empty"),
    (["--set", "optimizer.grid={short_period=[300], long_period=[100], use_ema=[false]}"], "outside"),
    (["--budget", "0"], "optimizer.budget=0 must be > 0"),
    (["--compare", "grid"], "optimizer.compare"),
    (["--set", "optimizer.holdout_fraction=0.9"], "optimizer.holdout_fraction=0.9 must be in (0, 0.5]"),
    (["--set", "optimizer.holdout_fraction=0.5", "--set", "optimizer.holdout_embargo=900"], "leaves"),
])
def test_bad_input_exits_2_with_the_fix(tmp_path, capsys, extra, needle):
    assert _cli(_args(tmp_path, "--provider", "builtin", "-q", *extra)) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_model_down_is_exit_3_or_builtin_fallback_per_config(tmp_path, capsys):
    port = _closed_port()
    hosts = ["--set", f"pipeline.ollama_host=http://127.0.0.1:{port}",
             "--set", f"pipeline.openai_base_url=http://127.0.0.1:{port}/v1"]
    assert _cli(_args(tmp_path, *hosts, "--provider", "ollama", "-q")) == 3
    err = capsys.readouterr().err
    assert "Ollama" in err and str(port) in err
    assert _cli(_args(tmp_path, *hosts, "--set", "optimizer.require_server=true", "-q")) == 3
    assert "require_server" in capsys.readouterr().err
    from alphasignal.providers import registry

    registry._say_offline_once.cache_clear()  # the warning is once per process: an earlier test may have had it
    assert _cli(_args(tmp_path, *hosts, "--rounds", "1")) == 0  # auto: builtin fallback with a warning
    captured = capsys.readouterr()
    assert "builtin" in captured.err and "builtin:builtin" in captured.out


def test_corrupt_history_db_is_exit_2_and_untouched(tmp_path, capsys):
    db = tmp_path / "h.sqlite"
    db.write_bytes(b"SQLite format 3\x00" + b"\x13" * 5000)
    before = db.read_bytes()
    assert _cli(_args(tmp_path, "--provider", "builtin", "-q")) == 2
    assert "corrupt" in capsys.readouterr().err and db.read_bytes() == before
    assert _cli(_args(tmp_path, "--show", "nope")) == 2


def test_unknown_resume_id(tmp_path, capsys):
    assert _cli(_args(tmp_path, "--resume", "20990101-000000-abcdef")) == 2
    assert "no history database" in capsys.readouterr().err and not (tmp_path / "h.sqlite").exists()
