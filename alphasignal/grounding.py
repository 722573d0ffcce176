"""Grounding and consistency rules for model replies, used by the schemas' Pydantic validators.

A schema-valid reply can still be empty of meaning: a small model copies the field descriptions, answers
"BULLISH" at intensity 0, or returns the summary rows it was shown. The rules, stated once:

- **tokens**: the text lower-cased, split on whitespace, punctuation stripped from each end ("8%," -> "8").
- **prose**: at least ``MIN_PROSE_WORDS`` words that hold two or more letters ("1.032" is not prose).
- **sentence**: at least ``MIN_PROSE_WORDS`` plain words (letters only, two or more), so a parameter name or a
  ``key: value`` row ("short_period: 15, long_period: 100, use_ema: true/false") is not one.
- **copied description**: the normalised text equals one of the schema's field descriptions, or is a run of at
  least ``MIN_COPY_TOKENS`` tokens found inside one ("0 (none) to 1 (extreme)").
- **grounded factor**: its normalised text occurs in the normalised news, or at least ``min_overlap`` of its
  content tokens (stop words dropped) occur among the news tokens.
- **copied summary line**: a sentence whose tokens equal those of one summary line, or contain one summary line
  (of ``MIN_COPY_TOKENS`` tokens or more) with at most ``MAX_EXTRA_TOKENS`` tokens added; "=" and ":" count as
  spaces here, so a row re-punctuated ("short_period: 5" for "short_period=5", as Gemma 3 270M wrote) is a copy.

Values are never extracted from prose: the rules only compare token sequences.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import cache
from typing import Any, ClassVar

from pydantic import BaseModel, ValidationInfo, model_validator

MIN_PROSE_WORDS = 3
MIN_COPY_TOKENS = 4
MAX_EXTRA_TOKENS = 2
DEFAULT_MIN_OVERLAP = 0.6
_PUNCT = ".,;:!?()[]{}\"'`%$*#<>|/\\-–—"
_STOP = frozenset({"a", "an", "the", "and", "or", "of", "to", "in", "on", "at", "for", "by", "with", "from", "as",
                   "is", "are", "was", "were", "be", "been", "it", "its", "this", "that", "than", "then", "up",
                   "down", "after", "before", "over", "under", "into", "out", "not", "no"})


def tokens(text: str) -> list[str]:
    """Lower-case tokens of ``text`` with punctuation stripped from their ends (empty ones dropped)."""
    out = []
    for raw in str(text).lower().split():
        tok = raw.strip(_PUNCT)
        if tok:
            out.append(tok)
    return out


def normalised(text: str) -> str:
    """The tokens joined by single spaces: the form every comparison uses."""
    return " ".join(tokens(text))


def is_prose(text: str, min_words: int = MIN_PROSE_WORDS) -> bool:
    """True when ``text`` holds at least ``min_words`` words of two or more letters."""
    return sum(sum(c.isalpha() for c in t) >= 2 for t in tokens(text)) >= min_words


def is_sentence(text: str, min_words: int = MIN_PROSE_WORDS) -> bool:
    """True when ``text`` holds at least ``min_words`` plain words (letters only, two or more of them)."""
    return sum(t.isalpha() and len(t) >= 2 for t in tokens(text)) >= min_words


def _contains(seq: list[str], part: list[str]) -> bool:
    n = len(part)
    return n > 0 and any(seq[i:i + n] == part for i in range(len(seq) - n + 1))


def copies_description(text: str, descriptions: Iterable[str]) -> str | None:
    """The field description ``text`` copies (whole, or a run of ``MIN_COPY_TOKENS``+ tokens), else None."""
    toks = tokens(text)
    for d in descriptions:
        dtoks = tokens(d)
        if toks == dtoks or (len(toks) >= MIN_COPY_TOKENS and _contains(dtoks, toks)):
            return d
    return None


def is_grounded(factor: str, source: str, min_overlap: float = DEFAULT_MIN_OVERLAP) -> bool:
    """True when ``factor`` occurs in ``source`` (normalised) or shares ``min_overlap`` of its content tokens."""
    f, s = tokens(factor), tokens(source)
    if _contains(s, f):
        return True
    content = [t for t in f if t not in _STOP]
    if not content:
        return False
    have = set(s)
    return sum(t in have for t in content) / len(content) >= min_overlap


def _row_tokens(text: str) -> list[str]:
    """``tokens`` with "=" and ":" read as spaces (key=value and key: value are the same row)."""
    return tokens(str(text).replace("=", " ").replace(":", " "))


def copied_line(sentence: str, lines: Iterable[str]) -> str | None:
    """The summary line ``sentence`` repeats (equal tokens, or containing it with few additions), else None."""
    toks = _row_tokens(sentence)
    for line in lines:
        ltoks = _row_tokens(line)
        if not ltoks:
            continue
        if toks == ltoks or (len(ltoks) >= MIN_COPY_TOKENS and len(toks) - len(ltoks) <= MAX_EXTRA_TOKENS
                             and _contains(toks, ltoks)):
            return line.strip()
    return None


@cache
def field_descriptions(schema: type[BaseModel]) -> tuple[str, ...]:
    """Every ``description`` in ``schema``'s JSON schema (nested models included), longest first."""
    found: set[str] = set()

    def _walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("description"), str):
                found.add(node["description"])
            for v in node.values():
                _walk(v)
        elif isinstance(node, list):
            for v in node:
                _walk(v)

    _walk(schema.model_json_schema())
    return tuple(sorted(found, key=len, reverse=True))


def context_of(info: ValidationInfo) -> Mapping[str, Any]:
    """The validation context (``model_validate(..., context=...)``) or an empty mapping."""
    return info.context if isinstance(info.context, Mapping) else {}


class CheckedReply(BaseModel):
    """Base of model-reply schemas: one after-validator reports every problem at once (one retry fixes them all).

    It checks that no free-text field (string, or list of strings) repeats one of the schema's field descriptions,
    then adds ``reply_problems(context)``, which subclasses extend with their cross-field and grounding rules.
    ``context={"shape_only": True}`` skips all of it (types and ranges only).
    ``label_fields`` names the fields that are labels, not free text (a proposal's name)."""

    label_fields: ClassVar[frozenset[str]] = frozenset()

    def reply_problems(self, ctx: Mapping[str, Any]) -> list[str]:
        """Cross-field problems given the validation context (none by default)."""
        return []

    @model_validator(mode="after")
    def _check_reply(self, info: ValidationInfo) -> Any:
        if context_of(info).get("shape_only"):  # benchmarks measure schema validity on its own
            return self
        descriptions = field_descriptions(type(self))
        problems = []
        for name in type(self).model_fields:
            value = getattr(self, name)
            for item in [] if name in self.label_fields else value if isinstance(value, list) else [value]:
                if isinstance(item, str) and (d := copies_description(item, descriptions)):
                    problems.append(f"{name} repeats the schema's own field description {d!r}: write content "
                                    "from the input instead")
                    break
        problems += self.reply_problems(context_of(info))
        if problems:
            raise ValueError("; ".join(problems))
        return self
