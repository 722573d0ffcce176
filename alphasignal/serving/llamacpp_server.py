"""``--provider llamacpp``: start an OpenAI-compatible llama.cpp server for a GGUF (+ mmproj), record it, stop it.

Uses ``llama-server`` when it is on PATH (the C++ server), else ``python -m llama_cpp.server``. The server runs
detached; a JSON PID file (pid, command, URL, log) lets ``--stop`` end exactly the process this stage started.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

from ..errors import ModelError
from ..fileio import write_atomic


@dataclass(frozen=True)
class ServerRecord:
    """What the PID file holds."""

    pid: int
    url: str
    model: str
    command: list[str]
    log: str


def port_free(host: str, port: int) -> bool:
    """True when ``host:port`` can be bound right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def build_command(gguf: Path, mmproj: Path | None, alias: str, host: str, port: int, n_ctx: int) -> list[str]:
    """The server command line: llama-server if installed, else llama-cpp-python's server."""
    if exe := shutil.which("llama-server"):
        cmd = [exe, "-m", str(gguf), "--host", host, "--port", str(port), "-a", alias, "-c", str(n_ctx)]
        return cmd + (["--mmproj", str(mmproj)] if mmproj else [])
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--model_alias", alias,
           "--host", host, "--port", str(port), "--n_ctx", str(n_ctx)]
    return cmd + (["--clip_model_path", str(mmproj), "--chat_format", "qwen2.5-vl"] if mmproj else [])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child is dead for our purposes
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except (OSError, IndexError):
        return True


def read_record(pid_file: Path) -> ServerRecord | None:
    """The recorded server, or None (no file, unreadable file, or its process is gone)."""
    try:
        rec = ServerRecord(**json.loads(pid_file.read_text()))
    except (OSError, ValueError, TypeError):
        return None
    return rec if _alive(rec.pid) else None


def wait_healthy(url: str, proc: subprocess.Popen, timeout: float, log_path: Path) -> float:
    """Poll ``/v1/models`` until it answers; seconds waited. ModelError if the process dies or time runs out."""
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        if proc.poll() is not None:
            lines = [ln for ln in log_path.read_text(errors="replace").splitlines() if ln.strip()]
            raise ModelError(f"the llama.cpp server exited with code {proc.returncode} "
                             f"({lines[-1] if lines else 'no output'}): see {log_path}")
        try:
            if httpx.get(f"{url}/models", timeout=1.0).status_code == 200:
                return time.perf_counter() - start
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    stop_process(proc.pid)
    raise ModelError(f"the llama.cpp server did not answer within {timeout:.0f} s: see {log_path}, or raise "
                     "serve.startup_timeout")


def start_server(gguf: Path, mmproj: Path | None, alias: str, host: str, port: int, n_ctx: int,
                 pid_file: Path, timeout: float) -> tuple[ServerRecord, float]:
    """Start the server detached, wait until healthy, write the PID file; returns (record, startup seconds)."""
    if not port_free(host, port):
        raise ModelError(f"port {port} on {host} is in use: stop what listens there, or pass --set serve.port=N")
    cmd = build_command(gguf, mmproj, alias, host, port, n_ctx)
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    log_path = pid_file.with_suffix(".log")
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    url = f"http://{host}:{port}/v1"
    waited = wait_healthy(url, proc, timeout, log_path)
    record = ServerRecord(proc.pid, url, alias, cmd, str(log_path))
    write_atomic(pid_file, json.dumps(asdict(record), indent=2))
    return record, waited


def stop_process(pid: int, grace: float = 10.0) -> None:
    """SIGTERM the process group, then SIGKILL after ``grace`` seconds."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except (ProcessLookupError, PermissionError):  # gone, or not a group we started
            return
        deadline = time.perf_counter() + grace
        while time.perf_counter() < deadline:
            with contextlib.suppress(ChildProcessError):  # reap it when it is our child
                os.waitpid(pid, os.WNOHANG)
            if not _alive(pid):
                return
            time.sleep(0.1)


def stop_server(pid_file: Path) -> ServerRecord | None:
    """Stop the server recorded in ``pid_file`` and remove the file; None when nothing was running."""
    record = read_record(pid_file)
    if record is not None:
        stop_process(record.pid)
    pid_file.unlink(missing_ok=True)
    return record
