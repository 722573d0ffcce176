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
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..backtest.distributed import Executor
from ..errors import Interrupted, UsageError
from ..providers import Provider, ProviderSettings, get_provider
from ..storage.history import History
from . import space
from .analyst import make_analyst
from .debate import run_debate
from .evaluate import Evaluator, data_hash, objective_of
from .risk import hard_limit_breaches, make_risk_manager
from .state import RoundState
from .strategist import make_strategist

log = logging.getLogger(__name__)

ROLES = ("analyst", "strategist", "risk_manager")
ELIGIBLE = ("ok", "repaired")


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


def build_agents(cfg: Any) -> Agents:
    """Providers per role from ``cfg.optimizer`` (server settings from ``cfg.pipeline``)."""
    oc = cfg.optimizer
    settings = ProviderSettings.from_config(cfg.pipeline, require_server=oc.require_server, max_tokens=oc.max_tokens,
                                            **({"gguf_path": oc.gguf_path} if oc.gguf_path else {}))
    spec = {"analyst": (oc.analyst_provider, oc.analyst_model), "strategist": (oc.strategist_provider,
            oc.strategist_model), "risk_manager": (oc.risk_provider, oc.risk_model)}
    built: dict[tuple[str, str], Provider] = {}  # one provider (one server check) per distinct backend and model
    for name, model in spec.values():
        key = (name or oc.provider, model)
        if key not in built:
            roles = "+".join(r for r, (n, m) in spec.items() if (n or oc.provider, m) == key)
            built[key] = get_provider(key[0], model=model, cfg=settings, role=roles)
    return Agents({role: built[(name or oc.provider, model)] for role, (name, model) in spec.items()},
                  summary_chars=oc.summary_chars)


def sweep_grid(cfg: Any) -> dict[str, list[Any]]:
    """optimizer.grid, else sweep.grid when it is for the same strategy, else a coarse grid from PARAM_SPECS."""
    oc = cfg.optimizer
    if oc.grid:
        return space.check_grid(oc.strategy, oc.grid)
    if cfg.sweep.strategy == oc.strategy:
        return space.check_grid(oc.strategy, cfg.sweep.grid)
    out = {}
    for name, spec in space.specs(oc.strategy).items():
        vals = space.values(spec)
        out[name] = vals if len(vals) <= 2 else [vals[i] for i in np.linspace(0, len(vals) - 1, 5).round().astype(int)]
    return out


def _frame(rows: list[Mapping[str, Any]], specs: Mapping[str, Any], objective: str) -> pd.DataFrame:
    """The agents' view of the trials. An undefined objective (no trades, no variance) ranks last: it takes the
    lowest defined value; undefined drawdown/trades/turnover (no position) read as 0."""
    df = pd.DataFrame([{**r["params"], **r["metrics_is"]} for r in rows])
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


def optimize(data: pd.DataFrame, cfg: Any, history: History, *, agents: Agents | None = None,
             resume: str | None = None, progress: bool = True, executor: Executor | None = None) -> str:
    """Run (or resume) the optimizer; every round lands in ``history``; backtests run on ``executor`` (a Dask
    cluster) when given. Returns the run id."""
    oc = cfg.optimizer
    specs = space.specs(oc.strategy)
    grid = sweep_grid(cfg)
    ev = Evaluator.from_config(data, cfg, executor)
    dhash = data_hash(data)
    if resume:
        run = history.run(resume)
        if run["data_hash"] != dhash or run["strategy"] != oc.strategy:
            raise UsageError(f"run {resume} used other data or strategy ({run['strategy']}, data {run['data_hash']}): "
                             "resume with the same --config/--set options")
        _check_same_config(run, cfg)
        check_segments(history, resume, ev)
        if run["status"] == "finished":
            return resume
        run_id = resume
    agents = agents or build_agents(cfg)
    if not resume:
        run_id = history.create_run(strategy=oc.strategy, config_hash=cfg.hash("optimizer", "sweep", "dataset"),
                                    data_hash=dhash, models=agents.models(), seed=oc.seed, config=cfg.to_dict())
    try:  # Ctrl-C keeps every complete round and marks the run, so it is listed and resumable
        done = history.rounds(run_id)
        if not done:
            _initial_round(ev, history, run_id, grid, specs, oc)
            done = history.rounds(run_id)
        last = done[-1]
        trials = [p for p in history.proposals(run_id) if p["metrics_is"] is not None]
        st = dict(last["state"])
        bar = _progress(progress, oc.rounds, len(done) - 1)
        try:
            while st.get("stop") is None:
                r = last["round_no"] + 1
                rec = _round(r, ev, agents, history, run_id, trials, specs, st, oc)
                trials += [p for p in rec["proposals"] if p["metrics_is"] is not None]
                st = rec["state"]
                last = {"round_no": r}
                if bar:
                    bar[0].update(bar[1], advance=1, description=f"round {r}: selection {oc.objective} "
                                  f"{st['baseline_oos'][oc.objective]:.3f}")
        finally:
            if bar:
                bar[0].stop()
    except KeyboardInterrupt:
        history.finish_run(run_id, "interrupted")
        raise Interrupted(f"run {run_id} kept up to its last complete round; continue it with the same options "
                          f"and --resume {run_id}") from None
    return run_id


