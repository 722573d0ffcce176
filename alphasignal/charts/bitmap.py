"""Compact black-and-white OHLC bitmaps in NumPy (the design of Jiang, Kelly & Xiu 2023), for the chart CNN.

Each day takes 3 pixel columns: the open as a tick on the left column, the high-low range as a bar in the middle
column, the close as a tick on the right column. A moving average of the window's length is a line through the
middle columns, and volume bars fill the bottom fifth. Pixels are 255 (ink) on 0. Sizes (height x width):

=======  =========  =============================
window   size       layout
=======  =========  =============================
5        32 x 15    price rows 0-24, volume 26-31
20       64 x 60    price rows 0-50, volume 52-63
60       96 x 180   price rows 0-75, volume 77-95
=======  =========  =============================

Prices are scaled per image from the lowest low (or average) to the highest high of the drawn days, volume from
zero to the highest drawn volume, so a bitmap carries no price level. Bars before the drawn days (when given)
only warm the moving average up; with fewer, it averages the bars it has. Nothing after the last bar is read.

``render_bitmaps`` draws a batch at once with array operations (no per-day Python loop), deterministic.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

SIZES: dict[int, tuple[int, int]] = {5: (32, 15), 20: (64, 60), 60: (96, 180)}  # window -> (height, width)
INK = 255


def bitmap_size(window: int) -> tuple[int, int]:
    """(height, width) of a ``window``-day bitmap; a ValueError for a window without a published design."""
    if window not in SIZES:
        raise ValueError(f"no bitmap design for a {window}-day window: use one of {', '.join(map(str, SIZES))}")
    return SIZES[window]


def _moving_average(close: np.ndarray, period: int) -> np.ndarray:
    """Trailing mean over ``period`` bars per row (N, T); the first bars average what exists (no NaN)."""
    csum = np.cumsum(close, axis=1)
    out = csum.copy()
    out[:, period:] = csum[:, period:] - csum[:, :-period]
    counts = np.minimum(np.arange(1, close.shape[1] + 1), period)
    return out / counts


def render_bitmaps(bars: np.ndarray, window: int) -> np.ndarray:
    """Bitmaps (N, H, W) uint8 of the last ``window`` bars of each row of ``bars`` (N, T, 5: open, high, low,
    close, volume; T >= window; earlier bars warm the moving average up)."""
    bars = np.asarray(bars, dtype=np.float64)
    if bars.ndim != 3 or bars.shape[2] != 5:
        raise ValueError(f"bars must have shape (N, T, 5) (open, high, low, close, volume), got {bars.shape}")
    n, t = bars.shape[:2]
    height, width = bitmap_size(window)
    if t < window:
        raise ValueError(f"a {window}-day bitmap needs at least {window} bars, got {t}")
    if not np.isfinite(bars).all():
        raise ValueError("bars contain NaN or infinite values")
    ma = _moving_average(bars[:, :, 3], window)[:, -window:]
    o, h, lo, c, v = (bars[:, -window:, k] for k in range(5))
    vol_h = height // 5
    price_h = height - vol_h - 1  # one blank row between the price and the volume panels
    top = np.maximum(h.max(1), ma.max(1))[:, None]
    bottom = np.minimum(lo.min(1), ma.min(1))[:, None]
    span = np.where(top > bottom, top - bottom, 1.0)

    def row(p: np.ndarray) -> np.ndarray:  # price -> pixel row (0 = top)
        return (price_h - 1 - np.rint((p - bottom) / span * (price_h - 1))).astype(np.intp)

    img = np.zeros((n, height, width), np.uint8)
    rows = np.arange(height)[None, :, None]  # (1, H, 1) against (N, 1, window)
    hl = (rows >= row(h)[:, None, :]) & (rows <= row(lo)[:, None, :])
    img[:, :, 1::3] = np.where(hl, INK, 0)
    vmax = v.max(1, keepdims=True)
    vol_rows = np.rint(np.divide(v, vmax, out=np.zeros_like(v), where=vmax > 0) * vol_h).astype(np.intp)
    img[:, :, 1::3] |= np.where(rows >= height - vol_rows[:, None, :], INK, 0).astype(np.uint8)
    ni = np.arange(n)[:, None]
    days = np.arange(window)[None, :]
    img[ni, row(o), 3 * days] = INK
    img[ni, row(c), 3 * days + 2] = INK
    ma_rows = row(ma)
    img[ni, ma_rows, 3 * days + 1] = INK
    if window > 1:  # the line between consecutive middle columns: the two columns in between, interpolated
        a, b = ma_rows[:, :-1], ma_rows[:, 1:]
        for step in (1, 2):
            img[ni, np.rint(a + (b - a) * step / 3).astype(np.intp), 3 * days[:, :-1] + 1 + step] = INK
    return img


def render_bitmap(bars: np.ndarray | Sequence[Sequence[float]], window: int) -> np.ndarray:
    """One bitmap (H, W) of the last ``window`` bars of ``bars`` (T, 5)."""
    return render_bitmaps(np.asarray(bars, dtype=np.float64)[None], window)[0]


def frame_bars(frame) -> np.ndarray:
    """(T, 5) float64 array of a DataFrame's Open, High, Low, Close, Volume columns (missing volume = 0)."""
    cols = [frame[k].to_numpy(dtype="float64") for k in ("Open", "High", "Low", "Close")]
    vol = frame["Volume"].to_numpy(dtype="float64") if "Volume" in frame else np.zeros(len(frame))
    return np.stack([*cols, np.nan_to_num(vol)], axis=1)
