"""Stage 05's sweep as independent tasks (ticker x block of configurations) for :mod:`.distributed`, and their
reduction back into one frame per ticker -- the same rows, in the same order, bit for bit, wherever they ran.

A block is one of the engine's memory-bounded chunks (``sweep.max_memory_mb``), split further when a cluster has
more workers than the sweep has chunks. Each configuration's metrics depend on that configuration alone, so
splitting changes nothing but where it runs. A ticker swept in one block also gets its DSR/PBO report inside the
task (where the block sums already are: they never travel, and the reports of many tickers run in parallel); a
ticker split over several blocks gets it from the client once its blocks are back. Same function, same numbers.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..config import SweepConfig
from ..evaluation.metrics import METRICS
from ..evaluation.overfitting import dsr_of_best, pbo_from_blocks
from ..fileio import write_atomic
from .distributed import Executor, apply_threads
from .engine import Prices, annualisation, kernel_of, per_config_bytes, plan_chunks
from .strategies import Strategy, config_at, json_value
from .sweep import run_window
from .validation import split_point
from .xp import Backend, uses_jit


@dataclass(frozen=True)
class Block:
    """One task's work: configurations ``idx`` (positions in the ticker's valid frame, which travels with the
    prices, once per worker)."""

    strategy: Strategy
    idx: np.ndarray
    opts: SweepConfig
    backend: Backend
    report: bool = False  # the block is the ticker's whole valid frame: add its DSR/PBO report, drop the sums


@dataclass
class TickerResult:
    """One ticker's reduced results: metrics frame (full, is_, oos_), PBO block sums (``None`` when the report was
    made in the task), seconds spent sweeping, the DSR/PBO report (when asked for) and seconds spent on it."""

    ticker: str
    frame: pd.DataFrame
    blocks: np.ndarray | None
    task_s: float
    report: dict[str, Any] | None = None
    report_s: float = 0.0


def overfitting_report(prices: Prices, strat: Strategy, valid: pd.DataFrame, frame: pd.DataFrame,
                       blocks: np.ndarray, opts: SweepConfig, backend: Backend) -> dict[str, Any]:
    """DSR of the full-sample best configuration and PBO (CSCV) over all configurations of one ticker."""
    ppy = annualisation(prices, opts)
    sharpe = frame["sharpe"].to_numpy()
    if not np.isfinite(sharpe).any():
        return {"dsr": None, "pbo": None, "note": "no configuration has a defined Sharpe ratio"}
    best = int(np.nanargmax(sharpe))
    _, _, rets = run_window(prices, strat, valid.iloc[[best]], opts, backend, want_rets=True)
    dsr = dsr_of_best(rets[:, 0], sharpe / np.sqrt(ppy))
    out: dict[str, Any] = {"best_config": config_at(valid, best), **{k: json_value(v) for k, v in dsr.items()}}
    if blocks.shape[1] and len(valid) >= 2:
        edges = np.linspace(0, prices.n, blocks.shape[1] + 1).round().astype(np.int64)
        res = pbo_from_blocks(blocks, np.diff(edges), jit=uses_jit(backend))
        out.update(pbo=res.pbo, pbo_combinations=res.n_combinations, pbo_combinations_total=res.of_combinations,
                   pbo_logit_median=float(np.median(res.logits)))
    else:
        out["pbo"] = None
    return out


def oos_columns(prices: Prices, strat: Strategy, valid: pd.DataFrame, opts: SweepConfig, backend: Backend
                ) -> pd.DataFrame:
    """is_/oos_ metrics for the time-ordered split; configs whose warm-up exceeds the in-sample part get NaN."""
    cut = split_point(prices.n, opts.test_fraction)
    out = pd.DataFrame(index=range(len(valid)), columns=[f"{p}_{m}" for p in ("is", "oos") for m in METRICS],
                       dtype="float64")
    fits = np.asarray(strat.warmup(valid)) < cut - 1
    if fits.any():
        is_f, _, _ = run_window(prices, strat, valid[fits], opts, backend, lo=0, hi=cut)
        out.loc[fits, [f"is_{m}" for m in METRICS]] = is_f[list(METRICS)].to_numpy()
    oos_f, _, _ = run_window(prices, strat, valid, opts, backend, lo=cut, hi=prices.n)
    out[[f"oos_{m}" for m in METRICS]] = oos_f[list(METRICS)].to_numpy()
    return out


def run_block(data: tuple[Prices, pd.DataFrame], block: Block) -> tuple[Any, ...]:
    """The task: full-sample metrics and PBO block sums, then is_/oos_ metrics, of one block's configurations;
    ``(idx, frame, block sums, seconds)``, or with ``block.report`` ``(idx, frame, None, seconds, report,
    report seconds)``."""
    apply_threads()
    t0 = time.perf_counter()
    prices, configs = data
    valid = configs.iloc[block.idx].reset_index(drop=True)
    frame, blocks, _ = run_window(prices, block.strategy, valid, block.opts, block.backend,
                                  n_blocks=block.opts.pbo_splits)
    frame = pd.concat([frame, oos_columns(prices, block.strategy, valid, block.opts, block.backend)], axis=1)
    task_s = time.perf_counter() - t0
    if not block.report:
        return block.idx, frame, blocks, task_s
    order = np.argsort(block.idx, kind="stable")  # the ticker's config order, as the client would reduce it
    idx, frame, blocks = block.idx[order], frame.iloc[order].reset_index(drop=True), blocks[order]
    report = overfitting_report(prices, block.strategy, configs.iloc[idx].reset_index(drop=True), frame, blocks,
                                block.opts, block.backend)
    return idx, frame, None, task_s, report, time.perf_counter() - t0 - task_s


def plan_blocks(prices: Prices, strat: Strategy, valid: pd.DataFrame, opts: SweepConfig, backend: Backend,
                min_blocks: int = 1) -> list[np.ndarray]:
    """Positions of ``valid`` per block: the engine's memory-bounded chunks, each split evenly until there are at
    least ``min_blocks``."""
    kernel = kernel_of(opts, backend)
    per_config = per_config_bytes(backend.engine, prices.n, opts.pbo_splits, False, kernel)
    chunks = plan_chunks(strat, strat.config_parts(valid)[0], prices.n, per_config, opts.max_memory_mb, kernel)
    split = max(1, -(-min_blocks // len(chunks)))
    return [piece for c in chunks for piece in np.array_split(c, min(split, len(c)))]


def warm_kernel(data: tuple[Prices, pd.DataFrame], block: Block) -> None:
    """Run a tiny block with its report (compiles the sweep and PBO kernels or loads them from Numba's cache): the
    plugin's warm-up."""
    run_block(data, block)


def sweep_tickers(ex: Executor, plan: Mapping[str, tuple[Prices, pd.DataFrame]], strat: Strategy,
                  opts: SweepConfig, backend: Backend, on_block: Callable[[int], None] | None = None,
                  min_blocks: int | None = None, reports: bool = False) -> Iterator[TickerResult]:
    """Run every ticker's blocks on ``ex`` and yield each ticker's reduced results in ``plan`` order. Each ticker
    gets at least ``min_blocks`` blocks (default: in-process 1, on a cluster enough for two per worker). With
    ``reports`` each result carries its DSR/PBO report (made in the task when the ticker is one block)."""
    if min_blocks is None:
        min_blocks = max(1, -(-2 * ex.workers // len(plan))) if ex.client is not None else 1
    chunks, counts = [], {}
    for ticker, (prices, valid) in plan.items():
        idxs = plan_blocks(prices, strat, valid, opts, backend, min_blocks)
        counts[ticker] = len(idxs)
        chunks += [(ticker, Block(strat, i, opts, backend, report=reports and len(idxs) == 1)) for i in idxs]
    results = ex.map_chunks(run_block, chunks, plan)
    for ticker, (prices, valid) in plan.items():
        parts = []
        for _ in range(counts[ticker]):
            parts.append(next(results))
            if on_block:
                on_block(len(parts[-1][0]))
        res = reduce_blocks(ticker, parts, len(valid))
        if reports and res.report is None:  # several blocks: the sums came back; report here
            t0 = time.perf_counter()
            res.report = overfitting_report(prices, strat, valid, res.frame, res.blocks, opts, backend)
            res.report_s = time.perf_counter() - t0
        yield res


def reduce_blocks(ticker: str, parts: list[tuple[Any, ...]], k: int) -> TickerResult:
    """Put the blocks' rows back at their positions (0..k-1) of the ticker's valid frame (a one-block ticker's
    report, if the task made one, rides along)."""
    idx = np.concatenate([p[0] for p in parts])
    task_s = sum(p[3] for p in parts)
    in_order = len(idx) == k and k > 0 and idx[0] == 0 and bool((np.diff(idx) == 1).all())
    if len(parts) == 1 and len(parts[0]) == 6:  # the task made the report and put its rows in config order
        if not in_order:
            raise RuntimeError(f"{ticker}: a reported block covers {len(idx)} of {k} configurations")  # a bug
        return TickerResult(ticker, parts[0][1], None, task_s, parts[0][4], parts[0][5])
    if in_order:  # blocks already in order: no reorder
        if len(parts) == 1:
            return TickerResult(ticker, parts[0][1].reset_index(drop=True), parts[0][2], task_s)
        return TickerResult(ticker, pd.concat([p[1] for p in parts], ignore_index=True),
                            np.concatenate([p[2] for p in parts]), task_s)
    if len(idx) != k or not np.array_equal(np.sort(idx), np.arange(k)):
        raise RuntimeError(f"{ticker}: blocks cover {len(idx)} of {k} configurations")  # a planning bug, not input
    order = np.argsort(idx, kind="stable")
    frame = pd.concat([p[1] for p in parts], ignore_index=True).iloc[order].reset_index(drop=True)
    blocks = np.concatenate([p[2] for p in parts])[order]
    return TickerResult(ticker, frame, blocks, task_s)


def warm_up(plan: Mapping[str, tuple[Prices, pd.DataFrame]], strat: Strategy, opts: SweepConfig,
            backend: Backend) -> Callable[[], None]:
    """The plugin's warm-up: two configurations of the first ticker through the task's code path, report
    included (one when the ticker has only one)."""
    prices, valid = next(iter(plan.values()))
    n = min(2, len(valid))
    return partial(warm_kernel, (prices, valid.iloc[:n]), Block(strat, np.arange(n), opts, backend, report=True))


def write_frames(path: Path, frames: Iterator[pd.DataFrame]) -> None:
    """Stream frames of one schema to a CSV or Parquet file, one after another (a Parquet row group or a run of
    CSV rows each), atomically: the file appears complete or not at all. At least one frame is expected."""
    def write(tmp: str) -> None:
        if path.suffix.lower() != ".parquet":
            for i, frame in enumerate(frames):
                frame.to_csv(tmp, index=False, mode="w" if i == 0 else "a", header=i == 0)
            return
        import pyarrow as pa
        import pyarrow.parquet as pq

        writer = None
        try:
            for frame in frames:
                table = pa.Table.from_pandas(frame, preserve_index=False,
                                             schema=None if writer is None else writer.schema)
                writer = writer or pq.ParquetWriter(tmp, table.schema)
                writer.write_table(table)
        finally:
            if writer is not None:
                writer.close()

    write_atomic(path, write)
