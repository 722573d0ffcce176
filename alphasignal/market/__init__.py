"""Market data loading/validation and technical indicators."""

from .data import COLUMNS, load_many, load_ohlcv, offline_tickers, read_table, validate_ohlcv
from .universe import load_from_config

__all__ = ["COLUMNS", "load_from_config", "load_many", "load_ohlcv", "offline_tickers", "read_table",
           "validate_ohlcv"]
