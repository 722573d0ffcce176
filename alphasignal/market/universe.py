"""Universes of many tickers: a tickers file (one a line) or one long-format table (Date, Ticker, OHLCV)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..errors import DataError, UsageError
from .data import load_many, normalise_ohlcv, slice_dates, validate_ohlcv

ALL = "*"  # dataset.tickers=* : every ticker of a long-format file


def read_tickers_file(path: str | Path) -> list[str]:
    """Tickers from a text file, one a line; blank lines and ``#`` comments are skipped, duplicates refused."""
    p = Path(path).expanduser()
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"tickers file {str(p)!r} cannot be read ({type(exc).__name__}): check the path") from None
    tickers = [t for t in (line.split("#", 1)[0].strip() for line in lines) if t]
    if not tickers:
        raise UsageError(f"tickers file {str(p)!r} lists no ticker: write one ticker a line, e.g. AAPL")
    bad = next((t for t in tickers if "," in t or " " in t), None)
    if bad:
        raise UsageError(f"tickers file {str(p)!r}: {bad!r} is not one ticker: write one ticker a line")
    dup = next((t for i, t in enumerate(tickers) if t in tickers[:i]), None)
    if dup:
        raise UsageError(f"tickers file {str(p)!r} lists {dup!r} twice: remove the duplicate")
    return tickers


def _columns(path: str | Path) -> list[str]:
    p = Path(path).expanduser()
    if p.suffix.lower() in {".parquet", ".pq"}:
        import pyarrow.parquet as pq

        return list(pq.read_schema(p).names)
    return list(pd.read_csv(p, nrows=0).columns)


def is_long_table(path: str | Path) -> bool:
    """True when the CSV/Parquet file has a Ticker column (long format: one row per date and ticker)."""
    try:
        return any(str(c).strip().lower() == "ticker" for c in _columns(path))
    except Exception:  # noqa: BLE001 - unreadable files are reported by read_table with the real reason
        return False


def split_long(df: pd.DataFrame, origin: str) -> dict[str, pd.DataFrame]:
    """``{ticker: OHLCV frame}`` of a long-format table, tickers in order of first appearance."""
    col = next(c for c in df.columns if str(c).strip().lower() == "ticker")
    tickers = df[col].astype(str).str.strip()
    return {t: normalise_ohlcv(part.drop(columns=[col]), f"{origin} ({t})")
            for t, part in df.groupby(tickers, sort=False)}


def load_universe(ds) -> dict[str, pd.DataFrame]:
    """``load_many`` with a DatasetConfig's settings; a long-format ``csv_path`` yields its tickers (all of them
    unless ``dataset.tickers`` names some), each validated like a one-ticker file."""
    if ds.source != "csv" or not ds.csv_path or not is_long_table(ds.csv_path):
        return load_many(ds.tickers, ds.start or None, ds.end or None, ds.interval, source=ds.source,
                         cache_dir=ds.cache_dir, csv_path=ds.csv_path, nan_policy=ds.nan_policy,
                         min_length=ds.min_length, retries=ds.download_retries)
    p = Path(ds.csv_path).expanduser()
    try:
        raw = pd.read_parquet(p) if p.suffix.lower() in {".parquet", ".pq"} else pd.read_csv(p)
    except Exception as exc:  # noqa: BLE001 - any parser failure is the same user error
        raise UsageError(f"cannot read {str(p)!r} ({type(exc).__name__}): check the file or export it again") from None
    parts = split_long(raw, str(p))
    wanted = list(parts) if tuple(ds.tickers) in {(ALL,), (p.stem,)} else list(ds.tickers)
    missing = [t for t in wanted if t not in parts]
    if missing:
        raise UsageError(f"{str(p)!r} has no rows for {', '.join(missing[:5])}: check dataset.tickers or the file")
    out = {}
    for t in wanted:
        try:
            out[t] = validate_ohlcv(slice_dates(parts[t], ds.start or None, ds.end or None), t,
                                    nan_policy=ds.nan_policy, min_length=ds.min_length)
        except DataError as exc:  # the user's own file: bad input (exit 2)
            raise UsageError(f"{p.name}: {exc}") from None
    return out


__all__ = ["ALL", "is_long_table", "load_universe", "read_tickers_file", "split_long"]
