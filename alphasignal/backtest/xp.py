"""Backend resolution: numba (CPU default), numpy (reference/fallback) or cupy (GPU). The only module that
imports cupy, and only when a GPU backend is considered."""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from types import ModuleType

from ..errors import UsageError

log = logging.getLogger(__name__)

ENGINES = ("numba", "numpy", "cupy")
DEVICES = ("auto", "cpu", "gpu")


@dataclass(frozen=True)
class Backend:
    """The resolved engine (``numba``/``numpy``/``cupy``), its device, and why it was chosen."""

    engine: str
    device: str
    note: str = ""


def uses_jit(backend: Backend) -> bool:
    """Whether the metric and PBO passes around ``backend``'s kernel use Numba: not with the NumPy engine, which so
    runs without compiling anything (see :mod:`.startfast`)."""
    return backend.engine != "numpy"


@functools.cache
def gpu_status() -> tuple[bool, str]:
    """(usable, reason): cupy importable, a CUDA device present, and a tiny allocation succeeds (probed once)."""
    try:
        import cupy
    except Exception as exc:  # noqa: BLE001 - ImportError or a broken CUDA install
        return False, f"cupy is not importable ({type(exc).__name__}): pip install -r requirements-gpu.txt"
    try:
        if not cupy.cuda.is_available():
            return False, "cupy is installed but no CUDA GPU is available"
        cupy.zeros(1).sum().item()
    except Exception as exc:  # noqa: BLE001 - CUDARuntimeError and driver errors
        return False, f"cupy is installed but the GPU is unusable ({type(exc).__name__}: {exc})"
    return True, "CUDA GPU available"


@functools.cache
def _note_fallback(why: str) -> None:
    """Say once per process why ``auto`` runs on the CPU: info when there is simply no GPU (a normal CPU run, with
    or without cupy installed), a warning only when a GPU is there but unusable (a driver or runtime problem)."""
    (log.warning if "unusable" in why else log.info)("no GPU backend (%s); using the CPU", why)


def get_cupy() -> ModuleType:
    """The cupy module (call only after :func:`resolve` chose the cupy engine)."""
    import cupy

    return cupy


def _numba_ok() -> tuple[bool, str]:
    try:
        import numba  # noqa: F401
    except Exception as exc:  # noqa: BLE001
        return False, f"numba is not importable ({type(exc).__name__})"
    return True, ""


def resolve(device: str = "auto", engine: str = "") -> Backend:
    """Pick the backend for ``--device auto|cpu|gpu`` and ``--engine numba|numpy|cupy``.

    ``auto`` prefers a usable GPU, else numba, else numpy, logging why; forcing ``gpu``/``cupy`` without a
    usable GPU, or a CPU engine on ``--device gpu``, raises UsageError.
    """
    if device not in DEVICES:
        raise UsageError(f"unknown device {device!r}: use auto, cpu or gpu")
    if engine and engine not in ENGINES:
        raise UsageError(f"unknown engine {engine!r}: use numba, numpy or cupy")
    if engine in {"numba", "numpy"} and device == "gpu":
        raise UsageError(f"engine {engine} runs on the CPU: use --device cpu, or --engine cupy for the GPU")
    if engine == "cupy" and device == "cpu":
        raise UsageError("engine cupy runs on the GPU: use --device gpu (or auto), or --engine numba for the CPU")
    if engine == "cupy" or device == "gpu":
        ok, why = gpu_status()
        if not ok:
            raise UsageError(f"GPU backend requested but unusable: {why}; use --device cpu or --device auto")
        return Backend("cupy", "gpu", why)
    if engine == "numpy":
        return Backend("numpy", "cpu", "requested")
    if device == "auto" and not engine:
        ok, why = gpu_status()
        if ok:
            return Backend("cupy", "gpu", why)
        _note_fallback(why)
        note = f"auto: {why}"
    else:
        note = "requested"
    ok, why = _numba_ok()
    if ok:
        return Backend("numba", "cpu", note)
    if engine == "numba":
        raise UsageError(f"engine numba unavailable: {why}: pip install numba, or use --engine numpy")
    log.warning("numba unavailable (%s); using the slower numpy engine", why)
    return Backend("numpy", "cpu", f"{note}; {why}")
