"""HF checkpoint -> GGUF (+ vision projector) with llama.cpp's own converter, then quantization.

The converter (``convert_hf_to_gguf.py`` with its ``conversion/`` and ``gguf-py/`` siblings) is not on PyPI as a
package; it ships inside the llama-cpp-python source distribution. We fetch that sdist once with pip (same version
as the installed llama-cpp-python, so the runtime can read what the converter writes) and keep only those files
under ``~/.cache/alphasignal/``. Quantization below 8 bits uses llama.cpp's C API through llama-cpp-python.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.metadata
import io
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..errors import ModelError, UsageError
from ..fileio import move_atomic

log = logging.getLogger(__name__)

CONVERTER_ENV = "ALPHASIGNAL_LLAMA_CPP_DIR"  # a llama.cpp checkout (or extracted sdist) holding the converter
_CONVERTER_OUTTYPES = {"f32", "f16", "bf16", "q8_0"}  # written directly by the converter
_KEEP = ("convert_hf_to_gguf.py", "conversion/", "gguf-py/")


@dataclass(frozen=True)
class GgufFiles:
    """The two files llama.cpp/Ollama need for a vision model."""

    model: Path
    mmproj: Path | None


def quantization_names() -> list[str]:
    """Quantization types accepted for ``training.gguf_quantization``."""
    names = set(_CONVERTER_OUTTYPES)
    try:
        import llama_cpp
    except ImportError:
        return sorted(names)
    prefix = "LLAMA_FTYPE_MOSTLY_"
    names |= {n.removeprefix(prefix).lower() for n in dir(llama_cpp) if n.startswith(prefix)}
    return sorted(names)


def _cache_root() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "alphasignal"


def find_converter(fetch: bool = True) -> Path:
    """Path of ``convert_hf_to_gguf.py``: $ALPHASIGNAL_LLAMA_CPP_DIR, the cache, or fetched from the PyPI sdist."""
    if env := os.environ.get(CONVERTER_ENV):
        script = Path(env).expanduser() / "convert_hf_to_gguf.py"
        if not script.is_file():
            raise UsageError(f"{CONVERTER_ENV}={env} has no convert_hf_to_gguf.py: point it at a llama.cpp checkout")
        return script
    try:
        version = importlib.metadata.version("llama-cpp-python")
    except importlib.metadata.PackageNotFoundError:
        version = ""
    target = _cache_root() / f"llama.cpp-{version or 'latest'}"
    script = target / "convert_hf_to_gguf.py"
    if script.is_file():
        return script
    if not fetch:
        raise UsageError(f"GGUF converter not found in {target}: run with network access once, or set {CONVERTER_ENV}")
    _fetch_converter(version, target)
    return script


def _fetch_converter(version: str, target: Path) -> None:
    spec = f"llama-cpp-python=={version}" if version else "llama-cpp-python"
    log.warning("fetching llama.cpp's GGUF converter from the %s source distribution (once, ~1 min)", spec)
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:", "-d", tmp, spec]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        sdists = list(Path(tmp).glob("llama_cpp_python-*.tar.gz"))
        if proc.returncode or not sdists:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no sdist"]
            raise ModelError(f"could not download {spec} to get convert_hf_to_gguf.py ({tail[0]}): "
                             f"check network access to PyPI or set {CONVERTER_ENV} to a llama.cpp checkout")
        staging = Path(tmp) / "llama.cpp"
        with tarfile.open(sdists[0]) as tar:
            for member in tar.getmembers():
                rel = member.name.partition("/vendor/llama.cpp/")[2]
                if rel and rel.startswith(_KEEP) and (member.isfile() or member.isdir()):
                    member.name = rel
                    tar.extract(member, staging, filter="data")
        if not (staging / "convert_hf_to_gguf.py").is_file():
            raise ModelError(f"{sdists[0].name} has no vendor/llama.cpp/convert_hf_to_gguf.py: set {CONVERTER_ENV}")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(target, ignore_errors=True)
        shutil.move(str(staging), target)


def _run_converter(script: Path, model_dir: Path, outfile: Path, outtype: str, mmproj: bool) -> None:
    cmd = [sys.executable, str(script), str(model_dir), "--outtype", outtype, "--outfile", str(outfile)]
    if mmproj:
        cmd.append("--mmproj")
    log.info("running %s", " ".join(cmd))
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode or not outfile.is_file():
        lines = [ln for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
        reason = lines[-1] if lines else f"exit code {proc.returncode}"
        if "sentencepiece" in reason:
            reason += " (pip install -r requirements-finetune.txt)"
        raise ModelError(f"GGUF conversion of {model_dir} failed: {reason}")


def quantize(src: Path, dst: Path, quant: str) -> None:
    """Quantize a GGUF with llama.cpp's ``llama_model_quantize`` (e.g. q4_k_m)."""
    try:
        import llama_cpp
    except ImportError:
        raise UsageError(f"quantizing to {quant} needs llama-cpp-python: pip install llama-cpp-python, or set "
                         "training.gguf_quantization=f16 (or q8_0)") from None
    ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{quant.upper()}", None)
    if ftype is None:
        raise UsageError(f"unknown GGUF quantization {quant!r}: use one of {', '.join(quantization_names())}")
    if not src.is_file():
        raise UsageError(f"cannot quantize {src}: no such file (export the f16 GGUF first)")
    with open(src, "rb") as fh:
        if fh.read(4) != b"GGUF":
            raise UsageError(f"cannot quantize {src}: not a GGUF file (no GGUF magic): point at a .gguf model")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    tmp = dst.with_name(dst.name + ".tmp")
    with _captured_stderr() as log:  # llama.cpp logs every tensor to fd 2; keep it for the error message only
        rc = llama_cpp.llama_model_quantize(str(src).encode(), str(tmp).encode(), ctypes.byref(params))
    if rc != 0 or not tmp.is_file():
        tmp.unlink(missing_ok=True)
        lines = [ln for ln in "".join(log).splitlines() if ln.strip()]
        last = lines[-1] if lines else "llama.cpp logged nothing"
        raise ModelError(f"llama.cpp could not quantize {src.name} to {quant} (code {rc}: {last}): check that the "
                         "file is a complete GGUF")
    move_atomic(tmp, dst)


