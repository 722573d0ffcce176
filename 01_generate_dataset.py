"""Stage 01: generate the chart dataset (candlestick PNGs + chat-format JSONL) for fine-tuning.

Examples:
  python 01_generate_dataset.py --limit 200                  # quick run on offline AAPL data
  python 01_generate_dataset.py --tickers AAPL,GOOG --set dataset.source=offline
  python 01_generate_dataset.py --csv prices.csv --output-dir my_dataset
Re-running the same command resumes an interrupted run; the same config gives byte-identical JSONL.
"""

import sys

from alphasignal.cli import dataset as stage
from alphasignal.cli import run_stage

if __name__ == "__main__":
    sys.exit(run_stage(stage, __doc__))
