"""Issue 27: the evidence a sceptic accepts in the replay report -- the Sharpe ratio's HAC interval and PSR beside
the bootstrap one, the split by market regime (hand-labelled windows) and the split at a model's knowledge cut-off
(a memorising fake model: right before its cut-off, random after), and bad cut-off dates as one error line."""

from __future__ import annotations

import math
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from alphasignal.config import Config, PipelineConfig, ReplayConfig
from alphasignal.configio import ConfigError
from alphasignal.evaluation.hac import sharpe_hac_ci
from alphasignal.evaluation.metrics import moments
from alphasignal.evaluation.overfitting import deflated_sharpe_ratio
from alphasignal.evaluation.psr import probabilistic_sharpe, table_extras
from alphasignal.evaluation.regimes import classify, label
from alphasignal.replay.outcome import Meter, Outcome
from alphasignal.replay.portfolio import Signal, simulate
from alphasignal.replay.report import markdown
from alphasignal.replay.run import load_data
from alphasignal.replay.sceptic import Cutoff, analyse
from alphasignal.replay.stats import compare


def test_psr_is_the_papers_formula_and_the_dsr_with_one_trial() -> None:
    r = np.random.default_rng(3).standard_t(5, 500) * 0.01 + 0.0008
    sr, skew, kurt = moments(r)
    z = (sr - 0.02) * math.sqrt(len(r) - 1) / math.sqrt(1 - skew * sr + (kurt - 1) / 4 * sr * sr)
    assert probabilistic_sharpe(r, 0.02) == pytest.approx(0.5 * math.erfc(-z / math.sqrt(2)), abs=1e-12)
    assert probabilistic_sharpe(r) == pytest.approx(deflated_sharpe_ratio(sr, 1, len(r), 0.0, skew, kurt), abs=1e-12)
    extra, hac = table_extras(r, 252.0, r)  # against itself: exactly one half
    assert extra["psr_bh"] == pytest.approx(0.5) and hac == sharpe_hac_ci(r, 252.0)
    assert math.isnan(probabilistic_sharpe(r[:2])) and math.isnan(probabilistic_sharpe(np.zeros(50)))


def test_regimes_against_hand_labelled_windows() -> None:
    # closes: 100 for 4 bars, up 2 % a bar for 4, flat for 4, down 3 % a bar for 4; window 3, thresholds +-5 %
    close = [100.0] * 4 + [100 * 1.02**k for k in range(1, 5)] + [100 * 1.02**4] * 4
    close += [close[-1] * 0.97**k for k in range(1, 5)]
    idx = pd.bdate_range("2020-01-01", periods=len(close))
    frames = {"X": pd.DataFrame({"Close": close}, index=idx)}
    got = list(classify(frames, idx, 3, 0.05, -0.05))
    # t vs t-3: bars 3-5 gain 0, 2, 4.04 % (sideways); 6 and 7 gain 6.1 % (bull); 8 gains 1.0404 / 1 ... 108.24 /
    # 104.04 = 4.0 % (sideways); 9-11 gain 2, 0, 0 %; 12 loses 3 % (sideways); 13-15 lose 5.9, 8.7, 8.7 % (bear)
    hand = ["warm-up"] * 3 + ["sideways"] * 3 + ["bull"] * 2 + ["sideways"] * 5 + ["bear"] * 3
    assert got == hand
    # causal: rewriting every close after bar 9 leaves the labels up to bar 9 unchanged
    later = frames["X"].copy()
    later.iloc[10:, 0] = 1.0
    assert list(classify({"X": later}, idx, 3, 0.05, -0.05))[:10] == hand[:10]
    assert list(label(np.array([np.nan, 0.051, -0.051, 0.05]), 0.05, -0.05)) == ["warm-up", "bull", "bear",
                                                                                "sideways"]

def memorising_fake(frames: dict[str, pd.DataFrame], start: str, cutoff: str, seed: int = 0
                    ) -> dict[str, dict[int, Signal]]:
    """A fake model that memorised its training period: on or before ``cutoff`` it 'knows' the next close and
    trades with it; after, it answers at random."""
    rng = np.random.default_rng(seed)
    out: dict[str, dict[int, Signal]] = {}
    for t, df in frames.items():
        c = df["Close"].to_numpy()
        sig = {}
        for j in np.flatnonzero(df.index >= pd.Timestamp(start))[:-1]:
            side = (1 if c[j + 1] > c[j] else -1) if df.index[j] <= pd.Timestamp(cutoff) else int(rng.choice((-1, 1)))
            sig[int(j)] = Signal("BUY" if side > 0 else "SELL", 0.8, c[j] * (1 - 0.2 * side), c[j] * (1 + 0.2 * side))
        out[t] = sig
    return out


