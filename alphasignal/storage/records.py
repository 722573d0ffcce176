"""Typed records of the optimizer history (stage 06): a run, its rounds, their proposals and agent messages, the
loop state after each round and the end-of-run summary.

Frozen dataclasses; :mod:`.history` is the one place they are written to and read from SQLite. ``to_json`` gives
exactly the JSON the history has always stored (optional keys absent, not null, as before) and ``from_json`` reads
any stored version: a key an older version did not write takes its default. Metrics stay plain mappings of
metric name to value (hold-out metrics also carry ``sharpe_ci`` ``[lo, hi]`` and ``ci_level``). ``metrics_is``
are exploration-segment metrics, ``metrics_oos`` selection-segment ones.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

Metrics = Mapping[str, Any]
Params = Mapping[str, Any]
ELIGIBLE = ("ok", "repaired")  # proposal statuses that may become the baseline
SEGMENT_PARTS = ("is", "oos", "holdout")  # exploration, selection, hold-out: the suffixes of ``metrics_*``


def _plain(record: Any, omit_none: tuple[str, ...] = ()) -> dict[str, Any]:
    """A record's fields as JSON-ready data (nested records, tuples as lists); ``omit_none`` fields are left out
    while None, as the history has always left them out."""
    out = {}
    for f in fields(record):
        v = getattr(record, f.name)
        if v is None and f.name in omit_none:
            continue
        out[f.name] = _value(v)
    return out


def _value(v: Any) -> Any:
    if hasattr(v, "to_json"):
        return v.to_json()
    if isinstance(v, (tuple, list)):
        return [_value(x) for x in v]
    if isinstance(v, Mapping):
        return {k: _value(x) for k, x in v.items()}
    return v


def _known(cls: type, d: Mapping[str, Any]) -> dict[str, Any]:
    """The keys of ``d`` that are fields of ``cls`` (a key a newer version added is ignored)."""
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in d.items() if k in names}


class _Scored:
    """Metrics per segment of a record with ``metrics_is``, ``metrics_oos`` (and maybe ``metrics_holdout``)."""

    def metrics(self, part: str) -> Metrics:
        """The metrics on one segment (``is`` exploration, ``oos`` selection, ``holdout``); {} when absent."""
        return getattr(self, f"metrics_{part}", None) or {}


@dataclass(frozen=True)
class Proposal(_Scored):
    """One configuration of a round: a Strategist proposal (``source`` agent) or, in round 0, a sweep row.
    ``status``: ok, repaired, rejected, duplicate, over_budget, voted_down or vetoed; metrics are set once it was
    backtested."""

    name: str
    status: str
    source: str = "agent"
    raw_params: Params = field(default_factory=dict)
    params: Params | None = None
    notes: tuple[str, ...] = ()
    reason: str = ""
    rationale: str = ""
    metrics_is: Metrics | None = None
    metrics_oos: Metrics | None = None
    label: str = ""
    round_no: int = 0  # set when read back; the round it is saved with decides where it is stored

    @property
    def backtested(self) -> bool:
        """Whether it was backtested (it has exploration metrics)."""
        return self.metrics_is is not None

    @property
    def eligible(self) -> bool:
        """Whether its status lets it run and become the baseline."""
        return self.status in ELIGIBLE

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Proposal:
        """A stored proposal row (its JSON columns decoded)."""
        d = _known(cls, d)
        return cls(**{**d, "notes": tuple(d.get("notes") or ()), "raw_params": d.get("raw_params") or {},
                      "reason": d.get("reason") or "", "rationale": d.get("rationale") or "",
                      "label": d.get("label") or ""})


@dataclass(frozen=True)
class Message:
    """One agent call as stored: who answered, with which prompt version, the raw and parsed reply."""

    agent: str
    provider: str = ""
    model: str = ""
    prompt_version: str = ""
    raw: str = ""
    parsed: Any = None
    error: str | None = None
    latency_s: float = 0.0
    round_no: int = 0

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Message:
        """A stored message row."""
        return cls(**_known(cls, d))


@dataclass(frozen=True)
class DebateVote:
    """One member's vote on one proposal in one debate round (``--debate``), with its argument."""

    round: int
    agent: str
    proposal: str
    support: bool
    argument: str

    def to_json(self) -> dict[str, Any]:
        """The stored form."""
        return _plain(self)

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> DebateVote:
        """The stored form back."""
        return cls(**_known(cls, d))


