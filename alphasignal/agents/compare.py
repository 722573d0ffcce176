"""Fair baselines for the agents: random search and Optuna TPE with the same backtest budget on the same segments.

Every optimizer explores with exploration-segment metrics only and picks its winner by the selection-segment
objective among the configurations it proposed (the same rule as the agents' rounds); its Deflated Sharpe Ratio
deflates that selection Sharpe by the number of configurations it tried. Nothing here reads the hold-out: the
winners are scored on it afterwards, once (``honesty.add_holdout``). Seeded, so a rerun gives the same table.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import optuna

from ..errors import UsageError
from ..storage.records import OptimizerResult
from . import space
from .evaluate import Evaluator, objective_of
from .strategist import param_distributions

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _result(name: str, ev: Evaluator, tried: Sequence[tuple[dict, dict, dict]], objective: str) -> OptimizerResult:
    best = max(tried, key=lambda t: objective_of(t[2], objective))
    return OptimizerResult(name, len(tried), best[0], best[1], best[2], ev.dsr(best[0], [t[0] for t in tried]))


def random_candidates(strategy: str, budget: int, seed: int) -> list[dict[str, Any]]:
    """``budget`` distinct valid configurations drawn uniformly from the step grid (seeded)."""
    rng = np.random.default_rng(seed)
    seen: dict[str, dict[str, Any]] = {}
    for _ in range(budget * 50):
        if len(seen) >= budget:
            break
        p = space.random_params(strategy, rng)
        if p is not None:
            seen.setdefault(space.config_key(p), p)
    return list(seen.values())


def random_search(ev: Evaluator, strategy: str, budget: int, seed: int, objective: str) -> OptimizerResult:
    """``budget`` distinct valid configurations drawn uniformly from the step grid."""
    params = random_candidates(strategy, budget, seed)
    metrics = ev.evaluate(params)
    return _result("random", ev, [(p, a, b) for p, (a, b) in zip(params, metrics, strict=True)], objective)


def tpe_search(ev: Evaluator, strategy: str, budget: int, seed: int, objective: str) -> OptimizerResult:
    """Optuna TPE maximising the exploration objective; invalid or repeated suggestions cost no backtest."""
    dists = param_distributions(space.specs(strategy))
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    cache: dict[str, tuple[dict, dict, dict]] = {}
    for _ in range(budget * 20):
        if len(cache) >= budget:
            break
        trial = study.ask(dists)
        p = dict(trial.params)
        if space.constraint_errors(strategy, p):
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            continue
        k = space.config_key(p)
        if k not in cache:
            (m_is, m_oos), = ev.evaluate([p])
            cache[k] = (p, m_is, m_oos)
        v = objective_of(cache[k][1], objective)
        study.tell(trial, v if np.isfinite(v) else -10.0)
    return _result("tpe", ev, list(cache.values()), objective)


def wfo_search(ev: Evaluator, strategy: str, budget: int, seed: int, objective: str) -> OptimizerResult:
    """Walk-forward optimisation (stage 05's) over random search's candidates, on the exploration and selection
    bars: each fold picks by the objective on its training window; the winner is the last fold's pick, the one it
    would trade next. Its rows' metrics are the same exploration/selection backtests as every other optimizer's."""
    params = random_candidates(strategy, budget, seed)
    res = ev.walk_forward(params, objective)
    names = list(space.specs(strategy))
    picks = [{k: row[k] for k in names} for row in res.folds.to_dict("records") if row[names[0]] is not None]
    if not picks:
        raise UsageError(f"wfo: no fold of the {strategy} walk-forward had a defined {objective}: use more data")
    winner = space.check_proposal(strategy, picks[-1], {}).params or picks[-1]
    (m_is, m_oos), = ev.evaluate([winner])
    return OptimizerResult("wfo", len(params), winner, m_is, m_oos, ev.dsr(winner, params),
                           extra={"wfo_stitched_sharpe": res.metrics.get("sharpe"), "wfo_efficiency": res.efficiency})


def compare(ev: Evaluator, strategy: str, names: Sequence[str], budget: int, seed: int, objective: str,
            agents_row: OptimizerResult | None = None) -> list[OptimizerResult]:
    """One row per optimizer (agents first when given): configs used, winner, exploration/selection metrics, DSR."""
    rows = [agents_row] if agents_row else []
    runners = {"random": random_search, "tpe": tpe_search, "wfo": wfo_search}
    rows += [runners[n](ev, strategy, budget, seed, objective) for n in names]
    return rows
