"""The mplfinance renderer (``dataset.renderer = "mplfinance"``): the same chart drawn by ``mpf.plot``.

The figure, its price and volume axes and the x/y limits are those of the fast renderer (see ``render``'s
docstring), so each candle sits in the same pixel columns and the chart reader reads both. Colours come from
the same :data:`style.PALETTES` through an mplfinance style (alpha 1); moving averages and Bollinger bands are
computed by ``render_chart`` over warm-up bars that are not drawn and passed as add-plots, exactly as the fast
renderer draws them, and anti-aliasing is turned off as there, so the PNG holds the palette's colours. What
differs is what mplfinance does itself (its candle and volume artists, its date ticks) and the cost: a new
figure per chart, several times slower, which is why ``fast`` stays the default.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .style import BODY_WIDTH, DPI, PALETTES, Palette, axes_rects, encode_png, price_limits


def mpf_style(pal: Palette, hide_context: bool) -> dict:
    """An mplfinance style with the palette's exact colours."""
    import mplfinance as mpf

    colours = mpf.make_marketcolors(up=pal.up_body, down=pal.down_body,
                                    edge={"up": pal.up_edge, "down": pal.down_edge},
                                    wick={"up": pal.up_wick, "down": pal.down_wick},
                                    volume={"up": pal.volume_up, "down": pal.volume_down},
                                    vcdopcod=pal.volume_vs_prev_close, alpha=1.0)
    return mpf.make_mpf_style(marketcolors=colours, facecolor=pal.background, figcolor=pal.background,
                              edgecolor=pal.background if hide_context else "#000000", gridcolor=pal.grid,
                              gridstyle="--", gridaxis="both", y_on_right=True,
                              mavcolors=list(pal.mavs), rc={"axes.linewidth": 0.8, "font.size": 7})


def render_mplfinance(bars: pd.DataFrame, overlays: Sequence[tuple[np.ndarray, str]], *, size: int,
                      volume: bool, hide_context: bool, style: str, title: str | None) -> bytes:
    """PNG bytes of ``bars`` (the drawn OHLCV rows) drawn by ``mpf.plot`` into the fast renderer's axes;
    ``overlays`` are (values per drawn bar, colour) lines. Drawn under matplotlib's default settings: a plain
    ``mpf.plot`` elsewhere in the process changes them globally (grid, path simplification, line widths)."""
    with matplotlib.rc_context():
        matplotlib.rcdefaults()
        return _draw(bars, overlays, size=size, volume=volume, hide_context=hide_context, style=style, title=title)


def _draw(bars: pd.DataFrame, overlays: Sequence[tuple[np.ndarray, str]], *, size: int,
                      volume: bool, hide_context: bool, style: str, title: str | None) -> bytes:
    import mplfinance as mpf

    pal = PALETTES[style]
    if not isinstance(bars.index, pd.DatetimeIndex):  # mplfinance needs dates; only their order is drawn
        bars = bars.set_axis(pd.date_range("2000-01-03", periods=len(bars), freq="B"))
    fig = Figure(figsize=(size / DPI, size / DPI), dpi=DPI, facecolor=pal.background)
    canvas = FigureCanvasAgg(fig)
    price_rect, vol_rect = axes_rects(volume, hide_context)
    ax = fig.add_axes(price_rect)
    vax = fig.add_axes(vol_rect, sharex=ax) if vol_rect else None
    lines = [mpf.make_addplot(vals, ax=ax, color=colour, width=0.72) for vals, colour in overlays
             if np.isfinite(vals).any()]
    n = len(bars)
    ymin, ymax = price_limits(bars["High"].to_numpy(float), bars["Low"].to_numpy(float),
                              bars["Close"].to_numpy(float))
    mpf.plot(bars, type="candle", ax=ax,
             volume=vax if vax is not None else False, style=mpf_style(pal, hide_context), addplot=lines or None,
             xlim=(-1, n), ylim=(ymin, ymax), axisoff=hide_context, datetime_format="%Y-%m-%d", xrotation=0,
             update_width_config={"candle_width": BODY_WIDTH, "volume_width": BODY_WIDTH,
                                  "candle_linewidth": 0.72, "volume_linewidth": 0.0},
             warn_too_much_data=len(bars) + 1)
    ax.set_xlim(-1, n)  # mpf.plot sets its own limits; these are the fast renderer's
    ax.set_ylim(ymin, ymax)
    if vax is not None:
        vax.set_ylim(0, float(np.nan_to_num(bars["Volume"].to_numpy(float)).max()) * 1.1 or 1.0)
    for axis in filter(None, (ax, vax)):
        axis.set_ylabel("")
        axis.set_axisbelow(True)  # the grid behind the candles, as the fast renderer
        axis.set_facecolor(pal.background)  # mpf.plot paints external axes white
        for artist in (*axis.lines, *axis.collections):  # exact palette colours only, as the fast renderer
            artist.set_antialiased(False)
        if hide_context:
            axis.set_axis_off()
        else:
            axis.grid(True, color=pal.grid, linestyle="--", linewidth=0.5)
    if not hide_context:
        from matplotlib.ticker import MaxNLocator

        (vax or ax).xaxis.set_major_locator(MaxNLocator(4, integer=True))  # four dates, as the fast renderer
        if vax is not None:
            ax.tick_params(labelbottom=False)
            vax.tick_params(labelleft=False, labelright=False)  # no volume scale, as the fast renderer
    if not hide_context and title:
        fig.suptitle(title, fontsize=9, y=0.985)
    canvas.draw()
    return encode_png(np.asarray(canvas.buffer_rgba()))

