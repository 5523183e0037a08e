"""Critic metrics against brute-force definitions, and the by-head label split."""

from __future__ import annotations

import itertools
import random

import numpy as np
import pytest

from app.critic.labels import LabelledTriple, is_held_out, split_by_head
from app.critic.metrics import (
    _weighted_figures,
    average_precision,
    bootstrap_intervals,
    evaluate,
    precision_at_recall,
    precision_recall_curve,
    recall_at_precision,
    roc_auc,
    wilson_interval,
)


def brute_auc(y: list[bool], p: list[float]) -> float:
    pairs = [(a, b) for a, b in itertools.product(range(len(y)), repeat=2) if y[a] and not y[b]]
    wins = sum(1.0 if p[a] > p[b] else 0.5 if p[a] == p[b] else 0.0 for a, b in pairs)
    return wins / len(pairs)


def brute_point(y: list[bool], p: list[float], threshold: float) -> tuple[float, float]:
    kept = [label for label, score in zip(y, p, strict=True) if score >= threshold]
    return sum(kept) / len(kept), sum(kept) / sum(y)


@pytest.mark.parametrize("seed", range(5))
def test_auc_and_curve_match_brute_force_with_ties(seed: int) -> None:
    rng = random.Random(seed)
    y = [rng.random() < 0.6 for _ in range(80)]
    p = [round(rng.random() * (1.5 if label else 1.0), 1) for label in y]  # many ties
    assert roc_auc(y, p) == pytest.approx(brute_auc(y, p))
    curve = precision_recall_curve(y, p)
    assert list(curve.thresholds) == sorted(set(p), reverse=True)
    for threshold, precision, recall in zip(
        curve.thresholds, curve.precision, curve.recall, strict=True
    ):
        assert (precision, recall) == pytest.approx(brute_point(y, p, threshold))


def test_known_values() -> None:
    y = [True, False, True, True, False]
    p = [0.9, 0.8, 0.7, 0.3, 0.1]
    assert roc_auc(y, p) == pytest.approx(4 / 6)
    # Keeping >= 0.9: P=1, R=1/3; >= 0.7: P=2/3, R=2/3; >= 0.3: P=3/4, R=1.
    assert average_precision(y, p) == pytest.approx(1 / 3 * 1 + 1 / 3 * 2 / 3 + 1 / 3 * 3 / 4)
    points = {pt.target_recall: pt for pt in precision_at_recall(y, p, levels=(0.5, 0.9))}
    assert points[0.5].threshold == 0.7 and points[0.5].precision == pytest.approx(2 / 3)
    assert points[0.9].threshold == 0.3 and points[0.9].kept_fraction == pytest.approx(0.8)


def test_perfect_and_degenerate_cases() -> None:
    assert roc_auc([True, False], [0.9, 0.1]) == 1.0
    assert np.isnan(roc_auc([True, True], [0.2, 0.3]))
    with pytest.raises(ValueError, match="same length"):
        roc_auc([True], [0.1, 0.2])
    with pytest.raises(ValueError, match="finite"):
        roc_auc([True, False], [float("nan"), 0.2])


def test_wilson_interval_brackets_the_share() -> None:
    low, high = wilson_interval(77, 100)
    assert low < 0.77 < high
    assert (round(low, 3), round(high, 3)) == (0.678, 0.842)  # worked by hand
    assert wilson_interval(0, 0) == (0.0, 1.0)
    # All or none kept triples acceptable: the interval reaches the observed share exactly.
    for n in (1, 7, 31, 156, 1000):
        assert wilson_interval(n, n)[1] == 1.0 and wilson_interval(n, n)[0] < 1.0
        assert wilson_interval(0, n)[0] == 0.0 and wilson_interval(0, n)[1] > 0.0


def test_evaluate_is_json_ready_and_thins_the_curve() -> None:
    rng = np.random.default_rng(0)
    y = rng.random(5000) < 0.7
    p = np.clip(y * 0.3 + rng.random(5000) * 0.7, 0, 1)
    metrics = evaluate(y, p, curve_points=50)
    assert 0.5 < metrics["roc_auc"] <= 1 and 0.7 < metrics["average_precision"] <= 1
    assert len(metrics["pr_curve"]["threshold"]) <= 60
    assert [pt["target_recall"] for pt in metrics["precision_at_recall"]] == [
        0.5,
        0.6,
        0.7,
        0.8,
        0.9,
    ]


def test_split_by_head_keeps_events_together_and_is_stable() -> None:
    labels = [
        LabelledTriple(i, f"PersonX event {i // 3}", "xWant", f"tail {i}", i % 2 == 0)
        for i in range(3000)
    ]
    train, held_out = split_by_head(labels, 0.2)
    assert not {t.head for t in train} & {t.head for t in held_out}
    assert 0.15 < len(held_out) / len(labels) < 0.25
    more = labels + [LabelledTriple(9999, "PersonX event 5", "xNeed", "new", True)]
    _, held_out_later = split_by_head(more, 0.2)
    assert {t.triple_id for t in held_out} <= {t.triple_id for t in held_out_later}
    assert is_held_out("PersonX  Event 5") == is_held_out("personx event 5")


