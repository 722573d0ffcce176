"""How fit a model's FIRST reply is, without retries: schema-valid, consistent, grounded.

- valid: the reply parses into the schema (types and ranges only: ``context={"shape_only": True}``);
- consistent: it also passes the schema's own rules (intensity floor, prose rationale, no copied descriptions);
- grounded: it also passes the grounding rules given the input (``ctx``: the news, the summary, the tried check),
  i.e. the pipeline would accept it without a retry.

Used by ``benchmarks/bench_models.py`` (the README's model table) and the real-model tests that hold its floor.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from pydantic import BaseModel, ValidationError

from ..errors import AlphaSignalError
from .base import Provider, ReplyError, describe_errors, extract_json, grammar_schema, repair


class Verdict(NamedTuple):
    """One first reply judged: the shape-valid value (None when not valid), the two levels and the first failure."""

    value: BaseModel | None
    consistent: bool
    grounded: bool
    why: str


def judge(raw: str, schema: type[BaseModel], ctx: dict[str, Any]) -> Verdict:
    """Judge one raw reply against ``schema`` and its grounding context ``ctx``."""
    try:
        data, _ = repair(extract_json(raw), schema.model_json_schema())
        value = schema.model_validate(data, context={"shape_only": True})
    except ReplyError as exc:
        return Verdict(None, False, False, str(exc))
    except ValidationError as exc:
        return Verdict(None, False, False, describe_errors(exc))
    for context, level in ((None, 0), (ctx, 1)):
        try:
            schema.model_validate(data, context=context)
        except ValidationError as exc:
            return Verdict(value, level == 1, False, describe_errors(exc))
    return Verdict(value, True, True, "")


def first_reply(provider: Provider, schema: type[BaseModel], system: str, user: str) -> str:
    """The raw text of one call with exactly the messages ``structured`` sends first; "" when the call fails."""
    messages = next(provider._loop(schema, system, user, ()))
    try:
        return provider._complete(messages, grammar_schema(schema), provider.settings.timeout)
    except AlphaSignalError:
        return ""
