"""Strategies written by users: a Python file with a strategy class, run through the engine's positions path.

The class (named by ``--strategy``, loaded with ``--strategy-file``) has

* ``PARAM_SPECS``: ``{name: ParamSpec(min, max, step, type, default)}`` (a 5-tuple works too), type int, float or
  bool -- the same validation as the built-ins in sweeps, walk-forward and the optimizer;
* ``positions(indicators, params)``: the position wanted at each close (1 long, -1 short, 0 or NaN flat; shorts
  are flat when long-only) for many configurations at once, as an array of bars x configurations. ``params`` maps
  each parameter name to an array of one value per configuration; ``indicators`` is an :class:`Indicators`; or
  instead ``rule(open, high, low, close, <one value of each parameter>)``, a function Numba compiles, returning one
  configuration's positions (bars,) (:func:`jit_rule`);
* optionally ``CONSTRAINTS`` (``{message: predicate(params)}``), ``warmup(params)`` (bars before the first
  position; configurations that cannot warm up are skipped as for built-ins) and ``NEEDS`` (price columns read).

The positions become the rows of the kernels' POSITIONS rule, so fills, costs, the bust rule and every metric
are the built-ins' own code. Loading checks the file before any work, each problem one ``UsageError`` line: syntax,
the class and its specs, and a run on a synthetic price series -- the result's shape and values, and that the
positions do not look ahead: at many cuts (fixed ones, seeded random ones and each of the last bars) the positions
computed on the bars before the cut must equal the full run's positions over that whole prefix, value for value
(a position that changes, or becomes NaN, is look-ahead). The check is a test, not a proof: it catches any rule
whose past positions depend on later bars of the synthetic series at one of the cuts (shift(-k), np.roll,
centred windows, whole-series statistics, a look-ahead that appears only on long series up to
:data:`SELF_CHECK_BARS` bars); it cannot see a rule that behaves differently on real data than on the synthetic
series, or one that looks ahead only on series longer than it.
"""

from __future__ import annotations

import ast
import difflib
import inspect
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pandas as pd

from ..config import SweepConfig
from ..errors import UsageError
from .strategies import (
    REGISTRY,
    STRATEGIES,
    Columns,
    ConfigParts,
    ParamSpec,
    Strategy,
    StrategyLike,
    build_rows,
    get_strategy,
    pack_rows,
    register,
    validate_params,
)

SELF_CHECK_BARS = 5000  # about 20 years of daily bars: a look-ahead that appears only on long series shows
SELF_CHECK_FIXED_CUTS = (60, 250, 500, 900, 2000, 3500)  # the look-ahead check truncates the synthetic series here,
SELF_CHECK_RANDOM_CUTS = 16  # at this many seeded random places,
SELF_CHECK_LAST_BARS = 5  # and before each of the last bars
MAX_WARMUP_BARS = 1_000_000  # a warm-up longer than this is a bug in the strategy, not a real indicator
USER_CODE_TIMEOUT_S = SweepConfig.user_code_timeout_s  # the check of a user's file must end by then
ROW_COPIES = 4  # bytes planned per configuration: its positions row and ~3 temporaries of the user's rule


