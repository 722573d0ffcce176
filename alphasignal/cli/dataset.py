"""Stage 01: generate the chart dataset (candlestick PNGs + chat-format JSONL) for fine-tuning.

Examples:
  python 01_generate_dataset.py --limit 200                  # quick run on offline AAPL data
  python 01_generate_dataset.py --tickers AAPL,GOOG --set dataset.source=offline
  python 01_generate_dataset.py --csv prices.csv --output-dir my_dataset
Re-running the same command resumes an interrupted run; the same config gives byte-identical JSONL.
"""

# Stage 01 entry: ``add_arguments(parser)`` and ``main(args, cfg)`` (``01_generate_dataset.py``, ``alphasignal
# dataset``). Its flags are shortcuts for ``dataset.*`` values (the table in :mod:`.flags`).

from __future__ import annotations

import argparse
import json

from ..config import Config
from .flags import add_flags


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Stage 01 options: --csv/--parquet, --tickers, --limit, --output-dir, --workers and --overwrite."""
    g = parser.add_argument_group("stage 01")
    add_flags(parser, "dataset", container=g)
    g.add_argument("--overwrite", action="store_true",
                   help="replace a dataset built from another config in the output dir")


def main(args: argparse.Namespace, cfg: Config) -> int:
    """Build the dataset and print its summary as JSON."""
    from ..dataset.build import build_dataset

    summary = build_dataset(cfg.dataset, quiet=args.quiet, overwrite=args.overwrite)
    print(json.dumps(summary, indent=2))
    return 0
