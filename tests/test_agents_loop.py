"""The optimizer loop end to end with the builtin engines on real AAPL data and the real stage 05 engine."""

from __future__ import annotations

from dataclasses import replace

import pytest

from alphasignal.agents import space
from alphasignal.agents.compare import compare
from alphasignal.agents.evaluate import Evaluator, objective_of
from alphasignal.agents.honesty import add_holdout, agents_row, summarise
from alphasignal.agents.loop import build_agents, optimize
from alphasignal.backtest import validate_params
from alphasignal.config import load_config
from alphasignal.storage.history import History
from alphasignal.storage.records import Proposal

SMALL_GRID = "sweep.grid={short_period=[5, 10, 20, 40], long_period=[50, 100, 150], use_ema=[false, true]}"


def _cfg(tmp_path, *extra: str):
    return load_config(None, ["optimizer.provider=builtin", SMALL_GRID, "optimizer.min_trades=3",
                              f"optimizer.history_db={tmp_path / 'h.sqlite'}", *extra])


def _agent_rows(h: History, run_id: str) -> list[Proposal]:
    return [p for p in h.proposals(run_id) if p.source == "agent"]


def test_several_rounds_validated_never_rerun(tmp_path, aapl):
    cfg = _cfg(tmp_path, "optimizer.rounds=4", "optimizer.patience=10")
    with History(cfg.optimizer.history_db) as h:
        run_id = optimize(aapl, cfg, h, progress=False)
        rounds = h.rounds(run_id)
        assert [r.round_no for r in rounds] == [0, 1, 2, 3, 4]
        assert rounds[-1].state.stop == "rounds"
        tried = [p for p in h.proposals(run_id) if p.backtested]
        keys = [space.config_key(p.params) for p in tried]
        assert len(keys) == len(set(keys))  # no configuration backtested twice
        for p in _agent_rows(h, run_id):
            assert p.status in {"ok", "repaired", "rejected", "duplicate", "vetoed", "over_budget"}
            if p.backtested:
                assert validate_params("MA_Crossover", p.params) == []
                assert p.metrics_oos is not None and p.label
        for r in rounds[1:]:
            msgs = h.messages(run_id, r.round_no)
            assert {m.agent for m in msgs} >= {"analyst", "strategist"}
            assert all(m.prompt_version.endswith("@1") and m.parsed for m in msgs)
            assert r.state.report.patterns
        assert rounds[-1].state.budget_used == sum(p.backtested for p in _agent_rows(h, run_id))


def test_baseline_moves_only_on_selection_improvement(tmp_path, aapl):
    cfg = _cfg(tmp_path, "optimizer.rounds=5", "optimizer.patience=2", "optimizer.tolerance=0.0")
    with History(cfg.optimizer.history_db) as h:
        run_id = optimize(aapl, cfg, h, progress=False)
        rounds = h.rounds(run_id)
        for prev, cur in zip(rounds, rounds[1:], strict=False):
            before = objective_of(prev.state.baseline_oos, "sharpe")
            after = objective_of(cur.state.baseline_oos, "sharpe")
            assert after >= before
            assert cur.improved == (after > before)
        # convergence: it stops after `patience` rounds without improvement (or on the round limit)
        last = rounds[-1].state
        assert last.stop in {"patience", "rounds"}
        if last.stop == "patience":
            assert [r.improved for r in rounds[-2:]] == [False, False]


def test_budget_limits_agent_backtests(tmp_path, aapl):
    cfg = _cfg(tmp_path, "optimizer.rounds=5", "optimizer.patience=10", "optimizer.budget=4")
    with History(cfg.optimizer.history_db) as h:
        run_id = optimize(aapl, cfg, h, progress=False)
        ran = [p for p in _agent_rows(h, run_id) if p.backtested]
        assert len(ran) == 4 and h.rounds(run_id)[-1].state.stop == "budget"
        assert any(p.status == "over_budget" for p in _agent_rows(h, run_id))


class _Crash(RuntimeError):
    pass