@dataclass(frozen=True)
class UserStrategy(Strategy):
    """A strategy of a user's file: ``positions(indicators, params)`` gives each configuration's positions, which
    become the table rows the kernels' POSITIONS rule reads (one row per configuration)."""

    positions: Callable[[Any, Columns], Any] | None = None

    def config_parts(self, configs: pd.DataFrame) -> ConfigParts:
        """One row of its own per configuration (its positions), no flag, no floats."""
        k = len(configs)
        return np.arange(k, dtype=np.int64)[:, None], np.zeros(k, dtype=np.int64), np.zeros((k, 2))

    def row_bytes(self, n_bars: int) -> int:
        """A positions row and the temporaries of the user's rule (:data:`ROW_COPIES`)."""
        return 8 * n_bars * ROW_COPIES

    def chunk_arrays(self, parts: ConfigParts, configs: pd.DataFrame, prices: Any, idx: np.ndarray | None = None,
                     hi: int | None = None, compiled: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The positions of configurations ``idx`` over bars 0..hi-1, as the POSITIONS rule's arrays (its
        indicators on NumPy, ``compiled`` or not)."""
        chosen = configs if idx is None else configs.iloc[idx]
        return positions_arrays(self, prices, chosen, len(prices.close) if hi is None else hi)

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        """Pickled by its file's source (e.g. to Dask workers), rebuilt without the self-check it passed here; one
        without a file (a class defined in this process) by its registered name."""
        if self.origin is None:
            return get_strategy, (self.name,)
        return from_source, (*self.origin, self.name, False)


class Indicators:
    """Price columns (``open``, ``high``, ``low``, ``close``: 1-D arrays) and the engine's indicators of one series.

    Each indicator takes a number (returns one series, shape (bars,)) or an array of one value per configuration
    (returns bars x configurations); values at bar t use bars <= t only and are NaN during the warm-up. Series are
    computed once per distinct argument, by the code the built-in strategies use."""

    def __init__(self, open_: np.ndarray, high: np.ndarray, low: np.ndarray, close: np.ndarray) -> None:
        self.open, self.high, self.low, self.close = open_, high, low, close

    def _rows(self, name: str, *args: Any) -> np.ndarray:
        arrays = [np.asarray(a) for a in args]
        scalar = all(a.ndim == 0 for a in arrays)
        k = 1 if scalar else max(a.size for a in arrays)
        try:
            vals = [np.broadcast_to(a, (k,)) if a.ndim else a for a in arrays]
            if any(((v < 1) | (v != np.round(v))).any() for v in vals):
                raise ValueError("periods must be whole numbers >= 1")
            codes = pack_rows(name, vals, k)
        except ValueError as exc:
            raise UsageError(f"indicators.{name}{tuple(np.ravel(a)[0] for a in arrays)}: {exc}") from None
        uniq, inv = np.unique(codes, return_inverse=True)
        table = build_rows(uniq, self.high, self.low, self.close)
        return table[0] if scalar else table[inv.ravel()].T

    def sma(self, period: Any) -> np.ndarray:
        """Simple moving average of the close."""
        return self._rows("sma", period)

    def ema(self, period: Any) -> np.ndarray:
        """Exponential moving average of the close (alpha 2 / (period + 1), seeded with the first SMA)."""
        return self._rows("ema", period)

    def std(self, period: Any) -> np.ndarray:
        """Rolling population standard deviation of the close."""
        return self._rows("std", period)

    def rsi(self, period: Any) -> np.ndarray:
        """Wilder's RSI of the close (0..100)."""
        return self._rows("rsi", period)

    def macd(self, fast: Any, slow: Any, signal: Any) -> tuple[np.ndarray, np.ndarray]:
        """(MACD line, signal line)."""
        return self._rows("macd_line", fast, slow), self._rows("macd_sig", fast, slow, signal)

    def donchian(self, channel: Any) -> tuple[np.ndarray, np.ndarray]:
        """(highest high, lowest low) of the ``channel`` bars before bar t (bar t excluded)."""
        return self._rows("dc_hi", channel), self._rows("dc_lo", channel)


def load_strategy(name: str, path: str = "", timeout: float = USER_CODE_TIMEOUT_S) -> Strategy:
    """The strategy ``name``: built-in or registered, or the class ``name`` of the Python file ``path`` (checked
    within ``timeout`` s, then registered under ``name``). Every problem is a one-line UsageError."""
    if not path:
        return get_strategy(name)
    file = Path(path)
    if not file.is_file():
        raise UsageError(f"strategy file {path!r} not found: give the path of a .py file (--strategy-file)")
    try:
        source = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"strategy file {path!r} is unreadable ({type(exc).__name__}): give a UTF-8 .py file"
                         ) from None
    return from_source(str(file), source, name, timeout=timeout)


def from_source(path: str, source: str, name: str, check: bool = True,
                timeout: float = USER_CODE_TIMEOUT_S) -> Strategy:
    """Build, check and register the strategy class ``name`` defined by ``source`` (the text of file ``path``).
    The check (:func:`self_check`) runs first in a child process (:func:`_check_in_child`), so that user code
    that never returns is stopped after ``timeout`` s and code that ends its process ends the child, not the
    command. ``check=False`` skips it: for a copy unpickled from a process where the same source passed it."""
    if name in STRATEGIES:
        classes = _class_names(source)
        if name not in classes:  # e.g. --strategy-file without --strategy: the default built-in name
            raise UsageError(f"strategy file {path} has no class {name!r}: name its strategy class with --strategy "
                             f"(classes in it: {', '.join(classes) or 'none'})")
        raise UsageError(f"strategy {name!r} is a built-in name: rename your strategy class (--strategy)")
    loaded = REGISTRY.get(name)
    if loaded is not None and loaded.origin == (path, source):
        return loaded  # this very source was built, checked and registered in this process already
    if check:
        _check_in_child(path, source, name, timeout)
    return register(_build_source(path, source, name))


