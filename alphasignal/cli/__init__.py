"""The command-line layer: every stage's flags, the one flag -> config table, and all printing.

One module per stage (``dataset``, ``finetune``, ``serve``, ``signals``, ``sweep``, ``optimize``, ``dashboard``),
each with ``add_arguments(parser)`` and ``main(args, cfg)`` and the stage's usage as its docstring; :mod:`.common`
holds the shared options, ``run`` and the exit codes; :mod:`.flags` the flag table. The root ``0N_*.py`` scripts,
``python -m alphasignal <stage>`` and the ``alphasignal <stage>`` console script (:func:`main`) all build the same
parser (:func:`parser_for`). Nothing below this package imports it.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import sys
from collections.abc import Sequence
from pathlib import Path

from ..configio import suggest
from .common import Stage, build_parser, run, run_stage, setup_logging, stage_parser
from .flags import FLAGS, Flag, add_flags, count, flag_overrides, positive_number

# stage name -> (number, root script); the numbers are aliases of the names
STAGES: dict[str, tuple[str, str]] = {
    "dataset": ("01", "01_generate_dataset.py"), "finetune": ("02", "02_finetune_colab.py"),
    "serve": ("03", "03_serve_ollama.py"), "signals": ("04", "04_signal_pipeline.py"),
    "sweep": ("05", "05_sweep_backtest.py"), "optimize": ("06", "06_multi_llm_optimize.py"),
    "dashboard": ("07", "07_dashboard.py")}
_BY_NUMBER = {number: name for name, (number, _) in STAGES.items()}


def stage_name(name: str) -> str:
    """The stage's name for a name or a number (``05`` or ``5`` -> ``sweep``); KeyError when it is neither."""
    key = _BY_NUMBER.get(name.zfill(2), name) if name.isdigit() else name
    if key not in STAGES:
        raise KeyError(name)
    return key


def stage_module(name: str) -> Stage:
    """The cli module of a stage, by name or number."""
    return importlib.import_module(f"{__name__}.{stage_name(name)}")  # type: ignore[return-value]


def parser_for(name: str) -> argparse.ArgumentParser:
    """The parser of ``alphasignal <name>``: the stage module's, with its usage as the help."""
    stage = stage_module(name)
    return stage_parser(stage, stage.__doc__, prog=f"alphasignal {stage_name(name)}")


def _listing() -> str:
    def first_line(name: str, number: str) -> str:  # read, not imported: a stage module's imports can be slow
        doc = ast.get_docstring(ast.parse(Path(__file__).with_name(f"{name}.py").read_text(encoding="utf-8")))
        return (doc or "").split("\n")[0].removeprefix(f"Stage {number}: ")

    rows = "\n".join(f"  {name:<10} {number}  {first_line(name, number)}" for name, (number, _) in STAGES.items())
    return (f"usage: alphasignal <stage> [options]   (alphasignal <stage> --help for its options)\n\nstages "
            f"(name or number; each one also runs as python 0N_*.py):\n{rows}\n")


def main(argv: Sequence[str] | None = None) -> int:
    """``alphasignal <stage> ...`` and ``python -m alphasignal <stage> ...``: the stage's own flags and exit codes."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(_listing(), end="", file=sys.stdout if args else sys.stderr)
        return 0 if args else 2
    try:
        name = stage_name(args[0])
    except KeyError:
        print(f"error: unknown stage {args[0]!r}{suggest(args[0], STAGES)} (stages: {', '.join(STAGES)} or "
              "01..07)", file=sys.stderr)
        return 2
    return run(stage_module(name).main, parser_for(name), args[1:])


__all__ = ["FLAGS", "STAGES", "Flag", "Stage", "add_flags", "build_parser", "count", "flag_overrides", "main",
           "parser_for", "positive_number", "run", "run_stage", "setup_logging", "stage_module", "stage_name",
           "stage_parser"]
