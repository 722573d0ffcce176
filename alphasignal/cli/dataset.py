"""Stage 01 entry: ``add_arguments(parser)`` and ``main(args, cfg)`` (01_generate_dataset.py only wires them up).

Each flag is a shortcut that appends a ``--set`` override, so --show-config sees it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..config import Config


class _Override(argparse.Action):
    def __init__(self, *args, template: tuple[str, ...] = (), **kwargs):
        self.template = template
        super().__init__(*args, **kwargs)

    def __call__(self, parser, namespace, value, option_string=None):
        sets = [t.format(value=value, stem=Path(str(value)).stem.upper()) for t in self.template]
        if option_string == "--tickers":
            namespace.tickers_given = True
        elif option_string in ("--csv", "--parquet") and getattr(namespace, "tickers_given", False):
            sets = [s for s in sets if not s.startswith("dataset.tickers=")]
        namespace.overrides = [*getattr(namespace, "overrides", []), *sets]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Stage 01 options: --csv/--parquet, --tickers, --limit, --output-dir, --workers (shortcuts for --set
    dataset.*) and --overwrite."""
    g = parser.add_argument_group("stage 01")
    file_sets = ("dataset.source=csv", "dataset.csv_path={value}", "dataset.tickers={stem}")
    for flag in ("--csv", "--parquet"):
        g.add_argument(flag, metavar="PATH", action=_Override, template=file_sets,
                       help="OHLCV file (Date, Open, High, Low, Close[, Volume]); the ticker is the file name "
                            "unless --tickers is given")
    g.add_argument("--tickers", metavar="A,B", action=_Override, template=("dataset.tickers={value}",),
                   help="comma-separated tickers (offline: AAPL, GOOG)")
    g.add_argument("--limit", metavar="N", action=_Override, template=("dataset.limit={value}",),
                   help="keep only the most recent N windows (quick runs; 0 = all). Windows whose labels reach into "
                        "the next split are then dropped, so a few fewer than N can remain")
    g.add_argument("--output-dir", metavar="DIR", action=_Override, template=("dataset.output_dir={value}",),
                   help="where to write training_data.jsonl, images/, dataset_card.md (default: dataset)")
    g.add_argument("--workers", metavar="N", action=_Override, template=("dataset.workers={value}",),
                   help="rendering processes (0 = all cores)")
    g.add_argument("--overwrite", action="store_true",
                   help="replace a dataset built from another config in the output dir")


def main(args: argparse.Namespace, cfg: Config) -> int:
    """Build the dataset and print its summary as JSON."""
    from ..dataset.build import build_dataset

    summary = build_dataset(cfg.dataset, quiet=args.quiet, overwrite=args.overwrite)
    print(json.dumps(summary, indent=2))
    return 0