def _class_names(source: str) -> list[str]:
    """The top-level class names of a file's source (read without running it; [] if it does not parse)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    return [node.name for node in tree.body if isinstance(node, ast.ClassDef)]


def _build_source(path: str, source: str, name: str) -> Strategy:
    """The strategy class ``name`` of ``source``: compiled, its module run, the class found and its specs read."""
    module = ModuleType(f"alphasignal_user_strategy_{Path(path).stem}")
    module.__file__ = path
    try:
        code = compile(source, path, "exec")
    except SyntaxError as exc:
        raise UsageError(f"{path}:{exc.lineno}: syntax error ({exc.msg}): fix the strategy file") from None
    try:
        exec(code, module.__dict__)  # noqa: S102 - running the user's own strategy file is the point
    except SystemExit as exc:
        raise UsageError(f"{path}: loading it called sys.exit({exc.code!r}): a strategy file must not exit; remove "
                         "the call") from None
    except Exception as exc:  # noqa: BLE001 - any error of the user's module
        raise UsageError(f"{path}: loading it raised {type(exc).__name__}: {_first_line(exc)}: fix the strategy "
                         "file") from None
    cls = module.__dict__.get(name)
    if not inspect.isclass(cls):
        found = [k for k, v in module.__dict__.items()
                 if inspect.isclass(v) and (hasattr(v, "positions") or hasattr(v, "rule"))]
        close = difflib.get_close_matches(name, found, n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"strategy classes in it: {', '.join(found) or 'none'}"
        raise UsageError(f"{path} has no class {name!r} (--strategy): {hint}")
    return _build(cls, name, path, source)


def _check_in_child(path: str, source: str, name: str, timeout: float) -> None:
    """Load and self-check the strategy in a forked child process and raise its UsageError here. A child that
    does not answer within ``timeout`` s is killed (a ``positions`` that never returns), and one that ends
    without answering (``os._exit`` in the user's code) is reported; without fork, the check runs here."""
    import multiprocessing as mp

    if "fork" not in mp.get_all_start_methods():  # pragma: no cover - Windows
        self_check(_build_source(path, source, name), path)
        return
    ctx = mp.get_context("fork")
    recv, send = ctx.Pipe(duplex=False)
    child = ctx.Process(target=_check_child, args=(send, path, source, name), daemon=True)
    child.start()
    send.close()
    try:
        if not recv.poll(timeout):
            raise UsageError(f"{path}: {name} did not finish its check within {timeout:g} s (it runs positions on "
                             f"{SELF_CHECK_BARS:,} synthetic bars): a loop that never ends? Fix the strategy, or "
                             "raise sweep.user_code_timeout_s")
        try:
            kind, message = recv.recv()
        except EOFError:
            child.join()
            raise UsageError(f"{path}: {name} ended the process (exit code {child.exitcode}) while it was checked: "
                             "a strategy must not call os._exit or sys.exit; remove the call") from None
    finally:
        if child.is_alive():
            child.kill()
        child.join()
        recv.close()
    if kind != "ok":
        raise UsageError(message)


def _check_child(send: Any, path: str, source: str, name: str) -> None:
    """In the forked child: build and check, send ("ok", "") or ("error", the one-line message), then end without
    the parent's exit handlers."""
    try:
        self_check(_build_source(path, source, name), path)
        send.send(("ok", ""))
    except UsageError as exc:
        send.send(("error", str(exc)))
    except BaseException as exc:  # noqa: BLE001 - SystemExit and anything else the user's code raises
        send.send(("error", f"{path}: checking {name} raised {type(exc).__name__}: {_first_line(exc)}: fix the "
                            "strategy file"))
    finally:
        send.close()
        os._exit(0)


def from_class(cls: type, name: str = "") -> Strategy:
    """Build, check and register a strategy class defined in Python (a notebook's), as :func:`from_source` does
    for a file's. It has no source to travel, so it runs in this process only (not on a Dask cluster)."""
    from dataclasses import replace

    name = name or cls.__name__
    if name in STRATEGIES:
        raise UsageError(f"strategy {name!r} is a built-in name: rename your strategy class")
    strat = replace(_build(cls, name, f"class {name}", ""), origin=None)
    self_check(strat, f"class {name}")
    return register(strat)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [""])[0][:200]


