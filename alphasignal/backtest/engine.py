"""Engine core: price validation, memory-bounded chunks, and dispatch to a backend.

``simulate`` runs validated configurations of one strategy over one price series and returns the raw
accumulators (see ``kernels.ACC``), optional per-block return sums (for PBO) and optional return series. It sees
the strategy only through its interface (``config_parts``, ``row_bytes``, ``chunk_arrays``, ``kernel_rule``: see
``strategies.py``), the same for a built-in and for a user's strategy.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..config import SweepConfig
from ..errors import UsageError
from ..evaluation.costs import cost_model
from ..evaluation.metrics import periods_per_year, rf_per_bar
from . import kernels, lanes, vector
from .strategies import Strategy
from .xp import Backend

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Prices:
    """Validated price arrays of one ticker."""

    ticker: str
    index: pd.Index
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray

    @property
    def n(self) -> int:
        return len(self.close)


def as_frames(data: pd.DataFrame | Mapping[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """``{ticker: frame}`` from one frame (named by ``attrs['ticker']`` or ``data``) or a mapping."""
    if isinstance(data, pd.DataFrame):
        return {str(data.attrs.get("ticker", "data")): data}
    if isinstance(data, Mapping) and data and all(isinstance(v, pd.DataFrame) for v in data.values()):
        return {str(k): v for k, v in data.items()}
    raise UsageError("data must be a DataFrame with a Close column or a non-empty {ticker: DataFrame} mapping")


def prepare_prices(df: pd.DataFrame, ticker: str, needs: Sequence[str] = ("Close",)) -> Prices:
    """Check the columns a strategy needs: present, finite and > 0 (one-line UsageError naming the bar)."""
    cols = {str(c).lower(): c for c in df.columns}
    arrays = {}
    for name in ("Open", "High", "Low", "Close"):
        if name.lower() not in cols:
            if name in needs:
                raise UsageError(f"{ticker}: column {name!r} missing: provide {', '.join(needs)}")
            continue
        a = pd.to_numeric(df[cols[name.lower()]], errors="coerce").to_numpy(dtype="float64")
        bad = ~np.isfinite(a) | (a <= 0)
        if bad.any():
            i = int(bad.argmax())
            raise UsageError(f"{ticker}: {name} has {int(bad.sum())} NaN/zero/negative price(s), first at row {i} "
                             f"({df.index[i]}): clean the data (e.g. df.dropna()) before backtesting")
        arrays[name] = np.ascontiguousarray(a)
    if len(df) < 3:
        raise UsageError(f"{ticker}: only {len(df)} bars: a backtest needs at least 3")
    close = arrays["Close"]
    return Prices(ticker, df.index, arrays.get("Open", close), arrays.get("High", close), arrays.get("Low", close),
                  close)


def cost_factors(opts: SweepConfig) -> tuple[float, float]:
    """(buy, sell) price multipliers of the cost model (``evaluation.costs``): (1 + slip)(1 + fee) and
    (1 - slip)(1 - fee)."""
    costs = cost_model(opts.fees_bps, opts.slippage_bps)
    return costs.buy_mult, costs.sell_mult


def annualisation(prices: Prices, opts: SweepConfig) -> float:
    """Bars per year: ``opts.periods_per_year`` when set, else inferred from the index spacing."""
    return float(opts.periods_per_year) if opts.periods_per_year > 0 else periods_per_year(prices.index)


def _plan_chunks(codes: np.ndarray, row_bytes: int, cfg_bytes: int, budget: int) -> list[np.ndarray]:
    """Group configurations so each chunk's indicator rows + per-config outputs fit ``budget``, each chunk in run
    order: sorted by their last indicator row, then the first, so neighbours share rows (the 10,948-config MA sweep
    runs 1.3x faster than in grid order, its slow-MA rows no longer cycling through the cache). Chunks are runs of
    that order, grown greedily piece by piece (a piece being small enough to fit even if all its rows are new)."""
    order = np.lexsort(codes.T)
    ids, uniq = pd.factorize(codes.ravel())
    if len(uniq) * row_bytes + len(codes) * cfg_bytes <= budget:
        return [order]
    slots = codes.shape[1]
    if slots * row_bytes + cfg_bytes > budget:
        need = (slots * row_bytes + cfg_bytes) / 2**20
        raise UsageError(f"max memory {budget / 2**20:.0f} MB is below one configuration's need ({need:.1f} MB): "
                         "raise --max-memory")
    ids = ids.reshape(codes.shape)[order]
    piece = max(1, budget // (slots * row_bytes + cfg_bytes))
    seen = np.zeros(len(uniq), dtype=bool)
    cuts, first, n_rows = [], 0, 0
    for a in range(0, len(order), piece):
        b = min(a + piece, len(order))
        rows = np.unique(ids[a:b])
        new = rows[~seen[rows]]
        if (n_rows + len(new)) * row_bytes + (b - first) * cfg_bytes > budget:
            cuts.append(a)
            seen[:], first, n_rows, new = False, a, 0, rows
        seen[new] = True
        n_rows += len(new)
    return np.split(order, cuts)


def per_config_bytes(engine: str, bars: int, n_blocks: int, want_rets: bool, kernel: str = "blocks") -> int:
    """Working memory of one configuration in a chunk, beside the indicator rows: the fused kernel's state, block
    sums and return series (twice with cupy: device and host copies), and for numpy a positions matrix + 2-D
    indicator gathers. The fused kernels need nothing per bar unless returns are asked; numba's ``lanes`` kernel
    adds its per-configuration work rows."""
    outputs = 2 * n_blocks + (bars if want_rets else 0)
    if engine == "numba":
        return 8 * (kernels.NSTATE + outputs + (lanes.NROWS if kernel == "lanes" else 0))
    if engine == "cupy":
        return 16 * (kernels.NSTATE + outputs)
    return 8 * (kernels.NACC + outputs) + 17 * bars


def kernel_of(opts: SweepConfig, backend: Backend) -> str:
    """The numba kernel ``opts`` asks for (``sweep.kernel``), or "blocks" on the other engines (no lanes)."""
    return opts.kernel if backend.engine == "numba" else "blocks"


def plan_chunks(strat: Strategy, codes: np.ndarray, n_bars: int, per_config: int, max_memory_mb: float,
                kernel: str = "blocks") -> list[np.ndarray]:
    """:func:`_plan_chunks` for ``strat``'s configurations (``codes``: the first of its ``config_parts``) over
    ``n_bars``; numba's ``lanes`` kernel holds a transposed copy of the indicator rows too."""
    copies = 2 if kernel == "lanes" else 1
    return _plan_chunks(codes, copies * strat.row_bytes(n_bars), per_config, int(max_memory_mb) * 2**20)


