"""The chart CNN's data: stage 01's windows and labels, with the bars of the same windows from the market data.

Stage 01 records each window in ``training_data.jsonl`` by ``ticker``, ``window_start``, ``window_end``,
``label_end``, ``split`` and ``label``/``forward_return``; the PNGs are for a VLM. Here the same windows are cut
from the market data the config names (the ``[dataset]`` section stage 01 ran with) and checked against the
record: the window must span the same bars and the recorded forward return must come out of the bars again, so
a dataset built from other data is refused instead of silently mislabelled.

Splits are read one at a time (``load_split``): training reads train and val; the test split is read once, after
training. No torch here: arrays only.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..charts.bitmap import frame_bars
from ..errors import UsageError

LABEL_MODES = {"action": ("BUY", "SELL", "HOLD"), "updown": ("up", "down")}
_TOLERANCE = 2e-6  # forward returns are recorded to 6 decimals


@dataclass(frozen=True)
class Split:
    """One split's windows: bars (N, T, 5), label indices (N,), and what identifies each window."""

    name: str
    bars: np.ndarray
    labels: np.ndarray
    tickers: tuple[str, ...]
    ends: tuple[str, ...]  # window-end dates
    label_ends: tuple[str, ...]
    forward_returns: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def first_end(self) -> str | None:
        return min(self.ends, default=None)

    @property
    def last_end(self) -> str | None:
        return max(self.ends, default=None)

    def digest(self) -> str:
        """sha256 of the bars, labels and window identities (what a model trained on this split saw)."""
        h = hashlib.sha256(np.ascontiguousarray(self.bars).tobytes())
        h.update(self.labels.astype(np.int64).tobytes())
        h.update(json.dumps([self.tickers, self.ends]).encode())
        return h.hexdigest()


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """The lines of a stage 01 ``training_data.jsonl`` (only the fields the CNN needs are checked)."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise UsageError(f"dataset {p} not found: run python 01_generate_dataset.py first, or pass --dataset PATH")
    out = []
    with p.open(encoding="utf-8") as fh:
        for n, raw in enumerate(fh, 1):
            if not raw.strip():
                continue
            try:
                rec = json.loads(raw)
                fields = {k: rec[k] for k in ("ticker", "window_start", "window_end", "label_end", "split",
                                              "forward_return", "horizon")}
                fields["action"] = rec["label"]["action"]
            except (json.JSONDecodeError, KeyError, TypeError):
                raise UsageError(f"{p.name}:{n} is not a stage 01 record (ticker, window_start, window_end, "
                                 "label_end, split, label, forward_return, horizon): regenerate it with "
                                 "python 01_generate_dataset.py") from None
            out.append(fields)
    if not out:
        raise UsageError(f"dataset {p} is empty: regenerate it with python 01_generate_dataset.py")
    return out


def label_index(rec: dict[str, Any], mode: str) -> int:
    """The class index of a record: BUY/SELL/HOLD (``action``) or up/down (``updown``: forward return > 0)."""
    if mode == "updown":
        return 0 if rec["forward_return"] > 0 else 1
    return LABEL_MODES["action"].index(rec["action"])


def _date_strings(index: pd.DatetimeIndex) -> list[str]:
    intraday = bool((index != index.normalize()).any())
    return list(index.strftime("%Y-%m-%dT%H:%M:%S" if intraday else "%Y-%m-%d"))


class BarSource:
    """Market data per ticker, loaded once, with date -> bar position lookups."""

    def __init__(self, market: Any, frames: dict[str, pd.DataFrame] | None = None) -> None:
        self.market = market
        self._frames = dict(frames or {})
        self._pos: dict[str, dict[str, int]] = {}

    def frame(self, ticker: str) -> pd.DataFrame:
        if ticker not in self._frames:
            from ..market.universe import load_from_config

            self._frames[ticker] = load_from_config(self.market, ticker)
        return self._frames[ticker]

    def position(self, ticker: str, date: str) -> int:
        if ticker not in self._pos:
            self._pos[ticker] = {d: i for i, d in enumerate(_date_strings(self.frame(ticker).index))}
        pos = self._pos[ticker].get(date)
        if pos is None:
            raise UsageError(f"{ticker} has no bar on {date} in the market data of [dataset]: train with the same "
                             "dataset settings (source, tickers, dates) that 01_generate_dataset.py used")
        return pos


def load_split(records: list[dict[str, Any]], split: str, source: BarSource, mode: str) -> Split:
    """The windows of ``split`` with their bars (the window's bars only: what the stage 01 chart draws)."""
    chosen = [r for r in records if r["split"] == split]
    bars, labels = [], []
    length = None
    for r in chosen:
        t = r["ticker"]
        start, end, label_end = (source.position(t, r[k]) for k in ("window_start", "window_end", "label_end"))
        frame = source.frame(t)
        close = frame["Close"].to_numpy(dtype="float64")
        forward = close[label_end] / close[end] - 1
        if abs(forward - r["forward_return"]) > _TOLERANCE * max(1.0, abs(forward)):
            raise UsageError(f"{t} {r['window_end']}: the market data gives a forward return of {forward:.6f}, the "
                             f"dataset {r['forward_return']:.6f}: train with the [dataset] settings stage 01 used, "
                             "or rebuild the dataset")
        if length is None:
            length = end - start + 1
        if end - start + 1 != length:
            raise UsageError(f"{t} {r['window_end']}: window of {end - start + 1} bars, others have {length}: "
                             "rebuild the dataset with one dataset.window")
        bars.append(frame_bars(frame.iloc[start:end + 1]))
        labels.append(label_index(r, mode))
    shape = (0, length or 0, 5)
    return Split(split, np.stack(bars) if bars else np.zeros(shape), np.array(labels, dtype=np.int64),
                 tuple(r["ticker"] for r in chosen), tuple(r["window_end"] for r in chosen),
                 tuple(r["label_end"] for r in chosen),
                 np.array([r["forward_return"] for r in chosen], dtype=np.float64))


def file_digest(path: str | Path) -> str:
    """sha256 of a file's bytes (12 hex)."""
    h = hashlib.sha256()
    with Path(path).expanduser().open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:12]