def test_resume_after_a_crash_matches_an_uninterrupted_run(tmp_path, aapl):
    extra = ("optimizer.rounds=4", "optimizer.patience=10")
    cfg = _cfg(tmp_path, *extra)
    agents = build_agents(cfg)
    real = agents.strategist
    calls = {"n": 0}

    def crashing_strategist(state, report):  # test double: the real builtin Strategist, dying in round 3
        calls["n"] += 1
        if state.round_no == 3:
            raise _Crash("simulated crash mid-round")
        return real(state, report)

    agents.strategist = crashing_strategist
    with History(cfg.optimizer.history_db) as h:
        with pytest.raises(_Crash):
            optimize(aapl, cfg, h, agents=agents, progress=False)
        run_id = h.runs()[0].run_id
        assert [r.round_no for r in h.rounds(run_id)] == [0, 1, 2]
        assert {p.round_no for p in h.proposals(run_id)} == {0, 1, 2}  # nothing of the crashed round
        assert optimize(aapl, cfg, h, resume=run_id, progress=False) == run_id
        resumed = [(p.round_no, p.name, p.params) for p in _agent_rows(h, run_id)]
        assert [r.round_no for r in h.rounds(run_id)] == [0, 1, 2, 3, 4]
    clean = _cfg(tmp_path / "clean", *extra)
    with History(clean.optimizer.history_db) as h2:
        rid = optimize(aapl, clean, h2, progress=False)
        assert [(p.round_no, p.name, p.params) for p in _agent_rows(h2, rid)] == resumed


def test_no_configuration_within_the_hard_limits_is_no_eligible_winner(tmp_path, aapl):
    cfg = _cfg(tmp_path, "optimizer.rounds=1", "optimizer.max_drawdown=0.01")  # no MA crossover stays within 1 %
    with History(cfg.optimizer.history_db) as h:
        run_id = optimize(aapl, cfg, h, progress=False)
        ev = Evaluator.from_config(aapl, cfg)
        s = summarise(ev, h, run_id, "sharpe", {"max_drawdown": 0.01})
        fine = summarise(ev, h, run_id, "sharpe", {"max_drawdown": 1.0})
    assert s.eligible is False and s.label.startswith("NO ELIGIBLE WINNER") and "> limit 1%" in s.label
    assert s.label in s.warnings
    assert fine.eligible is True and not fine.label.startswith("NO ELIGIBLE")


def test_honesty_summary_and_comparison_are_seeded(tmp_path, aapl):
    cfg = _cfg(tmp_path, "optimizer.rounds=2")
    with History(cfg.optimizer.history_db) as h:
        run_id = optimize(aapl, cfg, h, progress=False)
        ev = Evaluator.from_config(aapl, cfg)
        s = summarise(ev, h, run_id, "sharpe")
    assert s.configs_tried == s.sweep_configs + s.agent_backtests > 20
    assert 0 <= s.dsr <= 1 and 0 <= s.pbo <= 1
    assert s.label and s.stop_reason and s.holdout_label is None and not s.holdout_scored  # the headline waits
    rows = compare(ev, "MA_Crossover", ["random", "tpe"], 12, 3, "sharpe", agents_row(s))
    again = compare(ev, "MA_Crossover", ["random", "tpe"], 12, 3, "sharpe")
    assert [r.optimizer for r in rows] == ["agents", "random", "tpe"]
    assert [r.configs for r in rows[1:]] == [12, 12]
    assert [(r.params, r.dsr) for r in rows[1:]] == [(r.params, r.dsr) for r in again]
    for r in rows:
        assert validate_params("MA_Crossover", r.params) == [] and "sharpe" in r.metrics_oos
    assert ev.holdout_calls == 0
    s = add_holdout(ev, replace(s, compare=tuple(rows)), seed=7)
    assert ev.holdout_calls == 1 and s.holdout_scored and s.holdout_label is not None
    for r in [s.winner, s.initial, *s.compare]:
        assert "sharpe" in r.metrics_holdout and len(r.metrics_holdout["sharpe_ci"]) == 2
    w, i = s.winner.metrics_holdout["sharpe"], s.initial.metrics_holdout["sharpe"]
    if s.improvement_pct is not None:
        assert s.improvement_pct == pytest.approx((w - i) / abs(i) * 100)


