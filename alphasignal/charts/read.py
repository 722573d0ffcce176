"""Offline chart reader: candlestick PNG -> candle series, by colour segmentation of the price panel.

Steps: decode (downscale huge images) -> find the background -> classify every pixel to the nearest colour of
a known palette (the stage-01 styles, see ``render.PALETTES``) or, for other screenshots, by hue (green = up,
red = down) -> split the price panel from the volume panel at the widest empty horizontal band -> group candle
columns into candles -> per candle: wick extremes give high/low, the body rows give open/close, the colour (or,
for black/white styles, filled vs hollow) gives the direction -> volume bars below, when present.

Prices come back in *chart units* (pixels above the bottom of the price panel): axes are often hidden, so the
absolute scale is unknown. ``Candles.to_prices`` maps them to prices given the drawn price range, or an
assumption stated by the caller.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, UnidentifiedImageError

from ..errors import UsageError
from .render import PALETTES

_TOL2 = 64**2  # squared RGB distance within which a pixel belongs to a palette colour
_MIN_CANDLES = 5


@dataclass(frozen=True)
class Candles:
    """A recovered candle series in chart units (larger = higher price); ``volume`` is None without a panel."""

    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray | None
    style: str  # the matched stage-01 style, or "generic"
    x: np.ndarray  # candle centre columns (pixels)

    def __len__(self) -> int:
        return len(self.close)

    def to_prices(self, last_close: float, *, price_range: tuple[float, float] | None = None,
                  span_fraction: float = 0.2) -> Candles:
        """Map to prices with the last close at ``last_close``.

        With ``price_range`` = (lowest low, highest high) of the drawn bars the affine map is exact; without it
        the drawn high-low span is assumed to be ``span_fraction`` of the last close.
        """
        units_span = float(self.high.max() - self.low.min()) or 1.0
        if price_range is not None:
            lo, hi = price_range
            scale = (hi - lo) / units_span
            offset = lo - self.low.min() * scale
        else:
            scale = span_fraction * last_close / units_span
            offset = last_close - self.close[-1] * scale

        def m(a: np.ndarray) -> np.ndarray:
            return a * scale + offset

        return Candles(m(self.open), m(self.high), m(self.low), m(self.close), self.volume, self.style, self.x)


def load_image(png: bytes | str | Path, *, max_side: int = 1024) -> np.ndarray:
    """Decode an image to an RGB uint8 array, downscaling so the longer side is at most ``max_side``."""
    if isinstance(png, (str, Path)):
        path = Path(png)
        if not path.is_file():
            raise UsageError(f"image {str(path)!r} not found: check the path")
        data = path.read_bytes()
    else:
        data = bytes(png)
    if not data:
        raise UsageError("the image is empty (0 bytes): pass a PNG or JPEG chart")
    try:
        img = Image.open(io.BytesIO(data))
        img.load()
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise UsageError(f"the file is not a readable image ({exc.__class__.__name__}): pass a PNG or JPEG chart"
                         ) from None
    if max(img.size) > max_side:
        img.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return np.asarray(img.convert("RGB"))


def _hex(c: str) -> tuple[int, int, int]:
    c = c.lstrip("#")
    return int(c[0:2], 16), int(c[2:4], 16), int(c[4:6], 16)


def _pack(rgb: np.ndarray) -> np.ndarray:
    """One int32 per pixel (0xRRGGBB)."""
    return (rgb[..., 0].astype(np.int32) << 16) | (rgb[..., 1].astype(np.int32) << 8) | rgb[..., 2]


def _background(rgb: np.ndarray) -> np.ndarray:
    packed = _pack(rgb[::3, ::3]).ravel()
    vals, counts = np.unique(packed, return_counts=True)
    v = int(vals[counts.argmax()])
    return np.array([v >> 16, (v >> 8) & 255, v & 255])


# Pixel classes.
_BG, _UP, _DOWN, _NEUTRAL, _VOL_UP, _VOL_DOWN, _OTHER, _FAINT = range(8)  # FAINT: matches no palette colour


def _style_table(style: str) -> tuple[np.ndarray, np.ndarray]:
    p = PALETTES[style]
    up = {p.up_edge, p.up_wick} | ({p.up_body} if p.up_body != p.background else set())
    down = {p.down_body, p.down_edge, p.down_wick}
    shared = up & down
    colours: list[tuple[str, int]] = [(p.background, _BG)]
    colours += [(c, _NEUTRAL) for c in sorted(shared)]
    colours += [(c, _UP) for c in sorted(up - shared)] + [(c, _DOWN) for c in sorted(down - shared)]
    if p.volume_up == p.volume_down:
        colours.append((p.volume_up, _VOL_UP))
    else:
        colours += [(p.volume_up, _VOL_UP), (p.volume_down, _VOL_DOWN)]
    colours += [(c, _OTHER) for c in p.mavs] + [("#9467bd", _OTHER), (p.grid, _OTHER)]
    rgb = np.array([_hex(c) for c, _ in colours], dtype=np.int32)
    return rgb, np.array([k for _, k in colours], dtype=np.int8)


def _classify_known(colours: np.ndarray, style: str) -> tuple[np.ndarray, np.ndarray]:
    """Nearest palette colour for each distinct image colour: (class per colour, within-tolerance flag)."""
    table, kinds = _style_table(style)
    d2 = ((colours[:, None, :] - table[None, :, :]) ** 2).sum(-1)
    best = d2.argmin(1)
    ok = d2[np.arange(len(colours)), best] <= _TOL2
    return np.where(ok, kinds[best], _FAINT).astype(np.int8), ok


def _classify_generic(rgb: np.ndarray, bg: np.ndarray) -> np.ndarray:
    """Hue-based classes for screenshots of other tools: saturated green = up, saturated red = down."""
    a = rgb.astype(np.int16)
    r, g, b = a[..., 0], a[..., 1], a[..., 2]
    sat = a.max(-1) - a.min(-1)
    cls = np.full(rgb.shape[:2], _OTHER, dtype=np.int8)
    cls[((a - bg) ** 2).sum(-1) <= _TOL2] = _BG
    cls[(g > r + 30) & (g >= b) & (sat > 50)] = _UP
    cls[(10 * g < 3 * r) & (20 * b < 9 * r) & (sat > 50)] = _DOWN  # pure reds; orange MA lines stay out
    return cls


def _pick_style(rgb: np.ndarray, bg: np.ndarray) -> tuple[str, np.ndarray]:
    """Match the image to a stage-01 palette (or fall back to hue classes); classify every pixel."""
    packed = _pack(rgb)
    inverse, values = pd.factorize(packed.ravel())  # hashing: O(pixels), unlike np.unique's sort
    counts = np.bincount(inverse, minlength=len(values))
    colours = np.stack([values >> 16, (values >> 8) & 255, values & 255], axis=1)
    best, best_score, best_cls = "generic", 0.0, None
    for style in PALETTES:
        cls, ok = _classify_known(colours, style)
        candle_share = counts[np.isin(cls, (_UP, _DOWN, _NEUTRAL))].sum() / counts.sum()
        score = counts[ok].sum() / counts.sum() if candle_share > 0.002 else 0.0
        if score > best_score:
            best, best_score, best_cls = style, score, cls
    if best_score < 0.9 or best_cls is None:
        return "generic", _classify_generic(rgb, bg)
    return best, best_cls[inverse].reshape(rgb.shape[:2])


def _runs(flags: np.ndarray) -> list[tuple[int, int]]:
    """Inclusive (start, end) of consecutive True runs."""
    d = np.diff(np.concatenate([[0], flags.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(d == 1), np.flatnonzero(d == -1) - 1, strict=True))


def _panels(content_rows: np.ndarray) -> tuple[tuple[int, int], tuple[int, int] | None]:
    """Split rows with content into (price rows, volume rows or None) at the LAST empty band.

    Volume bars all stand on one baseline, so the volume block has no empty row inside; price gaps can.
    """
    runs = _runs(content_rows)
    if not runs:
        raise UsageError("no candles found: this does not look like a candlestick chart (is it blank?)")
    top, bottom = runs[0][0], runs[-1][1]
    if len(runs) > 1 and runs[-1][1] - runs[-1][0] < 0.45 * (bottom - top):
        return (top, runs[-2][1]), runs[-1]
    return (top, bottom), None


def _lines(covered: np.ndarray) -> np.ndarray:
    """Indices of thin (<= 3 px) bands of mostly covered rows or columns: axis frames and grid lines."""
    return np.concatenate([np.arange(a, b + 1) for a, b in _runs(covered) if b - a < 3] or [np.empty(0, int)])


def _strip_frame(mask: np.ndarray, ink: np.ndarray) -> np.ndarray:
    """Drop frame/grid lines of ``ink`` (all non-background pixels) from ``mask``, and, when a full frame
    (rows and columns) exists, everything outside it: tick labels and titles can share candle colours."""
    h, w = ink.shape
    long_rows, long_cols = _lines(ink.sum(1) > 0.75 * w), _lines(ink.sum(0) > 0.75 * h)
    if not len(long_rows) and not len(long_cols):
        return mask
    out = mask.copy()
    out[long_rows] = False
    out[:, long_cols] = False
    if len(long_rows) >= 2 and len(long_cols) >= 2:
        out[: long_rows[0]] = False
        out[long_rows[-1] + 1:] = False
        out[:, : long_cols[0]] = False
        out[:, long_cols[-1] + 1:] = False
    return out


def _periodogram_grid(runs: list[tuple[int, int]]) -> tuple[float, float]:
    """Bar spacing and first centre from the strongest period of the column-content profile (FFT, then fine)."""
    x = np.concatenate([np.arange(a, b + 1) for a, b in runs]).astype(float)
    profile = np.zeros(int(x[-1] - x[0]) + 1)
    profile[(x - x[0]).astype(int)] = 1.0
    n = 8192 if len(profile) <= 4096 else 4 * len(profile)
    power = np.abs(np.fft.rfft(profile - profile.mean(), n))
    freq = np.arange(len(power)) / n
    allowed = (freq >= _MIN_CANDLES / len(profile)) & (freq <= 1 / 2.5)  # spacing: 2.5 px .. span / 5
    best = 1 / freq[np.flatnonzero(allowed)[power[allowed].argmax()]]
    fine = np.linspace(best * 0.99, best * 1.01, 41)
    spacing = float(fine[np.abs(np.exp(2j * np.pi * x[None, :] / fine[:, None]).sum(1)).argmax()])
    phase = np.angle(np.exp(2j * np.pi * x / spacing).sum()) / (2 * np.pi) * spacing
    c0 = phase + np.ceil((x[0] - phase - spacing / 2) / spacing) * spacing
    return spacing, float(c0)


def _regroup(runs: list[tuple[int, int]]) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """Assign content columns to an evenly spaced bar grid fitted on the clean runs: (runs, empty grid slots).

    Merges fragments of one candle (an overlay line drawn on top can hide part of it) and splits candles
    that touch. Empty slots between the first and last candle are bars whose colours were lost (resampling
    blends a thin doji into the background); their central columns are returned for a second look.
    """
    centres = np.array([(a + b) / 2 for a, b in runs])
    widths = np.array([b - a + 1 for a, b in runs])
    clean = np.abs(widths - np.median(widths)) <= max(1.0, 0.3 * np.median(widths))
    rhythm = _periodogram_grid(runs) if len(runs) >= _MIN_CANDLES else None
    if clean.sum() >= 3:
        c = centres[clean]
        spacing = float(np.median(np.diff(c)))
        k = np.concatenate([[0.0], np.cumsum(np.maximum(np.round(np.diff(c) / spacing), 1))])  # robust to drift
        spacing, c0 = np.polyfit(k, c, 1) if len(np.unique(k)) > 1 else (spacing, c[0])
    elif rhythm is None:
        return runs, []
    # Fragmented columns (lossy compression) or touching bars (small images): trust the profile's rhythm.
    if rhythm is not None and (clean.sum() < 0.8 * len(runs) or clean.sum() < 3 or spacing > 1.5 * rhythm[0]):
        spacing, c0 = rhythm
    slots: dict[int, list[int]] = {}
    for a, b in runs:
        for x in range(a, b + 1):
            slots.setdefault(int(round((x - c0) / spacing)), []).append(x)
    empty = sorted(set(range(min(slots), max(slots) + 1)) - set(slots))
    half = max(0.25 * spacing, 0.5)
    gaps = [(int(np.ceil(c0 + k * spacing - half)), int(np.floor(c0 + k * spacing + half))) for k in empty]
    return [(min(xs), max(xs)) for _, xs in sorted(slots.items())], gaps


def read_chart(png: bytes | str | Path, *, max_side: int = 1024) -> Candles:
    """Recover open/high/low/close (and volume, when a volume panel exists) from a candlestick chart image."""
    rgb = load_image(png, max_side=max_side)
    if min(rgb.shape[:2]) < 32:
        raise UsageError(f"image is too small ({rgb.shape[1]}x{rgb.shape[0]} px) to hold a chart: use >= 112 px")
    style, cls = _pick_style(rgb, _background(rgb))
    ink = cls != _BG
    candle = _strip_frame(np.isin(cls, (_UP, _DOWN, _NEUTRAL)), ink)
    # Volume bars stand on one baseline below the price panel: split the panels at the last empty band. The
    # colour tells them apart only as a check (compression noise blurs thin bars into candle colours).
    volume_px = candle if style == "generic" else candle | _strip_frame(np.isin(cls, (_VOL_UP, _VOL_DOWN)), ink)
    (p0, p1), vol_rows = _panels(volume_px.sum(1) > 0)
    if vol_rows and style != "generic":
        block = slice(vol_rows[0], vol_rows[1] + 1)
        if np.isin(cls[block], (_VOL_UP, _VOL_DOWN)).sum() < 0.3 * volume_px[block].sum():
            (p0, p1), vol_rows = (p0, vol_rows[1]), None
    price = candle[p0:p1 + 1]
    col_counts = price.sum(0)
    runs = [r for r in _runs(col_counts > 0) if col_counts[r[0]:r[1] + 1].sum() >= 2]
    if len(runs) < _MIN_CANDLES:
        raise UsageError(f"found {len(runs)} candle(s): this does not look like a candlestick chart "
                         f"(need >= {_MIN_CANDLES}); pass a chart with visible green/red or black/white candles")
    runs, gaps = _regroup(runs)
    if gaps and style != "generic":
        price, runs = _recover_faint(price, cls[p0:p1 + 1] == _FAINT, runs, gaps)
    o, h, lo, c = _ohlc(price, cls[p0:p1 + 1], runs)
    base = float(p1 - p0)
    vol = _volumes(volume_px, vol_rows, runs) if vol_rows else None
    xs = np.array([(a + b) / 2 for a, b in runs])
    return Candles(base - o, base - h, base - lo, base - c, vol, style, xs)


def _recover_faint(price: np.ndarray, faint: np.ndarray, runs: list[tuple[int, int]],
                   gaps: list[tuple[int, int]]) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Fill empty bar slots from pixels that match no palette colour (blended candle pixels), when present."""
    price = price.copy()
    for a, b in gaps:
        cols = faint[:, max(a, 0):b + 1]
        if cols.sum() >= 3:
            price[:, max(a, 0):b + 1] = cols
            runs.append((max(a, 0), b))
    return price, sorted(runs)


