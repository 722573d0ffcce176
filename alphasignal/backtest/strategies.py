"""Strategies: one :class:`Strategy` object per strategy, in one registry (:data:`REGISTRY`).

A strategy carries its name, ``PARAM_SPECS``, cross-parameter constraints, the warm-up it needs, the price
columns it reads, ``rows(columns)`` -- the keys of the indicator series (e.g. ``("sma", 20)``) its signal compares,
computed for all configurations at once from their parameter columns -- and its signal rule: the id of its rule
in the compiled kernels (``kernels.target_position``, for Numba and, through numba-cuda, the GPU) and the same rule
vectorised over configurations for the NumPy engine (``step``). Indicator series are computed once per
unique key (:func:`build_rows`) and shared by every configuration that reads them. The engines take the object
and dispatch on its fields; none of them names a strategy.

The engine sees every strategy through three methods and nothing else: :meth:`Strategy.config_parts` (what each
configuration reads), :meth:`Strategy.row_bytes` (memory per table row, for planning chunks) and
:meth:`Strategy.chunk_arrays` (the table, row indices and floats the kernels read). A built-in builds indicator rows;
a strategy written by a user (``user_strategy.UserStrategy``, a subclass) puts its positions in the rows instead,
read by the POSITIONS rule.

Adding a built-in strategy = one ``Strategy`` entry here (specs, rows, warm-up, vectorised step, rule id) plus its
rule in ``kernels.target_position`` (the GPU kernel compiles the same function), tested against the reference loop
in ``tests/test_backtest.py``.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from ..errors import UsageError
from ..market import indicators as ind

MAX_VALUES_PER_PARAMETER = 1_000_000
DEFAULT_MAX_CONFIGS = 20_000_000  # 20M configs x 10k bars = 2e11 config*bars: minutes at ~1 G config*bars/s


class ParamSpec(NamedTuple):
    """Search range of one parameter: ``min``..``max`` on a ``step`` grid, of ``type`` int, float or bool."""

    min: float
    max: float
    step: float
    type: type
    default: Any = None


RowKey = tuple  # ("sma", 20), ("macd_sig", 12, 26, 9), ...
ConfigParts = tuple[np.ndarray, np.ndarray, np.ndarray]  # row keys (k x slots), flags (k,), floats (k x 2)
Columns = Mapping[str, Any]  # parameter name -> array of values (a DataFrame of configurations works)
INDICATOR_ROWS = ("sma", "ema", "std", "rsi", "macd_line", "macd_sig", "dc_hi", "dc_lo")


# Signal-rule ids of the compiled kernels (``kernels.target_position``, CPU and GPU); a Strategy names its own.
# CROSS: a crossover strategy under entry="cross"; POSITIONS: the rule reads a matrix of wanted positions (users').
CROSSOVER, BOLLINGER, RSI, DONCHIAN, CROSS, POSITIONS = range(6)
RULES = (CROSSOVER, BOLLINGER, RSI, DONCHIAN, CROSS, POSITIONS)  # every rule id, e.g. to compile them all


@dataclass(frozen=True)
class Strategy:
    """One strategy: specs, warm-up bars, signal rule (kernel id + vectorised ``step``), indicator rows, floats, a
    flag, constraints (message, predicate) and the price columns it needs.

    Every callable but ``step`` is arithmetic on the columns ``p[name]`` of many configurations at once (a
    DataFrame or a dict of arrays) and returns arrays (or scalars, broadcast). ``rows`` gives the indicator series
    each configuration reads, as slots ``(name, *int args)`` whose name may vary per configuration (an array).
    ``step(xp, pos, c, x0, x1, flag, f0, f1, neg)`` is the rule vectorised over configurations (``neg`` the short
    side: -1, or 0 when long-only); ``stateless`` rules ignore ``pos``. A user strategy (``user_strategy.py``)
    overrides the engine's three methods and runs the POSITIONS rule instead of rows; ``origin`` is its (file,
    source), None for a built-in."""

    name: str
    specs: dict[str, ParamSpec]
    warmup: Callable[[Columns], Any]
    rule: int = POSITIONS
    step: Callable[..., Any] | None = None
    rows: Callable[[Columns], tuple[tuple[Any, ...], ...]] | None = None
    floats: Callable[[Columns], tuple[Any, Any]] = lambda p: (0.0, 0.0)
    flag: Callable[[Columns], Any] = lambda p: 0
    constraints: tuple[tuple[str, Callable[[Columns], Any]], ...] = field(default_factory=tuple)
    needs: tuple[str, ...] = ("Close",)
    crossover: bool = False  # a fast line vs a slow one: entry="cross" runs the CROSS rule
    stateless: bool = False
    origin: tuple[str, str] | None = None  # a user strategy's (file, source): how another process rebuilds it

    def kernel_rule(self, entry: str) -> int:
        """The kernel rule this strategy runs under ``entry`` (state | cross)."""
        return CROSS if entry == "cross" and self.crossover else self.rule

    def config_parts(self, configs: pd.DataFrame) -> ConfigParts:
        """Packed indicator row keys (k x slots), flags (k,) and floats (k x 2) of a configuration frame."""
        k = len(configs)
        flags = np.broadcast_to(np.asarray(self.flag(configs), dtype=np.int64), (k,))
        floats = np.empty((k, 2))
        floats[:, 0], floats[:, 1] = (np.asarray(v, dtype="float64") for v in self.floats(configs))
        return row_codes(self, configs), flags, floats

    def row_bytes(self, n_bars: int) -> int:
        """Bytes one row of the table (:meth:`chunk_arrays`) takes over ``n_bars`` bars: the engine plans its
        memory-bounded chunks with it."""
        return 8 * n_bars

    def chunk_arrays(self, parts: ConfigParts, configs: pd.DataFrame, prices: Any, idx: np.ndarray | None = None,
                     hi: int | None = None, compiled: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The kernels' arrays for configurations ``idx`` (all when None) of ``configs``, whose
        :meth:`config_parts` are ``parts``, on ``prices`` (an object with high/low/close arrays) up to bar ``hi``:
        the table (one indicator row per unique key), row indices and flag (k x 3) and floats (k x 2).
        ``compiled``: build the table's slow rows in compiled code (see :func:`build_rows`)."""
        return config_arrays(parts, prices, idx, compiled)

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        """Pickled by reference: a built-in by its name (a user strategy by its source: see ``user_strategy``)."""
        return get_strategy, (self.name,)


