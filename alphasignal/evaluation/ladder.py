"""The ladder: every chart signal scored on the same test windows, beside the rules a sceptic names first.

A rung is a predictor's actions and class probabilities on the test windows (:class:`Rung`). :func:`build_ladder`
scores every rung with :mod:`classification` (95 % intervals from a bootstrap blocked by date, and a paired test
against the ``majority`` rung on the same resamples) and returns a :class:`Ladder`; :func:`to_csv`,
:func:`to_markdown` and :func:`read_csv` are its files. What each rung is lives where the rungs are made
(``alphasignal.signals.ladder``) and in docs/ladder.md.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import UsageError
from .classification import CLASSES, LOWER_IS_BETTER, METRICS, Interval, bootstrap_scores, encode
from .splits import ladder_markdown, warning_markdown, warning_text

RUNGS = ("majority", "momentum", "builtin", "cnn", "vlm")
REFERENCE = "majority"
MIN_BLOCKS = 10  # the block length is shortened on a short test split so that there are at least this many
TITLES = {"accuracy": "accuracy", "balanced_accuracy": "balanced acc.", "macro_f1": "macro-F1",
          "log_loss": "log-loss", "brier": "Brier", "ece": "ECE"}


def parse_rungs(text: str | Sequence[str]) -> tuple[str, ...]:
    """Rung names from ``"a,b"`` or a sequence, in the ladder's order, ``majority`` first (it is the reference
    of every paired test, so it is always scored). An unknown name raises ``UsageError`` listing the valid ones."""
    names = [n.strip() for n in (text.split(",") if isinstance(text, str) else text) if n.strip()]
    unknown = [n for n in names if n not in RUNGS]
    if unknown or not names:
        what = f"unknown rung {', '.join(map(repr, unknown))}" if unknown else "no rung named"
        raise UsageError(f"--compare: {what}: use a comma-separated list of {', '.join(RUNGS)}")
    return tuple(r for r in RUNGS if r in names or r == REFERENCE)


def ladder_paths(eval_output: str | Path) -> tuple[Path, Path]:
    """The ladder's CSV and Markdown files, next to ``pipeline.eval_output`` (``X.json`` -> ``X_ladder.csv/md``)."""
    p = Path(eval_output)
    return p.with_name(f"{p.stem}_ladder.csv"), p.with_name(f"{p.stem}_ladder.md")


@dataclass(frozen=True)
class Rung:
    """One predictor on the test windows: actions, an n x 3 probability matrix (BUY, SELL, HOLD) and where the
    probabilities come from (``train prior``, ``one-hot``, ``confidence``, ``model``)."""

    name: str
    actions: tuple[str, ...]
    prob: np.ndarray
    prob_source: str
    detail: str = ""  # e.g. the model that answered


@dataclass(frozen=True)
class Ladder:
    """Scores per rung and metric, and what they were computed on."""

    samples: int
    first_date: str
    last_date: str
    label_counts: dict[str, int]
    block: int
    n_boot: int
    seed: int
    rows: dict[str, dict[str, Interval]]
    sources: dict[str, str]
    details: dict[str, str] = field(default_factory=dict)
    sceptic: dict = field(default_factory=dict)  # by regime and knowledge cut-off (signals.ladder_sceptic)

    def as_dict(self) -> dict:
        """JSON-ready form."""
        return {"samples": self.samples, "first_date": self.first_date, "last_date": self.last_date,
                "label_counts": self.label_counts, "block_dates": self.block, "bootstrap": self.n_boot,
                "seed": self.seed, "reference": REFERENCE, "sources": self.sources, "details": self.details,
                "rows": {r: {m: vars(iv) for m, iv in row.items()} for r, row in self.rows.items()},
                "sceptic": self.sceptic}


