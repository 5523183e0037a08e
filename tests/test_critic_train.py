"""Training a critic end to end on a tiny model built from a config (no downloads)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

from app.critic.labels import LabelledTriple, split_by_head
from app.critic.metrics import evaluate
from app.critic.train import (
    CriticTrainingArguments,
    critic_input,
    load_critic,
    score_pairs,
    train_critic,
)


def synthetic_labels(n_heads: int = 120) -> list[LabelledTriple]:
    rng = random.Random(3)
    good = ["to eat dinner", "to sleep well", "to thank them", "happy", "to rest"]
    bad = ["purple rocket volcano", "seventeen spoons", "the moon melts", "a banana cloud"]
    triples = []
    for h in range(n_heads):
        for _k in range(4):
            acceptable = rng.random() < 0.6
            tail = rng.choice(good if acceptable else bad)
            triples.append(
                LabelledTriple(len(triples), f"PersonX does task {h}", "xWant", tail, acceptable)
            )
    return triples


def test_critic_input_reads_like_the_paper() -> None:
    assert critic_input("PersonX bakes bread", "xWant", "to eat it") == (
        "PersonX bakes bread",
        "as a result, PersonX wants to eat it",
    )
    assert critic_input("PersonX hugs PersonY", "xIntent", "to comfort PersonY", names=True) == (
        "Alex hugs Jordan",
        "because Alex wanted to comfort Jordan",
    )


def test_train_learns_saves_and_reloads_deterministically(tiny_base: Path, tmp_path: Path) -> None:
    train, held_out = split_by_head(synthetic_labels(), 0.25)
    args = dict(
        base_model=str(tiny_base), epochs=4, learning_rate=2e-3, batch_size=16, seed=7, names=True
    )
    first = train_critic(
        CriticTrainingArguments(output_dir=tmp_path / "a", **args), train, held_out
    )
    assert first.metrics["roc_auc"] > 0.9, first.history
    assert 1 <= first.best_epoch <= 4
    card = json.loads((tmp_path / "a" / "critic_card.json").read_text())
    assert card["best_epoch"] == first.best_epoch and card["train_labels"] == len(train)

    second = train_critic(
        CriticTrainingArguments(output_dir=tmp_path / "b", **args), train, held_out
    )
    assert second.history == first.history  # a fixed seed gives the same model

    model, tokenizer = load_critic(tmp_path / "a")
    pairs = [critic_input(t.head, t.relation, t.tail, names=True) for t in held_out]
    reloaded = score_pairs(model, tokenizer, pairs)
    labels = np.array([t.acceptable for t in held_out])
    # The saved folder is the best epoch: scoring it again gives the stored metrics.
    assert evaluate(labels, reloaded)["roc_auc"] == pytest.approx(first.metrics["roc_auc"])
    assert evaluate(labels, reloaded)["average_precision"] == pytest.approx(
        first.metrics["average_precision"]
    )
    # Early stopping: training ends `patience` (2) epochs after the last improvement.
    assert len(first.history) == min(4, first.best_epoch + 2)


def test_bad_base_model_fails_with_a_clear_message(tmp_path: Path) -> None:
    train, held_out = split_by_head(synthetic_labels(20), 0.25)
    args = CriticTrainingArguments(
        base_model=str(tmp_path / "no-such-model"), output_dir=tmp_path / "o"
    )
    with pytest.raises(ValueError, match="could not be loaded"):
        train_critic(args, train, held_out)
