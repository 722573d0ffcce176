"""Start fast: a sweep that would first wait for Numba to compile runs on the NumPy engine instead when that is
quicker, while a background process compiles the kernels into Numba's on-disk cache for the next run.

Numba compiles a strategy's fused kernel (and the metric and PBO passes) on first use: 15-45 s on 2 cores, once
per signal rule and short mode, then loads it from its disk cache in well under a second. :func:`kernels_cached`
asks that cache by running the sweep's own code path on one configuration with compiling forbidden (what it
finds stays loaded for the run). When something is missing and the NumPy engine's estimated time for the whole
sweep is under :data:`COMPILE_S`, :func:`choose` picks NumPy -- same conventions, results equal to the Numba
kernel's within the parity tests' 1e-9 (the metric and PBO passes are the same operations, bit for bit) -- and
:func:`compile_in_background` starts ``python -m alphasignal.backtest.startfast`` (detached, niced, one at a time
per cache) to fill the cache. Only the engine's default choice is overridden: an explicit ``--engine``,
``sweep.start_fast = false``, a cluster or a user's strategy file (the background process would run the user's
code after the command has ended) keep today's behaviour.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import pickle
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
from numba.core import event

from ..config import SweepConfig
from ..evaluation.overfitting import pbo_from_blocks
from .engine import Prices
from .xp import Backend

log = logging.getLogger(__name__)

COMPILE_S = 20.0  # a cold compile of one strategy's kernels takes 15-45 s here: NumPy runs sweeps estimated below
NUMPY_BAR_S = 3e-4  # NumPy engine, seconds per bar of one pass (its Python loop over bars; 2-core machine, loaded)
NUMPY_CELL_S = 2.5e-7  # ... and per configuration x bar
NUMPY_PBO_S = 7e-8  # NumPy CSCV, seconds per configuration x combination


class _Miss(Exception):
    """Raised by :class:`_NoCompile` when Numba is about to compile: the disk cache lacks a kernel."""


class _NoCompile(event.Listener):
    def on_start(self, ev: event.Event) -> None:
        raise _Miss

    def on_end(self, ev: event.Event) -> None:
        pass


def kernels_cached(warm: Callable[[], object]) -> bool:
    """True when ``warm()`` (Numba code run on tiny inputs) needs no compile: everything it calls is in memory or in
    Numba's disk cache (then loaded, for the run to reuse). A miss is detected before compiling starts."""
    try:
        with event.install_listener("numba:compile", _NoCompile()):
            warm()
    except _Miss:
        return False
    return True


