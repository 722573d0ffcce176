"""What the dashboard pages show, computed on the server with pandas (no Streamlit here, so it is unit-tested).

Big inputs are reduced before anything reaches the browser: heatmaps are grouped per cell, scatters sampled to a
fixed number of points, tables cut to the top N.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import AlphaSignalError, UsageError
from ..evaluation.metrics import METRICS
from ..fileio import write_atomic
from ..storage.records import Run
from .paths import confined

log = logging.getLogger(__name__)
SEGMENT_PREFIXES = ("", "is_", "oos_")
_NOT_PARAMS = {"ticker", "strategy", "config_id"}


# --- sweeps ---------------------------------------------------------------------------------------------------
HEADLINE_METRICS = ("sharpe", "total_return", "max_drawdown", "trades")  # read for every segment, shown in the table


def _sweep_file(path: str | Path) -> Path:
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"no sweep results at {str(p)!r}: run python 05_sweep_backtest.py first")
    return p


def _unreadable(p: Path, exc: Exception) -> UsageError:
    return UsageError(f"sweep file {str(p)!r} cannot be read ({type(exc).__name__}): rerun stage 05")


def sweep_header(path: str | Path) -> list[str]:
    """The column names of a stage 05 results file, read without its rows; a file without a sharpe column is a
    :class:`UsageError`."""
    p = _sweep_file(path)
    try:
        if p.suffix.lower() == ".parquet":
            import pyarrow.parquet as pq

            names = [n for n in pq.read_schema(p).names if not n.startswith("__index_level_")]
        else:
            names = [str(c) for c in pd.read_csv(p, nrows=0).columns]
    except Exception as exc:  # pandas and pyarrow raise many types for a damaged file
        raise _unreadable(p, exc) from None
    if "sharpe" not in names:
        raise UsageError(f"sweep file {str(p)!r} has no results (no sharpe column): rerun stage 05")
    return names


def view_columns(header: Sequence[str], metric: str) -> list[str]:
    """The columns the Sweeps page reads: ids and parameters, :data:`HEADLINE_METRICS` of every segment and
    ``metric`` (a million-row CSV is read in well under half the time of all its columns)."""
    metrics = set(metric_columns(header))
    wanted = {f"{p}{m}" for p in SEGMENT_PREFIXES for m in HEADLINE_METRICS} | {metric}
    return [c for c in header if c not in metrics or c in wanted]


def read_sweep(path: str | Path, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """A stage 05 results file (.csv or .parquet), all columns or only ``columns``; an unreadable or empty one is
    a :class:`UsageError`."""
    p = _sweep_file(path)
    cols = list(columns) if columns is not None else None
    try:
        df = pd.read_parquet(p, columns=cols) if p.suffix.lower() == ".parquet" else pd.read_csv(p, usecols=cols)
    except Exception as exc:  # pandas raises many types for a damaged file
        raise _unreadable(p, exc) from None
    if df.empty or "sharpe" not in df.columns:
        raise UsageError(f"sweep file {str(p)!r} has no results (no rows or no sharpe column): rerun stage 05")
    return df


def read_sweep_cached(path: str | Path, columns: Sequence[str], cache_dir: str | Path = "") -> pd.DataFrame:
    """:func:`read_sweep` of ``columns``; a CSV's columns are kept as Parquet in ``cache_dir`` (the app's own
    cache), keyed by the file's path, size, mtime and the columns, so a later session reads them ~10x faster.
    A cache that cannot be written is skipped; ``cache_dir=""`` turns it off. The copy is written in a background
    thread (atomically: it appears whole or not at all), so the first open does not wait for it; see
    :func:`wait_for_cache_writes`."""
    p = Path(path)
    if not cache_dir or p.suffix.lower() == ".parquet":
        return read_sweep(p, columns)
    try:
        file_stat = p.resolve().stat()
    except OSError:
        return read_sweep(p, columns)  # names the missing file
    key = hashlib.sha256(json.dumps([str(p.resolve()), file_stat.st_size, file_stat.st_mtime_ns,
                                     list(columns)]).encode())
    cached = Path(cache_dir).expanduser() / "sweeps" / f"{key.hexdigest()[:20]}.parquet"
    if cached.is_file():
        with contextlib.suppress(Exception):  # a damaged cache file is read again from the CSV
            return pd.read_parquet(cached)
    df = read_sweep(p, columns)
    writer = threading.Thread(target=_keep_copy, args=(cached, df), name=f"sweep-cache-{cached.stem}", daemon=True)
    with _WRITES_LOCK:  # finished writers are dropped: a long-running app does not collect them
        _WRITES[:] = [w for w in _WRITES if w.is_alive()]
        _WRITES.append(writer)
    writer.start()
    return df


_WRITES: list[threading.Thread] = []
_WRITES_LOCK = threading.Lock()


def _keep_copy(cached: Path, df: pd.DataFrame) -> None:
    """Write ``df`` as the Parquet copy ``cached`` (a copy that cannot be written is skipped, logged at debug)."""
    try:
        write_atomic(cached, df.to_parquet)
    except (AlphaSignalError, OSError, ImportError) as exc:
        log.debug("sweep cache not written (%s)", exc)


def wait_for_cache_writes(timeout: float | None = None) -> None:
    """Wait until the Parquet copies started by :func:`read_sweep_cached` are written (tests, benchmarks)."""
    with _WRITES_LOCK:
        pending, _WRITES[:] = list(_WRITES), []
    for writer in pending:
        writer.join(timeout)


def sweep_meta_path(path: str | Path) -> Path:
    """Where stage 05 writes a results file's metadata."""
    return Path(path).with_suffix(".meta.json")