# where files go and how data is fetched: a resumed run may change these, nothing that shapes its results
_RESUME_FREE = {"optimizer.history_db", "optimizer.output_dir", "dataset.cache_dir", "dataset.workers",
                "dataset.download_retries", "dataset.output_dir", "sweep.output", "sweep.device", "sweep.engine",
                "sweep.max_memory_mb", "sweep.top_n", "sweep.cluster", "sweep.connect_timeout", "sweep.start_fast"}


def _check_same_config(run: Mapping[str, Any], cfg: Any) -> None:
    """A resumed run continues with the settings it was started with: any other value is refused, by name."""
    stored, now = run.get("config") or {}, cfg.to_dict()
    changed = sorted(f"{sec}.{key}" for sec in ("optimizer", "sweep", "dataset") for key in now.get(sec, {})
                     if f"{sec}.{key}" not in _RESUME_FREE and key in stored.get(sec, {})
                     and stored[sec][key] != now[sec][key])
    if changed:
        shown = ", ".join(f"{k}={_get(stored, k)!r} (now {_get(now, k)!r})" for k in changed[:4])
        raise UsageError(f"run {run['run_id']} was started with other settings: {shown}"
                         f"{' ...' if len(changed) > 4 else ''}: resume with the same --config/--set options")


def _get(d: Mapping[str, Any], dotted: str) -> Any:
    sec, key = dotted.split(".")
    return d[sec][key]


def check_segments(history: History, run_id: str, ev: Evaluator) -> None:
    """A resumed run must keep the segments recorded in its round 0 (same bars, fractions and embargo)."""
    rounds = history.rounds(run_id)
    if not rounds:
        return  # nothing committed yet: round 0 is redone on the current segments
    saved = rounds[0]["state"].get("segments")
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


def _progress(enabled: bool, total: int, completed: int):
    if not enabled:
        return None
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    p = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                 console=Console(stderr=True), transient=True)
    p.start()
    return p, p.add_task("optimizing", total=total, completed=completed)


def _initial_round(ev: Evaluator, history: History, run_id: str, grid: Mapping[str, Any],
                   specs: Mapping[str, Any], oc: Any) -> None:
    """Round 0: the exploration sweep, and the baseline (configured, or the best exploration configuration);
    the segments are recorded in its state."""
    t0 = time.perf_counter()
    sweep = ev.sweep(grid)
    if sweep.empty:
        raise UsageError(f"the sweep grid {dict(grid)} has no valid configuration for {oc.strategy}: widen it")
    t_sweep = time.perf_counter() - t0
    rows = [{"name": f"sweep {i}", "source": "sweep", "raw_params": p, "params": p, "status": "ok",
             "metrics_is": m} for i, (p, m) in enumerate(_split_rows(sweep, specs))]
    if oc.baseline:
        checked = space.check_proposal(oc.strategy, oc.baseline, {})
        if checked.params is None:
            raise UsageError(f"optimizer.baseline is invalid: {checked.reason}")
        base = checked.params
    else:  # the best exploration configuration that respects the hard limits (any, when none does)
        limits = {"max_drawdown": oc.max_drawdown, "min_trades": oc.min_trades, "max_turnover": oc.max_turnover}
        feasible = [r for r in rows if not hard_limit_breaches(r["metrics_is"], limits)]
        if not feasible:
            log.warning("no sweep configuration meets the hard limits %s: starting from the best one anyway", limits)
        base = max(feasible or rows, key=lambda r: objective_of(r["metrics_is"], oc.objective))["params"]
    t1 = time.perf_counter()
    (base_is, base_oos), = ev.evaluate([base])
    t_bt = time.perf_counter() - t1
    for r in rows:
        if space.config_key(r["params"]) == space.config_key(base):
            r["metrics_oos"] = base_oos
    state = {"baseline": base, "baseline_is": base_is, "baseline_oos": base_oos, "initial": base,
             "initial_is": base_is, "initial_oos": base_oos, "stale": 0, "budget_used": 0,
             "stop": None, "sweep_configs": len(rows), "segments": ev.segments()}
    history.save_round(run_id, 0, baseline=base, best=None, improved=False, state=state,
                       timings={"sweep": t_sweep, "backtests": t_bt, "total": time.perf_counter() - t0},
                       proposals=rows, messages=[])


def _split_rows(df: pd.DataFrame, specs: Mapping[str, Any]) -> list[tuple[dict[str, Any], dict[str, float]]]:
    from .analysis import py_value
    from .evaluate import METRICS

    out = []
    for rec in df.to_dict("records"):
        out.append(({n: py_value(rec[n]) for n in specs}, {k: float(rec[k]) for k in METRICS if k in rec}))
    return out


