"""Stage 03: set up and health-check local model serving (Ollama, llama.cpp server, OpenAI-compatible / vLLM).

    python 03_serve_ollama.py                        # Ollama: check, pull missing models, register the fine-tuned
                                                     # GGUF from models/gguf/Modelfile, warm up, health table
    python 03_serve_ollama.py --check                # report only, change nothing
    python 03_serve_ollama.py --provider llamacpp    # start a llama.cpp server for models/gguf/*.gguf (+ mmproj)
    python 03_serve_ollama.py --provider llamacpp --stop
    python 03_serve_ollama.py --provider vllm        # print the `vllm serve` command, check the endpoint

Each run ends with the stage 04 flags that use what it set up. Exit 3 with a one-line fix when a server is not
running, a port is taken, a GGUF is missing or a server lacks the model.
"""

# Stage 03 entry: ``add_arguments(parser)`` and ``main(args, cfg)`` (``03_serve_ollama.py``, ``alphasignal serve``);
# prints what :func:`alphasignal.serving.serve` reports. The serving code (httpx, the Ollama client) is imported when
# ``main`` runs, so ``--help`` stays instant.

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from ..config import Config
from .flags import add_flags

if TYPE_CHECKING:
    from ..serving.health import HealthRow


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Stage 03 options."""
    add_flags(parser, "serve")
    parser.add_argument("--check", action="store_true", help="only report: pull, create and start nothing")
    parser.add_argument("--stop", action="store_true", help="llamacpp: stop the server this stage started")
    parser.add_argument("--recreate", action="store_true", help="ollama: re-register the fine-tuned model")


def main(args: argparse.Namespace, cfg: Config) -> int:
    """Check, pull, register or start the configured model server, then print its health table."""
    from ..serving import ServeOptions, serve, vllm_command

    if cfg.serve.provider == "vllm" and not args.stop:  # the command is a result: shown before the check can fail
        print(f"vLLM command for the fine-tuned model:\n  {vllm_command(cfg)}", flush=True)
    report = serve(cfg, ServeOptions(check_only=args.check, stop=args.stop, recreate=args.recreate, quiet=args.quiet))
    for line in report.before:
        print(line)
    if report.title:
        print_health(report.rows, report.title)
    for line in report.after:
        print(line)
    return 0


def _fmt(value: float | None, spec: str, unit: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{unit}"


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def print_health(rows: list[HealthRow], title: str) -> None:
    """Print the health table to stdout (it is the stage's result)."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for col in ("model", "size", "load", "tokens/s", "JSON", "vision", "status"):
        table.add_column(col, justify="left" if col in ("model", "status") else "right")
    yes_no = {True: "yes", False: "no", None: "?"}
    for r in rows:
        table.add_row(r.model, _size(r.size_bytes), _fmt(r.load_s, ".2f", " s"), _fmt(r.tokens_per_s, ".1f"),
                      yes_no[r.json_ok], yes_no[r.vision], r.status)
    Console(width=120).print(table)
