"""Stage 01 fixtures: a small real dataset built once per session (offline GOOG + AAPL, small images)."""

from __future__ import annotations

import dataclasses

import pytest

from alphasignal.config import DatasetConfig


def small_dataset_config(out, **kw) -> DatasetConfig:
    """Offline data, short windows, small images: builds in about a second."""
    base = {"tickers": ("AAPL", "GOOG"), "source": "offline", "start": "2008-01-01", "end": "2012-12-31",
            "window": 30, "stride": 7, "horizon": 5, "image_size": 128, "workers": 1, "output_dir": str(out)}
    return dataclasses.replace(DatasetConfig(), **{**base, **kw})


@pytest.fixture(scope="session")
def small_dataset(tmp_path_factory):
    """(DatasetConfig, summary) of a dataset built in a session temp dir."""
    from alphasignal.dataset import build_dataset

    ds = small_dataset_config(tmp_path_factory.mktemp("ds_small"))
    return ds, build_dataset(ds, quiet=True)
