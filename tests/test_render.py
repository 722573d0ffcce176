"""Chart renderer: PNG shape, pure documented palette, layout/bar geometry, determinism, warm-up, errors."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from alphasignal.charts import PALETTES, STYLES, chart_layout, render_chart
from alphasignal.charts.render import BOLLINGER_COLOR


def _img(png: bytes) -> np.ndarray:
    im = Image.open(io.BytesIO(png))
    assert im.format == "PNG"
    return np.asarray(im.convert("RGB"))


def _hex(rgb) -> str:
    r, g, b = (int(x) for x in rgb)
    return f"#{r:02x}{g:02x}{b:02x}"


def _mask(img: np.ndarray, colours: set[str]) -> np.ndarray:
    """Boolean mask of pixels whose colour is one of ``colours``."""
    packed = (img[..., 0].astype(np.int64) << 16) | (img[..., 1].astype(np.int64) << 8) | img[..., 2]
    return np.isin(packed, [int(c[1:], 16) for c in colours])


def _colours(img: np.ndarray) -> set[str]:
    return {_hex(c) for c in np.unique(img.reshape(-1, 3), axis=0)}


def _palette(style: str, n_mavs: int) -> set[str]:
    p = PALETTES[style]
    return {p.background, p.up_body, p.down_body, p.up_edge, p.down_edge, p.up_wick, p.down_wick, p.volume_up,
            p.volume_down, BOLLINGER_COLOR, *p.mavs[:n_mavs]}


@pytest.mark.parametrize("style", STYLES)
def test_only_documented_colours_and_right_size(aapl, style):
    png = render_chart(aapl.iloc[:80], size=448, warmup=20, bollinger=True, style=style)
    img = _img(png)
    assert img.shape == (448, 448, 3)
    got = _colours(img)
    assert got <= _palette(style, 2), got - _palette(style, 2)
    assert PALETTES[style].mavs[0] in got and PALETTES[style].mavs[1] in got and BOLLINGER_COLOR in got


def test_one_candle_per_drawn_bar_in_the_documented_boxes(aapl):
    window = aapl.iloc[100:190]  # 30 warm-up + 60 drawn
    img = _img(render_chart(window, warmup=30, style="charles", moving_averages=()))
    pal = PALETTES["charles"]
    box = chart_layout(448)
    x0, y0, x1, y1 = box["price"]
    price = img[y0:y1, x0:x1]
    cols = _mask(price, {pal.up_body, pal.down_body}).any(axis=0)
    runs = np.flatnonzero(np.diff(cols.astype(int)) == 1)  # starts of candle columns
    assert len(runs) + int(cols[0]) == 60
    # nothing of the price chart outside its box, nothing at all in the margins
    bg = np.array(Image.new("RGB", (1, 1), pal.background)).reshape(3)
    assert (img[:y0] == bg).all() and (img[:, :x0] == bg).all() and (img[:, x1:] == bg).all()
    vx0, vy0, vx1, vy1 = box["volume"]
    vol = img[vy0:vy1, vx0:vx1]
    assert {_hex(c) for c in np.unique(vol.reshape(-1, 3), axis=0)} <= {pal.background, pal.volume_up,
                                                                          pal.volume_down}
    # last candle colour follows its close vs open
    last = window.iloc[-1]
    last_cols = np.flatnonzero(cols)[-3:]
    colours = {_hex(p) for x in last_cols for p in price[:, x]}
    assert (pal.up_body if last.Close >= last.Open else pal.down_body) in colours


def test_deterministic_and_no_state_leak_between_layouts(aapl):
    w = aapl.iloc[:80]
    a = render_chart(w, warmup=20)
    render_chart(w, warmup=20, style="yahoo", size=224, volume=False, bollinger=True)
    assert render_chart(w, warmup=20) == a
    assert render_chart(aapl.iloc[1:81], warmup=20) != a


def test_warmup_bars_feed_overlays_but_are_not_drawn(aapl):
    drawn = aapl.iloc[50:110]
    with_warm = _img(render_chart(aapl.iloc[30:110], warmup=20, moving_averages=(20,), style="yahoo"))
    no_warm = _img(render_chart(drawn, warmup=0, moving_averages=(20,), style="yahoo"))
    mav = PALETTES["yahoo"].mavs[0]
    x0, y0, x1, y1 = chart_layout(448)["price"]

    def mav_columns(img):
        return list(x0 + np.flatnonzero(_mask(img[y0:y1, x0:x1], {mav}).any(axis=0)))

    # the same 60 candles; with warm-up the MA starts at the first candle, without it 19 bars later
    assert mav_columns(with_warm)[0] < x0 + 0.05 * (x1 - x0)
    assert mav_columns(no_warm)[0] > x0 + 0.25 * (x1 - x0)


def test_context_mode_adds_axes_and_title(aapl):
    hidden = _img(render_chart(aapl.iloc[:80], warmup=20))
    shown = _img(render_chart(aapl.iloc[:80], warmup=20, hide_context=False, title="AAPL"))
    assert len(_colours(shown)) > len(_colours(hidden)) + 5  # text and ticks are anti-aliased


def test_no_volume_layout():
    assert set(chart_layout(448, volume=False)) == {"price"}
    assert chart_layout(448)["price"][3] < chart_layout(448)["volume"][1]


def test_bad_arguments(aapl):
    with pytest.raises(ValueError, match="unknown chart style 'neon'"):
        render_chart(aapl.iloc[:10], style="neon")
    with pytest.raises(ValueError, match="warmup=10 must leave at least one bar"):
        render_chart(aapl.iloc[:10], warmup=10)


def test_documented_data_to_pixel_mapping(aapl):
    """What the chart reader relies on: x centre of bar i and the y-range padding, to within one pixel."""
    window = aapl.iloc[300:340]
    n = len(window)
    img = _img(render_chart(window, style="yahoo", moving_averages=(), volume=True))
    pal = PALETTES["yahoo"]
    x0, y0, x1, y1 = chart_layout(448)["price"]
    ink = {pal.up_body, pal.down_body, pal.up_wick}
    mask = _mask(img[y0:y1, x0:x1], ink)
    cols = np.flatnonzero(mask.any(axis=0))
    groups = np.split(cols, np.flatnonzero(np.diff(cols) > 1) + 1)
    centres = [x0 + g.mean() for g in groups]
    expected = [x0 + (i + 1) / (n + 1) * (x1 - x0) for i in range(n)]
    assert len(centres) == n and np.abs(np.array(centres) - expected).max() <= 1.0
    rows = np.flatnonzero(mask.any(axis=1))
    span = (y1 - y0) / 1.1  # 5% padding above the highest high and below the lowest low
    assert abs(rows[0] - 0.05 * span) <= 1.5 and abs(rows[-1] - (y1 - y0 - 0.05 * span)) <= 1.5


def test_flat_prices_and_zero_volume_still_render(aapl):
    flat = aapl.iloc[:30].copy()
    flat[["Open", "High", "Low", "Close"]] = 50.0
    flat["Volume"] = 0.0
    img = _img(render_chart(flat, style="charles", moving_averages=(5,)))
    assert img.shape == (448, 448, 3)
    assert PALETTES["charles"].up_body in _colours(img)  # 30 flat (doji) candles are still drawn
