"""Equity curves of a finished optimizer run: buy & hold, the initial baseline and the winner (stage 06's plot and
the dashboard's run page draw the same curves)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..storage.records import RunSummary
from .evaluate import Evaluator


def equity_curves(ev: Evaluator, data: pd.DataFrame, summary: RunSummary) -> dict[str, pd.Series]:
    """Buy & hold, the initial baseline and the winner over all bars (start 1.0), for a finished run's plots."""
    close = data["Close"]
    curves = {"buy & hold": close / close.iloc[0],
              "initial baseline": ev.equity(summary.initial.params)}
    if summary.winner.params != summary.initial.params:
        curves["best: " + summary.winner.name] = ev.equity(summary.winner.params)
    return {k: v.replace([np.inf, -np.inf], np.nan).dropna() for k, v in curves.items()}
