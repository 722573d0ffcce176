"""Fast candlestick chart rendering: OHLCV window -> PNG bytes, with mplfinance's look.

A naive ``mpf.plot`` + ``savefig`` builds a new figure per chart (~190 ms). Here each process keeps ONE
matplotlib figure per (size, volume, hide_context, style, overlays) layout and only swaps the data of its
collections, then rasterises with the Agg canvas and writes the RGB buffer as a PNG directly (~10x faster).

Palette (exact RGB; every element is drawn with antialiasing OFF and alpha 1, so the PNG holds only these
colours plus, when ``hide_context=False``, anti-aliased text/tick pixels outside the candle area)::

    style    bg      body up  body dn  edge up  edge dn  wick up  wick dn  vol up   vol dn   MAs in order
    classic  #ffffff #ffffff  #000000  #000000  #000000  #000000  #000000  #181818  #181818  #1a1a1a #262626 #333333
    charles  #ffffff #006340  #a02128  #006340  #a02128  #006340  #a02128  #007a00  #d50d18  #ef5714 #9f4878 #1f77b4
    yahoo    #fafafa #00b060  #fe3032  #00b060  #fe3032  #606060  #606060  #4dc790  #fd6b6c  #1f77b4 #ff7f0e #2ca02c
    hollow   #ffffff #ffffff  #a02128  #006340  #a02128  #006340  #a02128  #007a00  #d50d18  #ef5714 #1f77b4 #9f4878
    (a 4th MA: classic #404040, charles #2ca02c, yahoo #d62728, hollow #2ca02c; further MAs cycle)

Bollinger bands (upper and lower, 20 bars, 2 sigma) are #9467bd in every style. "Up" means Close >= Open for
candles; for volume bars it is Close >= Open (classic) or Close >= previous Close (charles, yahoo, hollow), as
mplfinance does (its ``vcdopcod``). MA i uses colour i of the style's list (cycled). Deviations from
mplfinance, for a clean palette: alpha is always 1 (classic/yahoo use 0.9 there), antialiasing is off, and
charles' MA list (mplfinance repeats each colour twice) is de-duplicated so the first two MAs differ.

Layout (``chart_layout`` returns the exact pixel boxes): the figure is ``size`` x ``size`` pixels at 100 dpi.
With ``hide_context=True`` there are no axes, ticks, labels, grid or title: the price panel spans the full
width minus a 2% margin each side and sits above the volume panel, heights in mplfinance's default ratio 5:2
with a 2% gap; without volume the price panel fills the height. With ``hide_context=False`` margins leave room
for dates (bottom), prices (right, as mplfinance's ``y_on_right``) and the title, and a grid is drawn.
Bar i of the N drawn bars is centred at data x = i, x-limits are (-1, N); bodies and volume bars are 0.6 wide,
wicks and MA/Bollinger lines 1 px. The price y-range is [min Low - 5% span, max High + 5% span] over the drawn
bars only (MAs can be clipped); the volume y-range is [0, 1.1 * max Volume]. Bodies (1 px edge) are drawn over
their wicks. In pixels, with ``(x0, y0, x1, y1) = chart_layout(size)["price"]``: bar i is centred at
x0 + (i + 1) / (N + 1) * (x1 - x0), and price p sits at y0 + (ymax - p) / (ymax - ymin) * (y1 - y0) (tested).

``warmup`` leading bars feed the moving averages / Bollinger bands but are not drawn, so overlays start at the
first drawn bar without look-ahead (every value at bar t uses bars <= t only).

``render_key`` hashes everything a chart depends on (bars, timestamps, settings, this renderer's code and
libraries), so a caller may cache the PNG under it (the replay does, in the call cache).
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import threading
import zlib
from collections.abc import Sequence
from dataclasses import asdict

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.collections import LineCollection, PolyCollection
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure

from ..fileio import source_digest
from ..market.indicators import bollinger as _bollinger
from ..market.indicators import sma
from .style import BODY_WIDTH, DPI, PALETTES, Palette, axes_rects, encode_png, price_limits

__all__ = ["BODY_WIDTH", "BOLLINGER_COLOR", "DPI", "PALETTES", "RENDERERS", "STYLES", "Palette", "axes_rects",
           "chart_layout", "encode_png", "price_limits", "render_chart", "render_key", "renderer_id"]

STYLES = ("classic", "charles", "yahoo", "hollow")
BOLLINGER_COLOR = "#9467bd"
_PX = 72 / DPI  # one pixel in points


def chart_layout(size: int = 448, volume: bool = True,
                 hide_context: bool = True) -> dict[str, tuple[int, int, int, int]]:
    """Pixel boxes ``(x0, y0, x1, y1)`` (top-left origin, end-exclusive) of the ``price`` and ``volume`` panels."""
    out = {}
    for name, rect in zip(("price", "volume"), axes_rects(volume, hide_context), strict=True):
        if rect is None:
            continue
        left, bottom, w, h = rect
        out[name] = (round(left * size), round((1 - bottom - h) * size), round((left + w) * size),
                     round((1 - bottom) * size))
    return out


class _Canvas:
    """One reusable figure with the artists of a layout; ``draw`` swaps their data."""

    def __init__(self, size: int, volume: bool, hide_context: bool, style: str, n_mavs: int, bollinger: bool):
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        self.pal = PALETTES[style]
        self.rgba = {k: np.array(to_rgba(v)) for k, v in asdict(self.pal).items() if isinstance(v, str)}
        self.style, self.hide_context = style, hide_context
        self.fig = Figure(figsize=(size / DPI, size / DPI), dpi=DPI, facecolor=self.pal.background)
        self.canvas = FigureCanvasAgg(self.fig)
        price_rect, vol_rect = axes_rects(volume, hide_context)
        self.ax = self.fig.add_axes(price_rect)
        self.vax = self.fig.add_axes(vol_rect, sharex=self.ax) if vol_rect else None
        for ax in filter(None, (self.ax, self.vax)):
            ax.set_facecolor(self.pal.background)
            if hide_context:
                ax.set_axis_off()
            else:
                ax.yaxis.tick_right()
                ax.tick_params(labelsize=7, length=2)
                ax.grid(True, color=self.pal.grid, linestyle="--", linewidth=0.5)
                ax.set_axisbelow(True)
        if self.vax is not None and not hide_context:
            self.ax.tick_params(labelbottom=False)
            self.vax.tick_params(labelsize=6, labelright=False)
        kw = {"antialiaseds": False}
        self.wicks = LineCollection([], linewidths=_PX, **kw)
        self.bodies = PolyCollection([], linewidths=_PX, **kw)
        self.ax.add_collection(self.wicks)
        self.ax.add_collection(self.bodies)
        self.mav_lines = [self.ax.plot([], [], color=self.pal.mavs[i % len(self.pal.mavs)], linewidth=_PX,
                                       antialiased=False)[0] for i in range(n_mavs)]
        self.bb_lines = [self.ax.plot([], [], color=BOLLINGER_COLOR, linewidth=_PX, antialiased=False)[0]
                         for _ in range(2 if bollinger else 0)]
        self.vbars = None
        if self.vax is not None:
            self.vbars = PolyCollection([], linewidths=0.0, **kw)
            self.vax.add_collection(self.vbars)
        self.title = self.fig.suptitle("", fontsize=9, y=0.985) if not hide_context else None

    def draw(self, o, h, lo, c, v, mav_values, bb_values, dates, title) -> bytes:
        n = len(c)
        x = np.arange(n, dtype="float64")
        up = c >= o
        pal = self.pal
        self.wicks.set_segments(np.stack([np.column_stack([x, lo]), np.column_stack([x, h])], axis=1))
        self.wicks.set_colors(self._pick(up, "up_wick", "down_wick"))
        half = BODY_WIDTH / 2
        bot, top = np.minimum(o, c), np.maximum(o, c)
        self.bodies.set_verts(_rects(x - half, x + half, bot, top))
        self.bodies.set_facecolors(self._pick(up, "up_body", "down_body"))
        self.bodies.set_edgecolors(self._pick(up, "up_edge", "down_edge"))
        for line, vals in zip(self.mav_lines, mav_values, strict=True):
            line.set_data(x, vals)
        for line, vals in zip(self.bb_lines, bb_values, strict=True):
            line.set_data(x, vals)
        self.ax.set_xlim(-1, n)
        self.ax.set_ylim(*price_limits(h, lo, c))
        if self.vbars is not None:
            vup = np.concatenate([[True], c[1:] >= c[:-1]]) if pal.volume_vs_prev_close else up
            self.vbars.set_verts(_rects(x - half, x + half, np.zeros(n), v))
            self.vbars.set_facecolors(self._pick(vup, "volume_up", "volume_down"))
            self.vax.set_ylim(0, float(v.max()) * 1.1 or 1.0)
        if not self.hide_context:
            ticks = np.unique(np.linspace(0, n - 1, min(n, 4)).round().astype(int))
            bottom_ax = self.vax if self.vax is not None else self.ax
            bottom_ax.set_xticks(ticks)
            bottom_ax.set_xticklabels([pd.Timestamp(dates[i]).strftime("%Y-%m-%d") for i in ticks]
                                      if dates is not None else [str(i) for i in ticks])
            self.title.set_text(title or "")
        self.canvas.draw()
        return encode_png(np.asarray(self.canvas.buffer_rgba()))

    def _pick(self, cond: np.ndarray, if_true: str, if_false: str) -> np.ndarray:
        """Per-bar RGBA rows (converting hex strings per bar costs more than drawing)."""
        return np.where(cond[:, None], self.rgba[if_true], self.rgba[if_false])


def _rects(x0: np.ndarray, x1: np.ndarray, y0: np.ndarray, y1: np.ndarray) -> np.ndarray:
    return np.stack([np.column_stack([x0, y0]), np.column_stack([x0, y1]), np.column_stack([x1, y1]),
                     np.column_stack([x1, y0])], axis=1)


_local = threading.local()


def _canvas(key: tuple) -> _Canvas:
    cache = getattr(_local, "canvases", None)
    if cache is None:
        cache = _local.canvases = {}
    if key not in cache:
        cache[key] = _Canvas(*key)
    return cache[key]


RENDERERS = ("fast", "mplfinance")


# the project code a chart depends on (tests check the imports); style holds what both renderers share,
# mpf_render draws renderer="mplfinance"
RENDERER_CODE = (__name__, sma.__module__, f"{__package__}.style", f"{__package__}.mpf_render")


@functools.cache
def renderer_id() -> str:
    """Identity of the renderer: this module's and the indicators' source and the libraries that draw and encode."""
    return source_digest(RENDERER_CODE, (matplotlib.__version__, np.__version__, zlib.ZLIB_VERSION))


def render_key(window: pd.DataFrame, **settings: object) -> str:
    """sha256 of everything ``render_chart(window, **settings)`` depends on: the OHLCV values of every bar, their
    timestamps (drawn as dates), every setting (defaults filled in) and ``renderer_id``."""
    unknown = set(settings) - set(_RENDER_DEFAULTS)
    if unknown:
        raise TypeError(f"render_chart has no setting {', '.join(sorted(unknown))}")
    arr = np.stack([window[k].to_numpy(dtype="float64") for k in ("Open", "High", "Low", "Close", "Volume")])
    dates = window.index if isinstance(window.index, pd.DatetimeIndex) else None
    head = [renderer_id(), {**_RENDER_DEFAULTS, **settings}, arr.shape, None if dates is None else str(dates.dtype)]
    h = hashlib.sha256(json.dumps(head, sort_keys=True, default=list).encode())
    h.update(arr.tobytes())
    if dates is not None:
        h.update(np.ascontiguousarray(dates.asi8).tobytes())
    return h.hexdigest()


def render_chart(window: pd.DataFrame, *, size: int = 448, volume: bool = True,
                 moving_averages: Sequence[int] = (10, 20), bollinger: bool = False, hide_context: bool = True,
                 style: str = "classic", title: str | None = None, warmup: int = 0, renderer: str = "fast") -> bytes:
    """PNG bytes of a candlestick chart of ``window[warmup:]`` (OHLCV columns); leading bars only warm up overlays.

    ``renderer="mplfinance"`` draws the same layout with ``mpf.plot`` (see :mod:`.mpf_render`)."""
    if style not in PALETTES:
        raise ValueError(f"unknown chart style {style!r}: use one of {', '.join(STYLES)}")
    if renderer not in RENDERERS:
        raise ValueError(f"unknown chart renderer {renderer!r}: use one of {', '.join(RENDERERS)}")
    if not 0 <= warmup < len(window):
        raise ValueError(f"warmup={warmup} must leave at least one bar to draw (window has {len(window)} bars)")
    if size < 64:
        raise ValueError(f"chart size {size} is too small: use at least 64 pixels")
    arr = {k: window[k].to_numpy(dtype="float64") for k in ("Open", "High", "Low", "Close", "Volume")}
    close = arr["Close"]
    mav_values = [sma(close, int(p))[warmup:] for p in moving_averages]
    bb_values = []
    if bollinger:
        lower, _mid, upper = _bollinger(close, 20, 2.0)
        bb_values = [upper[warmup:], lower[warmup:]]
    if renderer == "mplfinance":
        from .mpf_render import render_mplfinance

        mavs = PALETTES[style].mavs
        overlays = [(vals, mavs[i % len(mavs)]) for i, vals in enumerate(mav_values)]
        overlays += [(vals, BOLLINGER_COLOR) for vals in bb_values]
        return render_mplfinance(window.iloc[warmup:], overlays, size=int(size), volume=bool(volume),
                                 hide_context=bool(hide_context), style=style, title=title)
    dates = window.index[warmup:] if isinstance(window.index, pd.DatetimeIndex) else None
    cv = _canvas((int(size), bool(volume), bool(hide_context), style, len(moving_averages), bool(bollinger)))
    o, h, lo, c, v = (arr[k][warmup:] for k in ("Open", "High", "Low", "Close", "Volume"))
    return cv.draw(o, h, lo, c, np.nan_to_num(v), mav_values, bb_values, dates, title)


_RENDER_DEFAULTS = {k: p.default for k, p in inspect.signature(render_chart).parameters.items()
                    if p.kind is p.KEYWORD_ONLY}  # what render_key fills in for settings not given
