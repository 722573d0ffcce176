"""No look-ahead in the replay: change every bar after t and every headline from t's decision time on, replay
again through the real pipeline (builtin engine), and the decisions, fills and equity up to t are unchanged."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alphasignal.config import DatasetConfig, PipelineConfig, ReplayConfig
from alphasignal.replay.journal import Journal
from alphasignal.replay.news import NewsIndex
from alphasignal.replay.run import ReplayData, decide_all, decision_times, fingerprint, plan_jobs, simulate_records
from alphasignal.signals.pipeline import SignalPipeline

N_BARS, N_DECISIONS = 150, 16
PC = PipelineConfig(provider="builtin")
DS = DatasetConfig()
WORDS = ("beats estimates and raises guidance", "plunges after a lawsuit", "record profit", "misses estimates",
         "cuts guidance sharply", "surges on strong demand")


_PIPE: dict[str, SignalPipeline] = {}


def _rc(frame: pd.DataFrame) -> ReplayConfig:
    return ReplayConfig(tickers=("AAPL",), start=str(frame.index[N_BARS - N_DECISIONS].date()), workers=1,
                        fsync=False, max_hold=5, random_runs=1)


def _news(frame: pd.DataFrame, rc: ReplayConfig, extra: list[tuple[int, str]] = ()) -> NewsIndex:
    """A headline every other bar, stamped two hours before that bar's decision time, plus ``extra``."""
    dts = decision_times(frame.index, rc.decision_time)
    items = [(int(dts[i]) - 2 * 3_600 * 10**9, f"Apple {WORDS[i % len(WORDS)]}") for i in range(0, len(frame), 2)]
    items = sorted(items + list(extra), key=lambda x: x[0])
    return NewsIndex({"AAPL": np.array([x[0] for x in items], dtype=np.int64)},
                     {"AAPL": tuple(x[1] for x in items)}, "test")


def _replay(frame: pd.DataFrame, news: NewsIndex, rc: ReplayConfig):
    data = ReplayData({"AAPL": frame}, news, {"AAPL": decision_times(frame.index, rc.decision_time)})
    pipe = _PIPE.setdefault("pipe", SignalPipeline.from_config(PC))  # one pipeline (and event loop) for all
    jobs = plan_jobs(data, DS, rc, fingerprint(DS, PC, rc, ["builtin"]))
    with tempfile.TemporaryDirectory() as tmp:
        records, _, _ = decide_all(jobs, pipe, data, DS, rc, Journal(Path(tmp) / "j.jsonl", fsync=False))
    run, signals, _ = simulate_records(data, jobs, records, rc)
    return jobs, records, run(signals)


def _stable(rec: dict) -> dict:
    """A record without wall-clock latencies."""
    out = {k: v for k, v in rec.items() if k != "usage"}
    if rec.get("ok"):
        meta = dict(rec["decision"]["meta"])
        meta.pop("latency_s")
        meta["calls"] = {k: {kk: vv for kk, vv in c.items() if kk != "latency_s"} for k, c in meta["calls"].items()}
        out["decision"] = {**rec["decision"], "meta": meta}
    return out


@pytest.fixture(scope="module")
def base(aapl):
    frame = aapl.iloc[-N_BARS:]
    rc = _rc(frame)
    news = _news(frame, rc)
    return frame, rc, news, _replay(frame, news, rc)


def _perturb(frame: pd.DataFrame, t: int, seed: int) -> pd.DataFrame:
    """Every bar after ``t`` replaced by a random walk from the close at t (consistent OHLC, new volume)."""
    rng = np.random.default_rng(seed)
    n = len(frame) - t - 1
    close = frame["Close"].iloc[t] * np.exp(np.cumsum(rng.normal(0, 0.04, n)))
    open_ = close * np.exp(rng.normal(0, 0.02, n))
    high = np.maximum(open_, close) * (1 + rng.uniform(0, 0.05, n))
    low = np.minimum(open_, close) * (1 - rng.uniform(0, 0.05, n))
    out = frame.copy()
    out.iloc[t + 1:, :5] = np.column_stack([open_, high, low, close, rng.uniform(1e6, 1e8, n)])
    return out


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                HealthCheck.too_slow])
@given(k=st.integers(0, N_DECISIONS - 2), seed=st.integers(0, 2**31 - 1))
def test_decisions_fills_and_equity_up_to_t_ignore_the_future(base, k, seed) -> None:
    frame, rc, news, (jobs, records, sim) = base
    t = N_BARS - N_DECISIONS + k
    t_date = frame.index[t]
    rng = np.random.default_rng(seed)
    dt = int(decision_times(frame.index, rc.decision_time)[t])
    future = [(dt + int(rng.integers(0, 10 * 86_400 * 10**9)), f"Apple {WORDS[int(rng.integers(len(WORDS)))]}")
              for _ in range(8)] + [(dt, "Apple plunges after a lawsuit, cuts guidance sharply")]  # at t itself
    kept = [(int(s), h) for s, h in zip(news.stamps["AAPL"], news.headlines["AAPL"], strict=True) if s < dt]
    news2 = NewsIndex({"AAPL": np.array(sorted(s for s, _ in kept + future), dtype=np.int64)},
                      {"AAPL": tuple(h for _, h in sorted(kept + future, key=lambda x: x[0]))}, "test")
    frame2 = _perturb(frame, t, seed)
    assert not np.allclose(frame2["Close"].iloc[t + 1:], frame["Close"].iloc[t + 1:])
    jobs2, records2, sim2 = _replay(frame2, news2, rc)

    before = [j for j in jobs if pd.Timestamp(j.date) <= t_date]
    before2 = [j for j in jobs2 if pd.Timestamp(j.date) <= t_date]
    assert [j.key for j in before] == [j.key for j in before2]
    assert [_stable(records[j.key]) for j in before] == [_stable(records2[j.key]) for j in before2]
    assert [f for f in sim.fills if f["date"] <= t_date] == [f for f in sim2.fills if f["date"] <= t_date]
    upto = int(np.searchsorted(sim.dates, t_date, side="right"))
    assert np.array_equal(sim.equity[:upto], sim2.equity[:upto])


def test_changing_bar_t_itself_changes_the_decision_at_t(base) -> None:
    """The check above can fail: the same comparison at t sees a change made at t."""
    frame, rc, news, (jobs, records, _) = base
    t = N_BARS - 3
    frame2 = _perturb(frame, t - 1, 1)
    jobs2, records2, _ = _replay(frame2, news, rc)
    at_t = [j for j in jobs if j.bar == t][0]
    at_t2 = [j for j in jobs2 if j.bar == t][0]
    assert at_t.key != at_t2.key
    assert (records[at_t.key]["decision"]["meta"]["image_sha256"]
            != records2[at_t2.key]["decision"]["meta"]["image_sha256"])
