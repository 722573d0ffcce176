"""Market data: offline package data, CSV/Parquet files, the parquet cache, and validation errors."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

from alphasignal.errors import DataError, UsageError
from alphasignal.market import data as md
from alphasignal.market import load_many, load_ohlcv, read_table, validate_ohlcv


def test_offline_data_is_real_sorted_and_sliced(aapl, goog):
    assert list(aapl.columns) == md.COLUMNS
    assert aapl.index.is_monotonic_increasing and aapl.index.is_unique
    assert aapl.index[0] >= pd.Timestamp("2015-01-01") and aapl.index[-1] <= pd.Timestamp("2020-12-31")
    assert 1500 < len(aapl) < 1530  # ~252 trading days a year
    assert (aapl[["Open", "High", "Low", "Close"]] > 0).all().all()
    assert goog.index[0].year == 2004 and goog.index[-1].year == 2013


def test_load_many_keeps_order():
    got = load_many(["GOOG", "AAPL"], "2010-01-01", "2010-03-01", source="offline")
    assert list(got) == ["GOOG", "AAPL"]
    assert all(len(df) > 30 for df in got.values())


def test_unknown_ticker_offline_is_a_data_error():
    with pytest.raises(DataError, match=r"ZZZZ: no offline data for this ticker .*--csv PATH") as exc:
        load_ohlcv("ZZZZ", source="offline")
    assert exc.value.exit_code == 4


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_file_round_trip(aapl, tmp_path, suffix):
    f = tmp_path / f"prices{suffix}"
    src = aapl.iloc[:300]
    if suffix == ".csv":
        src.rename(columns=str.lower).to_csv(f)  # lower-case headers are accepted
    else:
        src.to_parquet(f)
    got = load_ohlcv("X", source="csv", csv_path=f)
    pd.testing.assert_frame_equal(got, src, check_freq=False)


def test_file_errors(tmp_path):
    with pytest.raises(UsageError, match="needs a file"):
        load_ohlcv("X", source="csv")
    with pytest.raises(UsageError, match="not found: check the path"):
        read_table(tmp_path / "none.csv")
    (tmp_path / "nodate.csv").write_text("Open,High,Low,Close\n1,2,0.5,1.5\n")
    with pytest.raises(UsageError, match="no date column found"):
        read_table(tmp_path / "nodate.csv")
    (tmp_path / "nocol.csv").write_text("Date,Open,High,Low\n2020-01-01,1,2,0.5\n")
    with pytest.raises(UsageError, match="missing column.s. Close"):
        read_table(tmp_path / "nocol.csv")
    (tmp_path / "baddate.csv").write_text("Date,Open,High,Low,Close\nnot-a-date,1,2,0.5,1\n")
    with pytest.raises(UsageError, match="dates cannot be parsed"):
        read_table(tmp_path / "baddate.csv")
    (tmp_path / "junk.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(UsageError, match="cannot read .* as Parquet"):
        read_table(tmp_path / "junk.parquet")


def _frame(n: int = 10) -> pd.DataFrame:
    idx = pd.date_range("2021-01-04", periods=n, freq="B", name="Date")
    c = np.linspace(10, 20, n)
    return pd.DataFrame({"Open": c, "High": c + 1, "Low": c - 1, "Close": c, "Volume": 1000.0}, index=idx)


def _broken(row: int, **values) -> pd.DataFrame:
    df = _frame()
    for k, v in values.items():
        df.iloc[row, df.columns.get_loc(k)] = v
    return df


@pytest.mark.parametrize(("df", "needle"), [
    (_broken(3, Close=-1.0, Low=-2.0), "non-positive price at 2021-01-07 (row 3)"),
    (_broken(4, High=5.0), "inconsistent OHLC at 2021-01-08 (row 4"),
    (_broken(5, Low=100.0), "inconsistent OHLC at 2021-01-11 (row 5"),
    (_broken(6, Volume=-5.0), "volume -5 at 2021-01-12 (row 6) is negative"),
    (_frame().iloc[[0, 1, 1, 2]], "duplicate timestamp 2021-01-05 (row 2)"),
    (_frame().iloc[[0, 2, 1, 3]], "dates not in ascending order at row 2 (2021-01-05)"),
    (_broken(2, Open=1e300, High=1e300, Close=1e300), "price 1e+300 at 2021-01-06 (row 2) is above 1e+09"),
    (_broken(7, Volume=1e300), "volume 1e+300 at 2021-01-13 (row 7) is negative or above"),
    (_frame().iloc[:0], "no data in the requested range"),
])
def test_validation_errors_name_ticker_row_and_fix(df, needle):
    with pytest.raises(DataError) as exc:
        validate_ohlcv(df, "TICK")
    msg = str(exc.value)
    assert msg.startswith("TICK: ") and needle in msg and "\n" not in msg
    assert ":" in msg.split(needle)[-1] or "check" in msg  # a fix follows the problem


def test_a_users_file_is_bad_input_named_by_the_file(tmp_path):
    f = tmp_path / "my_prices.csv"
    _broken(3, Close=-1.0, Low=-2.0).to_csv(f)
    with pytest.raises(UsageError, match=r"^my_prices.csv: non-positive price at 2021-01-07 \(row 3\)"):
        load_ohlcv("AAPL", source="csv", csv_path=f)
    f.write_text("Date,Open,High,Low,Close,Volume\n")
    with pytest.raises(UsageError, match="my_prices.csv: no data in the requested range: check the file"):
        load_ohlcv("AAPL", source="csv", csv_path=f)


def test_min_length():
    with pytest.raises(DataError, match="only 10 bars, need at least 11: widen"):
        validate_ohlcv(_frame(), "T", min_length=11)
    assert len(validate_ohlcv(_frame(), "T", min_length=10)) == 10


def test_nan_policies(caplog):
    df = _frame()
    df.iloc[0, 0] = np.nan  # leading NaN: nothing to forward-fill from
    df.iloc[4, 3] = np.nan
    df.iloc[6, 1] = np.inf  # treated as missing
    df.iloc[7, 4] = np.nan  # missing volume is 0, not a missing price
    with pytest.raises(DataError, match=r"T: 3 row\(s\) with missing prices, first at 2021-01-04 \(row 0\)"):
        validate_ohlcv(df, "T", nan_policy="error")
    with caplog.at_level(logging.WARNING):
        dropped = validate_ohlcv(df, "T", nan_policy="drop")
    assert "nan_policy=drop" in caplog.text
    assert len(dropped) == 7 and dropped["Volume"].iloc[-3] == 0.0
    filled = validate_ohlcv(df, "T", nan_policy="ffill")
    assert len(filled) == 9  # only the leading row goes
    flat = filled.loc["2021-01-08", ["Open", "High", "Low", "Close"]]
    assert (flat == df.loc["2021-01-07", "Close"]).all()  # a flat bar at the previous close
    assert np.isfinite(filled.to_numpy()).all()
    with pytest.raises(UsageError, match="nan_policy='zero' is invalid"):
        validate_ohlcv(_frame(), "T", nan_policy="zero")


# ---- cache: the network cannot be reached here, so the download and the connectivity probe are fakes ----

@pytest.fixture
def fake_yahoo(monkeypatch, aapl):
    """Fake yfinance: serves slices of the real offline AAPL data and records each requested range."""
    calls: list[tuple] = []

    def fake_download(ticker, start, end, interval, retries):
        calls.append((start, end))
        return aapl.loc[start:end].copy()

    monkeypatch.setattr(md, "_download", fake_download)
    monkeypatch.setattr(md, "_network_available", lambda *a, **k: True)
    return calls


def test_cache_keeps_requested_range_and_avoids_redownload(tmp_path, fake_yahoo):
    kw = {"source": "yfinance", "cache_dir": tmp_path}
    first = load_ohlcv("AAPL", "2016-01-01", "2016-12-31", **kw)
    assert fake_yahoo == [("2016-01-01", "2016-12-31")]
    cached = pd.read_parquet(tmp_path / "AAPL_1d.parquet")
    assert list(cached.attrs["requested"]) == ["2016-01-01", "2016-12-31"]
    again = load_ohlcv("AAPL", "2016-03-01", "2016-06-30", **kw)
    assert len(fake_yahoo) == 1  # inside the cached range: no download
    pd.testing.assert_frame_equal(again, first.loc["2016-03-01":"2016-06-30"])
    load_ohlcv("AAPL", "2018-01-01", "2018-02-01", **kw)
    assert fake_yahoo[-1] == ("2016-01-01", "2018-02-01")  # the union: no gap in the cache
    assert list(pd.read_parquet(tmp_path / "AAPL_1d.parquet").attrs["requested"]) == ["2016-01-01", "2018-02-01"]
    load_ohlcv("AAPL", "2017-05-01", "2017-06-01", **kw)
    assert len(fake_yahoo) == 2
    assert not list(tmp_path.glob("*.tmp"))


def test_corrupt_cache_is_a_one_line_data_error(tmp_path, fake_yahoo):
    (tmp_path / "AAPL_1d.parquet").write_bytes(b"garbage")
    with pytest.raises(DataError, match=r"cache file .*AAPL_1d.parquet' is corrupt: delete it and run again"):
        load_ohlcv("AAPL", "2016-01-01", "2016-02-01", source="yfinance", cache_dir=tmp_path)
    assert fake_yahoo == []


def test_offline_fallback_when_network_is_down(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(md, "_network_available", lambda *a, **k: False)
    with caplog.at_level(logging.WARNING):
        df = load_ohlcv("GOOG", "2008-01-01", "2008-12-31", source="auto", cache_dir=tmp_path)
    assert "network unavailable; using offline data" in caplog.text
    assert df.index[0].year == 2008 and len(df) > 200
    with pytest.raises(DataError, match="network unavailable for yfinance"):
        load_ohlcv("GOOG", "2008-01-01", "2008-12-31", source="yfinance", cache_dir=tmp_path)


class _FlakyYahoo:
    """Fake ``yfinance.download`` (no network here): fails ``fails`` times, then serves real offline AAPL rows."""

    def __init__(self, frame: pd.DataFrame, fails: int, empty: bool = False):
        self.frame, self.fails, self.empty, self.calls = frame, fails, empty, 0

    def __call__(self, ticker, start=None, end=None, **kw):
        self.calls += 1
        if self.calls <= self.fails:
            raise ConnectionError("connection reset by peer")
        return self.frame.iloc[:0] if self.empty else self.frame.loc[start:end]


@pytest.fixture
def yahoo(monkeypatch, aapl):
    yf = pytest.importorskip("yfinance")
    sleeps: list[float] = []
    monkeypatch.setattr(md.time, "sleep", sleeps.append)
    monkeypatch.setattr(md, "_network_available", lambda *a, **k: True)

    def install(fails: int, empty: bool = False) -> _FlakyYahoo:
        fake = _FlakyYahoo(aapl, fails, empty)
        monkeypatch.setattr(yf, "download", fake)
        return fake

    install.sleeps = sleeps
    return install


def test_download_retries_with_backoff(tmp_path, yahoo):
    fake = yahoo(fails=2)
    df = load_ohlcv("AAPL", "2016-01-01", "2016-03-01", source="yfinance", cache_dir=tmp_path, retries=3)
    assert fake.calls == 3 and yahoo.sleeps == [1.0, 2.0] and len(df) > 30


def test_download_failure_errors_for_yfinance_and_falls_back_for_auto(tmp_path, yahoo, caplog):
    yahoo(fails=99)
    with pytest.raises(DataError, match=r"AAPL: download failed after 2 attempts \(ConnectionError: .*--csv PATH"):
        load_ohlcv("AAPL", "2016-01-01", "2016-03-01", source="yfinance", cache_dir=tmp_path, retries=2)
    assert yahoo.sleeps == [1.0]  # no pointless wait after the last attempt
    with caplog.at_level(logging.WARNING):
        df = load_ohlcv("AAPL", "2016-01-01", "2016-03-01", source="auto", cache_dir=tmp_path, retries=2)
    assert "using offline data shipped in a package" in caplog.text and len(df) > 30
    assert not list(tmp_path.iterdir())  # nothing cached from a failed download


def test_unknown_ticker_online_is_an_error_even_for_auto(tmp_path, yahoo):
    yahoo(fails=0, empty=True)
    with pytest.raises(DataError, match="ZZZZ: yfinance returned no data: check the ticker symbol"):
        load_ohlcv("ZZZZ", "2016-01-01", "2016-03-01", source="auto", cache_dir=tmp_path)
