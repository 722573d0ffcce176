"""Pydantic v2 contracts for the optimizer agents (Analyst, Strategist, Risk Manager, debate votes).

Field descriptions are the models' instructions (they go into the JSON schema). Parameter VALUES are parsed loosely
here (numbers, booleans or strings) on purpose: bounds, steps and constraints are enforced afterwards in code
(``agents.space``) where a bad value is repaired with a note or rejected with a reason, never silently used.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, create_model, field_validator, model_validator

from ..grounding import CheckedReply, copied_line, is_prose, is_sentence

ParamValue = bool | int | float | str

_MAX_TEXT = 300
MAX_ITEMS = 5


def _flat(text: object, limit: int = _MAX_TEXT) -> str:
    """``text`` on one line (whitespace runs collapsed to one space), cut to ``limit`` characters."""
    return " ".join(str(text).split())[:limit]


FlatText = Annotated[str, AfterValidator(_flat)]  # a free-text field kept to one line of at most _MAX_TEXT chars


def _clean_lines(items: list[str], limit: int) -> list[str]:
    out = []
    for item in items:
        text = _flat(item)
        if text and text not in out:
            out.append(text)
    return out[:limit]


class AnalystReport(CheckedReply):
    """The Analyst's reading of the backtests tried so far."""

    model_config = ConfigDict(extra="ignore")

    patterns: list[str] = Field(min_length=1, max_length=MAX_ITEMS, description="up to 5 observed patterns, one "
                                "short sentence each, citing parameters and metrics (e.g. 'short_period 10-20 gives "
                                "the highest Sharpe')")
    recommendations: list[str] = Field(min_length=1, max_length=MAX_ITEMS, description="up to 5 things to try "
                                       "next, one short sentence each, naming parameters and directions")

    @field_validator("patterns", "recommendations", mode="before")
    @classmethod
    def _tidy(cls, v: object) -> list[str]:
        if not isinstance(v, list):
            raise ValueError("must be a list of short sentences")
        cleaned = _clean_lines(v, MAX_ITEMS)  # extra items are dropped: the grammar already caps them
        if not cleaned:
            raise ValueError("needs at least one non-empty sentence")
        return cleaned

    def reply_problems(self, ctx: Mapping[str, Any]) -> list[str]:
        """Every item is a sentence (not a parameter name or a ``key: value`` row); with the summary in the
        validation context (``context={"summary": text}``), no pattern may be one of its lines repeated."""
        bare = [x for x in self.patterns + self.recommendations if not is_sentence(x)]
        problems = [f"items {bare[:2]} are not sentences: write each as a short sentence of at least 3 words "
                    "saying what the rows show or what to try"] if bare else []
        lines = str(ctx.get("summary", "")).splitlines()
        copies = [line for p in self.patterns if (line := copied_line(p, lines))]
        return problems + ([f"patterns copy summary lines {copies[:2]}: state in your own words what the rows show "
                            "(which parameter values give the best objective)"] if copies else [])


class Proposal(CheckedReply):
    """One candidate parameter set with its reason."""

    model_config = ConfigDict(extra="ignore")
    label_fields = frozenset({"name"})

    name: str = Field(description="short label: Conservative, Aggressive, Exploratory, or another one-word name")
    params: dict[str, ParamValue] = Field(description="strategy parameters by name; every value a number or "
                                          "true/false within the parameter's range")
    rationale: str = Field(default="", description="one sentence: why this set should beat the baseline")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        v = _flat(v, 40)
        if not v:
            raise ValueError("name must not be empty")
        return v[0].upper() + v[1:]

    @field_validator("rationale")
    @classmethod
    def _rationale(cls, v: str) -> str:
        return _flat(v, 600)

    @field_validator("params", mode="before")
    @classmethod
    def _params(cls, v: Any) -> Any:
        if isinstance(v, BaseModel):
            v = v.model_dump()
        if not isinstance(v, dict) or not v:
            raise ValueError("params must be an object naming at least one parameter")
        return {str(k).strip(): val for k, val in v.items()}

    def reply_problems(self, ctx: Mapping[str, Any]) -> list[str]:
        """A rationale, when given, is a sentence saying why, not a bare number ("1.032")."""
        if self.rationale and not is_prose(self.rationale):
            return [f"rationale must be a sentence saying why (at least 3 words), not {self.rationale!r}"]
        return []

    def param_dict(self) -> dict[str, Any]:
        """The parameters as a plain dict (also for strategy-specific subclasses whose params are a model)."""
        return self.params.model_dump() if isinstance(self.params, BaseModel) else dict(self.params)