def _col_extents(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First and last True row per column (rows, -1 where a column is empty)."""
    any_col = mask.any(0)
    first = np.where(any_col, mask.argmax(0), mask.shape[0])
    last = np.where(any_col, mask.shape[0] - 1 - mask[::-1].argmax(0), -1)
    return first, last


def _ohlc(price: np.ndarray, cls: np.ndarray, runs: list[tuple[int, int]]) -> tuple[np.ndarray, ...]:
    """Per candle: wick extremes give high/low, the body rows open/close, colour (or fill) the direction.

    Works on per-column summaries computed once (no per-candle 2-D slicing): the wick is the fullest
    column, the body the extent of the other columns.
    """
    first, last = _col_extents(price)
    counts = price.sum(0)
    n_up, n_down = (cls == _UP).sum(0), (cls == _DOWN).sum(0)
    csum = None
    n = len(runs)
    o, h, lo, c = np.empty(n), np.empty(n), np.empty(n), np.empty(n)
    for k, (a, b) in enumerate(runs):
        top, bottom = first[a:b + 1].min(), last[a:b + 1].max()
        b_top, b_bot = top, bottom
        if b - a >= 2:
            side = np.delete(np.arange(a, b + 1), counts[a:b + 1].argmax())
            if last[side].max() >= 0:
                b_top, b_bot = first[side].min(), last[side].max()
        nu, nd = n_up[a:b + 1].sum(), n_down[a:b + 1].sum()
        if nu != nd:
            up = nu > nd
        else:  # black/white styles: filled body = down, hollow = up
            rows, cols = b_bot - b_top - 1, b - a - 1
            if rows <= 0 or cols <= 0:
                up = True
            else:
                if csum is None:
                    csum = np.vstack([np.zeros((1, price.shape[1]), np.int32), price.cumsum(0, dtype=np.int32)])
                # Emptiest inner column: a pixel-snapped edge can be 2 px wide and look like fill.
                up = (csum[b_bot, a + 1:b] - csum[b_top + 1, a + 1:b]).min() < 0.5 * rows
        o[k], c[k] = (b_bot, b_top) if up else (b_top, b_bot)
        h[k], lo[k] = top, bottom
    return o, h, lo, c


def _volumes(volume_px: np.ndarray, rows: tuple[int, int], runs: list[tuple[int, int]]) -> np.ndarray:
    panel = volume_px[rows[0]:rows[1] + 1]
    first, _ = _col_extents(panel)
    bottom = panel.shape[0]
    return np.array([float(bottom - first[a:b + 1].min()) if first[a:b + 1].min() < bottom else 0.0
                     for a, b in runs])
