"""How good a critic is against held-out human labels: ROC-AUC, average precision, the
precision-recall curve, precision at the recall levels the paper filters at, an interval
for precision estimated from a uniform sample, and bootstrap intervals for the held-out
figures (how far another draw of held-out heads could move them).

The curves and areas come from scikit-learn and the Wilson interval from SciPy, so the
definitions are the ones reviewers know; this module only shapes them the way the product uses
them (thresholds in decreasing order, the kept fraction beside each, NaN rather than an error
when a class is missing). Thresholds are the distinct scores, and an item is kept when its
score is >= the threshold. ``tests/test_critic_metrics.py`` checks them against brute force.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

# scipy and scikit-learn are imported where they are used: together they take most of a
# second to import, which every `skd export ...` command paid for the constants below.

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
    if y.all() or not y.any():
        return float("nan")
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, p))


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
    if not y.any():  # scikit-learn's recall is undefined here; nothing can be recalled
        thresholds = np.unique(p)[::-1]
        kept = np.searchsorted(-np.sort(-p), -thresholds, side="right").astype(float)
        zeros = np.zeros_like(thresholds)
        return PRCurve(thresholds, zeros, zeros.copy(), kept / len(p))
    from sklearn.metrics import precision_recall_curve as sklearn_pr_curve

    precision, recall, thresholds = sklearn_pr_curve(y, p)
    # scikit-learn: thresholds increasing, plus a final (precision 1, recall 0) point with no
    # threshold. Here: thresholds decreasing, one point per distinct score.
    precision, recall, thresholds = precision[:-1][::-1], recall[:-1][::-1], thresholds[::-1]
    ascending = np.sort(p)
    kept = len(p) - np.searchsorted(ascending, thresholds, side="left")
    return PRCurve(
        thresholds=thresholds.astype(float),
        precision=precision.astype(float),
        recall=recall.astype(float),
        kept_fraction=kept.astype(float) / len(p),
    )


def average_precision(
    labels: Sequence[bool] | np.ndarray, scores: Sequence[float] | np.ndarray
) -> float:
    """Sum over thresholds of (recall step) x precision; NaN without acceptable labels."""
    y, p = _arrays(labels, scores)
    if len(p) == 0:
        raise ValueError("no labels")
    if not y.any():
        return float("nan")
    from sklearn.metrics import average_precision_score

    return float(average_precision_score(y, p))


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


def recall_at_precision(
    labels: Sequence[bool] | np.ndarray, scores: Sequence[float] | np.ndarray, level: float = 0.9
) -> float:
    """The most recall any threshold gives while its precision is at least ``level`` (how
    much of the good material a filter that must be ``level`` precise keeps); 0 if none."""
    curve = precision_recall_curve(labels, scores)
    reached = curve.recall[curve.precision >= level - 1e-12]
    return float(reached.max()) if len(reached) else 0.0


def wilson_interval(successes: int, trials: int, z: float = 1.96) -> tuple[float, float]:
    """95% interval (by default) for a proportion; used for the precision a threshold keeps,
    estimated from the labels of a uniform random sample (a calibration campaign)."""
    if trials <= 0:
        return (0.0, 1.0)
    from scipy.stats import binomtest, norm

    confidence = 2 * float(norm.cdf(z)) - 1
    interval = binomtest(int(successes), int(trials)).proportion_ci(
        confidence_level=confidence, method="wilson"
    )
    low, high = float(interval.low), float(interval.high)
    # At 0 or n successes the bound is exactly 0 or 1; rounding can leave it a hair inside.
    return (0.0 if successes == 0 else low, 1.0 if successes == trials else high)


def evaluate(
    labels: Sequence[bool] | np.ndarray,
    scores: Sequence[float] | np.ndarray,
    *,
    curve_points: int = 101,
    groups: Sequence[Any] | None = None,
    intervals: bool = False,
) -> dict[str, Any]:
    """The metrics stored with a critic version (JSON-ready), with the PR curve thinned to
    about ``curve_points`` points for plotting; with ``intervals``, 95% bootstrap intervals
    too (over ``groups``, the heads, when given)."""
    y, p = _arrays(labels, scores)
    curve = precision_recall_curve(y, p)
    step = max(1, len(curve.thresholds) // curve_points)
    keep = np.unique(np.r_[np.arange(0, len(curve.thresholds), step), len(curve.thresholds) - 1])
    extra = {"intervals": bootstrap_intervals(y, p, groups)} if intervals else {}
    return {
        "n": int(len(y)),
        "acceptable": int(y.sum()),
        "roc_auc": roc_auc(y, p),
        "average_precision": average_precision(y, p),
        "precision_at_recall": [point.as_dict() for point in precision_at_recall(y, p)],
        "recall_at_precision_90": recall_at_precision(y, p, 0.9) if y.any() else float("nan"),
        "pr_curve": {
            "threshold": curve.thresholds[keep].round(6).tolist(),
            "precision": curve.precision[keep].round(6).tolist(),
            "recall": curve.recall[keep].round(6).tolist(),
        },
        **extra,
    }


# The held-out figures the bootstrap gives intervals for; keys of ``evaluate``'s "intervals".
INTERVAL_RECALLS = (0.5, 0.8)


def _weighted_figures(y: np.ndarray, p: np.ndarray, weights: np.ndarray) -> dict[str, np.ndarray]:
    """The held-out figures for each row of ``weights`` (one resample per row: how many times
    each item was drawn), computed together. Definitions as above: thresholds are the
    distinct scores, AP is scikit-learn's step sum, ties count half in the AUC. With all
    weights 1 they equal ``roc_auc``, ``average_precision``, ``precision_at_recall`` and
    ``recall_at_precision`` (``tests/test_critic_metrics.py``)."""
    order = np.argsort(-p, kind="stable")
    sorted_scores = p[order]
    starts = np.r_[0, np.nonzero(np.diff(sorted_scores))[0] + 1]  # one block per distinct score
    w = weights[:, order]
    good = y[order]
    tp = np.add.reduceat(np.where(good, w, 0.0), starts, axis=1)
    fp = np.add.reduceat(np.where(good, 0.0, w), starts, axis=1)
    cum_tp, cum_fp = np.cumsum(tp, axis=1), np.cumsum(fp, axis=1)
    positives, negatives = cum_tp[:, -1:], cum_fp[:, -1:]
    with np.errstate(invalid="ignore", divide="ignore"):
        # A positive beats every negative scored lower and ties with those at its score.
        auc = (tp * (negatives - cum_fp) + 0.5 * tp * fp).sum(axis=1) / (positives * negatives)[
            :, 0
        ]
        precision = cum_tp / (cum_tp + cum_fp)
        recall = cum_tp / positives
    steps = np.diff(recall, axis=1, prepend=0.0)
    figures = {
        "roc_auc": auc,
        "average_precision": np.where(positives[:, 0] > 0, (steps * precision).sum(axis=1), np.nan),
        "recall_at_precision_90": np.where(precision >= 0.9 - 1e-12, recall, 0.0).max(axis=1),
    }
    for level in INTERVAL_RECALLS:
        reached = recall >= level - 1e-12
        first = reached.argmax(axis=1)  # thresholds decrease: the first one reaching is highest
        at = precision[np.arange(len(w)), first]
        figures[f"precision_at_recall_{round(level * 100)}"] = np.where(
            reached.any(axis=1), at, np.nan
        )
    return figures


def bootstrap_intervals(
    labels: Sequence[bool] | np.ndarray,
    scores: Sequence[float] | np.ndarray,
    groups: Sequence[Any] | None = None,
    *,
    rounds: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """Percentile bootstrap intervals for the held-out figures.

    ``groups`` (the head of each triple) makes it a cluster bootstrap: whole heads are drawn,
    because the held-out split is by head and labels of one head are not independent, so
    drawing single triples would give intervals that are too narrow. The draw is seeded, so
    the same scores always give the same intervals (stored metrics stay reproducible)."""
    y, p = _arrays(labels, scores)
    if len(p) == 0:
        raise ValueError("no labels")
    if groups is None:
        codes = np.arange(len(p))
    else:
        if len(groups) != len(p):
            raise ValueError("groups must have one entry per label")
        _, codes = np.unique(np.asarray(groups, dtype=object).astype(str), return_inverse=True)
    n_groups = int(codes.max()) + 1
    rng = np.random.default_rng(seed)
    tail = (1 - confidence) / 2
    collected: dict[str, list[np.ndarray]] = {}
    for start in range(0, rounds, 100):  # 100 resamples at a time bounds the memory
        size = min(100, rounds - start)
        drawn = rng.multinomial(n_groups, np.full(n_groups, 1 / n_groups), size=size)
        for name, values in _weighted_figures(y, p, drawn[:, codes].astype(float)).items():
            collected.setdefault(name, []).append(values)
    intervals: dict[str, Any] = {
        "confidence": confidence,
        "rounds": rounds,
        "by": "head" if groups is not None else "triple",
        "groups": n_groups,
    }
    for name, parts in collected.items():
        values = np.concatenate(parts)
        values = values[np.isfinite(values)]
        intervals[name] = (
            [float(np.quantile(values, tail)), float(np.quantile(values, 1 - tail))]
            if len(values)
            else None
        )
    return intervals
