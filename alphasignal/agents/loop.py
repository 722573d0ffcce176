"""The optimizer loop: exploration sweep -> rounds of Analyst -> Strategist -> validation -> backtests -> Risk Manager.

The agents see exploration-segment metrics only. The best eligible proposal by the SELECTION-segment objective
becomes the next baseline when it improves by more than ``tolerance``; the loop stops after ``patience`` rounds
without that, on the round limit, or when the backtest budget is spent. Nothing here reads a hold-out bar (see
``evaluate.py``). Each round is committed to the history in one transaction, so ``resume`` continues after the
last complete round, on the segments recorded in round 0.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from ..backtest.distributed import Executor
from ..config import Config, OptimizerConfig
from ..errors import Interrupted, UsageError
from ..progress import progress_bar
from ..providers import Provider, ProviderSettings, get_provider
from ..storage.history import History
from ..storage.records import Analysis, Candidate, LoopState, Message, Proposal, Round, Run, backtested
from . import space
from .analyst import make_analyst
from .debate import run_debate
from .evaluate import Evaluator, data_hash, objective_of
from .risk import hard_limit_breaches, hard_limits, make_risk_manager
from .state import RoundState
from .strategist import make_strategist

log = logging.getLogger(__name__)

ROLES = ("analyst", "strategist", "risk_manager")


@dataclass
class Agents:
    """The three role callables and the providers behind them (one per role, possibly different models)."""

    providers: dict[str, Provider]
    summary_chars: int = 2500
    analyst: Callable = field(init=False)
    strategist: Callable = field(init=False)
    risk: Callable = field(init=False)

    def __post_init__(self) -> None:
        self.analyst = make_analyst(self.providers["analyst"], max_summary_chars=self.summary_chars)
        self.strategist = make_strategist(self.providers["strategist"])
        self.risk = make_risk_manager(self.providers["risk_manager"])

    def models(self) -> dict[str, str]:
        """``role -> provider:model`` as recorded in the history."""
        return {r: f"{p.name}:{p.model}" for r, p in self.providers.items()}


def build_agents(cfg: Config) -> Agents:
    """Providers per role from ``cfg.optimizer`` (server settings from ``cfg.pipeline``)."""
    optimizer = cfg.optimizer
    settings = ProviderSettings.from_config(cfg.pipeline, require_server=optimizer.require_server,
                                            max_tokens=optimizer.max_tokens,
                                            **({"gguf_path": optimizer.gguf_path} if optimizer.gguf_path else {}))
    spec = {"analyst": (optimizer.analyst_provider, optimizer.analyst_model),
            "strategist": (optimizer.strategist_provider, optimizer.strategist_model),
            "risk_manager": (optimizer.risk_provider, optimizer.risk_model)}
    built: dict[tuple[str, str], Provider] = {}  # one provider (one server check) per distinct backend and model
    for name, model in spec.values():
        key = (name or optimizer.provider, model)
        if key not in built:
            roles = "+".join(r for r, (n, m) in spec.items() if (n or optimizer.provider, m) == key)
            built[key] = get_provider(key[0], model=model, cfg=settings, role=roles)
    return Agents({role: built[(name or optimizer.provider, model)] for role, (name, model) in spec.items()},
                  summary_chars=optimizer.summary_chars)


def sweep_grid(cfg: Config) -> dict[str, list[Any]]:
    """optimizer.grid, else sweep.grid when it is for the same strategy, else a coarse grid from PARAM_SPECS."""
    optimizer = cfg.optimizer
    if optimizer.grid:
        return space.check_grid(optimizer.strategy, optimizer.grid)
    if cfg.sweep.strategy == optimizer.strategy:
        return space.check_grid(optimizer.strategy, cfg.sweep.grid)
    out = {}
    for name, spec in space.specs(optimizer.strategy).items():
        vals = space.values(spec)
        out[name] = vals if len(vals) <= 2 else [vals[i] for i in np.linspace(0, len(vals) - 1, 5).round().astype(int)]
    return out


def _frame(rows: Sequence[Proposal], specs: Mapping[str, Any], objective: str) -> pd.DataFrame:
    """The agents' view of the trials. An undefined objective (no trades, no variance) ranks last: it takes the
    lowest defined value; undefined drawdown/trades/turnover (no position) read as 0."""
    df = pd.DataFrame([{**(r.params or {}), **r.metrics("is")} for r in rows])
    for name, s in specs.items():
        if name in df:
            df[name] = df[name].astype({"bool": bool, "int": int}.get(space.kind(s), float))
    obj = df[objective].astype(float).replace([np.inf, -np.inf], np.nan)
    df[objective] = obj.fillna(obj.min() if obj.notna().any() else 0.0)
    for col in ("max_drawdown", "trades", "turnover"):
        if col in df:
            df[col] = df[col].astype(float).fillna(0.0)
    return df


def _label(is_better: bool, oos_better: bool) -> str:
    return {(True, True): "better on exploration and selection", (True, False): "wins on exploration only",
            (False, True): "wins on selection only", (False, False): "no better"}[(is_better, oos_better)]


def optimize(data: pd.DataFrame, cfg: Config, history: History, *, agents: Agents | None = None,
             resume: str | None = None, progress: bool = True, executor: Executor | None = None) -> str:
    """Run (or resume) the optimizer; every round lands in ``history``; backtests run on ``executor`` (a Dask
    cluster) when given. Returns the run id."""
    optimizer = cfg.optimizer
    specs = space.specs(optimizer.strategy)
    grid = sweep_grid(cfg)
    ev = Evaluator.from_config(data, cfg, executor)
    dhash = data_hash(data)
    if resume:
        run = history.run(resume)
        if run.data_hash != dhash or run.strategy != optimizer.strategy:
            raise UsageError(f"run {resume} used other data or strategy ({run.strategy}, data {run.data_hash}): "
                             "resume with the same --config/--set options")
        _check_same_config(run, cfg)
        check_segments(history, resume, ev)
        if run.status == "finished":
            return resume
        run_id = resume
    agents = agents or build_agents(cfg)
    if not resume:
        run_id = history.create_run(strategy=optimizer.strategy, config_hash=cfg.hash("optimizer", "sweep", "dataset"),
                                    data_hash=dhash, models=agents.models(), seed=optimizer.seed, config=cfg.to_dict())
    try:  # Ctrl-C keeps every complete round and marks the run, so it is listed and resumable
        done = history.rounds(run_id)
        if not done:
            _initial_round(ev, history, run_id, grid, specs, optimizer)
            done = history.rounds(run_id)
        r = done[-1].round_no
        trials = backtested(history.proposals(run_id))
        state = done[-1].state
        with progress_bar(progress, optimizer.rounds, "optimizing", completed=len(done) - 1) as bar:
            while state.stop is None:
                r += 1
                props, state = _round(r, ev, agents, history, run_id, trials, specs, state, optimizer)
                trials += backtested(props)
                bar.update(advance=1, description=f"round {r}: selection {optimizer.objective} "
                           f"{state.baseline_oos[optimizer.objective]:.3f}")
    except KeyboardInterrupt:
        history.finish_run(run_id, "interrupted")
        raise Interrupted(f"run {run_id} kept up to its last complete round; continue it with the same options "
                          f"and --resume {run_id}") from None
    return run_id


# where files go and how data is fetched: a resumed run may change these, nothing that shapes its results
_RESUME_FREE = {"optimizer.history_db", "optimizer.output_dir", "dataset.cache_dir", "dataset.workers",
                "dataset.download_retries", "dataset.output_dir", "sweep.output", "sweep.device", "sweep.engine",
                "sweep.max_memory_mb", "sweep.top_n", "sweep.cluster", "sweep.connect_timeout", "sweep.start_fast"}


def _check_same_config(run: Run, cfg: Config) -> None:
    """A resumed run continues with the settings it was started with: any other value is refused, by name."""
    stored, now = run.config or {}, cfg.to_dict()
    changed = sorted(f"{sec}.{key}" for sec in ("optimizer", "sweep", "dataset") for key in now.get(sec, {})
                     if f"{sec}.{key}" not in _RESUME_FREE and key in stored.get(sec, {})
                     and stored[sec][key] != now[sec][key])
    if changed:
        shown = ", ".join(f"{k}={_get(stored, k)!r} (now {_get(now, k)!r})" for k in changed[:4])
        raise UsageError(f"run {run.run_id} was started with other settings: {shown}"
                         f"{' ...' if len(changed) > 4 else ''}: resume with the same --config/--set options")


def _get(d: Mapping[str, Any], dotted: str) -> Any:
    sec, key = dotted.split(".")
    return d[sec][key]


def check_segments(history: History, run_id: str, ev: Evaluator) -> None:
    """A resumed run must keep the segments recorded in its round 0 (same bars, fractions and embargo)."""
    rounds = history.rounds(run_id)
    if not rounds:
        return  # nothing committed yet: round 0 is redone on the current segments
    saved = rounds[0].state.segments
    if saved is None:
        raise UsageError(f"run {run_id} predates the exploration/selection/hold-out split: start a new run")
    now = ev.segments()
    keys = ("bars", "exploration", "selection", "holdout", "embargo")
    if any(saved[k] != now[k] for k in keys):
        raise UsageError(f"run {run_id} was split into {_seg_text(saved)}, this one into {_seg_text(now)}: resume "
                         "with the same data, sweep.test_fraction, optimizer.holdout_fraction and holdout_embargo")


def _seg_text(seg: Mapping[str, Any]) -> str:
    return (f"exploration {seg['exploration']}, selection {seg['selection']}, hold-out {seg['holdout']} "
            f"of {seg['bars']} bars")


def _initial_round(ev: Evaluator, history: History, run_id: str, grid: Mapping[str, Any],
                   specs: Mapping[str, Any], optimizer: OptimizerConfig) -> None:
    """Round 0: the exploration sweep, and the baseline (configured, or the best exploration configuration);
    the segments are recorded in its state."""
    t0 = time.perf_counter()
    sweep = ev.sweep(grid)
    if sweep.empty:
        raise UsageError(f"the sweep grid {dict(grid)} has no valid configuration for {optimizer.strategy}: widen it")
    t_sweep = time.perf_counter() - t0
    rows = [Proposal(f"sweep {i}", "ok", source="sweep", raw_params=p, params=p, metrics_is=m)
            for i, (p, m) in enumerate(_split_rows(sweep, specs))]
    if optimizer.baseline:
        checked = space.check_proposal(optimizer.strategy, optimizer.baseline, {})
        if checked.params is None:
            raise UsageError(f"optimizer.baseline is invalid: {checked.reason}")
        base = checked.params
    else:  # the best exploration configuration that respects the hard limits (any, when none does)
        limits = hard_limits(optimizer)
        feasible = [r for r in rows if not hard_limit_breaches(r.metrics("is"), limits)]
        if not feasible:
            log.warning("no sweep configuration meets the hard limits %s: starting from the best one anyway", limits)
        base = dict(max(feasible or rows, key=lambda r: objective_of(r.metrics("is"), optimizer.objective)).params)
    t1 = time.perf_counter()
    (base_is, base_oos), = ev.evaluate([base])
    t_bt = time.perf_counter() - t1
    rows = [replace(r, metrics_oos=base_oos) if space.config_key(r.params) == space.config_key(base) else r
            for r in rows]
    state = LoopState(baseline=base, baseline_is=base_is, baseline_oos=base_oos, initial=base, initial_is=base_is,
                      initial_oos=base_oos, sweep_configs=len(rows), segments=ev.segments())
    timings = {"sweep": t_sweep, "backtests": t_bt, "total": time.perf_counter() - t0}
    history.save_round(run_id, Round(0, base, state, timings=timings), rows, [])


def _split_rows(df: pd.DataFrame, specs: Mapping[str, Any]) -> list[tuple[dict[str, Any], dict[str, float]]]:
    from .analysis import py_value
    from .evaluate import METRICS

    out = []
    for rec in df.to_dict("records"):
        out.append(({n: py_value(rec[n]) for n in specs}, {k: float(rec[k]) for k in METRICS if k in rec}))
    return out


class _Timings(dict):
    """Seconds per part of a round; ``with timings.part("agents"):`` adds the block's time to that part."""

    @contextmanager
    def part(self, name: str) -> Iterator[None]:
        t = time.perf_counter()
        try:
            yield
        finally:
            self[name] = self.get(name, 0.0) + time.perf_counter() - t


