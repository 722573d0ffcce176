"""Offline chart reader on real stage-01 charts (real AAPL/GOOG prices), other screenshots and bad input."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from alphasignal.charts.read import read_chart
from alphasignal.charts.render import STYLES, chart_layout, render_chart
from alphasignal.errors import UsageError

WARMUP, DRAWN = 20, 60


def _windows(df: pd.DataFrame, n: int = 8, step: int = 131) -> list[pd.DataFrame]:
    return [df.iloc[s:s + WARMUP + DRAWN] for s in range(0, n * step, step)]


@pytest.mark.parametrize("style", STYLES)
def test_recovered_closes_correlate_with_true_closes(aapl, goog, style):
    corrs, vol_corrs = [], []
    for w in _windows(aapl) + _windows(goog, 4):
        candles = read_chart(render_chart(w, style=style, warmup=WARMUP))
        true = w.iloc[WARMUP:]
        assert len(candles) == DRAWN, "candle count must be exact"
        corrs.append(np.corrcoef(candles.close, true["Close"])[0, 1])
        assert np.corrcoef(candles.high, true["High"])[0, 1] > 0.99
        assert np.corrcoef(candles.low, true["Low"])[0, 1] > 0.99
        assert candles.volume is not None
        vol_corrs.append(np.corrcoef(candles.volume, true["Volume"])[0, 1])
    assert min(corrs) >= 0.99, corrs
    assert min(vol_corrs) >= 0.99, vol_corrs


def test_direction_and_prices_exact_with_price_range(aapl):
    w = aapl.iloc[300:300 + WARMUP + DRAWN]
    true = w.iloc[WARMUP:]
    candles = read_chart(render_chart(w, style="classic", warmup=WARMUP))
    prices = candles.to_prices(float(true["Close"].iloc[-1]),
                               price_range=(float(true["Low"].min()), float(true["High"].max())))
    span = float(true["High"].max() - true["Low"].min())
    assert np.max(np.abs(prices.close - true["Close"].to_numpy())) < 0.02 * span
    up_true = (true["Close"] >= true["Open"]).to_numpy()
    up_read = prices.close >= prices.open
    big = np.abs(true["Close"] - true["Open"]).to_numpy() > 0.02 * span  # dojis can go either way
    assert (up_true[big] == up_read[big]).all()


def test_no_volume_panel_and_resized_images(aapl):
    w = aapl.iloc[500:500 + WARMUP + DRAWN]
    true = w["Close"].iloc[WARMUP:]
    no_vol = read_chart(render_chart(w, style="charles", volume=False, warmup=WARMUP))
    assert no_vol.volume is None and len(no_vol) == DRAWN
    png = render_chart(w, style="yahoo", warmup=WARMUP, size=448)
    img = Image.open(io.BytesIO(png)).resize((896, 896), Image.Resampling.NEAREST)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    big = read_chart(buf.getvalue())
    assert len(big) == DRAWN
    assert np.corrcoef(big.close, true)[0, 1] > 0.99


def test_huge_image_is_downscaled_not_rejected(aapl):
    w = aapl.iloc[700:700 + WARMUP + DRAWN]
    png = render_chart(w, style="charles", warmup=WARMUP, size=448)
    img = Image.open(io.BytesIO(png)).resize((3000, 3000), Image.Resampling.NEAREST)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    candles = read_chart(buf.getvalue(), max_side=1024)
    assert np.corrcoef(candles.close, w["Close"].iloc[WARMUP:])[0, 1] > 0.98


def test_generic_green_red_screenshot():
    """An ordinary chart from another tool: green/red filled candles on a dark background, no known palette."""
    rng = np.random.default_rng(3)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.02, 40)))
    opn = np.concatenate([[100.0], close[:-1]])
    hi, lo = np.maximum(opn, close) * 1.01, np.minimum(opn, close) * 0.99
    img = np.full((300, 400, 3), (20, 22, 30), dtype=np.uint8)
    ymin, ymax = lo.min(), hi.max()

    def y(p):
        return int(round(10 + (ymax - p) / (ymax - ymin) * 280))

    for i in range(40):
        x = 10 + i * 9
        colour = (38, 166, 91) if close[i] >= opn[i] else (239, 34, 34)
        img[y(hi[i]):y(lo[i]) + 1, x + 2] = colour
        top, bot = sorted((y(opn[i]), y(close[i])))
        img[top:bot + 1, x:x + 5] = colour
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    candles = read_chart(buf.getvalue())
    assert candles.style == "generic"
    assert len(candles) == 40
    assert np.corrcoef(candles.close, close)[0, 1] > 0.99
    assert ((candles.close >= candles.open) == (close >= opn)).mean() > 0.9


@pytest.mark.parametrize("payload, match", [
    (b"", "empty"),
    (b"not an image at all", "not a readable image"),
    (b"\x89PNG\r\n\x1a\n" + b"\x00" * 50, "not a readable image"),
])
def test_bad_bytes_are_one_line_usage_errors(payload, match):
    with pytest.raises(UsageError, match=match) as exc:
        read_chart(payload)
    assert "\n" not in str(exc.value)


def test_blank_and_missing_images(tmp_path):
    buf = io.BytesIO()
    Image.new("RGB", (300, 300), "white").save(buf, format="PNG")
    with pytest.raises(UsageError, match="does not look like a candlestick chart"):
        read_chart(buf.getvalue())
    with pytest.raises(UsageError, match="not found"):
        read_chart(tmp_path / "missing.png")


def test_read_is_deterministic_and_hollow_direction_follows_fill(aapl):
    w = aapl.iloc[900:900 + WARMUP + DRAWN]
    true = w.iloc[WARMUP:]
    png = render_chart(w, style="hollow", warmup=WARMUP)
    a, b = read_chart(png), read_chart(png)
    for name in ("open", "high", "low", "close", "volume"):
        assert np.array_equal(getattr(a, name), getattr(b, name))
    span = float(true["High"].max() - true["Low"].min())
    big = np.abs(true["Close"] - true["Open"]).to_numpy() > 0.02 * span
    assert ((a.close >= a.open) == (true["Close"] >= true["Open"]).to_numpy())[big].all()


def _reencode(png: bytes, *, size: int | None = None, fmt: str = "PNG") -> bytes:
    img = Image.open(io.BytesIO(png)).convert("RGB")
    if size:
        img = img.resize((size, size), Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    img.save(buf, format=fmt, **({"quality": 85} if fmt == "JPEG" else {}))
    return buf.getvalue()


@pytest.mark.parametrize("style", STYLES)
def test_jpeg_charts_keep_the_candle_count(aapl, style):
    corrs = []
    for s in (0, 280, 560, 840):
        w = aapl.iloc[s:s + WARMUP + DRAWN]
        candles = read_chart(_reencode(render_chart(w, style=style, warmup=WARMUP), fmt="JPEG"))
        assert len(candles) == DRAWN
        corrs.append(np.corrcoef(candles.close, w["Close"].iloc[WARMUP:])[0, 1])
    assert np.mean(corrs) > 0.9, corrs  # 4:2:0 chroma subsampling blurs thin candles' colours


@pytest.mark.parametrize("style", ["charles", "yahoo", "hollow"])  # classic: blended edges look like its grey MAs
def test_bilinear_resized_colour_charts_keep_the_candle_count(aapl, style):
    for s in (0, 280, 560, 840):
        w = aapl.iloc[s:s + WARMUP + DRAWN]
        candles = read_chart(_reencode(render_chart(w, style=style, warmup=WARMUP), size=560))
        assert len(candles) == DRAWN
        assert np.corrcoef(candles.close, w["Close"].iloc[WARMUP:])[0, 1] > 0.98


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("options", [dict(hide_context=False, bollinger=True), dict(size=224),
                                     dict(moving_averages=(5, 10, 20, 50), volume=False)], ids=str)
def test_render_options(aapl, style, options):
    """Axes, tick labels and grid; small images where bars touch; more overlays and no volume panel."""
    for s in (100, 700):
        w = aapl.iloc[s:s + WARMUP + DRAWN]
        candles = read_chart(render_chart(w, style=style, warmup=WARMUP, **options))
        assert len(candles) == DRAWN
        floor = 0.95 if (style, options.get("size")) == ("classic", 224) else 0.99  # 2-px bodies: fill is ambiguous
        assert np.corrcoef(candles.close, w["Close"].iloc[WARMUP:])[0, 1] > floor
        assert (candles.volume is None) == (options.get("volume") is False)


@pytest.mark.parametrize("style", ["classic", "charles", "yahoo"])
def test_plain_mplfinance_screenshots(aapl, style, tmp_path):
    """Charts drawn by mplfinance itself (anti-aliased, alpha 0.9, touching volume bars, default margins)."""
    import mplfinance as mpf

    w = aapl.iloc[500:560]
    path = tmp_path / "chart.png"
    mpf.plot(w, type="candle", style=style, volume=True, mav=(10, 20), axisoff=True, figsize=(4.48, 4.48),
             savefig=dict(fname=str(path), dpi=100))
    candles = read_chart(path)
    assert len(candles) == len(w)
    assert np.corrcoef(candles.close, w["Close"])[0, 1] > 0.99
    assert np.corrcoef(candles.volume, w["Volume"])[0, 1] > 0.99


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("options", [{}, dict(hide_context=False, bollinger=True, title="AAPL"), dict(size=224),
                                     dict(moving_averages=(5, 10, 20, 50), volume=False)], ids=str)
def test_both_renderers_put_each_candle_in_the_same_columns(aapl, style, options):
    """dataset.renderer=mplfinance (mpf.plot) draws the fast renderer's layout: the reader finds every candle of
    both within 1 px of the other's and of where chart_layout says bar i is centred."""
    for s in (100, 700):
        w = aapl.iloc[s:s + WARMUP + DRAWN]
        fast = read_chart(render_chart(w, style=style, warmup=WARMUP, **options))
        mpf_png = render_chart(w, style=style, warmup=WARMUP, renderer="mplfinance", **options)
        drawn = read_chart(mpf_png)
        assert mpf_png != render_chart(w, style=style, warmup=WARMUP, **options)
        assert len(drawn) == len(fast) == DRAWN
        assert np.abs(drawn.x - fast.x).max() <= 1.0
        x0, _, x1, _ = chart_layout(options.get("size", 448), options.get("volume", True),
                                    options.get("hide_context", True))["price"]
        centres = x0 + (np.arange(DRAWN) + 1) / (DRAWN + 1) * (x1 - x0)
        assert np.abs(drawn.x - centres).max() <= 1.5  # a centre between two pixels reads as either
        floor = 0.95 if (style, options.get("size")) == ("classic", 224) else 0.99
        assert np.corrcoef(drawn.close, w["Close"].iloc[WARMUP:])[0, 1] > floor
        assert (drawn.volume is None) == (options.get("volume") is False)


def test_unknown_renderer_is_refused(aapl):
    with pytest.raises(ValueError, match="renderer 'svg'.*fast, mplfinance"):
        render_chart(aapl.iloc[:80], warmup=20, renderer="svg")
