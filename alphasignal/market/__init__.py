"""Market data loading/validation and technical indicators."""

from .data import COLUMNS, load_from_config, load_many, load_ohlcv, offline_tickers, read_table, validate_ohlcv

__all__ = ["COLUMNS", "load_from_config", "load_many", "load_ohlcv", "offline_tickers", "read_table",
           "validate_ohlcv"]