def _one(xp: Any) -> Any:
    return xp.int8(1)


def _crossover_step(xp, pos, c, x0, x1, flag, f0, f1, neg):
    """Long above the slow line, short (or flat) below, flat on a tie."""
    return xp.where(x0 > x1, _one(xp), xp.where(x0 < x1, neg, xp.int8(0)))


def _bollinger_step(xp, pos, c, x0, x1, flag, f0, f1, neg):
    """x0 = middle band, x1 = std: breakout (flag 0) enters beyond a band, mean reversion fades it; both exit
    back at the middle."""
    up, dn, zero = x0 + f0 * x1, x0 - f0 * x1, xp.int8(0)
    brk = xp.where(c > up, _one(xp), xp.where(c < dn, neg, xp.where(((pos == 1) & (c < x0)) | ((pos == -1) & (c > x0)),
                                                                     zero, pos)))
    rev = xp.where(c < dn, _one(xp), xp.where(c > up, neg, xp.where(((pos == 1) & (c > x0)) | ((pos == -1) & (c < x0)),
                                                                     zero, pos)))
    return xp.where(flag == 0, brk, rev)


def _rsi_step(xp, pos, c, x0, x1, flag, f0, f1, neg):
    """x0 = RSI: long below ``lower`` (f0), short (or flat) above ``upper`` (f1), else hold."""
    return xp.where(x0 < f0, _one(xp), xp.where(x0 > f1, neg, pos))


def _donchian_step(xp, pos, c, x0, x1, flag, f0, f1, neg):
    """x0/x1 = the previous bars' highest high / lowest low: long above, short (or flat) below, else hold."""
    return xp.where(c > x0, _one(xp), xp.where(c < x1, neg, pos))