def _round(round_no: int, ev: Evaluator, agents: Agents, history: History, run_id: str, trials: list[Proposal],
           specs: Mapping[str, Any], prev: LoopState, optimizer: OptimizerConfig) -> tuple[list[Proposal], LoopState]:
    """One complete round, committed in one transaction; returns its proposals and the new state."""
    t_start = time.perf_counter()
    timings = _Timings(agents=0.0, validation=0.0, backtests=0.0)
    limits = hard_limits(optimizer)
    round_state = RoundState(optimizer.strategy, dict(specs), _frame(trials, specs, optimizer.objective),
                             optimizer.objective, dict(prev.baseline), dict(prev.baseline_is), round_no,
                             optimizer.seed, optimizer.proposals_per_round, limits)
    with timings.part("agents"):
        report = agents.analyst(round_state)
        reply = agents.strategist(round_state, report.value)
    messages = [report.message, reply.message]
    with timings.part("validation"):
        props = _check_proposals(reply.value.proposals, round_state, optimizer, optimizer.budget - prev.budget_used)
    runnable = [i for i, p in enumerate(props) if p.eligible]  # indexes into props: records are replaced
    votes = ()
    if optimizer.debate_rounds and runnable:
        with timings.part("agents"):
            debate = run_debate(agents.providers, round_state, [props[i] for i in runnable], optimizer.debate_rounds)
        messages += debate.messages
        votes = tuple(debate.votes)
        for i in runnable:
            if props[i].name not in debate.passed:
                props[i] = replace(props[i], status="voted_down", reason="a majority voted against it in the debate")
        runnable = [i for i in runnable if props[i].eligible]
    with timings.part("backtests"):
        for i, (m_is, m_oos) in zip(runnable, ev.evaluate([props[i].params for i in runnable]), strict=True):
            props[i] = replace(props[i], metrics_is=m_is, metrics_oos=m_oos)
    review_summary = _vet(props, runnable, limits, agents, round_state, optimizer, timings, messages)
    best, improved = _best(props, runnable, prev, optimizer)
    state = _next_state(prev, round_no, best, improved, len(runnable), optimizer,
                        replace(prev, report=Analysis.from_json(report.value.model_dump()), review=review_summary,
                                votes=votes))
    timings["total"] = time.perf_counter() - t_start
    best_out = None if best is None else Candidate(best.name, best.params or {}, best.metrics_is, best.metrics_oos)
    history.save_round(run_id, Round(round_no, prev.baseline, state, best_out, improved, dict(timings)), props,
                       messages)
    return props, state