def _fake_outcome(cutoff: str, chart_cutoff: Cutoff) -> Outcome:
    cfg = Config()
    ds = replace(cfg.dataset, source="offline")
    rc = ReplayConfig(tickers=("AAPL",), start="2016-01-04", end="2016-12-30", random_runs=3, bootstrap=200,
                      max_hold=1, mode="long_short")
    data, _ = load_data(rc.tickers, ds, rc)
    signals = memorising_fake(data.frames, rc.start, cutoff)

    def run(s: dict[str, dict[int, Signal]]):
        return simulate(data.frames, s, rc, pd.Timestamp(rc.start), pd.Timestamp(rc.end), 252.0)

    sim = run(signals)
    cmp_ = compare(sim, data.frames, signals, run, rc, 252.0)
    r = cmp_["returns"]
    cmp_["sceptic"] = analyse(data.frames, signals, sim.dates, r["replay"], r["buy & hold"], rc, 252.0,
                              [chart_cutoff])
    return Outcome(rc, data, [], {}, Meter(), 0, sim, cmp_, [], ["memorising-fake:v1"])


def test_memorising_fake_shows_the_pre_post_gap_and_the_warning() -> None:
    o = _fake_outcome("2016-09-30", Cutoff("chart", "memorising-fake", "2016-09-30", "pipeline.chart_knowledge_cutoff"))
    groups = o.comparison["sceptic"]["cutoffs"][0]["groups"]
    before, after = groups["before"], groups["after"]
    assert before["hit_rate"] == 1.0 and 0.3 < after["hit_rate"] < 0.7
    assert before["sharpe"] > after["sharpe"] + 2 and before["psr_0"] > 0.99
    assert before["decisions"] + after["decisions"] == sum(len(s) for s in memorising_fake(
        o.data.frames, o.rc.start, "2016-09-30").values())
    assert before["share"] > 0.7
    for g in (before, after):  # each part with its own intervals
        assert g["boot"][0] < g["sharpe"] < g["boot"][1] and g["hac"][0] < g["sharpe"] < g["hac"][1]
    text = markdown(o)
    head = text.splitlines()[:4]
    assert any("Warning" in line and "knowledge cut-off 2016-09-30" in line for line in head)
    assert "## Before / after the chart model's knowledge cut-off (2016-09-30" in text
    assert "| before | " in text and "| after | " in text and "## By market regime" in text
    assert "| Sharpe [HAC 95 %] |" in text and "| PSR: P(Sharpe > 0) |" in text


def test_unknown_cutoff_warns_and_late_cutoff_does_not() -> None:
    o = _fake_outcome("2016-02-01", Cutoff("news", "some-llm", "", "not set"))
    assert "knowledge cut-off is unknown" in "\n".join(markdown(o).splitlines()[:4])
    assert o.comparison["sceptic"]["cutoffs"] == []
    o = _fake_outcome("2016-02-01", Cutoff("chart", "memorising-fake", "2016-02-01", "pipeline.chart_knowledge_cutoff"))
    assert o.comparison["sceptic"]["warnings"] == []  # most decisions after the cut-off: no warning
    assert "Warning" not in markdown(o)


@pytest.mark.parametrize("value, needle", [("2999-01-01", "is in the future"), ("last year", "is not a date"),
                                           ("2020-13-01", "is not a date")])
