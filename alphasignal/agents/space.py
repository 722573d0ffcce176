"""The parameter space of a strategy (stage 05's PARAM_SPECS): checks, repairs, canonical keys and sampling.

Every proposal, whatever produced it, passes through :func:`check_proposal` before it can reach the engine:
values are coerced, clipped to bounds and snapped to the step grid (each repair noted), and anything that
cannot be made valid (unknown or non-numeric values, constraint violations such as short >= long) is rejected
with a reason.
"""

from __future__ import annotations

import difflib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import UsageError


def _backtest():
    from ..backtest import strategies

    return strategies


def constraints_text(strategy: str) -> str:
    """The strategy's cross-parameter constraints, for prompts."""
    strat = _backtest().REGISTRY.get(strategy)
    return "; ".join(msg for msg, _ in strat.constraints) if strat and strat.constraints else "none"


def specs(strategy: str) -> dict[str, Any]:
    """PARAM_SPECS of ``strategy`` (built-in or loaded from a strategy file); unknown names fail with a suggestion."""
    return dict(_backtest().get_strategy(strategy).specs)


def kind(spec: Any) -> str:
    """'bool', 'int' or 'float' for a ParamSpec (its ``type`` may be a class or a name)."""
    t = getattr(spec, "type", float)
    name = t if isinstance(t, str) else getattr(t, "__name__", str(t))
    return {"bool": "bool", "int": "int", "integer": "int"}.get(name.lower(), "float")


def values(spec: Any, limit: int = 200) -> list[Any]:
    """All values on the spec's step grid (at most ``limit``, evenly thinned)."""
    k = kind(spec)
    if k == "bool":
        return [False, True]
    lo, hi, step = float(spec.min), float(spec.max), float(spec.step or 0)
    if step <= 0:
        grid = np.linspace(lo, hi, 11)
    else:
        grid = lo + step * np.arange(int(math.floor((hi - lo) / step + 1e-9)) + 1)
    if len(grid) > limit:
        grid = grid[np.linspace(0, len(grid) - 1, limit).round().astype(int)]
    return [_cast(v, k) for v in grid]


def _cast(v: float, k: str) -> Any:
    if k == "bool":
        return bool(v)
    return int(round(v)) if k == "int" else round(float(v), 10)


def encode(value: Any) -> float:
    """Numeric view of a parameter value (booleans as 0/1) for distances and regressions."""
    return float(value)


def config_key(params: Mapping[str, Any]) -> str:
    """Canonical identity of a configuration: already-tried keys are never re-run."""
    return json.dumps({k: _plain(params[k]) for k in sorted(params)}, sort_keys=True)


def _plain(v: Any) -> Any:
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    f = float(v)
    return int(f) if f.is_integer() else round(f, 10)


def constraint_errors(strategy: str, params: Mapping[str, Any]) -> list[str]:
    """Stage 05's own constraint check (e.g. short_period < long_period)."""
    return list(_backtest().validate_params(strategy, dict(params)))


@dataclass
class Checked:
    """Outcome of validating one proposal: ``status`` is ok, repaired or rejected."""

    params: dict[str, Any] | None
    status: str
    notes: list[str] = field(default_factory=list)
    reason: str = ""


