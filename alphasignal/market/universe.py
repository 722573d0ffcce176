"""Universes of many tickers: a tickers file (one a line) or one long-format table (Date, Ticker, OHLCV)."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pandas as pd

from ..errors import DataError, UsageError
from .data import (
    OFFLINE_SAMPLES,
    load_many,
    load_ohlcv,
    normalise_ohlcv,
    offline_tickers,
    slice_dates,
    validate_ohlcv,
)

ALL = "*"  # dataset.tickers=* : every ticker of a long-format file
_SYMBOL = re.compile(r"\^?[A-Za-z0-9][A-Za-z0-9.\-=_]{0,19}")  # Yahoo-style symbols: BRK-B, ^GSPC, EURUSD=X


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
    bad = next((t for t in tickers if not _SYMBOL.fullmatch(t)), None)
    if bad:
        raise UsageError(f"tickers file {str(p)!r}: {bad!r} is not a ticker symbol: use letters, digits and . - ^ = _")
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
        if ds.source == "csv" and ds.csv_path and len(ds.tickers) > 1:  # one series under many names is no universe
            raise UsageError(f"{Path(ds.csv_path).name} holds one price series (no Ticker column) but "
                             f"{len(ds.tickers)} tickers were named ({', '.join(ds.tickers[:5])}): name one ticker, "
                             "or give a long-format file with Date, Ticker and OHLCV columns")
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


def load_from_config(ds, ticker: str | None = None) -> pd.DataFrame:
    """Load one ticker (the first configured one by default) with a ``DatasetConfig``'s settings; a long-format
    ``csv_path`` (Date, Ticker, OHLCV) gives that ticker's rows."""
    if ds.source == "csv" and ds.csv_path and is_long_table(ds.csv_path):
        frames = load_universe(replace(ds, tickers=(ticker,)) if ticker else ds)
        return frames[ticker] if ticker else next(iter(frames.values()))
    return load_ohlcv(ticker or ds.tickers[0], ds.start or None, ds.end or None, ds.interval, source=ds.source,
                      cache_dir=ds.cache_dir, csv_path=ds.csv_path, nan_policy=ds.nan_policy,
                      min_length=ds.min_length, retries=ds.download_retries)


def check_tickers(tickers: list[str] | tuple[str, ...], ds, what: str = "the universe") -> None:
    """Refuse, before any work, tickers the configured source cannot have: offline data that no installed package
    ships, or a long-format file with no rows for them (yfinance can only tell by downloading)."""
    if ds.source == "offline":
        unknown = [t for t in tickers if t.upper() not in OFFLINE_SAMPLES]
        if unknown:
            raise UsageError(f"{what} names ticker(s) with no offline data: {', '.join(unknown[:8])} (offline: "
                             f"{', '.join(offline_tickers())}): remove them, or use dataset.source=csv or yfinance")
    elif ds.source == "csv" and ds.csv_path and is_long_table(ds.csv_path) and tuple(tickers) != (ALL,):
        p = Path(ds.csv_path).expanduser()
        raw = pd.read_parquet(p) if p.suffix.lower() in {".parquet", ".pq"} else pd.read_csv(p)
        col = next(c for c in raw.columns if str(c).strip().lower() == "ticker")
        have = set(raw[col].astype(str).str.strip())
        unknown = [t for t in tickers if t not in have]
        if unknown:
            raise UsageError(f"{what} names ticker(s) that {p.name} has no rows for: {', '.join(unknown[:8])}: "
                             "remove them or use a file that has them")


def load_frames(tickers: tuple[str, ...], ds, start: str | None, end: str | None) -> dict[str, pd.DataFrame]:
    """``{ticker: validated OHLCV}`` for ``tickers`` between ``start`` and ``end`` from ``ds``'s source: one file per
    ticker, yfinance, offline package data, or one long-format table (Date, Ticker, OHLCV)."""
    return load_universe(replace(ds, tickers=tuple(tickers), start=start or "", end=end or "", min_length=1))


__all__ = ["ALL", "check_tickers", "is_long_table", "load_frames", "load_from_config", "load_universe",
           "read_tickers_file", "split_long"]
