"""Sweeps through the one seam (alphasignal.backtest.distributed): in-process and on real Dask LocalClusters of
worker processes, bit-identical on every metric, also when a worker process is killed mid-sweep; universes from a
tickers file or a long-format table; results streamed to Parquet/CSV ticker by ticker."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from alphasignal.backtest.distributed import Executor, map_chunks, parse_cluster, threads_per_worker
from alphasignal.backtest.engine import prepare_prices
from alphasignal.backtest.strategies import get_strategy, grid_frame, split_valid
from alphasignal.backtest.sweep import run_window
from alphasignal.backtest.sweep_tasks import oos_columns, plan_blocks, reduce_blocks, sweep_tickers, write_frames
from alphasignal.backtest.xp import resolve
from alphasignal.config import Config, DatasetConfig, SweepConfig
from alphasignal.errors import ModelError, UsageError
from alphasignal.market.universe import load_universe, read_tickers_file

ROOT = Path(__file__).resolve().parents[1]
GRID = {"short_period": {"min": 2, "max": 40, "step": 2}, "long_period": {"min": 20, "max": 200, "step": 20},
        "use_ema": [False, True]}


def _bits(frame: pd.DataFrame) -> dict[str, bytes | list]:
    """Every column as raw bytes (floats compared bit for bit, NaN payloads included) or as values."""
    return {c: frame[c].to_numpy().tobytes() if frame[c].dtype.kind in "fiub" else frame[c].tolist()
            for c in frame.columns}


def _plan(aapl, goog, opts):
    strat = get_strategy("MA_Crossover")
    configs = grid_frame("MA_Crossover", GRID)
    frames = {"AAPL": aapl, "GOOG": goog, "AAPL2": aapl.iloc[200:], "GOOG2": goog.iloc[:1500]}
    plan = {}
    for t, df in frames.items():
        prices = prepare_prices(df, t, strat.needs)
        plan[t] = (prices, split_valid("MA_Crossover", configs, prices.n)[0])
    return plan


def _run(plan, opts, cluster="", kill_after_first=False):
    backend = resolve(opts.device, opts.engine)
    out = {}
    with Executor(cluster) as ex:
        pids = ex.client.run(os.getpid) if ex.client is not None else {}
        for res in sweep_tickers(ex, plan, get_strategy("MA_Crossover"), opts, backend):
            out[res.ticker] = res
            if kill_after_first and len(out) == 1:
                os.kill(pids[sorted(pids)[-1]], signal.SIGKILL)  # a worker process dies mid-sweep
        if kill_after_first:
            ex.client.wait_for_workers(2, timeout=60)
            out["_pids"] = (set(pids.values()), set(ex.client.run(os.getpid).values()))
    return out


def test_parse_cluster_forms_and_thread_share():
    assert parse_cluster("") == ("", 0) and parse_cluster("local:3") == ("local", 3)
    assert parse_cluster("local") == ("local", os.cpu_count() or 1)
    assert parse_cluster("tcp://10.0.0.5:8786") == ("tcp://10.0.0.5:8786", 0)
    for bad in ("local:0", "local:x", "10.0.0.5:8786", "tcp://host", f"local:{4 * (os.cpu_count() or 1) + 1}"):
        with pytest.raises(UsageError, match="local"):
            parse_cluster(bad)
    assert threads_per_worker(2, cores=16) == 8 and threads_per_worker(3, cores=2) == 1
    assert threads_per_worker(1, cores=2) * 1 <= 2 and threads_per_worker(2, cores=2) * 2 <= 2


def test_map_chunks_in_process_keeps_order_and_imports_no_dask():
    out = map_chunks(lambda shared, p: shared * p, [("a", 2), ("b", 3), ("a", 4)], {"a": 10, "b": 100})
    assert out == [20, 300, 40]
    code = ("import sys; from alphasignal.backtest.distributed import map_chunks; "
            "map_chunks(lambda s, p: s + p, [(0, 1)], {0: 1}); print('distributed' in sys.modules)")
    import subprocess

    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert res.stdout.strip() == "False"


def test_blocks_reduce_to_the_one_call_frame_bit_for_bit(aapl):
    """Tiny memory blocks (many tasks) give the same rows, in the same order, as one run over all configs."""
    opts = SweepConfig(max_memory_mb=1)
    backend = resolve(opts.device, opts.engine)
    prices = prepare_prices(aapl, "AAPL", ("Close",))
    valid = split_valid("MA_Crossover", grid_frame("MA_Crossover", GRID), prices.n)[0]
    strat = get_strategy("MA_Crossover")
    assert len(plan_blocks(prices, strat, valid, opts, backend)) == 1
    assert len(plan_blocks(prices, strat, valid, opts, backend, 7)) == 7
    whole, blocks, _ = run_window(prices, strat, valid, SweepConfig(), backend, n_blocks=opts.pbo_splits)
    whole = pd.concat([whole, oos_columns(prices, strat, valid, SweepConfig(), backend)], axis=1)
    (res,) = sweep_tickers(Executor(), {"AAPL": (prices, valid)}, strat, opts, backend, min_blocks=7)
    assert _bits(res.frame) == _bits(whole)
    assert res.blocks.tobytes() == blocks.tobytes()


def test_report_made_in_the_task_equals_the_report_made_from_returned_block_sums(aapl, goog):
    """One block per ticker: DSR/PBO are made inside the task and the sums stay there; several blocks: the client
    makes them from the sums. Both give the same frames and the same reports (the sweep's own engine order, which
    is not the configs' order, is undone before the report either way)."""
    opts = SweepConfig()
    backend = resolve(opts.device, opts.engine)
    plan = {t: v for t, v in _plan(aapl, goog, opts).items() if t in ("AAPL", "GOOG2")}
    strat = get_strategy("MA_Crossover")
    one = list(sweep_tickers(Executor(), plan, strat, opts, backend, reports=True))
    many = list(sweep_tickers(Executor(), plan, strat, opts, backend, min_blocks=5, reports=True))
    for a, b in zip(one, many, strict=True):
        assert a.blocks is None and b.blocks is not None and b.blocks.shape[1] == opts.pbo_splits
        assert _bits(a.frame) == _bits(b.frame)
        assert a.report == b.report and a.report["pbo"] is not None and "best_config" in a.report


def test_reduce_blocks_puts_rows_back_in_order_whatever_order_blocks_arrive():
    """In-order blocks take the no-copy path; shuffled ones are reordered to the same frame; a gap is a bug."""
    k = 10
    frame = pd.DataFrame({"x": np.arange(k) * 1.5, "y": np.arange(k)})
    sums = np.arange(k * 4, dtype=float).reshape(k, 2, 2)
    cuts = [np.arange(0, 3), np.arange(3, 7), np.arange(7, 10)]
    parts = [(i, frame.iloc[i], sums[i], 0.5) for i in cuts]
    for order in ([0, 1, 2], [2, 0, 1], [1, 2, 0]):
        res = reduce_blocks("T", [parts[j] for j in order], k)
        assert res.frame.equals(frame) and np.array_equal(res.blocks, sums) and res.task_s == 1.5
    one = reduce_blocks("T", [(np.arange(k), frame, sums, 0.1)], k)
    assert one.frame.equals(frame) and one.blocks is sums
    with pytest.raises(RuntimeError, match="cover 6 of 10"):
        reduce_blocks("T", [parts[0], parts[2]], k)
    with pytest.raises(RuntimeError, match="cover 10 of 10"):
        reduce_blocks("T", [parts[0], parts[1], (np.arange(6, 9), frame.iloc[6:9], sums[6:9], 0.0)], k)


@pytest.mark.slow
def test_local_clusters_and_a_killed_worker_are_bit_identical_to_in_process(aapl, goog):
    opts = SweepConfig(max_memory_mb=1)
    plan = _plan(aapl, goog, opts)
    ref = _run(plan, opts)
    for cluster, kill in (("local:1", False), ("local:2", False), ("local:2", True)):
        got = _run(plan, opts, cluster, kill)
        if kill:
            before, after = got.pop("_pids")
            assert before != after  # the killed process was replaced: its tasks ran again elsewhere
        assert list(got) == list(ref)
        for t in ref:
            assert _bits(got[t].frame) == _bits(ref[t].frame), (cluster, kill, t)
            assert got[t].blocks.tobytes() == ref[t].blocks.tobytes()


def _cli(*argv: str) -> int:
    from alphasignal.cli import run_stage

    spec = importlib.util.spec_from_file_location("sweep_script", ROOT / "05_sweep_backtest.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return run_stage(mod.stage, mod.__doc__, ["--quiet", "--source", "offline", *argv])


@pytest.mark.slow
def test_cli_cluster_writes_the_same_results_and_dsr_pbo(tmp_path):
    args = ["--tickers", "AAPL,GOOG", "--grid", "{short_period=[5, 10, 20], long_period=[50, 100, 200]}"]
    metas = {}
    for name, extra in (("inproc", []), ("c1", ["--cluster", "local:1"]), ("c2", ["--cluster", "local:2"])):
        out = tmp_path / f"{name}.parquet"
        assert _cli(*args, *extra, "--output", str(out)) == 0
        metas[name] = json.loads(out.with_suffix(".meta.json").read_text())
    ref = pd.read_parquet(tmp_path / "inproc.parquet")
    for name in ("c1", "c2"):
        assert _bits(pd.read_parquet(tmp_path / f"{name}.parquet")) == _bits(ref)
        assert metas[name]["overfitting"] == metas["inproc"]["overfitting"]
        assert metas[name]["data_hash"] == metas["inproc"]["data_hash"]
        assert metas[name]["n_run"] == metas["inproc"]["n_run"]


def test_unreachable_scheduler_is_one_line_exit_3(tmp_path, capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    with pytest.raises(ModelError, match="cannot reach the Dask scheduler"):
        Executor(f"tcp://127.0.0.1:{port}", connect_timeout=1).__enter__()
    code = _cli("--cluster", f"tcp://127.0.0.1:{port}", "--set", "sweep.connect_timeout=1",
                "--output", str(tmp_path / "r.csv"))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 3
    assert len(err) == 1 and err[0].startswith("error:") and "sweep.cluster" in err[0]
    assert not (tmp_path / "r.csv").exists()


def test_config_hash_ignores_where_the_sweep_ran():
    from dataclasses import replace

    from alphasignal.backtest.run import sweep_config_hash

    cfg = Config()
    moved = replace(cfg, sweep=replace(cfg.sweep, cluster="tcp://10.0.0.5:8786", connect_timeout=3.0))
    assert sweep_config_hash(moved) == sweep_config_hash(cfg)
    assert sweep_config_hash(replace(cfg, sweep=replace(cfg.sweep, fees_bps=2.0))) != sweep_config_hash(cfg)


def test_bad_cluster_setting_is_refused_by_config():
    from alphasignal.config import ConfigError

    with pytest.raises(ConfigError, match="sweep.cluster"):
        SweepConfig(cluster="localhost:8786")


def test_tickers_file_skips_comments_and_refuses_duplicates(tmp_path):
    f = tmp_path / "t.txt"
    f.write_text("AAPL\n# a comment\n\nGOOG  # second\n")
    assert read_tickers_file(f) == ["AAPL", "GOOG"]
    f.write_text("AAPL\nAAPL\n")
    with pytest.raises(UsageError, match="twice"):
        read_tickers_file(f)
    f.write_text("# none\n")
    with pytest.raises(UsageError, match="no ticker"):
        read_tickers_file(f)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_long_table_yields_each_ticker_like_its_own_file(tmp_path, aapl, goog, suffix):
    long = pd.concat([aapl.assign(Ticker="AAPL"), goog.assign(Ticker="GOOG")]).reset_index()
    path = tmp_path / f"universe{suffix}"
    long.to_csv(path, index=False) if suffix == ".csv" else long.to_parquet(path, index=False)
    frames = load_universe(DatasetConfig(tickers=("*",), source="csv", csv_path=str(path), start="", end="",
                                         min_length=10))
    assert list(frames) == ["AAPL", "GOOG"]
    for t, df in (("AAPL", aapl), ("GOOG", goog)):
        pd.testing.assert_frame_equal(frames[t], df, check_freq=False, check_exact=True)
    only = load_universe(DatasetConfig(tickers=("GOOG",), source="csv", csv_path=str(path), start="", end="",
                                       min_length=10))
    assert list(only) == ["GOOG"]
    with pytest.raises(UsageError, match="no rows for MSFT"):
        load_universe(DatasetConfig(tickers=("MSFT",), source="csv", csv_path=str(path), min_length=10))


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_streamed_file_equals_the_whole_frame_written_at_once(tmp_path, suffix):
    rng = np.random.default_rng(0)
    parts = [pd.DataFrame({"ticker": t, "p": np.arange(5), "x": rng.normal(size=5)}) for t in ("A", "B", "C")]
    path = tmp_path / f"s{suffix}"
    write_frames(path, iter(parts))
    back = pd.read_csv(path) if suffix == ".csv" else pd.read_parquet(path)
    pd.testing.assert_frame_equal(back, pd.concat(parts, ignore_index=True), check_exact=True)


def test_stream_failure_leaves_no_file(tmp_path):
    def frames():
        yield pd.DataFrame({"a": [1.0]})
        raise UsageError("boom")

    with pytest.raises(UsageError, match="boom"):
        write_frames(tmp_path / "s.parquet", frames())
    assert list(tmp_path.iterdir()) == []


def test_cli_tickers_file_runs_each_listed_ticker(tmp_path):
    (tmp_path / "u.txt").write_text("GOOG\nAAPL\n")
    out = tmp_path / "r.parquet"
    assert _cli("--tickers-file", str(tmp_path / "u.txt"), "--grid", "{short_period=[5, 10], long_period=[50]}",
                "--output", str(out)) == 0
    assert list(dict.fromkeys(pd.read_parquet(out)["ticker"])) == ["GOOG", "AAPL"]
    assert Config().sweep.cluster == ""


def _optimize_cli(tmp_path: Path, name: str, *extra: str) -> int:
    from alphasignal.cli import build_parser, run
    from alphasignal.cli.optimize import add_arguments, main

    parser = build_parser("stage 06")
    add_arguments(parser)
    return run(main, parser, ["-q", "--provider", "builtin", "--set", "dataset.source=offline",
                              "--set", "dataset.start=2015-01-01", "--set", "dataset.end=2020-12-31",
                              "--set", "sweep.grid={short_period=[5, 10, 20, 40], long_period=[50, 100, 150]}",
                              "--set", "optimizer.min_trades=3", "--set",
                              f"optimizer.history_db={tmp_path / (name + '.sqlite')}",
                              "--output-dir", str(tmp_path / name), *extra])


def test_optimizer_with_an_unreachable_scheduler_fails_before_loading_data(tmp_path, capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code = _optimize_cli(tmp_path, "x", "--cluster", f"tcp://127.0.0.1:{port}", "--set", "sweep.connect_timeout=1",
                         "--set", "dataset.source=csv", "--set", f"dataset.csv_path={tmp_path / 'missing.csv'}")
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 3 and len(err) == 1 and "cannot reach the Dask scheduler" in err[0]  # not the missing file
    assert not (tmp_path / "x.sqlite").exists()


@pytest.mark.slow
def test_optimizer_rounds_and_compare_runs_on_a_cluster_are_identical_to_in_process(tmp_path):
    """Stage 06's per-round backtests, its exploration sweep, the --compare optimizers (the walk-forward's fold
    search as one task), DSR/PBO and the hold-out all run through the cluster's blocks with --cluster local:1:
    every stored figure equals the in-process run's."""
    import sqlite3

    args = ("--rounds", "2", "--compare", "random,tpe,wfo")
    assert _optimize_cli(tmp_path, "inproc", *args) == 0
    assert _optimize_cli(tmp_path, "c1", *args, "--cluster", "local:1") == 0

    def stored(name: str) -> tuple[dict, list]:
        con = sqlite3.connect(tmp_path / f"{name}.sqlite")
        summary = json.loads(con.execute("SELECT summary FROM runs").fetchone()[0])
        rows = con.execute("SELECT round_no, name, params, status, metrics_is, metrics_oos FROM proposals "
                           "ORDER BY rowid").fetchall()
        con.close()
        return summary, rows

    (s_in, p_in), (s_c1, p_c1) = stored("inproc"), stored("c1")
    assert s_c1 == s_in and p_c1 == p_in
    assert [r["optimizer"] for r in s_in["compare"]][1:] == ["random", "tpe", "wfo"]
    assert s_in["configs_tried"] > 2 and len(p_in) > 2


@pytest.mark.slow
def test_optimizer_sweep_with_no_valid_configuration_is_the_same_usage_error_on_a_cluster(aapl):
    """Stage 06's exploration sweep of a grid with no valid configuration: one UsageError, in process and on a
    cluster alike (not a raw error from splitting zero configurations into blocks)."""
    from alphasignal.agents.evaluate import Evaluator

    errors = []
    for cluster in ("", "local:1"):
        with Executor(cluster) as ex:
            ev = Evaluator.from_config(aapl, Config(), ex)
            with pytest.raises(UsageError, match="none of the 1 MA_Crossover configurations is valid") as err:
                ev.sweep({"short_period": [100], "long_period": [50]})
            errors.append(str(err.value))
    assert errors[0] == errors[1]