def test_training_labels_come_from_human_ratings(engine, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import json

    from app.core.db import session_scope
    from app.corpus.importer import import_files
    from app.critic.labels import training_labels

    records = [
        {"head": "PersonX sings", "relation": "xReact", "tail": "happy", "valid": 2},
        {"head": "PersonX sings", "relation": "xReact", "tail": "a table", "valid": -2},
        {"head": "PersonX sings", "relation": "xWant", "tail": "to bow", "valid": -9},
        {"head": "PersonX sings", "relation": "xNeed", "tail": "a song"},
    ]
    path = tmp_path / "l.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    import_files([path])
    with session_scope() as session:
        labels = training_labels(session)
    assert [(t.tail, t.acceptable) for t in labels] == [("happy", True), ("a table", False)]


@pytest.mark.parametrize("seed", range(5))
def test_recall_at_precision_is_the_best_recall_of_a_precise_enough_threshold(seed: int) -> None:
    rng = random.Random(seed)
    y = [rng.random() < 0.5 for _ in range(60)]
    p = [round(rng.random() * (1.6 if label else 1.0), 2) for label in y]
    points = [brute_point(y, p, t) for t in set(p)]
    for level in (0.6, 0.8, 0.9):
        best = max((r for precision, r in points if precision >= level), default=0.0)
        assert recall_at_precision(y, p, level) == pytest.approx(best)
    assert evaluate(y, p)["recall_at_precision_90"] == pytest.approx(recall_at_precision(y, p))


def _sample(seed: int, n: int = 400, per_head: int = 4) -> tuple[np.ndarray, np.ndarray, list[str]]:
    rng = np.random.default_rng(seed)
    y = rng.random(n) < 0.6
    p = np.round(rng.normal(y * 0.8, 1.0), 1)  # many ties
    return y, p, [f"head {i // per_head}" for i in range(n)]


@pytest.mark.parametrize("seed", range(4))
def test_a_resamples_figures_are_those_of_the_data_drawn_that_often(seed: int) -> None:
    """Weights are draw counts: the figures must equal the stored definitions on the data set
    with each item written that many times (all ones: the stored figures themselves)."""
    y, p, _ = _sample(seed)
    counts = np.random.default_rng(seed).integers(0, 4, size=(2, len(y)))
    counts[0] = 1
    figures = _weighted_figures(y, p, counts.astype(float))
    for row in range(2):
        ey, ep = np.repeat(y, counts[row]), np.repeat(p, counts[row])
        at = {point.target_recall: point.precision for point in precision_at_recall(ey, ep)}
        expected = {
            "roc_auc": roc_auc(ey, ep),
            "average_precision": average_precision(ey, ep),
            "precision_at_recall_50": at[0.5],
            "precision_at_recall_80": at[0.8],
            "recall_at_precision_90": recall_at_precision(ey, ep, 0.9),
        }
        for name, value in expected.items():
            assert figures[name][row] == pytest.approx(value, abs=1e-12), name


def test_bootstrap_intervals_hold_the_figure_repeat_and_widen_with_fewer_labels() -> None:
    y, p, heads = _sample(7, n=2000)
    stored = evaluate(y, p, groups=heads, intervals=True)
    intervals = stored["intervals"]
    assert intervals == bootstrap_intervals(y, p, heads)  # seeded: the same every time
    assert intervals["by"] == "head" and intervals["groups"] == 500
    for name in ("roc_auc", "average_precision"):
        low, high = intervals[name]
        assert low < stored[name] < high
    low, high = intervals["precision_at_recall_50"]
    assert low < stored["precision_at_recall"][0]["precision"] < high
    small = bootstrap_intervals(y[:200], p[:200], heads[:200])
    assert np.diff(small["roc_auc"])[0] > 2 * np.diff(intervals["roc_auc"])[0]


def test_resampling_heads_widens_the_interval_when_a_heads_labels_agree() -> None:
    """Ten triples per head with the same label and score: drawing single triples would
    pretend to ten times the evidence there is."""
    rng = np.random.default_rng(3)
    y = np.repeat(rng.random(60) < 0.5, 10)
    p = np.repeat(np.round(rng.normal(size=60), 2), 10) + y * 0.5
    heads = np.repeat(np.arange(60), 10).tolist()
    by_head = bootstrap_intervals(y, p, heads)["roc_auc"]
    by_triple = bootstrap_intervals(y, p)["roc_auc"]
    assert np.diff(by_head)[0] > 2 * np.diff(by_triple)[0]
    with pytest.raises(ValueError, match="one entry per label"):
        bootstrap_intervals(y, p, heads[:-1])