def positions_step(xp, pos, c, x0, x1, flag, f0, f1, neg):
    """The POSITIONS rule: x0 is the wanted position (> 0 long, < 0 short or flat, 0 flat)."""
    return xp.where(x0 > 0, _one(xp), xp.where(x0 < 0, neg, xp.int8(0)))


def _ma_rows(p: Columns) -> tuple[tuple[Any, ...], ...]:
    kind = pd.Categorical.from_codes(np.asarray(p["use_ema"], dtype=np.int8), ["sma", "ema"])  # no string per row
    return (kind, p["short_period"]), (kind, p["long_period"])


_STRATEGY_LIST = [
    Strategy(
        "MA_Crossover",
        {"short_period": ParamSpec(2, 200, 1, int, 10), "long_period": ParamSpec(5, 400, 1, int, 50),
         "use_ema": ParamSpec(0, 1, 1, bool, False)},
        warmup=lambda p: p["long_period"] - 1,
        rule=CROSSOVER, step=_crossover_step, stateless=True, crossover=True,
        rows=_ma_rows,
        constraints=(("short_period must be < long_period", lambda p: p["short_period"] < p["long_period"]),),
    ),
    Strategy(
        "Bollinger_Breakout",
        {"period": ParamSpec(5, 200, 1, int, 20), "num_std": ParamSpec(0.5, 4.0, 0.05, float, 2.0),
         "mean_reversion": ParamSpec(0, 1, 1, bool, False)},
        warmup=lambda p: p["period"] - 1,
        rule=BOLLINGER, step=_bollinger_step,
        rows=lambda p: (("sma", p["period"]), ("std", p["period"])),
        floats=lambda p: (p["num_std"], 0.0),
        flag=lambda p: p["mean_reversion"],
    ),
    Strategy(
        "RSI_Reversion",
        {"period": ParamSpec(2, 100, 1, int, 14), "lower": ParamSpec(1, 50, 1, float, 30.0),
         "upper": ParamSpec(50, 99, 1, float, 70.0)},
        warmup=lambda p: p["period"] + 0,
        rule=RSI, step=_rsi_step,
        rows=lambda p: (("rsi", p["period"]),),
        floats=lambda p: (p["lower"], p["upper"]),
        constraints=(("lower must be < upper", lambda p: p["lower"] < p["upper"]),),
    ),
    Strategy(
        "MACD",
        {"fast": ParamSpec(2, 100, 1, int, 12), "slow": ParamSpec(3, 300, 1, int, 26),
         "signal": ParamSpec(2, 100, 1, int, 9)},
        warmup=lambda p: p["slow"] + p["signal"] - 2,
        rule=CROSSOVER, step=_crossover_step, stateless=True, crossover=True,  # the MACD line vs its signal line
        rows=lambda p: (("macd_line", p["fast"], p["slow"]), ("macd_sig", p["fast"], p["slow"], p["signal"])),
        constraints=(("fast must be < slow", lambda p: p["fast"] < p["slow"]),),
    ),
    Strategy(
        "Donchian_Breakout",
        {"channel": ParamSpec(2, 400, 1, int, 20)},
        warmup=lambda p: p["channel"] + 0,
        rule=DONCHIAN, step=_donchian_step,
        rows=lambda p: (("dc_hi", p["channel"]), ("dc_lo", p["channel"])),
        needs=("High", "Low", "Close"),
    ),
]

REGISTRY: dict[str, Strategy] = {s.name: s for s in _STRATEGY_LIST}  # the one registry; users' join it on loading
STRATEGIES: tuple[str, ...] = tuple(REGISTRY)  # the built-in names
PARAM_SPECS: dict[str, dict[str, ParamSpec]] = {s.name: s.specs for s in _STRATEGY_LIST}  # a view of REGISTRY
StrategyLike = str | Strategy


def _hint(name: str, options: Iterable[str]) -> str:
    opts = list(options)
    close = difflib.get_close_matches(name, opts, n=1)
    return f"did you mean {close[0]!r}?" if close else f"valid: {', '.join(opts)}"


