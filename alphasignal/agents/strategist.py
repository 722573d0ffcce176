"""The Strategist: proposes the next configurations from the Analyst's report and the history.

``make_strategist(provider)`` returns ``strategist(state, report) -> AgentCall[StrategistReply]``. The builtin engine
proposes Conservative (an untried step inside the most robust plateau), Aggressive (a larger step along the local
gradient of the objective) and Exploratory (the least-explored of several Optuna TPE suggestions, seeded).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import optuna

from ..providers import EngineRequest, Provider, register_engine
from . import analysis, space
from .calls import AgentCall, ask
from .risk import hard_limit_breaches
from .schemas import AnalystReport, Proposal, StrategistReply, strategist_schema
from .state import RoundState

Strategist = Callable[[RoundState, AnalystReport], AgentCall[StrategistReply]]

optuna.logging.set_verbosity(optuna.logging.WARNING)
log = logging.getLogger(__name__)
_LINE = 160  # the Analyst's sentences as shown to the Strategist: long copies invite small models to ramble


def make_strategist(provider: Provider) -> Strategist:
    """A Strategist backed by ``provider``."""

    def strategist(state: RoundState, report: AnalystReport) -> AgentCall[StrategistReply]:
        constraints = space.constraints_text(state.strategy)
        values = {"strategy": state.strategy, "space": state.space_text(), "constraints": constraints,
                  "baseline": state.baseline, "patterns": "\n".join(f"- {p[:_LINE]}" for p in report.patterns),
                  "recommendations": "\n".join(f"- {r[:_LINE]}" for r in report.recommendations),
                  "tried": state.tried_text(15), "n": state.n_proposals}
        schema = strategist_schema(state.strategy, tuple((n, describe_spec(s)) for n, s in state.specs.items()))
        return ask(provider, schema, "strategist", "strategist", values,
                   {"state": state, "is_tried": tried_check(state)})

    return strategist


def tried_check(state: RoundState) -> Callable[[Mapping[str, Any]], bool]:
    """``params -> True`` when ``params`` (repaired as the loop repairs them) were already backtested."""
    taken = state.tried_keys()

    def is_tried(params: Mapping[str, Any]) -> bool:
        checked = space.check_proposal(state.strategy, params, state.baseline)
        return checked.params is not None and space.config_key(checked.params) in taken

    return is_tried


def describe_spec(spec: Any) -> str:
    k = space.kind(spec)
    return "true or false" if k == "bool" else f"{k} from {spec.min} to {spec.max}, step {spec.step}"


def _step(spec: Any, scale: float) -> float:
    """A move of ``scale`` x (5% of the range), at least one step."""
    if space.kind(spec) == "bool":
        return 1.0
    rng = float(spec.max) - float(spec.min)
    return max(float(spec.step or 0), 0.05 * rng * scale)


def _untried(state: RoundState, candidates: list[dict[str, Any]], taken: set[str]) -> list[dict[str, Any]]:
    """Valid, untried candidates whose nearest tested neighbours predict no hard-limit breach."""
    out = []
    for c in candidates:
        checked = space.check_proposal(state.strategy, c, state.baseline)
        if checked.params is not None and space.config_key(checked.params) not in taken \
                and feasible(state, checked.params):
            out.append(checked.params)
    return out


def feasible(state: RoundState, params: Mapping[str, Any], margin: float = 0.1) -> bool:
    """kNN-predicted drawdown, trades and turnover within the hard limits tightened by ``margin``."""
    cols = [c for c in ("max_drawdown", "trades", "turnover") if c in state.trials]
    pred = {c: analysis.predict(state.trials, state.specs, params, c) for c in cols}
    tight = {k: v * (1 + margin) if k == "min_trades" else v * (1 - margin) for k, v in state.limits.items()}
    return not hard_limit_breaches(pred, tight)


def _meets_limits(state: RoundState) -> list[bool]:
    return [not hard_limit_breaches(r, state.limits) for r in state.trials.to_dict("records")]


def _best_feasible(state: RoundState) -> dict[str, Any]:
    rows = state.trials.sort_values(state.objective, ascending=False)
    for _, row in rows.iterrows():
        if not hard_limit_breaches(row.to_dict(), state.limits):
            return {n: analysis.py_value(row[n]) for n in state.specs}
    return {n: analysis.py_value(rows.iloc[0][n]) for n in state.specs}


def conservative(state: RoundState, taken: set[str]) -> Proposal | None:
    """The best-predicted untried one-step neighbour of the most robust plateau's centre."""
    ok_rows = state.trials[_meets_limits(state)]
    p = analysis.plateau(ok_rows if len(ok_rows) > 2 * analysis.NEIGHBOURS else state.trials, state.specs,
                         state.objective)
    centre = p["centre"]
    cands = []
    for name, spec in state.specs.items():
        if space.kind(spec) == "bool":
            continue
        for sign in (-1, 1):
            cands.append({**centre, name: centre[name] + sign * _step(spec, 1)})
    names = [n for n, s in state.specs.items() if space.kind(s) != "bool"]
    for i, a in enumerate(names):  # diagonal moves keep interacting parameters in step
        for b in names[i + 1:]:
            for sa in (-1, 1):
                for sb in (-1, 1):
                    cands.append({**centre, a: centre[a] + sa * _step(state.specs[a], 1),
                                  b: centre[b] + sb * _step(state.specs[b], 1)})
    ok = _untried(state, cands, taken)
    if not ok:
        return None
    pred = [analysis.predict(state.trials, state.specs, c, state.objective) for c in ok]
    best = ok[int(np.argmax(pred))]
    return Proposal(name="Conservative", params=best,
                    rationale=f"one step from the robust plateau centre {centre} (smoothed {state.objective} "
                              f"{p['centre_smoothed']}); nearby configurations predict {max(pred):.3f}")