@contextlib.contextmanager
def _captured_stderr() -> Iterator[list[str]]:
    """Redirect stderr (sys.stderr, where llama-cpp-python's log callback prints, and fd 2 for C code) while the
    block runs; the yielded list receives the text."""
    sys.stderr.flush()
    saved, captured, text = os.dup(2), [], io.StringIO()
    with tempfile.TemporaryFile() as tmp, contextlib.redirect_stderr(text):
        os.dup2(tmp.fileno(), 2)
        try:
            yield captured
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            captured.append(tmp.read().decode(errors="replace") + text.getvalue())


def convert_to_gguf(model_dir: str | Path, out_dir: str | Path, name: str, quant: str = "q4_k_m",
                    vision: bool = True, converter: Path | None = None) -> GgufFiles:
    """Write ``NAME-QUANT.gguf`` (text model) and ``mmproj-NAME-f16.gguf`` (vision projector) into ``out_dir``."""
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    if not (model_dir / "config.json").is_file():
        raise UsageError(f"{model_dir} is not a Hugging Face model folder (no config.json): "
                         "export the merged model first")
    quant = quant.lower()
    if quant not in quantization_names():
        raise UsageError(f"unknown GGUF quantization {quant!r}: use one of {', '.join(quantization_names())}")
    script = converter or find_converter()
    out_dir.mkdir(parents=True, exist_ok=True)
    final = out_dir / f"{name}-{quant}.gguf"
    with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
        direct = quant in _CONVERTER_OUTTYPES
        first = Path(tmp) / (final.name if direct else f"{name}-f16.gguf")
        _run_converter(script, model_dir, first, quant if direct else "f16", mmproj=False)
        if direct:
            move_atomic(first, final)
        else:
            quantize(first, final, quant)
    mmproj = convert_projector(model_dir, out_dir / f"mmproj-{name}-f16.gguf", script) if vision else None
    return GgufFiles(final, mmproj)


def convert_projector(model_dir: str | Path, out_path: str | Path, converter: Path | None = None) -> Path:
    """Write the vision projector of a Qwen2.5-VL folder as an f16 ``mmproj`` GGUF."""
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(".tmp-" + out_path.name)
    _run_converter(converter or find_converter(), Path(model_dir), tmp, "f16", mmproj=True)
    move_atomic(tmp, out_path)
    return out_path