class StrategistReply(CheckedReply):
    """The Strategist's proposals for the next round."""

    model_config = ConfigDict(extra="ignore")

    proposals: list[Proposal] = Field(min_length=3, max_length=8, description="at least 3 proposals: one "
                                      "Conservative (small change near the best), one Aggressive (bigger step in the "
                                      "improving direction), one Exploratory (an untried region)")

    @model_validator(mode="after")
    def _unique_names(self) -> StrategistReply:
        seen: dict[str, int] = {}
        unique = []
        for p in self.proposals:
            n = seen.get(p.name, 0)
            seen[p.name] = n + 1
            unique.append(p.model_copy(update={"name": f"{p.name} {n + 1}"}) if n else p)
        self.proposals = unique
        return self

    def reply_problems(self, ctx: Mapping[str, Any]) -> list[str]:
        """With ``context={"is_tried": fn}`` (params -> bool), a reply whose proposals were all backtested
        already is rejected with that fact, so the retry proposes new values."""
        is_tried = ctx.get("is_tried")
        if callable(is_tried) and all(is_tried(p.param_dict()) for p in self.proposals):
            return [f"all {len(self.proposals)} proposals repeat configurations already backtested (see the tried "
                    "list): change at least one parameter value in each proposal"]
        return []


class RiskVerdict(BaseModel):
    """The Risk Manager's verdict on one proposal."""

    model_config = ConfigDict(extra="ignore")

    proposal: str = Field(description="the proposal's name, exactly as given")
    veto: bool = Field(description="true to block this proposal from being backtested")
    reason: str = Field(default="", description="one sentence; required when veto is true")

    @model_validator(mode="after")
    def _veto_has_reason(self) -> RiskVerdict:
        self.reason = _flat(self.reason)
        if self.veto and not self.reason:
            raise ValueError(f"veto of {self.proposal!r} needs a reason")
        return self


class RiskReview(BaseModel):
    """The Risk Manager's review of a round's proposals (after the hard limits in code)."""

    model_config = ConfigDict(extra="ignore")

    verdicts: list[RiskVerdict] = Field(default_factory=list, description="one verdict per proposal")
    summary: FlatText = Field(default="", description="one sentence on the overall risk of this round")


class Vote(BaseModel):
    """One agent's vote on one proposal during a debate."""

    model_config = ConfigDict(extra="ignore")

    proposal: str = Field(description="the proposal's name, exactly as given")
    support: bool = Field(description="true to back this proposal, false to oppose it")
    argument: FlatText = Field(default="", description="one sentence for or against")


class Ballot(BaseModel):
    """One agent's votes in one debate round."""

    model_config = ConfigDict(extra="ignore")

    votes: list[Vote] = Field(min_length=1, description="one vote per proposal")


@cache
def strategist_schema(strategy: str, specs_text: tuple[tuple[str, str], ...]) -> type[StrategistReply]:
    """A StrategistReply whose ``params`` name exactly this strategy's parameters (``specs_text``: (name, range
    description) pairs), so a grammar-constrained model is told every key; values stay loosely typed and are
    validated in code."""
    fields: dict[str, Any] = {n: (ParamValue, Field(description=d)) for n, d in specs_text}
    strict_grammar = ConfigDict(extra="ignore", json_schema_extra={"additionalProperties": False})
    params = create_model(f"{strategy}Params", __config__=strict_grammar, **fields)
    proposal = create_model(f"{strategy}Proposal", __base__=Proposal,
                            params=(params, Field(description="a value for every parameter, inside its range")))
    desc = StrategistReply.model_fields["proposals"].description
    return create_model(f"{strategy}Reply", __base__=StrategistReply,
                        proposals=(list[proposal], Field(min_length=3, max_length=5, description=desc)))
