"""What a replay is made of and produces: the decisions to make (``Job``), the data they may read
(``ReplayData``), the calls and tokens spent on them (``Meter``) and everything the outputs are written from
(``Outcome``). :mod:`.run` makes them; :mod:`.report` writes and prints them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..config import ReplayConfig
from ..providers.cache import CallUsage
from .news import NewsIndex

CALLS_PER_DECISION = 2  # the chart call and the news call


@dataclass(frozen=True)
class Job:
    """One decision to make: ``ticker`` at bar ``bar`` of its frame; ``key`` hashes every input of it."""

    ticker: str
    bar: int
    date: str
    key: str


@dataclass(frozen=True)
class ReplayData:
    """What decisions may read: prices per ticker, the news, and each bar's decision time (UTC ns)."""

    frames: dict[str, pd.DataFrame]
    news: NewsIndex
    decision_ns: dict[str, np.ndarray]


@dataclass
class Meter(CallUsage):
    """The decisions made in this run and their calls, tokens and latency, against the run's budget (the limits and
    counters of ``CallUsage``); ``stopped`` says which limit ended the deciding."""

    decisions: int = 0
    stopped: str = ""

    def may_start(self, in_flight: int) -> bool:
        """Whether one more decision may start: the calls it and those in flight can still make (at most
        ``CALLS_PER_DECISION`` each) stay within ``max_calls``. Tokens are only known afterwards, so
        ``max_tokens_total`` is checked as decisions complete (the ones in flight may pass it)."""
        if self.max_calls and self.calls + CALLS_PER_DECISION * (in_flight + 1) > self.max_calls:
            self.stopped = self.stopped or (f"replay.max_calls={self.max_calls} reached (the next decisions "
                                            "could pass it)")
        return not self.stopped

    def add(self, usage: dict[str, Any], sent: CallUsage | None = None) -> None:
        """Count one decision. ``sent``: the run's request counter, so calls answered from the model-call cache
        (which a decision's meta cannot tell apart: a cached re-run writes the same bytes) spend no budget."""
        self.decisions += 1
        if sent is None:
            self.calls += usage["calls"]
            self.tokens_in, self.tokens_out = self.tokens_in + usage["tokens_in"], self.tokens_out + usage["tokens_out"]
        else:
            self.calls, self.tokens_in, self.tokens_out = sent.calls, sent.tokens_in, sent.tokens_out
        self.latency_s += usage["latency_s"]
        if reason := self.over_limit():
            self.stopped = f"replay.{reason}"


@dataclass
class Outcome:
    """Everything the outputs are made of."""

    rc: ReplayConfig
    data: ReplayData
    jobs: list[Job]
    records: dict[str, dict]
    meter: Meter
    reused: int
    sim: Any = None
    comparison: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    providers: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
