"""The rank portfolio against values computed by hand on a 5-ticker toy universe: ranks, legs, fills, costs,
turnover and rank IC; weights at t never move when bars after t change; bad universe files fail in one line."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from alphasignal.config import DatasetConfig
from alphasignal.errors import UsageError
from alphasignal.market.universe import check_tickers, read_tickers_file
from alphasignal.replay.news import NewsIndex
from alphasignal.replay.outcome import ReplayData
from alphasignal.replay.rank import leg_size, rank_ic, rank_weights, ranked, simulate_rank
from alphasignal.replay.run import decision_times, plan_jobs
from alphasignal.replay.rungs import momentum_decisions, score_frame

TICKERS = ("A", "B", "C", "D", "E")
DATES = pd.bdate_range("2024-01-01", periods=4)


def _flat(open_: list[float], close: list[float]) -> pd.DataFrame:
    o, c = np.array(open_), np.array(close)
    return pd.DataFrame({"Open": o, "High": np.maximum(o, c), "Low": np.minimum(o, c), "Close": c, "Volume": 1.0},
                        index=DATES[:len(o)])


# opens and closes of the toy universe on four business days
TOY = {
    "A": _flat([10.0, 10.0, 11.5, 12.0], [10.0, 11.0, 12.0, 12.5]),
    "B": _flat([8.0, 8.0, 8.0, 8.0], [8.0, 8.0, 8.0, 8.0]),
    "C": _flat([4.0, 4.0, 5.0, 5.0], [4.0, 4.5, 5.5, 6.0]),
    "D": _flat([20.0, 20.0, 18.0, 17.0], [20.0, 19.0, 18.5, 16.0]),
    "E": _flat([50.0, 50.0, 50.0, 50.0], [50.0, 51.0, 49.0, 50.0]),
}


def test_ranks_break_ties_by_name_and_legs_are_equal_weight() -> None:
    s = pd.Series({"A": 0.9, "B": 0.2, "C": 0.6, "D": 0.2, "E": 0.5})
    assert ranked(s) == ["A", "C", "E", "B", "D"]  # B and D tie at 0.2: by name
    assert (leg_size(5, 0.1), leg_size(5, 0.2), leg_size(5, 0.4), leg_size(10, 0.1), leg_size(0, 0.1)) == \
        (1, 1, 2, 1, 0)
    assert rank_weights(s, 0.2, "long_short").to_dict() == {"A": 1.0, "B": 0.0, "C": 0.0, "D": -1.0, "E": 0.0}
    assert rank_weights(s, 0.4, "long_short").to_dict() == {"A": 0.5, "B": -0.5, "C": 0.5, "D": -0.5, "E": 0.0}
    assert rank_weights(s, 0.4, "long").to_dict() == {"A": 0.5, "B": 0.0, "C": 0.5, "D": 0.0, "E": 0.0}
    assert rank_weights(s, 0.4, "short").to_dict() == {"A": 0.0, "B": -0.5, "C": 0.0, "D": -0.5, "E": 0.0}
    # a ticker without a score is not ranked; three ranked at 0.4 -> k = 1
    s2 = pd.Series({"A": 0.9, "B": np.nan, "C": 0.1, "D": np.nan, "E": 0.5})
    assert rank_weights(s2, 0.4, "long_short").to_dict() == {"A": 1.0, "B": 0.0, "C": -1.0, "D": 0.0, "E": 0.0}
    # long-short needs two disjoint legs
    assert rank_weights(pd.Series({"A": 0.7}), 0.5, "long_short").abs().sum() == 0.0
    assert rank_weights(pd.Series({"A": 0.7}), 0.5, "long").to_dict() == {"A": 1.0}


def _toy_scores() -> pd.DataFrame:
    """Day 0: A best, D worst; day 1: C best, D worst (long switches A -> C, short keeps D)."""
    return pd.DataFrame([{"A": 0.9, "B": 0.5, "C": 0.6, "D": 0.1, "E": 0.4},
                         {"A": 0.5, "B": 0.4, "C": 0.8, "D": 0.2, "E": 0.45}], index=DATES[:2])


def test_books_fill_and_pay_costs_as_computed_by_hand() -> None:
    res = simulate_rank(TOY, _toy_scores(), 0.2, "long_short", DATES[0], None, 1000.0, fees_bps=10.0,
                        slippage_bps=0.0)
    assert list(res.executed) == [DATES[1], DATES[2]]  # decided at the close, traded at the next open
    long_, short = res.books["long"], res.books["short"]
    # long: day 1 open buys 1000 / 10 = 100 A at 10 x 1.001 -> cash -1; close 11 -> 1099
    # day 2 open: equity -1 + 100 x 11.5 = 1149; sell A at 11.5 x 0.999 (+1148.85), buy 1149 / 5 = 229.8 C at
    # 5 x 1.001 (-1150.149): cash -2.299; close C 5.5 -> 1261.601; day 3 close 6.0 -> 1376.501
    assert long_.equity == pytest.approx([1000.0, 1099.0, 1261.601, 1376.501])
    assert long_.turnover == pytest.approx([1.0, (1150.0 + 1149.0) / 1149.0])
    assert long_.fees == pytest.approx(1.0 + 1.15 + 1.149)
    # short: day 1 open sells 1000 / 20 = 50 D at 20 x 0.999 -> cash 1999; close 19 -> 1049
    # day 2 open: equity 1999 - 50 x 18 = 1099, target -1099 / 18 = -61.0556 D: sell 11.0556 more at 18 x 0.999
    q2 = -1099.0 / 18.0
    cash2 = 1999.0 + (-q2 - 50.0) * 18.0 * 0.999
    assert short.equity == pytest.approx([1000.0, 1049.0, cash2 + q2 * 18.5, cash2 + q2 * 16.0])
    # long-short: +1 A -1 D on day 1 (1000 each side), then +1 C -1 D on day 2
    ls = res.books["long_short"]
    cash1 = 1000.0 - 100 * 10 * 1.001 + 50 * 20 * 0.999
    assert ls.equity[1] == pytest.approx(cash1 + 100 * 11.0 - 50 * 19.0)
    assert ls.weights.loc[DATES[1]].to_dict() == {"A": 0.0, "B": 0.0, "C": 1.0, "D": -1.0, "E": 0.0}
    # rank IC on day 0: scores vs returns from the day-1 open to the day-2 open
    fwd = {"A": 11.5 / 10 - 1, "B": 0.0, "C": 5 / 4 - 1, "D": 18 / 20 - 1, "E": 0.0}
    assert res.ic.iloc[0] == pytest.approx(rank_ic(_toy_scores().iloc[0], pd.Series(fwd)))
    # hand: score ranks A5 B3 C4 D1 E2, return ranks A4 B2.5 C5 D1 E2.5 -> Spearman 0.8721
    assert res.ic.iloc[0] == pytest.approx(0.872082, abs=1e-6)


def test_long_only_trades_the_long_book_alone() -> None:
    res = simulate_rank(TOY, _toy_scores(), 0.2, "long_only", DATES[0], None, 1000.0, 10.0, 0.0)
    assert list(res.books) == ["long"]


def _universe(n: int = 160, seed: int = 3) -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    idx = pd.bdate_range("2020-01-01", periods=n)
    out = {}
    for k, t in enumerate(TICKERS):
        close = 50 * (k + 1) * np.exp(np.cumsum(rng.normal(0.0005 * (k - 2), 0.02, n)))
        open_ = close * np.exp(rng.normal(0, 0.005, n))
        out[t] = pd.DataFrame({"Open": open_, "High": np.maximum(open_, close) * 1.01,
                               "Low": np.minimum(open_, close) * 0.99, "Close": close, "Volume": 1e6}, index=idx)
    return out


DS = DatasetConfig(window=20)


def _momentum_weights(frames: dict[str, pd.DataFrame], start: pd.Timestamp):
    from alphasignal.config import ReplayConfig

    rc = ReplayConfig(tickers=TICKERS, start=str(start.date()), every=5)
    data = ReplayData(frames, NewsIndex(), {t: decision_times(df.index, rc.decision_time) for t, df in frames.items()})
    jobs = plan_jobs(data, DS, rc, "fp")
    _, scores = momentum_decisions(data, jobs, DS)
    res = simulate_rank(frames, score_frame(scores, data), 0.2, "long_short", start, None, 1e5, 1.0, 2.0)
    return res


@pytest.mark.parametrize("cut", [60, 87, 121, 150])
def test_weights_at_t_ignore_every_bar_after_t(cut: int) -> None:
    frames = _universe()
    start = frames["A"].index[40]
    base = _momentum_weights(frames, start)
    rng = np.random.default_rng(cut)
    changed = {}
    for t, df in frames.items():  # every bar after the cut replaced by another random walk
        df = df.copy()
        n = len(df) - cut - 1
        close = df["Close"].iloc[cut] * np.exp(np.cumsum(rng.normal(0, 0.05, n)))
        df.iloc[cut + 1:, df.columns.get_loc("Close")] = close
        df.iloc[cut + 1:, df.columns.get_loc("Open")] = close
        df.iloc[cut + 1:, df.columns.get_loc("High")] = close * 1.02
        df.iloc[cut + 1:, df.columns.get_loc("Low")] = close * 0.98
        changed[t] = df
    other = _momentum_weights(changed, start)
    t_cut = frames["A"].index[cut]
    for book in base.books:
        w0, w1 = base.books[book].weights, other.books[book].weights
        upto = w0.index[w0.index <= t_cut]
        assert len(upto) > 0
        pd.testing.assert_frame_equal(w0.loc[upto], w1.loc[upto])
        k = int(np.searchsorted(base.dates, t_cut, side="right"))
        np.testing.assert_array_equal(base.books[book].equity[:k], other.books[book].equity[:k])
    after = base.books["long_short"].weights.index > t_cut
    if after.any():  # the test can fail: later weights do see the new bars
        assert not base.books["long_short"].weights[after].equals(other.books["long_short"].weights[after])


def test_rank_ic_is_spearman_and_undefined_on_constant_scores() -> None:
    s = pd.Series({"A": 1.0, "B": 2.0, "C": 3.0, "D": 4.0})
    assert rank_ic(s, pd.Series({"A": 0.1, "B": 0.2, "C": 0.3, "D": 0.4})) == pytest.approx(1.0)
    assert rank_ic(s, pd.Series({"A": 0.4, "B": 0.3, "C": 0.2, "D": 0.1})) == pytest.approx(-1.0)
    assert math.isnan(rank_ic(pd.Series({"A": 1.0, "B": 1.0, "C": 1.0}), pd.Series({"A": 0.1, "B": 0.2, "C": 0.3})))


def test_universe_files_with_no_or_unknown_tickers_are_refused(tmp_path: Path) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing here\n\n", encoding="utf-8")
    with pytest.raises(UsageError, match="lists no ticker"):
        read_tickers_file(empty)
    odd = tmp_path / "odd.txt"
    odd.write_text("AAPL\nMS FT\n", encoding="utf-8")
    with pytest.raises(UsageError, match="not one ticker"):
        read_tickers_file(odd)
    with pytest.raises(UsageError, match="no offline data: ZZZZ"):
        check_tickers(["AAPL", "ZZZZ"], DatasetConfig(source="offline"))
    check_tickers(["AAPL", "IBM"], DatasetConfig(source="offline"))


def test_builtin_rung_weights_at_t_ignore_every_bar_after_t(tmp_path: Path) -> None:
    """The chart reader's P(up) through the real pipeline: new bars after the cut leave every weight up to it."""
    from alphasignal.config import Config, PipelineConfig, ReplayConfig
    from alphasignal.market.data import load_ohlcv
    from alphasignal.replay.compare import decide_rung, rank_jobs

    base = {t: load_ohlcv(t, "2011-06-01", "2012-03-31", source="offline") for t in ("AAPL", "IBM", "MSFT")}
    cut = base["AAPL"].index[-25]
    rc = ReplayConfig(tickers=tuple(base), start="2012-01-03", every=5, workers=1, fsync=False)
    cfg, pc = Config(), PipelineConfig(provider="builtin")

    def weights(frames: dict[str, pd.DataFrame], out: Path) -> pd.DataFrame:
        data = ReplayData(frames, NewsIndex(), {t: decision_times(df.index, rc.decision_time)
                                                for t, df in frames.items()})
        run = decide_rung("builtin", rank_jobs(data, cfg.dataset, rc), data, cfg, pc, rc, out, True)
        res = simulate_rank(frames, score_frame(run.scores, data), 0.34, "long_short", pd.Timestamp(rc.start), None,
                            1e5, 1.0, 0.0)
        return res.books["long_short"].weights

    rng = np.random.default_rng(11)
    changed = {}
    for t, df in base.items():
        df = df.copy()
        after = df.index > cut
        close = df.loc[~after, "Close"].iloc[-1] * np.exp(np.cumsum(rng.normal(0, 0.04, after.sum())))
        df.loc[after, ["Open", "Close"]] = np.c_[close, close]
        df.loc[after, "High"], df.loc[after, "Low"] = close * 1.03, close * 0.97
        changed[t] = df
    w0, w1 = weights(base, tmp_path / "a"), weights(changed, tmp_path / "b")
    upto = w0.index[w0.index <= cut]
    assert len(upto) >= 3
    pd.testing.assert_frame_equal(w0.loc[upto], w1.loc[upto])
    assert not w0.loc[w0.index > cut].equals(w1.loc[w1.index > cut])  # later weights do read the new bars