def _check_proposals(proposals: list[Any], round_state: RoundState, optimizer: OptimizerConfig,
                     budget_left: int) -> list[Proposal]:
    """Every proposal's record, repaired and checked against PARAM_SPECS; the runnable ones are eligible, while
    duplicates of configurations already tried and those over the backtest budget are not run."""
    tried = round_state.tried_keys()
    props, runnable = [], 0
    for p in proposals:
        raw = p.param_dict()
        checked = space.check_proposal(optimizer.strategy, raw, round_state.baseline)
        rec = Proposal(p.name, checked.status, raw_params=raw, params=checked.params, notes=tuple(checked.notes),
                       reason=checked.reason, rationale=p.rationale)
        if checked.params is not None:
            key = space.config_key(checked.params)
            if key in tried:
                rec = replace(rec, status="duplicate", reason="already tried: not re-run")
            elif runnable >= budget_left:
                rec = replace(rec, status="over_budget", reason=f"backtest budget of {optimizer.budget} spent")
            else:
                tried.add(key)
                runnable += 1
        props.append(rec)
    return props


def _vet(props: list[Proposal], runnable: list[int], limits: Mapping[str, float], agents: Agents,
         round_state: RoundState, optimizer: OptimizerConfig, timings: _Timings, messages: list[Message]) -> str:
    """Veto on the hard limits, then (when enabled) by the Risk Manager, replacing vetoed records in ``props``;
    returns the Risk Manager's summary."""
    with timings.part("validation"):
        passed = []
        for i in runnable:
            breaches = hard_limit_breaches(props[i].metrics("is"), limits)
            if breaches:
                props[i] = replace(props[i], status="vetoed", reason="hard limit: " + "; ".join(breaches))
            else:
                passed.append(i)
    if not (optimizer.use_risk_manager and passed):
        return ""
    with timings.part("agents"):
        review = agents.risk(round_state, [props[i] for i in passed])
    messages.append(review.message)
    verdicts = {v.proposal: v for v in review.value.verdicts}
    for i in passed:
        verdict = verdicts.get(props[i].name)
        if verdict is not None and verdict.veto:
            props[i] = replace(props[i], status="vetoed", reason=f"risk manager: {verdict.reason}")
    return review.value.summary


