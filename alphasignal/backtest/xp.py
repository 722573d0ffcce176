"""Backend resolution: numba (CPU default), numpy (reference/fallback) or cupy (GPU: CuPy moves the data, numba-cuda
compiles the kernel; see :mod:`.gpu`). The only module that imports cupy, and only when a GPU backend is considered."""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from types import ModuleType

from ..errors import DeviceError, UsageError

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


def simulated() -> bool:
    """Whether numba-cuda's simulator is on (``NUMBA_ENABLE_CUDASIM=1`` before Numba was imported): CUDA kernels then
    run on the CPU, thread by thread, on NumPy arrays -- the GPU engine's tests on machines without a GPU."""
    try:
        from numba import config
    except ImportError:  # no numba: no simulator either
        return False
    return bool(config.ENABLE_CUDASIM)


@functools.cache
def gpu_status() -> tuple[bool, str]:
    """(usable, reason): cupy and numba-cuda importable, a CUDA device present, and a tiny allocation succeeds
    (probed once). Under the simulator the GPU engine is usable without cupy or a device."""
    if simulated():
        return True, "numba-cuda simulator (NUMBA_ENABLE_CUDASIM=1): the GPU kernel runs on the CPU"
    try:
        import cupy
        from numba import cuda  # noqa: F401 - numba-cuda compiles the kernel
    except Exception as exc:  # noqa: BLE001 - ImportError or a broken CUDA install
        return False, (f"cupy and numba-cuda are not importable ({type(exc).__name__}): "
                       "pip install -r requirements-gpu.txt")
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

    ``auto`` prefers a usable GPU, else numba, else numpy, logging why once; forcing ``gpu``/``cupy`` without a
    usable GPU raises DeviceError (exit 3), a CPU engine on ``--device gpu`` UsageError.
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
            raise DeviceError(f"GPU backend requested but unusable: {why}; use --device cpu or --device auto")
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
