"""``--debate N``: the agents argue over the validated proposals for N rounds and vote before any backtest.

Each member (analyst, strategist, risk_manager) answers a ``Ballot`` per debate round, seeing the arguments so far.
A proposal that a majority opposes in the last round is not backtested (status ``voted_down``). Every vote and its
argument are kept, so dissent is recorded. The builtin engine votes from kNN estimates of the tested neighbourhood.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from ..providers import EngineRequest, Provider, register_engine
from ..storage.records import DebateVote, Message, Proposal
from . import analysis
from .calls import ask
from .schemas import Ballot, Vote
from .state import RoundState

ROLES = ("analyst", "strategist", "risk_manager")
_TITLES = {"analyst": "Analyst", "strategist": "Strategist", "risk_manager": "Risk Manager"}


@dataclass
class DebateResult:
    """Votes per debate round, the final tally and the messages to store."""

    votes: list[DebateVote]
    passed: set[str]
    messages: list[Message]


def estimates(state: RoundState, params: Mapping[str, Any]) -> dict[str, float]:
    """kNN estimates of the objective and drawdown at an untested configuration."""
    out = {"objective": analysis.predict(state.trials, state.specs, params, state.objective)}
    if "max_drawdown" in state.trials:
        out["max_drawdown"] = abs(analysis.predict(state.trials, state.specs, params, "max_drawdown"))
    return out


def run_debate(members: Mapping[str, Provider], state: RoundState, proposals: Sequence[Proposal],
               rounds: int) -> DebateResult:
    """Argue ``rounds`` times over validated ``proposals``; the majority of the last round decides."""
    est = {p.name: estimates(state, p.params or {}) for p in proposals}
    lines = "\n".join(f"- {p.name}: {p.params} (estimated {state.objective} {est[p.name]['objective']:.3f}"
                      f", drawdown {est[p.name].get('max_drawdown', float('nan')):.1%})" for p in proposals)
    votes: list[DebateVote] = []
    messages = []
    names = [p.name for p in proposals]
    for r in range(1, rounds + 1):
        arguments = "\n".join(f"- {v.agent} on {v.proposal}: {'for' if v.support else 'against'}: "
                              f"{v.argument}" for v in votes if v.round == r - 1) or "(none yet)"
        for role in ROLES:
            values = {"role": _TITLES[role], "round": r, "rounds": rounds, "baseline": state.baseline,
                      "proposals": lines, "arguments": arguments}
            previous = [v for v in votes if v.round == r - 1]
            ctx = {"state": state, "role": role, "estimates": est, "previous": previous}
            call = ask(members[role], Ballot, role, "debate", values, ctx)
            messages.append(replace(call.message, agent=f"{role}:debate{r}"))
            by_name = {v.proposal: v for v in call.value.votes}
            for name in names:  # a missing vote counts as an abstention-in-favour, recorded as such
                v = by_name.get(name, Vote(proposal=name, support=True, argument="(no vote given: counted for)"))
                votes.append(DebateVote(r, role, name, v.support, v.argument))
    last = [v for v in votes if v.round == rounds]
    passed = {n for n in names if 2 * sum(v.support for v in last if v.proposal == n)
              >= sum(1 for v in last if v.proposal == n)}
    return DebateResult(votes, passed, messages)


def builtin_ballot(state: RoundState, role: str, est: Mapping[str, Mapping[str, float]],
                   previous: Sequence[DebateVote]) -> Ballot:
    """Role-specific votes; a member whose margin is thin follows the previous round's majority."""
    base = float(state.baseline_metrics.get(state.objective, 0.0))
    max_dd = state.limits.get("max_drawdown", 1.0)
    out = []
    for name, e in est.items():
        gain = e["objective"] - base
        if role == "risk_manager":
            margin = max_dd - e.get("max_drawdown", 0.0)
            support, arg = margin > 0.1 * max_dd, f"estimated drawdown {e.get('max_drawdown', 0):.1%} vs limit " \
                                                   f"{max_dd:.0%}"
        elif role == "analyst":
            margin = gain
            support, arg = gain > -0.05 * abs(base), f"neighbours estimate {e['objective']:.3f} vs baseline {base:.3f}"
        else:
            margin = 1.0 if name.startswith("Exploratory") else gain
            support, arg = margin > -0.1 * abs(base), ("exploration is worth one backtest"
                                                       if name.startswith("Exploratory") else
                                                       f"expected change {gain:+.3f}")
        prev = [v.support for v in previous if v.proposal == name]
        if prev and abs(margin) < 0.02 and (2 * sum(prev) >= len(prev)) != support:
            support, arg = not support, arg + "; thin margin, persuaded by the majority"
        out.append(Vote(proposal=name, support=support, argument=arg))
    return Ballot(votes=out)


def _engine(req: EngineRequest) -> Ballot:
    c = req.context
    return builtin_ballot(c["state"], c["role"], c["estimates"], c["previous"])


register_engine(Ballot, _engine)