def _best(props: list[Proposal], runnable: list[int], prev: LoopState,
          optimizer: OptimizerConfig) -> tuple[Proposal | None, bool]:
    """Label every backtested proposal against the baseline (in ``props``); (the best eligible one on the
    selection segment, whether it beats the baseline by more than the tolerance)."""
    objective = optimizer.objective
    base_is, base_oos = objective_of(prev.baseline_is, objective), objective_of(prev.baseline_oos, objective)
    for i in runnable:
        p = props[i]
        props[i] = replace(p, label=_label(objective_of(p.metrics("is"), objective) > base_is,
                                           objective_of(p.metrics("oos"), objective) > base_oos))
    eligible = [props[i] for i in runnable if props[i].eligible]
    best = max(eligible, key=lambda x: objective_of(x.metrics("oos"), objective), default=None)
    return best, best is not None and objective_of(best.metrics("oos"), objective) > base_oos + optimizer.tolerance


def _next_state(prev: LoopState, round_no: int, best: Proposal | None, improved: bool, ran: int,
                optimizer: OptimizerConfig, record: LoopState) -> LoopState:
    """The loop state after a round (``record``: ``prev`` with the round's report, review and votes): budget,
    patience, the new baseline when improved, and why to stop."""
    used = prev.budget_used + ran
    stale = 0 if improved else prev.stale + 1
    state = replace(record, stale=stale, budget_used=used)
    if improved and best is not None:
        state = replace(state, baseline=dict(best.params or {}), baseline_is=best.metrics("is"),
                        baseline_oos=best.metrics("oos"), baseline_name=f"{best.name} (round {round_no})")
    stop = ("patience" if stale >= optimizer.patience else "budget" if used >= optimizer.budget
            else "rounds" if round_no >= optimizer.rounds else None)
    return replace(state, stop=stop)