def _spec(path: str, name: str, param: str, raw: Any) -> ParamSpec:
    """One PARAM_SPECS entry: a ParamSpec or a (min, max, step, type[, default]) tuple, checked."""
    where = f"{path}: {name}.PARAM_SPECS[{param!r}]"
    try:
        spec = raw if isinstance(raw, ParamSpec) else ParamSpec(*raw)
    except TypeError:
        raise UsageError(f"{where} = {raw!r}: give ParamSpec(min, max, step, type, default)") from None
    if spec.type not in (int, float, bool):
        raise UsageError(f"{where}: type {spec.type!r} must be int, float or bool")
    default = spec.default if spec.default is not None else (False if spec.type is bool else spec.min)
    spec = spec._replace(default=default)
    if spec.type is not bool:
        ok = all(isinstance(v, (int, float)) and np.isfinite(v) for v in (spec.min, spec.max, spec.step, default))
        if not ok or not spec.min <= default <= spec.max or spec.step <= 0:
            raise UsageError(f"{where} = {tuple(spec)}: need finite min <= default <= max and step > 0")
    return spec


def _build(cls: type, name: str, path: str, source: str) -> Strategy:
    """The Strategy object of a user class (its specs, constraints, warm-up, needs and positions checked)."""
    raw_specs = getattr(cls, "PARAM_SPECS", None)
    if not isinstance(raw_specs, Mapping) or not raw_specs:
        raise UsageError(f"{path}: {name} has no PARAM_SPECS: add PARAM_SPECS = {{'period': ParamSpec(5, 200, 1, int, "
                         "20), ...}} (from alphasignal.backtest import ParamSpec)")
    specs = {str(k): _spec(path, name, str(k), v) for k, v in raw_specs.items()}
    raw_cons = getattr(cls, "CONSTRAINTS", {})
    pairs = list(raw_cons.items()) if isinstance(raw_cons, Mapping) else list(raw_cons)
    if not all(isinstance(p, tuple) and len(p) == 2 and callable(p[1]) for p in pairs):
        raise UsageError(f"{path}: {name}.CONSTRAINTS must map a message to a predicate, e.g. "
                         "{'fast must be < slow': lambda p: p['fast'] < p['slow']}")
    needs = tuple(getattr(cls, "NEEDS", ("Close",)))
    if not set(needs) <= {"Open", "High", "Low", "Close"}:
        raise UsageError(f"{path}: {name}.NEEDS={needs!r}: use column names Open, High, Low, Close")
    try:
        obj = cls()
    except Exception as exc:  # noqa: BLE001
        raise UsageError(f"{path}: {name}() raised {type(exc).__name__}: {_first_line(exc)}: the class must be "
                         "constructible without arguments") from None
    rule = getattr(obj, "positions", None)
    if not callable(rule) and callable(getattr(cls, "rule", None)):
        rule = jit_rule(cls.rule, specs, f"{path}: {name}.rule")
    if not callable(rule):
        raise UsageError(f"{path}: {name} has no positions(indicators, params) method (or rule(open, high, low, "
                         "close, <parameters>)): add one returning bars x configurations of 1 / 0 / -1")
    warm = getattr(obj, "warmup", None)
    first = next(iter(specs))
    where = f"{path}: {name}"

    def warmup(p: Any) -> np.ndarray:  # one value per configuration, as the built-ins' warm-ups give
        raw = np.asarray(_user_call(warm, p, f"{where}.warmup") if warm else 0)
        if raw.dtype.kind not in "biuf" or not (np.isfinite(raw).all() and (raw >= 0).all()
                                                and (raw <= MAX_WARMUP_BARS).all()):
            bad = raw.ravel()[0] if raw.dtype.kind not in "biuf" else next(
                v for v in raw.ravel() if not (np.isfinite(v) and 0 <= v <= MAX_WARMUP_BARS))
            raise UsageError(f"{where}.warmup returned {bad}: return the bars before the first position, a whole "
                             f"number 0..{MAX_WARMUP_BARS:,} per configuration")
        return np.broadcast_to(raw.astype(np.int64), np.shape(p[first]))

    constraints = tuple((str(m), _guarded(f, f"{where}.CONSTRAINTS[{str(m)!r}]")) for m, f in pairs)
    return UserStrategy(name, specs, warmup, constraints=constraints, needs=needs, positions=rule,
                        origin=(path, source))