def read_meta(path: str | Path) -> dict[str, Any] | None:
    """The metadata JSON beside a results file, or None when it is missing; a damaged one is a UsageError."""
    meta = confined(sweep_meta_path(path), Path(path).parent)
    if not meta.is_file():
        return None
    try:
        data = json.loads(meta.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"sweep metadata {str(meta)!r} is not JSON ({exc}): rerun stage 05") from None
    return data if isinstance(data, dict) else None


def _names(columns: pd.DataFrame | Sequence[str]) -> list[str]:
    return list(columns.columns) if isinstance(columns, pd.DataFrame) else list(columns)


def param_columns(columns: pd.DataFrame | Sequence[str]) -> list[str]:
    """The strategy parameter columns of a sweep frame or header (everything that is neither a metric nor an id)."""
    metric_cols = {f"{p}{m}" for p in SEGMENT_PREFIXES for m in METRICS}
    return [c for c in _names(columns) if c not in metric_cols and c not in _NOT_PARAMS]


def metric_columns(columns: pd.DataFrame | Sequence[str]) -> list[str]:
    """Metric columns present, full sample first, then in-sample and out-of-sample."""
    present = set(_names(columns))
    return [f"{p}{m}" for p in SEGMENT_PREFIXES for m in METRICS if f"{p}{m}" in present]


