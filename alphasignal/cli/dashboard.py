"""Stage 07: a local, read-only web dashboard (Streamlit) over optimizer runs, sweeps, signals and the dataset.

Serves on dashboard.host:dashboard.port (127.0.0.1:8501 by default: this machine only) and prints the URL.
Pages: Optimizer runs (stage 06 history), Sweeps (stage 05 results), Signals (stage 04 pipeline and replay
results), Dataset (stage 01). File pickers only read under dashboard.results_dir, dataset_dir and models_dir.
examples:
  python 07_dashboard.py
  python 07_dashboard.py --port 8600 --set dashboard.results_dir=/data/alphasignal/results
  python 07_dashboard.py --host 0.0.0.0          # reachable from other machines (no login): on purpose only
"""

# Stage 07 entry (``07_dashboard.py``, ``alphasignal dashboard``): check the address, then run ``streamlit run`` on
# the app.

from __future__ import annotations

import argparse
import errno
import os
import socket
import sys
from collections.abc import Sequence
from pathlib import Path

from ..config import Config
from ..errors import UsageError
from .flags import add_flags

APP = Path(__file__).parents[1] / "dashboard" / "app.py"
ROOT = APP.parents[2]  # the folder holding the package: the app imports it from there without an install


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Stage 07 options (shortcuts for ``dashboard.*`` config values)."""
    add_flags(parser, "dashboard", container=parser.add_argument_group("dashboard"))


def check_address(host: str, port: int) -> None:
    """Refuse, before starting, an address this process cannot listen on (in use, or not an interface here)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise UsageError(f"port {port} on {host} is in use: stop what uses it or pass --port "
                                 f"{port + 1}") from None
            raise UsageError(f"cannot listen on {host}:{port} ({exc.strerror or exc}): use --host 127.0.0.1 "
                             "or an address of this machine") from None


def streamlit_command(host: str, port: int, config_args: Sequence[str] = ()) -> list[str]:
    """The ``streamlit run`` command line: headless, no usage statistics, no file watcher, no error details."""
    return [sys.executable, "-m", "streamlit", "run", str(APP), f"--server.address={host}", f"--server.port={port}",
            "--server.headless=true", "--browser.gatherUsageStats=false", "--server.fileWatcherType=none",
            "--global.developmentMode=false", "--client.showErrorDetails=none", "--client.toolbarMode=minimal",
            "--server.maxUploadSize=20", "--", *config_args]


def main(args: argparse.Namespace, cfg: Config) -> int:
    """Check the address, print the URL and replace this process with the Streamlit server (Ctrl-C stops it)."""
    host, port = cfg.dashboard.host, cfg.dashboard.port  # --host/--port are among args.overrides already
    check_address(host, port)
    config_args = ([f"--config={args.config}"] if args.config else []) + [f"--set={o}" for o in args.overrides]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    shown = f"[{host}]" if ":" in host else host
    print(f"alphasignal dashboard: http://{shown}:{port}  (Ctrl-C stops it)", flush=True)
    if host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: listening on {host}: other machines can reach it; it has no login", file=sys.stderr)
    cmd = streamlit_command(host, port, config_args)
    os.execve(cmd[0], cmd, env)  # this process becomes the server: signals (Ctrl-C, SIGTERM) reach it directly
    return 0  # pragma: no cover - execve does not return