def numpy_seconds(jobs: Mapping[str, tuple[Prices, pd.DataFrame]], opts: SweepConfig) -> float:
    """Estimated seconds of the NumPy engine for stage 05's sweep of ``jobs`` (``{ticker: (prices, valid)}``): the
    full-sample pass, the in-sample + out-of-sample passes, walk-forward training passes, the DSR's one-configuration
    pass, and CSCV."""
    total = 0.0
    for prices, valid in jobs.values():
        n, k = prices.n, len(valid)
        passes = 2 + opts.walk_forward
        total += passes * n * (NUMPY_BAR_S + NUMPY_CELL_S * k) + n * NUMPY_BAR_S
        if opts.pbo_splits:
            total += NUMPY_PBO_S * k * math.comb(opts.pbo_splits, opts.pbo_splits // 2)
    return total


def warm_all(warm: Callable[[], object], pbo_splits: int) -> None:
    """Run every Numba kernel a stage 05 sweep uses: ``warm()`` (the sweep's code path on one configuration) and,
    when PBO is on, CSCV on two dummy configurations."""
    warm()
    if pbo_splits:
        pbo_from_blocks(np.zeros((2, pbo_splits, 2)), np.full(pbo_splits, 10.0))


def choose(backend: Backend, opts: SweepConfig, jobs: Mapping[str, tuple[Prices, pd.DataFrame]],
           warm: Callable[[], object]) -> tuple[Backend, bool]:
    """The backend to run with, and whether to compile in the background (see the module docstring)."""
    if opts.engine or backend.engine != "numba" or not opts.start_fast or opts.cluster or opts.strategy_file:
        return backend, False  # a user's strategy file: its code runs only while the command runs, never after
    probe = partial(warm_all, warm, opts.pbo_splits)
    if kernels_cached(probe):
        return backend, False
    est = numpy_seconds(jobs, opts)
    if est > COMPILE_S:
        log.info("start fast: the NumPy engine would take ~%.0f s, more than compiling the Numba kernel", est)
        return backend, False
    note = (f"start fast: Numba's kernel cache lacks {opts.strategy} {opts.mode}, so the NumPy engine ran this sweep "
            f"(~{est:.1f} s estimated vs {COMPILE_S:.0f} s+ to compile); a background process compiles the kernel "
            "for the next run")
    return Backend("numpy", "cpu", f"{backend.note}; {note}" if backend.note else note), True


def lock_path(cache_dir: str | None = None) -> Path:
    """The background compile's lock: one per Numba cache location (``NUMBA_CACHE_DIR``, default this process's
    setting, and this package's place). Held while it compiles."""
    if cache_dir is None:
        from numba.core.config import CACHE_DIR as cache_dir
    key = hashlib.sha256(f"{cache_dir}|{Path(__file__).resolve().parent}".encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"alphasignal-numba-compile-{key}.lock"


def _price_arrays(warm: Callable[[], object]) -> list[np.ndarray]:
    """The price arrays in a warm-up partial's arguments (one level into tuples)."""
    args = [a for arg in getattr(warm, "args", ()) for a in (arg if isinstance(arg, tuple) else (arg,))]
    return [getattr(a, f) for a in args if isinstance(a, Prices) for f in ("open", "high", "low", "close")]


def compile_in_background(warm: Callable[[], object], pbo_splits: int) -> None:
    """Start a detached, niced process that runs :func:`warm_all` (Numba compiles and writes its disk cache); its
    output is discarded. Returns at once; failures only mean that the next run compiles in the foreground.

    Read-only price arrays (pandas hands them out) are a signature of their own to Numba, and unpickled arrays
    are writable: the child marks them as they were here, so it compiles the kernel this process needs."""
    job = write_job(warm, pbo_splits)
    root = str(Path(__file__).resolve().parents[2])  # the directory that holds the alphasignal package
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}
    try:  # sh puts it in the background and exits at once: nothing is left for this process to wait for
        subprocess.run(["sh", "-c", '"$@" </dev/null >/dev/null 2>&1 &', "sh", sys.executable, "-m", __name__, job],
                       env=env, cwd=root, check=True, start_new_session=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as exc:
        Path(job).unlink(missing_ok=True)
        log.info("start fast: no background compile (%s)", exc)


def write_job(warm: Callable[[], object], pbo_splits: int) -> str:
    """The background compile's input, pickled to a temporary file: the warm-up, the PBO splits and whether each
    price array is writable."""
    fd, job = tempfile.mkstemp(prefix="alphasignal-compile-", suffix=".pkl")
    with os.fdopen(fd, "wb") as f:
        pickle.dump((warm, pbo_splits, [a.flags.writeable for a in _price_arrays(warm)]), f)
    return job


def read_job(job: str) -> tuple[Callable[[], object], int]:
    """:func:`write_job`'s file read back (and removed), the price arrays as writable as they were."""
    with open(job, "rb") as f:
        warm, pbo_splits, writeable = pickle.load(f)
    Path(job).unlink(missing_ok=True)
    for a, w in zip(_price_arrays(warm), writeable, strict=True):
        a.flags.writeable = w
    return warm, pbo_splits


def _main(job: str) -> int:
    """The background process: take the cache's lock (one compile at a time), then compile what is still missing."""
    os.nice(10)
    warm, pbo_splits = read_job(job)
    with open(lock_path(), "w") as lock:
        try:
            import fcntl

            fcntl.flock(lock, fcntl.LOCK_EX)
        except ImportError:  # no fcntl (Windows): compiles may overlap, which is only slower
            pass
        warm_all(warm, pbo_splits)
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1]))