def heatmap(df: pd.DataFrame, x: str, y: str, metric: str, fixed: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """One row per (x, y) cell with ``metric``: the best over the other parameters, or the value at ``fixed``
    ones (rows not matching every fixed value are dropped first)."""
    if x == y:
        raise UsageError("the heatmap needs two different parameters")
    sub = df
    for col, val in (fixed or {}).items():
        sub = sub[sub[col].astype(str) == str(val)]
    cells = sub.groupby([x, y], dropna=False)[metric].max().reset_index()
    return cells.rename(columns={metric: "value"})


def scatter_sample(df: pd.DataFrame, xcol: str, ycol: str, max_points: int, seed: int = 0) -> pd.DataFrame:
    """At most ``max_points`` rows with finite ``xcol`` and ``ycol``: the top 10 % by ``xcol`` kept, the rest a
    seeded uniform sample (so a million-row sweep sends a few thousand points). Rows are chosen on the two
    columns alone and only the chosen ones are copied."""
    xs = df[xcol].to_numpy(dtype=float)
    finite = np.flatnonzero(np.isfinite(xs) & np.isfinite(df[ycol].to_numpy(dtype=float)))
    if len(finite) <= max_points:
        return df.iloc[finite]
    top_n = max_points // 10
    is_top = np.zeros(len(finite), dtype=bool)
    is_top[np.argpartition(-xs[finite], top_n - 1)[:top_n]] = True
    picked = np.random.default_rng(seed).choice(finite[~is_top], max_points - top_n, replace=False)
    return df.iloc[np.concatenate([finite[is_top], np.sort(picked)])]


def top_table(df: pd.DataFrame, metric: str, n: int) -> pd.DataFrame:
    """The ``n`` best rows by ``metric`` (NaN last)."""
    return df.nlargest(n, metric) if n < len(df) else df.sort_values(metric, ascending=False, na_position="last")


def overfitting_rows(meta: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """One row per ticker with the DSR and PBO stage 05 computed."""
    rows = []
    for ticker, rep in ((meta or {}).get("overfitting") or {}).items():
        rows.append({"ticker": ticker, "DSR": rep.get("dsr"), "PBO": rep.get("pbo"),
                     "best config": json.dumps(rep.get("best_config")), "note": rep.get("note", "")})
    return rows


# --- dataset --------------------------------------------------------------------------------------------------
def read_dataset(path: str | Path) -> pd.DataFrame:
    """Stage 01 JSONL as a frame: id, split, ticker, dates, action, the answer JSON, the image path."""
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"no dataset at {str(p)!r}: run python 01_generate_dataset.py first")
    rows = []
    with p.open(encoding="utf-8", errors="replace") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                rows.append({"id": rec["id"], "split": rec["split"], "ticker": rec.get("ticker", ""),
                             "window_end": rec.get("window_end", ""), "action": rec["label"]["action"],
                             "forward_return": rec.get("forward_return"), "image": _image_of(rec),
                             "answer": json.dumps(rec["label"], indent=1)})
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise UsageError(f"{p.name} line {n} is not a stage 01 record ({type(exc).__name__}: {exc}): "
                                 "rerun python 01_generate_dataset.py") from None
    if not rows:
        raise UsageError(f"dataset {str(p)!r} is empty: rerun python 01_generate_dataset.py")
    return pd.DataFrame(rows)


def _image_of(rec: Mapping[str, Any]) -> str:
    for msg in rec.get("messages", []):
        for part in msg.get("content", []) if isinstance(msg.get("content"), list) else []:
            if part.get("type") == "image":
                return str(part.get("image", ""))
    return ""


def label_distribution(ds: pd.DataFrame) -> pd.DataFrame:
    """Count of each action per split (splits as rows, BUY/HOLD/SELL as columns)."""
    order = [s for s in ("train", "val", "test") if s in set(ds["split"])] + sorted(
        set(ds["split"]) - {"train", "val", "test"})
    return pd.crosstab(ds["split"], ds["action"]).reindex(order)


# --- replay ---------------------------------------------------------------------------------------------------
REPLAY_FILES = ("equity.csv", "trades.csv", "decisions.jsonl")


def read_replay(folder: str | Path) -> dict[str, pd.DataFrame]:
    """Stage 04 replay outputs: ``equity`` (date, equity, drawdown added), ``trades``; a missing folder or
    equity file is a UsageError naming the command that writes them."""
    f = Path(folder)
    equity, trades_csv = confined(f / "equity.csv", f), confined(f / "trades.csv", f)
    if not equity.is_file():
        raise UsageError(f"no replay results yet in {str(f)!r}: run python 04_signal_pipeline.py --replay ... "
                         "(it writes equity.csv, trades.csv and decisions.jsonl there)")
    try:
        eq = pd.read_csv(equity)
        trades = pd.read_csv(trades_csv) if trades_csv.is_file() else pd.DataFrame()
    except Exception as exc:  # a damaged CSV
        raise UsageError(f"replay results in {str(f)!r} cannot be read ({type(exc).__name__}): rerun the replay"
                         ) from None
    date_col = next((c for c in eq.columns if c.lower() in ("date", "datetime", "time", "timestamp")), eq.columns[0])
    if "equity" not in eq.columns or eq.empty:
        raise UsageError(f"{str(f / 'equity.csv')!r} has no equity column or no rows: rerun the replay")
    eq = eq.rename(columns={date_col: "date"})
    eq["date"] = pd.to_datetime(eq["date"], errors="coerce")
    if "drawdown" not in eq.columns:
        eq["drawdown"] = eq["equity"] / eq["equity"].cummax() - 1
    return {"equity": eq, "trades": trades}


def trade_points(trades: pd.DataFrame) -> pd.DataFrame:
    """Entries and exits as points (date, price, kind, reason) for drawing trades on the price."""
    cols = {c.lower(): c for c in trades.columns}
    parts = []
    for kind in ("entry", "exit"):
        d, p = cols.get(f"{kind}_date"), cols.get(f"{kind}_price")
        if d and p:
            part = pd.DataFrame({"date": pd.to_datetime(trades[d], errors="coerce"), "price": trades[p],
                                 "kind": kind})
            part["reason"] = trades[cols["exit_reason"]].astype(str) if kind == "exit" and "exit_reason" in cols else ""
            parts.append(part)
    return pd.concat(parts, ignore_index=True).dropna(subset=["date"]) if parts else pd.DataFrame()


# --- optimizer runs -------------------------------------------------------------------------------------------
def run_rows(runs: Sequence[Run]) -> pd.DataFrame:
    """The run list: id, times, status, strategy, config and data hash, models, rounds, hold-out objective."""
    rows = []
    for r in runs:
        s, obj = r.summary, r.objective
        best = s.winner.metrics("holdout").get(obj) if s else None
        rows.append({"run id": r.run_id, "created": pd.Timestamp(r.created, unit="s").strftime("%Y-%m-%d %H:%M"),
                     "status": r.status, "strategy": r.strategy, "config hash": r.config_hash,
                     "data hash": r.data_hash, "models": ", ".join(f"{k}={v}" for k, v in r.models.items()),
                     "rounds": r.rounds, f"hold-out {obj} (best)": best,
                     "configs tried": s.configs_tried if s else None})
    return pd.DataFrame(rows)