def _coerce(name: str, raw: Any, spec: Any, notes: list[str]) -> Any:
    k = kind(spec)
    if k == "bool":
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, (int, float)) and raw in (0, 1):
            notes.append(f"{name}: {raw!r} read as {bool(raw)}")
            return bool(raw)
        if isinstance(raw, str) and raw.strip().lower() in {"true", "false", "yes", "no", "1", "0"}:
            notes.append(f"{name}: {raw!r} read as a boolean")
            return raw.strip().lower() in {"true", "yes", "1"}
        raise ValueError(f"{name}={raw!r} is not true/false")
    if isinstance(raw, bool):
        raise ValueError(f"{name}={raw!r} must be a number")
    if isinstance(raw, str):
        try:
            num = float(raw.strip())
        except ValueError:
            raise ValueError(f"{name}={raw!r} is not a number") from None
        notes.append(f"{name}: string {raw!r} read as a number")
    else:
        num = float(raw)
    if not math.isfinite(num):
        raise ValueError(f"{name}={raw!r} is not finite")
    lo, hi, step = float(spec.min), float(spec.max), float(spec.step or 0)
    if num < lo or num > hi:
        clipped = min(max(num, lo), hi)
        notes.append(f"{name}: {raw!r} outside [{spec.min}, {spec.max}], clipped to {_cast(clipped, k)}")
        num = clipped
    if step > 0:
        snapped = min(lo + round((num - lo) / step) * step, hi)
        if abs(snapped - num) > 1e-9:
            notes.append(f"{name}: {_cast(num, 'float')} snapped to step {spec.step} -> {_cast(snapped, k)}")
        num = snapped
    if k == "int" and not float(num).is_integer():
        notes.append(f"{name}: {num} rounded to an integer")
    return _cast(num, k)


def check_proposal(strategy: str, params: Mapping[str, Any], baseline: Mapping[str, Any]) -> Checked:
    """Validate and repair ``params`` against PARAM_SPECS; missing parameters are taken from ``baseline``."""
    sp = specs(strategy)
    notes: list[str] = []
    raw = dict(params)
    for name in [n for n in raw if n not in sp]:
        close = difflib.get_close_matches(name, [n for n in sp if n not in raw], n=1)
        if close:
            notes.append(f"unknown parameter {name!r} read as {close[0]!r}")
            raw[close[0]] = raw.pop(name)
        else:
            notes.append(f"unknown parameter {name!r} dropped (valid: {', '.join(sp)})")
            raw.pop(name)
    out: dict[str, Any] = {}
    for name, spec in sp.items():
        if name not in raw:
            if name not in baseline:
                return Checked(None, "rejected", notes, f"parameter {name!r} missing and no baseline value")
            notes.append(f"{name}: missing, baseline value {baseline[name]!r} kept")
            out[name] = baseline[name]
            continue
        try:
            out[name] = _coerce(name, raw[name], spec, notes)
        except (TypeError, ValueError) as exc:
            return Checked(None, "rejected", notes, str(exc))
    errors = constraint_errors(strategy, out)
    if errors:
        return Checked(None, "rejected", notes, "; ".join(errors))
    return Checked(out, "repaired" if notes else "ok", notes)


def check_grid(strategy: str, grid: Mapping[str, Any]) -> dict[str, list[Any]]:
    """Validate a sweep grid: known parameters (with suggestions), non-empty value lists, values in range."""
    sp = specs(strategy)
    if not grid:
        raise UsageError("the sweep grid is empty: set sweep.grid, e.g. --set 'sweep.grid={short_period=[10, 20]}'")
    out = {}
    for name, vals in grid.items():
        if name not in sp:
            close = difflib.get_close_matches(name, list(sp), n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"valid: {', '.join(sp)}"
            raise UsageError(f"unknown parameter {name!r} for {strategy} in sweep.grid: {hint}")
        vals = list(vals) if isinstance(vals, (list, tuple)) else [vals]
        if not vals:
            raise UsageError(f"sweep.grid.{name} is empty: give at least one value")
        lo, hi = sp[name].min, sp[name].max
        bad = [v for v in vals if kind(sp[name]) != "bool" and not (lo <= v <= hi)]
        if bad:
            raise UsageError(f"sweep.grid.{name} values {bad} outside [{lo}, {hi}]: use values inside the range")
        out[name] = vals
    return out


def random_params(strategy: str, rng: np.random.Generator, tries: int = 200) -> dict[str, Any] | None:
    """A uniformly drawn valid configuration from the step grid (None when none found in ``tries``)."""
    sp = specs(strategy)
    grids = {n: values(s) for n, s in sp.items()}
    for _ in range(tries):
        p = {n: g[int(rng.integers(len(g)))] for n, g in grids.items()}
        if not constraint_errors(strategy, p):
            return p
    return None