def _user_call(fn: Callable[[Any], Any], arg: Any, where: str) -> Any:
    """``fn(arg)`` of the user's code; whatever it raises (SystemExit too) is one UsageError naming ``where``."""
    try:
        return fn(arg)
    except UsageError:
        raise
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - any error of the user's code
        raise UsageError(f"{where} raised {type(exc).__name__}: {_first_line(exc)}: fix the strategy file") from None


def _guarded(predicate: Callable[[Any], Any], where: str) -> Callable[[Any], Any]:
    """A user's constraint predicate (on one configuration, or vectorised on a frame) whose errors are one
    UsageError naming it."""
    return lambda params: _user_call(predicate, params, where)


def jit_rule(fn: Any, specs: Mapping[str, ParamSpec], where: str) -> Any:
    """``positions(indicators, params)`` from a Numba-compilable ``rule(open, high, low, close, <one value of each
    parameter, in PARAM_SPECS order>)`` that returns one configuration's positions (bars,): compiled with bounds
    checks (an index past the last bar raises, it does not read memory), called per configuration (one thread:
    an exception raised in Numba's parallel loops would be lost)."""
    names = list(specs)
    try:
        got = list(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        got = []
    if got[4:] != names or len(got) != 4 + len(names):
        raise UsageError(f"{where}{tuple(got)}: its arguments must be (open, high, low, close, {', '.join(names)}): "
                         "the price arrays, then one value of each parameter in PARAM_SPECS order")
    import numba as nb

    args = ", ".join(f"p{i}" for i in range(len(names)))
    scope = {"nb": nb, "np": np, "rule": nb.njit(boundscheck=True)(fn)}
    exec(f"def drive(o, h, l, c, {args}):\n"  # noqa: S102 - generated from the parameter count only
         "    out = np.empty((c.shape[0], p0.shape[0]))\n"
         "    for j in range(p0.shape[0]):\n"
         f"        r = rule(o, h, l, c, {', '.join(f'p{i}[j]' for i in range(len(names)))})\n"
         "        if r.ndim != 1 or r.shape[0] != c.shape[0]:\n"
         "            raise ValueError('the rule must return one position per bar (an array as long as close)')\n"
         "        out[:, j] = r\n"
         "    return out\n", scope)
    drive = nb.njit(boundscheck=True)(scope["drive"])
    types = {k: {int: np.int64, float: np.float64, bool: np.bool_}[s.type] for k, s in specs.items()}

    def positions(ind: Indicators, params: Mapping[str, Any]) -> np.ndarray:
        prices = [np.array(a, dtype=np.float64) for a in (ind.open, ind.high, ind.low, ind.close)]  # own copies
        values = [np.ascontiguousarray(params[k], dtype=types[k]) for k in names]
        try:
            return drive(*prices, *values)
        except nb.core.errors.NumbaError as exc:
            raise UsageError(f"{where} could not be compiled by Numba: {_first_line(exc)}") from None
        except IndexError as exc:
            raise UsageError(f"{where} read outside the price arrays ({exc}): at bar t read bars 0..t only (a read "
                             "past the last bar looks ahead)") from None

    return positions


def wanted_positions(strat: UserStrategy, prices: Any, configs: Any, hi: int | None = None) -> np.ndarray:
    """The user strategy's positions (bars 0..hi-1 x configurations, float64, NaN = flat) on ``prices`` (any object
    with open/high/low/close arrays) for a configuration frame, checked: shape, values, no exception escapes."""
    hi = len(prices.close) if hi is None else hi
    ind = Indicators(prices.open[:hi], prices.high[:hi], prices.low[:hi], prices.close[:hi])
    params = {k: configs[k].to_numpy() for k in strat.specs}
    k = len(configs)
    where = f"{strat.origin[0] if strat.origin else 'strategy'}: {strat.name}.positions"
    try:
        raw = np.asarray(strat.positions(ind, params))
    except UsageError:
        raise
    except SystemExit as exc:
        raise UsageError(f"{where} called sys.exit({exc.code!r}): a strategy must return its positions, not exit"
                         ) from None
    except Exception as exc:  # noqa: BLE001 - any error of the user's rule
        raise UsageError(f"{where} raised {type(exc).__name__}: {_first_line(exc)}: fix the strategy file") from None
    if raw.dtype.kind not in "biuf":  # complex, object, text: never silently cast (a complex's imaginary part lost)
        raise UsageError(f"{where} returned values of type {raw.dtype}: positions must be real numbers, 1 (long), "
                         "-1 (short), 0 or NaN (flat)")
    out = raw.astype(np.float64, copy=False)
    if out.shape != (hi, k):
        raise UsageError(f"{where} returned an array of shape {out.shape}, want (bars, configurations) = ({hi}, {k}): "
                         "one column per configuration (params values are arrays of one value per configuration)")
    bad = ~(np.isnan(out) | (out == 0.0) | (out == 1.0) | (out == -1.0))
    if bad.any():
        t, j = np.argwhere(bad)[0]
        raise UsageError(f"{where} returned {out[t, j]!r} at bar {t}: positions must be 1 (long), -1 (short), 0 or "
                         "NaN (flat)")
    return out


def positions_arrays(strat: UserStrategy, prices: Any, configs: Any, hi: int) -> tuple[np.ndarray, np.ndarray,
                                                                                      np.ndarray]:
    """The engine's (table, row indices + flag, floats) for a user strategy: row j of the table is configuration
    j's positions, read by the kernels' POSITIONS rule."""
    rows = np.ascontiguousarray(wanted_positions(strat, prices, configs, hi).T)
    k = rows.shape[0]
    cfg_ints = np.zeros((k, 3), dtype=np.int64)
    cfg_ints[:, 0] = cfg_ints[:, 1] = np.arange(k)
    return rows, cfg_ints, np.zeros((k, 2))


class _Series:
    """Synthetic OHLC prices for the self-check (a seeded random walk)."""

    def __init__(self, n: int) -> None:
        rng = np.random.default_rng(20261201)
        self.close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.015, n)))
        self.open = self.close * np.exp(rng.normal(0.0, 0.004, n))
        self.high = np.maximum(self.open, self.close) * (1.0 + rng.uniform(0.0, 0.01, n))
        self.low = np.minimum(self.open, self.close) * (1.0 - rng.uniform(0.0, 0.01, n))


