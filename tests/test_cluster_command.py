"""README's cluster command, exactly as written, on a machine with as many cores as workers: two worker
processes each compile the kernel with Numba threads launched from an unchanged environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs 2 cores: one per worker of local:2")
def test_readme_cluster_command_local_2_runs_on_two_cores(tmp_path):
    out = tmp_path / "r.csv"
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_NUM_THREADS"}
    env["NUMBA_CACHE_DIR"] = str(tmp_path / "numba")  # a cold cache: each worker compiles
    res = subprocess.run([sys.executable, "05_sweep_backtest.py", "--cluster", "local:2", "--output", str(out)],
                         cwd=ROOT, capture_output=True, text=True, timeout=900, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "NUMBA_NUM_THREADS" not in res.stderr and "Traceback" not in res.stderr
    assert "cluster local:2" in res.stdout
    rows = pd.read_csv(out)
    assert len(rows) > 0 and rows["sharpe"].notna().any()
