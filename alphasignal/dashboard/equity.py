"""Equity curves of a finished stage 06 run, recomputed from the config and data hash stored with it.

The history keeps parameters and metrics, not curves; the curves are re-run (three backtests) on the run's own
config, and only when the market data loaded now hashes to the run's ``data_hash``: another data set would draw
curves the run never produced.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import pandas as pd

from ..config import Config
from ..errors import UsageError
from ..storage.records import Run


def run_config(stored: Mapping[str, Mapping[str, Any]]) -> Config:
    """The :class:`Config` a run recorded (``cfg.to_dict()``): lists back to tuples; keys this version no longer
    has are dropped, keys it added keep their defaults."""
    cfg = Config()
    sections = {}
    for f in dataclasses.fields(Config):
        current = getattr(cfg, f.name)
        known = {k.name for k in dataclasses.fields(current)}
        updates = {k: tuple(v) if isinstance(getattr(current, k), tuple) and isinstance(v, list) else v
                   for k, v in (stored.get(f.name) or {}).items() if k in known}
        sections[f.name] = dataclasses.replace(current, **updates)
    return dataclasses.replace(cfg, **sections)


def run_equity(run: Run, max_points: int = 2000) -> pd.DataFrame:
    """Long frame (date, curve, equity) of buy & hold, the initial baseline and the winner of a finished run,
    thinned to at most ``max_points`` dates. Raises :class:`UsageError` when the run has no summary or the data
    loaded now is not the run's."""
    from ..agents.curves import equity_curves
    from ..agents.evaluate import Evaluator, data_hash
    from ..market import load_from_config

    if run.summary is None:
        raise UsageError(f"run {run.run_id} has no summary (status {run.status}): no curves to draw")
    cfg = run_config(run.config)
    data = load_from_config(cfg.dataset)
    if data_hash(data) != run.data_hash:
        raise UsageError(f"the market data loaded now (hash {data_hash(data)}) is not run {run.run_id}'s "
                         f"(hash {run.data_hash}): the curves are not drawn; check dataset.source and dates")
    curves = equity_curves(Evaluator.from_config(data, cfg), data, run.summary)
    frame = pd.DataFrame(curves)
    frame = frame.iloc[:: max(1, -(-len(frame) // max_points))]
    frame.index.name = "date"
    return frame.reset_index().melt(id_vars="date", var_name="curve", value_name="equity").dropna()
