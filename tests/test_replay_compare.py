"""``--replay --compare``: every rung traded through the same portfolio rules in one run (the builtin rung's curve is
the plain replay's), one table beside buy & hold and random, rungs counted as DSR trials; the rank portfolio end to
end over an offline universe; bad input is one ``error:`` line, exit 2, nothing written."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from alphasignal.config import Config, PipelineConfig, ReplayConfig
from alphasignal.errors import UsageError
from alphasignal.replay.compare import run_compare, run_rank
from alphasignal.replay.compare_report import write_compare
from alphasignal.replay.rungs import parse_replay_rungs

ROOT = Path(__file__).resolve().parents[1]
PC = PipelineConfig(provider="builtin")


def _cfg() -> Config:
    cfg = Config()
    return dataclasses.replace(cfg, dataset=dataclasses.replace(cfg.dataset, source="offline"))


def _rc(out: Path, **kw) -> ReplayConfig:
    base = {"tickers": ("AAPL", "GOOG"), "start": "2012-06-01", "end": "2012-12-31", "every": 5, "workers": 1,
            "fsync": False, "random_runs": 3, "bootstrap": 200, "output_dir": str(out)}
    return ReplayConfig(**{**base, **kw})


def test_rungs_parse_in_ladder_order_and_unknown_ones_fail_in_one_line() -> None:
    assert parse_replay_rungs("builtin, momentum") == ("momentum", "builtin")
    with pytest.raises(UsageError, match=r"unknown rung 'chartist'.*momentum, builtin, cnn, vlm"):
        parse_replay_rungs("momentum,chartist")
    with pytest.raises(UsageError, match="majority has no per-date decision"):
        parse_replay_rungs("majority,builtin")


def test_compare_trades_every_rung_through_the_same_rules(tmp_path: Path) -> None:
    from alphasignal.replay.run import run_replay

    rc = _rc(tmp_path / "cmp")
    o = run_compare(_cfg(), PC, rc, ("momentum", "builtin"))
    assert list(o.columns) == ["momentum", "builtin", "buy & hold", "random"]
    assert o.trials == 2  # replay.trials (1) x two rungs
    assert all(0.0 <= o.columns[n]["dsr"] <= 1.0 for n in ("momentum", "builtin"))
    assert o.columns["momentum"]["trades"] > 0 and o.columns["builtin"]["trades"] > 0
    # the builtin rung is the plain replay: same decisions, same portfolio rules, same curve
    plain = run_replay(_cfg(), PC, dataclasses.replace(rc, output_dir=str(tmp_path / "plain")), quiet=True)
    np.testing.assert_allclose(o.equity["builtin"].to_numpy(), plain.sim.equity, rtol=1e-12)
    assert not np.allclose(o.equity["momentum"].to_numpy(), plain.sim.equity)
    paths = write_compare(o, tmp_path / "cmp")
    table = pd.read_csv(paths["table"])
    assert list(table["name"]) == ["momentum", "builtin", "buy & hold", "random"]
    assert {"sharpe", "sharpe_lo", "sharpe_hi", "dsr"} <= set(table.columns)
    eq = pd.read_csv(paths["equity"])
    assert list(eq.columns) == ["date", "momentum", "builtin", "buy & hold", "random"]
    assert "DSR: the rungs count as trials" in paths["report"].read_text(encoding="utf-8")
    # a second run decides nothing again (the journal holds the builtin rung's decisions)
    again = run_compare(_cfg(), PC, rc, ("momentum", "builtin"))
    assert again.rungs[1].decided == 0 and again.rungs[1].reused == len(plain.jobs)
    np.testing.assert_array_equal(again.equity.to_numpy(), o.equity.to_numpy())


def test_rank_portfolio_over_an_offline_universe(tmp_path: Path) -> None:
    rc = _rc(tmp_path / "rank", tickers=("AAPL", "GOOG", "IBM", "MSFT"), rank_fraction=0.25)
    o = run_rank(_cfg(), PC, rc, ("momentum",))
    assert list(o.columns) == ["momentum long", "momentum short", "momentum long-short", "equal-weight buy & hold"]
    res = o.ranks["momentum"]
    w = res.books["long_short"].weights
    assert (w.gt(0).sum(axis=1) == 1).all() and (w.lt(0).sum(axis=1) == 1).all()  # 4 tickers x 0.25: one a leg
    assert np.isfinite(o.columns["momentum long-short"]["ic_mean"])
    paths = write_compare(o, tmp_path / "rank")
    weights = pd.read_csv(paths["weights"])
    assert set(weights["ticker"]) <= {"AAPL", "GOOG", "IBM", "MSFT"} and len(weights) == 2 * len(w)
    long_only = run_rank(_cfg(), PC, dataclasses.replace(rc, mode="long_only"), ("momentum",))
    assert list(long_only.columns) == ["momentum long", "equal-weight buy & hold"]
    np.testing.assert_allclose(long_only.equity["momentum long"], o.equity["momentum long"])


def test_a_rank_portfolio_of_one_ticker_is_refused_before_any_work(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="at least 2 tickers"):
        run_rank(_cfg(), PC, _rc(tmp_path / "one", tickers=("AAPL",)), ("momentum",))
    assert not (tmp_path / "one").exists()


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, str(ROOT / "04_signal_pipeline.py"), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize(("lines", "message"), [
    ("AAPL\nZZZZ\n", "no offline data: ZZZZ"),
    ("# none\n\n", "lists no ticker"),
])
def test_bad_universe_files_are_one_error_line_and_nothing_written(tmp_path: Path, lines: str, message: str) -> None:
    universe = tmp_path / "universe.txt"
    universe.write_text(lines, encoding="utf-8")
    out = tmp_path / "out"
    p = _run("--replay", "--tickers-file", str(universe), "--portfolio", "rank", "--set", "dataset.source=offline",
             "--set", f"replay.output_dir={out}", cwd=tmp_path)
    assert p.returncode == 2, p.stderr
    errors = [line for line in p.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], p.stderr
    assert not out.exists()


def test_unknown_rung_in_a_replay_is_one_error_line(tmp_path: Path) -> None:
    out = tmp_path / "out"
    p = _run("--replay", "--compare", "momentum,tea-leaves", "--set", f"replay.output_dir={out}", cwd=tmp_path)
    assert p.returncode == 2
    assert [line for line in p.stderr.splitlines() if line.startswith("error:")] != []
    assert "tea-leaves" in p.stderr and not out.exists()


@pytest.mark.slow
def test_replay_compare_command_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "out"
    p = _run("--replay", "--compare", "builtin,momentum", "--tickers", "AAPL,GOOG", "--start", "2012-09-01",
             "--end", "2012-12-31", "--every", "5", "--provider", "builtin", "--set", "dataset.source=offline",
             "--set", "replay.random_runs=3", "--set", f"replay.output_dir={out}", "-q", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert "momentum" in p.stdout and "builtin" in p.stdout and "buy & hold" in p.stdout
    for name in ("compare.md", "compare.csv", "compare_equity.csv", "compare.png", "journal.jsonl"):
        assert (out / name).is_file(), name
    universe = tmp_path / "universe.txt"
    universe.write_text("AAPL\nGOOG\nIBM\nMSFT\n", encoding="utf-8")
    p = _run("--replay", "--tickers-file", str(universe), "--portfolio", "rank", "--compare", "momentum",
             "--start", "2012-06-01", "--end", "2012-12-31", "--set", "dataset.source=offline",
             "--set", "replay.rank_fraction=0.25", "--set", f"replay.output_dir={out}", "-q", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert "momentum long-short" in p.stdout and "equal-weight buy & hold" in p.stdout
    table = pd.read_csv(out / "rank.csv")
    assert "ic_mean" in table.columns and list(table["name"])[-1] == "equal-weight buy & hold"


def _long_table(path: Path, tickers: tuple[str, ...], start: str, end: str) -> Path:
    """The offline tickers as one long-format CSV (Date, Ticker, OHLCV)."""
    from alphasignal.market.data import load_ohlcv

    parts = []
    for t in tickers:
        df = load_ohlcv(t, start, end, source="offline").reset_index()
        df.insert(1, "Ticker", t)
        parts.append(df)
    pd.concat(parts).to_csv(path, index=False)
    return path


def test_a_long_format_file_feeds_the_rank_replay_like_the_offline_data(tmp_path: Path) -> None:
    tickers = ("AAPL", "GOOG", "IBM", "MSFT")
    table = _long_table(tmp_path / "universe.csv", tickers, "2011-01-01", "2012-12-31")
    rc = _rc(tmp_path / "a", tickers=tickers, rank_fraction=0.25)
    offline = run_rank(_cfg(), PC, rc, ("momentum",))
    cfg = _cfg()
    cfg = dataclasses.replace(cfg, dataset=dataclasses.replace(cfg.dataset, source="csv", csv_path=str(table)))
    from_file = run_rank(cfg, PC, dataclasses.replace(rc, output_dir=str(tmp_path / "b")), ("momentum",))
    np.testing.assert_allclose(from_file.equity.to_numpy(), offline.equity.to_numpy(), rtol=1e-9)


def test_stage_01_builds_one_dataset_over_a_universe_file_split_by_date(tmp_path: Path) -> None:
    tickers = ("AAPL", "IBM", "MSFT")
    table = _long_table(tmp_path / "universe.csv", tickers, "2011-01-01", "2012-12-31")
    universe = tmp_path / "tickers.txt"
    universe.write_text("# three of the offline universe\nAAPL\nIBM\nMSFT\n", encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.run([sys.executable, str(ROOT / "01_generate_dataset.py"), "--tickers-file", str(universe),
                        "--set", "dataset.source=csv", "--set", f"dataset.csv_path={table}", "--set",
                        "dataset.start=2011-01-01", "--set", "dataset.end=2012-12-31", "--set", "dataset.window=20",
                        "--set", "dataset.stride=10", "--set", "dataset.image_size=112", "--workers", "1",
                        "--output-dir", str(tmp_path / "ds"), "-q"], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    rows = [json.loads(line) for line in (tmp_path / "ds" / "training_data.jsonl").read_text().splitlines()]
    by_split = {s: [r for r in rows if r["split"] == s] for s in ("train", "val", "test")}
    for s, rs in by_split.items():
        assert {r["ticker"] for r in rs} == set(tickers), s  # every split holds every ticker
    # one date cut for all tickers at once: every val window ends after every train window, test after val
    assert max(r["window_end"] for r in by_split["train"]) < min(r["window_end"] for r in by_split["val"])
    assert max(r["window_end"] for r in by_split["val"]) < min(r["window_end"] for r in by_split["test"])