def _round(r: int, ev: Evaluator, agents: Agents, history: History, run_id: str, trials: list[dict[str, Any]],
           specs: Mapping[str, Any], prev: Mapping[str, Any], oc: Any) -> dict[str, Any]:
    """One complete round, committed in one transaction; returns its proposals and new state."""
    t_start = time.perf_counter()
    tm = {"agents": 0.0, "validation": 0.0, "backtests": 0.0}
    limits = {"max_drawdown": oc.max_drawdown, "min_trades": oc.min_trades, "max_turnover": oc.max_turnover}
    state = RoundState(oc.strategy, dict(specs), _frame(trials, specs, oc.objective), oc.objective,
                       dict(prev["baseline"]), dict(prev["baseline_is"]), r, oc.seed, oc.proposals_per_round, limits)
    messages = []
    t = time.perf_counter()
    report = agents.analyst(state)
    reply = agents.strategist(state, report.value)
    tm["agents"] += time.perf_counter() - t
    messages += [report.message, reply.message]

    t = time.perf_counter()
    tried = state.tried_keys()
    budget_left = oc.budget - prev["budget_used"]
    props, runnable = [], []
    for p in reply.value.proposals:
        raw = p.param_dict()
        rec = {"name": p.name, "source": "agent", "raw_params": raw, "rationale": p.rationale,
               "params": None, "status": "rejected", "notes": [], "reason": "", "metrics_is": None,
               "metrics_oos": None}
        checked = space.check_proposal(oc.strategy, raw, state.baseline)
        rec.update(notes=checked.notes, reason=checked.reason, status=checked.status, params=checked.params)
        if checked.params is not None:
            k = space.config_key(checked.params)
            if k in tried:
                rec.update(status="duplicate", reason="already tried: not re-run")
            elif len(runnable) >= budget_left:
                rec.update(status="over_budget", reason=f"backtest budget of {oc.budget} spent")
            else:
                tried.add(k)
                runnable.append(rec)
        props.append(rec)
    tm["validation"] += time.perf_counter() - t

    votes: list[dict[str, Any]] = []
    if oc.debate_rounds and runnable:
        t = time.perf_counter()
        debate = run_debate(agents.providers, state, runnable, oc.debate_rounds)
        tm["agents"] += time.perf_counter() - t
        messages += debate.messages
        votes = debate.votes
        for rec in runnable:
            if rec["name"] not in debate.passed:
                rec.update(status="voted_down", reason="a majority voted against it in the debate")
        runnable = [rec for rec in runnable if rec["name"] in debate.passed]

    t = time.perf_counter()
    for rec, (m_is, m_oos) in zip(runnable, ev.evaluate([rec["params"] for rec in runnable]), strict=True):
        rec.update(metrics_is=m_is, metrics_oos=m_oos)
    tm["backtests"] += time.perf_counter() - t

    t = time.perf_counter()
    passed = []
    for rec in runnable:
        breaches = hard_limit_breaches(rec["metrics_is"], limits)
        if breaches:
            rec.update(status="vetoed", reason="hard limit: " + "; ".join(breaches))
        else:
            passed.append(rec)
    tm["validation"] += time.perf_counter() - t
    review_summary = ""
    if oc.use_risk_manager and passed:
        t = time.perf_counter()
        review = agents.risk(state, [{k: rec[k] for k in ("name", "params", "metrics_is")} for rec in passed])
        tm["agents"] += time.perf_counter() - t
        messages.append(review.message)
        review_summary = review.value.summary
        verdicts = {v.proposal: v for v in review.value.verdicts}
        for rec in passed:
            v = verdicts.get(rec["name"])
            if v is not None and v.veto:
                rec.update(status="vetoed", reason=f"risk manager: {v.reason}")
    base_is, base_oos = objective_of(prev["baseline_is"], oc.objective), objective_of(prev["baseline_oos"],
                                                                                       oc.objective)
    for rec in runnable:
        rec["label"] = _label(objective_of(rec["metrics_is"], oc.objective) > base_is,
                              objective_of(rec["metrics_oos"], oc.objective) > base_oos)
    eligible = [rec for rec in runnable if rec["status"] in ELIGIBLE]
    best = max(eligible, key=lambda x: objective_of(x["metrics_oos"], oc.objective), default=None)
    improved = best is not None and objective_of(best["metrics_oos"], oc.objective) > base_oos + oc.tolerance
    used = prev["budget_used"] + len(runnable)
    st = {**prev, "stale": 0 if improved else prev["stale"] + 1, "budget_used": used,
          "report": report.value.model_dump(), "review": review_summary, "votes": votes}
    if improved:
        st.update(baseline=best["params"], baseline_is=best["metrics_is"], baseline_oos=best["metrics_oos"],
                  baseline_name=f"{best['name']} (round {r})")
    st["stop"] = ("patience" if st["stale"] >= oc.patience else "budget" if used >= oc.budget
                  else "rounds" if r >= oc.rounds else None)
    tm["total"] = time.perf_counter() - t_start
    best_out = None if best is None else {k: best[k] for k in ("name", "params", "metrics_is", "metrics_oos")}
    history.save_round(run_id, r, baseline=prev["baseline"], best=best_out, improved=improved, state=st,
                       timings=tm, proposals=props, messages=messages)
    tm["overhead"] = tm["total"] - tm["agents"] - tm["backtests"]
    return {"proposals": props, "state": st, "timings": tm}