def test_bad_cutoff_is_one_config_error(value: str, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        PipelineConfig(news_knowledge_cutoff=value)


def test_bad_cutoff_on_the_command_line_is_one_error_line(tmp_path: Path) -> None:
    out = tmp_path / "replay"
    p = subprocess.run([sys.executable, "04_signal_pipeline.py", "--replay", "--provider", "builtin",
                        "--set", "pipeline.chart_knowledge_cutoff=2999-01-01", "--set", f"replay.output_dir={out}"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and p.stdout == ""
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "in the future" in lines[0]
    assert not out.exists()


def test_compare_and_rank_tables_carry_hac_psr_and_the_regime_split(tmp_path: Path) -> None:
    from alphasignal.replay.compare import run_compare, run_rank
    from alphasignal.replay.compare_report import write_compare

    cfg = Config()
    cfg = replace(cfg, dataset=replace(cfg.dataset, source="offline"))
    pc = PipelineConfig(provider="builtin")
    rc = ReplayConfig(tickers=("AAPL", "GOOG"), start="2012-06-01", end="2012-12-31", every=5, workers=1, fsync=False,
                      random_runs=3, bootstrap=200, output_dir=str(tmp_path / "cmp"))
    o = run_compare(cfg, pc, rc, ("momentum",))
    mom = o.columns["momentum"]
    r = np.diff(np.concatenate([[rc.initial_cash], o.equity["momentum"].to_numpy()])) / np.concatenate(
        [[rc.initial_cash], o.equity["momentum"].to_numpy()[:-1]])
    assert mom["interval"]["sharpe_hac"] == pytest.approx(sharpe_hac_ci(r, 252.0), rel=0.05)  # ppy of the calendar
    assert 0 <= mom["psr_0"] <= 1 and o.columns["buy & hold"]["psr_bh"] == pytest.approx(0.5)
    regimes = o.sceptic["momentum"]["regimes"]
    assert sum(g["decisions"] for g in regimes.values()) == sum(len(s) for s in o.rungs[0].signals.values())
    assert o.rungs[0].cutoffs == [] and o.sceptic["momentum"]["warnings"] == []  # a rule learns nothing
    text = write_compare(o, tmp_path / "cmp")["report"].read_text(encoding="utf-8")
    assert "| Sharpe [HAC 95 %] |" in text and "## rung `momentum`: by market regime" in text
    rank = run_rank(cfg, pc, replace(rc, tickers=("AAPL", "GOOG", "IBM", "MSFT"), output_dir=str(tmp_path / "rk"),
                                     rank_fraction=0.25), ("momentum",))
    assert all("sharpe_hac" in c["interval"] and "psr_0" in c for c in rank.columns.values())


def test_ladder_splits_by_regime_and_at_a_memorising_fake_rungs_cutoff(tmp_path: Path) -> None:
    from fixtures_dataset import small_dataset_config

    from alphasignal.dataset import build_dataset
    from alphasignal.evaluation.classification import encode, one_hot
    from alphasignal.evaluation.ladder import Rung, to_markdown, to_text
    from alphasignal.market.universe import load_from_config
    from alphasignal.signals.evaluate import load_test_samples
    from alphasignal.signals.ladder import evaluate_ladder
    from alphasignal.signals.ladder_sceptic import sample_regimes

    ds = small_dataset_config(tmp_path / "ds")
    build_dataset(ds, quiet=True)
    samples = load_test_samples(replace(Config(), dataset=ds))
    ends = sorted({s.window_end for s in samples})
    cutoff = ends[int(0.7 * len(ends))]
    rng = np.random.default_rng(0)
    fake = tuple(s.label if s.window_end <= cutoff else str(rng.choice(["BUY", "SELL", "HOLD"])) for s in samples)
    memorising_fake = Rung("vlm", fake, one_hot(encode(fake)), "one-hot", "memorising fake")
    cfg = replace(Config(), dataset=ds, pipeline=replace(Config().pipeline, provider="builtin", eval_bootstrap=200,
                                                         chart_knowledge_cutoff=cutoff))
    ladder, windows = evaluate_ladder(cfg, cfg.pipeline, "momentum", extra=[memorising_fake])
    sc = ladder.sceptic
    assert sum(g["n"] for g in sc["regimes"].values()) == len(windows)
    # every window's regime by hand: its ticker's close at the window end over the close 63 bars before
    hand = []
    for w in windows:
        close = load_from_config(ds, w.ticker)["Close"]
        k = close.index.get_loc(pd.Timestamp(w.window_end))
        ret = close.iloc[k] / close.iloc[k - 63] - 1 if k >= 63 else math.nan
        hand.append("warm-up" if k < 63 else "bull" if ret > 0.05 else "bear" if ret < -0.05 else "sideways")
    assert list(sample_regimes(cfg, windows)) == hand
    assert {g: v["n"] for g, v in sc["regimes"].items()} == {g: hand.count(g) for g in set(hand)}
    split = next(c for c in sc["cutoffs"] if c["rung"] == "vlm")
    before, after = split["groups"]["before"]["rows"]["vlm"], split["groups"]["after"]["rows"]["vlm"]
    assert before["accuracy"]["value"] == 1.0 and after["accuracy"]["value"] < 0.7
    assert any("on or before the vlm rung's knowledge cut-off" in w for w in sc["warnings"])
    md = to_markdown(ladder)
    assert md.startswith("> **Warning:**") and "## Before / after the vlm rung's knowledge cut-off" in md
    assert "## By market regime" in md and to_text(ladder).startswith("warning: ")


def test_cutoffs_come_from_the_setting_then_the_model_and_the_builtin_engine_has_none() -> None:
    from types import SimpleNamespace

    from alphasignal.replay.sceptic import cutoffs_of

    def fake_provider(name: str, builtin: bool = False, own: str = "") -> SimpleNamespace:  # a provider's attributes
        return SimpleNamespace(name=name, model=f"{name}-model", is_builtin=builtin, knowledge_cutoff=own)

    cnn_and_builtin = SimpleNamespace(vlm=fake_provider("cnn", own="2010-05-03"), llm=fake_provider("builtin", True))
    assert cutoffs_of(cnn_and_builtin, "", "") == [Cutoff("chart", "cnn cnn-model", "2010-05-03",
                                                          "its training data's last date")]
    assert cutoffs_of(cnn_and_builtin, "2011-01-31", "")[0].date == "2011-01-31"
    llm = SimpleNamespace(vlm=fake_provider("builtin", True), llm=fake_provider("ollama"))
    assert cutoffs_of(llm, "", "") == [Cutoff("news", "ollama ollama-model", "", "not set")]
