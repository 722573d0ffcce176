"""Stage 07: a local, read-only web dashboard (Streamlit) over optimizer runs, sweeps, signals and the dataset.

Serves on dashboard.host:dashboard.port (127.0.0.1:8501 by default: this machine only) and prints the URL.
Pages: Optimizer runs (stage 06 history), Sweeps (stage 05 results), Signals (stage 04 pipeline and replay
results), Dataset (stage 01). File pickers only read under dashboard.results_dir, dataset_dir and models_dir.
examples:
  python 07_dashboard.py
  python 07_dashboard.py --port 8600 --set dashboard.results_dir=/data/alphasignal/results
  python 07_dashboard.py --host 0.0.0.0          # reachable from other machines (no login): on purpose only
"""

import sys

from alphasignal.cli import dashboard as stage
from alphasignal.cli import run_stage

if __name__ == "__main__":
    sys.exit(run_stage(stage, __doc__))
