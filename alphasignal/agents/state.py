"""What the agents see in one round: the trials so far (in-sample metrics only), the space, the baseline."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from . import space


@dataclass
class RoundState:
    """Inputs of one round. ``trials``: one row per configuration tried, parameter + in-sample metric columns."""

    strategy: str
    specs: dict[str, Any]
    trials: pd.DataFrame
    objective: str
    baseline: dict[str, Any]
    baseline_metrics: dict[str, float]
    round_no: int
    seed: int
    n_proposals: int = 3
    limits: dict[str, float] = field(default_factory=dict)

    def tried_keys(self) -> set[str]:
        """Canonical keys of every configuration already backtested."""
        return {space.config_key(r) for r in self.trials[list(self.specs)].to_dict("records")}

    def space_text(self) -> str:
        """``name: min..max step s (type)`` for each parameter."""
        parts = []
        for name, s in self.specs.items():
            k = space.kind(s)
            parts.append(f"{name}: true/false" if k == "bool" else f"{name}: {s.min}..{s.max} step {s.step} ({k})")
        return "; ".join(parts)

    def tried_text(self, limit: int = 25) -> str:
        """The most recent ``limit`` configurations with their in-sample objective, one per line."""
        rows = self.trials.tail(limit)
        return "\n".join(", ".join(f"{n}={r[n]}" for n in self.specs) + f" -> {self.objective} {r[self.objective]:.3f}"
                         for _, r in rows.iterrows())
