"""Stage 07 fixtures: a project folder with real outputs of stages 01, 04 (replay), 05 and 06 (offline AAPL,
small settings), built once per session, and the config that points the dashboard at it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from alphasignal.config import Config, load_config

GRID = "{short_period=[5, 10, 20], long_period=[50, 100], use_ema=[false, true]}"


def dashboard_config(root: Path, *extra: str) -> Config:
    """Config of a dashboard over ``root``'s results/dataset/models folders (offline AAPL 2015-2020)."""
    return load_config(None, [
        "dataset.tickers=AAPL", "dataset.source=offline", "dataset.start=2015-01-01", "dataset.end=2020-12-31",
        f"sweep.grid={GRID}", f"sweep.output={root / 'results' / 'sweep_results.csv'}", "sweep.pbo_splits=4",
        "pipeline.provider=builtin",  # not auto: its fallback warning is said once per process; others expect it
        "optimizer.provider=builtin", "optimizer.rounds=2", "optimizer.min_trades=3", "optimizer.compare=random",
        f"optimizer.history_db={root / 'results' / 'history.sqlite'}",
        f"dashboard.results_dir={root / 'results'}", f"dashboard.dataset_dir={root / 'dataset'}",
        f"dashboard.models_dir={root / 'models'}", f"dashboard.cache_dir={root / 'cache'}", *extra])


def build_project(root: Path) -> Config:
    """Run stages 06 (optimizer + hold-out), 05 (sweep), 04 (replay, builtin) and 01 (dataset) into ``root``;
    returns the config."""
    from alphasignal.agents.evaluate import Evaluator
    from alphasignal.agents.honesty import finalise
    from alphasignal.agents.loop import optimize
    from alphasignal.backtest.run import sweep_stage
    from alphasignal.dataset import build_dataset
    from alphasignal.market import load_from_config
    from alphasignal.replay.run import replay_to_files
    from alphasignal.storage.history import History

    for sub in ("results", "dataset", "models"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    cfg = dashboard_config(root)
    data = load_from_config(cfg.dataset)
    with History(cfg.optimizer.history_db) as h:
        run_id = optimize(data, cfg, h, progress=False)
        h.finish_run(run_id, "finished", finalise(Evaluator.from_config(data, cfg), h, run_id, cfg.optimizer))
    sweep_stage(cfg, progress=False)  # library calls: they return results and print nothing
    rc = dataclasses.replace(cfg.replay, tickers=("AAPL",), start="2020-07-01", end="2020-12-31", workers=1,
                             random_runs=5, output_dir=str(root / "results" / "replay"))
    replay_to_files(cfg, dataclasses.replace(cfg.pipeline, provider="builtin"), rc, quiet=True)
    build_dataset(dataclasses.replace(  # as fixtures_dataset's small config (benchmarks load this file alone)
        cfg.dataset, tickers=("AAPL",), source="offline", start="2015-01-01", end="2016-12-31", window=30, stride=10,
        horizon=5, image_size=128, workers=1, output_dir=str(root / "dataset")), quiet=True)
    return cfg


@pytest.fixture(scope="session")
def dashboard_project(tmp_path_factory) -> tuple[Path, Config]:
    """(project folder, config) with real stage 01/05/06 outputs; read-only for the tests that use it."""
    root = tmp_path_factory.mktemp("dash_project")
    return root, build_project(root)
