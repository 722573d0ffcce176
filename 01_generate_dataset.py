"""Stage 01: generate the chart dataset (candlestick PNGs + chat-format JSONL) for fine-tuning.

Examples:
  python 01_generate_dataset.py --limit 200                  # quick run on offline AAPL data
  python 01_generate_dataset.py --tickers AAPL,GOOG --set dataset.source=offline
  python 01_generate_dataset.py --csv prices.csv --output-dir my_dataset
Re-running the same command resumes an interrupted run; the same config gives byte-identical JSONL.
"""

import json
import sys

from alphasignal.cli import build_parser, run
from alphasignal.dataset import build_dataset
from alphasignal.dataset.cli import add_dataset_flags


def _main(args, cfg) -> int:
    summary = build_dataset(cfg.dataset, quiet=args.quiet, overwrite=args.overwrite)
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    parser = build_parser(__doc__)
    add_dataset_flags(parser)
    sys.exit(run(_main, parser))
