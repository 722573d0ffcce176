"""Classification scores for BUY/SELL/HOLD predictors, with date-blocked bootstrap intervals and paired tests.

Every score is computed from integer-coded labels ``y``, predicted classes ``pred`` and a probability matrix
``prob`` (n x 3, columns in :data:`CLASSES` order):

- ``accuracy``: share of ``pred == y``;
- ``balanced_accuracy``: mean recall over the classes present in ``y`` (scikit-learn's definition);
- ``macro_f1``: mean F1 over the classes present in ``y`` or ``pred``;
- ``log_loss``: mean ``-log(max(p[y], LOG_LOSS_EPS))`` in nats (a one-hot predictor that is wrong costs
  ``-log(LOG_LOSS_EPS)`` = 6.91 nats for that sample instead of infinity);
- ``brier``: the multi-class Brier score, mean over samples of ``sum_k (p_k - [y == k])^2`` (0 best, 2 worst);
- ``ece``: top-label expected calibration error over ``ECE_BINS`` equal-width bins of ``p[pred]``.

Intervals resample *blocks of window-end dates*: the distinct dates in time order are cut into consecutive runs
of ``block`` dates; every window whose date falls in a run belongs to that block, so windows sharing a date (one
per ticker) and neighbouring dates (overlapping windows) are always drawn together. A resample draws as many
blocks as there are, with replacement. The paired test draws the same blocks for two predictors and reports the
two-sided bootstrap p-value of their difference, ``(1 + #{|d* - d| >= |d|}) / (B + 1)``: a copy of the
reference gets d = 0 and p = 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

CLASSES = ("BUY", "SELL", "HOLD")
METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "log_loss", "brier", "ece")
LOWER_IS_BETTER = frozenset({"log_loss", "brier", "ece"})
LOG_LOSS_EPS = 1e-3
ECE_BINS = 10
_K = len(CLASSES)


def encode(actions: Sequence[str]) -> np.ndarray:
    """Class indices (``CLASSES`` order) of action names; an unknown name raises ValueError."""
    index = {a: i for i, a in enumerate(CLASSES)}
    try:
        return np.fromiter((index[a] for a in actions), dtype=np.int64, count=len(actions))
    except KeyError as exc:
        raise ValueError(f"unknown action {exc.args[0]!r}: expected one of {', '.join(CLASSES)}") from None


def one_hot(pred: np.ndarray) -> np.ndarray:
    """Probability 1 on the predicted class (a rule that states no probability)."""
    return np.eye(_K)[pred]


def from_confidence(pred: np.ndarray, confidence: Sequence[float]) -> np.ndarray:
    """``p[pred] = confidence``, the rest split evenly over the other two classes (a provider's one number)."""
    c = np.clip(np.asarray(confidence, dtype=float), 0.0, 1.0)
    prob = np.repeat(((1.0 - c) / (_K - 1))[:, None], _K, axis=1)
    prob[np.arange(len(pred)), pred] = c
    return prob


def prior(pred: np.ndarray, frequencies: Sequence[float]) -> np.ndarray:
    """The same class frequencies (e.g. the train split's) for every sample."""
    f = np.asarray(frequencies, dtype=float)
    return np.repeat((f / f.sum())[None, :], len(pred), axis=0)


def scores(y: np.ndarray, pred: np.ndarray, prob: np.ndarray) -> dict[str, float]:
    """Every score of :data:`METRICS` on the whole sample."""
    out = _resampled(y, pred, prob, np.arange(len(y)), np.zeros(len(y), dtype=np.int64), 1)
    return {m: float(v[0]) for m, v in out.items()}


def date_blocks(dates: Sequence[str], block: int) -> np.ndarray:
    """Block id per sample: runs of ``block`` consecutive distinct dates (ISO strings sort in time order)."""
    if block < 1:
        raise ValueError(f"block must be >= 1 (got {block})")
    _, rank = np.unique(np.asarray(dates, dtype=str), return_inverse=True)
    return rank.reshape(-1) // block


def block_resamples(blocks: np.ndarray, n_boot: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n_boot`` resamples as one flat index array and its resample ids: each resample draws as many blocks as
    there are, with replacement, and takes every sample of each drawn block."""
    members = [np.flatnonzero(blocks == b) for b in np.unique(blocks)]
    sizes = np.array([len(m) for m in members])
    order = np.concatenate(members)
    starts = np.concatenate(([0], np.cumsum(sizes)[:-1]))
    rng = np.random.default_rng(seed)
    drawn = rng.integers(0, len(members), size=(n_boot, len(members)))
    lengths = sizes[drawn].ravel()
    rid = np.repeat(np.repeat(np.arange(n_boot), len(members)), lengths)
    # position of each taken sample inside `order`: its block's start + its rank inside the block
    first = np.repeat(starts[drawn].ravel(), lengths)
    within = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    return order[first + within], rid


@dataclass(frozen=True)
class Interval:
    """A score on the whole sample, its 95 % bootstrap interval, and the paired comparison with a reference."""

    value: float
    lo: float
    hi: float
    diff: float = 0.0  # value - reference's value
    p_value: float = 1.0  # two-sided paired bootstrap p-value of diff


def bootstrap_scores(y: np.ndarray, predictors: dict[str, tuple[np.ndarray, np.ndarray]], dates: Sequence[str],
                     *, reference: str, block: int = 10, n_boot: int = 1000, seed: int = 7
                     ) -> dict[str, dict[str, Interval]]:
    """Scores of every predictor (name -> (pred, prob)) with intervals and paired p-values against
    ``reference``, all predictors scored on the same resamples."""
    if reference not in predictors:
        raise ValueError(f"reference {reference!r} is not among the predictors")
    idx, rid = block_resamples(date_blocks(dates, block), n_boot, seed)
    point = {k: scores(y, *v) for k, v in predictors.items()}
    boot = {k: _resampled(y, *v, idx, rid, n_boot) for k, v in predictors.items()}
    out: dict[str, dict[str, Interval]] = {}
    for name in predictors:
        row = {}
        for m in METRICS:
            b, ref = boot[name][m], boot[reference][m]
            lo, hi = np.nanpercentile(b, [2.5, 97.5])
            d = point[name][m] - point[reference][m]
            dstar = b - ref
            ok = ~np.isnan(dstar)
            p = (1 + np.sum(np.abs(dstar[ok] - d) >= abs(d) - 1e-12)) / (ok.sum() + 1)
            row[m] = Interval(point[name][m], float(lo), float(hi), float(d), float(min(1.0, p)))
        out[name] = row
    return out


def _resampled(y: np.ndarray, pred: np.ndarray, prob: np.ndarray, idx: np.ndarray, rid: np.ndarray,
               n_boot: int) -> dict[str, np.ndarray]:
    """Every score for each resample (samples ``idx``, resample ids ``rid``), vectorised with bincount."""
    yy, pp = y[idx], pred[idx]
    n = np.bincount(rid, minlength=n_boot).astype(float)
    correct = (yy == pp).astype(float)
    p_true = prob[idx, yy]
    conf = prob[idx, pp]
    target = np.eye(_K)[yy]
    brier_terms = ((prob[idx] - target) ** 2).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = np.bincount(rid, correct, n_boot) / n
        ll = np.bincount(rid, -np.log(np.maximum(p_true, LOG_LOSS_EPS)), n_boot) / n
        brier = np.bincount(rid, brier_terms, n_boot) / n
        cm = np.bincount(rid * _K * _K + yy * _K + pp, minlength=n_boot * _K * _K).reshape(n_boot, _K, _K)
        tp = np.diagonal(cm, axis1=1, axis2=2).astype(float)
        true_k, pred_k = cm.sum(axis=2).astype(float), cm.sum(axis=1).astype(float)
        recall = np.where(true_k > 0, tp / np.where(true_k > 0, true_k, 1), np.nan)
        bal = np.nanmean(np.where(true_k > 0, recall, np.nan), axis=1)
        present = (true_k + pred_k) > 0
        f1 = np.where(present, 2 * tp / np.where(present, true_k + pred_k, 1), 0.0)
        macro = f1.sum(axis=1) / np.maximum(present.sum(axis=1), 1)
        bins = np.minimum((np.clip(conf, 0, 1) * ECE_BINS).astype(np.int64), ECE_BINS - 1)
        key = rid * ECE_BINS + bins
        gap = (np.bincount(key, correct, n_boot * ECE_BINS) - np.bincount(key, conf, n_boot * ECE_BINS))
        ece = np.abs(gap.reshape(n_boot, ECE_BINS)).sum(axis=1) / n
    return {"accuracy": acc, "balanced_accuracy": bal, "macro_f1": macro, "log_loss": ll, "brier": brier,
            "ece": ece}