def aggressive(state: RoundState, taken: set[str]) -> Proposal | None:
    """A multi-step move from the best along the sign of the local objective gradient."""
    best = _best_feasible(state)
    grad = analysis.local_gradient(state.trials, state.specs, best, state.objective)
    if not np.any(np.abs(grad) > 1e-9):
        return None
    scale_g = grad / np.abs(grad).max()
    for scale in (3, 5, 8):
        cand = dict(best)
        for (name, spec), g in zip(state.specs.items(), scale_g, strict=True):
            if abs(g) < 0.25:
                continue
            if space.kind(spec) == "bool":
                cand[name] = bool(g > 0)
            else:
                cand[name] = best[name] + np.sign(g) * _step(spec, scale)
        ok = _untried(state, [cand], taken)
        if ok:
            moved = {n: f"{best[n]}->{ok[0][n]}" for n in state.specs if ok[0][n] != best[n]}
            return Proposal(name="Aggressive", params=ok[0],
                            rationale=f"from the best {best}, move {moved} along the improving direction")
    return None


def param_distributions(specs: Mapping[str, Any]) -> dict[str, optuna.distributions.BaseDistribution]:
    out: dict[str, optuna.distributions.BaseDistribution] = {}
    for name, s in specs.items():
        k = space.kind(s)
        if k == "bool":
            out[name] = optuna.distributions.CategoricalDistribution([False, True])
        elif k == "int":
            out[name] = optuna.distributions.IntDistribution(int(s.min), int(s.max), step=max(int(s.step or 1), 1))
        else:
            step = float(s.step) if s.step else None
            hi = float(s.min) + step * int((float(s.max) - float(s.min)) / step + 1e-9) if step else float(s.max)
            out[name] = optuna.distributions.FloatDistribution(float(s.min), hi, step=step)
    return out


def tpe_study(state: RoundState, seed: int) -> tuple[optuna.Study, dict[str, Any]]:
    """A seeded TPE study primed with every trial so far (in-sample objective), and its distributions."""
    dists = param_distributions(state.specs)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    trials = []
    ok = _meets_limits(state)
    floor = float(np.nanmin(state.trials[state.objective].to_numpy(float))) if len(state.trials) else 0.0
    for (_, row), fine in zip(state.trials.iterrows(), ok, strict=True):
        params = {n: analysis.py_value(row[n]) for n in state.specs}
        value = float(np.nan_to_num(row[state.objective], nan=floor)) if fine else floor  # breaches rank last
        try:
            trials.append(optuna.trial.create_trial(params=params, distributions=dists, value=value))
        except ValueError:  # a value outside the distribution's step grid (e.g. a custom sweep grid)
            continue
    study.add_trials(trials)
    return study, dists


def exploratory(state: RoundState, taken: set[str], n: int = 1, samples: int = 8) -> list[Proposal]:
    """The ``n`` TPE suggestions farthest from every tried configuration (least-explored, still promising)."""
    study, dists = tpe_study(state, state.seed * 1000 + state.round_no)
    cands = []
    for _ in range(samples):
        trial = study.ask(dists)
        cands.append(dict(trial.params))
    ok = _untried(state, cands, set(taken))
    tried = analysis.normalised(state.trials, state.specs)
    out: list[Proposal] = []
    while ok and len(out) < n:
        dist = [float(np.sqrt(((tried - analysis.point(c, state.specs)) ** 2).sum(axis=1)).min()) for c in ok]
        i = int(np.argmax(dist))
        out.append(Proposal(name="Exploratory" if not out else f"Exploratory {len(out) + 1}", params=ok[i],
                            rationale=f"TPE suggestion in the least-explored region (distance {dist[i]:.2f} to the "
                                      "nearest tried configuration)"))
        tried = np.vstack([tried, analysis.point(ok[i], state.specs)])
        ok.pop(i)
    return out


def builtin_reply(state: RoundState) -> StrategistReply:
    """Conservative, Aggressive and Exploratory proposals (more Exploratory ones up to ``n_proposals``)."""
    taken = state.tried_keys()
    props: list[Proposal] = []
    for make in (conservative, aggressive):
        prop = make(state, taken)
        if prop is not None:
            props.append(prop)
            taken.add(space.config_key(prop.params))
    props += exploratory(state, taken, n=max(state.n_proposals - len(props), 1))
    if len(props) < 3:  # a nearly exhausted space: fill with any untried valid configurations
        rng = np.random.default_rng(state.seed + state.round_no)
        for _ in range(200):
            p = space.random_params(state.strategy, rng)
            if p is not None and space.config_key(p) not in taken:
                taken.add(space.config_key(p))
                props.append(Proposal(name=f"Random {len(props) + 1}", params=p, rationale="space nearly exhausted"))
            if len(props) >= 3:
                break
    return StrategistReply(proposals=props)


def _engine(req: EngineRequest) -> StrategistReply:
    return builtin_reply(req.context["state"])


register_engine(StrategistReply, _engine)
