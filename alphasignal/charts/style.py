"""What both chart renderers share (the fast one in :mod:`.render`, ``mpf.plot`` in :mod:`.mpf_render`): the
palettes, the panel layout, the price range and the PNG encoder. The palette table and the layout rules are
documented in :mod:`.render`'s docstring.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

import numpy as np

DPI = 100
BODY_WIDTH = 0.6
_MARGIN = 0.02
_PANEL_RATIO = (5, 2)


@dataclass(frozen=True)
class Palette:
    """Colours of one style (hex RGB)."""

    background: str
    up_body: str
    down_body: str
    up_edge: str
    down_edge: str
    up_wick: str
    down_wick: str
    volume_up: str
    volume_down: str
    volume_vs_prev_close: bool
    mavs: tuple[str, ...]
    grid: str


PALETTES: dict[str, Palette] = {
    "classic": Palette("#ffffff", "#ffffff", "#000000", "#000000", "#000000", "#000000", "#000000",
                       "#181818", "#181818", False, ("#1a1a1a", "#262626", "#333333", "#404040"), "#cccccc"),
    "charles": Palette("#ffffff", "#006340", "#a02128", "#006340", "#a02128", "#006340", "#a02128",
                       "#007a00", "#d50d18", True, ("#ef5714", "#9f4878", "#1f77b4", "#2ca02c"), "#a0a0a0"),
    "yahoo": Palette("#fafafa", "#00b060", "#fe3032", "#00b060", "#fe3032", "#606060", "#606060",
                     "#4dc790", "#fd6b6c", True, ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728"), "#d0d0d0"),
    "hollow": Palette("#ffffff", "#ffffff", "#a02128", "#006340", "#a02128", "#006340", "#a02128",
                      "#007a00", "#d50d18", True, ("#ef5714", "#1f77b4", "#9f4878", "#2ca02c"), "#a0a0a0"),
}


def axes_rects(volume: bool, hide_context: bool) -> tuple[list[float], list[float] | None]:
    """[left, bottom, width, height] in figure fractions for the price and volume axes."""
    if hide_context:
        left, right, bottom, top = _MARGIN, 1 - _MARGIN, _MARGIN, 1 - _MARGIN
    else:
        left, right, bottom, top = 0.03, 0.86, 0.09, 0.93
    if not volume:
        return [left, bottom, right - left, top - bottom], None
    gap = _MARGIN
    usable = top - bottom - gap
    price_h = usable * _PANEL_RATIO[0] / sum(_PANEL_RATIO)
    vol_h = usable - price_h
    return [left, top - price_h, right - left, price_h], [left, bottom, right - left, vol_h]


def price_limits(high: np.ndarray, low: np.ndarray, close: np.ndarray) -> tuple[float, float]:
    """The price axis range: the drawn bars' lowest low and highest high, 5 % of their span beyond each."""
    span = float(high.max() - low.min()) or max(float(close[-1]) * 0.01, 1e-9)
    return float(low.min()) - 0.05 * span, float(high.max()) + 0.05 * span


def _png_chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


def encode_png(rgba: np.ndarray) -> bytes:
    """8-bit RGB PNG, no filter, zlib level 1: ~2x faster than Pillow here and byte-stable (no metadata)."""
    h, w, _ = rgba.shape
    raw = np.zeros((h, 1 + 3 * w), dtype=np.uint8)  # each row starts with filter type 0
    rgb = raw[:, 1:].reshape(h, w, 3)
    for k in range(3):  # channel by channel: ~8x faster than copying rgba[..., :3] in one strided go
        rgb[..., k] = rgba[..., k]
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + _png_chunk(b"IDAT", zlib.compress(raw.tobytes(), 1)) + _png_chunk(b"IEND", b""))
