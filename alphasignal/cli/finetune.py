"""Stage 02 entry: ``add_arguments(parser)`` and ``main(args, cfg)`` (02_finetune_colab.py runs them when the
package is present; uploaded alone to Colab it has its own standalone path)."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace

from ..config import Config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Stage 02 options."""
    parser.add_argument("--backend", choices=["unsloth", "hf"], help="training backend (default: training.backend)")
    parser.add_argument("--dataset", help="training_data.jsonl (default: training.dataset_path)")
    parser.add_argument("--max-steps", type=int, help="optimizer steps (overrides epochs)")
    parser.add_argument("--limit", type=int, default=0, help="use only the first N train samples")
    parser.add_argument("--no-gguf", action="store_true", help="skip the GGUF + Modelfile export")
    parser.add_argument("--export-only", action="store_true",
                        help="no training: convert an existing models/merged_16bit/ to GGUF + Modelfile")


def main(args: argparse.Namespace, cfg: Config) -> int:
    """Fine-tune (or only export) and print the report's summary as JSON."""
    from ..finetune import export_only, finetune

    training = cfg.training
    if args.export_only:
        print(json.dumps(export_only(training, quiet=args.quiet), indent=2))
        return 0
    if args.backend:
        training = replace(training, backend=args.backend)
    if args.max_steps is not None:
        training = replace(training, max_steps=args.max_steps)
    report = finetune(training, dataset=args.dataset, limit=args.limit, export_gguf=not args.no_gguf,
                      quiet=args.quiet)
    print(json.dumps({k: report[k] for k in ("backend", "n_train", "n_val", "eval", "seconds", "files")}, indent=2))
    if not args.no_gguf:
        print(f"next: python 03_serve_ollama.py   (registers {training.ollama_model_name} from "
              f"{report['files'].get('modelfile')})", file=sys.stderr)
    return 0
