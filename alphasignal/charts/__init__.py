"""Chart rendering (window -> PNG) and, in read.py, the offline chart reader (PNG -> candles)."""

from .render import PALETTES, STYLES, chart_layout, render_chart

__all__ = ["PALETTES", "STYLES", "chart_layout", "render_chart"]