def simulate(prices: Prices, strat: Strategy, configs: pd.DataFrame, opts: SweepConfig, backend: Backend, *,
             lo: int = 0, hi: int | None = None, n_blocks: int = 0, want_rets: bool = False,
             on_chunk: Callable[[int], None] | None = None, stops: tuple[int, ...] = ()
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Accumulators (k x NACC), block sums (k x n_blocks x 2) and returns (bars x k, if asked) over ``lo..hi-1``.
    With ``stops`` (numba and cupy: see :func:`kernels.run_numba`) the accumulators are ``len(stops) x k x NACC``, one
    set per window ``lo..s-1``, all from one pass."""
    if stops and backend.engine == "numpy":
        raise UsageError("accumulators at several stops need the numba or cupy engine (got numpy)")
    hi = prices.n if hi is None else hi
    m, k = hi - lo, len(configs)
    edges = np.linspace(lo, hi, n_blocks + 1).round().astype(np.int64) if n_blocks > 0 else np.zeros(1, np.int64)
    buy_mult, sell_mult = cost_factors(opts)
    rf_bar = rf_per_bar(opts.risk_free, annualisation(prices, opts))
    short_ok, next_open = opts.mode == "long_short", opts.fill == "next_open"
    kind = strat.kernel_rule(opts.entry)
    parts = strat.config_parts(configs)
    kernel = kernel_of(opts, backend)
    per_config = per_config_bytes(backend.engine, m, n_blocks, want_rets, kernel) + 16 * kernels.NSTATE * len(stops)
    chunks = plan_chunks(strat, parts[0], prices.n, per_config, opts.max_memory_mb, kernel)
    acc = np.empty((len(stops), k, kernels.NACC) if stops else (k, kernels.NACC))
    blocks = np.zeros((k, n_blocks, 2))
    rets = np.empty((m, k)) if want_rets else np.empty((0, 0))
    for idx in chunks:
        table, cfg_ints, cfg_floats = strat.chunk_arrays(parts, configs, prices, idx, hi, backend.engine == "numba")
        args = dict(lo=lo, hi=hi, buy_mult=buy_mult, sell_mult=sell_mult, rf_bar=rf_bar, edges=edges,
                    want_rets=want_rets)
        if backend.engine == "numba":
            a, b, r = kernels.run_numba(kind, prices.close, prices.open, table, cfg_ints, cfg_floats, short_ok=short_ok,
                                        next_open=next_open, stops=stops, kernel=kernel, **args)
        elif backend.engine == "cupy":
            from .gpu import run_gpu

            a, b, r = run_gpu(kind, prices.close, prices.open, table, cfg_ints, cfg_floats, short_ok=short_ok,
                              next_open=next_open, stops=stops, **args)
        else:
            pos = vector.positions(np, strat, kind, prices.close, table, cfg_ints, cfg_floats, short_ok=short_ok,
                                   lo=lo, hi=hi)
            a, b, r = vector.portfolio(np, pos, prices.close, prices.open, next_open=next_open, **args)
        acc[..., idx, :] = a
        if n_blocks:
            blocks[idx] = b
        if want_rets:
            rets[:, idx] = r
        del table, a, b, r  # free this chunk's indicator table before the next one is built
        if on_chunk:
            on_chunk(len(idx))
    return acc, blocks, rets