def get_strategy(name: StrategyLike) -> Strategy:
    """The registered strategy ``name`` (a Strategy object is returned as it is); unknown names raise UsageError
    with a suggestion."""
    if isinstance(name, Strategy):
        return name
    if name not in REGISTRY:
        raise UsageError(f"unknown strategy {name!r}: {_hint(name, REGISTRY)} (set --strategy, or --strategy-file "
                         "for a strategy of your own)")
    return REGISTRY[name]


def register(strat: Strategy) -> Strategy:
    """Add a user strategy to the registry (a built-in name is refused; a reload replaces the previous entry)."""
    if strat.name in STRATEGIES:
        raise UsageError(f"strategy {strat.name!r} is a built-in name: rename your strategy class")
    REGISTRY[strat.name] = strat
    PARAM_SPECS[strat.name] = strat.specs
    return strat


def _type_problem(name: str, value: Any, spec: ParamSpec) -> str | None:
    if spec.type is bool:
        return None if isinstance(value, (bool, np.bool_)) else f"{name}={value!r} must be true or false"
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        return f"{name}={value!r} must be a number"
    if not math.isfinite(float(value)):
        return f"{name}={value!r} must be finite"
    if spec.type is int and float(value) != int(value):
        return f"{name}={value!r} must be an integer (periods are whole bars)"
    if not spec.min <= float(value) <= spec.max:
        return f"{name}={value!r} outside [{spec.min}, {spec.max}]"
    return None


def validate_params(strategy: StrategyLike, params: Mapping[str, Any]) -> list[str]:
    """Problems with one configuration (unknown/missing names, types, ranges, constraints); empty = valid."""
    strat = get_strategy(strategy)
    problems = [f"unknown parameter {k!r} for {strat.name}: {_hint(k, strat.specs)}" for k in params
                if k not in strat.specs]
    problems += [f"missing parameter {k!r}" for k in strat.specs if k not in params]
    if problems:
        return problems
    problems = [msg for k, spec in strat.specs.items() if (msg := _type_problem(k, params[k], spec))]
    if problems:
        return problems
    return [f"{msg} (got {dict(params)})" for msg, ok in strat.constraints if not ok(params)]


def normalise(strategy: StrategyLike, params: Mapping[str, Any]) -> dict[str, Any]:
    """Cast a valid configuration's values to their spec types (int periods, bool flags)."""
    specs = get_strategy(strategy).specs
    return {k: specs[k].type(params[k]) for k in specs}


def _expand_values(name: str, spec: ParamSpec, raw: Any) -> list[Any]:
    """A grid entry -> list of values: a list, a scalar, or a range table {min, max, step} (inclusive)."""
    if isinstance(raw, Mapping):
        unknown = set(raw) - {"min", "max", "step"}
        if unknown or not {"min", "max"} <= set(raw):
            raise UsageError(f"grid.{name}: a range must be {{min=.., max=.., step=..}} (got {dict(raw)})")
        lo, hi, step = float(raw["min"]), float(raw["max"]), float(raw.get("step", spec.step or 1))
        if not (math.isfinite(lo) and math.isfinite(hi) and step > 0 and hi >= lo):
            raise UsageError(f"grid.{name}: need finite min <= max and step > 0 (got {dict(raw)})")
        count = math.floor((hi - lo) / step + 1e-9) + 1  # counted before anything is allocated
        if count > MAX_VALUES_PER_PARAMETER:
            raise UsageError(f"grid.{name}: the range {dict(raw)} has {count:.3g} values (at most "
                             f"{MAX_VALUES_PER_PARAMETER:,}): use a larger step")
        vals = lo + step * np.arange(count)
        return [int(round(v)) if spec.type is int else round(float(v), 12) for v in vals]
    vals = list(raw) if isinstance(raw, (list, tuple, range, np.ndarray)) else [raw]
    if not vals:
        raise UsageError(f"grid.{name} is empty: give at least one value")
    return vals


