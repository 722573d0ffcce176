"""The Risk Manager: hard limits in code first (never negotiable by a model), then a review that may veto.

``hard_limit_breaches(metrics, limits)`` is plain code over the in-sample metrics. ``make_risk_manager(provider)``
returns ``risk(state, candidates) -> AgentCall[RiskReview]`` for the proposals that passed the limits; the builtin
engine vetoes deeper drawdown for little extra objective, and isolated peaks whose neighbours do badly.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from ..config import OptimizerConfig
from ..providers import EngineRequest, Provider, register_engine
from ..storage.records import Proposal
from . import analysis
from .calls import AgentCall, ask
from .schemas import RiskReview, RiskVerdict
from .state import RoundState

RiskManager = Callable[[RoundState, Sequence[Proposal]], AgentCall[RiskReview]]


def hard_limits(optimizer: OptimizerConfig) -> dict[str, float]:
    """The hard limits of an ``OptimizerConfig``, as :func:`hard_limit_breaches` takes them."""
    return {"max_drawdown": optimizer.max_drawdown, "min_trades": optimizer.min_trades,
            "max_turnover": optimizer.max_turnover}


def hard_limit_breaches(metrics: Mapping[str, float], limits: Mapping[str, float]) -> list[str]:
    """The configured hard limits a backtest breaks (empty when none); NaN metrics count as breaches."""
    out = []
    dd = abs(float(metrics.get("max_drawdown", 0.0)))
    if "max_drawdown" in limits and not dd <= limits["max_drawdown"]:
        out.append(f"max drawdown {dd:.1%} > limit {limits['max_drawdown']:.0%}")
    trades = float(metrics.get("trades", 0))
    if "min_trades" in limits and not trades >= limits["min_trades"]:
        out.append(f"{trades:g} trades < minimum {limits['min_trades']:g}")
    turnover = float(metrics.get("turnover", 0.0))
    if "max_turnover" in limits and not turnover <= limits["max_turnover"]:
        out.append(f"turnover {turnover:.1f} > limit {limits['max_turnover']:g}")
    return out


def make_risk_manager(provider: Provider) -> RiskManager:
    """A Risk Manager backed by ``provider``; ``candidates``: backtested proposals (exploration metrics)."""

    def risk(state: RoundState, candidates: Sequence[Proposal]) -> AgentCall[RiskReview]:
        lines = [f"- {c.name}: {c.params} -> {_metrics_text(c.metrics('is'), state.objective)}" for c in candidates]
        values = {"strategy": state.strategy, "limits": state.limits,
                  "baseline": f"{state.baseline} -> {_metrics_text(state.baseline_metrics, state.objective)}",
                  "proposals": "\n".join(lines)}
        return ask(provider, RiskReview, "risk_manager", "risk_manager", values,
                   {"state": state, "candidates": list(candidates)})

    return risk


def _metrics_text(m: Mapping[str, float], objective: str) -> str:
    keys = [objective] + [k for k in ("total_return", "max_drawdown", "trades", "turnover") if k != objective]
    return ", ".join(f"{k} {float(m[k]):.3g}" for k in keys if k in m)


def builtin_review(state: RoundState, candidates: Sequence[Proposal]) -> RiskReview:
    """Veto when drawdown deepens by over half for < 0.1 more objective, or when the neighbourhood collapses."""
    base_obj = float(state.baseline_metrics.get(state.objective, 0.0))
    base_dd = abs(float(state.baseline_metrics.get("max_drawdown", 0.0)))
    verdicts = []
    for c in candidates:
        m = c.metrics("is")
        obj, dd = float(m.get(state.objective, 0.0)), abs(float(m.get("max_drawdown", 0.0)))
        reason = ""
        if base_dd > 0 and dd > 1.5 * base_dd and obj - base_obj < 0.1:
            reason = f"drawdown {dd:.1%} vs baseline {base_dd:.1%} for only {obj - base_obj:+.3f} {state.objective}"
        else:
            nb = analysis.neighbours(state.trials, state.specs, c.params or {})
            nb_mean = float(nb[state.objective].mean()) if len(nb) else obj
            if obj > base_obj and obj > 0 and nb_mean < 0.5 * obj:
                reason = (f"isolated peak: {state.objective} {obj:.3f} but its {len(nb)} nearest tested neighbours "
                          f"average {nb_mean:.3f}")
        verdicts.append(RiskVerdict(proposal=c.name, veto=bool(reason), reason=reason or "within risk budget"))
    vetoed = sum(v.veto for v in verdicts)
    return RiskReview(verdicts=verdicts, summary=f"{vetoed} of {len(verdicts)} vetoed after hard limits")


def _engine(req: EngineRequest) -> RiskReview:
    return builtin_review(req.context["state"], req.context["candidates"])


register_engine(RiskReview, _engine)
