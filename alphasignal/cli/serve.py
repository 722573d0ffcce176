"""Stage 03 entry: ``add_arguments(parser)`` and ``main(args, cfg)`` (03_serve_ollama.py only wires them up).

The serving code (httpx, the Ollama client) is imported when ``main`` runs, so ``--help`` stays instant.
"""

from __future__ import annotations

import argparse
from dataclasses import replace

from ..config import Config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Stage 03 options."""
    parser.add_argument("--provider", choices=["ollama", "llamacpp", "openai", "vllm"],
                        help="serving backend (default: serve.provider)")
    parser.add_argument("--check", action="store_true", help="only report: pull, create and start nothing")
    parser.add_argument("--stop", action="store_true", help="llamacpp: stop the server this stage started")
    parser.add_argument("--recreate", action="store_true", help="ollama: re-register the fine-tuned model")


def main(args: argparse.Namespace, cfg: Config) -> int:
    """Check, pull, register or start the configured model server."""
    from ..serving import ServeOptions, serve

    if args.provider:
        cfg = replace(cfg, serve=replace(cfg.serve, provider=args.provider))
    serve(cfg, ServeOptions(check_only=args.check, stop=args.stop, recreate=args.recreate, quiet=args.quiet))
    return 0