def expand_grid(strategy: StrategyLike, grid: Mapping[str, Any] | list[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Cartesian product of a grid (dict of lists/ranges; missing parameters take their defaults) or a list of
    configs. Malformed values raise UsageError; constraint violations are left for :func:`split_valid`."""
    return grid_frame(strategy, grid).to_dict("records")


def grid_frame(strategy: StrategyLike, grid: Mapping[str, Any] | list[Mapping[str, Any]], *,
               max_configs: int = DEFAULT_MAX_CONFIGS) -> pd.DataFrame:
    """:func:`expand_grid` as a DataFrame (one row per configuration, columns in PARAM_SPECS order). A grid of more
    than ``max_configs`` configurations is refused before the product is built."""
    strat = get_strategy(strategy)
    strategy = strat.name
    if isinstance(grid, list):
        if not grid:
            raise UsageError("the grid is empty: give at least one configuration")
        for cfg in grid:
            hard = [p for p in validate_params(strat, cfg) if not any(m in p for m, _ in strat.constraints)]
            if hard:
                raise UsageError(f"{strategy} grid: {hard[0]}: fix the grid values")
        return pd.DataFrame([{k: cfg[k] for k in strat.specs} for cfg in grid])
    if not grid:
        raise UsageError(f"the grid is empty: set sweep.grid, e.g. --set 'sweep.grid={{{next(iter(strat.specs))}"
                         "=[10, 20]}'")
    for k in grid:
        if k not in strat.specs:
            raise UsageError(f"unknown parameter {k!r} for {strategy} in the grid: {_hint(k, strat.specs)}")
    axes = {}
    for k, spec in strat.specs.items():
        vals = _expand_values(k, spec, grid[k]) if k in grid else [spec.default]
        for v in vals:
            if msg := _type_problem(k, v, spec):
                raise UsageError(f"{strategy} grid: {msg}: fix the grid values")
        axes[k] = np.asarray(vals)
    total = math.prod(len(v) for v in axes.values())
    if total > max_configs:
        raise UsageError(f"the {strategy} grid has {total:,} configurations, over sweep.max_configs={max_configs:,}: "
                         "coarsen the grid, or raise sweep.max_configs if you mean it")
    mesh = np.meshgrid(*axes.values(), indexing="ij")  # the Cartesian product, first parameter slowest
    return pd.DataFrame({k: m.ravel() for k, m in zip(axes, mesh, strict=True)})


def as_config_frame(strategy: StrategyLike, configs: list[dict[str, Any]] | pd.DataFrame) -> pd.DataFrame:
    """Configurations as a frame: one column per parameter (PARAM_SPECS order), one row each, index 0..k-1."""
    names = list(get_strategy(strategy).specs)
    if isinstance(configs, pd.DataFrame):
        return configs[names].reset_index(drop=True)
    return pd.DataFrame([{k: c[k] for k in names} for c in configs], columns=names)


def json_value(v: Any) -> Any:
    """A metric or parameter as a plain JSON value: NumPy scalars as Python ones, NaN/inf as None, timestamps as
    text."""
    if isinstance(v, pd.Timestamp):
        return str(v)
    if isinstance(v, (float, np.floating)):
        return float(v) if np.isfinite(v) else None
    return v.item() if isinstance(v, np.generic) else v


def config_at(frame: pd.DataFrame, i: int) -> dict[str, Any]:
    """Row ``i`` of a configuration frame as a dict of plain Python values (int, float, bool)."""
    return {k: v.item() if isinstance(v, np.generic) else v for k, v in frame.iloc[i].items()}


def split_valid(strategy: StrategyLike, configs: list[dict[str, Any]] | pd.DataFrame, n_bars: int
                ) -> tuple[pd.DataFrame, list[tuple[dict, str]]]:
    """(frame of valid configs, typed; [(config, reason)] skipped): constraint violations and warm-ups longer
    than the data."""
    strat = get_strategy(strategy)
    frame = as_config_frame(strat, configs)
    good = np.ones(len(frame), dtype=bool)
    reason = np.empty(len(frame), dtype=object)
    for msg, ok in strat.constraints:
        fail = good & ~np.asarray(ok(frame), dtype=bool)
        reason[fail] = msg
        good &= ~fail
    warm = np.asarray(strat.warmup(frame))
    too_long = good & (warm >= n_bars - 1)
    reason[too_long] = [f"needs {w + 2} bars, data has {n_bars}" for w in warm[too_long]]
    good &= ~too_long
    typed = frame[good].astype({k: s.type for k, s in strat.specs.items()}).reset_index(drop=True)
    bad = frame[~good].to_dict("records") if not good.all() else []
    return typed, list(zip(bad, reason[~good], strict=True))


_N_ARGS = {"sma": 1, "ema": 1, "std": 1, "rsi": 1, "macd_line": 2, "macd_sig": 3, "dc_hi": 1, "dc_lo": 1}


def row_codes(strat: Strategy, frame: pd.DataFrame) -> np.ndarray:
    """The indicator rows each configuration reads (k x slots), each key packed in one int64 (:func:`pack_rows`)."""
    k = len(frame)
    slots = strat.rows(frame)
    out = np.empty((k, len(slots)), dtype=np.int64)
    for s, (name, *args) in enumerate(slots):
        out[:, s] = pack_rows(name, args, k, strat.name)
    return out


def pack_rows(name: Any, args: Iterable[Any], k: int, what: str = "indicator") -> np.ndarray:
    """Keys ``(name, *args)`` of ``k`` rows packed in int64s: the name's index in ``INDICATOR_ROWS`` (``name`` one
    for all, or an array or ``pd.Categorical`` of names) and up to three 16-bit integer arguments (scalars or arrays
    of ``k``)."""
    if isinstance(name, pd.Categorical):  # one name per row, as codes: no string comparisons
        code = np.array([INDICATOR_ROWS.index(str(c)) for c in name.categories], dtype=np.int64)[name.codes]
    elif (names := np.asarray(name)).ndim == 0:
        code = np.full(k, INDICATOR_ROWS.index(str(names)), dtype=np.int64)
    else:
        code = np.zeros(k, dtype=np.int64)
        for c, row in enumerate(INDICATOR_ROWS):
            code[names == row] = c
    code <<= 48
    for a, arg in enumerate(args):
        vals = np.broadcast_to(np.asarray(arg, dtype=np.int64), (k,))
        if ((vals < 0) | (vals > 0xFFFF)).any():
            raise ValueError(f"{what}: indicator argument outside 0..65535 in {name!r} rows")
        code |= vals << (32 - 16 * a)
    return code


def decode_row(code: int) -> RowKey:
    """The row key (name, *args) packed by :func:`row_codes`."""
    name = INDICATOR_ROWS[code >> 48]
    return (name, *((code >> sh) & 0xFFFF for sh in (32, 16, 0)[:_N_ARGS[name]]))


def row_keys(strategy: StrategyLike, params: Mapping[str, Any]) -> tuple[RowKey, ...]:
    """The indicator row keys of one configuration, e.g. ``(("sma", 10), ("sma", 50))``."""
    strat = get_strategy(strategy)
    return tuple(decode_row(int(c)) for c in row_codes(strat, as_config_frame(strat, [params]))[0])


def config_arrays(parts: ConfigParts, prices: Any, idx: np.ndarray | None = None, compiled: bool = False
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indicator table (one row per unique key), row indices and flag (k x 3: row a, row b, flag) and floats
    (k x 2) of configurations ``idx`` (all when None) from their :meth:`Strategy.config_parts`."""
    codes, flags, floats = parts if idx is None else (p[idx] for p in parts)
    ids, uniq = pd.factorize(codes.ravel())  # hashing: ~15x faster than np.unique's sort for 1M configurations
    by_code = np.argsort(uniq)  # build_rows wants sorted keys
    rank = np.empty_like(by_code)
    rank[by_code] = np.arange(len(by_code))
    uniq, inv = uniq[by_code], rank[ids].reshape(codes.shape)
    cfg_ints = np.empty((len(codes), 3), dtype=np.int64)
    cfg_ints[:, 0], cfg_ints[:, 1], cfg_ints[:, 2] = inv[:, 0], inv[:, -1], flags
    return build_rows(uniq, prices.high, prices.low, prices.close, compiled), cfg_ints, np.ascontiguousarray(floats)


def build_rows(codes: np.ndarray, high: np.ndarray, low: np.ndarray, close: np.ndarray, compiled: bool = False
               ) -> np.ndarray:
    """Indicator table, one row per packed key in ``codes`` (simple averages share one running sum; sorted codes,
    as ``np.unique`` gives, put them first and they are written in place). With ``compiled`` (the Numba engine,
    which compiles anyway) the simple averages and standard deviations run in compiled code (:mod:`rolling`: the
    same bits, 9x and 2.5x faster); without it they stay on NumPy, so the NumPy engine's cold start compiles
    nothing."""
    keys = [decode_row(int(c)) for c in codes]
    table = np.empty((len(keys), len(close)))
    sma_at = [i for i, key in enumerate(keys) if key[0] == "sma"]
    periods = [keys[i][1] for i in sma_at]
    if compiled and sma_at:  # the same bits, rows in parallel
        from .rolling import sma_rows  # here: Numba loads only when a table has these rows
    else:
        sma_rows = ind.sma_rows
    if sma_at == list(range(len(sma_at))):
        sma_rows(close, periods, out=table[:len(sma_at)])
    else:
        table[sma_at] = sma_rows(close, periods)
    macd_at = [i for i, key in enumerate(keys) if key[0] in {"macd_line", "macd_sig"}]
    if macd_at:  # all at once: each EMA computed once (row by row, each MACD row recomputes its EMAs)
        specs = [(keys[i][1], keys[i][2], keys[i][3] if keys[i][0] == "macd_sig" else None) for i in macd_at]
        if macd_at == list(range(macd_at[0], macd_at[-1] + 1)):  # sorted codes: one block of rows, written in place
            ind.macd_rows(close, specs, out=table[macd_at[0]:macd_at[-1] + 1])
        else:
            table[macd_at] = ind.macd_rows(close, specs)
    std_at = [i for i, key in enumerate(keys) if key[0] == "std"] if compiled else []
    if std_at:  # rows in parallel: the same bits as build_row's NumPy formula
        from .rolling import window_std_rows  # here: Numba loads only when a table has these rows

        std_rows = np.empty((len(std_at), len(close)))
        window_std_rows(np.ascontiguousarray(close, dtype=np.float64), np.array([keys[i][1] for i in std_at]), std_rows)
        table[std_at] = std_rows
    for i, key in enumerate(keys):
        if key[0] not in {"sma", "macd_line", "macd_sig"} and not (compiled and key[0] == "std"):
            table[i] = build_row(key, high, low, close)
    return table


def build_row(key: RowKey, high: np.ndarray, low: np.ndarray, close: np.ndarray) -> np.ndarray:
    """The indicator series named by ``key`` (NaN during its warm-up; values at t use bars <= t only)."""
    name, *args = key
    if name == "sma":
        return ind.sma(close, args[0])
    if name == "ema":
        return ind.ema(close, args[0])
    if name == "std":
        out = np.full(close.shape, np.nan)
        p = args[0]
        if len(close) >= p:
            out[p - 1:] = np.lib.stride_tricks.sliding_window_view(close, p).std(axis=1)
        return out
    if name == "rsi":
        return ind.rsi(close, args[0])
    if name == "macd_line":
        return ind.macd(close, args[0], args[1], 2)[0]
    if name == "macd_sig":
        return ind.macd(close, *args)[1]
    if name in {"dc_hi", "dc_lo"}:
        ch = args[0]
        src = high if name == "dc_hi" else low
        out = np.full(close.shape, np.nan)
        if len(src) > ch:  # channel of the previous ``ch`` bars, excluding bar t
            win = np.lib.stride_tricks.sliding_window_view(src[:-1], ch)
            out[ch:] = win.max(axis=1) if name == "dc_hi" else win.min(axis=1)
        return out
    raise ValueError(f"unknown indicator row {key!r}")  # pragma: no cover - keys come from REGISTRY
