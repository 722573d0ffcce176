"""Stage 06 segments: exploration / selection / hold-out. Nothing reads the hold-out before the end of a run, the
winners are chosen on the selection segment, a resume keeps the segments, and the hold-out Sharpe gets a seeded
bootstrap interval. Real AAPL data, the real stage 05 engine, the builtin agents."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alphasignal.agents.evaluate import Evaluator, Segments, objective_of
from alphasignal.agents.honesty import finalise
from alphasignal.agents.loop import build_agents, optimize
from alphasignal.config import load_config
from alphasignal.errors import UsageError
from alphasignal.evaluation.bootstrap import sharpe_ci
from alphasignal.evaluation.metrics import sharpe
from alphasignal.storage.history import History
from alphasignal.storage.records import ELIGIBLE

GRID = "sweep.grid={short_period=[5, 10, 20, 40], long_period=[50, 100, 150], use_ema=[false, true]}"
CONFIGS = [{"short_period": 10, "long_period": 50, "use_ema": False},
           {"short_period": 20, "long_period": 100, "use_ema": True},
           {"short_period": 5, "long_period": 150, "use_ema": False}]


def _cfg(db, *extra: str):
    return load_config(None, ["optimizer.provider=builtin", GRID, "optimizer.min_trades=3",
                              f"optimizer.history_db={db}", *extra])


def _rewrite_from(data: pd.DataFrame, start: int, seed: int, drift: float) -> pd.DataFrame:
    """``data`` with every bar from ``start`` on replaced by another valid price path (same dates)."""
    rng = np.random.default_rng(seed)
    out = data.copy()
    n = len(data) - start
    factor = np.exp(np.cumsum(rng.normal(drift, 0.03, n)))
    for col in ("Open", "High", "Low", "Close"):
        out.iloc[start:, out.columns.get_loc(col)] = data[col].to_numpy()[start:] * factor
    if "Volume" in out:
        out.iloc[start:, out.columns.get_loc("Volume")] = rng.integers(1_000, 10_000_000, n)
    return out


def test_segments_are_time_ordered_and_embargoed(aapl):
    ev = Evaluator(aapl, "MA_Crossover", load_config().sweep, test_fraction=0.3, holdout_fraction=0.2, embargo=5)
    s = ev.seg
    n = len(aapl)
    assert s.exploration[0] == 0 and s.exploration[1] == s.selection[0]
    assert s.holdout == (n - round(0.2 * n), n) and s.holdout[0] - s.selection[1] == 5
    assert len(ev.dev) == s.selection[1] and len(ev.train) == s.exploration[1]
    assert ev.dev.index[-1] < aapl.index[s.holdout[0]]
    d = ev.segments()
    assert d["dates"]["holdout"] == [str(aapl.index[s.holdout[0]].date()), str(aapl.index[-1].date())]
    with pytest.raises(UsageError, match="holdout_fraction"):
        Segments.of(20, 0.3, 0.1, 5)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**16), drift=st.floats(-0.01, 0.01))
def test_evaluator_never_reads_the_embargo_or_the_holdout(aapl, seed, drift):
    """Every figure an optimizer can see (sweep, exploration/selection metrics, DSR, PBO) is the same when every bar
    of the embargo and the hold-out is replaced; only the hold-out figures change."""
    sweep = load_config().sweep
    ev = Evaluator(aapl, "MA_Crossover", sweep, test_fraction=0.3)
    other = _rewrite_from(aapl, ev.seg.selection[1], seed, drift)
    ev2 = Evaluator(other, "MA_Crossover", sweep, test_fraction=0.3)
    assert ev.evaluate(CONFIGS) == ev2.evaluate(CONFIGS)
    grid = {"short_period": [5, 20], "long_period": [50, 100], "use_ema": [False, True]}
    pd.testing.assert_frame_equal(ev.sweep(grid), ev2.sweep(grid))
    assert ev.dsr(CONFIGS[0], CONFIGS) == ev2.dsr(CONFIGS[0], CONFIGS)
    assert ev.pbo(CONFIGS) == ev2.pbo(CONFIGS)
    assert ev.holdout(CONFIGS) != ev2.holdout(CONFIGS)


def _run(data, db, *extra):
    cfg = _cfg(db, "optimizer.rounds=3", "optimizer.patience=10", "optimizer.compare=['random', 'tpe', 'wfo']",
               *extra)
    with History(cfg.optimizer.history_db) as h:
        run_id = optimize(data, cfg, h, progress=False)
        ev = Evaluator.from_config(data, cfg)
        summary = finalise(ev, h, run_id, cfg.optimizer)
        props = h.proposals(run_id)  # records: equal when every field is
        rounds = [(r.round_no, r.baseline, r.best, r.improved, r.state) for r in h.rounds(run_id)]
        parsed = [m.parsed for m in h.messages(run_id)]
    return ev, summary, props, rounds, parsed


def test_changing_every_holdout_bar_changes_only_the_holdout_figures(tmp_path, aapl):
    ev, s1, props1, rounds1, msgs1 = _run(aapl, tmp_path / "a.sqlite")
    other = _rewrite_from(aapl, ev.seg.selection[1], seed=3, drift=-0.004)
    ev2, s2, props2, rounds2, msgs2 = _run(other, tmp_path / "b.sqlite")
    assert ev.holdout_calls == ev2.holdout_calls == 1  # every winner scored on the hold-out in one call
    assert props1 == props2 and rounds1 == rounds2 and msgs1 == msgs2  # proposals, baselines, agents' messages
    assert len(rounds1) == 4 and any(p.source == "agent" and p.metrics_is for p in props1)
    for a, b in ((s1.winner, s2.winner), (s1.initial, s2.initial)):
        assert (a.params, a.metrics_is, a.metrics_oos) == (b.params, b.metrics_is, b.metrics_oos)
        assert a.metrics_holdout != b.metrics_holdout
    assert (s1.dsr, s1.pbo, s1.improvement_selection_pct) == (s2.dsr, s2.pbo, s2.improvement_selection_pct)
    assert [r.optimizer for r in s1.compare] == ["agents", "random", "tpe", "wfo"]
    for a, b in zip(s1.compare, s2.compare, strict=True):
        assert (a.params, a.metrics_is, a.metrics_oos, a.dsr) == (b.params, b.metrics_is, b.metrics_oos, b.dsr)
        assert a.metrics_holdout["sharpe"] != b.metrics_holdout["sharpe"]


def test_winner_is_chosen_by_the_selection_objective(tmp_path, aapl):
    cfg = _cfg(tmp_path / "h.sqlite", "optimizer.rounds=4", "optimizer.patience=10", "optimizer.tolerance=0.0")
    with History(cfg.optimizer.history_db) as h:
        run_id = optimize(aapl, cfg, h, progress=False)
        rounds = h.rounds(run_id)
        for prev, cur in zip(rounds, rounds[1:], strict=False):
            eligible = [p for p in h.proposals(run_id, cur.round_no) if p.status in ELIGIBLE]
            sel = [objective_of(p.metrics_oos, "sharpe") for p in eligible]
            before = objective_of(prev.state.baseline_oos, "sharpe")
            assert cur.improved == (bool(sel) and max(sel) > before)
            if cur.improved:
                assert cur.state.baseline == eligible[int(np.argmax(sel))].params
            else:
                assert cur.state.baseline == prev.state.baseline
        ev = Evaluator.from_config(aapl, cfg)
        s = finalise(ev, h, run_id, cfg.optimizer)
    assert s.winner.params == rounds[-1].state.baseline
    assert "metrics_holdout" not in rounds[-1].state.to_json() and "sharpe" in s.winner.metrics_holdout


class _Crash(RuntimeError):
    pass


def test_resume_keeps_the_segments(tmp_path, aapl):
    db = tmp_path / "h.sqlite"
    cfg = _cfg(db, "optimizer.rounds=3", "optimizer.patience=10")
    agents = build_agents(cfg)
    real = agents.strategist

    def crashing_strategist(state, report):  # test double: the real builtin Strategist, dying in round 2
        if state.round_no == 2:
            raise _Crash("simulated crash")
        return real(state, report)

    agents.strategist = crashing_strategist
    with History(db) as h:
        with pytest.raises(_Crash):
            optimize(aapl, cfg, h, agents=agents, progress=False)
        run_id = h.runs()[0].run_id
        saved = h.rounds(run_id)[0].state.segments
        assert saved == Evaluator.from_config(aapl, cfg).segments()
        for change in ("optimizer.holdout_fraction=0.25", "optimizer.holdout_embargo=0", "sweep.test_fraction=0.4"):
            with pytest.raises(UsageError, match=change.split("=")[0]):  # the changed key, named
                optimize(aapl, _cfg(db, "optimizer.rounds=3", "optimizer.patience=10", change), h, resume=run_id,
                         progress=False)
        assert [r.round_no for r in h.rounds(run_id)] == [0, 1]  # the refused resumes wrote nothing
        assert optimize(aapl, cfg, h, resume=run_id, progress=False) == run_id
        rounds = h.rounds(run_id)
        assert [r.round_no for r in rounds] == [0, 1, 2, 3] and rounds[0].state.segments == saved


def test_walk_forward_folds_lie_inside_the_selection_segment(aapl):
    ev = Evaluator(aapl, "MA_Crossover", load_config().sweep, test_fraction=0.3, oos_method="walk_forward", folds=3)
    assert len(ev.windows) == 3 and ev.windows[0][0] == ev.seg.selection[0]
    assert ev.windows[-1][1] == ev.seg.selection[1] < ev.seg.holdout[0]
    (m_is, m_oos), = ev.evaluate([CONFIGS[0]])
    one = Evaluator(aapl, "MA_Crossover", load_config().sweep, test_fraction=0.3)
    (_, whole), = one.evaluate([CONFIGS[0]])
    assert m_oos["sharpe"] != whole["sharpe"]  # the mean over folds, not the whole segment


def test_holdout_sharpe_interval_is_seeded_and_covers_the_estimate(aapl):
    ev = Evaluator(aapl, "MA_Crossover", load_config().sweep, test_fraction=0.3)
    rows = ev.holdout(CONFIGS, seed=7)
    again = ev.holdout(CONFIGS, seed=7)
    assert rows == again and ev.holdout_calls == 2
    rets = ev.returns(CONFIGS, "holdout")
    assert rets.shape == (ev.seg.holdout[1] - ev.seg.holdout[0], 3)
    for i, m in enumerate(rows):
        lo, hi = m["sharpe_ci"]
        assert sharpe(rets[:, i], 252.0) == pytest.approx(m["sharpe"], rel=1e-6)
        assert lo < m["sharpe"] < hi and m["ci_level"] == 0.95


def test_bootstrap_interval_shrinks_with_more_bars_and_handles_flat_returns():
    rng = np.random.default_rng(0)
    short, long = rng.normal(0.0005, 0.01, 250), rng.normal(0.0005, 0.01, 4000)
    a, b = sharpe_ci(short, 252.0, seed=1), sharpe_ci(long, 252.0, seed=1)
    assert b[1] - b[0] < (a[1] - a[0]) / 2
    assert sharpe_ci(short, 252.0, seed=1) == a and sharpe_ci(short, 252.0, seed=2) != a
    assert all(np.isnan(sharpe_ci(np.zeros(100), 252.0)))


def test_wfo_comparator_trades_its_last_folds_pick_among_random_searchs_candidates(aapl):
    from dataclasses import replace

    from alphasignal.agents.compare import random_candidates, random_search, wfo_search
    from alphasignal.backtest import walk_forward_optimize

    cfg = _cfg("unused.sqlite")
    ev = Evaluator.from_config(aapl, cfg)
    row = wfo_search(ev, "MA_Crossover", 30, 7, "sharpe")
    candidates = random_candidates("MA_Crossover", 30, 7)
    ref = walk_forward_optimize(ev.dev, "MA_Crossover", candidates, options=replace(ev.options, sort_by="sharpe"),
                                folds=ev.folds, anchored=False)
    last = ref.folds.iloc[-1]
    assert row.params == {k: type(v)(last[k]) for k, v in row.params.items()}
    assert row.params in candidates and row.configs == 30 == random_search(ev, "MA_Crossover", 30, 7, "sharpe").configs
    assert (row.metrics_is, row.metrics_oos) == tuple(ev.evaluate([row.params])[0])
    assert ev.holdout_calls == 0
