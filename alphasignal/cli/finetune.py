"""Stage 02: QLoRA fine-tune of the chart VLM (Qwen2.5-VL-3B-Instruct) on the stage 01 dataset.

Colab (T4 GPU), with or without the repo: upload this file and the dataset folder (training_data.jsonl + images/),
    !pip install unsloth
    !python 02_finetune_colab.py --dataset dataset/training_data.jsonl
then download models/gguf/ (GGUF + vision projector + Modelfile) and run `python 03_serve_ollama.py` locally
(or download models/merged_16bit/ and run `python 02_finetune_colab.py --export-only` in the repo).

In the repo, CPU (transformers + peft; pip install -r requirements-finetune.txt):
    python 02_finetune_colab.py --backend hf --set training.base_model=tiny-random --max-steps 5   # plumbing check
    python 02_finetune_colab.py --backend hf --set training.base_model=/path/to/Qwen2.5-VL-3B-Instruct

Writes under training.output_dir (default models/): lora_adapter/, merged_16bit/, gguf/ (NAME-q4_k_m.gguf,
mmproj-NAME-f16.gguf, Modelfile) and finetune_report.json. Without the repo only the unsloth backend exists and
the defaults below (_STANDALONE_DEFAULTS) stand in for config.py.
"""

# Stage 02 entry: ``add_arguments(parser)`` and ``main(args, cfg)`` (``02_finetune_colab.py`` when the package is
# present, ``alphasignal finetune``; uploaded alone to Colab the script has its own standalone path with the same
# flags).

from __future__ import annotations

import argparse
import json
import sys

from ..config import Config
from .flags import add_flags


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Stage 02 options (--backend, --dataset, --max-steps are shortcuts for ``training.*`` values)."""
    add_flags(parser, "finetune")
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
    report = finetune(training, limit=args.limit, export_gguf=not args.no_gguf, quiet=args.quiet, ladder=cfg,
                      market=cfg.dataset)  # the CNN reads the bars stage 01 used: the same [dataset] settings
    print(json.dumps({k: report[k] for k in ("backend", "n_train", "n_val", "eval", "seconds", "files")}, indent=2))
    if report.get("ladder_table"):  # the fine-tuned model (vlm) beside training.ladder's rungs, on the test split
        print(report["ladder_table"] + "\n" + "\n".join(f"saved {f}" for f in report["ladder_files"]))
    if training.backend == "cnn":
        print(f"next: python 04_signal_pipeline.py --eval --set pipeline.vlm_provider=cnn --set pipeline.vlm_model="
              f"{training.cnn_output_dir}", file=sys.stderr)
    elif not args.no_gguf:
        print(f"next: python 03_serve_ollama.py   (registers {training.ollama_model_name} from "
              f"{report['files'].get('modelfile')})", file=sys.stderr)
    return 0
