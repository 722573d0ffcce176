"""Benchmarks: run each one from the repository root as ``python -m benchmarks.bench_<name>``."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]


def load_test_helper(name: str) -> ModuleType:
    """``tests/<name>.py``, a helper the tests and a benchmark share, loaded from its file: ``tests/`` is not a
    package (pytest imports its modules by name), and an installed package called ``tests`` may shadow it."""
    qualified = f"benchmarks.tests_{name}"
    if qualified not in sys.modules:
        spec = importlib.util.spec_from_file_location(qualified, ROOT / "tests" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[qualified] = module
        spec.loader.exec_module(module)
    return sys.modules[qualified]