@dataclass(frozen=True)
class Analysis:
    """The Analyst's report of a round as stored: patterns and recommendations."""

    patterns: tuple[str, ...] = ()
    recommendations: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """The stored form."""
        return _plain(self)

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Analysis:
        """The stored form back."""
        return cls(tuple(d.get("patterns") or ()), tuple(d.get("recommendations") or ()))


@dataclass(frozen=True)
class Candidate(_Scored):
    """A configuration with its metrics: a round's best proposal, and the summary's winner and initial baseline
    (which also get ``metrics_holdout``, scored once at the end of the run)."""

    name: str
    params: Params
    metrics_is: Metrics | None = None
    metrics_oos: Metrics | None = None
    metrics_holdout: Metrics | None = None

    def to_json(self) -> dict[str, Any]:
        """The stored form."""
        return _plain(self, ("metrics_holdout",))

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Candidate:
        """The stored form back."""
        return cls(**_known(cls, d))


@dataclass(frozen=True)
class LoopState:
    """The optimizer loop's state after a round: baseline (its exploration and selection metrics), the initial
    baseline, patience, budget, why it stopped, round 0's segments, and the round's Analyst report, Risk Manager
    review and debate votes."""

    baseline: Params = field(default_factory=dict)
    baseline_is: Metrics = field(default_factory=dict)
    baseline_oos: Metrics = field(default_factory=dict)
    initial: Params = field(default_factory=dict)
    initial_is: Metrics = field(default_factory=dict)
    initial_oos: Metrics = field(default_factory=dict)
    stale: int = 0
    budget_used: int = 0
    stop: str | None = None
    sweep_configs: int = 0
    segments: Mapping[str, Any] | None = None  # bar positions and dates of the three segments
    baseline_name: str | None = None  # set once a proposal replaced the initial baseline
    report: Analysis | None = None
    review: str | None = None
    votes: tuple[DebateVote, ...] | None = None

    def to_json(self) -> dict[str, Any]:
        """The stored form."""
        return _plain(self, ("segments", "baseline_name", "report", "review", "votes"))

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> LoopState:
        """The stored form back."""
        d = _known(cls, d)
        if d.get("report") is not None:
            d["report"] = Analysis.from_json(d["report"])
        if d.get("votes") is not None:
            d["votes"] = tuple(DebateVote.from_json(v) for v in d["votes"])
        return cls(**d)


@dataclass(frozen=True)
class Round:
    """A committed round: the baseline it started from, its best eligible proposal, whether that improved on the
    baseline, the loop state after it and the seconds per part. Round 0 is the exploration sweep."""

    round_no: int
    baseline: Params
    state: LoopState
    best: Candidate | None = None
    improved: bool = False
    timings: Mapping[str, float] = field(default_factory=dict)
    created: float = 0.0
    run_id: str = ""