def test_walk_forward_objective(tmp_path, aapl):
    cfg = _cfg(tmp_path, "optimizer.rounds=1", "optimizer.oos_method=walk_forward", "optimizer.folds=3")
    ev = Evaluator(aapl, "MA_Crossover", cfg.sweep, test_fraction=0.3, oos_method="walk_forward", folds=3)
    assert len(ev.windows) == 3 and ev.windows[0][0] == ev.split and ev.windows[-1][1] == ev.seg.selection[1]
    with History(cfg.optimizer.history_db) as h:
        run_id = optimize(aapl, cfg, h, progress=False)
        assert len(h.rounds(run_id)) == 2


def test_debate_votes_are_recorded_and_bind(tmp_path, aapl):
    # a tight drawdown limit makes the builtin Risk Manager vote against risky proposals, so a vote binds
    cfg = _cfg(tmp_path, "optimizer.rounds=2", "optimizer.debate_rounds=2", "optimizer.patience=10",
               "optimizer.max_drawdown=0.15")
    with History(cfg.optimizer.history_db) as h:
        run_id = optimize(aapl, cfg, h, progress=False)
        voted_down: list[str] = []
        for rd in h.rounds(run_id)[1:]:
            votes = rd.state.votes
            agents = {m.agent for m in h.messages(run_id, rd.round_no)}
            assert {"analyst:debate1", "strategist:debate2", "risk_manager:debate2"} <= agents
            props = [p for p in h.proposals(run_id, rd.round_no) if p.source == "agent"]
            debated = {v.proposal for v in votes}
            assert debated and len(votes) == 2 * 3 * len(debated) and all(v.argument for v in votes)
            for p in props:
                last = [v.support for v in votes if v.proposal == p.name and v.round == 2]
                against = bool(last) and 2 * sum(last) < len(last)
                assert (p.status == "voted_down") == against  # a majority against, and only that, binds
                if against:  # ... and what it voted down is never backtested
                    assert not p.backtested
                    voted_down.append(p.name)
        assert voted_down, "the debate voted nothing down: the binding of a vote was not exercised"


def test_strategy_without_a_sweep_grid_and_undefined_metrics(tmp_path, aapl):
    cfg = load_config(None, ["optimizer.provider=builtin", "optimizer.strategy=Bollinger_Breakout",
                             "optimizer.rounds=1", f"optimizer.history_db={tmp_path / 'h.sqlite'}"])
    with History(cfg.optimizer.history_db) as h:
        run_id = optimize(aapl, cfg, h, progress=False)
        sweep = [p for p in h.proposals(run_id, 0)]
        assert {"period", "num_std", "mean_reversion"} == set(sweep[0].params) and len(sweep) > 20
        report = h.rounds(run_id)[1].state.report
        assert "nan" not in " ".join([*report.patterns, *report.recommendations]).lower()


def test_optimizer_evaluates_with_the_sweeps_entry_rule(aapl):
    """sweep.entry reaches stage 06: every evaluation backtests with it (here MACD with entry="cross")."""
    from alphasignal.backtest import backtest

    params = {"fast": 12, "slow": 26, "signal": 9}
    got = {}
    for entry in ("state", "cross"):
        cfg = load_config(overrides=["optimizer.strategy=MACD", f"sweep.entry={entry}", "sweep.device=cpu"])
        ev = Evaluator.from_config(aapl, cfg)
        got[entry] = ev.evaluate([params])[0][0]
        want = backtest(ev.train, "MACD", [params], options=cfg.sweep)
        assert got[entry]["total_return"] == pytest.approx(float(want["total_return"][0]), rel=1e-12)
    assert got["cross"]["total_return"] != pytest.approx(got["state"]["total_return"], rel=1e-6)