def _sample_configs(strat: Strategy, n: int = 8) -> pd.DataFrame:
    """The defaults plus up to ``n - 1`` random valid configurations on the specs' step grids."""
    rng = np.random.default_rng(7)
    rows = [{k: s.default for k, s in strat.specs.items()}]
    for _ in range(50 * n):
        if len(rows) >= n:
            break
        row = {}
        for k, s in strat.specs.items():
            if s.type is bool:
                row[k] = bool(rng.integers(2))
            else:
                steps = int(np.floor((s.max - s.min) / s.step + 1e-9))
                v = s.min + s.step * int(rng.integers(steps + 1))
                row[k] = int(round(v)) if s.type is int else float(v)
        if not validate_params(strat, row):
            rows.append(row)
    return pd.DataFrame(rows)


def self_check_cuts(n: int = SELF_CHECK_BARS) -> list[int]:
    """The prefix lengths the look-ahead check compares, ascending: fixed, seeded random and the last bars."""
    rng = np.random.default_rng(20261206)
    random_cuts = rng.integers(30, n - 1, SELF_CHECK_RANDOM_CUTS)
    last = range(n - SELF_CHECK_LAST_BARS, n)
    return sorted({*(c for c in SELF_CHECK_FIXED_CUTS if c < n), *map(int, random_cuts), *last})


def self_check(strat: StrategyLike, path: str = "") -> None:
    """Run a user strategy on a synthetic series: shape and values (:func:`wanted_positions`), then look-ahead --
    at every cut of :func:`self_check_cuts`, the positions computed without the later bars must equal the full
    run's over the whole prefix (NaN only where the full run has NaN)."""
    strat = get_strategy(strat)
    series = _Series(SELF_CHECK_BARS)
    configs = _sample_configs(strat)
    strat.warmup({k: configs[k].to_numpy() for k in strat.specs})  # its values checked (finite, whole, >= 0)
    full = wanted_positions(strat, series, configs)
    for cut in self_check_cuts(SELF_CHECK_BARS):
        part = wanted_positions(strat, series, configs, cut)
        same = (part == full[:cut]) | (np.isnan(part) & np.isnan(full[:cut]))
        if not same.all():
            t, j = np.argwhere(~same)[0]
            raise UsageError(f"{path or strat.name}: {strat.name}.positions looks ahead: its position at bar {t} "
                             f"is {full[t, j]:g} on the full series but {part[t, j]:g} when the bars from {cut} on "
                             f"are removed (configuration {configs.iloc[j].to_dict()}): use only bars up to each bar "
                             "(no shift(-1), np.roll(x, -1), centred windows or whole-series statistics)")
