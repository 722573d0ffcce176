"""The end-of-run summary: winner vs initial baseline on exploration, selection and the hold-out; configurations
tried, DSR, PBO; the same-budget comparison; and the one hold-out evaluation of every optimizer's winner.

Order matters: :func:`finalise` first fixes every winner from the history (selection segment), then scores all of
them on the hold-out in ONE :meth:`Evaluator.holdout` call. The headline improvement % is the hold-out one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import TypeVar

import numpy as np

from ..config import OptimizerConfig
from ..storage.history import History
from ..storage.records import Candidate, OptimizerResult, RunSummary, backtested
from . import space
from .compare import compare
from .evaluate import Evaluator, objective_of
from .risk import hard_limit_breaches, hard_limits

E = TypeVar("E", Candidate, OptimizerResult)


def summarise(ev: Evaluator, history: History, run_id: str, objective: str,
              limits: Mapping[str, float] | None = None) -> RunSummary:
    """Figures of a finished run that the hold-out does not enter: winner and initial baseline with exploration
    (``metrics_is``) and selection (``metrics_oos``) metrics, verdict, DSR of the selection Sharpe, PBO. A winner
    that breaks the hard ``limits`` is reported as no eligible winner (``eligible`` false), never as a result."""
    rounds = history.rounds(run_id)
    state = rounds[-1].state
    props = history.proposals(run_id)
    tried = backtested(props)
    agent = [p for p in tried if p.source == "agent"]
    winner = Candidate(state.baseline_name or "initial baseline", state.baseline, state.baseline_is,
                       state.baseline_oos)
    initial = Candidate("initial baseline", state.initial, state.initial_is, state.initial_oos)
    w_is, w_oos = objective_of(winner.metrics("is"), objective), objective_of(winner.metrics("oos"), objective)
    i_is, i_oos = objective_of(initial.metrics("is"), objective), objective_of(initial.metrics("oos"), objective)
    if winner.params == initial.params:
        label = "no proposal beat the baseline on the selection segment: the baseline stands"
    elif w_is >= i_is:
        label = "better on exploration and selection"
    else:
        label = "better on selection only (worse on exploration)"
    best_is = max(agent, key=lambda p: objective_of(p.metrics("is"), objective), default=None)
    warnings = []
    breaches = hard_limit_breaches(winner.metrics("is"), limits or {})
    if breaches:  # only when no configuration tried met the limits: round 0 then starts from the best anyway
        label = (f"NO ELIGIBLE WINNER: no configuration tried meets the hard limits (the best breaks them: "
                 f"{'; '.join(breaches)}); loosen optimizer.max_drawdown/min_trades/max_turnover or widen the grid")
        warnings.append(label)
    if best_is is not None and objective_of(best_is.metrics("is"), objective) > i_is \
            and objective_of(best_is.metrics("oos"), objective) <= i_oos:
        warnings.append(f"the best exploration proposal ({best_is.name}, round {best_is.round_no}, "
                        f"{objective} {objective_of(best_is.metrics('is'), objective):.3f}) wins on exploration only: "
                        f"selection {objective_of(best_is.metrics('oos'), objective):.3f} vs baseline {i_oos:.3f}")
    params = [p.params for p in tried]
    dsr = ev.dsr(winner.params, params)
    pbo = ev.pbo(params)
    if dsr < 0.95:
        warnings.append(f"DSR {dsr:.2f} < 0.95: after {len(tried)} configurations the winner's selection "
                        "Sharpe is not significant")
    return RunSummary(winner, initial, label, objective=objective, warnings=tuple(warnings), eligible=not breaches,
                      improvement_selection_pct=_pct(w_oos, i_oos), improvement_is_pct=_pct(w_is, i_is),
                      configs_tried=len(tried), sweep_configs=state.sweep_configs, agent_backtests=len(agent),
                      proposals=sum(1 for p in props if p.source == "agent"), rounds=len(rounds) - 1,
                      stop_reason=state.stop, dsr=dsr, pbo=pbo,
                      segments=rounds[0].state.segments or ev.segments())


def agents_row(summary: RunSummary) -> OptimizerResult:
    """The agents' line of the comparison table."""
    w = summary.winner
    return OptimizerResult("agents", summary.configs_tried, w.params, w.metrics("is"), w.metrics("oos"), summary.dsr)


def add_holdout(ev: Evaluator, summary: RunSummary, seed: int) -> RunSummary:
    """Score the initial baseline and every winner (agents, and each comparator in ``summary.compare``) on the
    hold-out in one call; the summary with ``metrics_holdout`` set on each, the hold-out improvement % and its
    verdict."""
    obj = summary.objective
    compared = summary.compare or ()
    unique: dict[str, dict] = {}
    for e in (summary.initial, summary.winner, *compared):
        unique.setdefault(space.config_key(e.params), dict(e.params))
    scored = dict(zip(unique, ev.holdout(list(unique.values()), seed=seed), strict=True))

    def held(e: E) -> E:  # the entry with its hold-out metrics
        return replace(e, metrics_holdout=scored[space.config_key(e.params)])

    winner, initial = held(summary.winner), held(summary.initial)
    w, i = objective_of(winner.metrics("holdout"), obj), objective_of(initial.metrics("holdout"), obj)
    label, warnings = "", list(summary.warnings)
    if winner.params != initial.params:
        label = ("the hold-out confirms the selection winner" if w > i else
                 "the hold-out does NOT confirm the selection winner")
        if w <= i:
            warnings.append(f"on the hold-out the winner's {obj} {w:.3f} is not above the initial "
                            f"baseline's {i:.3f}: the selection gain did not carry over")
    return replace(summary, winner=winner, initial=initial, warnings=tuple(warnings), improvement_pct=_pct(w, i),
                   holdout_label=label,
                   compare=None if summary.compare is None else tuple(held(r) for r in summary.compare))


def finalise(ev: Evaluator, history: History, run_id: str, optimizer: OptimizerConfig) -> RunSummary:
    """The stored summary of a finished run: :func:`summarise`, the comparators (``optimizer.compare``, same
    budget, same segments), then the single hold-out evaluation of every winner."""
    limits = hard_limits(optimizer)
    summary = summarise(ev, history, run_id, optimizer.objective, limits)
    if optimizer.compare:
        summary = replace(summary, compare=tuple(compare(ev, optimizer.strategy, optimizer.compare,
                                                         summary.configs_tried, optimizer.seed, optimizer.objective,
                                                         agents_row(summary))))
    return add_holdout(ev, summary, optimizer.seed)


def _pct(new: float, old: float) -> float | None:
    if not (np.isfinite(new) and np.isfinite(old)) or old == 0:
        return None
    return float((new - old) / abs(old) * 100)
