"""Shared command-line pieces: --config, --set, -v/--quiet, --show-config, --cache and exit codes."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import sys
import typing
from collections.abc import Callable, Sequence

from ..config import Config, ConfigError, load_config, to_toml

from ..errors import AlphaSignalError, Interrupted

log = logging.getLogger("alphasignal")


class _Parser(argparse.ArgumentParser):
    """argparse with the project's one-line errors: ``error: ...`` on stderr and exit code 2, no usage dump."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def build_parser(doc: str | None) -> argparse.ArgumentParser:
    """An argument parser with the options every script shares; the script's docstring is its help."""
    first, _, rest = (doc or "").strip().partition("\n")
    parser = _Parser(description=first, epilog=rest.strip() or None,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    g = parser.add_argument_group("configuration")
    g.add_argument("--config", metavar="FILE.toml", help="TOML file with [section] tables overriding defaults")
    g.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override one config value (repeatable), e.g. --set dataset.window=60")
    g.add_argument("--show-config", action="store_true", help="print the effective config as TOML and exit")
    v = g.add_mutually_exclusive_group()
    v.add_argument("-v", "--verbose", action="count", default=0, help="more detail on stderr (-vv for debug)")
    v.add_argument("-q", "--quiet", action="store_true", help="only errors on stderr, no progress bars")
    return parser


def add_cache_option(parser: argparse.ArgumentParser) -> None:
    """``--cache use|refresh|off`` for scripts that call models (sets ``pipeline.cache_mode``)."""
    parser.add_argument("--cache", choices=("use", "refresh", "off"),
                        help="model-call cache in pipeline.call_cache: use (answer repeated calls from it, store new "
                        "ones), refresh (always call, overwrite), off (pipeline.cache_mode, default off); it also "
                        "keeps the builtin chart reader's readings and the replay's rendered charts")


def add_strategy_options(group: argparse._ArgumentGroup, section: str, strategies: str) -> None:
    """``--strategy`` and ``--strategy-file`` (``{section}.strategy`` / ``{section}.strategy_file``) for stages 05
    and 06; ``strategies`` names the built-ins in the help."""
    group.add_argument("--strategy", help=f"{strategies}, or the class name of a strategy in --strategy-file")
    group.add_argument("--strategy-file", metavar="FILE.py", help="a Python file with your own strategy class "
                       f"({section}.strategy_file; see the README's \"Write your own strategy\")")


def with_cache_mode(cfg: Config, args: argparse.Namespace) -> Config:
    """``cfg`` with ``--cache`` applied to ``pipeline.cache_mode``."""
    mode = getattr(args, "cache", None)
    return dataclasses.replace(cfg, pipeline=dataclasses.replace(cfg.pipeline, cache_mode=mode)) if mode else cfg


def _usage_line(quiet: bool) -> None:
    """One stderr line on what the model calls of this run cost (only when a model provider was used)."""
    cache = sys.modules.get("alphasignal.providers.cache")
    usage = cache.run_usage() if cache else None
    if usage is not None and not quiet and (usage.calls or usage.cache_hits):
        print(usage.summary(), file=sys.stderr)


def positive_number(text: str) -> float:
    """argparse type: a finite number > 0 (a price, a size)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (math.isfinite(value) and 0 < value < 1e12):
        raise argparse.ArgumentTypeError(f"{text!r} must be a finite number > 0 and < 1e12")
    return value


def count(text: str) -> int:
    """argparse type: an integer >= 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be >= 0")
    return value


def setup_logging(verbose: int = 0, quiet: bool = False) -> None:
    """Log to stderr: warnings by default, info with -v, debug with -vv, errors only with --quiet."""
    level = logging.ERROR if quiet else (logging.WARNING, logging.INFO, logging.DEBUG)[min(verbose, 2)]
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr, force=True)


def run(main: Callable[[argparse.Namespace, Config], int | None], parser: argparse.ArgumentParser,
        argv: Sequence[str] | None = None) -> int:
    """Parse args, build the config, call ``main`` and map errors to exit codes (2 usage, 3 model, 4 data)."""
    args = parser.parse_args(argv)
    setup_logging(args.verbose, args.quiet)
    try:
        cfg = load_config(args.config, args.overrides)
        if args.show_config:
            print(to_toml(cfg))
            return 0
        code = int(main(args, cfg) or 0)
        _usage_line(args.quiet)
        return code
    except Interrupted as exc:
        _usage_line(args.quiet)
        print(f"interrupted: {exc}", file=sys.stderr)
        return exc.exit_code
    except (AlphaSignalError, ConfigError) as exc:
        _usage_line(args.quiet)
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:  # a file the stage could not read or write, outside the checks each stage makes first
        where = f" {exc.filename!r}" if exc.filename else ""
        print(f"error: cannot access{where} ({exc.strerror or exc}): check the path, its permissions and free space",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: completed work is kept; run the same command again to resume", file=sys.stderr)
        return 130


class Stage(typing.Protocol):
    """The one entry shape of a stage: a module with ``add_arguments(parser)`` and ``main(args, cfg)``."""

    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...

    def main(self, args: argparse.Namespace, cfg: Config) -> int | None: ...


def run_stage(stage: Stage, doc: str | None, argv: Sequence[str] | None = None) -> int:
    """What every stage script does: the shared options plus the stage's, then :func:`run` of its ``main``."""
    parser = build_parser(doc)
    stage.add_arguments(parser)
    return run(stage.main, parser, argv)