@dataclass(frozen=True)
class OptimizerResult(_Scored):
    """One line of the same-budget comparison: an optimizer, the backtests it used, its winner with exploration,
    selection (and, after the run, hold-out) metrics, and the DSR of its selection Sharpe. ``extra`` holds an
    optimizer's own figures (wfo: ``wfo_stitched_sharpe``, ``wfo_efficiency``), stored beside the others."""

    optimizer: str
    configs: int
    params: Params
    metrics_is: Metrics
    metrics_oos: Metrics
    dsr: float
    metrics_holdout: Metrics | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The stored form (``extra``'s keys at the top level)."""
        d = _plain(self, ("metrics_holdout",))
        return {**{k: v for k, v in d.items() if k != "extra"}, **d["extra"]}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> OptimizerResult:
        """The stored form back."""
        known = _known(cls, d)
        extra = {k: v for k, v in d.items() if k not in known}
        return cls(**{**known, "extra": extra})


@dataclass(frozen=True)
class RunSummary:
    """The end-of-run figures stored with a finished run: winner and initial baseline on every segment, the
    verdict and warnings, what was tried, DSR and PBO, the same-budget comparison and the hold-out headline.
    ``holdout_label`` is None until the hold-out was scored (and in runs made before the hold-out split)."""

    winner: Candidate
    initial: Candidate
    label: str
    objective: str = "sharpe"
    warnings: tuple[str, ...] = ()
    eligible: bool = True
    improvement_selection_pct: float | None = None
    improvement_is_pct: float | None = None
    configs_tried: int = 0
    sweep_configs: int = 0
    agent_backtests: int = 0
    proposals: int = 0
    rounds: int = 0
    stop_reason: str | None = None
    dsr: float = float("nan")
    pbo: float = float("nan")
    segments: Mapping[str, Any] | None = None
    compare: tuple[OptimizerResult, ...] | None = None
    improvement_pct: float | None = None  # hold-out (in runs before the split: selection-biased out-of-sample)
    holdout_label: str | None = None

    @property
    def holdout_scored(self) -> bool:
        """Whether the winner has hold-out figures (runs made before the split have none)."""
        return self.winner.metrics_holdout is not None

    def to_json(self) -> dict[str, Any]:
        """The stored form."""
        d = _plain(self, ("compare", "holdout_label"))
        if self.improvement_pct is None and self.holdout_label is None:
            del d["improvement_pct"]  # not scored on the hold-out yet: the headline figure is absent, not null
        return d

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> RunSummary:
        """The stored form back."""
        d = _known(cls, d)
        d["winner"], d["initial"] = Candidate.from_json(d["winner"]), Candidate.from_json(d["initial"])
        d["warnings"] = tuple(d.get("warnings") or ())
        if d.get("compare") is not None:
            d["compare"] = tuple(OptimizerResult.from_json(r) for r in d["compare"])
        for k in ("dsr", "pbo"):
            if d.get(k) is None:
                d.pop(k, None)
        return cls(**d)


@dataclass(frozen=True)
class Run:
    """A run's row: identity, status, what it optimised with which models and seed, its whole config (as
    ``Config.to_dict()``), its summary once finished, and (when listed) its number of agent rounds."""

    run_id: str
    created: float
    updated: float
    status: str
    strategy: str
    config_hash: str
    data_hash: str
    models: Mapping[str, str]
    seed: int
    config: Mapping[str, Any]
    summary: RunSummary | None = None
    rounds: int = 0

    @property
    def objective(self) -> str:
        """The objective the run optimised (``optimizer.objective``)."""
        return (self.config.get("optimizer") or {}).get("objective", "sharpe")


@dataclass(frozen=True)
class RunDetails:
    """A run with everything committed for it, as the report, ``--show`` and the dashboard read it."""

    run: Run
    rounds: tuple[Round, ...]
    proposals: tuple[Proposal, ...]  # every round's, round 0's sweep rows first
    messages: tuple[Message, ...] = ()

    @property
    def summary(self) -> RunSummary | None:
        """The end-of-run summary (None while running, interrupted or failed)."""
        return self.run.summary

    @property
    def objective(self) -> str:
        """The run's objective."""
        return self.run.objective

    @property
    def segments(self) -> Mapping[str, Any] | None:
        """The segments recorded in round 0 (None for runs made before the hold-out split)."""
        return self.rounds[0].state.segments if self.rounds else None

    @property
    def sweep(self) -> list[Proposal]:
        """Round 0's exploration sweep rows."""
        return [p for p in self.proposals if p.source == "sweep"]

    @property
    def agent_proposals(self) -> list[Proposal]:
        """Every Strategist proposal, in order."""
        return [p for p in self.proposals if p.source == "agent"]

    def round_proposals(self, round_no: int) -> list[Proposal]:
        """The Strategist proposals of one round."""
        return [p for p in self.agent_proposals if p.round_no == round_no]

    def round_messages(self, round_no: int) -> list[Message]:
        """The agent messages of one round (when they were loaded)."""
        return [m for m in self.messages if m.round_no == round_no]


def backtested(proposals: Sequence[Proposal]) -> list[Proposal]:
    """The proposals that were backtested, in order."""
    return [p for p in proposals if p.backtested]
