"""Runs backtest cases through the GPU engine (``engine.simulate`` with the cupy backend) and through the Numba CPU
engine in one process, for tests/test_gpu_kernel.py: under numba-cuda's simulator when started with
``NUMBA_ENABLE_CUDASIM=1`` (which must be set before Numba is imported, hence a process of its own; the simulator
changes nothing on the CPU engine), else on the real GPU.

usage: python tests/gpu_kernel_worker.py CASES.pkl RESULTS.pkl
"""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

import pandas as pd


def run_case(case: dict, backend_engine: str) -> tuple:
    """(accumulators, block sums, returns) of one case on one engine."""
    from alphasignal.backtest import get_strategy
    from alphasignal.backtest.engine import prepare_prices, simulate
    from alphasignal.backtest.strategies import as_config_frame
    from alphasignal.backtest.user_strategy import from_source
    from alphasignal.backtest.xp import Backend
    from alphasignal.config import SweepConfig

    if case["strategy_file"]:
        path = case["strategy_file"]
        strat = from_source(path, Path(path).read_text(), case["strategy"], check=False)
        configs = pd.DataFrame(case["configs"])
    else:
        strat = get_strategy(case["strategy"])
        configs = as_config_frame(case["strategy"], case["configs"])
    prices = prepare_prices(case["frame"], "AAPL", strat.needs)
    opts = SweepConfig(periods_per_year=252.0, risk_free=0.02, **case["opts"])
    backend = Backend(backend_engine, "gpu" if backend_engine == "cupy" else "cpu")
    return simulate(prices, strat, configs, opts, backend, lo=case["lo"], n_blocks=case["n_blocks"],
                    want_rets=case["want_rets"], stops=case["stops"])


def main(cases_path: str, results_path: str) -> None:
    from alphasignal.backtest.xp import gpu_status

    ok, why = gpu_status()
    if not ok:
        raise SystemExit(f"error: no GPU engine here: {why}")
    with open(cases_path, "rb") as fh:
        cases = pickle.load(fh)
    results = {name: {engine: run_case(case, engine) for engine in ("cupy", "numba")} for name, case in cases.items()}
    with open(results_path, "wb") as fh:
        pickle.dump({"engine": why, "results": results}, fh)


if __name__ == "__main__":
    main(*sys.argv[1:])
