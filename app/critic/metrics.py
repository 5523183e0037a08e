"""How good a critic is against held-out human labels: ROC-AUC, average precision, the
precision-recall curve, precision at the recall levels the paper filters at, and an interval
for precision estimated from a uniform sample.

Plain numpy, so the numbers can be checked by hand and no extra dependency is needed. The
definitions follow the usual ones (scikit-learn's among them): thresholds are the distinct
scores, and an item is kept when its score is >= the threshold.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

RECALL_LEVELS = (0.5, 0.6, 0.7, 0.8, 0.9)


def _arrays(labels: Sequence[bool] | np.ndarray, scores: Sequence[float] | np.ndarray):  # type: ignore[no-untyped-def]
    y = np.asarray(labels, dtype=bool)
    p = np.asarray(scores, dtype=float)
    if y.shape != p.shape or y.ndim != 1:
        raise ValueError("labels and scores must be two lists of the same length")
    if not np.isfinite(p).all():
        raise ValueError("scores must be finite numbers")
    return y, p


def roc_auc(labels: Sequence[bool] | np.ndarray, scores: Sequence[float] | np.ndarray) -> float:
    """The probability that a random acceptable triple scores above a random unacceptable one
    (ties count half); NaN when one of the classes is missing."""
    y, p = _arrays(labels, scores)
    positives, negatives = int(y.sum()), int((~y).sum())
    if positives == 0 or negatives == 0:
        return float("nan")
    order = np.argsort(p, kind="mergesort")
    ranks = np.empty(len(p), dtype=float)
    sorted_scores = p[order]
    # Average ranks over ties (1-based).
    start = 0
    for end in range(1, len(p) + 1):
        if end == len(p) or sorted_scores[end] != sorted_scores[start]:
            ranks[order[start:end]] = (start + end + 1) / 2
            start = end
    rank_sum = ranks[y].sum()
    return float((rank_sum - positives * (positives + 1) / 2) / (positives * negatives))


@dataclass
class PRCurve:
    """Precision and recall when keeping every item scored >= ``thresholds[i]``
    (thresholds in decreasing order)."""

    thresholds: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    kept_fraction: np.ndarray


def precision_recall_curve(
    labels: Sequence[bool] | np.ndarray, scores: Sequence[float] | np.ndarray
) -> PRCurve:
    y, p = _arrays(labels, scores)
    if len(p) == 0:
        raise ValueError("no labels")
    order = np.argsort(-p, kind="mergesort")
    p_sorted, y_sorted = p[order], y[order]
    true_positives = np.cumsum(y_sorted)
    kept = np.arange(1, len(p) + 1)
    # The last position of each distinct score: keeping ">= score" keeps all its ties.
    last_of_score = np.r_[np.nonzero(np.diff(p_sorted))[0], len(p) - 1]
    tp = true_positives[last_of_score].astype(float)
    n_kept = kept[last_of_score].astype(float)
    positives = float(y.sum())
    return PRCurve(
        thresholds=p_sorted[last_of_score],
        precision=tp / n_kept,
        recall=tp / positives if positives else np.zeros_like(tp),
        kept_fraction=n_kept / len(p),
    )


def average_precision(
    labels: Sequence[bool] | np.ndarray, scores: Sequence[float] | np.ndarray
) -> float:
    """Sum over thresholds of (recall step) x precision; NaN without acceptable labels."""
    curve = precision_recall_curve(labels, scores)
    if not np.asarray(labels, dtype=bool).any():
        return float("nan")
    recall_steps = np.diff(np.r_[0.0, curve.recall])
    return float(np.sum(recall_steps * curve.precision))


@dataclass
class OperatingPoint:
    target_recall: float
    threshold: float
    precision: float
    recall: float
    kept_fraction: float

    def as_dict(self) -> dict[str, float]:
        return dict(self.__dict__)


def precision_at_recall(
    labels: Sequence[bool] | np.ndarray,
    scores: Sequence[float] | np.ndarray,
    levels: Sequence[float] = RECALL_LEVELS,
) -> list[OperatingPoint]:
    """For each target recall, the highest threshold that reaches it (the paper's rec_X
    filters: keep the most precise set that still recalls X of the acceptable triples)."""
    curve = precision_recall_curve(labels, scores)
    points = []
    for level in levels:
        reached = np.nonzero(curve.recall >= level - 1e-12)[0]
        if len(reached) == 0:
            continue
        i = int(reached[0])  # thresholds decrease, so the first reaching one is the highest
        points.append(
            OperatingPoint(
                target_recall=level,
                threshold=float(curve.thresholds[i]),
                precision=float(curve.precision[i]),
                recall=float(curve.recall[i]),
                kept_fraction=float(curve.kept_fraction[i]),
            )
        )
    return points


def wilson_interval(successes: int, trials: int, z: float = 1.96) -> tuple[float, float]:
    """95% interval (by default) for a proportion; used for the precision a threshold keeps,
    estimated from the labels of a uniform random sample (a calibration campaign)."""
    if trials <= 0:
        return (0.0, 1.0)
    share = successes / trials
    denominator = 1 + z * z / trials
    centre = (share + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(share * (1 - share) / trials + z * z / (4 * trials * trials)) / denominator
    low, high = max(0.0, centre - half), min(1.0, centre + half)
    # At 0 or n successes the bound is exactly 0 or 1; rounding can leave it a hair inside.
    return (0.0 if successes == 0 else low, 1.0 if successes == trials else high)


def evaluate(
    labels: Sequence[bool] | np.ndarray,
    scores: Sequence[float] | np.ndarray,
    *,
    curve_points: int = 101,
) -> dict[str, Any]:
    """The metrics stored with a critic version (JSON-ready), with the PR curve thinned to
    about ``curve_points`` points for plotting."""
    y, p = _arrays(labels, scores)
    curve = precision_recall_curve(y, p)
    step = max(1, len(curve.thresholds) // curve_points)
    keep = np.unique(np.r_[np.arange(0, len(curve.thresholds), step), len(curve.thresholds) - 1])
    return {
        "n": int(len(y)),
        "acceptable": int(y.sum()),
        "roc_auc": roc_auc(y, p),
        "average_precision": average_precision(y, p),
        "precision_at_recall": [point.as_dict() for point in precision_at_recall(y, p)],
        "pr_curve": {
            "threshold": curve.thresholds[keep].round(6).tolist(),
            "precision": curve.precision[keep].round(6).tolist(),
            "recall": curve.recall[keep].round(6).tolist(),
        },
    }
