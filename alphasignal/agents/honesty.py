"""The end-of-run summary: winner vs initial baseline in and out of sample, configurations tried, DSR, PBO."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..storage.history import History
from .evaluate import Evaluator, objective_of


def summarise(ev: Evaluator, history: History, run_id: str, objective: str) -> dict[str, Any]:
    """Honest figures of a finished run (also stored as the run's summary)."""
    rounds = history.rounds(run_id)
    st = rounds[-1]["state"]
    props = history.proposals(run_id)
    tried = [p for p in props if p["metrics_is"] is not None]
    agent = [p for p in tried if p["source"] == "agent"]
    winner = {"name": st.get("baseline_name", "initial baseline"), "params": st["baseline"],
              "metrics_is": st["baseline_is"], "metrics_oos": st["baseline_oos"]}
    initial = {"name": "initial baseline", "params": st["initial"], "metrics_is": st["initial_is"],
               "metrics_oos": st["initial_oos"]}
    w_is, w_oos = objective_of(winner["metrics_is"], objective), objective_of(winner["metrics_oos"], objective)
    i_is, i_oos = objective_of(initial["metrics_is"], objective), objective_of(initial["metrics_oos"], objective)
    if winner["params"] == initial["params"]:
        label = "no proposal beat the baseline out-of-sample: the baseline stands"
    elif w_is >= i_is:
        label = "better in- and out-of-sample"
    else:
        label = "better out-of-sample only (worse in-sample)"
    best_is = max(agent, key=lambda p: objective_of(p["metrics_is"], objective), default=None)
    warnings = []
    if best_is is not None and objective_of(best_is["metrics_is"], objective) > i_is \
            and objective_of(best_is["metrics_oos"], objective) <= i_oos:
        warnings.append(f"the best in-sample proposal ({best_is['name']}, round {best_is['round_no']}, "
                        f"{objective} {objective_of(best_is['metrics_is'], objective):.3f}) wins in-sample only: "
                        f"out-of-sample {objective_of(best_is['metrics_oos'], objective):.3f} vs baseline {i_oos:.3f}")
    params = [p["params"] for p in tried]
    dsr = ev.dsr(winner["params"], params)
    pbo = ev.pbo(params)
    if dsr < 0.95:
        warnings.append(f"DSR {dsr:.2f} < 0.95: after {len(tried)} configurations the winner's out-of-sample "
                        "Sharpe is not significant")
    return {"winner": winner, "initial": initial, "label": label, "warnings": warnings,
            "improvement_pct": _pct(w_oos, i_oos), "improvement_is_pct": _pct(w_is, i_is),
            "configs_tried": len(tried), "sweep_configs": st.get("sweep_configs", 0), "agent_backtests": len(agent),
            "proposals": sum(1 for p in props if p["source"] == "agent"), "rounds": len(rounds) - 1,
            "stop_reason": st.get("stop"), "dsr": dsr, "pbo": pbo, "objective": objective}


def agents_row(summary: dict[str, Any]) -> dict[str, Any]:
    """The agents' line of the comparison table."""
    w = summary["winner"]
    return {"optimizer": "agents", "configs": summary["configs_tried"], "params": w["params"],
            "metrics_is": w["metrics_is"], "metrics_oos": w["metrics_oos"], "dsr": summary["dsr"]}


def _pct(new: float, old: float) -> float | None:
    if not (np.isfinite(new) and np.isfinite(old)) or old == 0:
        return None
    return float((new - old) / abs(old) * 100)
