"""Shared command-line pieces: --config, --set, -v/--quiet, --show-config, the run and its exit codes."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import typing
from collections.abc import Callable, Sequence

from ..config import Config, ConfigError, load_config, to_toml
from ..errors import AlphaSignalError, Interrupted
from .flags import flag_overrides

log = logging.getLogger("alphasignal")


class _Parser(argparse.ArgumentParser):
    """argparse with the project's one-line errors: ``error: ...`` on stderr and exit code 2, no usage dump."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def build_parser(doc: str | None, prog: str | None = None) -> argparse.ArgumentParser:
    """An argument parser with the options every script shares; the script's docstring is its help."""
    first, _, rest = (doc or "").strip().partition("\n")
    parser = _Parser(prog=prog, description=first, epilog=rest.strip() or None,
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


def _usage_line(quiet: bool) -> None:
    """One stderr line on what the model calls of this run cost (only when a model provider was used)."""
    cache = sys.modules.get("alphasignal.providers.cache")
    usage = cache.run_usage() if cache else None
    if usage is not None and not quiet and (usage.calls or usage.cache_hits):
        print(usage.summary(), file=sys.stderr)


def setup_logging(verbose: int = 0, quiet: bool = False) -> None:
    """Log to stderr: warnings by default, info with -v, debug with -vv, errors only with --quiet."""
    level = logging.ERROR if quiet else (logging.WARNING, logging.INFO, logging.DEBUG)[min(verbose, 2)]
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr, force=True)


def _terminated(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # the same orderly stop as Ctrl-C: completed work kept, runs marked interrupted


def _sigterm_as_ctrl_c() -> None:
    """SIGTERM (``kill``, a service manager, a container stop) stops a stage as Ctrl-C does, not mid-write."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminated)


def run(main: Callable[[argparse.Namespace, Config], int | None], parser: argparse.ArgumentParser,
        argv: Sequence[str] | None = None) -> int:
    """Parse args, build the config, call ``main`` and map errors to exit codes (2 usage, 3 model, 4 data)."""
    args = parser.parse_args(argv)
    setup_logging(args.verbose, args.quiet)
    _sigterm_as_ctrl_c()
    try:  # the stage's table flags become --set overrides after the user's own: one load, validated once
        args.overrides = [*args.overrides, *flag_overrides(getattr(args, "config_flags", ()), args)]
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


def stage_parser(stage: Stage, doc: str | None, prog: str | None = None) -> argparse.ArgumentParser:
    """The shared options plus the stage's (the one parser of a stage, however it is started)."""
    parser = build_parser(doc, prog)
    stage.add_arguments(parser)
    return parser


def run_stage(stage: Stage, doc: str | None, argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """What every stage script does: :func:`stage_parser`, then :func:`run` of the stage's ``main``."""
    return run(stage.main, stage_parser(stage, doc, prog), argv)
