"""News for ``--replay``: a user CSV or JSONL of (timestamp, ticker, headline), validated once, queried causally.

Columns (case-insensitive): ``timestamp`` (or time, datetime, published, published_at, date), ``ticker`` (or
symbol) and ``headline`` (or title, text). Timestamps are ISO 8601; one with an offset or ``Z`` is converted to
UTC, one without is taken as UTC. A decision at time T sees the headlines of its ticker published in
``[T - news_days, T)``: strictly before T, so a headline stamped at the decision time itself is not seen.

Bad files fail at once with one line naming the row and the fix (exit 2): no timestamp column or an unreadable
timestamp, a row dated before 1900 or after the current time, a ticker that is not replayed, an empty or
non-text headline, a field that runs over several lines (an unterminated quote would merge later rows into an
earlier one: a look-ahead through bad input).
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import UsageError

TIME_COLUMNS = ("timestamp", "time", "datetime", "published", "published_at", "date")
TICKER_COLUMNS = ("ticker", "symbol")
TEXT_COLUMNS = ("headline", "title", "text")
_EXAMPLE = "e.g. 2024-01-31T13:30:00Z"
OLDEST_YEAR = 1900


@dataclass(frozen=True)
class NewsIndex:
    """Headlines per ticker sorted by time (UTC nanoseconds), for causal look-ups."""

    stamps: dict[str, np.ndarray] = field(default_factory=dict)
    headlines: dict[str, tuple[str, ...]] = field(default_factory=dict)
    source: str = ""  # the file; "" = no news

    @property
    def rows(self) -> int:
        return sum(len(v) for v in self.headlines.values())

    def before(self, ticker: str, t_ns: int, window_ns: int) -> list[str]:
        """Headlines of ``ticker`` published in ``[t_ns - window_ns, t_ns)``, oldest first."""
        ts = self.stamps.get(ticker)
        if ts is None:
            return []
        lo, hi = np.searchsorted(ts, [t_ns - window_ns, t_ns], side="left")
        return list(self.headlines[ticker][lo:hi])


def load_news(path: str | Path, tickers: list[str], now: pd.Timestamp | None = None) -> NewsIndex:
    """Read and validate a news file for the replayed ``tickers``; raises ``UsageError`` on the first bad row."""
    p = Path(path)
    if p.is_dir():
        raise UsageError(f"news file {str(p)!r} is a folder, not a file: give the CSV or JSONL file of headlines")
    if not p.is_file():
        raise UsageError(f"news file {str(p)!r} not found: check the --news-file path")
    try:
        text = p.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UsageError(f"news file {str(p)!r} is not UTF-8 (byte {exc.start}): convert it, e.g. "
                         f"`iconv -f latin1 -t utf-8 {p.name} > news.csv`") from None
    rows = _jsonl_rows(p, text) if p.suffix.lower() in {".jsonl", ".json", ".ndjson"} else _csv_rows(p, text)
    if not rows:
        raise UsageError(f"news file {p.name} has no rows: add one row per headline (timestamp, ticker, headline)")
    keys = {k for _, rec in rows for k in rec}
    tcol, kcol, hcol = (_column(p, keys, names, what) for names, what in (
        (TIME_COLUMNS, f"timestamp column with ISO 8601 times, {_EXAMPLE}"),
        (TICKER_COLUMNS, "ticker column, e.g. AAPL"), (TEXT_COLUMNS, "headline column")))
    raw_times = [str(rec.get(tcol) or "").strip() for _, rec in rows]
    times = pd.to_datetime(pd.Series(raw_times, dtype="object"), utc=True, errors="coerce", format="ISO8601")
    now = now if now is not None else pd.Timestamp.now(tz="UTC")
    wanted = {t.upper() for t in tickers}
    unknown: dict[str, int] = {}
    by_ticker: dict[str, list[tuple[int, str]]] = {}
    for (line, rec), raw, ts in zip(rows, raw_times, times, strict=True):
        if pd.isna(ts):
            raise UsageError(f"news file {p.name} line {line}: timestamp {raw!r} is missing or not ISO 8601: "
                             f"give every row a time, {_EXAMPLE}")
        if ts.year < OLDEST_YEAR:  # also outside the nanosecond clock the index keeps (1677..2262)
            raise UsageError(f"news file {p.name} line {line}: timestamp {raw!r} is before {OLDEST_YEAR}: fix its "
                             f"date, {_EXAMPLE}")
        if ts > now:
            raise UsageError(f"news file {p.name} line {line} is dated {ts.isoformat()}, in the future (now "
                             f"{now.floor('s').isoformat()}): fix its timestamp or drop the row")
        for col in (kcol, hcol):
            if rec.get(col) is not None and not isinstance(rec.get(col), str):
                raise UsageError(f"news file {p.name} line {line}: {col} {rec.get(col)!r} is not text: write it as "
                                 'a JSON string, e.g. "headline": "Apple beats estimates"')
        ticker = str(rec.get(kcol) or "").strip().upper()
        headline = " ".join(str(rec.get(hcol) or "").split())
        if not ticker or not headline:
            raise UsageError(f"news file {p.name} line {line} has an empty {'ticker' if not ticker else 'headline'}: "
                             "fill it in or drop the row")
        if ticker not in wanted:
            unknown.setdefault(ticker, line)
            continue
        by_ticker.setdefault(ticker, []).append((ts.value, headline))
    if unknown:
        first = ", ".join(f"{t} (line {n})" for t, n in sorted(unknown.items(), key=lambda kv: kv[1])[:5])
        raise UsageError(f"news file {p.name} has rows for tickers not replayed: {first}: add them to --tickers "
                         f"({','.join(sorted(wanted))}) or drop those rows")
    stamps, heads = {}, {}
    for ticker, items in by_ticker.items():
        items.sort(key=lambda x: x[0])  # stable: same-time headlines keep the file's order
        stamps[ticker] = np.array([x[0] for x in items], dtype=np.int64)
        heads[ticker] = tuple(x[1] for x in items)
    return NewsIndex(stamps, heads, str(p))


def _column(p: Path, keys: set[str], names: tuple[str, ...], what: str) -> str:
    found = next((n for n in names if n in keys), None)
    if found is None:
        raise UsageError(f"news file {p.name} has no {what.split(' column')[0]} column (found: "
                         f"{', '.join(sorted(keys)) or 'none'}): add a {what}")
    return found


def _csv_rows(p: Path, text: str) -> list[tuple[int, dict[str, str]]]:
    reader = csv.DictReader(io.StringIO(text))
    if reader.fieldnames is None:
        return []
    out = []
    start = reader.line_num + 1  # the line where the next record starts (a quoted field may span lines)
    try:
        for rec in reader:
            clean = {str(k).strip().lower(): v for k, v in rec.items() if k is not None}
            if any("\n" in (v or "") or "\r" in (v or "") for v in clean.values()):
                raise UsageError(f"news file {p.name} line {start}: a field runs on over several lines (a quote "
                                 "that is never closed?): close the quote; one headline per line")
            if any((v or "").strip() for v in clean.values()):
                out.append((start, clean))
            start = reader.line_num + 1
    except csv.Error as exc:
        fix = ("a headline is a line of text: check the file" if "field larger" in str(exc)
               else "quote fields that contain commas")
        raise UsageError(f"news file {p.name} line {start} is not valid CSV ({exc}): {fix}") from None
    return out


def _jsonl_rows(p: Path, text: str) -> list[tuple[int, dict[str, str]]]:
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UsageError(f"news file {p.name} line {n} is not JSON ({exc.msg}): one object per line, "
                             '{"timestamp": ..., "ticker": ..., "headline": ...}') from None
        if not isinstance(rec, dict):
            raise UsageError(f"news file {p.name} line {n} is not a JSON object: one object per line")
        out.append((n, {str(k).strip().lower(): v for k, v in rec.items()}))
    return out
