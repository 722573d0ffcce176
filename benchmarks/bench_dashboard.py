"""Stage 07 benchmark: server-side render time of each dashboard page on big inputs (goal <= 2 s a page).

Inputs: the real small project the tests build (stages 01, 05, 06 on offline AAPL), plus
1. a sweep of ``--rows`` rows (default 1,000,000: the real sweep's rows repeated with seeded noise on the metrics
   and a config id, written as Parquet and as CSV);
2. a second optimizer run in the same history with ``--proposals`` proposals (default 1,000; the real run's
   summary, synthetic rounds of 5 proposals with seeded metrics).
Each page is run through Streamlit's AppTest: ``cold`` is the first run in a fresh process cache (file read
included), ``warm`` a rerun (what every click costs: cached frames, aggregation and the page itself). The page
reads only the columns it shows; "csv again" is the first run of a new session (Streamlit's caches cleared), which
reads them from the Parquet copy the app keeps in ``dashboard.cache_dir``. Browser drawing is not included.

    python -m benchmarks.bench_dashboard [--rows 1000000] [--proposals 1000]
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st
from streamlit.testing.v1 import AppTest

from alphasignal.dashboard.data import wait_for_cache_writes
from alphasignal.storage.history import History
from alphasignal.storage.records import Proposal, Round
from benchmarks import load_test_helper

ROOT = Path(__file__).resolve().parents[1]
_PROJECT = load_test_helper("fixtures_dashboard")  # the tests' demo project, built as they build it
build_project, dashboard_config = _PROJECT.build_project, _PROJECT.dashboard_config

VIEWS = ROOT / "alphasignal" / "dashboard" / "views"


def big_sweep(src: Path, rows: int, out: Path) -> pd.DataFrame:
    base = pd.read_csv(src)
    rng = np.random.default_rng(0)
    df = base.iloc[np.arange(rows) % len(base)].reset_index(drop=True)
    df.insert(1, "config_id", np.arange(rows) // len(base))
    for col in ("sharpe", "is_sharpe", "oos_sharpe", "total_return", "max_drawdown"):
        df[col] = df[col] + rng.normal(0, 0.05, rows)
    df.to_parquet(out.with_suffix(".parquet"))
    df.to_csv(out.with_suffix(".csv"), index=False)
    return df


def big_run(db: Path, proposals: int) -> str:
    rng = np.random.default_rng(1)
    with History(db) as h:
        first = h.runs()[0]
        rounds = h.rounds(first.run_id)
        run_id = h.create_run(strategy=first.strategy, config_hash=first.config_hash, data_hash=first.data_hash,
                              models=first.models, seed=1, config=first.config)
        r0 = rounds[0]
        h.save_round(run_id, replace(r0, improved=False), [], [])
        state = rounds[-1].state
        for rn in range(1, proposals // 5 + 1):
            props = [Proposal(f"P{rn}-{k}", "ok", raw_params={"short_period": int(rng.integers(2, 60))},
                              params={"short_period": int(rng.integers(2, 60)), "long_period": 100, "use_ema": False},
                              notes=("clipped short_period",), rationale="seeded",
                              metrics_is={"sharpe": float(rng.normal()), "max_drawdown": 0.2, "trades": 10.0},
                              metrics_oos={"sharpe": float(rng.normal()), "max_drawdown": 0.2, "trades": 5.0},
                              label="robust") for k in range(5)]
            h.save_round(run_id, Round(rn, r0.baseline, state), props, [])
        h.finish_run(run_id, "finished", first.summary)
    return run_id


def timed(page: str, cfg, **state) -> tuple[float, float]:
    at = AppTest.from_file(str(VIEWS / f"{page}.py"), default_timeout=600)
    at.session_state["alphasignal_config"] = cfg
    t = time.perf_counter()
    at.run()
    cold = time.perf_counter() - t
    for key, value in state.items():
        at.session_state[key] = value
    at.run()  # apply the widget state once
    t = time.perf_counter()
    at.run()
    warm = time.perf_counter() - t
    assert not at.exception and not at.error, [e.value for e in (*at.exception, *at.error)]
    return cold, warm


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--proposals", type=int, default=1000)
    args = ap.parse_args()
    logging.disable(logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        cfg = build_project(root)
        t = time.perf_counter()
        big_sweep(Path(cfg.sweep.output), args.rows, root / "results" / "big")
        print(f"inputs: {args.rows:,}-row sweep written in {time.perf_counter() - t:.1f} s; ", end="")
        run_id = big_run(Path(cfg.optimizer.history_db), args.proposals)
        print(f"run {run_id} with {args.proposals:,} proposals")
        cases = [("runs", dashboard_config(root), {"runs_id": run_id}),
                 ("sweeps (parquet)", dashboard_config(root, f"dashboard.sweep={root / 'results' / 'big.parquet'}"),
                  {}),
                 ("sweeps (csv)", dashboard_config(root, f"dashboard.sweep={root / 'results' / 'big.csv'}"), {}),
                 ("sweeps (csv again)", dashboard_config(root, f"dashboard.sweep={root / 'results' / 'big.csv'}"),
                  {}),
                 ("signals", dashboard_config(root), {}), ("dataset", dashboard_config(root), {})]
        timed("dataset", dashboard_config(root))  # imports (streamlit, altair, the pipeline) out of the figures
        print(f"{'page':18} {'cold s':>8} {'warm s':>8}")
        for name, c, state in cases:
            if "again" in name:  # a new session: Streamlit's in-memory caches are gone, the app's disk cache stays
                wait_for_cache_writes()  # the first open's Parquet copy, written in the background
                st.cache_data.clear()
                st.cache_resource.clear()
            cold, warm = timed(name.split()[0], c, **state)
            print(f"{name:18} {cold:8.2f} {warm:8.2f}")


if __name__ == "__main__":
    main()
