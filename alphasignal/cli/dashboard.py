"""Stage 07 entry point behind ``07_dashboard.py``: check the address, then run ``streamlit run`` on the app."""

from __future__ import annotations

import argparse
import errno
import os
import socket
import sys
from collections.abc import Sequence
from pathlib import Path

from ..errors import UsageError

APP = Path(__file__).parents[1] / "dashboard" / "app.py"
ROOT = APP.parents[2]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Stage 07 options (shortcuts for ``dashboard.*`` config values)."""
    g = parser.add_argument_group("dashboard")
    g.add_argument("--host", help="interface to listen on (default dashboard.host = 127.0.0.1: this machine only); "
                                  "0.0.0.0 exposes the dashboard to the network")
    g.add_argument("--port", type=int, help="port (dashboard.port)")


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


def main(args: argparse.Namespace, cfg: object) -> int:
    """Check the address, print the URL and replace this process with the Streamlit server (Ctrl-C stops it)."""
    dc = cfg.dashboard  # type: ignore[attr-defined]
    host = args.host or dc.host
    port = args.port if args.port is not None else dc.port
    if not 0 < port < 65536:
        raise UsageError(f"--port {port} is invalid: use 1..65535")
    check_address(host, port)
    config_args = ([f"--config={args.config}"] if args.config else []) + [
        f"--set={o}" for o in [*args.overrides, f"dashboard.host={host}", f"dashboard.port={port}"]]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    shown = f"[{host}]" if ":" in host else host
    print(f"alphasignal dashboard: http://{shown}:{port}  (Ctrl-C stops it)", flush=True)
    if host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: listening on {host}: other machines can reach it; it has no login", file=sys.stderr)
    cmd = streamlit_command(host, port, config_args)
    os.execve(cmd[0], cmd, env)  # this process becomes the server: signals (Ctrl-C, SIGTERM) reach it directly
    return 0  # pragma: no cover - execve does not return
