"""The Analyst: reads the trials so far and reports patterns and recommendations.

``make_analyst(provider)`` returns ``analyst(state) -> AgentCall[AnalystReport]``. The builtin engine (registered
for ``AnalystReport``) reports the real statistics of :mod:`agents.analysis`: marginal effects, interactions and
the plateau robustness of the best configuration.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ..providers import EngineRequest, Provider, register_engine
from .analysis import analyse, summary_text
from .calls import AgentCall, ask
from .schemas import AnalystReport
from .state import RoundState

Analyst = Callable[[RoundState], AgentCall[AnalystReport]]


def make_analyst(provider: Provider, *, max_summary_chars: int = 2500) -> Analyst:
    """An Analyst backed by ``provider``."""

    def analyst(state: RoundState) -> AgentCall[AnalystReport]:
        stats = analyse(state.trials, state.specs, state.objective)
        values = {"strategy": state.strategy, "space": state.space_text(), "baseline": state.baseline,
                  "summary": summary_text(stats, max_summary_chars)}
        context = {"stats": stats, "summary": values["summary"]}  # the summary: patterns must not copy its lines
        return ask(provider, AnalystReport, "analyst", "analyst", values, context)

    return analyst


def builtin_report(stats: Mapping[str, Any]) -> AnalystReport:
    """Patterns and recommendations written from the computed statistics."""
    obj = stats["objective"]
    effects = sorted(stats["effects"].items(), key=lambda kv: -kv[1]["spread"])
    patterns, recs = [], []
    for name, e in effects:
        by = e["by_value"]
        if len(by) < 2:
            continue
        hi = max(by, key=by.get)
        lo = min(by, key=by.get)
        trend = "higher is better" if e["slope"] > 0.2 else "lower is better" if e["slope"] < -0.2 else "no trend"
        patterns.append(f"{name}: mean {obj} {by[hi]} at {hi} vs {by[lo]} at {lo} (slope {e['slope']:+}, {trend})")
        if abs(e["slope"]) > 0.2:
            recs.append(f"set {name} to {hi}" if len(by) == 2 and {"true", "false"} == set(by) else
                        f"move {name} {'up' if e['slope'] > 0 else 'down'} from the best, towards {hi}")
    for it in stats["interactions"]:
        if it["share"] >= 0.05:
            a, b = it["params"]
            patterns.append(f"{a} and {b} interact: {it['share']:.0%} of the {obj} variance is not additive")
            recs.append(f"change {a} and {b} together rather than one at a time")
    p = stats["plateau"]
    shape = "a broad plateau" if p["robustness"] >= 0.8 else "a moderate plateau" if p["robustness"] >= 0.5 \
        else "an isolated peak"
    patterns.insert(0, f"best {p['best']} has {obj} {p['best_value']}; its {p['neighbours']} nearest neighbours "
                    f"average {p['neighbour_mean']} (min {p['neighbour_min']}, robustness {p['robustness']}): {shape}")
    recs.insert(0, f"stay inside the robust plateau around {p['centre']} (smoothed {obj} {p['centre_smoothed']})")
    if p["robustness"] < 0.5:
        recs.append("distrust the single best configuration: prefer its more stable neighbourhood")
    return AnalystReport(patterns=patterns, recommendations=recs)


def _engine(req: EngineRequest) -> AnalystReport:
    return builtin_report(req.context["stats"])


register_engine(AnalystReport, _engine)