def build_ladder(labels: Sequence[str], dates: Sequence[str], rungs: Sequence[Rung], *, block: int = 10,
                 n_boot: int = 1000, seed: int = 7) -> Ladder:
    """Score ``rungs`` (one of them named ``majority``) on the same windows (``labels``, window-end ``dates``);
    ``block`` dates per bootstrap block, fewer when the split has under ``MIN_BLOCKS * block`` dates."""
    if not labels:
        raise UsageError("the test split is empty: rebuild the dataset with dataset.test_fraction > 0")
    names = [r.name for r in rungs]
    if REFERENCE not in names:
        raise UsageError(f"the ladder needs the {REFERENCE!r} rung as the reference of its paired tests")
    for r in rungs:
        if len(r.actions) != len(labels) or r.prob.shape != (len(labels), len(CLASSES)):
            raise ValueError(f"rung {r.name!r} has {len(r.actions)} predictions for {len(labels)} windows")
    y = encode(labels)
    block = max(1, min(block, len(set(dates)) // MIN_BLOCKS))  # at least MIN_BLOCKS blocks to resample
    predictors = {r.name: (encode(r.actions), np.asarray(r.prob, dtype=float)) for r in rungs}
    rows = bootstrap_scores(y, predictors, dates, reference=REFERENCE, block=block, n_boot=n_boot, seed=seed)
    return Ladder(len(labels), min(dates), max(dates), {c: int(np.sum(y == i)) for i, c in enumerate(CLASSES)},
                  block, n_boot, seed, rows, {r.name: r.prob_source for r in rungs},
                  {r.name: r.detail for r in rungs if r.detail})


def _csv_fields() -> list[str]:
    return ["rung", "probabilities", "detail", "samples"] + [f"{m}{s}" for m in METRICS
                                                               for s in ("", "_lo", "_hi", "_diff", "_p")]


def to_csv(ladder: Ladder) -> str:
    """One row per rung: each metric's value, interval, difference from majority and paired p-value."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=_csv_fields(), lineterminator="\n")
    w.writeheader()
    for name, row in ladder.rows.items():
        rec: dict[str, object] = {"rung": name, "probabilities": ladder.sources[name],
                                  "detail": ladder.details.get(name, ""), "samples": ladder.samples}
        for m, iv in row.items():
            rec.update({m: _num(iv.value), f"{m}_lo": _num(iv.lo), f"{m}_hi": _num(iv.hi),
                        f"{m}_diff": _num(iv.diff), f"{m}_p": _num(iv.p_value)})
        w.writerow(rec)
    return buf.getvalue()


def read_csv(path: str | Path) -> list[dict[str, str]]:
    """The rows of a ladder CSV (as written by :func:`to_csv`); a file of another shape raises UsageError."""
    p = Path(path)
    try:
        rows = list(csv.DictReader(p.read_text(encoding="utf-8").splitlines()))
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read the ladder table {p} ({type(exc).__name__}): run "
                         "04_signal_pipeline.py --eval --compare again") from None
    if not rows or not {"rung", *METRICS} <= set(rows[0]):
        raise UsageError(f"{p} is not a ladder table: run 04_signal_pipeline.py --eval --compare again")
    return rows


def cell(value: float, lo: float, hi: float) -> str:
    """``0.412 [0.380, 0.445]``."""
    return f"{value:.3f} [{lo:.3f}, {hi:.3f}]"


def p_text(name: str, metric: str, iv: Interval) -> str:
    """``p=0.031, better`` against majority (empty for the reference itself)."""
    if name == REFERENCE:
        return "reference"
    better = (iv.diff < 0) == (metric in LOWER_IS_BETTER) and iv.diff != 0
    return f"p={iv.p_value:.3f}, {'better' if better else 'worse' if iv.diff else 'same'}"


def to_markdown(ladder: Ladder) -> str:
    """The table as Markdown: a header line on what was scored, one row per rung."""
    head = _header(ladder)
    lines = ["| rung | probabilities | " + " | ".join(TITLES[m] for m in METRICS) + " |",
             "|---|---|" + "---|" * len(METRICS)]
    for name, row in ladder.rows.items():
        cells = [f"{cell(iv.value, iv.lo, iv.hi)}<br>{p_text(name, m, iv)}" for m, iv in row.items()]
        label = name + (f" ({ladder.details[name]})" if name in ladder.details else "")
        lines.append(f"| {label} | {ladder.sources[name]} | " + " | ".join(cells) + " |")
    splits = ladder_markdown(ladder.sceptic)
    return warning_markdown(ladder.sceptic) + head + "\n".join(lines) + "\n" + ("\n" + splits if splits else "")


def _header(ladder: Ladder) -> str:
    return (f"{ladder.samples} test windows ({ladder.first_date} .. {ladder.last_date}; labels "
            + ", ".join(f"{k} {v}" for k, v in ladder.label_counts.items())
            + f"). 95 % intervals: bootstrap over blocks of {ladder.block} window-end dates, {ladder.n_boot} "
              f"resamples; p: paired bootstrap against {REFERENCE} on the same resamples.\n\n")


def _num(x: float) -> str:
    return "" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.6g}"


def display_rows(rows: Sequence[dict[str, str]]) -> list[dict[str, str]]:
    """Rows of a ladder CSV for a table on screen: each metric as ``value [lo, hi]`` and its paired test."""
    out = []
    for row in rows:
        rec = {"rung": row["rung"] + (f" ({row['detail']})" if row.get("detail") else ""),
               "probabilities": row.get("probabilities", "")}
        for m in METRICS:
            try:
                iv = Interval(float(row[m]), float(row[f"{m}_lo"]), float(row[f"{m}_hi"]),
                              float(row[f"{m}_diff"] or 0), float(row[f"{m}_p"] or 1))
            except (KeyError, ValueError):
                rec[TITLES[m]], rec[f"{TITLES[m]} vs {REFERENCE}"] = "", ""
                continue
            rec[TITLES[m]] = cell(iv.value, iv.lo, iv.hi)
            rec[f"{TITLES[m]} vs {REFERENCE}"] = p_text(row["rung"], m, iv)
        out.append(rec)
    return out


def to_text(ladder: Ladder) -> str:
    """The table for a terminal: one column per rung, each metric's value [interval] over its paired test."""
    names = list(ladder.rows)
    w = max(22, *(len(n) + 2 for n in names))
    lines = [f"{'':<16}" + "".join(f"{n:<{w}}" for n in names),
             f"{'probabilities':<16}" + "".join(f"{ladder.sources[n]:<{w}}" for n in names)]
    for m in METRICS:
        lines.append(f"{TITLES[m]:<16}" + "".join(f"{cell(*_v(ladder.rows[n][m])):<{w}}" for n in names))
        lines.append(f"{'  vs ' + REFERENCE:<16}" + "".join(f"{p_text(n, m, ladder.rows[n][m]):<{w}}" for n in names))
    notes = [f"{n}: {d}" for n, d in ladder.details.items()]
    tail = ("\n\n" + "; ".join(notes) if notes else "") + "\n"
    return warning_text(ladder.sceptic) + _header(ladder) + "\n".join(s.rstrip() for s in lines) + tail


def _v(iv: Interval) -> tuple[float, float, float]:
    return iv.value, iv.lo, iv.hi
