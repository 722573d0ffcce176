"""Stage 06 agents offline: schemas, parameter-space repair, analysis statistics, builtin engines, risk, debate."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from alphasignal.agents import analysis, space
from alphasignal.agents.analyst import builtin_report, make_analyst
from alphasignal.agents.debate import run_debate
from alphasignal.agents.risk import builtin_review, hard_limit_breaches, make_risk_manager
from alphasignal.agents.schemas import AnalystReport, Proposal, RiskVerdict, StrategistReply
from alphasignal.agents.state import RoundState
from alphasignal.agents.strategist import builtin_reply, make_strategist
from alphasignal.backtest import validate_params
from alphasignal.errors import UsageError
from alphasignal.providers import BuiltinProvider
from alphasignal.storage import records

STRAT = "MA_Crossover"
LIMITS = {"max_drawdown": 0.5, "min_trades": 3, "max_turnover": 200.0}


def _trials(seed: int = 0) -> pd.DataFrame:
    """A synthetic sweep with a known shape: Sharpe peaks at short=20, long=150 and is higher with EMA."""
    rng = np.random.default_rng(seed)
    rows = []
    for s in (5, 10, 20, 30, 40):
        for lg in (50, 100, 150, 200):
            for ema in (False, True):
                sharpe = 1.0 - ((s - 20) / 30) ** 2 - ((lg - 150) / 150) ** 2 + 0.2 * ema + rng.normal(0, 0.01)
                rows.append({"short_period": s, "long_period": lg, "use_ema": ema, "sharpe": sharpe,
                             "total_return": sharpe, "max_drawdown": 0.2 + 0.1 * (s == 5), "trades": 10.0,
                             "turnover": 5.0})
    return pd.DataFrame(rows)


def _state(trials: pd.DataFrame | None = None, round_no: int = 1) -> RoundState:
    trials = _trials() if trials is None else trials
    best = trials.iloc[int(trials["sharpe"].argmax())]
    base = {"short_period": int(best.short_period), "long_period": int(best.long_period),
            "use_ema": bool(best.use_ema)}
    return RoundState(STRAT, space.specs(STRAT), trials, "sharpe", base, best.to_dict(), round_no, 7, 3, LIMITS)


def test_schemas_validate_and_tidy():
    with pytest.raises(ValidationError, match="at least 3"):
        StrategistReply(proposals=[Proposal(name="a", params={"x": 1})] * 2)
    reply = StrategistReply(proposals=[Proposal(name="conservative", params={"x": 1})] * 3)
    assert [p.name for p in reply.proposals] == ["Conservative", "Conservative 2", "Conservative 3"]
    with pytest.raises(ValidationError, match="needs a reason"):
        RiskVerdict(proposal="A", veto=True, reason="  ")
    with pytest.raises(ValidationError):
        AnalystReport(patterns=["  "], recommendations=["x"])
    assert "description" in AnalystReport.model_json_schema()["properties"]["patterns"]


def test_check_proposal_repairs_with_notes():
    c = space.check_proposal(STRAT, {"short_period": "20.4", "long_perod": 999, "use_ema": "yes"}, {})
    assert c.status == "repaired"
    assert c.params == {"short_period": 20, "long_period": 400, "use_ema": True}
    assert any("long_perod" in n and "long_period" in n for n in c.notes)
    assert any("clipped" in n for n in c.notes) and any("snapped" in n for n in c.notes)
    assert validate_params(STRAT, c.params) == []


def test_check_proposal_fills_from_baseline_and_rejects():
    base = {"short_period": 10, "long_period": 50, "use_ema": False}
    ok = space.check_proposal(STRAT, {"short_period": 20}, base)
    assert ok.params == {**base, "short_period": 20} and "missing" in ok.notes[0]
    assert space.check_proposal(STRAT, {"short_period": 10, "long_period": 50, "use_ema": False}, base).status == "ok"
    for bad, why in (({"short_period": "fast", "long_period": 50}, "not a number"),
                     ({"short_period": float("nan"), "long_period": 50}, "not finite"),
                     ({"short_period": 60, "long_period": 50}, "short_period must be < long_period"),
                     ({"short_period": 10, "long_period": 50, "use_ema": "maybe"}, "true/false")):
        c = space.check_proposal(STRAT, bad, base)
        assert c.status == "rejected" and c.params is None and why in c.reason


def test_unknown_strategy_and_grid_errors_suggest():
    with pytest.raises(UsageError, match="did you mean 'MA_Crossover'"):
        space.specs("MA_Crosover")
    with pytest.raises(UsageError, match="did you mean 'short_period'"):
        space.check_grid(STRAT, {"short_perod": [10]})
    with pytest.raises(UsageError, match="empty"):
        space.check_grid(STRAT, {"short_period": []})
    with pytest.raises(UsageError, match="empty"):
        space.check_grid(STRAT, {})
    with pytest.raises(UsageError, match="outside"):
        space.check_grid(STRAT, {"short_period": [1, 10]})


def test_config_key_ignores_int_float_spelling():
    assert space.config_key({"a": 20, "b": True}) == space.config_key({"b": True, "a": 20.0})
    assert space.config_key({"a": 20}) != space.config_key({"a": 21})


def test_marginal_effects_and_plateau_find_the_known_optimum():
    df = _trials()
    eff = analysis.marginal_effects(df, space.specs(STRAT), "sharpe")
    assert eff["short_period"]["best_value"] == 20 and eff["long_period"]["best_value"] == 150
    assert eff["use_ema"]["slope"] > 0.2
    p = analysis.plateau(df, space.specs(STRAT), "sharpe")
    assert p["best"]["short_period"] == 20 and p["best"]["use_ema"] is True
    assert 0 < p["robustness"] <= 1


def test_plateau_tells_isolated_peak_from_broad_plateau():
    df = _trials()
    spiky = df.copy()
    spiky["sharpe"] = 0.1
    spiky.loc[(spiky.short_period == 5) & (spiky.long_period == 200) & spiky.use_ema, "sharpe"] = 2.0
    sp = space.specs(STRAT)
    assert analysis.plateau(spiky, sp, "sharpe")["robustness"] < 0.2
    assert analysis.plateau(df, sp, "sharpe")["robustness"] > 0.5


def test_interactions_detect_non_additive_pairs():
    df = _trials()
    df["sharpe"] = np.where((df.short_period > 20) == (df.long_period > 100), 1.0, 0.0)  # XOR-like
    top = analysis.interactions(df, space.specs(STRAT), "sharpe")[0]
    assert set(top["params"]) == {"short_period", "long_period"} and top["share"] > 0.5


def test_summary_text_is_bounded():
    stats = analysis.analyse(_trials(), space.specs(STRAT), "sharpe")
    text = analysis.summary_text(stats, max_chars=600)
    assert len(text) <= 600 and "configurations tried" in text
    assert "short_period" in analysis.summary_text(stats)


def test_builtin_analyst_reports_real_statistics():
    call = make_analyst(BuiltinProvider())(_state())
    report = call.value
    assert isinstance(report, AnalystReport)
    assert any("short_period" in p and "20" in p for p in report.patterns)
    assert any("plateau" in r for r in report.recommendations)
    assert call.message.prompt_version == "analyst@1" and call.message.provider == "builtin"
    assert builtin_report(analysis.analyse(_trials(), space.specs(STRAT), "sharpe")) == report


def test_builtin_strategist_proposes_valid_untried_and_seeded():
    state = _state()
    report = builtin_report(analysis.analyse(state.trials, state.specs, "sharpe"))
    call = make_strategist(BuiltinProvider())(state, report)
    props = call.value.proposals
    assert [p.name for p in props][:3] == ["Conservative", "Aggressive", "Exploratory"]
    assert type(call.value).__name__ == "MA_CrossoverReply"  # parameter names spelled out for the grammar
    keys = {space.config_key(p.param_dict()) for p in props}
    assert len(keys) == len(props) and not keys & state.tried_keys()
    for p in props:
        assert validate_params(STRAT, p.param_dict()) == []
    assert builtin_reply(state) == builtin_reply(_state())  # same inputs and seed -> same proposals
    cons = props[0].param_dict()  # conservative stays next to the plateau (within one 5% step per parameter)
    centre = analysis.plateau(state.trials, state.specs, "sharpe")["centre"]
    assert abs(cons["short_period"] - centre["short_period"]) <= 10
    assert abs(cons["long_period"] - centre["long_period"]) <= 20


def test_exploratory_targets_the_least_explored_region():
    state = _state()
    props = builtin_reply(state).proposals
    expl = next(p for p in props if p.name == "Exploratory")
    tried = analysis.normalised(state.trials, state.specs)
    d = np.sqrt(((tried - analysis.point(expl.params, state.specs)) ** 2).sum(axis=1)).min()
    assert d > 0.05  # not a near-copy of something tried


def test_hard_limits_are_code_and_not_negotiable():
    assert hard_limit_breaches({"max_drawdown": 0.2, "trades": 10, "turnover": 5}, LIMITS) == []
    out = hard_limit_breaches({"max_drawdown": 0.7, "trades": 1, "turnover": 500}, LIMITS)
    assert len(out) == 3 and "70.0%" in out[0]
    assert hard_limit_breaches({"max_drawdown": float("nan"), "trades": 10, "turnover": 1}, LIMITS)


def test_builtin_risk_review_vetoes_deep_drawdown_for_little_gain():
    state = _state()
    state.baseline_metrics = {"sharpe": 1.0, "max_drawdown": 0.2}
    params = {"short_period": 20, "long_period": 150, "use_ema": True}
    cands = [records.Proposal("Deep", "ok", params=params, metrics_is={"sharpe": 1.02, "max_drawdown": 0.45}),
             records.Proposal("Fine", "ok", params=params, metrics_is={"sharpe": 1.05, "max_drawdown": 0.21})]
    review = builtin_review(state, cands)
    verdict = {v.proposal: v for v in review.verdicts}
    assert verdict["Deep"].veto and "drawdown" in verdict["Deep"].reason
    assert not verdict["Fine"].veto
    assert make_risk_manager(BuiltinProvider())(state, cands).value == review


def test_debate_records_every_vote():
    state = _state()
    props = [records.Proposal(p.name, "ok", params=p.params) for p in builtin_reply(state).proposals]
    prov = BuiltinProvider()
    res = run_debate({"analyst": prov, "strategist": prov, "risk_manager": prov}, state, props, rounds=2)
    assert len(res.votes) == 2 * 3 * len(props) and len(res.messages) == 6
    assert {v.agent for v in res.votes} == {"analyst", "strategist", "risk_manager"}
    assert {m.agent for m in res.messages} == {f"{r}:debate{n}" for r in ("analyst", "strategist", "risk_manager")
                                               for n in (1, 2)}
    last = [v for v in res.votes if v.round == 2]
    against = {p.name for p in props if 2 * sum(v.support for v in last if v.proposal == p.name) < 3}
    assert against, "the members must vote something down here (estimates below the baseline)"
    assert res.passed == {p.name for p in props} - against  # the last round's majority decides, exactly
    assert all(v.argument for v in res.votes)
